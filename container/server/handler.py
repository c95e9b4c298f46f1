"""The HTTP side of the metrics server: the stdlib ``ThreadingHTTPServer`` and its handler,
routing ``/metrics``, ``/healthz``, ``/readyz`` and ``/report``.

Imported by ``MetricsServer.start`` only: http.server, socketserver, gzip and prometheus_client's
exposition cost a run that serves nothing ~30 ms of start-up.
"""

from __future__ import annotations

import gzip
import logging
import socket
import socketserver
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import CollectorRegistry

from container.server import ReportPage
from container.snapshot import SnapshotBox

logger = logging.getLogger("container.server")

TERMINAL = frozenset({"NoIssuesFound", "IssuesFound", "Error", "Stopped"})
_CLIENT_TIMEOUT = 30.0
"""A client that sends nothing for this long is dropped, so idle connections cannot pile up
threads."""
_TEXT = "text/plain; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_ROUTES = b"not found: try /metrics, /report, /healthz or /readyz\n"


class MetricsHTTPServer(ThreadingHTTPServer):
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
    server: MetricsHTTPServer
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
