"""``pulumi-python:dynamic/ssh:Cleanup`` driven directly against OpenSSH's sshd on 127.0.0.1: its delete
runs the commands' delete scripts on a host that answers, and on one that does not answer, answers with
another key or fails the script, warns with the host, what is left and the command that removes it, and
returns (the destroy goes on)."""
import pytest

from loopback import sshd as loopback_sshd
from providers import host_cleanup as hc

pytestmark = pytest.mark.skipif(bool(loopback_sshd.missing()), reason=loopback_sshd.missing() or "")


@pytest.fixture
def sshd(tmp_path):
    with loopback_sshd.LoopbackSshd(tmp_path / "sshd") as server:
        yield server


@pytest.fixture
def warned(monkeypatch):
    seen = []
    monkeypatch.setattr(hc.pulumi.log, "warn", lambda msg, *a, **k: seen.append(msg))
    return seen


def props(sshd, tmp_path, script=None):
    target = tmp_path / "left"
    target.mkdir(exist_ok=True)
    (target / "config.yaml").write_text("model_list: []\n")
    return {"node": "vps", "host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
            "host_key": " ".join(sshd.host_public_key.split()[:2]),
            "script": script or f"rm -f {target}/config.yaml\nrmdir {target}\n",
            "left": f"the gateway's files under {target}"}


def provider(sshd):
    p = hc.HostCleanupProvider()
    p._private_key = sshd.private_key  # as configure() reads gpu-estate:sshPrivateKey
    return p


def test_create_update_and_read_never_connect(tmp_path):
    p = hc.HostCleanupProvider()
    given = {"node": "vps", "host": "203.0.113.10", "port": 22, "user": "root", "host_key": "ssh-ed25519 AAAA",
             "script": "true\n", "left": "nothing"}
    created = p.create(given)
    assert created.id.startswith("cleanup-vps-") and created.outs == given
    assert p.read(created.id, given).outs == given
    changed = {**given, "script": "rm -f /etc/x\n"}
    assert p.diff(created.id, given, changed).changes and not p.diff(created.id, given, changed).replaces
    assert p.update(created.id, given, changed).outs == changed


def test_a_host_that_answers_gets_the_delete_scripts(sshd, tmp_path, warned):
    given = props(sshd, tmp_path)
    provider(sshd).delete("id", given)
    assert warned == [] and not (tmp_path / "left").exists()


def test_an_unreachable_host_is_named_with_what_is_left_and_how_to_remove_it(sshd, tmp_path, warned):
    given = props(sshd, tmp_path)
    sshd.stop()
    provider(sshd).delete("id", given)  # returns: the destroy goes on
    (message,) = warned
    assert f"vps: {sshd.user}@127.0.0.1:{sshd.port} could not be reached over SSH (" in message
    assert "Connection refused" in message
    assert f"Left on that host: the gateway's files under {tmp_path / 'left'}." in message
    assert f"ssh -p {sshd.port} {sshd.user}@127.0.0.1 'rm -f {tmp_path}/left/config.yaml" in message
    assert message.endswith("The destroy goes on.")
    assert (tmp_path / "left" / "config.yaml").exists()


def test_another_host_key_gets_nothing_and_a_warning(sshd, tmp_path, warned):
    given = props(sshd, tmp_path)
    sshd.rekey()  # another machine at the host's address
    provider(sshd).delete("id", given)
    (message,) = warned
    assert "could not be reached over SSH" in message and "Host key verification failed" in message
    assert (tmp_path / "left" / "config.yaml").exists()  # nothing was run there


def test_a_script_that_fails_there_is_named_too(sshd, tmp_path, warned):
    given = props(sshd, tmp_path, script="echo 'systemctl: not found' >&2; exit 3\n")
    provider(sshd).delete("id", given)
    (message,) = warned
    assert "ran its cleanup, which failed (systemctl: not found), so some of it may remain" in message


def test_the_program_gives_an_owned_host_s_commands_a_cleanup_and_a_rented_machine_s_none():
    import copy

    from tests.mocks import run_program, stack_config

    config = copy.deepcopy(stack_config("prod"))
    config["gpu-estate:nodes"]["homelab"] = {  # a node of one's own, tunnelled to from the gateway
        "provider": "host", "address": "198.51.100.20", "gpu": {"model": "rtx3090"},
        "ssh": {"host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG1vY2tob3N0a2V5bW9ja2hvc3RrZXk="},
        "workloads": {"ollama": {"models": ["llama3.1:8b"]}}}
    config["gpu-estate:gateway"]["aliases"]["home"] = "llama3.1:8b"
    mocks = run_program(config, stack="prod")
    cleanups = {c.name: c.inputs for c in mocks.of_type("pulumi-python:dynamic/ssh:Cleanup")}
    # The gateway's commands, the tunnel's authorization and the owned node's own workloads; none on rented machines.
    assert set(cleanups) == {"gateway-cleanup", "gateway-authorize-homelab-cleanup", "homelab-cleanup"}
    commands = {c.name: c.inputs for c in mocks.of_type("command:remote:Command")}
    gateway = cleanups["gateway-cleanup"]
    assert (gateway["node"], gateway["host"], gateway["user"]) == ("vps", "203.0.113.10", "root")
    assert gateway["host_key"] == config["gpu-estate:nodes"]["vps"]["ssh"]["host_key"]
    # The same scripts the commands would run, the units first, then the secret files.
    assert gateway["script"] == f"{commands['gateway-deploy']['delete']}\n{commands['gateway-secrets']['delete']}\n"
    for path in ("/etc/estate/gateway/gateway.env", "/etc/estate/gateway/tunnel_key", "estate-litellm-blue.service"):
        assert path in gateway["left"]
    tunnel = cleanups["gateway-authorize-homelab-cleanup"]
    assert tunnel["host"] == "198.51.100.20"
    assert tunnel["script"] == commands["gateway-authorize-homelab"]["delete"] + "\n"
    own = cleanups["homelab-cleanup"]
    assert (own["node"], own["host"]) == ("homelab", "198.51.100.20")
    assert own["script"].startswith(commands["homelab-workloads"]["delete"] + "\n") and "/opt/estate/secrets" in own["script"]
    assert "/opt/estate/compose.yaml" in own["left"]

    assert "gpu-estate-tunnel:gpu-estate-prod" in tunnel["left"] and "11434" in tunnel["left"]
