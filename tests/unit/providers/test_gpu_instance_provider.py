"""The GPU instance dynamic provider driven directly against the loopback vendor servers."""
import pytest

from core.pricing import NodeRequest
from core.spend import UNRENTED
from core.vendors import machine_id
from providers.gpu_instance import PROVIDER_VERSION, GpuInstanceArgs, GpuInstanceProvider, LaunchInputs, split_id
from providers.http import CloudError, NoCapacity

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXRlc3RrZXk= ops@estate"


def props(clouds=("tensordock",), gpu="rtx4090", count=1, spot=False, power="running", regions=(), bid=None,
          label="gpu-estate-test-inference", max_price=None, image="ubuntu2404", ports=(11434,)):
    args = GpuInstanceArgs(
        label=label, clouds=list(clouds),
        request=NodeRequest(gpu_model=gpu, gpu_count=count, min_vram_gb=24 * count, vcpu=4, ram_gb=16, disk_gb=100,
                            regions=tuple(regions), spot=spot, max_price_per_hour=max_price),
        launch=LaunchInputs(image=image, disk_gb=100, ports=list(ports), ssh_public_key=SSH_KEY, vcpu=4, ram_gb=16),
        power=power, bid_per_hour=bid, stamps={"hours_per_month": 120})
    return {**args.to_props(), "version": PROVIDER_VERSION}


def checked(p):
    result = GpuInstanceProvider().check({}, p)
    assert result.failures == []
    return result.inputs


@pytest.mark.parametrize("cloud", ["tensordock", "vastai", "runpod"])
def test_create_read_stop_start_delete(clouds, cloud):
    fake = clouds[cloud]
    prov = GpuInstanceProvider()
    inputs = checked(props(clouds=[cloud]))
    created = prov.create(inputs)
    assert created.id.startswith(f"{cloud}:")
    assert created.outs["status"] == "running"
    assert created.outs["ports"]["11434"] > 0
    assert created.outs["launch_price_per_hour"] > 0
    assert len(fake.alive()) == 1

    read = prov.read(created.id, created.outs)
    assert read.id == created.id and read.inputs["power"] == "running"

    stopped = prov.update(created.id, created.outs, {**inputs, "power": "stopped"})
    assert stopped.outs["status"] == "stopped"
    assert len(fake.alive()) == 1  # stopped, not destroyed: the disk stays
    started = prov.update(created.id, stopped.outs, {**inputs, "power": "running"})
    assert started.outs["status"] == "running"

    prov.delete(created.id, started.outs)
    assert fake.alive() == []
    prov.delete(created.id, started.outs)  # already gone: idempotent
    assert prov.read(created.id, started.outs).id == ""


def test_cheapest_offer_in_region_order(clouds):
    created = GpuInstanceProvider().create(checked(props(regions=["Germany", "Netherlands"])))
    # Amsterdam is cheaper than Frankfurt: price decides before region preference.
    assert created.outs["offer_id"].startswith("hn-ams-1/")
    created_de = GpuInstanceProvider().create(checked(props(regions=["Germany"], label="other")))
    assert created_de.outs["offer_id"].startswith("hn-fra-1/")


@pytest.mark.money
def test_lost_create_response_adopts_the_instance(clouds):
    td = clouds["tensordock"]
    td.inject("drop", method="POST", path="/api/v2/instances")
    created = GpuInstanceProvider().create(checked(props()))
    assert len(td.alive()) == 1
    assert created.outs["instance_id"] == td.alive()[0]["id"]
    assert td.calls[("POST", "/api/v2/instances")] == 1


@pytest.mark.money
def test_next_up_adopts_instead_of_renting_again(clouds):
    vast = clouds["vastai"]
    first = GpuInstanceProvider().create(checked(props(clouds=["vastai"], gpu="rtx3090", count=2)))
    again = GpuInstanceProvider().create(checked(props(clouds=["vastai"], gpu="rtx3090", count=2)))
    assert again.id == first.id
    assert len(vast.alive()) == 1


@pytest.mark.money
def test_a_moved_resource_that_adopted_the_machine_keeps_it_when_the_old_one_is_deleted(clouds):
    # A node moved to a new URN without an alias: the engine creates the new resource (which adopts the
    # running machine by its label), then deletes the old one, in one run of one provider process.
    td = clouds["tensordock"]
    old = GpuInstanceProvider().create(checked(props()))
    new = GpuInstanceProvider().create(checked(props()))
    assert new.id == old.id
    GpuInstanceProvider().delete(old.id, old.outs)
    assert [i["id"] for i in td.alive()] == [old.outs["instance_id"]]  # still rented, still running
    # The new resource owns it: its own delete (a destroy) does terminate it.
    from providers.gpu_instance import forget_adoptions
    forget_adoptions()  # the destroy is a later run
    GpuInstanceProvider().delete(new.id, new.outs)
    assert td.alive() == []


