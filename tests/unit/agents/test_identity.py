"""The identity proxy's ID tokens (agents/identity.py) against the loopback Google token endpoint, which
verifies each JWT assertion with the public half of the key the test generated, and the proxy itself in
front of the loopback Cloud Run, which refuses a request without a valid ID token for its URL."""
import json
import threading
import time

import jwt
import pytest
import requests

from agents import identity
from loopback.cloudrun import FakeCloudRun
from loopback.google_oauth import FakeGoogleOAuth, rsa_key

BEARER = "identity-bearer-test-3b1d"
MODEL = "qwen3-8b-l4"


@pytest.fixture
def google():
    g = FakeGoogleOAuth()
    yield g
    g.close()


@pytest.fixture
def run(google):
    key = google.service_account()
    r = FakeCloudRun(MODEL, google, [key["client_email"]])
    r.key = key
    yield r
    r.close()


def test_the_assertion_is_googles_jwt_bearer_grant_for_the_services_url(google, run):
    source = identity.IdTokenSource(run.key, run.url)
    token = source.token()
    (method, path, body), = google.requests
    assert (method, path) == ("POST", "/token")
    form = dict(p.split("=", 1) for p in body.split("&"))
    assert form["grant_type"] == "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
    assertion = requests.utils.unquote(form["assertion"])
    # Signed with the service account's key (its public half verifies it), naming its key id.
    public = google.accounts[run.key["client_email"]][1]
    claims = jwt.decode(assertion, public, algorithms=["RS256"], audience=google.token_uri)
    assert jwt.get_unverified_header(assertion)["kid"] == run.key["private_key_id"]
    assert claims["iss"] == run.key["client_email"] and claims["target_audience"] == run.url
    assert claims["exp"] - claims["iat"] == 3600
    # The ID token Google answered: its audience is the service's URL, its account the gateway's.
    issued = google.verify(token, audience=run.url)
    assert issued["email"] == run.key["client_email"]


def test_a_token_is_kept_until_shortly_before_it_expires_then_minted_again(google, run):
    # Tokens that expire two seconds after the refresh margin: kept for two seconds, then minted again.
    google.lifetime = identity.REFRESH_BEFORE_SECONDS + 2
    source = identity.IdTokenSource(run.key, run.url)
    first = source.token()
    assert source.token() == first and source.minted == 1
    expiry = jwt.decode(first, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expiry - identity.REFRESH_BEFORE_SECONDS - time.time()) + 0.2)
    second = source.token()
    assert second != first and source.minted == 2 and len(google.issued) == 2
    assert google.verify(second, audience=run.url)["exp"] > expiry


