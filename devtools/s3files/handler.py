"""One S3 request: parsing it, answering it from the index (listings, objects, errors)."""

from __future__ import annotations

import base64
import binascii
import bisect
import itertools
import os
import re
import time
import traceback
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, quote, unquote
from xml.sax.saxutils import escape

from devtools.s3files.index import _Bucket, _bucket_name_ok, _encodable, _key_ok, _State
from devtools.s3server import CREDENTIAL, KINDS

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_KEYS = 1000
"""Keys per ListObjectsV2 page, at most and by default (S3's)."""
REGION = "us-east-1"
IDLE_TIMEOUT = 300.0
"""Seconds a kept-alive connection may sit idle before the endpoint closes it."""

_MAX_DRAINED = 1 << 20
_INLINE = 1 << 20
"""Bodies up to this size are read (``pread``) and sent with the headers in one write; larger
ones follow the headers by ``sendfile``."""
_SIGV2 = re.compile(r"AWS ([^:\s]+):")
_PRESIGNED = re.compile(r"([^/,\s]+)/")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_SERVED = frozenset({"ListObjectsV2", "GetObject", "HeadObject", "HeadBucket"})
_request_ids = itertools.count(1)


class _Recorder(Protocol):
    def record(self, client: str, kind: str) -> None: ...


class _Serving(Protocol):
    """What a request sees of the server that accepted it."""

    state: _State
    log: _Recorder


class _S3Error(Exception):
    """An S3 error response: status, code, message and the extra elements S3 sends."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: tuple[tuple[str, str], ...] = (),
        **details: str,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.details = details


def _operation(method: str, bucket: str, key: str, params: dict[str, list[str]]) -> str:
    """The S3 operation as ``devtools.s3server.classify`` names it."""
    if not bucket:
        return f"{method} service"
    if not key:
        if method == "GET":
            if params.get("list-type") == ["2"]:
                return "ListObjectsV2"
            if "list-type" in params or "prefix" in params:
                return "ListObjects"
            return "GET bucket"
        return {"HEAD": "HeadBucket", "PUT": "CreateBucket"}.get(method, f"{method} bucket")
    return {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject"}.get(
        method, f"{method} object"
    )


def _client(authorization: str, params: dict[str, list[str]]) -> str:
    """The access key a request was signed with (SigV4, SigV2 or presigned), else anonymous."""
    found = CREDENTIAL.search(authorization) or _SIGV2.match(authorization)
    if found is None and params.get("X-Amz-Credential"):
        found = _PRESIGNED.match(params["X-Amz-Credential"][0])
    return found.group(1) if found else "anonymous"


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte span of a ``Range`` header; None for the whole object (no header, or
    one S3 ignores: several ranges, a malformed or a reversed one). Raises 416 for a start at
    or past the end, and for any range of an empty object."""
    if header is None:
        return None
    found = _RANGE.fullmatch(header.strip())
    if found is None or found.group(0) == "bytes=-":
        return None
    first, last = found.groups()
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise _unsatisfiable(header, size)
    return start, min(end, size - 1)


def _unsatisfiable(header: str, size: int) -> _S3Error:
    return _S3Error(
        416,
        "InvalidRange",
        "The requested range is not satisfiable",
        (("Content-Range", f"bytes */{size}"),),
        RangeRequested=header,
        ActualObjectSize=str(size),
    )


def _token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _untoken(token: str) -> str:
    try:
        return base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise _S3Error(
            400,
            "InvalidArgument",
            "The continuation token provided is incorrect",
            ArgumentName="continuation-token",
            ArgumentValue=token,
        ) from None


def _max_keys(values: list[str] | None) -> int:
    if not values:
        return MAX_KEYS
    if not values[0].isdigit():
        raise _S3Error(
            400,
            "InvalidArgument",
            "Provided max-keys not an integer or within integer range",
            ArgumentName="max-keys",
            ArgumentValue=values[0],
        )
    return min(int(values[0]), MAX_KEYS)