def test_rate_limit_storm_and_5xx_are_retried(clouds):
    rp = clouds["runpod"]
    rp.inject("status", count=4, status=429, body="Too Many Requests")
    rp.inject("status", count=2, status=503)
    created = GpuInstanceProvider().create(checked(props(clouds=["runpod"])))
    assert created.outs["status"] == "running"
    assert len(rp.alive()) == 1


@pytest.mark.money
def test_5xx_on_create_is_not_resent_blindly(clouds):
    vast = clouds["vastai"]
    vast.inject("status", method="PUT", path="/api/v0/asks/", status=502)
    with pytest.raises(CloudError, match="lists no instance with this label"):
        GpuInstanceProvider().create(checked(props(clouds=["vastai"])))
    assert vast.alive() == []
    assert sum(n for (m, p), n in vast.calls.items() if m == "PUT" and p.startswith("/api/v0/asks/")) == 1


def test_offer_taken_moves_to_next_offer(clouds):
    vast = clouds["vastai"]
    vast.inject("status", method="PUT", path="/api/v0/asks/5004/", status=404,
                body={"success": False, "error": "no_such_ask", "msg": "taken"})
    created = GpuInstanceProvider().create(checked(props(clouds=["vastai"])))
    assert created.outs["offer_id"] == "5003"


def test_failover_to_next_cloud_and_error_lists_each(clouds):
    clouds["runpod"].capacity["NVIDIA GeForce RTX 4090"] = 0
    created = GpuInstanceProvider().create(checked(props(clouds=["runpod", "vastai"])))
    assert created.id.startswith("vastai:")
    for o in clouds["vastai"].offers:
        o["rented"] = True
    with pytest.raises(NoCapacity) as err:
        GpuInstanceProvider().create(checked(props(clouds=["runpod", "vastai"], label="second")))
    assert "runpod:" in str(err.value) and "vastai:" in str(err.value)


def test_a_vast_node_fails_over_to_a_runpod_pod_that_runs_its_image_with_its_command(clouds):
    """A Vast.ai node's start script only starts its workload where RunPod may take it over (core/rules):
    the pod runs the image's own entrypoint with the node's command, and no script is sent to RunPod."""
    for o in clouds["vastai"].offers:
        o["rented"] = True
    p = props(clouds=["vastai", "runpod"], image="vllm/vllm-openai:v0.11.0", ports=(8000,))
    p["launch"] = {**p["launch"], "onstart": "set -eu\nexec vllm serve --model Qwen/Qwen2.5-7B-Instruct\n",
                   "args": ["--model", "Qwen/Qwen2.5-7B-Instruct"]}
    created = GpuInstanceProvider().create(checked(p))
    assert created.id.startswith("runpod:")
    pod = clouds["runpod"].pods[created.id.split(":", 1)[1]]
    assert pod["imageName"] == "vllm/vllm-openai:v0.11.0" and pod["dockerArgs"] == "--model Qwen/Qwen2.5-7B-Instruct"
    assert "exec vllm" not in repr(clouds["runpod"].requests)


@pytest.mark.money
def test_price_ceiling_refuses_dear_offers(clouds):
    with pytest.raises(NoCapacity, match="by price"):
        GpuInstanceProvider().create(checked(props(max_price=0.10)))
    assert clouds["tensordock"].alive() == []


def test_insufficient_credit_is_a_clear_error(clouds):
    clouds["tensordock"].balance = 0.5
    with pytest.raises(CloudError, match="add at least \\$1"):
        GpuInstanceProvider().create(checked(props()))


def test_bad_credentials(clouds):
    clouds["vastai"].inject("status", count=10, status=401, body={"error": "unauthorized"})
    with pytest.raises(CloudError, match="credentials refused"):
        GpuInstanceProvider().create(checked(props(clouds=["vastai"])))


