"""An AWS node's EC2 vCPU quota checked before launch, read with the AWS SDK (boto3) from a loopback
Service Quotas that pages its list as the real one does."""
import pytest

from core import catalog
from providers import aws_quota

G_SPOT = {"ServiceCode": "ec2", "QuotaName": "All G and VT Spot Instance Requests", "QuotaCode": "L-3819A6DF",
          "Value": 0.0, "Unit": "None", "Adjustable": True}
OTHERS = [{"ServiceCode": "ec2", "QuotaName": f"Other quota {i}", "QuotaCode": f"L-0000000{i}", "Value": 5.0}
          for i in range(5)]


def props(**extra):
    return {"node": "burst", "region": "ca-central-1", "instance_type": "g5.xlarge", "market": "spot",
            "vcpus": 4, "quota_names": catalog.aws_quota_names("g5.xlarge", spot=True), "quota": None, **extra}


def test_families_map_to_their_quotas():
    assert catalog.aws_quota_names("g6e.2xlarge", spot=True) == ["All G and VT Spot Instance Requests"]
    assert catalog.aws_quota_names("p5.48xlarge", spot=True)[0] == "All P5 Spot Instance Requests"
    assert catalog.aws_quota_names("p4d.24xlarge", spot=True)[0] == "All P4, P3 and P2 Spot Instance Requests"
    assert catalog.aws_quota_names("p3.2xlarge", spot=False) == ["Running On-Demand P instances"]
    assert catalog.aws_quota_names("m5.large", spot=True) == []


def test_a_spot_node_past_its_quota_is_refused_naming_the_node_the_quota_and_the_figures(aws):
    aws.quotas = [*OTHERS, G_SPOT]  # on the second page of the list
    with pytest.raises(aws_quota.QuotaError) as err:
        aws_quota.QuotaProvider().create(props())
    message = str(err.value)
    assert "node 'burst': g5.xlarge (spot) needs 4 vCPUs" in message
    assert "'All G and VT Spot Instance Requests' (L-3819A6DF) in ca-central-1, which allows 0" in message
    assert aws.regions and set(aws.regions) == {"ca-central-1"}


def test_enough_quota_passes_and_a_larger_need_is_checked_again(aws):
    aws.quotas = [*OTHERS, {**G_SPOT, "Value": 8.0}]
    provider = aws_quota.QuotaProvider()
    outs = provider.create(props()).outs
    assert outs["quota"] == {"name": G_SPOT["QuotaName"], "code": "L-3819A6DF", "value": 8.0}
    bigger = props(instance_type="g5.12xlarge", vcpus=48)
    assert provider.diff("quota-burst", outs, bigger).changes
    assert not provider.diff("quota-burst", outs, props()).changes
    with pytest.raises(aws_quota.QuotaError, match="needs 48 vCPUs"):
        provider.update("quota-burst", outs, bigger)


def test_an_older_accounts_single_p_quota_is_used_when_the_newer_name_is_absent(aws):
    aws.quotas = [{**G_SPOT, "QuotaName": "All P Spot Instance Requests", "QuotaCode": "L-7212CCBC", "Value": 192}]
    outs = aws_quota.QuotaProvider().create(props(instance_type="p5.48xlarge", vcpus=192, quota_names=(
        catalog.aws_quota_names("p5.48xlarge", spot=True)))).outs
    assert outs["quota"]["code"] == "L-7212CCBC"


def test_a_quota_that_cannot_be_read_does_not_stop_the_launch(aws):
    aws.quotas = [*OTHERS]  # not listed at all
    assert aws_quota.QuotaProvider().create(props()).outs["quota"] is None
    aws.close()  # nothing answers
    assert aws_quota.QuotaProvider().create(props()).outs["quota"] is None
