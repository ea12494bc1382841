"""The GCS store's credentials (``providers/stores/gs.py``) are found as a Pulumi user of GCP has them: the
stack's ``gcp:credentials`` (a key file's JSON or its path), else ``GOOGLE_CREDENTIALS``, else the application
default credentials; none, or a key that cannot be read, is an error naming the key and never showing it."""
import json
import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from providers import stores
from providers.stores import gs


@pytest.fixture(scope="module")
def key_json():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return json.dumps({
        "type": "service_account", "project_id": "acme-estate", "private_key_id": "k1", "private_key": private,
        "client_email": "estate@acme-estate.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token"})


@pytest.fixture()
def no_ambient(monkeypatch, tmp_path):
    for k in ("GOOGLE_CREDENTIALS", "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def test_the_stacks_key_json_or_its_path_gives_the_service_account_and_project(key_json, tmp_path, no_ambient):
    creds, project = gs.credentials({"gcp:credentials": key_json})
    assert (creds.service_account_email, project) == ("estate@acme-estate.iam.gserviceaccount.com", "acme-estate")
    path = tmp_path / "key.json"
    path.write_text(key_json)
    creds, project = gs.credentials({"gcp:credentials": str(path)})
    assert creds.service_account_email.startswith("estate@") and project == "acme-estate"


def test_google_credentials_is_read_as_pulumis_gcp_provider_reads_it(key_json, monkeypatch, no_ambient):
    monkeypatch.setenv("GOOGLE_CREDENTIALS", key_json)
    creds, _ = gs.credentials({})
    assert creds.service_account_email.startswith("estate@")


def test_the_client_acts_for_the_stacks_project(key_json, no_ambient):
    store = stores.for_url("gs://acme-models/cache", {"gcp:credentials": key_json, "gcp:project": "estate-prod"})
    assert store.client.project == "estate-prod"


@pytest.mark.parametrize("given", ['{"type": "service_account", "private_key": "SECRET-PART"}',
                                   "/nonexistent/key.json"])
def test_a_key_that_cannot_be_read_names_the_key_and_not_its_content(given, no_ambient):
    with pytest.raises(stores.StoreError) as err:
        gs.credentials({"gcp:credentials": given})
    assert str(err.value).startswith("gcp:credentials: not a readable Google credentials file")
    assert "SECRET-PART" not in str(err.value) and "nonexistent" not in str(err.value)


def test_no_credentials_at_all_names_the_key_to_set(tmp_path):
    # A process of its own: the library reads NO_GCE_CHECK when imported, so nothing asks for a metadata server.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "NO_GCE_CHECK": "true",
           "CLOUDSDK_CONFIG": str(tmp_path / "gcloud")}
    out = subprocess.run([sys.executable, "-c", "from providers.stores import gs\ngs.credentials({})"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "StoreError: no Google credentials for the estate's gs:// bucket: set gcp:credentials" in out.stderr