def _listing(bucket: _Bucket, params: dict[str, list[str]]) -> bytes:
    """A ListObjectsV2 page, from the sorted keys: after ``start-after`` and the continuation
    token (the last key of the page before), at most ``max-keys`` keys under ``prefix``."""

    def one(name: str) -> str:
        values = params.get(name)
        return values[0] if values else ""

    prefix, after, token = one("prefix"), one("start-after"), one("continuation-token")
    if not all(_encodable(value) for value in (prefix, after, token)):
        raise _S3Error(400, "InvalidArgument", "Expected UTF-8 listing arguments")
    if one("delimiter"):
        raise _S3Error(501, "NotImplemented", "ListObjectsV2 with a delimiter is not implemented")
    encoding = one("encoding-type")
    if encoding not in {"", "url"}:
        raise _S3Error(
            400,
            "InvalidArgument",
            "Invalid Encoding Method specified in Request",
            ArgumentName="encoding-type",
            ArgumentValue=encoding,
        )
    max_keys = _max_keys(params.get("max-keys"))
    keys = bucket.keys
    start = bisect.bisect_left(keys, prefix)
    if after:
        start = max(start, bisect.bisect_right(keys, after))
    if "continuation-token" in params:
        start = max(start, bisect.bisect_right(keys, _untoken(token)))
    end = start
    while end < len(keys) and end - start < max_keys and keys[end].startswith(prefix):
        end += 1
    taken = keys[start:end]
    truncated = bool(taken) and end < len(keys) and keys[end].startswith(prefix)

    def code(text: str) -> str:
        return quote(text, safe="/") if encoding else escape(text)

    parts = [
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{NAMESPACE}">',
        f"<Name>{escape(bucket.name)}</Name><Prefix>{code(prefix)}</Prefix>",
    ]
    if "continuation-token" in params:
        parts.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
    if after:
        parts.append(f"<StartAfter>{code(after)}</StartAfter>")
    parts.append(f"<KeyCount>{len(taken)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>")
    if encoding:
        parts.append("<EncodingType>url</EncodingType>")
    parts.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
    if truncated:
        parts.append(f"<NextContinuationToken>{_token(taken[-1])}</NextContinuationToken>")
    for key in taken:
        parts += ("<Contents><Key>", code(key), bucket.objects[key].listed)
    parts.append("</ListBucketResult>")
    return "".join(parts).encode()


