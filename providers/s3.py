"""A small S3 client on the standard library alone: AWS Signature V4, path-style, for the bucket a job uses.

A rented VM has Python 3 but not boto3, and installing it (or pulling the AWS CLI image) on every job
machine would make each job depend on PyPI or a registry answering before its command may start. The
operations a job needs are four (put a file, get an object, list a prefix, put a small document), so the
runner on the machine (``assets/job/estate_job.py``, shipped beside it as ``estate_s3.py``), the job
provider's refresh and the job agent on the gateway host all use this one module. Files are streamed
(``UNSIGNED-PAYLOAD`` over TLS, or loopback in the sandbox), so a checkpoint of any size never sits in
memory. A file larger than one part (``part_size``, default 64 MiB) goes up as a multipart upload
(CreateMultipartUpload, UploadPart for each part read from its offset, CompleteMultipartUpload; AbortMultipartUpload
when any of it fails, so no half-uploaded parts are left billing as storage): a single PUT stops at 5 GiB,
which a 7B GGUF or a checkpoint passes. A download is streamed to its file likewise. It speaks to AWS (``https://s3.<region>.amazonaws.com``) or an S3-compatible ``endpoint``.

It imports nothing but the standard library: the machine runs it as a file of its own.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import http.client
import os
import urllib.parse
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape
from typing import BinaryIO, Dict, Iterator, List, Optional, Tuple, Union

UNSIGNED = "UNSIGNED-PAYLOAD"
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
TIMEOUT = 60.0
MAX_LIST_PAGES = 10000
"""A listing follows at most this many continuation pages (10 million keys): never an endless loop."""
MiB = 1 << 20
MIN_PART = 5 * MiB
"""S3's smallest part (every part but the last)."""
MAX_PART = 5 * 1024 * MiB
"""S3's largest part, and its largest single PUT."""
MAX_PARTS = 10000
"""S3's most parts in one upload: a file that would need more gets larger parts."""
PART_SIZE = 64 * MiB
"""The default part size, and the size above which a file is uploaded in parts."""
BLOCK = MiB
MAX_OBJECT = 5 * 1024 * 1024 * MiB
"""S3's largest object (5 TiB): a download reads no more."""


