"""``scripts/leftovers.py`` through the real engine on the sandbox: machines and a serverless endpoint
planted on each loopback cloud with the stack's label are found and terminated; the state's own, another
stack's and another project's are never named; the destroy then leaves nothing billing."""
import copy

import pytest

import sandbox
from scripts import leftovers

pytestmark = [
    pytest.mark.engine,
    pytest.mark.money,
    pytest.mark.skipif(bool(sandbox.engine_missing()), reason=sandbox.engine_missing()),
]
NOTHING = {"tensordock": 0, "vastai": 0, "runpod": 0}


def plant(fakes, label):
    """One more machine on each marketplace (and a serverless endpoint) carrying ``label``, as a killed
    `up` leaves one: the vendor holds it, no state does."""
    td, vast, rp = fakes["tensordock"], fakes["vastai"], fakes["runpod"]
    with td.lock:
        rec = copy.deepcopy(next(iter(td.alive())))
        rec.update(id=f"td-{label}", name=label)
        td.instances[rec["id"]] = rec
    with vast.lock:
        rec = copy.deepcopy(next(iter(vast.alive())))
        rec.update(id=vast.next_id(), label=label)
        vast.instances[rec["id"]] = rec
    with rp.lock:
        rec = copy.deepcopy(next(iter(rp.pods.values())))
        rec.update(id=f"pod-{label}", name=label)
        rp.pods[rec["id"]] = rec
        # An endpoint the program saved has a template of its own, named after it (RunPod refuses to scale
        # an endpoint whose template is gone, so the plant needs one to be terminated).
        tpl = copy.deepcopy(rp.templates[next(iter(rp.endpoints.values()))["templateId"]])
        tpl.update(id=f"tpl-{label}", name=label)
        rp.templates[tpl["id"]] = tpl
        ep = copy.deepcopy(next(iter(rp.endpoints.values())))
        ep.update(id=f"ep-{label}", name=label, workersMin=1, workersMax=2, templateId=tpl["id"])
        rp.endpoints[ep["id"]] = ep
    return {"tensordock", "vastai", "runpod", "runpod-serverless"}


def test_leftovers_are_found_and_terminated_and_nothing_else_is_named(tmp_path, capsys):
    work = sandbox.project_copy(tmp_path / "project")
    with sandbox.fake_clouds() as fakes:
        env = sandbox.engine_env(fakes, tmp_path / "engine")
        sandbox.stack(env, name="sandbox-eu", work_dir=work)  # another stack whose name starts like this one's
        st = sandbox.stack(env, work_dir=work)
        st.up()
        own = {n: sorted(str(i["id"]) for i in fakes[n].alive()) for n in ("tensordock", "vastai", "runpod")}
        plant(fakes, "gpu-estate-sandbox-ghost")           # this stack's, held by no state: a leftover
        plant(fakes, "gpu-estate-sandbox-eu-ghost")        # another stack's: never named here
        plant(fakes, "other-project-sandbox-ghost")        # another project's: never named
        capsys.readouterr()
        assert leftovers.main(["sandbox", "--cwd", str(work)]) == 2
        listed = capsys.readouterr().out
        rows = [line.split() for line in listed.splitlines()[1:-1]]
        assert sorted(r[0] for r in rows) == sorted(["tensordock", "vastai", "runpod", "runpod-serverless"])
        assert all(r[2] == "gpu-estate-sandbox-ghost" for r in rows), listed
        assert "eu-ghost" not in listed and "other-project" not in listed
        assert not any(i in listed.split() for ids in own.values() for i in ids)  # the state's own
        assert "4 left over" in listed
        assert leftovers.main(["sandbox", "--cwd", str(work), "--terminate", "--yes"]) == 0
        after = {n: sorted(str(i["id"]) for i in fakes[n].alive()
                           if "ghost" not in str(i.get("name") or i.get("label"))) for n in own}
        assert after == own  # the state's own untouched
        assert not any(str(i.get("name") or i.get("label")) == "gpu-estate-sandbox-ghost"
                       for n in own for i in fakes[n].alive())
        # the leftover endpoint's template went with it; the other stack's and project's stay
        assert sorted(t["name"] for t in fakes["runpod"].templates.values() if "ghost" in t["name"]) == \
            ["gpu-estate-sandbox-eu-ghost", "other-project-sandbox-ghost"]
        assert leftovers.main(["sandbox", "--cwd", str(work)]) == 0
        st.destroy()
        for n in own:  # the other stack's and project's plants are all that remain, as they were
            assert sorted(str(i.get("name") or i.get("label")) for i in fakes[n].alive()) == \
                sorted(["gpu-estate-sandbox-eu-ghost", "other-project-sandbox-ghost"] * (2 if n == "runpod" else 1))
