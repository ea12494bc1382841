"""The project's stdlib S3 client (``providers/s3.py``) against moto's real server and botocore's own signer.

- A file larger than one part goes up as a multipart upload that boto3 reads back byte for byte (an S3 ETag
  of ``<md5>-<parts>``), and comes down again streamed; an upload that fails part-way is aborted, leaving no
  parts behind.
- moto answers any signature, so the signing is held against botocore's: the same requests, signed by both
  for a fixed date, carry the same ``Authorization`` header.
"""
import datetime as dt
import hashlib
import urllib.parse

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from providers import s3 as s3mod
from providers.s3 import MIN_PART, S3, S3Error
from sandbox.s3 import LoopbackS3, missing

BUCKET = "estate-parts"


@pytest.fixture(scope="module")
def server():
    if missing():
        pytest.skip(missing())
    with LoopbackS3() as s3:
        s3.create_bucket(BUCKET)
        yield s3


def client(server, **more) -> S3:
    return S3(BUCKET, server.access_key, server.secret_key, endpoint=server.endpoint, **more)


def big_file(tmp_path, size: int):
    path = tmp_path / "model.gguf"
    block = hashlib.sha256(b"estate").digest() * 1024  # 32 KiB, not all one byte
    with open(path, "wb") as f:
        for i in range(0, size, len(block)):
            f.write(block[: min(len(block), size - i)])
    return path


def test_a_file_larger_than_a_part_goes_up_in_parts_and_comes_back_whole(server, tmp_path):
    path = big_file(tmp_path, 2 * MIN_PART + 12345)  # three parts of 5 MiB at most
    c = client(server, part_size=MIN_PART)
    assert c.put_file("models/big/model.gguf", str(path)) == path.stat().st_size
    head = server.client().head_object(Bucket=BUCKET, Key="models/big/model.gguf")
    assert head["ContentLength"] == path.stat().st_size
    assert head["ETag"].strip('"').endswith("-3")  # S3's mark of a three-part upload
    body = server.client().get_object(Bucket=BUCKET, Key="models/big/model.gguf")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(path.read_bytes()).digest()
    c.download("models/big/model.gguf", str(tmp_path / "back" / "model.gguf"))
    assert (tmp_path / "back" / "model.gguf").read_bytes() == path.read_bytes()
    assert not (tmp_path / "back" / "model.gguf.part").exists()
    assert c.uploads("models/big/") == []


def test_a_file_of_one_part_is_one_put(server, tmp_path):
    path = big_file(tmp_path, MIN_PART)
    client(server, part_size=MIN_PART).put_file("models/small/model.gguf", str(path))
    head = server.client().head_object(Bucket=BUCKET, Key="models/small/model.gguf")
    assert "-" not in head["ETag"].strip('"') and head["ContentLength"] == MIN_PART


class _DropsPartTwo(S3):
    """The connection lost during the second part (the transport, not S3, fails)."""

    def _exchange(self, method, key="", query=None, *args, **kwargs):
        if (query or {}).get("partNumber") == "2":
            raise ConnectionResetError("connection reset by peer")
        return super()._exchange(method, key, query, *args, **kwargs)


def test_an_upload_that_fails_part_way_is_aborted_and_leaves_no_parts(server, tmp_path):
    path = big_file(tmp_path, 2 * MIN_PART + 1)
    c = _DropsPartTwo(BUCKET, server.access_key, server.secret_key, endpoint=server.endpoint, part_size=MIN_PART)
    with pytest.raises(ConnectionResetError):
        c.put_file("models/torn/model.gguf", str(path))
    assert c.uploads("models/torn/") == []  # aborted: no parts left billing as storage
    assert server.client().list_multipart_uploads(Bucket=BUCKET, Prefix="models/torn/").get("Uploads", []) == []
    assert client(server).get("models/torn/model.gguf") is None  # and no object


def test_a_download_of_a_missing_object_leaves_no_file(server, tmp_path):
    with pytest.raises(S3Error) as err:
        client(server).download("models/none/model.gguf", str(tmp_path / "x" / "model.gguf"))
    assert err.value.status == 404
    assert list((tmp_path / "x").iterdir()) == []


