"""A model made from what a job of the stack made (``gguf_models.<tag>.source: job:<job>[/<file>]``): the
reference is parsed to the job and the file under its outputs, and a bad one (a job the stack does not have,
a path out of the outputs, a digest given by hand) is refused before any resource, naming the key and value."""
import copy

import pytest

from core.config import parse_spec
from core.errors import ConfigError
from core.own_models import job_file, read_digest
from tests.unit.core.test_jobs import BASE

KEY = "gpu-estate:nodes.gw.workloads.ollama.gguf_models"
SHA = "ab" * 32


def stack(models):
    raw = copy.deepcopy(BASE)
    raw["nodes"]["gw"]["workloads"]["ollama"] = {
        "gpu": False, "gguf_models": models, "model_sizes": {tag: {"disk_gb": 0.1, "vram_gb": 0.1} for tag in models}}
    return raw


def refused(models):
    with pytest.raises(ConfigError) as err:
        parse_spec(stack(models))
    return err.value.problems


def test_a_job_source_names_the_job_and_a_file_under_its_outputs():
    spec = parse_spec(stack({"line:1": {"source": "job:train"},
                             "line:2": {"source": "job:train/q4/line-Q4_K_M.gguf", "parameters": {"num_ctx": 512}}}))
    own = spec.nodes["gw"].workloads["ollama"].own_models()
    assert own["line:1"].job() == ("train", "model.gguf")  # the default file, as a version's folder holds
    assert own["line:2"].job() == ("train", "q4/line-Q4_K_M.gguf")
    assert own["line:2"].alias() is None
    assert job_file(spec.jobs["train"].outputs, "q4/line-Q4_K_M.gguf") == "models/acme/tiny/3/q4/line-Q4_K_M.gguf"


def test_a_job_the_stack_does_not_have_is_refused_naming_the_key_and_value():
    assert refused({"line:1": {"source": "job:nope"}}) == [
        (f"{KEY}.line:1.source", "no job 'nope' in gpu-estate:jobs (known: train) (got 'job:nope')")]


@pytest.mark.parametrize("entry,says", [
    ({"source": "job:train", "sha256": SHA}, "sha256"),
    ({"source": "job:train", "tracking_uri": "http://m:5000"}, "tracking_uri"),
    ({"source": "job:train/../secrets/model.gguf"}, "job:train/../secrets/model.gguf"),
    ({"source": "job:train/model.bin"}, "job:train/model.bin"),
    ({"source": "job:/model.gguf"}, "job:/model.gguf"),
])
def test_a_bad_job_source_names_its_key_and_value(entry, says):
    found = refused({"line:1": entry})
    assert any(p.startswith(f"{KEY}.line:1") and says in m for p, m in found), found


def test_the_digest_is_sha256sums_line():
    assert read_digest(f"{SHA}  model.gguf\n") == SHA
    assert read_digest(SHA.upper()) == SHA
    assert read_digest("not a digest  model.gguf") is None
    assert read_digest("") is None
