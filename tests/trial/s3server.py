"""The client's side of the S3 tests: a request counter on a botocore client, and injected
failures. The server's side, a counting S3 endpoint on loopback, is
:class:`devtools.s3server.CountingS3Server` (shared with ``bench.s3``): the client's view says
what the reader asked for, the server's view proves it is what went over the network.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse

from devtools.s3server import S3Request


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
