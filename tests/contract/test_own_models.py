"""A model of the operator's own, made by the model library's provider on the real Ollama (0.17.4) from a
GGUF in a real S3 API (moto's server) or a real Cloud Storage API (fake-gcs-server, through
google-cloud-storage), and an alias resolved against the real MLflow tracking server.

Skipped where the real Ollama, a bucket server or MLflow's venv is missing, except on the project's CI
(GPU_ESTATE_REQUIRE_VM=1), where that fails.
"""
import hashlib
import re

import pytest
import requests

import sandbox
from core.errors import ConfigError
from core.own_models import GgufModel
from providers import own_models
from providers.ollama import OllamaError, OllamaModelProvider
from sandbox import gcs as loopback_gcs, mlflow as real_mlflow, real_ollama, s3 as loopback_s3
from sandbox.tiny_model import PARAMETERS, write_tiny_gguf

BUCKET = "acme-models"
GCS_BUCKET = "acme_models"  # an underscore: a Cloud Storage name S3 would refuse
KEY = "gpu-estate:nodes.vm.workloads.ollama.gguf_models.myai:1"


def needs(*why: str) -> None:
    why = [w for w in why if w]
    if why:
        if sandbox.vm_required():
            pytest.fail("; ".join(why))
        pytest.skip("; ".join(why))


@pytest.fixture(scope="module")
def bucket(tmp_path_factory, monkeypatch_module):
    needs(loopback_s3.missing(), real_ollama.missing())
    with loopback_s3.LoopbackS3() as s3:
        for k, v in s3.env().items():
            monkeypatch_module.setenv(k, v)
        s3.create_bucket(BUCKET)
        digests = {}
        for version in (1, 2):
            path = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "model.gguf", seed=10 + version)
            data = path.read_bytes()
            s3.client().put_object(Bucket=BUCKET, Key=f"models/acme/myai/{version}/model.gguf", Body=data)
            digests[version] = hashlib.sha256(data).hexdigest()
        yield s3, digests


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def url(version: int) -> str:
    return f"s3://{BUCKET}/models/acme/myai/{version}/model.gguf"


def props(endpoint: str, version: int, sha256: str) -> dict:
    model = GgufModel(source=url(version), sha256=sha256, system="Answer briefly.", parameters=PARAMETERS)
    return {"node": "vm", "model": "myai:1", "endpoint": endpoint, "active": True,
            "source": own_models.source_props(model, KEY)}


def test_a_gguf_in_the_bucket_becomes_a_model_that_answers(bucket):
    s3, digests = bucket
    provider = OllamaModelProvider()
    with real_ollama.OllamaServer() as ollama:
        outs = provider.create(props(ollama.url, 1, digests[1])).outs
        tags = {m["name"]: m["digest"] for m in requests.get(f"{ollama.url}/api/tags", timeout=10).json()["models"]}
        assert outs["digest"] == outs["pulled_digest"] == tags["myai:1"]
        shown = requests.post(f"{ollama.url}/api/show", json={"model": "myai:1"}, timeout=10).json()
        assert f"sha256-{digests[1]}" in shown["modelfile"] and shown["system"] == "Answer briefly."
        assert "num_predict" in shown["parameters"]
        said = requests.post(f"{ollama.url}/api/generate", timeout=60, json={
            "model": "myai:1", "prompt": "hello", "stream": False, "options": {"num_predict": 4}}).json()
        assert said["response"].strip() and said["done"]

        # The same version again: the node holds the blob, nothing is copied, the model is the same.
        assert provider.create(props(ollama.url, 1, digests[1])).outs["digest"] == outs["digest"]
        # Promotion: version 2 replaces the model under the same tag, with its own digest.
        promoted = provider.update("vm/myai:1", {**outs}, props(ollama.url, 2, digests[2])).outs
        assert promoted["digest"] != outs["digest"]
        shown = requests.post(f"{ollama.url}/api/show", json={"model": "myai:1"}, timeout=10).json()
        assert f"sha256-{digests[2]}" in shown["modelfile"]

        # A digest that is not the object's: Ollama refuses the bytes and the error says so.
        with pytest.raises(OllamaError, match="digest mismatch"):
            provider.create({**props(ollama.url, 1, "0" * 64), "model": "wrong:1"})
        # An object the bucket does not hold: the bucket's own answer, naming the URL.
        with pytest.raises(OllamaError, match=r"s3://acme-models/models/acme/myai/9/model.gguf: NoSuchKey"):
            provider.create({**props(ollama.url, 9, "1" * 64), "model": "absent:1"})
        names = {m["name"] for m in requests.get(f"{ollama.url}/api/tags", timeout=10).json()["models"]}
        assert names == {"myai:1"}

        provider.delete("vm/myai:1", promoted)
        assert requests.get(f"{ollama.url}/api/tags", timeout=10).json()["models"] == []