def test_spot_bid_and_preemption_seen_on_refresh(clouds):
    vast = clouds["vastai"]
    prov = GpuInstanceProvider()
    inputs = checked(props(clouds=["vastai"], gpu="rtx3090", count=2, spot=True, bid=0.25))
    created = prov.create(inputs)
    inst = vast.alive()[0]
    assert inst["bid"] == 0.25
    updated = prov.update(created.id, created.outs, {**inputs, "bid_per_hour": 0.3})
    assert vast.alive()[0]["bid"] == 0.3 and updated.outs["bid_per_hour"] == 0.3
    vast.preempt(inst["id"])
    assert prov.read(created.id, updated.outs).id == ""
    again = prov.create(inputs)
    assert again.id != created.id and len(vast.alive()) == 1


def test_runpod_spot_bid_per_gpu(clouds):
    rp = clouds["runpod"]
    GpuInstanceProvider().create(checked(props(clouds=["runpod"], spot=True, bid=0.3)))
    pod = rp.alive()[0]
    assert pod["interruptible"] and pod["costPerHr"] == 0.3


def test_drift_stopped_behind_state_shows_in_read(clouds):
    td = clouds["tensordock"]
    prov = GpuInstanceProvider()
    created = prov.create(checked(props()))
    td.instances[created.outs["instance_id"]]["status"] = "stopped"
    read = prov.read(created.id, created.outs)
    assert read.inputs["power"] == "stopped"
    diff = prov.diff(created.id, read.outs, checked(props()))
    assert diff.changes and diff.replaces == []


@pytest.mark.money
@pytest.mark.parametrize("cloud", ["tensordock", "vastai", "runpod"])
def test_a_node_its_watcher_stopped_is_not_drift_under_power_idle(clouds, cloud):
    fake = clouds[cloud]
    prov = GpuInstanceProvider()
    idle = checked(props(clouds=(cloud,), power="idle"))
    created = prov.create(idle)
    assert created.outs["status"] == "running"  # rented running; the watcher decides afterwards
    # The watcher stops it through the vendor's API (here through the same client).
    prov.update(created.id, created.outs, {**idle, "power": "stopped"})
    read = prov.read(created.id, created.outs)
    assert read.outs["status"] == "stopped" and read.inputs["power"] == "idle"
    assert not prov.diff(created.id, read.outs, checked(props(clouds=(cloud,), power="idle"))).changes
    # An `up` that updates the node for another reason leaves it stopped, without a start call.
    starts = sum(n for (m, path), n in fake.calls.items() if "start" in path.lower() or "resume" in str(path).lower())
    updated = prov.update(created.id, read.outs, checked(props(clouds=(cloud,), power="idle", max_price=0.9)))
    assert updated.outs["status"] == "stopped"
    assert sum(n for (m, path), n in fake.calls.items() if "start" in path.lower() or "resume" in str(path).lower()) == starts


def test_power_values_are_checked_by_name():
    failures = GpuInstanceProvider().check({}, props(power="asleep")).failures
    assert [f.property for f in failures] == ["power"] and "running, stopped, idle" in failures[0].reason


@pytest.mark.money
def test_failed_delete_raises_so_state_keeps_it(clouds):
    td = clouds["tensordock"]
    prov = GpuInstanceProvider()
    created = prov.create(checked(props()))
    td.inject("status", count=20, method="DELETE", status=500)
    with pytest.raises(CloudError):
        prov.delete(created.id, created.outs)
    assert len(td.alive()) == 1


@pytest.mark.money
def test_diff_replaces_hardware_updates_power():
    prov = GpuInstanceProvider()
    old = checked(props())
    assert prov.diff("tensordock:1", old, checked(props(gpu="rtx3090"))).replaces == ["request"]
    assert prov.diff("tensordock:1", old, checked(props(image="ubuntu2204"))).replaces == ["launch"]
    d = prov.diff("tensordock:1", old, checked(props(power="stopped")))
    assert d.changes and d.replaces == [] and d.delete_before_replace
    assert not prov.diff("tensordock:1", old, checked(props())).changes


@pytest.mark.money
def test_pinning_the_running_tag_by_digest_keeps_the_machine_and_another_image_replaces_it():
    prov = GpuInstanceProvider()
    digest = "@sha256:" + "a" * 64
    old = checked(props(image="ollama/ollama:0.12.6"))
    pinned = prov.diff("tensordock:1", old, checked(props(image="ollama/ollama:0.12.6" + digest)))
    assert pinned.changes and pinned.replaces == []  # the input is updated in place; the machine stays
    assert prov.diff("tensordock:1", checked(props(image="ollama/ollama:0.12.6" + digest)),
                     checked(props(image="ollama/ollama:0.12.6"))).replaces == []
    assert prov.diff("tensordock:1", old, checked(props(image="ollama/ollama:0.12.7"))).replaces == ["launch"]
    other = checked(props(image="ollama/ollama:0.12.6@sha256:" + "b" * 64))
    assert prov.diff("tensordock:1", checked(props(image="ollama/ollama:0.12.6" + digest)), other).replaces == ["launch"]


