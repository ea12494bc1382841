"""The gateway host's deploy restarts only what changed: the rendered script, run here against a directory
standing in for the host's root.

Only what systemd itself does is played by a stand-in on PATH (``systemctl`` records each call and keeps
which units are active), with ``curl`` answering LiteLLM's readiness at once and ``docker`` recording the
front's reload: the comparing, restarting, switching and removing are the script's own.
tests/contract/test_gateway_switch.py runs the switch with the real LiteLLM and the real Caddy."""
import copy
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from components import gateway as gw
from core.config import parse_spec
from core.topology import plan_estate
from tests.mocks import MOCK_SECRET, run_program, stack_config, stack_estate

SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$ROOT/systemctl.log"
mkdir -p "$ROOT/active"
case "$1" in
  is-active) [ -e "$ROOT/active/$3" ]; exit $? ;;
  restart|start) touch "$ROOT/active/$2" ;;
  stop) rm -f "$ROOT/active/$2" ;;
  enable) if [ "$2" = --now ]; then touch "$ROOT/active/$3"; fi ;;
  disable) if [ "$2" = --now ]; then rm -f "$ROOT/active/$3"; fi ;;
esac
exit 0
"""


class Host:
    """A directory standing in for the gateway host's root."""

    def __init__(self, root: Path):
        self.root = root
        bin_dir = root / "bin"
        bin_dir.mkdir(parents=True)
        for tool, body in (("systemctl", SYSTEMCTL), ("curl", "#!/bin/sh\nexit 0\n"), ("autossh", "#!/bin/sh\n"),
                           ("sleep", "#!/bin/sh\n"), ("docker", '#!/bin/sh\necho "$*" >> "$ROOT/docker.log"\n')):
            (bin_dir / tool).write_text(body)
            (bin_dir / tool).chmod(0o755)

    def run(self, script: str) -> str:
        (self.root / "systemctl.log").write_text("")
        text = script.replace("/etc/", f"{self.root}/etc/")
        (self.root / "etc" / "systemd" / "system").mkdir(parents=True, exist_ok=True)
        (self.root / "deploy.sh").write_text(text)
        run = subprocess.run(["bash", str(self.root / "deploy.sh")], capture_output=True, text=True, timeout=120,
                             env={"PATH": f"{self.root}/bin:/usr/bin:/bin", "ROOT": str(self.root)})
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout

    def calls(self) -> List[str]:
        return (self.root / "systemctl.log").read_text().splitlines()

    def restarted(self) -> List[str]:
        """Units restarted (a LiteLLM instance switched to counts as restarted)."""
        return sorted(c.split()[-1] for c in self.calls() if c.startswith("restart "))

    def stopped(self) -> List[str]:
        return sorted(c.split()[-1] for c in self.calls() if c.startswith(("disable --now", "stop ")))


def rendered(plan, files: Dict[str, str], secrets: Dict[str, str] = None) -> str:
    """The deploy's units part, as ``components.gateway_host`` renders it."""
    units = gw.gateway_units(plan, {})
    full = {f"{gw.CONFIG_DIR}/{p}": t for p, t in {**files, **gw.front_files(plan)}.items()}
    full[gw.SWITCH_SCRIPT] = gw.switch_script(plan)
    from core.text import heredoc_script

    return heredoc_script(full) + gw.units_script(gw.stamp_units(units, full, secrets or {}))


def estate():
    """The prod stack's estate with the health agent."""
    return {**stack_estate("prod"), "health": {"port": 4200}}


@pytest.fixture()
def prod():
    return plan_estate(parse_spec(estate()))


@pytest.fixture()
def files(prod):
    config = gw.render_litellm_config(prod)
    return {"config.yaml": config, gw.HEALTH_DOCUMENT: '{"checks": []}\n', gw.SPEND_DOCUMENT: '{"nodes": {}}\n'}


def litellm(units: List[str]) -> List[str]:
    return [u for u in units if u.startswith("estate-litellm-")]


def test_a_first_deploy_starts_every_unit_and_makes_one_litellm_instance_live(tmp_path, prod, files):
    host = Host(tmp_path)
    out = host.run(rendered(prod, files))
    calls = host.calls()
    assert "restart estate-litellm-blue.service" in calls and "enable --now estate-gateway-front.service" in calls
    assert "start estate-tunnel-qwen.service" in calls or "restart estate-tunnel-qwen.service" in calls
    assert (tmp_path / "etc/estate/gateway/front/live").read_text() == "blue\n"
    assert "reverse_proxy 127.0.0.1:4102 {" in (tmp_path / "etc/estate/gateway/front/Caddyfile").read_text()
    assert "instance blue is live" in out
    assert not any(gw.SPEND_UNIT in c for c in calls)  # the one-shot look runs from its timer only


def test_nothing_changed_restarts_nothing(tmp_path, prod, files):
    host = Host(tmp_path)
    script = rendered(prod, files)
    host.run(script)
    host.run(script)
    assert host.restarted() == [] and host.stopped() == []
    assert (tmp_path / "etc/estate/gateway/front/live").read_text() == "blue\n"


def test_a_changed_health_document_restarts_the_health_agent_alone(tmp_path, prod, files):
    host = Host(tmp_path)
    host.run(rendered(prod, files))
    host.run(rendered(prod, {**files, gw.HEALTH_DOCUMENT: '{"checks": [{"id": "gateway"}]}\n'}))
    assert host.restarted() == [gw.HEALTH_UNIT] and host.stopped() == []


