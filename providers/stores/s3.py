"""``s3://`` buckets through boto3 (the AWS SDK) and the operator's AWS credentials: the default chain
(environment, ``~/.aws``, SSO, an instance role); ``AWS_ENDPOINT_URL_S3`` points it at another S3 API.

An existing bucket of the stack at an S3-compatible endpoint (``storage.<bucket>.endpoint``: R2, MinIO) is
reached at that endpoint, in its region, with the access key in the stack's config secrets its
``access_key_secret``/``secret_key_secret`` name (``stores.access_of``), whatever the default chain holds.
None of the keys reaches a message: a missing one is named."""
from __future__ import annotations

from typing import Any, Dict, Iterator, Optional, Tuple

from providers.stores import CHUNK, SECRET_FIELDS, Missing, StoreError, secret_key

MISSING_CODES = ("404", "NoSuchKey", "NotFound")


def _error(err: Exception) -> StoreError:
    from botocore.exceptions import ClientError

    if isinstance(err, ClientError):
        said = err.response.get("Error", {})
        code = str(said.get("Code") or "")
        text = f"{code} {said.get('Message', '')}".rstrip()
        return Missing(text) if code in MISSING_CODES else StoreError(text)
    return StoreError(str(err))


class S3Store:
    def __init__(self, client: Any = None):
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client

    def _call(self, method: str, **kwargs: Any) -> Any:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(**kwargs)
        except (ClientError, BotoCoreError, Boto3Error) as err:
            raise _error(err) from err

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self._call("head_object", Bucket=bucket, Key=key)
            return True
        except Missing:
            return False

    def read(self, bucket: str, key: str) -> Optional[bytes]:
        try:
            body = self._call("get_object", Bucket=bucket, Key=key)["Body"]
        except Missing:
            return None
        return b"".join(self._chunks(body))

    def stream(self, bucket: str, key: str) -> Tuple[int, Iterator[bytes]]:
        obj = self._call("get_object", Bucket=bucket, Key=key)
        return int(obj["ContentLength"]), self._chunks(obj["Body"])

    @staticmethod
    def _chunks(body: Any) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield from body.iter_chunks(CHUNK)
        except (ClientError, BotoCoreError) as err:
            raise _error(err) from err
        finally:
            body.close()

    def write(self, bucket: str, key: str, data: bytes) -> None:
        self._call("put_object", Bucket=bucket, Key=key, Body=data)

    def upload(self, bucket: str, key: str, reader: Any) -> None:
        self._call("upload_fileobj", Fileobj=reader, Bucket=bucket, Key=key)

    def delete(self, bucket: str, key: str) -> None:
        self._call("delete_object", Bucket=bucket, Key=key)


def open_store(config: Dict[str, str], access: Optional[Dict[str, str]] = None) -> S3Store:
    if not access:
        return S3Store()
    import boto3

    keys = []
    for field in SECRET_FIELDS:
        name = secret_key(access[field])
        if not config.get(name):
            raise StoreError(f"no config secret {name} (the access key of the bucket at {access['endpoint']}): "
                             f"run `pulumi config set --secret {name} ...`")
        keys.append(config[name])
    return S3Store(boto3.client("s3", endpoint_url=access["endpoint"], region_name=access.get("region") or None,
                                aws_access_key_id=keys[0], aws_secret_access_key=keys[1]))
