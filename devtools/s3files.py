"""A read-only S3 endpoint serving a local folder, fast enough that a benchmark measures its client.

``devtools.s3server`` is a real S3 (moto's) that records every request, but each GET costs moto
~17 ms of CPU under one GIL, in the benchmark's own process: against a few evaluator processes
the endpoint, not the evaluator, is what gets measured. This endpoint answers the requests the
reader makes (``evaluator.trial.s3``: ListObjectsV2 with StartAfter and continuation tokens,
GetObject whole or by range, HeadObject, HeadBucket) from a folder whose subfolders are the
buckets: the file ``ROOT/BUCKET/KEY`` is the object ``s3://BUCKET/KEY``.

- :meth:`StaticS3Server.start` indexes every bucket once (sorted keys, sizes, times): the folder
  is a snapshot, files added later are not served and an object is served at its indexed size.
- A GET is one ``pread`` and one write of the headers and body together (a ``sendfile`` after
  the headers over 1 MiB); connections are kept alive (HTTP/1.1), as botocore keeps them.
- ``latency`` seconds are slept before each response: the wait of a real S3's first byte, which
  costs a client time but the endpoint no CPU.
- ``processes`` > 1 serves from that many worker processes accepting on one listening socket, so
  that no single GIL bounds the endpoint.

Signatures are not checked (any credentials do), but each request is counted by the access key
it was signed with and by kind (LIST, GET, HEAD), as ``CountingS3Server`` counts them: both have
``start()``, ``stop()``, ``endpoint``, ``counts(client)`` and ``clear()``. Only path-style
addressing (what botocore uses for an ``http://127.0.0.1:PORT`` endpoint); no writes, no
``delimiter``, no ListObjects v1 (all 501 NotImplemented).

Nothing outside the folder is served: a key is looked up in the index and never joined to a
path, and keys with a ``..``, ``.`` or empty segment or a NUL are refused (400). Symbolic links
inside the folder are followed (a trial can be linked in rather than copied): they are the
operator's, not a client's.

    python -m devtools.s3files ROOT --port 0 --latency 0.02 --processes 2
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import contextlib
import hashlib
import itertools
import json
import os
import pickle
import re
import selectors
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, NamedTuple, Protocol, cast
from urllib.parse import parse_qs, quote, unquote
from xml.sax.saxutils import escape

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_KEYS = 1000
"""Keys per ListObjectsV2 page, at most and by default (S3's)."""
REGION = "us-east-1"
IDLE_TIMEOUT = 300.0
"""Seconds a kept-alive connection may sit idle before the endpoint closes it."""
START_TIMEOUT = 60.0
"""Seconds a worker process may take to start serving."""

_MAX_DRAINED = 1 << 20
_INLINE = 1 << 20
"""Bodies up to this size are read (``pread``) and sent with the headers in one write; larger
ones follow the headers by ``sendfile``."""
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_SIGV2 = re.compile(r"AWS ([^:\s]+):")
_PRESIGNED = re.compile(r"([^/,\s]+)/")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_SERVED = frozenset({"ListObjectsV2", "GetObject", "HeadObject", "HeadBucket"})
_KINDS = {
    "ListObjectsV2": "LIST",
    "ListObjects": "LIST",
    "GetObject": "GET",
    "HeadObject": "HEAD",
    "HeadBucket": "HEAD",
    "PutObject": "PUT",
    "CreateBucket": "PUT",
}
"""The kinds ``devtools.s3server.S3Request.kind`` counts (a HeadBucket is a HEAD)."""

_request_ids = itertools.count(1)


# -- the index -----------------------------------------------------------------------------------


class _Object(NamedTuple):
    path: str
    size: int
    etag: str
    """Quoted, as S3 sends it: a digest of the key, size and modification time (not of the
    content, which would mean reading every file at start)."""
    modified: str
    """The Last-Modified header (whole seconds, as S3's)."""
    listed: str
    """The object's ``<Contents>`` element after its key."""


class _Bucket:
    """One subfolder of the root: its files by key, and the keys in UTF-8 byte order (which is
    code point order: keys that are not valid UTF-8 are left out)."""

    def __init__(self, name: str, folder: str) -> None:
        self.name = name
        self.objects: dict[str, _Object] = {}
        _scan(folder, "", self.objects, frozenset())
        self.keys = sorted(self.objects)


def _scan(
    folder: str, prefix: str, into: dict[str, _Object], ancestors: frozenset[tuple[int, int]]
) -> None:
    """Every regular file under ``folder`` into ``into`` by key (links followed, loops not)."""
    here = os.stat(folder)
    ancestors |= {(here.st_dev, here.st_ino)}
    with os.scandir(folder) as entries:
        for entry in entries:
            key = prefix + entry.name
            try:
                if entry.is_dir():
                    found = entry.stat()
                    if (found.st_dev, found.st_ino) not in ancestors:
                        _scan(entry.path, f"{key}/", into, ancestors)
                elif entry.is_file() and _encodable(key):
                    into[key] = _describe(key, entry.path, entry.stat())
            except FileNotFoundError:  # gone while scanning, or a broken link
                continue


def _describe(key: str, path: str, found: os.stat_result) -> _Object:
    digest = f"{key}\0{found.st_size}\0{found.st_mtime_ns}".encode()
    etag = f'"{hashlib.md5(digest, usedforsecurity=False).hexdigest()}"'
    seconds = int(found.st_mtime)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(seconds))
    listed = (
        f"</Key><LastModified>{iso}</LastModified><ETag>{escape(etag)}</ETag>"
        f"<Size>{found.st_size}</Size><StorageClass>STANDARD</StorageClass></Contents>"
    )
    return _Object(path, found.st_size, etag, formatdate(seconds, usegmt=True), listed)


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _scan_root(root: Path) -> dict[str, _Bucket]:
    if not root.is_dir():
        raise FileNotFoundError(f"Expected a folder of buckets to serve, but {root} is not one")
    buckets: dict[str, _Bucket] = {}
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir() and _bucket_name_ok(entry.name):
                buckets[entry.name] = _Bucket(entry.name, entry.path)
    return buckets


