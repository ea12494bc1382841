"""Debian's Prometheus scrapes the health agent's metrics with the gateway's master key, and a PromQL query
over what it stored returns the estate's series: the exposition format is held against the real parser."""
import shutil
import socket
import subprocess
import time

import pytest
import requests
import yaml

import sandbox
from agents import health as agent
from providers.local import stop_process
from core import health
from providers.wait import wait_for, within
from tests.unit.agents.test_health_agent import Listener, document

KEY = "sk-prometheus-scrape-key"


def prometheus_or_skip() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        why = "no prometheus binary: scripts/install-tools.sh installs Debian's prometheus"
        if sandbox.vm_required():
            pytest.fail(f"Prometheus must run here: {why}")
        pytest.skip(why)
    return binary


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_prometheus_scrapes_the_agents_metrics_and_answers_promql(tmp_path, ollama):
    binary = prometheus_or_skip()
    ollama.install("qwen3:8b")
    tunnel = Listener()
    doc = document(ollama.url, tunnel.port)
    doc["deployments"] = {"fast@gpu": {"alias": "fast", "where": "node", "name": "gpu", "model": "ollama_chat/qwen3:8b"}}
    a = agent.Agent(doc, tmp_path / "state", webhook="", say=lambda _: None, ledger=tmp_path / "none.json",
                    usage=tmp_path / "usage")
    (tmp_path / "usage").mkdir()
    now = time.time()
    (tmp_path / "usage" / health.usage_file(now)).write_text(
        '{"month": "%s", "alias": "fast", "id": "fast@gpu", "input_tokens": 12, "output_tokens": 30, "images": 0}\n'
        % time.strftime("%Y-%m", time.gmtime(now)))
    a.run_once()
    tunnel.close()
    a.document = {**doc, "down_after": 1}
    a.run_once()  # the tunnel is down now
    httpd = agent.serve(a, 0, KEY)
    web = free_port()
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
              "scrape_configs": [{"job_name": "estate", "metrics_path": "/metrics",
                                  "authorization": {"type": "Bearer", "credentials": KEY},
                                  "static_configs": [{"targets": [f"127.0.0.1:{httpd.server_address[1]}"]}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{web}"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)

    def query(q):
        try:
            resp = requests.get(f"http://127.0.0.1:{web}/api/v1/query", params={"query": q}, timeout=5)
            return resp.json()["data"]["result"] if resp.status_code == 200 else []
        except (requests.RequestException, ValueError, KeyError):
            return []

    try:
        up = wait_for(lambda: query('up{job="estate"}'), bool, within(60), 0.5, "Prometheus scraping the agent")
        assert up[0]["value"][1] == "1"  # it scraped with the key (a 401 would make up 0)
        down = wait_for(lambda: query("estate_check_up == 0"), bool, within(30), 0.5, "the down check's series")
        assert [r["metric"]["check"] for r in down] == ["tunnel/gpu/11434"]
        tokens = query('sum by (alias, served_by) (estate_alias_month_tokens{direction="output"})')
        assert [(r["metric"], r["value"][1]) for r in tokens if r["metric"]["served_by"] == "estate"] == [
            ({"alias": "fast", "served_by": "estate"}, "30")]
        hourly = query("estate_node_hourly_usd")
        assert [(r["metric"]["node"], r["value"][1]) for r in hourly] == [("gpu", "0.3")]
    finally:
        stop_process(proc.pid, grace=20)
        log.close()
        httpd.shutdown()
        httpd.server_close()
