import os

import pytest

# Loopback servers answer at once: keep backoff and polling short so fault tests stay quick.
os.environ.setdefault("ESTATE_HTTP_BACKOFF", "0.01")
os.environ.setdefault("ESTATE_POLL_SECONDS", "0.01")
os.environ.setdefault("ESTATE_ADOPT_WAIT_SECONDS", "1")
os.environ.setdefault("ESTATE_HTTP_TIMEOUT", "5")


@pytest.fixture
def clouds(monkeypatch):
    """The three fake GPU marketplaces, with the clients pointed at them."""
    from loopback.runpod import FakeRunPod
    from loopback.tensordock import FakeTensorDock
    from loopback.vastai import FakeVast

    from providers.gpu_instance import forget_adoptions

    forget_adoptions()  # each test is a run of its own, as each `up` has its own provider process
    td, vast, rp = FakeTensorDock(), FakeVast(), FakeRunPod()
    monkeypatch.setenv("TENSORDOCK_API_URL", td.url + "/api/v2")
    monkeypatch.setenv("TENSORDOCK_API_TOKEN", td.token)
    monkeypatch.setenv("VASTAI_API_URL", vast.url + "/api/v0")
    monkeypatch.setenv("VASTAI_API_KEY", "vast-test-key")
    monkeypatch.setenv("RUNPOD_API_URL", rp.url + "/graphql")
    monkeypatch.setenv("RUNPOD_API_KEY", "rp-test-key")
    yield {"tensordock": td, "vastai": vast, "runpod": rp}
    for f in (td, vast, rp):
        f.close()


@pytest.fixture
def ollama():
    """A loopback server that speaks the Ollama API."""
    from loopback.ollama import FakeOllama

    fake = FakeOllama()
    yield fake
    fake.close()


@pytest.fixture
def sshd():
    """OpenSSH's sshd on 127.0.0.1 with generated host and client keys (loopback/sshd.py). Skipped where
    it cannot run, except on the project's CI, where that fails."""
    from loopback import sshd as loopback_sshd
    import sandbox

    why = loopback_sshd.missing()
    if why:
        if sandbox.vm_required():
            pytest.fail(f"the loopback sshd must run here: {why}")
        pytest.skip(why)
    with loopback_sshd.LoopbackSshd() as server:
        yield server


@pytest.fixture
def aws(monkeypatch):
    """The loopback AWS (loopback/aws.py), where the AWS SDK's own clients are pointed the SDK's way."""
    from loopback.aws import LoopbackAws

    server = LoopbackAws()
    for name, value in {"AWS_ENDPOINT_URL_EC2": server.url, "AWS_ENDPOINT_URL_SERVICE_QUOTAS": server.url,
                        "AWS_ACCESS_KEY_ID": "AKIDLOOPBACK", "AWS_SECRET_ACCESS_KEY": "loopback",
                        "AWS_MAX_ATTEMPTS": "1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield server
    server.close()


def vm_node_or_skip() -> None:
    """Skip where the engine or the sandbox's VM node (Docker, sshd, its image) cannot run, naming what is
    missing; on the project's CI (GPU_ESTATE_REQUIRE_VM=1) fail instead."""
    import sandbox

    required_or_skip(sandbox.engine_missing() or sandbox.vm_missing(), "the VM node")


def real_servers_or_skip() -> None:
    """Skip where the real Ollama or the loopback registry was not built, naming what is missing; on the
    project's CI (GPU_ESTATE_REQUIRE_VM=1), where `make setup` builds them, fail instead."""
    from sandbox import registry

    required_or_skip(registry.missing(), "the real Ollama and the loopback registry")


def required_or_skip(why: str, what: str) -> None:
    """Skip naming ``why`` (what is missing) where it is not empty; on the project's CI
    (GPU_ESTATE_REQUIRE_VM=1), where `make setup` builds everything, fail saying ``what`` must run here."""
    import sandbox

    if why:
        if sandbox.vm_required():
            pytest.fail(f"{what} must run here: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def tiny_registry(tmp_path_factory):
    """The loopback registry (the CNCF registry on 127.0.0.1) holding the project's tiny model as tiny:1,
    pushed by a real Ollama; ``tiny_registry.tiny`` is its name there and ``.tiny_digest`` its digest."""
    from sandbox.registry import LoopbackRegistry
    from sandbox.tiny_model import PARAMETERS, write_tiny_gguf

    real_servers_or_skip()
    with LoopbackRegistry() as registry:
        registry.tiny_digest = registry.publish("tiny", "1", write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf"),
                                                PARAMETERS)
        registry.tiny = registry.name("tiny", "1")
        yield registry


@pytest.fixture
def real_ollama():
    """The real Ollama (``ollama serve``) on 127.0.0.1 with a model store of its own."""
    from sandbox.real_ollama import OllamaServer

    real_servers_or_skip()
    with OllamaServer() as server:
        yield server


@pytest.fixture(scope="module")
def s3():
    """moto's real S3 server on 127.0.0.1 (``sandbox/s3.py``) holding the bucket ``models``, for one module."""
    from sandbox.s3 import LoopbackS3

    with LoopbackS3() as server:
        server.create_bucket("models")
        yield server
