"""A vendor is one record in core/vendors.py: what reads vendor facts reads them there, so a record added
is what the clients, the provider's config, the policy pack and the sandbox see."""
import importlib
import inspect

import pytest

from core.vendors import MARKETPLACE_CONFIG_KEYS, MARKETPLACES, SPOT_VENDORS, VENDORS, Vendor


@pytest.mark.parametrize("name", MARKETPLACES)
def test_every_marketplace_has_a_client_module_implementing_the_interface(name):
    from providers.gpu_cloud import GpuCloud

    module = importlib.import_module(f"providers.{name}")
    assert "Client" in module.__all__
    assert inspect.isclass(module.Client) and issubclass(module.Client, GpuCloud)
    assert not inspect.isabstract(module.Client)
    assert module.Client.name == name


@pytest.mark.parametrize("name", MARKETPLACES)
def test_the_client_speaks_to_the_address_and_with_the_key_its_record_names(name, monkeypatch):
    from providers import gpu_cloud

    info = Vendor(name).info
    monkeypatch.setenv(info.url_env, "http://127.0.0.1:9/x")
    monkeypatch.setenv(info.credential_env, "k")
    with gpu_cloud.client(name) as c:
        assert c.http.account[0].rstrip("/") == "http://127.0.0.1:9/x"
    monkeypatch.delenv(info.url_env)
    with gpu_cloud.client(name, {f"gpu-estate:{info.url_key}": "http://127.0.0.1:9/y"}) as c:
        assert c.http.account[0].rstrip("/") == "http://127.0.0.1:9/y"


def test_the_gpu_instance_provider_takes_each_marketplaces_config_keys():
    from providers.gpu_instance import CONFIG_KEYS

    for name in MARKETPLACES:
        info = Vendor(name).info
        assert {f"gpu-estate:{info.credential_key}", f"gpu-estate:{info.url_key}"} <= set(CONFIG_KEYS)
    assert tuple(CONFIG_KEYS) == MARKETPLACE_CONFIG_KEYS


def test_the_serverless_provider_reads_runpods_record():
    from core.vendors import RUNPOD_SERVERLESS_URL_KEY
    from providers.runpod_serverless import CONFIG_KEYS

    info = Vendor.RUNPOD.info
    assert set(CONFIG_KEYS) == {f"gpu-estate:{k}" for k in (info.credential_key, info.url_key,
                                                             RUNPOD_SERVERLESS_URL_KEY)}


def test_the_policy_pack_defaults_come_from_the_records():
    from policy import safety

    assert set(safety.DEFAULTS["providers"]) >= {v.value for v in Vendor}
    assert safety.DEFAULTS["spot_providers"] == list(SPOT_VENDORS)
    assert set(SPOT_VENDORS) == {v.value for v, info in VENDORS.items() if info.spot}
    assert "tensordock" not in SPOT_VENDORS and "host" not in SPOT_VENDORS


def test_the_sandbox_points_every_marketplace_at_its_loopback_server():
    from types import SimpleNamespace

    from sandbox import vendor_env

    fakes = {name: SimpleNamespace(url=f"http://127.0.0.1:{9000 + i}") for i, name in enumerate(MARKETPLACES)}
    env = vendor_env(fakes)
    for name in MARKETPLACES:
        info = Vendor(name).info
        assert env[info.url_env].startswith(fakes[name].url + "/")
        assert env[info.credential_env]
    assert env["TENSORDOCK_API_URL"] == "http://127.0.0.1:9000/api/v2"  # the vendor's own path
