"""The client's side of the S3 tests: a request counter on a botocore client, and injected
failures, and a fault-injecting proxy that breaks answers on the wire (bodies cut off or
reset mid-read). The server's side, a counting S3 endpoint on loopback, is
:class:`devtools.s3server.CountingS3Server` (shared with ``bench.s3``): the client's view says
what the reader asked for, the server's view proves it is what went over the network.
"""

from __future__ import annotations

import contextlib
import enum
import http.client
import http.server
import random
import socket
import struct
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse

from devtools.s3server import S3Request, classify


@dataclass
class ClientCounter:
    """Counts a client's API calls (``before-call``) and HTTP attempts (``before-send``).

    Calls are what the reader asked for; attempts include botocore's retries.
    """

    calls: list[S3Request] = field(default_factory=list)
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
        seen = S3Request(model.name, key, "Range" in params, int(params.get("MaxKeys", 0)))
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


# -- a fault-injecting proxy in front of the endpoint ------------------------------------------


class Fault(enum.Enum):
    """What the proxy does to one answer."""

    NONE = "none"
    CUT = "cut"
    """Send the headers (with the whole body's Content-Length) and half the body, then close
    the connection: ``IncompleteRead`` at the client."""
    RESET = "reset"
    """Send the headers and half the body, then reset the connection (RST): a reset mid-read."""
    UNAVAILABLE = "unavailable"
    """Answer 503 SlowDown without asking the endpoint."""


FaultPolicy = Callable[[S3Request], Fault]
"""Decides each answer's fault from the request (operation and key, as the server classifies
it)."""


class FaultProxy:
    """A loopback HTTP proxy in front of an S3 endpoint that breaks answers as told.

    botocore retries requests whose answer fails (a 5xx, a dropped connection before the
    answer) but hands over a body that breaks while it is read; only a proxy between the client
    and a real endpoint can break a body after its headers arrived, as a network does. Every
    request is forwarded to ``upstream`` whole; ``policy`` then says what reaches the client.
    ``faults`` counts what was injected, by fault.
    """

    def __init__(self, upstream: str, policy: FaultPolicy) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self._upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.policy = policy
        self.faults: Counter[Fault] = Counter()
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self)

            do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _forward(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        path, _, query = handler.path.partition("?")
        request = classify(handler.command, path, query, "Range" in handler.headers)
        fault = self.policy(request)
        if handler.command == "HEAD" and fault in (Fault.CUT, Fault.RESET):
            fault = Fault.NONE  # no body to break
        with self._lock:
            self.faults[fault] += 1
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        if fault is Fault.UNAVAILABLE:
            self._answer(handler, 503, {"Content-Type": "application/xml"}, _SLOW_DOWN)
            return
        upstream = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() != "connection"}
            upstream.request(handler.command, handler.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            status, answer_headers = answer.status, answer.getheaders()
        finally:
            upstream.close()
        kept = {
            k: v
            for k, v in answer_headers
            if k.lower() not in {"connection", "transfer-encoding", "content-length"}
        }
        if handler.command == "HEAD":
            kept["Content-Length"] = dict(answer_headers).get("Content-Length", "0")
            self._answer(handler, status, kept, b"")
        elif fault is Fault.NONE or len(data) < 2:
            self._answer(handler, status, kept, data)
        else:
            self._break(handler, status, kept, data, fault)

    @staticmethod
    def _answer(
        handler: http.server.BaseHTTPRequestHandler,
        status: int,
        headers: dict[str, str],
        data: bytes,
    ) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        if "Content-Length" not in headers:
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    @staticmethod
    def _break(
        handler: http.server.BaseHTTPRequestHandler,
        status: int,
        headers: dict[str, str],
        data: bytes,
        fault: Fault,
    ) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])
        handler.wfile.flush()
        connection: socket.socket = handler.connection
        if fault is Fault.RESET:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)  # a clean close (FIN) mid-body
        handler.close_connection = True
        with contextlib.suppress(OSError):
            connection.close()


_SLOW_DOWN = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
    b"<Message>injected by the fault proxy</Message></Error>"
)


def at_rate(rate: float, fault: Fault, ops: frozenset[str], seed: int = 0) -> FaultPolicy:
    """A policy injecting ``fault`` into a ``rate`` of the requests of ``ops``, reproducibly."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def policy(request: S3Request) -> Fault:
        if request.op not in ops:
            return Fault.NONE
        with lock:
            return fault if rng.random() < rate else Fault.NONE

    return policy
