"""The Ollama model library provider against a loopback server that speaks the Ollama API."""
import time

import pulumi
import pytest

from providers.ollama import OllamaError, OllamaModelProvider, Progress, resource_name
from loopback.ollama import digest_of



@pytest.fixture
def logs(monkeypatch):
    """What the provider reports through pulumi.log, with the time of each line."""
    seen = []
    for level in ("info", "warn"):
        monkeypatch.setattr(pulumi.log, level, lambda msg, *a, _l=level, **k: seen.append((_l, msg, time.monotonic())))
    return seen


def model(fake, tag="qwen3:8b", node="qwen", active=True):
    props = {"node": node, "model": tag, "endpoint": fake.url, "ssh": None, "instance": "vastai:1001",
             "active": active, "version": "1", "digest": None, "pulled_digest": None, "pulled": None}
    result = OllamaModelProvider().check({}, props)
    assert result.failures == []
    return result.inputs


def test_a_present_model_costs_one_request(ollama, logs):
    digest = ollama.install("qwen3:8b")
    created = OllamaModelProvider().create(model(ollama))
    assert created.id == "qwen/qwen3:8b"
    assert created.outs["digest"] == digest and created.outs["pulled"] is False
    assert sum(ollama.calls.values()) == 1
    assert ollama.pulls() == 0


def test_a_missing_model_is_pulled_with_progress_in_percent(ollama, logs):
    ollama.pull_steps = 5
    created = OllamaModelProvider().create(model(ollama))
    assert created.outs["digest"] == digest_of("qwen3:8b") == created.outs["pulled_digest"]
    assert ollama.pulls() == 1 and "qwen3:8b" in ollama.installed
    percents = [int(m.rsplit(" ", 1)[1].rstrip("%")) for _, m, _ in logs if "pulling qwen3:8b" in m]
    assert percents == [20, 40, 60, 80, 100]


def test_a_slow_pull_reports_progress_while_it_streams(ollama, logs):
    ollama.pull_steps, ollama.pull_delay = 10, 0.05
    started = time.monotonic()
    OllamaModelProvider().create(model(ollama))
    finished = time.monotonic()
    stamps = [t for _, m, t in logs if "pulling qwen3:8b" in m]
    assert len(stamps) == 10
    # The first percent arrives early in the stream and the last near its end: read line by line.
    assert stamps[0] - started < (finished - started) / 2 < stamps[-1] - started


def test_an_error_line_fails_the_pull_with_the_servers_message(ollama, logs):
    ollama.pull_error, ollama.pull_error_after = "max retries exceeded: unexpected EOF", 3
    with pytest.raises(OllamaError, match="qwen: pull qwen3:8b: max retries exceeded: unexpected EOF"):
        OllamaModelProvider().create(model(ollama))
    assert ollama.pulls() == 1  # the server said why: no blind retry
    assert "qwen3:8b" not in ollama.installed


def test_an_unknown_tag_fails_with_the_registry_message(ollama, logs):
    ollama.unknown.add("qwen3:999b")
    with pytest.raises(OllamaError, match="file does not exist"):
        OllamaModelProvider().create(model(ollama, tag="qwen3:999b"))


def test_a_stream_cut_mid_pull_is_pulled_again(ollama, logs):
    ollama.pull_cut_after = 3
    created = OllamaModelProvider().create(model(ollama))
    assert ollama.pulls() == 2
    assert created.outs["digest"] == digest_of("qwen3:8b")
    assert any(level == "warn" and "pulling again" in m for level, m, _ in logs)


def test_a_digest_changed_on_the_node_shows_in_read_and_the_update_pulls_again(ollama, logs):
    prov = OllamaModelProvider()
    inputs = model(ollama)
    created = prov.create(inputs)
    ollama.install("qwen3:8b", version=7)  # someone replaced the build behind the state's back
    registry = ollama.publish("qwen3:8b", version=2)
    read = prov.read(created.id, created.outs)
    assert read.id == created.id and read.outs["digest"] == digest_of("qwen3:8b", 7)
    diff = prov.diff(created.id, read.outs, inputs)
    assert diff.changes and not diff.replaces
    updated = prov.update(created.id, read.outs, inputs)
    assert ollama.pulls() == 2
    assert updated.outs["digest"] == registry == updated.outs["pulled_digest"]
    assert not prov.diff(created.id, updated.outs, inputs).changes


def test_a_changed_tag_replaces_the_model(ollama, logs):
    prov = OllamaModelProvider()
    created = prov.create(model(ollama))
    diff = prov.diff(created.id, created.outs, model(ollama, tag="qwen3:14b"))
    assert diff.replaces == ["model"]


def test_a_model_removed_behind_the_state_reads_as_gone(ollama, logs):
    prov = OllamaModelProvider()
    created = prov.create(model(ollama))
    del ollama.installed["qwen3:8b"]
    assert prov.read(created.id, created.outs).id == ""