def _error_body(error: _S3Error, resource: str, request_id: str) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>',
        f"<Code>{error.code}</Code><Message>{escape(error.message)}</Message>",
    ]
    parts += (f"<{name}>{escape(value)}</{name}>" for name, value in error.details.items())
    parts.append(f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId>")
    parts.append("</Error>")
    return "".join(parts).encode("utf-8", "replace")


class _Handler(BaseHTTPRequestHandler):
    """One connection: requests one after another while the client keeps it open."""

    protocol_version = "HTTP/1.1"
    server_version = "s3files"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a benchmark makes thousands of requests."""

    def _answer(self) -> None:
        server = cast(_Serving, self.server)
        self._request_id = f"{os.getpid():x}-{next(_request_ids):x}"
        self._replied = False
        path, _, query = self.path.partition("?")
        # Invalid UTF-8 survives as surrogates, which no key in the index has.
        decoded = unquote(path, errors="surrogateescape")
        params = parse_qs(query, keep_blank_values=True, errors="surrogateescape")
        bucket, _, key = decoded.removeprefix("/").partition("/")
        operation = _operation(self.command, bucket, key, params)
        server.log.record(
            _client(self.headers.get("Authorization", ""), params),
            KINDS.get(operation, operation),
        )
        self._drain()
        if server.state.latency > 0:
            time.sleep(server.state.latency)
        try:
            if not decoded.startswith("/"):
                raise _S3Error(400, "InvalidURI", "Expected a path-style request: /BUCKET/KEY")
            self._dispatch(server.state, operation, bucket, key, params)
        except _S3Error as error:
            self._error(error, path)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as error:
            traceback.print_exc()
            self.close_connection = True
            self._error(_S3Error(500, "InternalError", f"{type(error).__name__}: {error}"), path)

    def _dispatch(
        self, state: _State, operation: str, name: str, key: str, params: dict[str, list[str]]
    ) -> None:
        if operation not in _SERVED:
            raise _S3Error(
                501, "NotImplemented", f"{operation}: this endpoint serves a folder, read-only"
            )
        if not _bucket_name_ok(name):
            raise _S3Error(400, "InvalidBucketName", "The specified bucket is not valid.")
        bucket = state.buckets.get(name)
        if bucket is None:
            raise _S3Error(
                404, "NoSuchBucket", "The specified bucket does not exist", BucketName=name
            )
        if operation == "HeadBucket":
            self._reply(200, [("x-amz-bucket-region", REGION)])
        elif operation == "ListObjectsV2":
            self._reply(200, [("Content-Type", "application/xml")], _listing(bucket, params))
        else:
            self._object(bucket, key, head=operation == "HeadObject")

    def _object(self, bucket: _Bucket, key: str, *, head: bool) -> None:
        if not _key_ok(key):
            raise _S3Error(400, "InvalidArgument", "The key names no file under the served folder")
        found = bucket.objects.get(key)
        if found is None:
            raise _S3Error(404, "NoSuchKey", "The specified key does not exist.", Key=key)
        span = _byte_range(self.headers.get("Range"), found.size)
        headers = [
            ("Last-Modified", found.modified),
            ("ETag", found.etag),
            ("Accept-Ranges", "bytes"),
            ("Content-Type", "binary/octet-stream"),
        ]
        status, first, length = 200, 0, found.size
        if span is not None:
            status, first, length = 206, span[0], span[1] - span[0] + 1
            headers.append(("Content-Range", f"bytes {span[0]}-{span[1]}/{found.size}"))
        if head:
            self._reply(status, headers, length=length)
            return
        try:
            descriptor = os.open(found.path, os.O_RDONLY)
        except FileNotFoundError:
            raise _S3Error(404, "NoSuchKey", "The specified key does not exist.", Key=key) from None
        try:
            if length <= _INLINE:
                body = os.pread(descriptor, length, first)
                if len(body) != length:
                    raise _S3Error(500, "InternalError", "The file shrank after it was indexed")
                self._reply(status, headers, body)
                return
            self._reply(status, headers, length=length)
            with os.fdopen(descriptor, "rb", closefd=False) as file:
                sent = self.connection.sendfile(file, first, length)
            if sent != length:  # the file shrank after it was indexed: the body is short
                self.close_connection = True
        finally:
            os.close(descriptor)

    def _drain(self) -> None:
        """Read a request's body, so that the connection can carry the next request (none of
        the served requests has one); close the connection after a large or chunked one."""
        length = self.headers.get("Content-Length", "0").strip() or "0"
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if chunked or not length.isdigit() or int(length) > _MAX_DRAINED:
            self.close_connection = True
        elif int(length):
            self.rfile.read(int(length))

    def _reply(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        *,
        length: int | None = None,
    ) -> None:
        """The status, the headers and the body in one write (on some virtual machines each
        write to a socket costs more than the rest of the request); after it, the caller sends
        the ``length`` bytes of a large body."""
        lines = [
            f"{self.protocol_version} {status} {self.responses.get(status, ('',))[0]}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"x-amz-request-id: {self._request_id}",
            *(f"{name}: {value}" for name, value in headers),
            f"Content-Length: {len(body) if length is None else length}",
        ]
        if self.close_connection:
            lines.append("Connection: close")
        lines.append("\r\n")
        head = "\r\n".join(lines).encode("latin-1", "replace")
        self._replied = True
        self.wfile.write(head + body if self.command != "HEAD" else head)

    def _error(self, error: _S3Error, resource: str) -> None:
        if self._replied:  # too late for an error response: the client sees a broken body
            self.close_connection = True
            return
        headers = [("Content-Type", "application/xml"), *error.headers]
        if self.command == "HEAD":  # a HEAD answer has no body: the status says it all
            self._reply(error.status, headers, length=0)
            return
        self._reply(error.status, headers, _error_body(error, resource, self._request_id))
