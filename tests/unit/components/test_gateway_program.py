"""The gateway host and the edge under mocks: what is deployed where, and secrets staying secret."""
import base64
import copy
import re

import pytest
import yaml

from core.config import parse_spec
from core.errors import ConfigError
from tests.mocks import MOCK_SECRET, run_program, stack_config, stack_estate

COMMAND = "command:remote:Command"


@pytest.fixture(scope="module")
def prod():
    config = copy.deepcopy(stack_config("prod"))
    config["gpu-estate:sshPrivateKey"] = "-----BEGIN OPENSSH PRIVATE KEY-----\nmock\n-----END OPENSSH PRIVATE KEY-----"
    return run_program(config, stack="prod")


def commands(mocks):
    return {c.name: c for c in mocks.of_type(COMMAND)}


def test_the_gateway_host_gets_the_rendered_config_and_its_units(prod):
    deploy = commands(prod)["gateway-deploy"]
    script = deploy.inputs["stdin"]
    assert deploy.inputs["connection"]["host"] == "203.0.113.10"
    body = script.split("cat > /etc/estate/gateway/config.yaml.tmp <<'", 1)[1].split("\n", 1)[1]
    config = yaml.safe_load(body.split("\nESTATE_", 1)[0])
    assert {m["model_name"] for m in config["model_list"]} >= {"gpt-4", "coder", "openai-gpt-4o"}
    # Each unit is installed and restarted when its file changed; LiteLLM switches instances behind its front
    # (tests/unit/components/test_gateway_deploy.py runs the script).
    for unit in ("estate-cloudflared.service", "estate-tunnel-qwen.service", "estate-tunnel-inference.service",
                 "estate-tunnel-training.service"):
        assert f'*" {unit} "*) echo "restarting {unit}"; systemctl restart {unit}' in script
    for unit in ("estate-litellm-blue.service", "estate-litellm-green.service", "estate-gateway-front.service"):
        assert f"cat > /etc/systemd/system/{unit}.estate-new" in script
    assert "bash /etc/estate/gateway/litellm-switch.sh" in script
    assert "systemctl disable --now" in deploy.inputs["delete"]


def bundle_files(command):
    """The files a secrets command writes: its stdin is ``<path> <base64>`` lines."""
    return {path: base64.b64decode(data).decode()
            for path, data in (line.split(" ", 1) for line in command.inputs["stdin"].splitlines())}


def test_secrets_reach_the_host_only_on_stdin_of_silent_commands(prod):
    cmds = commands(prod)
    (secrets,) = [c for n, c in cmds.items() if n.startswith("gateway-secret")]
    assert secrets.name == "gateway-secrets"
    assert "stdin" in secrets.secret_paths and secrets.inputs["logging"] == "none"
    assert "umask 077" in secrets.inputs["create"] and MOCK_SECRET not in secrets.inputs["create"]
    files = bundle_files(secrets)
    assert set(files) == {"/etc/estate/gateway/gateway.env", "/etc/estate/gateway/cloudflared.env",
                          "/etc/estate/gateway/tunnel_key", "/etc/estate/gateway/identity.env"}
    # The bearer the program generated for the Fly.io fallback goes beside the master key, nowhere else; so
    # does the one LiteLLM presents to the identity proxy for Cloud Run (the key is in identity.env alone).
    assert files["/etc/estate/gateway/gateway.env"] == (f"ESTATE_IDENTITY_BEARER={MOCK_SECRET}\n"
                                                         f"FLY_CHAT_FALLBACK_KEY={MOCK_SECRET}\n"
                                                         f"LITELLM_MASTER_KEY=sk-{MOCK_SECRET}\n")
    assert "chown estate-tunnel /etc/estate/gateway/tunnel_key" in secrets.inputs["create"]
    assert "TUNNEL_TOKEN" not in cmds["gateway-deploy"].inputs["stdin"]
    # The tunnels sign in with the estate's own key, never the operator's.
    assert files["/etc/estate/gateway/tunnel_key"] == MOCK_SECRET
    assert "mock" not in files["/etc/estate/gateway/tunnel_key"].replace(MOCK_SECRET, "")


