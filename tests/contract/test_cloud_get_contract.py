"""``GpuCloud.get`` means the same on every marketplace (providers/gpu_cloud.py): an instance the vendor
still shows deleted or terminated reads as ``GONE``; one the vendor has forgotten reads as None. Run against
the three loopback clouds."""
import pytest

from core.pricing import NodeRequest, rank_offers
from core.vendors import MARKETPLACES
from providers import gpu_cloud
from providers.gpu_cloud import LaunchSpec, Status
from providers.gpu_instance import GpuInstanceProvider

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXRlc3RrZXk= ops@estate"
REQUEST = NodeRequest(gpu_model="rtx4090", gpu_count=1, min_vram_gb=24, vcpu=4, ram_gb=16, disk_gb=100)


def shown_terminated(fake, cloud: str, iid: str) -> None:
    """The vendor keeps showing the machine, as deleted or terminated (each in its own words)."""
    with fake.lock:
        if cloud == "tensordock":
            fake.instances[iid]["status"] = "deleting"
        elif cloud == "vastai":
            fake.instances[int(iid)]["actual_status"] = "destroyed"
        else:
            fake.pods[iid]["desiredStatus"] = "TERMINATED"


@pytest.mark.parametrize("cloud", MARKETPLACES)
def test_a_terminated_machine_reads_as_gone_and_a_forgotten_one_as_none(clouds, cloud):
    label = f"contract-{cloud}"
    with gpu_cloud.client(cloud) as c:
        offer = rank_offers(REQUEST, c.offers(REQUEST))[0]
        iid = c.launch(offer, LaunchSpec(label=label, image="ubuntu2404", disk_gb=100, ports=(11434,),
                                         ssh_public_key=SSH_KEY, vcpu=4, ram_gb=16))
        assert c.get(iid).status is not Status.GONE

        shown_terminated(clouds[cloud], cloud, iid)
        inst = c.get(iid)
        assert inst is not None and inst.id == iid and inst.status is Status.GONE
        assert [i.id for i in c.find(label)] == []  # never adopted
        assert c.statuses().get(iid, Status.GONE) is Status.GONE
        read = GpuInstanceProvider().read(f"{cloud}:{iid}", {"label": label, "power": "running"})
        assert read.id == ""  # refresh drops it: the next up rents again

        c.terminate(iid)
        assert c.get(iid) is None  # the vendor no longer knows the id
        c.terminate(iid)  # and terminating it again is no error
        assert c.get("does-not-exist" if cloud != "vastai" else "999999") is None


def test_a_deleted_tensordock_machine_gives_its_gpu_and_ports_back(clouds):
    """TensorDock's host node lists what is free to rent; a deleted machine's GPU and ports are free again,
    so a re-rent of the same shape on the same host succeeds as it would there."""
    td = clouds["tensordock"]
    host = td.hostnodes[0]
    gpu = host["available_resources"]["gpus"][0]
    before = (gpu["availableCount"], sorted(host["available_resources"]["available_ports"]))
    with gpu_cloud.client("tensordock") as c:
        offer = next(o for o in c.offers(NodeRequest(gpu_model="rtx4090")) if o.offer_id.startswith(f"{host['id']}/"))
        iid = c.launch(offer, LaunchSpec(label="l-back", image="ubuntu2404", disk_gb=100, ports=(22, 11434),
                                         ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFXdBfpWUE7y0nZ8rsibV0rc/1JxweHTokQjkgvrZxWD"))
        assert gpu["availableCount"] == before[0] - 1
        assert len(host["available_resources"]["available_ports"]) < len(before[1])
        c.terminate(iid)
    assert (gpu["availableCount"], sorted(host["available_resources"]["available_ports"])) == before
