"""A real S3 endpoint on loopback (moto's server) that records every request reaching it.

What a reader asks its client for is one side of an S3 cost; what arrives at the endpoint is
the other, and the only one that counts retries and the requests of processes we cannot hook
(smdebug, a writer in its own process). The server is moto's own WSGI app served by werkzeug,
as ``moto.server.ThreadedMotoServer`` does, with one recording layer in front. Each process
signs with its own access key, so the records tell the clients apart without any cooperation
from them. Used by the S3 tests and by ``bench.s3``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from werkzeug.serving import BaseWSGIServer

CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")

KINDS = {
    "ListObjectsV2": "LIST",
    "ListObjects": "LIST",
    "GetObject": "GET",
    "HeadObject": "HEAD",
    "HeadBucket": "HEAD",
    "PutObject": "PUT",
    "CreateBucket": "PUT",
}

_WRITES = frozenset({"PutObject", "CreateBucket"})


@dataclass(frozen=True)
class S3Request:
    """One S3 request, as the server saw it or as a client asked for it.

    Both ends use the same record so that a test can check that they agree.
    """

    op: str
    """The operation as botocore names it (``GetObject``, ``ListObjectsV2``, ...); requests
    outside that set are ``"<METHOD> object"`` or ``"<METHOD> bucket"``."""
    key: str = ""
    """The object key without the bucket, or for a listing its prefix."""
    ranged: bool = False
    max_keys: int = 0
    method: str = ""
    """The HTTP method; empty in a client's record (known only once the request is built)."""
    client: str = ""
    """The access key the request was signed with (``anonymous`` when unsigned); empty in a
    client's record."""

    @property
    def kind(self) -> str:
        """LIST, GET, HEAD, PUT or the operation itself: the categories a cost is quoted in
        (a ranged GET costs what a whole one does, a HeadBucket what a HeadObject does)."""
        return KINDS.get(self.op, self.op)


def classify(method: str, path: str, query: str, ranged: bool = False) -> S3Request:
    """The S3 operation of a path-style request (the only style a loopback endpoint gets)."""
    _bucket, _, key = path.lstrip("/").partition("/")
    params = parse_qs(query, keep_blank_values=True)
    if method == "GET" and not key:
        prefix = params.get("prefix", [""])[0]
        max_keys = int(params.get("max-keys", ["0"])[0])
        if params.get("list-type") == ["2"]:
            return S3Request("ListObjectsV2", prefix, max_keys=max_keys, method=method)
        if "list-type" in params or "prefix" in params:
            return S3Request("ListObjects", prefix, max_keys=max_keys, method=method)
        return S3Request("GET bucket", method=method)
    if method == "GET":
        return S3Request("GetObject", key, ranged, method=method)
    if method == "HEAD":
        return S3Request("HeadObject" if key else "HeadBucket", key, method=method)
    if method == "PUT":
        return S3Request("PutObject" if key else "CreateBucket", key, method=method)
    return S3Request(f"{method} {'object' if key else 'bucket'}", key, method=method)


class CountingS3Server:
    """moto's S3 on 127.0.0.1 and a free port; ``requests`` lists what it served, in order.

    moto's own control API (``/moto-api``) is not S3 traffic and is not recorded.
    """

    def __init__(self) -> None:
        self.requests: list[S3Request] = []
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        # Imported here: moto takes about a second to import, and only a started server needs it.
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto_app = DomainDispatcherApplication(create_backend_app)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = str(environ.get("PATH_INFO", ""))
            if not path.startswith("/moto-api"):
                seen = classify(
                    str(environ["REQUEST_METHOD"]),
                    path,
                    str(environ.get("QUERY_STRING", "")),
                    "HTTP_RANGE" in environ,
                )
                found = CREDENTIAL.search(str(environ.get("HTTP_AUTHORIZATION", "")))
                seen = replace(seen, client=found.group(1) if found else "anonymous")
                with self._lock:
                    self.requests.append(seen)
            answer: Iterable[bytes] = moto_app(environ, start_response)
            return answer

        self._server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def clear(self) -> None:
        """Forget what was served so far, so that what follows is counted on its own."""
        with self._lock:
            self.requests.clear()

    def served(self, client: str | None = None) -> list[S3Request]:
        """A snapshot of the records (of one access key's requests, if given); safe to use while
        requests still arrive."""
        with self._lock:
            return [seen for seen in self.requests if client is None or seen.client == client]

    def reads(self, client: str | None = None) -> list[S3Request]:
        """The requests a reader makes: everything but uploads and bucket creation, which are
        the writer's side of a test."""
        return [seen for seen in self.served(client) if seen.op not in _WRITES]

    def counts(self, client: str | None = None) -> dict[str, int]:
        """Requests by :attr:`S3Request.kind`, the figures a cost is quoted in."""
        return dict(Counter(seen.kind for seen in self.served(client)))