def test_the_tunnel_key_is_authorized_on_each_node_for_its_forwards_only(prod):
    (key,) = [k for k in prod.of_type("pulumi-python:dynamic/ssh:Key") if k.name == "gateway-tunnel-key"]
    assert key.inputs["comment"] == "gpu-estate-tunnel:gpu-estate-prod"
    cmds = commands(prod)
    auth = cmds["gateway-authorize-qwen"]
    assert "restrict,port-forwarding," in auth.inputs["create"]
    assert 'permitopen="127.0.0.1:8188",permitopen="127.0.0.1:8189",permitopen="127.0.0.1:11434" ssh-ed25519 ' in auth.inputs["create"]
    assert " gpu-estate-tunnel:gpu-estate-prod" in auth.inputs["delete"]


def test_the_gateway_hosts_deploy_travels_on_stdin_past_one_arguments_limit(prod, tmp_path):
    """The deploy script (files, units, the estate's modules) is sent on stdin and run from a file: as the
    SSH command itself it is one argument of ``sh -c``, which Linux refuses past 128 KiB."""
    import subprocess

    from core.text import RUN_STDIN

    deploy = commands(prod)["gateway-deploy"]
    assert deploy.inputs["create"].split("\n", 1)[1] == RUN_STDIN
    assert "base64 -d <<'ESTATE_LIB_" in deploy.inputs["stdin"]
    big = f"echo start > {tmp_path}/ran\n" + "# padding\n" * 20_000 + f"echo end >> {tmp_path}/ran\n"
    with pytest.raises(OSError, match="Argument list too long"):
        subprocess.run(["sh", "-c", big], timeout=30)
    run = subprocess.run(["sh", "-c", RUN_STDIN], input=big, text=True, capture_output=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "ran").read_text() == "start\nend\n"


def test_a_changed_gateway_config_updates_the_deploy_in_place(prod):
    config = copy.deepcopy(stack_config("prod"))
    config["gpu-estate:gateway"]["timeouts"]["gpt-4"] = 200
    changed = commands(run_program(config, stack="prod"))["gateway-deploy"]
    before = commands(prod)["gateway-deploy"]
    # The script that writes the config and restarts the units changes (an update runs it again) ...
    assert changed.inputs["stdin"] != before.inputs["stdin"]
    assert "litellm-switch.sh" in changed.inputs["stdin"]
    # ... and nothing can make pulumi-command replace it create-before-delete.
    for cmd in (changed, before, *commands(prod).values()):
        assert "triggers" not in cmd.inputs
        assert cmd.inputs["create"].startswith("# machine ")


def test_every_hostname_has_a_proxied_record_to_the_tunnel_and_access_in_front(prod):
    records = {r.inputs["name"]: r for r in prod.of_type("cloudflare:index/dnsRecord:DnsRecord")}
    assert set(records) == {"chat.example.com", "mlflow.example.com", "myai.example.com"}
    for r in records.values():
        assert r.inputs["type"] == "CNAME" and r.inputs["proxied"] is True
        assert r.inputs["content"].endswith(".cfargotunnel.com")
    apps = {a.inputs["domain"]: a for a in prod.of_type(
        "cloudflare:index/zeroTrustAccessApplication:ZeroTrustAccessApplication")}
    assert set(apps) == set(records)
    assert all(a.inputs["type"] == "self_hosted" and a.inputs["policies"] for a in apps.values())
    (policy,) = prod.of_type("cloudflare:index/zeroTrustAccessPolicy:ZeroTrustAccessPolicy")
    assert policy.inputs["decision"] == "allow"
    assert policy.inputs["includes"] == [{"email": {"email": "owner@example.com"}}]
    (cfg,) = prod.of_type("cloudflare:index/zeroTrustTunnelCloudflaredConfig:ZeroTrustTunnelCloudflaredConfig")
    assert cfg.inputs["config"]["ingresses"][-1] == {"service": "http_status:404"}
    (tunnel,) = prod.of_type("cloudflare:index/zeroTrustTunnelCloudflared:ZeroTrustTunnelCloudflared")
    assert "tunnelSecret" in tunnel.secret_paths


