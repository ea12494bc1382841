"""``gs://`` buckets through Google's own client library (google-cloud-storage) with the credentials a
Pulumi user of GCP has: the stack's ``gcp:credentials`` (a key file's path or its JSON, as the gcp provider
reads it) or ``GOOGLE_CREDENTIALS``, else the application default credentials (``gcloud auth
application-default login``, ``GOOGLE_APPLICATION_CREDENTIALS``, a GCE service account). The project is the
stack's ``gcp:project`` or the credentials' own. ``STORAGE_EMULATOR_HOST`` points the client at an
emulator (fake-gcs-server in the tests), where the library sends no credentials.

None of the credentials' content reaches a message: a key that cannot be read is named, not shown.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from typing import Any, Dict, Iterator, Optional, Tuple

from providers.stores import CHUNK, Missing, StoreError

CONFIG_KEYS = ("gcp:credentials", "gcp:project")
CREDENTIALS_ENV = "GOOGLE_CREDENTIALS"
"""What Pulumi's gcp provider reads when ``gcp:credentials`` is not set."""
SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
TRANSFER_CHUNK = 16 << 20
"""The size of each ranged read and resumable upload request (a multiple of 256 KiB, as uploads need)."""
RETRY_SECONDS = 20.0
"""How long one call retries what the library deems transient (its default is 120 s): a cache that cannot
be reached costs a warm start that long before the model is pulled instead."""


def _retry() -> Any:
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(RETRY_SECONDS)


@contextlib.contextmanager
def _answers() -> Iterator[None]:
    """The library's errors as the store's, with Google's own answer."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth
    from google.resumable_media import common
    import requests

    try:
        yield
    except api.NotFound as err:
        raise Missing(f"NotFound: {err.message}") from err
    except api.GoogleAPICallError as err:
        raise StoreError(f"{type(err).__name__}: {err.message}") from err
    except auth.GoogleAuthError as err:
        raise StoreError(f"Google refused the credentials ({type(err).__name__}): {err}") from err
    except (api.GoogleAPIError, common.InvalidResponse, common.DataCorruption, requests.RequestException) as err:
        raise StoreError(f"{type(err).__name__}: {err}") from err


def credentials(config: Dict[str, str]) -> Tuple[Any, Optional[str]]:
    """(credentials, their project or None) as a Pulumi user of GCP has them; StoreError naming the key when
    there are none or they cannot be read."""
    import google.auth
    from google.auth import exceptions as auth

    given = config.get("gcp:credentials") or os.environ.get(CREDENTIALS_ENV) or ""
    where = "gcp:credentials" if config.get("gcp:credentials") else CREDENTIALS_ENV
    if given.strip():
        try:
            if given.lstrip().startswith("{"):
                return google.auth.load_credentials_from_dict(json.loads(given), scopes=SCOPES)
            return google.auth.load_credentials_from_file(given.strip(), scopes=SCOPES)
        except (ValueError, OSError, auth.GoogleAuthError) as err:
            shown = "" if given.lstrip().startswith("{") else f" ({type(err).__name__})"
            raise StoreError(f"{where}: not a readable Google credentials file or its JSON{shown}: give a service "
                             "account key or an authorized user's credentials") from None
    try:
        return google.auth.default(scopes=SCOPES)
    except auth.DefaultCredentialsError:
        raise StoreError("no Google credentials for the estate's gs:// bucket: set gcp:credentials (pulumi config "
                         f"set --secret gcp:credentials \"$(cat key.json)\") or {CREDENTIALS_ENV}, or run "
                         "`gcloud auth application-default login`") from None


class GcsStore:
    def __init__(self, client: Any):
        self.client = client

    def _blob(self, bucket: str, key: str) -> Any:
        return self.client.bucket(bucket).blob(key, chunk_size=TRANSFER_CHUNK)

    def exists(self, bucket: str, key: str) -> bool:
        with _answers():
            return bool(self._blob(bucket, key).exists(retry=_retry()))

    def read(self, bucket: str, key: str) -> Optional[bytes]:
        try:
            with _answers():
                return self._blob(bucket, key).download_as_bytes(retry=_retry())
        except Missing:
            return None

    def stream(self, bucket: str, key: str) -> Tuple[int, Iterator[bytes]]:
        blob = self._blob(bucket, key)
        with _answers():
            blob.reload(retry=_retry())
        return int(blob.size or 0), self._chunks(blob)

    @staticmethod
    def _chunks(blob: Any) -> Iterator[bytes]:
        with _answers():
            with blob.open("rb", chunk_size=TRANSFER_CHUNK, retry=_retry()) as reader:
                while True:
                    data = reader.read(CHUNK)
                    if not data:
                        return
                    yield data

    def write(self, bucket: str, key: str, data: bytes) -> None:
        with _answers():
            self._blob(bucket, key).upload_from_string(data, retry=_retry())

    def upload(self, bucket: str, key: str, reader: Any) -> None:
        with _answers():
            with self._blob(bucket, key).open("wb", chunk_size=TRANSFER_CHUNK, ignore_flush=True,
                                              retry=_retry()) as writer:
                shutil.copyfileobj(reader, writer, CHUNK)

    def delete(self, bucket: str, key: str) -> None:
        try:
            with _answers():
                self._blob(bucket, key).delete(retry=_retry())
        except Missing:
            pass


def open_store(config: Dict[str, str], access: Optional[Dict[str, str]] = None) -> GcsStore:
    from google.cloud import storage

    if access:
        raise StoreError(f"a gs:// bucket has no endpoint of its own (got {access.get('endpoint')!r})")

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return GcsStore(storage.Client())
    creds, project = credentials(config)
    return GcsStore(storage.Client(project=config.get("gcp:project") or project, credentials=creds))
