"""An existing bucket of the stack at an S3-compatible endpoint (R2, MinIO) is reached at that endpoint with the
access key in the config secrets it names (``providers/stores``): the access carries the secrets' names only,
the store reads their values from the stack's config, and a secret that is not set is an error naming it."""
import pytest

from core.spec import BucketSpec
from providers import stores
from providers.stores import s3

R2 = BucketSpec(provider="s3", location="auto", endpoint="https://acct.r2.cloudflarestorage.com",
                access_key_secret="R2_KEY", secret_key_secret="R2_SECRET")


def test_an_endpoint_bucket_gives_its_endpoint_region_and_secret_names_and_another_gives_none():
    access = stores.access_of(R2)
    assert access == {"endpoint": "https://acct.r2.cloudflarestorage.com", "region": "auto",
                      "access_key_secret": "R2_KEY", "secret_key_secret": "R2_SECRET"}
    assert stores.access_of(BucketSpec(provider="s3", location="us-east-1")) is None
    assert stores.access_of(BucketSpec(provider="gcs", location="US")) is None
    assert stores.config_keys(access)[-2:] == ("gpu-estate:R2_KEY", "gpu-estate:R2_SECRET")
    assert "gpu-estate:R2_KEY" not in stores.config_keys()


def test_the_store_is_a_client_at_the_endpoint_with_the_keys_the_config_secrets_hold(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # the default chain's, not the bucket's
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "operator-key")
    store = stores.for_url("s3://r2-models/x.gguf", {"gpu-estate:R2_KEY": "AK", "gpu-estate:R2_SECRET": "SK"},
                           stores.access_of(R2))
    sent = []

    class Held(Exception):
        pass

    def hold(request, **_):  # botocore's before-send event: the signed request, kept from the network
        sent.append(request)
        raise Held()

    store.client.meta.events.register("before-send.s3.HeadObject", hold)
    with pytest.raises(Held):
        store.exists("r2-models", "x.gguf")
    (request,) = sent
    assert request.url == "https://acct.r2.cloudflarestorage.com/r2-models/x.gguf"
    auth = request.headers["Authorization"].decode()
    assert "Credential=AK/" in auth and "/auto/s3/" in auth and "operator-key" not in auth


def test_a_secret_that_is_not_set_is_named_and_no_other_key_is_used():
    with pytest.raises(stores.StoreError) as err:
        s3.open_store({"gpu-estate:R2_KEY": "AK"}, stores.access_of(R2))
    assert str(err.value) == ("no config secret gpu-estate:R2_SECRET (the access key of the bucket at "
                              "https://acct.r2.cloudflarestorage.com): run `pulumi config set --secret "
                              "gpu-estate:R2_SECRET ...`")
    assert "AK" not in str(err.value)


def test_a_gs_bucket_has_no_endpoint_of_its_own():
    with pytest.raises(stores.StoreError, match="a gs:// bucket has no endpoint of its own"):
        stores.for_url("gs://acme-models/x.gguf", {}, stores.access_of(R2))