class S3Error(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _Slice:
    """``length`` bytes of an open file from ``offset``, read in blocks: one part's body, never in memory whole."""

    def __init__(self, f: BinaryIO, offset: int, length: int):
        self.f, self.left = f, length
        f.seek(offset)

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.f.read(n) if n else b""
        self.left -= len(data)
        return data


def part_size_for(size: int, part_size: int) -> int:
    """The part size an upload of ``size`` bytes uses: ``part_size``, or larger where S3's 10,000 parts would
    not hold the file."""
    need = -(-size // MAX_PARTS)
    return min(MAX_PART, max(part_size, need))


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _quote(key: str) -> str:
    return urllib.parse.quote(key, safe="/~")


class S3:
    """``S3(bucket, access_key, secret_key, endpoint=None, region="us-east-1")``."""

    def __init__(self, bucket: str, access_key: str, secret_key: str, endpoint: Optional[str] = None,
                 region: str = "us-east-1", session_token: Optional[str] = None, part_size: int = PART_SIZE):
        if not MIN_PART <= part_size <= MAX_PART:
            raise ValueError(f"part_size: S3 takes parts of {MIN_PART} to {MAX_PART} bytes (got {part_size})")
        self.part_size = part_size
        self.bucket, self.access_key, self.secret_key = bucket, access_key, secret_key
        self.region, self.session_token = region or "us-east-1", session_token
        url = urllib.parse.urlsplit(endpoint or f"https://s3.{self.region}.amazonaws.com")
        self.scheme, self.host = url.scheme, url.netloc
        self.base = url.path.rstrip("/")

    # -- signing ------------------------------------------------------------------------------------
    def _headers(self, method: str, path: str, query: Dict[str, str], payload_hash: str,
                 extra: Optional[Dict[str, str]] = None, now: Optional[_dt.datetime] = None) -> Dict[str, str]:
        """The request's headers, ``authorization`` (Signature V4) among them; ``now`` is the signing time."""
        now = now or _dt.datetime.now(_dt.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        headers = {"host": self.host, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash,
                   **{k.lower(): v for k, v in (extra or {}).items()}}
        if self.session_token:
            headers["x-amz-security-token"] = self.session_token
        names = sorted(headers)
        canonical_query = "&".join(f"{urllib.parse.quote(k, safe='~')}={urllib.parse.quote(v, safe='~')}"
                                   for k, v in sorted(query.items()))
        canonical = "\n".join([method, path, canonical_query, "".join(f"{n}:{headers[n].strip()}\n" for n in names),
                               ";".join(names), payload_hash])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        k = _sign(_sign(_sign(_sign(("AWS4" + self.secret_key).encode(), day), self.region), "s3"), "aws4_request")
        signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={signature}")
        return headers

    def _request(self, method: str, key: str = "", query: Optional[Dict[str, str]] = None,
                 body: Union[bytes, BinaryIO, None] = None, length: Optional[int] = None,
                 extra: Optional[Dict[str, str]] = None) -> Tuple[int, bytes]:
        status, _headers, data = self._exchange(method, key, query, body, length, extra)
        return status, data

    def _exchange(self, method: str, key: str = "", query: Optional[Dict[str, str]] = None,
                  body: Union[bytes, BinaryIO, _Slice, None] = None, length: Optional[int] = None,
                  extra: Optional[Dict[str, str]] = None, sink: Optional[BinaryIO] = None,
                  ) -> Tuple[int, Dict[str, str], bytes]:
        """(status, response headers, body); with ``sink`` a 2xx body is streamed there instead."""
        query = query or {}
        path = f"{self.base}/{_quote(self.bucket)}" + (f"/{_quote(key)}" if key else "")
        if isinstance(body, bytes):
            payload_hash, length = hashlib.sha256(body).hexdigest(), len(body)
        else:
            payload_hash = UNSIGNED if body is not None else hashlib.sha256(b"").hexdigest()
        headers = self._headers(method, path, query, payload_hash, extra)
        if length is not None:
            headers["content-length"] = str(length)
        conn_cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(self.host, timeout=TIMEOUT)
        try:
            target = path + ("?" + urllib.parse.urlencode(sorted(query.items()), quote_via=urllib.parse.quote)
                             if query else "")
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
            headers = {k.lower(): v for k, v in resp.getheaders()}
            if sink is not None and resp.status < 300:
                for _block in range(MAX_OBJECT // BLOCK + 1):  # S3's largest object, block by block
                    block = resp.read(BLOCK)
                    if not block:
                        return resp.status, headers, b""
                    sink.write(block)
                raise S3Error(resp.status, f"s3 get {key} in {self.bucket}: more than {MAX_OBJECT} bytes")
            return resp.status, headers, resp.read()
        finally:
            conn.close()

    @staticmethod
    def _code(data: bytes) -> str:
        """The error code of an S3 error document (``NoSuchKey``, ``NoSuchBucket``), '' when there is none."""
        try:
            return ET.fromstring(data).findtext("Code") or "" if data else ""
        except ET.ParseError:
            return ""

    def _ok(self, status: int, data: bytes, what: str) -> None:
        if status >= 300:
            raise S3Error(status, f"s3 {what} in {self.bucket}: HTTP {status} {self._code(data)}".rstrip())

    # -- operations ---------------------------------------------------------------------------------
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        status, body = self._request("PUT", key, body=data, extra={"content-type": content_type})
        self._ok(status, body, f"put {key}")

    def put_file(self, key: str, path: str) -> int:
        """Upload the file at ``path`` streamed, in parts when it is larger than one part; its size."""
        size = os.path.getsize(path)
        if size > self.part_size:
            self.put_parts(key, path, size)
            return size
        with open(path, "rb") as f:
            status, body = self._request("PUT", key, body=f, length=size)
        self._ok(status, body, f"put {key}")
        return size

    def put_parts(self, key: str, path: str, size: Optional[int] = None) -> int:
        """Upload the file at ``path`` as one multipart upload; the number of parts. Any failure aborts the
        upload (its parts are deleted) before it is raised."""
        size = os.path.getsize(path) if size is None else size
        status, _, body = self._exchange("POST", key, {"uploads": ""})
        self._ok(status, body, f"create multipart upload {key}")
        upload = self._text(body, "UploadId")
        if not upload:
            raise S3Error(status, f"s3 create multipart upload {key} in {self.bucket}: no UploadId in the answer")
        try:
            step = part_size_for(size, self.part_size)
            etags: List[str] = []
            with open(path, "rb") as f:
                for number, offset in enumerate(range(0, max(size, 1), step), start=1):
                    length = min(step, size - offset)
                    status, headers, body = self._exchange(
                        "PUT", key, {"partNumber": str(number), "uploadId": upload},
                        body=_Slice(f, offset, length), length=length)
                    self._ok(status, body, f"upload part {number} of {key}")
                    if not headers.get("etag"):
                        raise S3Error(status, f"s3 upload part {number} of {key} in {self.bucket}: no ETag")
                    etags.append(headers["etag"])
            done = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(e)}</ETag></Part>"
                           for n, e in enumerate(etags, start=1))
            status, _, body = self._exchange("POST", key, {"uploadId": upload}, body=(
                f'<CompleteMultipartUpload xmlns="{NS[1:-1]}">{done}</CompleteMultipartUpload>').encode())
            # S3 may answer 200 and still fail the completion: the error is then the body.
            if status < 300 and self._code(body):
                status = 500
            self._ok(status, body, f"complete multipart upload {key}")
            return len(etags)
        except BaseException:
            try:
                self._exchange("DELETE", key, {"uploadId": upload})
            except Exception:  # noqa: BLE001 - the upload's own error is the one raised
                pass
            raise

    @staticmethod
    def _text(data: bytes, tag: str) -> str:
        try:
            root = ET.fromstring(data)
        except ET.ParseError:
            return ""
        return root.findtext(f"{NS}{tag}") or root.findtext(tag) or ""

    def uploads(self, prefix: str = "") -> List[Tuple[str, str]]:
        """(key, upload id) of the multipart uploads begun and neither completed nor aborted under ``prefix``."""
        status, _, body = self._exchange("GET", query={"uploads": "", "prefix": prefix})
        self._ok(status, body, f"list multipart uploads {prefix}")
        root = ET.fromstring(body)
        return [(u.findtext(f"{NS}Key") or "", u.findtext(f"{NS}UploadId") or "") for u in root.iter(f"{NS}Upload")]

    def get(self, key: str) -> Optional[bytes]:
        """The object's bytes, or None when there is none."""
        status, body = self._request("GET", key)
        if status == 404 and self._code(body) in ("NoSuchKey", ""):
            return None  # no such object (a missing bucket is an error, not an empty one)
        self._ok(status, body, f"get {key}")
        return body

    def list(self, prefix: str) -> List[str]:
        return list(self._keys(prefix))

    def _keys(self, prefix: str) -> Iterator[str]:
        ns = NS
        token = None
        for _page in range(MAX_LIST_PAGES):
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            status, body = self._request("GET", query=query)
            self._ok(status, body, f"list {prefix}")
            root = ET.fromstring(body)
            for item in root.iter(f"{ns}Contents"):
                yield item.findtext(f"{ns}Key") or ""
            token = root.findtext(f"{ns}NextContinuationToken")
            if (root.findtext(f"{ns}IsTruncated") or "false") != "true" or not token:
                return
        raise S3Error(0, f"s3 list {prefix} in {self.bucket}: more than {MAX_LIST_PAGES} pages")

    def download(self, key: str, path: str) -> None:
        """Stream the object to ``path`` (its directory made), replacing it only once whole."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path + ".part", "wb") as f:
            status, _, body = self._exchange("GET", key, sink=f)
        if status >= 300:
            os.unlink(path + ".part")
            if status == 404 and self._code(body) in ("NoSuchKey", ""):
                raise S3Error(404, f"s3 get {key} in {self.bucket}: no such object")
            self._ok(status, body, f"get {key}")
        os.replace(path + ".part", path)