def test_a_changed_spend_document_restarts_nothing(tmp_path, prod, files):
    """The wake hook reads it per request through a directory mount, the watcher per run."""
    host = Host(tmp_path)
    host.run(rendered(prod, files))
    host.run(rendered(prod, {**files, gw.SPEND_DOCUMENT: '{"nodes": {"qwen": 1}}\n'}))
    assert host.restarted() == [] and host.stopped() == []


def test_a_changed_litellm_config_switches_litellm_alone(tmp_path, prod, files):
    host = Host(tmp_path)
    host.run(rendered(prod, files))
    config = files["config.yaml"].replace("model_list:\n", "model_list:\n- model_name: extra\n  litellm_params:\n"
                                          "    model: openai/x\n", 1)
    out = host.run(rendered(prod, {**files, "config.yaml": config}))
    # The other instance starts on the new config, the front reloads onto it, the old one drains and stops.
    assert host.restarted() == ["estate-litellm-green.service"]
    assert host.stopped() == ["estate-litellm-blue.service"]
    assert "caddy reload" in (tmp_path / "docker.log").read_text()
    assert "reverse_proxy 127.0.0.1:4103 {" in (tmp_path / "etc/estate/gateway/front/Caddyfile").read_text()
    assert "instance green is live" in out and "instance blue stopped" in out
    # The next change goes back to blue.
    host.run(rendered(prod, {**files, "config.yaml": config + "# again\n"}))
    assert host.restarted() == ["estate-litellm-blue.service"] and host.stopped() == ["estate-litellm-green.service"]


def test_a_rotated_secret_restarts_the_units_reading_it_and_shows_no_secret(tmp_path, prod, files):
    host = Host(tmp_path)
    env = f"{gw.CONFIG_DIR}/gateway.env"
    host.run(rendered(prod, files, {env: "hmac-one"}))
    script = rendered(prod, files, {env: "hmac-two"})
    host.run(script)
    assert litellm(host.restarted()) == ["estate-litellm-green.service"]
    assert gw.HEALTH_UNIT in host.restarted()  # reads the env file too
    assert not any(u.startswith("estate-tunnel-") for u in host.restarted())


def test_a_unit_gone_from_the_stack_is_stopped_and_removed(tmp_path, prod, files):
    host = Host(tmp_path)
    host.run(rendered(prod, files))
    plan = plan_estate(parse_spec(estate()))
    units = gw.gateway_units(plan, {})
    del units["estate-tunnel-qwen.service"]
    full = {f"{gw.CONFIG_DIR}/{p}": t for p, t in {**files, **gw.front_files(plan)}.items()}
    host.run(gw.units_script(gw.stamp_units(units, full, {})))
    assert host.stopped() == ["estate-tunnel-qwen.service"] and host.restarted() == []
    assert not (tmp_path / "etc/systemd/system/estate-tunnel-qwen.service").exists()


def test_a_gateway_deployed_before_the_front_hands_its_port_over(tmp_path, prod, files):
    """Its single LiteLLM unit is stopped once the new instance is ready, before the front takes the port."""
    host = Host(tmp_path)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "etc/systemd/system/estate-litellm.service").write_text("[Service]\n")
    host.run(rendered(prod, files))
    calls = host.calls()
    ready, legacy, front = (calls.index("enable estate-litellm-blue.service"),
                            calls.index("disable --now estate-litellm.service"),
                            calls.index("enable --now estate-gateway-front.service"))
    assert ready < legacy < front
    assert not (tmp_path / "etc/systemd/system/estate-litellm.service").exists()


@pytest.fixture(scope="module")
def programs():
    config = copy.deepcopy(stack_config("prod"))
    config["gpu-estate:sshPrivateKey"] = "-----BEGIN OPENSSH PRIVATE KEY-----\nmock\n-----END OPENSSH PRIVATE KEY-----"
    changed = copy.deepcopy(config)
    aliases = changed["gpu-estate:gateway"]["aliases"]
    aliases["gpt-4-too"] = aliases["gpt-4"]
    deploy = "gateway-deploy"
    return ({c.name: c for c in run_program(config, stack="prod").of_type("command:remote:Command")}[deploy],
            {c.name: c for c in run_program(changed, stack="prod").of_type("command:remote:Command")}[deploy])


def test_a_new_alias_switches_litellm_and_leaves_the_tunnels_and_the_edge_running(tmp_path, programs):
    before, after = programs
    host = Host(tmp_path)
    host.run(before.inputs["stdin"])
    host.run(after.inputs["stdin"])
    restarted = host.restarted()
    assert litellm(restarted) == ["estate-litellm-green.service"]
    assert not [u for u in restarted if u.startswith(("estate-tunnel-", "estate-cloudflared", "estate-identity",
                                                      "estate-gateway-front"))], restarted
    assert host.stopped() == ["estate-litellm-blue.service"]


def test_the_deploy_script_holds_no_secret_and_is_no_secret_itself(programs):
    before, _ = programs
    assert MOCK_SECRET not in before.inputs["stdin"]
    assert "stdin" not in before.secret_paths
    stamps = [line for line in before.inputs["stdin"].splitlines() if line.startswith("Environment=ESTATE_INPUTS=")]
    assert len(stamps) >= 5 and all(len(s.split("=", 2)[2]) == 64 for s in stamps)


@pytest.mark.parametrize("ports, says", [([4102, 4102], "got 4102 twice"),
                                         ([8000, 4103], "the gateway (gateway.port 8000) already listens on 8000")])
def test_the_instances_ports_are_refused_where_something_listens(ports, says):
    from core.errors import ConfigError

    raw = estate()
    raw["gateway"]["backend_ports"] = ports
    with pytest.raises(ConfigError, match="gpu-estate:gateway.backend_ports") as e:
        parse_spec(raw)
    assert says in str(e.value)
