"""The bucket stores (``providers/stores``) against the real servers, through the vendors' own clients: boto3
on moto's S3 server and google-cloud-storage on fake-gcs-server. Both answer the same way to the callers:
what is written comes back, a stream gives the size and the bytes, an absent object is ``Missing`` (or None
for ``read``), a delete of what is gone is no error, and a blob of unknown size is uploaded from a reader.

Skipped where a server is missing, except on the project's CI (GPU_ESTATE_REQUIRE_VM=1), where that fails.
"""
import io
import os

import pytest

from providers import stores
from sandbox import gcs as loopback_gcs, s3 as loopback_s3
from tests.conftest import required_or_skip

BUCKET = "estate-store"


@pytest.fixture(params=["s3", "gs"])
def store(request, monkeypatch):
    if request.param == "s3":
        required_or_skip(loopback_s3.missing(), "moto's S3 server")
        server = loopback_s3.LoopbackS3()
    else:
        required_or_skip(loopback_gcs.missing(), "fake-gcs-server")
        server = loopback_gcs.LoopbackGcs()
    with server:
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        server.create_bucket(BUCKET)
        yield stores.for_url(f"{request.param}://{BUCKET}/cache")


def test_what_is_written_comes_back(store):
    store.write(BUCKET, "cache/manifests/a", b'{"layers": []}')
    assert store.exists(BUCKET, "cache/manifests/a") and not store.exists(BUCKET, "cache/manifests/b")
    assert store.read(BUCKET, "cache/manifests/a") == b'{"layers": []}'
    assert store.read(BUCKET, "cache/manifests/b") is None


def test_a_blob_of_unknown_size_goes_up_from_a_reader_and_streams_back(store):
    data = os.urandom(3 << 20) + b"tail"  # several chunks and a resumable upload's worth of requests

    class Reader:  # a response body: read() only, no size, no seek
        def __init__(self):
            self.raw = io.BytesIO(data)

        def read(self, size=-1):
            return self.raw.read(size)

    store.upload(BUCKET, "cache/blobs/sha256-x", Reader())
    size, chunks = store.stream(BUCKET, "cache/blobs/sha256-x")
    parts = list(chunks)
    assert size == len(data) and b"".join(parts) == data and len(parts) > 1


def test_an_absent_object_is_missing_and_its_delete_is_no_error(store):
    with pytest.raises(stores.Missing):
        store.stream(BUCKET, "cache/blobs/absent")
    store.write(BUCKET, "cache/x", b"x")
    store.delete(BUCKET, "cache/x")
    store.delete(BUCKET, "cache/x")
    assert not store.exists(BUCKET, "cache/x")


def test_a_bucket_that_does_not_exist_is_the_stores_own_error(store):
    with pytest.raises(stores.StoreError) as err:
        store.write("no-such-bucket", "k", b"x")
    assert "NoSuchBucket" in str(err.value) or "NotFound" in str(err.value)


def test_a_scheme_the_estate_has_no_store_for_is_refused():
    with pytest.raises(stores.StoreError, match="ftp:// is not a store"):
        stores.for_url("ftp://acme/x")


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_a_store_whose_server_is_gone_fails_with_its_error_instead_of_waiting(scheme, monkeypatch):
    module = loopback_s3 if scheme == "s3" else loopback_gcs
    required_or_skip(module.missing(), "moto's S3 server" if scheme == "s3" else "fake-gcs-server")
    with (loopback_s3.LoopbackS3() if scheme == "s3" else loopback_gcs.LoopbackGcs()) as server:
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        store = stores.for_url(f"{scheme}://{BUCKET}/cache")
    # Closed: a warm start gives up on the cache (RETRY_SECONDS for gs://) and pulls instead.
    with pytest.raises(stores.StoreError):
        store.read(BUCKET, "cache/manifests/a")
