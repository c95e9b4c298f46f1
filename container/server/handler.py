"""The HTTP side of the metrics server: what each request is answered, routing ``/metrics``,
``/healthz``, ``/readyz`` and ``/report``.

The stdlib's ``BaseHTTPRequestHandler`` parses and answers a request head the connection loop
(``loop.py``) has already read whole, into bytes the loop then writes: no handler ever touches a
socket, so no client, however slow, holds one. The handler's own parse sorts the lanes: the
probes and every error are answered on the loop's own thread (``Responder.respond_unless_built``:
microseconds, from the snapshot's flags), and a request the handler routes to ``/metrics`` or
``/report`` (the encoding, the page) is handed to the worker pool (``Responder.respond``), however
its bytes spell it: a second parse of our own could differ from the stdlib's (its whitespace,
its ``//`` folding) and let a client have the page built on the loop's thread.

Imported by ``MetricsServer.start`` only: http.server, gzip and prometheus_client's exposition
cost a run that serves nothing ~30 ms of start-up.
"""

from __future__ import annotations

import email.utils
import gzip
import io
import logging
import threading
import time
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import CollectorRegistry

from container.server import ReportPage
from container.snapshot import Snapshot, SnapshotBox

logger = logging.getLogger("container.server")

TERMINAL = frozenset({"NoIssuesFound", "IssuesFound", "Error", "Stopped"})
_TEXT = "text/plain; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_ROUTES = b"not found: try /metrics, /report, /healthz or /readyz\n"
_WORKER_PATHS = frozenset({"/metrics", "/report"})
"""The paths whose answer is built (encoded, rendered) rather than read off the snapshot."""
SERVER_VERSION = "classimbalance-rule"
SCRAPE_REUSE_SECONDS = 0.5
"""A ``/metrics`` answer is sent again, not built again, for this long, if the snapshot has not
changed: a new snapshot shows on the very next scrape, and only the sidecar's own process
metrics (CPU seconds, memory) can be this much older. Prometheus scrapes every 10 to 60 s, so
only a flood (or two scrapers at the same moment) is ever answered from it."""
REUSED_SCRAPES = 8
"""Distinct ``/metrics`` requests (format x ``name[]`` filter x gzip) kept for reuse: the two
formats, gzipped or not, and a few filters; a client varying the filter gets no reuse, and is
answered as every scrape was before (bounded by the worker pool)."""


_Scrape = tuple[str, tuple[str, ...] | None, bool]
"""What a ``/metrics`` answer depends on besides the snapshot: the format, the ``name[]``
filter, whether it is gzipped."""


class _RecentScrapes:
    """``/metrics`` answers built in the last SCRAPE_REUSE_SECONDS, for the snapshot they were
    built from: a flood of scrapes costs one build per variant and interval, not one each (a
    build takes milliseconds of CPU under the GIL, the time a probe would wait)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: OrderedDict[_Scrape, tuple[Snapshot, float, bytes]] = OrderedDict()

    def reused(self, scrape: _Scrape, snapshot: Snapshot) -> bytes | None:
        """The answer to ``scrape`` built from this very snapshot moments ago, if any."""
        with self._lock:
            kept = self._kept.get(scrape)
        if kept is None:
            return None
        built_from, built_at, body = kept
        fresh = time.monotonic() - built_at < SCRAPE_REUSE_SECONDS
        return body if built_from is snapshot and fresh else None

    def keep(self, scrape: _Scrape, snapshot: Snapshot, body: bytes) -> None:
        with self._lock:
            self._kept[scrape] = (snapshot, time.monotonic(), body)
            self._kept.move_to_end(scrape)
            while len(self._kept) > REUSED_SCRAPES:
                self._kept.popitem(last=False)


class Responder:
    """Answers whole request heads with whole responses, from the snapshot in ``box``."""

    def __init__(
        self, box: SnapshotBox, registry: CollectorRegistry, report: ReportPage | None
    ) -> None:
        self.box = box
        self.registry = registry
        self.report = report
        self.scrapes = _RecentScrapes()

    def respond(self, head: bytes, client_address: tuple[str, int]) -> bytes:
        """The response to ``head`` (a request line, headers and the blank line), built if it
        asks for ``/metrics`` or ``/report``: a worker's lane."""
        return _Handler(head, client_address, self, build=True).response()

    def respond_unless_built(self, head: bytes, client_address: tuple[str, int]) -> bytes | None:
        """The response to ``head`` if answering it builds nothing (the probes, every error: the
        loop's lane), else None: the handler routed it to ``/metrics`` or ``/report``, which a
        worker builds (``respond``, the same parse of the same bytes)."""
        handler = _Handler(head, client_address, self, build=False)
        return None if handler.needs_worker else handler.response()


