"""The estate's bucket URLs (``core/buckets.py``): each store's own bucket naming rules, keys that cannot
climb out of their prefix, and a message that names the value and the rule it breaks."""
import pytest

from core import buckets


@pytest.mark.parametrize("url,expected", [
    ("s3://acme-models/models/a/1/model.gguf", ("s3", "acme-models", "models/a/1/model.gguf")),
    ("gs://acme_models/models/a/1/model.gguf", ("gs", "acme_models", "models/a/1/model.gguf")),
    ("gs://models.example.com/m.gguf", ("gs", "models.example.com", "m.gguf")),
    ("gs://" + ".".join(["a" * 63] * 3) + "/m.gguf", ("gs", ".".join(["a" * 63] * 3), "m.gguf")),
])
def test_a_gguf_url_is_read_as_its_store_bucket_and_key(url, expected):
    where = buckets.parse(url, "gguf")
    assert (where.scheme, where.bucket, where.key) == expected and str(where) == url


@pytest.mark.parametrize("url,said", [
    ("gs://ab/m.gguf", "Cloud Storage bucket name: 3 to 63"),
    ("gs://" + "a" * 64 + "/m.gguf", "Cloud Storage bucket name: 3 to 63"),
    ("gs://" + "a" * 64 + ".b/m.gguf", "63 between them"),
    ("gs://acme-/m.gguf", "starting and ending with a letter or digit"),
    ("gs://goog-acme/m.gguf", "no 'goog' prefix"),
    ("gs://acme-g00gle/m.gguf", "no 'goog' prefix and no 'google'"),
    ("gs://192.168.5.4/m.gguf", "not an IP address"),
    ("s3://acme_models/m.gguf", "S3 bucket name: 3 to 63"),
    ("s3://acme..models/m.gguf", "no two dots in a row"),
    ("s3://acme-models--ol-s3/m.gguf", "a prefix or suffix S3 reserves"),
    ("s3://xn--acme/m.gguf", "a prefix or suffix S3 reserves"),
    ("gs://acme/../m.gguf", "path segments"),
    ("gs://acme/a//m.gguf", "path segments"),
    ("gs://acme/.hidden/m.gguf", "path segments"),
    ("gs://acme/m.bin", "not a .gguf file"),
    ("gcs://acme/m.gguf", "s3:// or gs://"),
    ("https://acme/m.gguf", "s3:// or gs://"),
])
def test_a_bad_url_says_which_rule_it_breaks(url, said):
    with pytest.raises(ValueError) as err:
        buckets.parse(url, "gguf")
    assert said in str(err.value) and url in str(err.value)
    assert buckets.location(url, "gguf") is None


@pytest.mark.parametrize("url,prefix", [
    ("gs://acme-models", ""), ("gs://acme-models/", ""), ("gs://acme-models/cache/prod", "cache/prod/"),
    ("s3://acme-models/cache/prod/", "cache/prod/"),
])
def test_a_cache_is_a_bucket_and_a_prefix_ending_in_a_slash(url, prefix):
    assert buckets.parse(url, "prefix").key == prefix


def test_a_prefix_with_an_empty_segment_is_refused():
    with pytest.raises(ValueError, match="path segments"):
        buckets.parse("gs://acme-models/cache//", "prefix")


def test_a_jobs_outputs_on_a_gcs_bucket_are_refused_naming_the_jobs_bucket_key():
    # The job's runner writes through the S3 API (providers/s3.py on the rented machine); Cloud Storage job
    # outputs are not written yet, and the preview says so before anything is rented.
    from tests.unit.core.test_jobs import config, problems

    raw = config()
    raw["storage"]["models"]["provider"] = "gcs"
    said = problems(raw)
    assert "speaks the S3 API" in said["gpu-estate:jobs.train.bucket"] and "gcs" in said["gpu-estate:jobs.train.bucket"]