def _bucket_name_ok(name: str) -> bool:
    return name not in {"", ".", ".."} and "\0" not in name and _encodable(name)


def _key_ok(key: str) -> bool:
    """Whether a key can name a file under its bucket's folder: no NUL, no absolute path, no
    ``..``, ``.`` or empty segment (the index holds no such key anyway)."""
    return (
        "\0" not in key
        and _encodable(key)
        and all(part not in {"", ".", ".."} for part in key.split("/"))
    )


class _State(NamedTuple):
    buckets: dict[str, _Bucket]
    latency: float


# -- requests ------------------------------------------------------------------------------------


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
    found = _CREDENTIAL.search(authorization) or _SIGV2.match(authorization)
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
        server = cast(_HTTPServer, self.server)
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
            _KINDS.get(operation, operation),
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


# -- servers and counts --------------------------------------------------------------------------


class _Recorder(Protocol):
    def record(self, client: str, kind: str) -> None: ...


class _Tally:
    """Counts by (client, kind), in the process that serves."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def record(self, client: str, kind: str) -> None:
        with self._lock:
            self._counts[(client, kind)] += 1

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self._counts)


class _LineLog:
    """A worker process's records: a line per request, appended to its own file by one unbuffered
    write before the request is answered, so that the parent can count what was answered."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def record(self, client: str, kind: str) -> None:
        os.write(self._fd, f"{client}\t{kind}\n".encode())


class _LineReader:
    """The parent's side of the workers' files: the lines appended since the last look, added up."""

    def __init__(self, paths: list[str]) -> None:
        self._paths = paths
        self._offsets = [0] * len(paths)
        self._rests = [b""] * len(paths)
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            for index, path in enumerate(self._paths):
                try:
                    with open(path, "rb") as file:
                        file.seek(self._offsets[index])
                        data = file.read()
                except FileNotFoundError:
                    continue
                self._offsets[index] += len(data)
                lines, _, self._rests[index] = (self._rests[index] + data).rpartition(b"\n")
                for line in lines.split(b"\n") if lines else []:
                    client, _, kind = line.decode("utf-8", "replace").partition("\t")
                    self._counts[(client, kind)] += 1
            return Counter(self._counts)


