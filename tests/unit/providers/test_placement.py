"""Placement across clouds: a machine that exists is never left behind for another cloud's."""
import pytest

from core.pricing import NodeRequest
from providers.gpu_cloud import Instance, LaunchSpec, Status
from providers.http import NoCapacity
from providers.placement import Placement


class Cloud:
    """What placement asks of a cloud: the machines carrying a label (and nothing to rent)."""

    single_rental_offers = False

    def __init__(self, name, labelled=()):
        self.name, self.labelled, self.asked = name, list(labelled), 0

    def find(self, label):
        self.asked += 1
        return [i for i in self.labelled if i.label == label]

    def offers(self, request):
        return []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def placing(clouds, settle):
    request = NodeRequest(gpu_model="rtx4090")
    return Placement().place("est-sandbox-gpu", [c.name for c in clouds], {c.name: c for c in clouds}.__getitem__,
                             request, lambda cloud: LaunchSpec(label="est-sandbox-gpu", image="x", disk_gb=10),
                             settle)


def test_an_adopted_machine_that_cannot_run_fails_the_create_instead_of_renting_elsewhere():
    outbid = Instance(id="7", label="est-sandbox-gpu", status=Status.STOPPED)
    vast, runpod = Cloud("vastai", [outbid]), Cloud("runpod")

    def settle(c, placed):
        raise NoCapacity("outbid: re-bidding would pass the node's ceiling")

    with pytest.raises(NoCapacity, match="outbid"):
        placing([vast, runpod], settle)
    assert runpod.asked == 0  # the next cloud was never tried: the labelled machine is still the node's


def test_a_cloud_with_nothing_for_the_node_hands_over_to_the_next():
    running = Instance(id="9", label="est-sandbox-gpu", status=Status.RUNNING)
    vast, runpod = Cloud("vastai"), Cloud("runpod", [running])
    placed = placing([vast, runpod], lambda c, p: (c.name, p.instance_id))
    assert placed == ("runpod", "9") and vast.asked == 1
