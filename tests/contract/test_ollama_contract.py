"""The loopback Ollama (loopback/ollama.py) held to the real one: the same requests go to both (a pull's
stream from the loopback registry, the tags, show, delete, chat and generate streamed and not, an unknown
model, a missing tag) and their status codes, content types and response shapes are compared.

The loopback server stays for what the real one cannot show (faults, slow pulls, cut streams); where the
two differed, the loopback was changed. What may differ is named where it is allowed:
- VALUES: texts, digests, sizes, times and durations are the servers' own; shapes are compared.
- LAYERS: a real pull streams one line per chunk for each of the model's blobs (weights, template,
  params); the loopback streams ``pull_steps`` lines for one layer. Both give every layer line the same
  keys, a full ``sha256:`` digest and a ``pulling <12 hex>`` status.
- MISSING_TAG: the loopback has no registry behind it, so a tag is missing because the test says so
  (``unknown``); it then answers as the real server does for a tag its registry lacks.
- EMPTY_BODY: a delete answers 200 with an empty body; the real server names no content type for it.
- VERSION: each reports its own version.

Needs the real Ollama and the loopback registry (``make setup``); skipped naming what is missing, except on
the project's CI, where that fails.
"""
import json
import re
from typing import Any, Dict, List, Tuple

import pytest
import requests

from loopback.ollama import FakeOllama
from sandbox.real_ollama import OllamaServer
from tests.conftest import real_servers_or_skip

HEX64 = re.compile(r"^[0-9a-f]{64}$")
GENERATE = {"num_predict": 4}


@pytest.fixture(scope="module")
def both(tiny_registry):
    """The real Ollama and the loopback one, and the model name both are asked for."""
    real_servers_or_skip()
    fake = FakeOllama()
    with OllamaServer() as real:
        yield {"real": real.url, "loopback": fake.url}, fake, tiny_registry
    fake.close()