def test_the_connector_refuses_requests_without_the_hostnames_access_token(prod):
    (cfg,) = prod.of_type("cloudflare:index/zeroTrustTunnelCloudflaredConfig:ZeroTrustTunnelCloudflaredConfig")
    rules = {r["hostname"]: r for r in cfg.inputs["config"]["ingresses"] if "hostname" in r}
    assert set(rules) == {"chat.example.com", "mlflow.example.com", "myai.example.com"}
    for host, rule in rules.items():
        # The wire names pulumi-cloudflare sends (camelCase), each rule checking its own application's AUD.
        assert rule["originRequest"]["access"] == {"required": True, "teamName": "example-estate",
                                                   "audTags": [f"aud-{host}"]}, host


def test_a_route_path_is_anchored_and_access_still_covers_the_whole_hostname():
    config = copy.deepcopy(stack_config("prod"))
    config["gpu-estate:routes"]["chat.example.com"]["path"] = "/app.v1"
    mocks = run_program(config, stack="prod")
    (cfg,) = mocks.of_type("cloudflare:index/zeroTrustTunnelCloudflaredConfig:ZeroTrustTunnelCloudflaredConfig")
    (chat,) = [r for r in cfg.inputs["config"]["ingresses"] if r.get("hostname") == "chat.example.com"]
    pattern = re.compile(chat["path"])
    assert pattern.search("/app.v1/c/42") and pattern.search("/app.v1")
    # cloudflared matches a rule's path anywhere in the request path: unanchored, these would pass.
    assert not pattern.search("/x/app.v1") and not pattern.search("/appXv1")
    apps = {a.inputs["domain"] for a in mocks.of_type(
        "cloudflare:index/zeroTrustAccessApplication:ZeroTrustAccessApplication")}
    assert "chat.example.com" in apps  # the hostname, not chat.example.com/app.v1


def test_access_routes_on_a_tunnel_need_the_zero_trust_team():
    raw = stack_estate("prod")
    raw["edge"].pop("team_name")
    with pytest.raises(ConfigError, match=r"gpu-estate:edge.team_name: route 'chat.example.com' uses access auth"):
        parse_spec(raw)


def test_caddy_mode_puts_basic_auth_in_front_and_points_records_at_the_gateway():
    config = copy.deepcopy(stack_config("prod"))
    config["gpu-estate:edge"]["mode"] = "caddy"
    caddy = run_program(config, stack="prod")
    records = caddy.of_type("cloudflare:index/dnsRecord:DnsRecord")
    assert {r.inputs["type"] for r in records} == {"A"} and {r.inputs["content"] for r in records} == {"203.0.113.10"}
    assert not caddy.of_type("cloudflare:index/zeroTrustTunnelCloudflared:ZeroTrustTunnelCloudflared")
    secrets = commands(caddy)["gateway-secrets"]
    assert "stdin" in secrets.secret_paths
    assert bundle_files(secrets)["/etc/estate/gateway/Caddyfile"].count("basicauth") == 3
    assert "estate-caddy.service" in commands(caddy)["gateway-deploy"].inputs["stdin"]


def test_the_url_map_says_how_each_hostname_is_reached(prod):
    from components.estate import url_map  # the table comes from the program's own code
    from core.config import parse_spec
    from core.topology import plan_estate
    rows = url_map(plan_estate(parse_spec(stack_estate("prod"))))
    chat = next(r for r in rows if r["url"] == "https://chat.example.com")
    assert chat == {"url": "https://chat.example.com", "node": "inference", "container": "open-webui", "port": 3000,
                    "auth": "cloudflare-access", "via": "http://127.0.0.1:3000"}


def test_in_caddy_mode_the_url_map_says_basic_auth_for_every_route():
    from components.estate import url_map
    from core.config import parse_spec
    from core.topology import plan_estate
    raw = stack_estate("prod")
    raw["edge"]["mode"] = "caddy"
    rows = url_map(plan_estate(parse_spec(raw)))
    assert {r["auth"] for r in rows} == {"caddy-basic-auth"}
