"""A real S3 endpoint on loopback (moto's server) that counts what reaches it, and a client-side
request counter, so tests can state what a poll costs from both ends of the wire.

The server is moto's own WSGI app served by werkzeug, as ``moto.server.ThreadedMotoServer``
does, with one counting layer in front: the client's view (botocore events) says what the reader
asked for, the server's view proves it is what went over the network.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from botocore.awsrequest import AWSResponse
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

logging.getLogger("werkzeug").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Seen:
    """One S3 request: operation, object key (without bucket) and whether it was ranged."""

    op: str
    key: str = ""
    """The object key, or for a listing its prefix."""
    ranged: bool = False
    max_keys: int = 0


def classify(method: str, path: str, query: str, ranged: bool) -> Seen:
    """The S3 operation of a path-style request."""
    bucket, _, key = path.lstrip("/").partition("/")
    params = parse_qs(query, keep_blank_values=True)
    if method == "GET" and not key and params.get("list-type") == ["2"]:
        prefix = params.get("prefix", [""])[0]
        return Seen("ListObjectsV2", prefix, max_keys=int(params.get("max-keys", ["0"])[0]))
    if method == "GET" and not key:
        return Seen(f"GET {bucket}")
    if method == "GET":
        return Seen("GetObject", key, ranged)
    if method == "HEAD":
        return Seen("HeadObject" if key else "HeadBucket", key)
    if method == "PUT":
        return Seen("PutObject" if key else "CreateBucket", key)
    return Seen(f"{method} {'object' if key else 'bucket'}", key)


class CountingMotoServer:
    """moto's server on 127.0.0.1 and a free port; ``requests`` lists what it served."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        moto_app = DomainDispatcherApplication(create_backend_app)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if not str(environ.get("PATH_INFO", "")).startswith("/moto-api"):
                seen = classify(
                    str(environ["REQUEST_METHOD"]),
                    str(environ.get("PATH_INFO", "")),
                    str(environ.get("QUERY_STRING", "")),
                    "HTTP_RANGE" in environ,
                )
                with self._lock:
                    self.requests.append(seen)
            result: Iterable[bytes] = moto_app(environ, start_response)
            return result

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

    def reads(self) -> list[Seen]:
        """Requests a reader makes (everything but uploads and bucket creation)."""
        with self._lock:
            return [seen for seen in self.requests if seen.op not in {"PutObject", "CreateBucket"}]


@dataclass
class ClientCounter:
    """Counts a client's API calls (``before-call``) and HTTP attempts (``before-send``).

    Calls are what the reader asked for; attempts include botocore's retries.
    """

    calls: list[Seen] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.s3", self._record)
        client.meta.events.register("before-call.s3", self._before_call)
        client.meta.events.register("after-call.s3", self._after_call)
        client.meta.events.register("after-call-error.s3", self._after_call)
        client.meta.events.register_first("before-send.s3", self._before_send)

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        """One API call, with its parameters as the caller gave them."""
        key = str(params.get("Key", params.get("Prefix", "")))
        seen = Seen(model.name, key, "Range" in params, int(params.get("MaxKeys", 0)))
        with self._lock:
            self.calls.append(seen)

    def _before_call(self, **_: Any) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _after_call(self, **_: Any) -> None:
        with self._lock:
            self.in_flight -= 1

    def _before_send(self, event_name: str, **_: Any) -> None:
        with self._lock:
            self.attempts[event_name.rsplit(".", 1)[-1]] += 1

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.attempts.clear()


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterable[bytes]:
        yield self._body


@dataclass
class Failures:
    """A ``before-send`` hook answering matching requests with an S3 error instead of sending.

    ``remaining`` failures are injected (None: forever) into requests whose operation is in
    ``ops`` and that ``match`` accepts (given the prepared request).
    """

    ops: frozenset[str]
    status: int = 503
    code: str = "SlowDown"
    remaining: int | None = None
    match: Callable[[Any], bool] = lambda _request: True
    injected: int = 0

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-send.s3", self._before_send)

    def _before_send(self, event_name: str, request: Any, **_: Any) -> AWSResponse | None:
        op = event_name.rsplit(".", 1)[-1]
        if op not in self.ops or not self.match(request):
            return None
        if self.remaining is not None:
            if self.remaining <= 0:
                return None
            self.remaining -= 1
        self.injected += 1
        body = (
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{self.code}</Code>"
            f"<Message>injected by the test</Message></Error>"
        ).encode()
        return AWSResponse(
            request.url, self.status, {"Content-Type": "application/xml"}, _Raw(body)
        )