def shape(value: Any) -> Any:
    """A JSON value's structure: keys and the type of each leaf (a list by its first item)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def media(resp: requests.Response) -> str:
    return (resp.headers.get("content-type") or "").split(";")[0].strip()


def lines(resp: requests.Response) -> List[Dict[str, Any]]:
    return [json.loads(raw) for raw in resp.iter_lines() if raw]


def pull(url: str, name: str, **body: Any) -> requests.Response:
    return requests.post(f"{url}/api/pull", json={"model": name, "insecure": True, **body}, stream=True, timeout=60)


def pulled(urls: Dict[str, str], name: str) -> None:
    for url in urls.values():
        assert pull(url, name, stream=False).json() == {"status": "success"}


def each(urls: Dict[str, str], call) -> Dict[str, requests.Response]:
    return {side: call(url) for side, url in urls.items()}


def test_a_pull_streams_the_same_kinds_of_lines(both):
    urls, _, registry = both
    seen = {}
    for side, url in urls.items():
        resp = pull(url, registry.tiny)
        assert resp.status_code == 200 and media(resp) == "application/x-ndjson", side
        seen[side] = lines(resp)
    for side, got in seen.items():
        # LAYERS: how many layer lines differs; their kind, keys and digests do not.
        kinds: List[str] = []
        for line in got:
            status = line["status"]
            if status.startswith("pulling ") and status != "pulling manifest":
                assert set(line) <= {"status", "digest", "total", "completed"} and {"digest", "total"} <= set(line), (side, line)
                assert line["digest"].startswith("sha256:") and HEX64.match(line["digest"][7:]), (side, line)
                assert status == f"pulling {line['digest'][7:19]}", (side, line)
                assert isinstance(line["total"], int) and isinstance(line.get("completed", 0), int)
                status = "pulling <layer>"
            else:
                assert set(line) == {"status"}, (side, line)
            if not kinds or kinds[-1] != status:
                kinds.append(status)
        assert kinds == ["pulling manifest", "pulling <layer>", "verifying sha256 digest", "writing manifest",
                         "success"], (side, kinds)


def test_a_pull_without_streaming_answers_once(both):
    urls, _, registry = both
    for side, resp in each(urls, lambda u: pull(u, registry.tiny, stream=False)).items():
        assert (resp.status_code, media(resp), resp.json()) == (200, "application/json", {"status": "success"}), side


def test_tags_list_the_pulled_model_in_the_same_shape(both):
    urls, _, registry = both
    pulled(urls, registry.tiny)
    found = {}
    for side, resp in each(urls, lambda u: requests.get(f"{u}/api/tags", timeout=10)).items():
        assert resp.status_code == 200 and media(resp) == "application/json", side
        (model,) = [m for m in resp.json()["models"] if m["name"] == registry.tiny]
        assert model["model"] == registry.tiny and HEX64.match(model["digest"]), (side, model)
        found[side] = model
    assert shape(found["loopback"]) == shape(found["real"])
    # The real server lists the digest of the manifest it pulled, the one the registry serves.
    assert found["real"]["digest"] == registry.tiny_digest


def test_show_answers_the_same_keys(both):
    urls, _, registry = both
    pulled(urls, registry.tiny)
    shown = {}
    for side, resp in each(urls, lambda u: requests.post(f"{u}/api/show", json={"model": registry.tiny}, timeout=10)).items():
        assert resp.status_code == 200 and media(resp) == "application/json", side
        shown[side] = resp.json()
    assert set(shown["loopback"]) == set(shown["real"])
    assert shape(shown["loopback"]["details"]) == shape(shown["real"]["details"])
    assert shown["loopback"]["capabilities"] == shown["real"]["capabilities"] == ["completion"]


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/api/show", {"model": "absent:1"}),
    ("POST", "/api/chat", {"model": "absent:1", "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/api/generate", {"model": "absent:1", "prompt": "hi"}),
    ("DELETE", "/api/delete", {"model": "absent:1"}),
])
def test_an_unknown_model_is_the_same_404(both, method, path, body):
    urls, _, _ = both
    for side, resp in each(urls, lambda u: requests.request(method, f"{u}{path}", json=body, timeout=10)).items():
        assert (resp.status_code, media(resp), resp.json()) == (404, "application/json",
                                                                {"error": "model 'absent:1' not found"}), side


def answer_shapes(url: str, path: str, body: Dict[str, Any], stream: bool) -> Tuple[int, str, List[Any]]:
    resp = requests.post(f"{url}{path}", json={**body, "stream": stream, "options": GENERATE}, stream=True, timeout=120)
    got = lines(resp) if stream else [resp.json()]
    # VALUES: shapes only; the first streamed line stands for all but the last.
    kinds = [shape(got[0]), shape(got[-1])] if stream else [shape(got[0])]
    return resp.status_code, media(resp), kinds


@pytest.mark.parametrize("path, body", [
    ("/api/chat", {"messages": [{"role": "user", "content": "hello"}]}),
    ("/api/generate", {"prompt": "hello"}),
])
@pytest.mark.parametrize("stream", [True, False])
def test_chat_and_generate_answer_in_the_same_shape(both, path, body, stream):
    urls, _, registry = both
    pulled(urls, registry.tiny)
    real = answer_shapes(urls["real"], path, {"model": registry.tiny, **body}, stream)
    loopback = answer_shapes(urls["loopback"], path, {"model": registry.tiny, **body}, stream)
    assert loopback == real
    assert real[:2] == (200, "application/x-ndjson" if stream else "application/json")


def test_a_missing_tag_fails_the_same_way(both):
    urls, fake, registry = both
    missing = registry.name("tiny", "2")
    fake.unknown.add(missing)  # MISSING_TAG: the loopback has no registry to ask
    for side, url in urls.items():
        resp = pull(url, missing)
        assert resp.status_code == 200, side  # the stream has begun: the error is its last line
        assert lines(resp) == [{"status": "pulling manifest"},
                               {"error": "pull model manifest: file does not exist"}], side
        once = pull(url, missing, stream=False)
        assert (once.status_code, once.json()) == (500, {"error": "pull model manifest: file does not exist"}), side


def test_delete_removes_and_a_second_delete_is_404(both):
    urls, _, registry = both
    pulled(urls, registry.tiny)
    for side, url in urls.items():
        first = requests.delete(f"{url}/api/delete", json={"model": registry.tiny}, timeout=10)
        assert (first.status_code, first.content) == (200, b""), side  # EMPTY_BODY: content types differ
        tags = requests.get(f"{url}/api/tags", timeout=10).json()["models"]
        assert registry.tiny not in [m["name"] for m in tags], side
        again = requests.delete(f"{url}/api/delete", json={"model": registry.tiny}, timeout=10)
        assert (again.status_code, again.json()) == (404, {"error": f"model '{registry.tiny}' not found"}), side


def test_the_root_and_the_version_answer_alike(both):
    urls, _, _ = both
    for side, url in urls.items():
        root = requests.get(f"{url}/", timeout=10)
        assert (root.status_code, media(root), root.text) == (200, "text/plain", "Ollama is running"), side
        version = requests.get(f"{url}/api/version", timeout=10)
        assert version.status_code == 200 and set(version.json()) == {"version"}, side  # VERSION: its own


def test_a_generated_model_is_listed_loaded_in_the_same_shape(both):
    """What the health agent reads before a one-token generation: ``/api/ps`` lists a model once a
    generation has loaded it, with the same keys on both."""
    urls, _, registry = both
    pulled(urls, registry.tiny)
    for url in urls.values():
        assert requests.post(f"{url}/api/generate", timeout=120, json={
            "model": registry.tiny, "prompt": "hi", "stream": False, "options": {"num_predict": 1}}).status_code == 200
    loaded = {side: resp.json() for side, resp in each(urls, lambda u: requests.get(f"{u}/api/ps", timeout=10)).items()}
    assert [m["name"] for m in loaded["real"]["models"]] == [registry.tiny]
    assert [m["name"] for m in loaded["loopback"]["models"]] == [registry.tiny]
    assert shape(loaded["loopback"]) == shape(loaded["real"]), json.dumps(loaded, indent=1)