def test_check_names_bad_inputs():
    bad = props(clouds=["lambda"], power="paused")
    bad["request"]["gpu_count"] = 0
    failures = {f.property: f.reason for f in GpuInstanceProvider().check({}, bad).failures}
    assert set(failures) == {"clouds", "power", "request"}
    assert "lambda" in failures["clouds"]


@pytest.mark.money
def test_concurrent_creates_racing_for_offers_all_place_once_each(clouds):
    from concurrent.futures import ThreadPoolExecutor

    vast = clouds["vastai"]
    vast.offers = [vast.offer(9000 + i, "RTX 4090", 1, 0.30 + i / 1000, 0.2, "US", 0.99) for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(
            lambda i: GpuInstanceProvider().create(checked(props(clouds=["vastai"], label=f"race-{i}"))), range(8)))
    assert len({r.id for r in results}) == 8
    assert sorted(i["label"] for i in vast.alive()) == sorted(f"race-{i}" for i in range(8))


@pytest.mark.money
def test_placement_only_edits_update_in_place_and_a_machine_edit_names_its_key(monkeypatch):
    warned = []
    monkeypatch.setattr("pulumi.log.warn", lambda msg, *a, **k: warned.append(msg))
    prov = GpuInstanceProvider()
    old = checked(props(clouds=["tensordock"], regions=["Germany"], max_price=0.40))
    for edit in (props(clouds=["tensordock"], regions=["Germany"], max_price=0.45),   # a higher ceiling
                 props(clouds=["tensordock"], regions=["Germany", "Netherlands"], max_price=0.40),  # a region
                 props(clouds=["tensordock", "runpod"], regions=["Germany"], max_price=0.40)):  # failover
        d = prov.diff("tensordock:1", old, checked(edit))
        assert d.changes and d.replaces == [], d.replaces
    assert warned == []
    d = prov.diff("tensordock:1", old, checked(props(clouds=["tensordock"], regions=["Germany"], max_price=0.40,
                                                        count=2)))
    assert d.replaces == ["request"]
    assert "request.gpu_count" in warned[-1] and "request.min_vram_gb" in warned[-1]
    d = prov.diff("tensordock:1", old, checked(props(clouds=["runpod"], regions=["Germany"], max_price=0.40)))
    assert d.replaces == ["clouds"]  # the machine's own cloud is no longer allowed


@pytest.mark.money
def test_an_outbid_vast_instance_is_rebid_within_its_ceiling_and_runs(clouds, monkeypatch):
    monkeypatch.setenv("ESTATE_READY_TIMEOUT_SECONDS", "5")
    vast = clouds["vastai"]
    prov = GpuInstanceProvider()
    spot = checked(props(clouds=["vastai"], gpu="rtx3090", count=2, spot=True, bid=0.2, max_price=0.3))
    created = prov.create(spot)
    iid = int(created.outs["instance_id"])
    vast.outbid(iid, min_bid=0.25)  # paused, not deleted: it stays listed and bills its disk
    read = prov.read(created.id, created.outs)
    assert read.id == created.id and read.outs["status"] == "stopped"
    started = prov.update(created.id, read.outs, spot)  # the next `up`: power running
    assert started.outs["status"] == "running"
    assert vast.instances[iid]["bid"] == pytest.approx(0.2525) and len(vast.alive()) == 1


@pytest.mark.money
def test_an_outbid_vast_instance_above_its_ceiling_fails_at_once_saying_why(clouds, monkeypatch):
    monkeypatch.setenv("ESTATE_READY_TIMEOUT_SECONDS", "900")  # a wait would show as a hung test
    vast = clouds["vastai"]
    prov = GpuInstanceProvider()
    spot = checked(props(clouds=["vastai"], gpu="rtx3090", count=2, spot=True, bid=0.2, max_price=0.3))
    created = prov.create(spot)
    vast.outbid(int(created.outs["instance_id"]), min_bid=0.5)
    with pytest.raises(NoCapacity, match="outbid.*ceiling max_price_per_hour"):
        prov.update(created.id, prov.read(created.id, created.outs).outs, spot)
    assert vast.instances[int(created.outs["instance_id"])]["bid"] == 0.2  # no bid above the ceiling


