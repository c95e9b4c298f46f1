"""The HTTP endpoint beside the evaluation: ``/metrics``, ``/healthz``, ``/readyz`` and the
live HTML report at ``/report``.

One stdlib ``ThreadingHTTPServer`` serves them all so a pod needs one port for scraping, probes
and a ``kubectl port-forward`` to the report. Handlers run on daemon threads and only read
the current snapshot, so a slow or stuck client never holds up the evaluation loop or the
process's exit.
"""

from __future__ import annotations

import gzip
import logging
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from container.metrics import ClassImbalanceCollector
from container.snapshot import SnapshotBox

logger = logging.getLogger(__name__)

TERMINAL = frozenset({"NoIssuesFound", "IssuesFound", "Error", "Stopped"})
_POLL_INTERVAL = 0.01
"""How often the serving loop looks for a stop request: the bound on how long ``stop`` takes
(a replay of a thousand steps takes a fraction of a second; stopping should not add to it).
A hundred wake-ups a second cost next to nothing."""
_CLIENT_TIMEOUT = 30.0
"""A client that sends nothing for this long is dropped, so idle connections cannot pile up
threads."""
_TEXT = "text/plain; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_ROUTES = b"not found: try /metrics, /report, /healthz or /readyz\n"

ReportPage = Callable[[], str]
"""Renders the report as the evaluation stands (called per request, on the handler's thread)."""


class MetricsBindError(OSError):
    """The metrics server could not listen; the message names the setting to change."""


class MetricsServer:
    """Serves the snapshot in ``box`` as Prometheus metrics plus health and readiness probes.

    Nothing is bound until ``start``; ``port`` 0 picks a free port, readable from ``.port``
    after ``start``. The registry is private unless one is injected (the collector is
    registered into it either way), so nothing leaks into client_python's global registry.
    """

    def __init__(
        self,
        box: SnapshotBox,
        address: str,
        port: int,
        max_class_series: int,
        *,
        max_confusion_series: int = 10,
        registry: CollectorRegistry | None = None,
        report: ReportPage | None = None,
        info_labels: Sequence[tuple[str, str]] = (),
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"Expected `metrics_port` to be in [0, 65535], but got {port!r}")
        self._box = box
        self._address = address
        self._requested_port = port
        if registry is None:
            registry = CollectorRegistry()
            # The sidecar's own memory and CPU, which whoever sizes the pod wants to see.
            ProcessCollector(registry=registry)
        registry.register(
            ClassImbalanceCollector(box, max_class_series, max_confusion_series, info_labels)
        )
        self.registry = registry
        self.report = report
        """The live report's page; None: ``/report`` says the report is turned off."""
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return self._address

    @property
    def port(self) -> int:
        """The bound port once started (the free one picked for port 0), else the one asked."""
        server = self._server
        return self._requested_port if server is None else int(server.server_address[1])

    def start(self) -> None:
        """Bind and serve on a background thread; raises ``MetricsBindError`` when it cannot."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("the metrics server is already running")
            try:
                server = _Server(
                    (self._address, self._requested_port), self._box, self.registry, self.report
                )
            except OSError as error:
                raise MetricsBindError(
                    f"cannot serve metrics on {self._address}:{self._requested_port}: {error}. "
                    f"Change the metrics_port setting (--metrics-port, "
                    f"CLASSIMBALANCE_METRICS_PORT; 0 picks a free port) or metrics_address, or "
                    f"set metrics_enabled to false (auto serves only while following)."
                ) from error
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL},
                name="metrics-server",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
        logger.debug(
            "serving metrics on http://%s:%d/metrics (and /healthz, /readyz)",
            self._address,
            self.port,
        )

    def stop(self) -> None:
        """Stop serving and close the socket so the port is free again; safe to repeat."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None or thread is None:
            return
        server.shutdown()  # returns within _POLL_INTERVAL; in-flight handlers are daemons
        server.server_close()
        thread.join(timeout=5.0)

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        box: SnapshotBox,
        registry: CollectorRegistry,
        report: ReportPage | None,
    ) -> None:
        self.box = box
        self.registry = registry
        self.report = report
        host = address[0].strip("[]")
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, address[1]), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a reverse DNS lookup that can hang
        # for seconds where DNS is unreachable; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client going away or going quiet is routine; anything else is worth a warning, but
        # in the log rather than as a bare traceback on stderr.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            logger.debug("metrics client %s went away", client_address)
        else:
            logger.warning("metrics request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = _CLIENT_TIMEOUT
    server_version = "classimbalance-rule"

    def do_GET(self) -> None:
        self._route(with_body=True)

    def do_HEAD(self) -> None:
        self._route(with_body=False)

    def _route(self, *, with_body: bool) -> None:
        url = urlsplit(self.path)
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
        registry = self.server.registry
        try:
            if "name[]" in query:
                body = encoder(registry.restricted_registry(query["name[]"]))
            else:
                body = encoder(registry)
        except Exception:
            logger.exception("collecting metrics failed")
            self._send(500, _TEXT, b"collecting metrics failed; see the log\n", with_body=with_body)
            return
        headers = {}
        if gzip_accepted(self.headers.get("Accept-Encoding", "")):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
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
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if with_body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("client %s left before the response was sent", self.client_address)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)