class _HTTPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A thread per connection, on a socket bound and listening already."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, listener: socket.socket, state: _State, log: _Recorder) -> None:
        address = listener.getsockname()[:2]
        super().__init__(address, _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.server_address = address
        self.state = state
        self.log = log
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End the kept-alive connections, whose threads would otherwise wait for the client."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


def _worker_main(argv: list[str]) -> None:
    """A worker process (``_WORKER`` runs it): accept on the inherited listening socket until the
    parent ends it or goes away (its end of our stdin closes)."""
    state_path, descriptor, log_path = argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    with open(state_path, "rb") as file:
        state = cast(_State, pickle.load(file))  # the parent's, in its private folder
    listener = socket.socket(fileno=int(descriptor))
    listener.setblocking(False)  # the workers race for each connection: a loser must not block
    server = _HTTPServer(listener, state, _LineLog(log_path))
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    server.serve_forever(poll_interval=1.0)


def _exit_with_parent() -> None:
    sys.stdin.buffer.read()
    os._exit(0)


_WORKER = "import sys; from devtools.s3files import _worker_main; _worker_main(sys.argv[1:])"


def _wait_ready(worker: subprocess.Popen[bytes], deadline: float) -> None:
    assert worker.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(worker.stdout, selectors.EVENT_READ)
        if not selector.select(max(0.0, deadline - time.monotonic())):
            raise RuntimeError(f"an s3files worker did not start in {START_TIMEOUT} s")
    if worker.stdout.readline() != b"ready\n":
        raise RuntimeError(f"an s3files worker exited {worker.wait(10)} as it started")
    worker.stdout.close()


class StaticS3Server:
    """A read-only S3 endpoint for the buckets in ``root`` (its subfolders) on ``host`` and a free
    port (or ``port``), counting requests by client and kind.

    ``latency`` seconds are slept before each response; ``processes`` > 1 serves from that many
    worker processes (new interpreters, given the listening socket and the index) on one port,
    else a thread of this process serves. Counts stay available after :meth:`stop`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        latency: float = 0.0,
        processes: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if latency < 0:
            raise ValueError(f"Expected a latency of 0 s or more, but got {latency}")
        if processes < 1:
            raise ValueError(f"Expected 1 process or more, but got {processes}")
        self.root = Path(root)
        self.latency = latency
        self.processes = processes
        self.host = host
        self.port = port
        self.buckets: dict[str, int] = {}
        """Objects per bucket, once started."""
        self._address: tuple[str, int] | None = None
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._workers: list[subprocess.Popen[bytes]] = []
        self._scratch: str | None = None
        self._counter: _Tally | _LineReader | None = None
        self._baseline: Counter[tuple[str, str]] = Counter()
        self._final: Counter[tuple[str, str]] | None = None

    @property
    def endpoint(self) -> str:
        assert self._address is not None, "start() first"
        host, port = self._address
        return f"http://{host}:{port}"

    @property
    def pids(self) -> list[int]:
        """The processes that serve: the workers', or this one's."""
        return [worker.pid for worker in self._workers] or [os.getpid()]

    def start(self) -> None:
        assert self._address is None, "started already"
        buckets = _scan_root(self.root)
        self.buckets = {name: len(bucket.keys) for name, bucket in buckets.items()}
        state = _State(buckets, self.latency)
        listener = socket.create_server((self.host, self.port), backlog=1024)
        self._address = (self.host, int(listener.getsockname()[1]))
        try:
            if self.processes == 1:
                tally = _Tally()
                self._counter = tally
                self._server = _HTTPServer(listener, state, tally)
                self._thread = threading.Thread(
                    target=self._server.serve_forever,
                    kwargs={"poll_interval": 0.05},
                    name="s3files",
                    daemon=True,
                )
                self._thread.start()
            else:
                self._start_workers(listener, state)
        except BaseException:
            listener.close()
            self.stop()
            raise

    def _start_workers(self, listener: socket.socket, state: _State) -> None:
        self._scratch = tempfile.mkdtemp(prefix="s3files-")
        state_path = os.path.join(self._scratch, "state.pickle")
        with open(state_path, "wb") as file:
            pickle.dump(state, file, protocol=pickle.HIGHEST_PROTOCOL)
        paths = [os.path.join(self._scratch, f"worker-{i}.log") for i in range(self.processes)]
        self._counter = _LineReader(paths)
        listener.setblocking(False)
        here = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
        descriptor = listener.fileno()
        for path in paths:
            self._workers.append(
                subprocess.Popen(
                    [sys.executable, "-c", _WORKER, state_path, str(descriptor), path],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                    pass_fds=(descriptor,),
                )
            )
        deadline = time.monotonic() + START_TIMEOUT
        for worker in self._workers:
            _wait_ready(worker, deadline)
        listener.close()  # the workers have theirs; with them gone, connections are refused

    def stop(self) -> None:
        """Stop serving (idempotent): connections are closed, worker processes ended."""
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        for worker in self._workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in self._workers:
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            if worker.stdin is not None:
                worker.stdin.close()
        if self._counter is not None and self._final is None:
            self._final = self._counter.snapshot()
        self._workers = []
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _snapshot(self) -> Counter[tuple[str, str]]:
        if self._final is not None:
            return self._final - self._baseline
        if self._counter is None:
            return Counter()
        return self._counter.snapshot() - self._baseline

    def clear(self) -> None:
        """Forget what was served so far, so that what follows is counted on its own."""
        self._baseline += self._snapshot()

    def counts(self, client: str | None = None) -> dict[str, int]:
        """Requests by kind (LIST, GET, HEAD, or the operation for any other), of one access
        key's requests if given: ``CountingS3Server.counts``."""
        kinds: Counter[str] = Counter()
        for (who, kind), number in self._snapshot().items():
            if client is None or who == client:
                kinds[kind] += number
        return dict(kinds)

    def clients(self) -> dict[str, dict[str, int]]:
        """Requests by access key, then kind."""
        by_client: dict[str, dict[str, int]] = {}
        for (who, kind), number in sorted(self._snapshot().items()):
            by_client.setdefault(who, {})[kind] = number
        return by_client


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Prints the endpoint, serves until interrupted, then prints the counts (stderr).",
    )
    parser.add_argument("root", type=Path, help="the folder of buckets: ROOT/BUCKET/KEY")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before a response")
    parser.add_argument("--processes", type=int, default=1, help="worker processes")
    args = parser.parse_args(argv)
    server = StaticS3Server(
        args.root,
        latency=args.latency,
        processes=args.processes,
        host=args.host,
        port=args.port,
    )
    stopping = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda _number, _frame: stopping.set())
    server.start()
    try:
        print(server.endpoint, flush=True)
        print(f"serving {server.buckets} (objects per bucket)", file=sys.stderr, flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
        print(json.dumps({"requests": server.clients()}), file=sys.stderr)


if __name__ == "__main__":
    # The module's own name, not __main__'s: the index is pickled for the worker processes, and
    # they find its classes by module name.
    from devtools.s3files import main as _main

    _main()
