"""Train, then serve what it made, through the real engine on the sandbox's VM node: the stack declares a GPU
job and, on the VM node, a model whose source is that job (``source: job:train``) behind a gateway alias; its
preview says the model waits for the job. The job trains the tiny CPU model in the sandbox's trainer image and
leaves ``model.gguf`` and its sha256 under its outputs prefix in moto's real S3 server; then `up` makes the
model in the real Ollama (0.17.4) from that file and the digest beside it, with no digest written in the
stack, and it answers through the real LiteLLM gateway. `destroy` leaves no instance in the loopback clouds:
nothing bills.

The sandbox has one VM node (this machine's sshd), which a job's machine and a serving node cannot hold at
once (each installs its own host key there), so the job's `up` runs before the serving node is added; the
waiting model and a promotion to a new run, which need both at once, are driven on the real Ollama and moto
by tests/contract/test_own_models.py.

Skipped where the engine, the VM node, moto's server or the trainer image is missing, except on the project's
CI (GPU_ESTATE_REQUIRE_VM=1), where that fails.
"""
import json

import pytest
import requests
from pulumi import automation as auto

import sandbox
from sandbox import s3 as loopback_s3
from sandbox.tiny_model import PARAMETERS
from tests.conftest import required_or_skip
from tests.engine import test_jobs_engine as jobs_engine
from tests.engine.test_jobs_engine import BUCKET, bucket_with_points, job, job_machines, jobs_in_state, until
from tests.engine.test_own_models_engine import OLLAMA, SIZES, assert_answers, destroyed_after, gguf_on_node

pytestmark = jobs_engine.pytestmark  # the engine, money, and the same skip

OUTPUTS = "models/acme/line/1/"
TAG = "line:1"


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    required_or_skip(sandbox.engine_missing() or sandbox.vm_missing() or loopback_s3.missing()
                     or jobs_engine.trainer_missing(), "the VM node, S3 and the trainer image")
    work = sandbox.project_copy(tmp_path_factory.mktemp("project"), vm=True)
    with loopback_s3.LoopbackS3() as s3, sandbox.fake_clouds(vm=True) as fakes, \
            sandbox.ssh_agent(fakes["machine"].sshd.private_key) as agent:
        bucket_with_points(s3, fakes)
        # Step one's stack: the job alone. The serving node, reduced to its Ollama, waits for step two.
        cfg = jobs_engine.jobs_stack(work, s3.endpoint, {"train": job(["python3", "/trainer.py", "--epochs", "200"],
                                                                     outputs=OUTPUTS, max_hours=1)})
        vm = cfg["gpu-estate:nodes"][sandbox.VM_NODE]
        vm["workloads"] = {"ollama": {k: v for k, v in vm["workloads"]["ollama"].items() if k != "secret_env"}}
        # The bucket is an existing one at moto's endpoint: the job, the preview's read of its status and the
        # node's copy of its GGUF all reach it with the keys in the storage's config secrets. The operator's
        # machine has no AWS default chain at all (no AWS_ENDPOINT_URL_S3, no keys, no instance metadata).
        none = str(tmp_path_factory.mktemp("no-aws") / "none")
        env = {**sandbox.engine_env(fakes, tmp_path_factory.mktemp("engine"), agent),
               "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": none, "AWS_CONFIG_FILE": none}
        st = sandbox.stack(env, work_dir=work)
        for name, value in (("JOBS_S3_KEY", s3.access_key), ("JOBS_S3_SECRET", s3.secret_key),
                            ("TRAINER_TOKEN", "trainer-token-value")):
            st.set_config(f"gpu-estate:{name}", auto.ConfigValue(value=value, secret=True))
        with destroyed_after(st, s3):
            yield st, fakes, s3, vm


def refreshed_state(st, name: str) -> str:
    st.refresh()
    return jobs_in_state(st).get(name, {}).get("state", "")


def test_a_stack_trains_then_serves_what_it_made_and_nothing_bills(estate):
    st, fakes, s3, vm = estate
    # The stack as the operator writes it: the job, and on the serving node a model made from what it makes.
    vm["workloads"]["ollama"]["gguf_models"] = {TAG: {"source": "job:train", "parameters": PARAMETERS}}
    vm["workloads"]["ollama"]["model_sizes"] = {TAG: SIZES}
    nodes = json.loads(st.get_config("gpu-estate:nodes").value)
    gateway = json.loads(st.get_config("gpu-estate:gateway").value)
    st.set_config("gpu-estate:nodes", sandbox.auto_config({**nodes, sandbox.VM_NODE: vm}))
    st.set_config("gpu-estate:gateway", sandbox.auto_config({**gateway, "aliases": {"mine": TAG}}))
    preview = st.preview()
    assert f"{sandbox.VM_NODE}: {TAG} waits: job train run 1 has not started" in preview.stdout

    # The job's `up` (the serving node left out while the job's machine holds the sandbox's one VM).
    st.set_config("gpu-estate:nodes", sandbox.auto_config(nodes))
    st.set_config("gpu-estate:gateway", sandbox.auto_config(gateway))
    st.up()
    until("refresh showing the train job finished",
          lambda: refreshed_state(st, "train") in ("succeeded", "failed", "capped"), seconds=240)
    assert jobs_in_state(st)["train"]["state"] == "succeeded", jobs_in_state(st)["train"]
    until("the train job's machine released", lambda: not job_machines(fakes))
    made = s3.client().get_object(Bucket=BUCKET, Key=f"{OUTPUTS}model.gguf.sha256")["Body"].read().decode()
    digest = made.split()[0]
    assert made == f"{digest}  model.gguf\n" and len(digest) == 64

    # The serving node back: `up` makes the model from the file and the digest the job wrote.
    st.set_config("gpu-estate:nodes", sandbox.auto_config({**nodes, sandbox.VM_NODE: vm}))
    st.set_config("gpu-estate:gateway", sandbox.auto_config({**gateway, "aliases": {"mine": TAG}}))
    source = f"s3://{BUCKET}/{OUTPUTS}model.gguf"
    up = st.up()
    assert f"{sandbox.VM_NODE}: copying {source} for {TAG}: 100%" in up.stdout
    assert f"made {TAG} from {source} (job:train = version 1)" in up.stdout
    assert gguf_on_node(TAG) == digest  # the very file the job wrote
    shown = requests.post(f"{OLLAMA}/api/show", json={"model": TAG}, timeout=10).json()["model_info"]
    assert shown["gpu_estate.trained.a"] == pytest.approx(2, abs=0.1)  # it carries the weights the job fitted
    assert jobs_in_state(st)["train"]["state"] == "succeeded" and not job_machines(fakes)  # not run again
    assert_answers(up, "mine")

    st.destroy()
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}