def test_an_mlflow_alias_resolves_to_its_version_in_the_bucket(bucket):
    s3, digests = bucket
    needs(real_mlflow.missing())
    with real_mlflow.MlflowServer() as server:
        one = server.register("myai", url(1), digests[1])
        # A version registered by its folder, as MLflow's own artifacts are laid out.
        two = server.register("myai", url(2).removesuffix("/model.gguf"), digests[2])
        untagged = server.register("myai", url(1), None)
        server.set_alias("myai", "production", one)
        model = GgufModel(source="models:/myai@production", tracking_uri=server.url)
        assert own_models.resolve(model, KEY) == own_models.Resolved(url(1), digests[1], one)
        server.set_alias("myai", "production", two)
        assert own_models.resolve(model, KEY) == own_models.Resolved(url(2), digests[2], two)
        # A version whose GGUF is in a Cloud Storage bucket (seed 003's registry: MLflow with GCS artifacts).
        gcs_url = f"gs://{GCS_BUCKET}/models/acme/myai/3/model.gguf"
        three = server.register("myai", gcs_url.removesuffix("/model.gguf"), digests[1])
        server.set_alias("myai", "production", three)
        assert own_models.resolve(model, KEY) == own_models.Resolved(gcs_url, digests[1], three)

        server.set_alias("myai", "untagged", untagged)
        with pytest.raises(ConfigError) as err:
            own_models.resolve(GgufModel(source="models:/myai@untagged", tracking_uri=server.url), KEY)
        assert err.value.problems[0][0] == f"{KEY}.source" and "no 'sha256' tag" in err.value.problems[0][1]
        with pytest.raises(ConfigError) as err:
            own_models.resolve(GgufModel(source="models:/myai@staging", tracking_uri=server.url), KEY)
        assert err.value.problems[0][0] == f"{KEY}.source" and "myai@staging" in err.value.problems[0][1]


@pytest.fixture()
def gcs_bucket(tmp_path, monkeypatch):
    needs(loopback_gcs.missing(), real_ollama.missing())
    with loopback_gcs.LoopbackGcs() as gcs:
        for k, v in gcs.env().items():
            monkeypatch.setenv(k, v)
        gcs.create_bucket(GCS_BUCKET)
        data = write_tiny_gguf(tmp_path / "model.gguf", seed=21).read_bytes()
        gcs.client().bucket(GCS_BUCKET).blob("models/acme/myai/3/model.gguf").upload_from_string(data)
        yield gcs, hashlib.sha256(data).hexdigest()


def test_a_gguf_in_a_gcs_bucket_becomes_a_model_that_answers(gcs_bucket):
    _gcs, sha256 = gcs_bucket
    source = f"gs://{GCS_BUCKET}/models/acme/myai/3/model.gguf"
    model = GgufModel(source=source, sha256=sha256, system="Answer briefly.", parameters=PARAMETERS)
    provider = OllamaModelProvider()
    with real_ollama.OllamaServer() as ollama:
        props = {"node": "vm", "model": "myai:3", "endpoint": ollama.url, "active": True,
                 "source": own_models.source_props(model, KEY)}
        outs = provider.create(props).outs
        shown = requests.post(f"{ollama.url}/api/show", json={"model": "myai:3"}, timeout=10).json()
        assert f"sha256-{sha256}" in shown["modelfile"] and shown["system"] == "Answer briefly."
        assert outs["digest"] == outs["pulled_digest"]
        said = requests.post(f"{ollama.url}/api/generate", timeout=60, json={
            "model": "myai:3", "prompt": "hello", "stream": False, "options": {"num_predict": 4}}).json()
        assert said["response"].strip() and said["done"]

        # An object the bucket does not hold: Cloud Storage's own answer, naming the URL.
        absent = {**props, "model": "absent:1", "source": {**props["source"], "sha256": "1" * 64,
                                                           "url": source.replace("/3/", "/9/")}}
        with pytest.raises(OllamaError, match=rf"gs://{GCS_BUCKET}/models/acme/myai/9/model.gguf: NotFound"):
            provider.create(absent)
        names = {m["name"] for m in requests.get(f"{ollama.url}/api/tags", timeout=10).json()["models"]}
        assert names == {"myai:3"}


