"""Placement and estimates on hand-made offer lists."""
import pytest

from core.pricing import NodeRequest, Offer, PlacementError, choose_offer, choose_instance_type, rank_offers


def offer(oid, price, provider="vastai", region="DE", gpu="rtx4090", count=1, rel=0.99, spot=False, **kw):
    return Offer(provider=provider, offer_id=oid, region=region, gpu_model=gpu, gpu_count=count,
                 vram_gb=24 * count, vcpu=16, ram_gb=64, disk_gb=500, price_per_hour=price, reliability=rel,
                 spot=spot, **kw)


REQ = NodeRequest(gpu_model="rtx4090", gpu_count=1, min_vram_gb=24, vcpu=4, ram_gb=16, disk_gb=100)


def test_cheapest_that_meets_every_constraint():
    offers = [offer("a", 0.50), offer("b", 0.30, gpu="rtx3090"), offer("c", 0.35), offer("d", 0.20, rel=0.5)]
    req = REQ.model_copy(update={"min_reliability": 0.9})
    assert choose_offer(req, offers).offer_id == "c"


def test_ties_are_deterministic_region_then_reliability_then_id():
    offers = [offer("z", 0.3, region="US", rel=0.99), offer("y", 0.3, region="DE", rel=0.95),
              offer("x", 0.3, region="DE", rel=0.97)]
    req = REQ.model_copy(update={"regions": ("DE", "US")})
    assert [o.offer_id for o in rank_offers(req, offers)] == ["x", "y", "z"]
    assert [o.offer_id for o in rank_offers(req, list(reversed(offers)))] == ["x", "y", "z"]


def test_region_filter_and_price_cap():
    offers = [offer("a", 0.3, region="US"), offer("b", 0.45, region="DE")]
    req = REQ.model_copy(update={"regions": ("DE",), "max_price_per_hour": 0.40})
    with pytest.raises(PlacementError) as err:
        choose_offer(req, offers)
    assert err.value.reasons == {"region": 1, "price": 1}
    assert "1 by price" in str(err.value) and "1 by region" in str(err.value)


def test_spot_market_must_match():
    offers = [offer("a", 0.2, spot=True), offer("b", 0.3)]
    assert choose_offer(REQ.model_copy(update={"spot": True}), offers).offer_id == "a"
    assert choose_offer(REQ, offers).offer_id == "b"


def test_count_and_resources():
    offers = [offer("one", 0.2), offer("two", 0.5, count=2)]
    assert choose_offer(REQ.model_copy(update={"gpu_count": 2, "min_vram_gb": 48}), offers).offer_id == "two"
    with pytest.raises(PlacementError, match="no offers listed"):
        choose_offer(REQ, [])


def test_cloud_instance_types_from_dated_table():
    req = NodeRequest(gpu_model="a10g", vcpu=4, ram_gb=16, spot=True)
    assert choose_instance_type("aws", req).offer_id == "g5.xlarge"
    bigger = req.model_copy(update={"vcpu": 8, "ram_gb": 32})
    assert choose_instance_type("aws", bigger).offer_id == "g5.2xlarge"
    assert choose_instance_type("gcp", NodeRequest(gpu_model="l4", vcpu=4, ram_gb=16)).offer_id == "g2-standard-4"
    with pytest.raises(PlacementError, match="unknown aws instance type"):
        choose_instance_type("aws", req, pinned="x1.huge")


def test_monthly_estimate_is_hours_times_price():
    from core.config import parse_spec
    from core.pricing import estimate_estate
    from tests.mocks import stack_estate

    spec = parse_spec(stack_estate("prod"))
    est = estimate_estate(spec)
    by = {n.node: n for n in est.nodes}
    assert by["inference"].monthly_usd == pytest.approx(0.40 * 120)
    assert by["burst"].hourly_usd == 0.42 and by["burst"].basis == "instance g5.xlarge"
    assert by["vps"].monthly_usd == 0
    # seed 003's serverless endpoint: 60 busy worker-hours at AMPERE_24's flex rate, no active worker
    (endpoint,) = est.endpoints
    assert endpoint.worker_hourly_usd == pytest.approx(0.00019 * 3600) and endpoint.min_workers == 0
    assert endpoint.monthly_usd == pytest.approx(60 * 0.00019 * 3600, abs=0.01)
    # seed 003's Fly.io fallback around the clock, and its Cloud Run L4 for 30 busy hours
    by_service = {s.service: s for s in est.services}
    assert by_service["chat-fallback"].monthly_usd == pytest.approx((3.89 + 1.5 * 5) / 720 * 730 + 0.15, abs=0.01)
    l4 = 3600 * (0.0001867 + 4 * 0.000018 + 16 * 0.000002)
    assert by_service["llama-l4"].monthly_usd == pytest.approx(30 * l4, abs=0.01)
    assert est.monthly_usd == pytest.approx(sum(n.monthly_usd for n in est.nodes) + endpoint.monthly_usd + 5
                                            + sum(s.monthly_usd for s in est.services))