def test_concurrent_requests_share_one_mint(google, run):
    source = identity.IdTokenSource(run.key, run.url)
    tokens = []
    threads = [threading.Thread(target=lambda: tokens.append(source.token())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(set(tokens)) == 1 and len(tokens) == 8 and len(google.issued) == 1


def test_a_refused_or_unreachable_token_endpoint_says_what_without_the_key(google, run):
    google.inject("status", status=400, body={"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
    with pytest.raises(identity.TokenError, match=r"answered 400 \(invalid_grant: Invalid JWT Signature.\)") as e:
        identity.IdTokenSource(run.key, run.url).token()
    assert "PRIVATE KEY" not in str(e.value)
    # A key the endpoint does not know (deleted in IAM) is refused by the loopback as by Google.
    stranger = {**run.key, "client_email": "someone@example.iam.gserviceaccount.com"}
    with pytest.raises(identity.TokenError, match="invalid_grant"):
        identity.IdTokenSource(stranger, run.url).token()
    google.close()
    with pytest.raises(identity.TokenError, match="could not be reached"):
        identity.IdTokenSource(run.key, run.url).token()


def test_a_key_without_its_fields_is_named():
    with pytest.raises(identity.TokenError, match="no private_key, token_uri"):
        identity.IdTokenSource({"client_email": "a@b"}, "https://x")


@pytest.fixture
def proxy(tmp_path, run):
    doc = tmp_path / "identity.json"
    doc.write_text(json.dumps({"services": {"llama-l4": {"url": run.url}}}))
    p = identity.IdentityProxy(doc, {"llama-l4": run.key}, BEARER)
    httpd = identity.serve(p, 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", doc
    httpd.shutdown()
    httpd.server_close()


def post(url, body, bearer=BEARER, **kw):
    return requests.post(f"{url}/llama-l4/v1/chat/completions", json=body, timeout=30,
                         headers={"Authorization": f"Bearer {bearer}"}, **kw)


def test_the_proxy_signs_requests_and_streams_answers_through(proxy, run):
    url, _ = proxy
    # The loopback Cloud Run refuses a request without a token, as Cloud Run does.
    assert requests.post(f"{run.url}/v1/chat/completions", json={"model": MODEL}, timeout=10).status_code == 401
    resp = post(url, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == f"cloudrun answers with {MODEL}"
    with post(url, {"model": MODEL, "stream": True, "messages": []}, stream=True) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line for line in resp.iter_lines() if line]
    assert events[-1] == b"data: [DONE]"
    text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == f"cloudrun streams with {MODEL}"
    assert run.refused == [401] and [c["email"] for c in run.callers] == [run.key["client_email"]] * 2
    # The gateway's bearer never reaches the service.
    assert BEARER not in json.dumps(run.headers)


def test_the_proxy_refuses_anyone_without_the_gateways_bearer(proxy, run):
    url, _ = proxy
    resp = post(url, {"model": MODEL}, bearer="guess")
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "auth_error"
    assert run.requests == []
    resp = requests.post(f"{url}/elsewhere/v1/chat/completions", json={}, timeout=10,
                         headers={"Authorization": f"Bearer {BEARER}"})
    assert resp.status_code == 404 and "elsewhere" in resp.json()["error"]["message"]


def test_a_body_is_read_only_from_the_bearer_and_only_up_to_its_bound(proxy, run):
    """A client without the bearer announcing 10 GB and sending none is answered at once, its body never
    awaited; with the bearer, a body above the bound is refused before it is read."""
    import socket

    url, _ = proxy
    port = int(url.rsplit(":", 1)[1])

    def ask(bearer: str) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall((f"POST /llama-l4/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {10 << 30}\r\n\r\n").encode())
            return s.recv(4096)

    assert ask("guess").startswith(b"HTTP/1.1 401")
    assert ask(BEARER).startswith(b"HTTP/1.1 413")
    assert run.requests == []


def test_a_token_endpoint_failing_is_an_openai_error_and_a_new_url_is_read_again(proxy, run, google):
    url, doc = proxy
    google.inject("status", status=503, body={"error": "temporarily_unavailable"})
    resp = post(url, {"model": MODEL, "messages": []})
    assert resp.status_code == 502
    error = resp.json()["error"]
    assert error["type"] == "identity_error" and "llama-l4" in error["message"] and "503" in error["message"]
    assert run.requests == []
    # The service moved (a new URL after `up`): the document is read again, the token's audience follows.
    moved = FakeCloudRun(MODEL, google, [run.key["client_email"]], name="moved")
    try:
        doc.write_text(json.dumps({"services": {"llama-l4": {"url": moved.url}}}))
        resp = post(url, {"model": MODEL, "messages": []})
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"] == f"moved answers with {MODEL}"
        assert moved.callers[0]["aud"] == moved.url
    finally:
        moved.close()


def test_the_shipped_proxy_runs_in_litellms_environment_as_the_gateway_hosts_unit_runs_it(tmp_path, run):
    """What a gateway host runs: the estate's modules as the deploy script unpacks them, under LiteLLM's own
    Python (its PyJWT, cryptography and requests), the document as `up` writes it and the keys as the
    identity env file holds them."""
    import socket
    import subprocess

    from components import gateway
    from components.gateway_host import identity_env
    from core.config import parse_spec
    from core.identity import HOST_DOCUMENT, document
    from core.topology import plan_estate
    from providers.local_gateway import litellm_binary
    from providers.ssh_forward import free_port
    from providers.wait import wait_for, within
    from tests.mocks import stack_estate, unpack_library

    if not litellm_binary().exists():
        pytest.skip(f"no LiteLLM at {litellm_binary()}: `make setup` installs it")
    plan = plan_estate(parse_spec(stack_estate("prod")))
    files = gateway.gateway_files(plan, "model_list: []\n", {}, library=True,
                                  signed=document(plan.spec.services, {"llama-l4": run.url}))
    doc = tmp_path / HOST_DOCUMENT
    doc.parent.mkdir(parents=True)
    doc.write_text(files[HOST_DOCUMENT])
    unpack_library(tmp_path / "lib")
    env = dict(line.split("=", 1) for line in identity_env({"llama-l4": json.dumps(run.key)}, BEARER).splitlines())
    port = free_port()
    proc = subprocess.Popen(
        [str(litellm_binary().parent / "python"), "-I", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); from agents.identity import main; sys.exit(main(sys.argv[2:]))",
         str(tmp_path / "lib"), "--document", str(doc), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={"PATH": "/usr/bin:/bin", **env})
    try:
        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0 or proc.poll() is not None
        wait_for(listening, bool, within(60), 0.2, "the proxy listening")
        assert proc.poll() is None, proc.stdout.read()
        resp = post(f"http://127.0.0.1:{port}", {"model": MODEL, "messages": []})
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"] == f"cloudrun answers with {MODEL}"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "identity: POST llama-l4/v1/chat/completions -> 200" in out
    assert run.key["private_key"].splitlines()[3] not in out


def test_a_token_the_service_refuses_is_minted_again_for_the_next_request(proxy, run, google):
    url, _ = proxy
    assert post(url, {"model": MODEL, "messages": []}).status_code == 200
    # Google rotated the key it signs ID tokens with: the service no longer takes the kept one.
    google.signing_key = rsa_key()
    resp = post(url, {"model": MODEL, "messages": []})
    assert resp.status_code == 401 and "Unauthorized" in resp.text
    resp = post(url, {"model": MODEL, "messages": []})
    assert resp.status_code == 200, resp.text
    assert len(google.issued) == 2 and run.refused == [401]
