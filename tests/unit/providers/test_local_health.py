"""The health agent's local process is run as the spend watcher's is: the same inputs decide an update, the
secrets reach it in its environment only."""
import dataclasses
import json
import os

import requests

from providers.local import alive
from providers.local_health import LocalHealthAgentArgs, LocalHealthAgentProvider
from providers.local_spend import LocalSpendWatcherArgs, LocalSpendWatcherProvider
from providers.wait import wait_for, within


def test_each_provider_compares_exactly_its_inputs():
    assert LocalSpendWatcherProvider.INPUTS == tuple(f.name for f in dataclasses.fields(LocalSpendWatcherArgs))
    assert set(LocalHealthAgentProvider.INPUTS) == {f.name for f in dataclasses.fields(LocalHealthAgentArgs)}
    assert set(LocalHealthAgentProvider.RESTARTS) < set(LocalHealthAgentProvider.INPUTS)


def test_the_agent_runs_serves_its_view_with_the_key_and_stops(tmp_path):
    document = {"stack": "s", "down_after": 1, "timeout_seconds": 1, "format": "json", "budget_usd": 1, "checks": [],
                "nodes": [], "aliases": {}, "external": {}, "deployments": {}, "prices": {}}
    provider = LocalHealthAgentProvider()
    props = {"document": json.dumps(document), "every_seconds": 0.5, "state_dir": str(tmp_path), "master_key": "sk-local-key",
             "port": 0, "webhook": None}
    outs = provider.create(props).outs
    try:
        assert alive(outs["pid"])
        status = wait_for(lambda: _get(outs["status_url"]), bool, within(30), 0.3, "the status view")
        assert status["stack"] == "s"
        # The key is in the process's environment, not its command line.
        assert b"sk-local-key" not in open(f"/proc/{outs['pid']}/cmdline", "rb").read()
        same = provider.diff("", outs, {**props})
        assert not same.changes
        moved = provider.update("", outs, {**props, "document": json.dumps({**document, "stack": "t"})}).outs
        assert moved["pid"] == outs["pid"]  # a new document is rewritten in place
    finally:
        provider.delete("", outs)
    assert not alive(outs["pid"])
    assert os.path.exists(tmp_path / "health.log")


def _get(url):
    try:
        resp = requests.get(f"{url}/status.json", headers={"Authorization": "Bearer sk-local-key"}, timeout=2)
        return resp.json() if resp.status_code == 200 else None
    except requests.RequestException:
        return None