def test_part_sizes_hold_s3s_limits():
    with pytest.raises(ValueError, match="part_size"):
        S3(BUCKET, "k", "s", part_size=MIN_PART - 1)
    assert s3mod.part_size_for(10 * MIN_PART, MIN_PART) == MIN_PART
    five_tib = 5 * 1024 ** 4
    size = s3mod.part_size_for(five_tib, s3mod.PART_SIZE)
    assert -(-five_tib // size) <= s3mod.MAX_PARTS and size <= s3mod.MAX_PART


# -- Signature V4 against botocore's signer --------------------------------------------------------------
WHEN = dt.datetime(2026, 12, 6, 3, 4, 5, tzinfo=dt.timezone.utc)
KEY, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def botocore_authorization(c: S3, method, path, query, payload_hash, extra) -> str:
    """The Authorization header botocore's S3 signer gives the same request at ``WHEN``."""
    url = f"{c.scheme}://{c.host}{path}" + ("?" + urllib.parse.urlencode(sorted(query.items()),
                                                                       quote_via=urllib.parse.quote) if query else "")
    headers = {"X-Amz-Date": WHEN.strftime("%Y%m%dT%H%M%SZ"), "X-Amz-Content-SHA256": payload_hash, **extra}
    if c.session_token:
        headers["X-Amz-Security-Token"] = c.session_token
    request = AWSRequest(method=method, url=url, headers=headers)
    request.context["timestamp"] = WHEN.strftime("%Y%m%dT%H%M%SZ")
    signer = S3SigV4Auth(Credentials(KEY, SECRET, c.session_token), "s3", c.region)
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    return (f"AWS4-HMAC-SHA256 Credential={signer.scope(request)}, "
            f"SignedHeaders={signer.signed_headers(signer.headers_to_sign(request))}, Signature={signature}")


EMPTY = hashlib.sha256(b"").hexdigest()
CASES = [
    ("GET", "models/a b/model+1.gguf", {}, EMPTY, {}),
    ("GET", "", {"list-type": "2", "prefix": "models/ü x/", "continuation-token": "1/2+3=="}, EMPTY, {}),
    ("PUT", "estate-jobs/l/status.json", {}, hashlib.sha256(b"{}").hexdigest(), {"content-type": "application/json"}),
    ("PUT", "out/ckpt~1.bin", {}, s3mod.UNSIGNED, {}),
    ("POST", "out/model.gguf", {"uploads": ""}, EMPTY, {}),
    ("PUT", "out/model.gguf", {"partNumber": "2", "uploadId": "a.b-c_d~e/f+g"}, s3mod.UNSIGNED, {}),
    ("DELETE", "out/model.gguf", {"uploadId": "xyz"}, EMPTY, {}),
]


@pytest.mark.parametrize("endpoint,region,token", [
    (None, "us-east-1", None), ("http://127.0.0.1:9000", "eu-west-3", "FwoGZXIvYXdzE//token+/="),
])
@pytest.mark.parametrize("method,key,query,payload,extra", CASES)
def test_the_signature_is_botocores(endpoint, region, token, method, key, query, payload, extra):
    c = S3("estate-models", KEY, SECRET, endpoint=endpoint, region=region, session_token=token)
    path = f"{c.base}/{s3mod._quote(c.bucket)}" + (f"/{s3mod._quote(key)}" if key else "")
    ours = c._headers(method, path, query, payload, extra, now=WHEN)["authorization"]
    assert ours == botocore_authorization(c, method, path, query, payload, extra)


def test_a_wrong_secret_is_another_signature():
    c = S3("estate-models", KEY, SECRET)
    other = S3("estate-models", KEY, SECRET + "x")
    assert (c._headers("GET", "/estate-models/k", {}, EMPTY, now=WHEN)["authorization"]
            != other._headers("GET", "/estate-models/k", {}, EMPTY, now=WHEN)["authorization"])