def test_delete_removes_the_model_and_absent_is_success(ollama, logs):
    prov = OllamaModelProvider()
    created = prov.create(model(ollama))
    prov.delete(created.id, created.outs)
    assert "qwen3:8b" not in ollama.installed
    prov.delete(created.id, created.outs)  # already gone: still success
    assert ollama.calls[("DELETE", "/api/delete")] == 2


def test_a_delete_on_an_unreachable_node_fails_so_the_model_stays_in_state(ollama, logs):
    prov = OllamaModelProvider()
    created = prov.create(model(ollama))
    ollama.close()
    with pytest.raises(OllamaError, match="stays in state"):
        prov.delete(created.id, created.outs)


def test_a_powered_off_node_is_not_contacted(ollama, logs):
    prov = OllamaModelProvider()
    props = model(ollama, active=False)
    created = prov.create(props)
    prov.read(created.id, created.outs)
    prov.delete(created.id, created.outs)
    assert sum(ollama.calls.values()) == 0


def test_progress_counts_bytes_over_all_layers():
    seen = []
    p = Progress(seen.append)
    p.feed({"digest": "a", "total": 100, "completed": 0})
    p.feed({"digest": "b", "total": 300, "completed": 0})
    p.feed({"digest": "a", "total": 100, "completed": 100})   # 100 of 400
    p.feed({"digest": "b", "total": 300, "completed": 100})   # 200 of 400
    p.feed({"digest": "b", "total": 300, "completed": 300})
    assert seen == [0, 25, 50, 100]


def test_resource_names_are_safe_for_urns():
    assert resource_name("qwen", "hf.co/org/model:Q4_K_M") == "qwen-hf.co-org-model-Q4_K_M"


def test_refresh_of_an_unreachable_node_keeps_its_model(ollama, logs):
    prov = OllamaModelProvider()
    created = prov.create(model(ollama))
    ollama.close()  # connection refused: a stopped or unreachable node
    read = prov.read(created.id, created.outs)
    assert read.id == created.id and read.outs["digest"] == created.outs["digest"]


def test_a_model_of_a_loopback_registry_is_pulled_insecure_only_where_the_stack_says(ollama, logs):
    from providers.ollama import OllamaModelArgs

    tag = "127.0.0.1:5000/library/tiny:1"
    OllamaModelProvider().create({**model(ollama, tag=tag), "insecure": True})
    OllamaModelProvider().create(model(ollama, tag="qwen3:8b"))
    bodies = [body for _, path, body in ollama.requests if path == "/api/pull"]
    assert bodies == [{"model": tag, "stream": True, "insecure": True}, {"model": "qwen3:8b", "stream": True}]
    # Unset, the field is not an input at all: models pulled before it existed see no diff.
    assert "insecure" not in OllamaModelArgs(node="vm", model="qwen3:8b").to_props()
    assert OllamaModelArgs(node="vm", model=tag, insecure=True).to_props()["insecure"] is True


# The real Ollama pulling the project's tiny model from the loopback registry (skipped where they were not
# built, except on the project's CI).

def real_model(server, tag):
    props = {"node": "vm", "model": tag, "endpoint": server.url, "ssh": None, "instance": "tensordock:1",
             "active": True, "version": "1", "digest": None, "pulled_digest": None, "pulled": None, "insecure": True}
    assert OllamaModelProvider().check({}, props).failures == []
    return props


def test_the_real_ollama_pulls_from_the_registry_with_progress_and_its_digest(real_ollama, tiny_registry, logs):
    prov = OllamaModelProvider()
    created = prov.create(real_model(real_ollama, tiny_registry.tiny))
    assert created.outs["pulled"] is True
    assert created.outs["digest"] == created.outs["pulled_digest"] == tiny_registry.tiny_digest
    percents = [m for _, m, _ in logs if f"pulling {tiny_registry.tiny}" in m]
    assert percents and percents[-1].endswith(": 100%")
    # Pulled again on the same server: it is there, one read and no pull.
    again = prov.create(real_model(real_ollama, tiny_registry.tiny))
    assert again.outs["pulled"] is False and again.outs["digest"] == tiny_registry.tiny_digest
    prov.delete(created.id, created.outs)
    assert prov.read(created.id, created.outs).id == ""  # the real server answers without it: gone
    prov.delete(created.id, created.outs)  # already gone: success


def test_the_real_ollama_fails_a_missing_tag_and_a_registry_not_said_insecure_clearly(real_ollama, tiny_registry, logs):
    prov = OllamaModelProvider()
    with pytest.raises(OllamaError, match=r"vm: pull 127\.0\.0\.1:\d+/library/tiny:2: pull model manifest: file does not exist"):
        prov.create(real_model(real_ollama, tiny_registry.name("tiny", "2")))
    plain = {**real_model(real_ollama, tiny_registry.tiny), "insecure": None}
    with pytest.raises(OllamaError, match="server gave HTTP response to HTTPS client"):
        prov.create(plain)