@pytest.mark.money
def test_a_vast_start_left_in_scheduling_gives_up_and_leaves_it_stopped(clouds, monkeypatch):
    monkeypatch.setenv("ESTATE_SCHEDULING_SECONDS", "0.5")
    monkeypatch.setenv("ESTATE_READY_TIMEOUT_SECONDS", "900")
    vast = clouds["vastai"]
    prov = GpuInstanceProvider()
    inputs = checked(props(clouds=["vastai"], gpu="rtx3090", count=2))
    created = prov.create(inputs)
    iid = int(created.outs["instance_id"])
    stopped = prov.update(created.id, created.outs, {**inputs, "power": "stopped"})
    vast.busy(iid)
    with pytest.raises(NoCapacity, match="stayed in scheduling"):
        prov.update(created.id, stopped.outs, inputs)
    assert vast.instances[iid]["intended_status"] == "stopped"  # it will not start (and bill) by surprise


def test_nodes_placed_at_once_start_at_different_offers_of_the_same_price_only():
    from core.pricing import Offer
    from providers.placement import spread

    def offer(i, price):
        return Offer(provider="vastai", offer_id=str(i), region="", gpu_model="rtx4090", gpu_count=1, vram_gb=24,
                     price_per_hour=price)

    ranked = [offer(0, 0.30), offer(1, 0.30), offer(2, 0.301), offer(3, 0.40), offer(4, 0.50)]
    firsts = {spread(ranked, f"gpu-estate-prod-node-{i}")[0].offer_id for i in range(40)}
    assert firsts == {"0", "1", "2"}  # spread over the offers of the cheapest price, never a dearer one
    for i in range(40):
        order = [o.offer_id for o in spread(ranked, f"gpu-estate-prod-node-{i}")]
        assert sorted(order[:3]) == ["0", "1", "2"] and order[3:] == ["3", "4"]


def test_a_tensordock_vm_is_launched_with_the_generated_host_key_and_reports_it(clouds):
    from providers.host_key import STAGED
    from providers.ssh_key import generate

    pair = generate("vm host key")
    p = props()
    p["launch"]["cloud_init"] = "#cloud-config\nruncmd:\n  - [echo, hi]\n"
    p["host_key"] = {"private": pair["private_key"], "public": pair["public_key"]}
    created = GpuInstanceProvider().create(checked(p))
    assert created.outs["host_public_key"] == " ".join(pair["public_key"].split()[:2])
    (body,) = [b for m, path, b in clouds["tensordock"].requests if m == "POST" and path.endswith("/instances")]
    files = {f["path"]: f["content"] for f in body["data"]["attributes"]["cloud_init"]["write_files"]}
    assert files[STAGED] == pair["private_key"]
    # Adopted by label (a machine this run did not launch): its key is not known, so none is claimed.
    forget = GpuInstanceProvider().create(checked(p))
    assert forget.outs["host_public_key"] is None and len(clouds["tensordock"].alive()) == 1


def test_a_stopped_machine_keeps_the_address_it_had_where_its_vendor_reports_none(clouds):
    """RunPod reports no runtime for a stopped pod: refresh keeps its address and ports, so the gateway's
    route to it stays as it was and is right again when the pod is woken."""
    prov = GpuInstanceProvider()
    created = prov.create(checked(props(clouds=["runpod"], power="idle")))
    assert created.outs["ports"]["11434"] > 0
    (pod,) = clouds["runpod"].pods.values()
    pod["desiredStatus"], pod["runtime"] = "EXITED", None  # its idle watcher stopped it
    read = prov.read(created.id, created.outs)
    assert read.outs["status"] == "stopped" and read.inputs["power"] == "idle"
    assert (read.outs["address"], read.outs["ports"]) == (created.outs["address"], created.outs["ports"])


@pytest.mark.parametrize("instance, parsed", [
    ("vastai:123", ("vastai", "123")),
    ("runpod:abc:def", ("runpod", "abc:def")),  # the vendor's id is everything after the first colon
    (f"{UNRENTED}gpu-a", None),                  # not rented when the document was written
    ("i-0123456789abcdef0", None),               # an AWS VM's id
    ("projects/p/zones/z/instances/gpu", None),  # a GCP VM's id
    ("vastai:", None),
    ("lambda:42", None),
])
def test_marketplace_ids_are_parsed_in_one_place(instance, parsed):
    """The resource, the spend watcher and the wake hook read ``<cloud>:<id>`` the same way."""
    assert machine_id(instance) == parsed
    if parsed is None:
        with pytest.raises(ValueError, match="not a GPU instance id"):
            split_id(instance)
    else:
        assert split_id(instance) == parsed