def plain_response(status: HTTPStatus, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """A whole text response, for what the loop answers itself before any handler (busy, a head
    too large), in the form ``BaseHTTPRequestHandler`` writes."""
    lines = [
        f"HTTP/1.0 {status.value} {status.phrase}",
        f"Server: {SERVER_VERSION}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        f"Content-Type: {_TEXT}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Handler(BaseHTTPRequestHandler):
    """One request, read from the bytes of its head and answered into bytes."""

    server: Responder  # type: ignore[assignment]  # not a socketserver: what it reads from
    server_version = SERVER_VERSION

    def __init__(
        self, head: bytes, client_address: tuple[str, int], server: Responder, *, build: bool
    ) -> None:
        self._head = head
        self._out = io.BytesIO()
        self._build = build
        self.needs_worker = False
        """Routed to a built answer, asked not to build it: nothing was written."""
        # BaseRequestHandler.__init__ runs setup, handle (parse and answer) and finish.
        super().__init__(None, client_address, server)  # type: ignore[arg-type]

    def setup(self) -> None:
        self.rfile = io.BytesIO(self._head)
        self.wfile = self._out

    def finish(self) -> None:
        """The response stays in ``_out`` for the loop to write."""

    def response(self) -> bytes:
        return self._out.getvalue()

    def do_GET(self) -> None:
        self._route(with_body=True)

    def do_HEAD(self) -> None:
        self._route(with_body=False)

    def _route(self, *, with_body: bool) -> None:
        url = urlsplit(self.path)
        if url.path in _WORKER_PATHS and not self._build:
            self.needs_worker = True  # the one gate: never built on the loop's thread
            return
        if url.path == "/metrics":
            self._metrics(parse_qs(url.query), with_body=with_body)
        elif url.path == "/healthz":
            self._send(200, _TEXT, b"ok\n", with_body=with_body)
        elif url.path == "/readyz":
            self._readyz(with_body=with_body)
        elif url.path == "/report":
            self._report(with_body=with_body)
        else:
            self._send(404, _TEXT, _ROUTES, with_body=with_body)

    def _report(self, *, with_body: bool) -> None:
        page = self.server.report
        if page is None:
            body = b"the HTML report is turned off (html_report: false)\n"
            self._send(404, _TEXT, body, with_body=with_body)
            return
        try:
            body = page().encode("utf-8")
        except Exception:
            logger.exception("rendering the report failed")
            self._send(
                500, _TEXT, b"rendering the report failed; see the log\n", with_body=with_body
            )
            return
        headers = {"Cache-Control": "no-store"}
        if gzip_accepted(self.headers.get("Accept-Encoding", "")):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        self._send(200, _HTML, body, with_body=with_body, headers=headers)

    def _metrics(self, query: dict[str, list[str]], *, with_body: bool) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        gzipped = gzip_accepted(self.headers.get("Accept-Encoding", ""))
        names = tuple(query["name[]"]) if "name[]" in query else None
        scrape = (content_type, names, gzipped)
        snapshot = self.server.box.get()
        body = self.server.scrapes.reused(scrape, snapshot)
        if body is None:
            registry = self.server.registry
            try:
                body = encoder(registry if names is None else registry.restricted_registry(names))
            except Exception:
                logger.exception("collecting metrics failed")
                body = b"collecting metrics failed; see the log\n"
                self._send(500, _TEXT, body, with_body=with_body)
                return
            if gzipped:
                body = gzip.compress(body)
            self.server.scrapes.keep(scrape, snapshot, body)
        headers = {"Content-Encoding": "gzip"} if gzipped else {}
        self._send(200, content_type, body, with_body=with_body, headers=headers)

    def _readyz(self, *, with_body: bool) -> None:
        snapshot = self.server.box.get()
        if snapshot.ready:
            self._send(200, _TEXT, b"ready\n", with_body=with_body)
            return
        if snapshot.status in TERMINAL:
            reason = f"not ready: the evaluation has ended ({snapshot.status})"
        else:
            reason = f"not ready: not yet attached to the trial {snapshot.trial} and evaluating"
        self._send(503, _TEXT, f"{reason}\n".encode(), with_body=with_body)

    def _send(
        self,
        code: int,
        content_type: str,
        body: bytes,
        *,
        with_body: bool,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)