def test_a_gcs_source_is_read_with_the_stacks_gcp_credentials(monkeypatch, tmp_path):
    needs(real_ollama.missing())
    from pulumi.dynamic import ConfigureRequest
    from pulumi.dynamic.config import Config

    for k in ("GOOGLE_CREDENTIALS", "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(k, raising=False)
    provider = OllamaModelProvider()
    # What the engine hands the provider: the stack's config, here a gcp:credentials that is no key.
    provider.configure(ConfigureRequest(Config({"gcp:credentials": '{"type": "service_account", "x": "SECRET"}'},
                                               "gpu-estate")))
    source = {"url": f"gs://{GCS_BUCKET}/models/acme/myai/3/model.gguf", "sha256": "a" * 64, "parameters": {}}
    with real_ollama.OllamaServer() as ollama:
        with pytest.raises(OllamaError) as err:
            provider.create({"node": "vm", "model": "myai:3", "endpoint": ollama.url, "active": True,
                             "source": source})
    assert f"{source['url']}: gcp:credentials: not a readable Google credentials" in str(err.value)
    assert "SECRET" not in str(err.value)


# -- a model made from what a job of the stack made ------------------------------------------------------
JOB_KEY = "gpu-estate:nodes.gw.workloads.ollama.gguf_models.line:1"
ENDPOINT: list = []
"""The job's bucket's endpoint: the moto server of the module's ``bucket``, an existing bucket of the stack."""


def job_spec(run: str, models=None):
    from core.config import parse_spec
    from tests.unit.core.test_job_sources import stack

    raw = stack(models or {"line:1": {"source": "job:train", "system": "Answer briefly.", "parameters": PARAMETERS}})
    raw["storage"] = {BUCKET: {"provider": "s3", "location": "us-east-1", "endpoint": ENDPOINT[0],
                               "access_key_secret": "S3_KEY", "secret_key_secret": "S3_SECRET"}}
    raw["jobs"]["train"].update(bucket=BUCKET, outputs="models/acme/line/", run=run)
    return parse_spec(raw)


def stack_secrets(s3) -> dict:
    """The stack's config secrets the bucket names, as the program reads them and the engine hands a provider."""
    return {"gpu-estate:S3_KEY": s3.access_key, "gpu-estate:S3_SECRET": s3.secret_key}


def job_source(run: str, s3, models=None, tag: str = "line:1") -> dict:
    return own_models.sources(job_spec(run, models), "gpu-estate", "sandbox", stack_secrets(s3))[("gw", tag)]


def configured(s3, secrets=True) -> OllamaModelProvider:
    """The model library's provider as the engine configures it: with the stack's config."""
    from pulumi.dynamic import ConfigureRequest
    from pulumi.dynamic.config import Config

    provider = OllamaModelProvider()
    provider.configure(ConfigureRequest(Config(stack_secrets(s3) if secrets else {}, "gpu-estate")))
    return provider


@pytest.fixture()
def no_aws_default(bucket, monkeypatch, tmp_path):
    """The operator's machine with no AWS default chain at all (no AWS_ENDPOINT_URL_S3, no keys, no files, no
    instance metadata): the bucket at its endpoint is reached with the keys its config secrets hold, or not."""
    for k in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
              "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(k, raising=False)
    for k in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(k, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    ENDPOINT[:] = [bucket[0].endpoint]
    return bucket


def finish(s3, run: str, state: str, gguf=None, digest_line=None, exit_code=0, outputs="models/acme/line") -> None:
    """What the runner leaves in the bucket for a run (assets/job/estate_job.py): the status object, and the
    outputs the command wrote (the trainer's model.gguf and its sha256sum line)."""
    import json

    client = s3.client()
    status = {"state": state, "run": run, "label": f"gpu-estate-sandbox-job-train-{run}", "exit_code": exit_code}
    client.put_object(Bucket=BUCKET, Key=f"estate-jobs/gpu-estate-sandbox-job-train-{run}/status.json",
                      Body=json.dumps(status).encode())
    if gguf is not None:
        client.put_object(Bucket=BUCKET, Key=f"{outputs}/model.gguf", Body=gguf)
    if digest_line is not None:
        client.put_object(Bucket=BUCKET, Key=f"{outputs}/model.gguf.sha256", Body=digest_line.encode())


def test_a_job_source_waits_for_its_run_to_succeed_then_each_new_run_is_a_new_version(no_aws_default, tmp_path):
    s3, _ = no_aws_default
    access = {"endpoint": s3.endpoint, "region": "us-east-1", "access_key_secret": "S3_KEY",
              "secret_key_secret": "S3_SECRET"}
    assert own_models.JobOutputs.of(job_spec("1"), "gpu-estate", "sandbox", "train") == own_models.JobOutputs(
        "train", BUCKET, "models/acme/line", "1", "estate-jobs/gpu-estate-sandbox-job-train-1/status.json", access)
    provider = configured(s3)
    with real_ollama.OllamaServer() as ollama:
        def props(run):
            return {"node": "vm", "model": "line:1", "endpoint": ollama.url, "active": True, "version": "1",
                    "source": job_source(run, s3)}

        def tags():
            return {m["name"]: m["digest"] for m in requests.get(f"{ollama.url}/api/tags", timeout=10).json()["models"]}

        # Run 1 has not started: the model waits, and nothing is made on the node.
        waiting = props("1")
        assert waiting["source"]["waiting"] == "job train run 1 has not started"
        assert "url" not in waiting["source"] and waiting["source"]["version"] == "1"
        made = provider.create(waiting).outs
        assert made["digest"] is None and tags() == {}
        assert provider.read("vm/line:1", made).id == "vm/line:1"  # a refresh keeps it waiting, not gone

        finish(s3, "1", "running")
        assert props("1")["source"]["waiting"] == "job train run 1 is running"
        assert not provider.diff("vm/line:1", made, props("1")).changes  # still waiting: no change

        # Run 1 succeeded: the next `up` makes the model from its file and the digest beside it.
        one = write_tiny_gguf(tmp_path / "one.gguf", seed=21).read_bytes()
        finish(s3, "1", "succeeded", one, f"{hashlib.sha256(one).hexdigest()}  model.gguf\n")
        ready = props("1")
        assert ready["source"]["url"] == f"s3://{BUCKET}/models/acme/line/model.gguf"
        assert ready["source"]["sha256"] == hashlib.sha256(one).hexdigest()
        # The model's source says where the bucket is and which config secrets hold its key, never the key.
        assert ready["source"]["store"] == access
        assert s3.access_key not in str(ready) and s3.secret_key not in str(ready)
        assert provider.diff("vm/line:1", made, ready).changes
        made = provider.update("vm/line:1", made, ready).outs
        assert tags()["line:1"] == made["digest"]

        # Run 2 (promotion): while it trains the made model stays; once it succeeded the model is made again.
        assert props("2")["source"]["waiting"] == "job train run 2 has not started"
        assert not provider.diff("vm/line:1", made, props("2")).changes
        two = write_tiny_gguf(tmp_path / "two.gguf", seed=22).read_bytes()
        finish(s3, "2", "succeeded", two, f"{hashlib.sha256(two).hexdigest()}  model.gguf\n")
        diff = provider.diff("vm/line:1", made, props("2"))
        assert diff.changes and not diff.replaces
        promoted = provider.update("vm/line:1", made, props("2")).outs
        assert promoted["digest"] != made["digest"] and tags()["line:1"] == promoted["digest"]
        shown = requests.post(f"{ollama.url}/api/show", json={"model": "line:1"}, timeout=10).json()
        assert f"sha256-{hashlib.sha256(two).hexdigest()}" in shown["modelfile"]

        # A run that failed is not served; one that succeeded without its digest is refused, naming the key.
        finish(s3, "3", "failed", exit_code=1)
        assert props("3")["source"]["waiting"] == ("job train run 3 ended failed (exit 1); change its run id to "
                                                   "run it again")
        finish(s3, "4", "succeeded", digest_line="")
        with pytest.raises(ConfigError) as err:
            job_source("4", s3)
        assert err.value.problems[0][0] == f"{JOB_KEY}.source" and "model.gguf.sha256" in err.value.problems[0][1]
        provider.delete("vm/line:1", promoted)


def test_a_bucket_at_an_endpoint_is_read_with_its_config_secrets_not_the_default_chain(no_aws_default, tmp_path):
    s3, digests = no_aws_default
    # A GGUF named by its s3:// URL in the stack's bucket at an endpoint: its source says how to reach it.
    source = url(1)
    models = {"plain:1": {"source": source, "sha256": digests[1], "parameters": PARAMETERS},
              "line:1": {"source": "job:train", "parameters": PARAMETERS}}
    props = {"node": "vm", "model": "plain:1", "active": True,
             "source": job_source("e1", s3, models, "plain:1")}
    assert props["source"]["store"] == {"endpoint": s3.endpoint, "region": "us-east-1",
                                        "access_key_secret": "S3_KEY", "secret_key_secret": "S3_SECRET"}
    with real_ollama.OllamaServer() as ollama:
        props["endpoint"] = ollama.url
        # A provider the engine gave no such secret: refused naming the key, never asking AWS instead.
        with pytest.raises(OllamaError, match=re.escape(f"{source}: no config secret gpu-estate:S3_KEY (the access key "
                                                        f"of the bucket at {s3.endpoint})")):
            configured(s3, secrets=False).create(props)
        outs = configured(s3).create(props).outs
        tags = {m["name"]: m["digest"] for m in requests.get(f"{ollama.url}/api/tags", timeout=10).json()["models"]}
        assert outs["digest"] == tags["plain:1"]
        assert outs["source"]["store"]["endpoint"] == s3.endpoint and s3.secret_key not in str(outs)

    # A job source's status is read at the endpoint too: a run not started says so, not "cannot be read" ...
    assert job_source("e1", s3, models)["waiting"] == "job train run e1 has not started"
    # ... and without the stack's secrets the reason names the missing one.
    waiting = own_models.sources(job_spec("e1", models), "gpu-estate", "sandbox", {})[("gw", "line:1")]["waiting"]
    assert waiting.startswith("job train run e1: its status cannot be read (no config secret gpu-estate:S3_KEY")


def shown_blob(ollama) -> str:
    """The digest of the GGUF the node's line:1 is made of (its Modelfile's FROM)."""
    shown = requests.post(f"{ollama.url}/api/show", json={"model": "line:1"}, timeout=10).json()
    return re.search(r"sha256-([0-9a-f]{64})", shown["modelfile"]).group(1)


def test_a_waiting_job_source_keeps_the_earlier_runs_model_on_a_nodes_new_machine(no_aws_default, tmp_path):
    s3, _ = no_aws_default
    provider = configured(s3)

    def tags(ollama):
        return {m["name"]: m["digest"] for m in requests.get(f"{ollama.url}/api/tags", timeout=10).json()["models"]}

    def props(run, ollama, instance):
        return {"node": "vm", "model": "line:1", "endpoint": ollama.url, "instance": instance, "active": True,
                "version": "1", "source": job_source(run, s3)}

    one = write_tiny_gguf(tmp_path / "one.gguf", seed=31).read_bytes()
    finish(s3, "m1", "succeeded", one, f"{hashlib.sha256(one).hexdigest()}  model.gguf\n")
    with real_ollama.OllamaServer() as first:
        made = provider.create(props("m1", first, "i-1")).outs
        earlier = made["source"]
        assert earlier["url"] and tags(first)["line:1"] == made["digest"]
    # Run m2 trains; meanwhile the node's machine is replaced (failover, a re-rent): its Ollama holds nothing.
    finish(s3, "m2", "running")
    with real_ollama.OllamaServer() as second:
        moved = props("m2", second, "i-2")
        assert moved["source"]["waiting"] == "job train run m2 is running"
        assert provider.diff("vm/line:1", made, moved).changes
        kept = provider.update("vm/line:1", made, moved).outs
        # The earlier run's model is made on the new machine, and the state keeps where it came from.
        assert tags(second)["line:1"] == kept["digest"] == kept["pulled_digest"]
        assert kept["source"] == earlier and shown_blob(second) == earlier["sha256"]
        assert not provider.diff("vm/line:1", kept, props("m2", second, "i-2")).changes
        # The new run failed: the earlier model keeps serving, and its source stays in state.
        finish(s3, "m2", "failed", exit_code=1)
        failed = props("m2", second, "i-2")
        assert failed["source"]["waiting"].startswith("job train run m2 ended failed")
        assert not provider.diff("vm/line:1", kept, failed).changes
        assert provider.read("vm/line:1", kept).outs == kept

    # Another new machine while a run m3 trains and has already overwritten the earlier bytes: the earlier
    # model cannot be made again (Ollama refuses bytes of another digest), which is said, not a failed update.
    two = write_tiny_gguf(tmp_path / "two.gguf", seed=32).read_bytes()
    finish(s3, "m3", "running", two)
    with real_ollama.OllamaServer() as third:
        gone = provider.update("vm/line:1", kept, props("m3", third, "i-3")).outs
        assert gone["digest"] is None and tags(third) == {} and gone["source"] == earlier
        # Once m3 succeeded, the next `up` makes its model.
        finish(s3, "m3", "succeeded", two, f"{hashlib.sha256(two).hexdigest()}  model.gguf\n")
        promoted = provider.update("vm/line:1", gone, props("m3", third, "i-3")).outs
        assert tags(third)["line:1"] == promoted["digest"] and promoted["source"]["url"] == earlier["url"]
        assert promoted["source"]["sha256"] == shown_blob(third) == hashlib.sha256(two).hexdigest()
