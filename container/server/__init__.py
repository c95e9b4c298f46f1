"""The HTTP endpoint beside the evaluation: ``/metrics``, ``/healthz``, ``/readyz`` and the
live HTML report at ``/report``.

One server answers them all so a pod needs one port for scraping, probes and a
``kubectl port-forward`` to the report. One thread owns every connection and answers the probes
itself; a fixed pool of daemon threads builds ``/metrics`` and ``/report`` from the current
snapshot (``loop.py``). Threads stay fixed and memory bounded whatever the clients do, every
client has a deadline, and a probe never waits behind a slow client or a flood of scrapes
(the bounds: ``limits.py``). Nothing of it holds up the evaluation loop or the process's exit.

This module is what the runtime imports (``MetricsServer``, ``MetricsBindError``,
``ServerLimits``); the HTTP machinery (``loop.py``, ``handler.py``: http.server,
prometheus_client's exposition, the collector) is imported when a server is made, so a run that
serves nothing never imports it (~30 ms).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from container.server.limits import ServerLimits
from container.snapshot import SnapshotBox

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from container.server.loop import ConnectionLoop

__all__ = ["MetricsBindError", "MetricsServer", "ReportPage", "ServerLimits"]

logger = logging.getLogger(__name__)

_STOP_TIMEOUT = 5.0
"""How long ``stop`` waits for the loop's thread: it ends within a wake-up (``stop`` wakes it),
so this is only a bound against a bug, never a wait (a daemon thread left does not hold the
exit)."""

ReportPage = Callable[[], str]
"""Renders the report as the evaluation stands (called per request, on the handler's thread)."""


class MetricsBindError(OSError):
    """The metrics server could not listen; the message names the setting to change."""


class MetricsServer:
    """Serves the snapshot in ``box`` as Prometheus metrics plus health and readiness probes.

    Nothing is bound until ``start``; ``port`` 0 picks a free port, readable from ``.port``
    after ``start``. The registry is private unless one is injected (the collector is
    registered into it either way), so nothing leaks into client_python's global registry.
    ``limits`` bounds what clients can hold (the defaults suit every deployment; the tests
    shrink the times).
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
        limits: ServerLimits | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"Expected `metrics_port` to be in [0, 65535], but got {port!r}")
        self._box = box
        self._address = address
        self._requested_port = port
        # Lazy, as the handler is: prometheus_client and the collector only once a server is made.
        from container.metrics import ClassImbalanceCollector  # noqa: PLC0415

        if registry is None:
            from prometheus_client.process_collector import ProcessCollector  # noqa: PLC0415
            from prometheus_client.registry import CollectorRegistry  # noqa: PLC0415

            registry = CollectorRegistry()
            # The sidecar's own memory and CPU, which whoever sizes the pod wants to see.
            ProcessCollector(registry=registry)
        registry.register(
            ClassImbalanceCollector(box, max_class_series, max_confusion_series, info_labels)
        )
        self.registry = registry
        self.report = report
        """The live report's page; None: ``/report`` says the report is turned off."""
        self._limits = ServerLimits() if limits is None else limits
        self._lock = threading.Lock()
        self._server: ConnectionLoop | None = None
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
            from container.server.handler import Responder  # noqa: PLC0415  (lazy)
            from container.server.loop import ConnectionLoop  # noqa: PLC0415

            responder = Responder(self._box, self.registry, self.report)
            try:
                server = ConnectionLoop(
                    (self._address, self._requested_port), responder, self._limits
                )
            except OSError as error:
                raise MetricsBindError(
                    f"cannot serve metrics on {self._address}:{self._requested_port}: {error}. "
                    f"Change the metrics_port setting (--metrics-port, "
                    f"CLASSIMBALANCE_METRICS_PORT; 0 picks a free port) or metrics_address, or "
                    f"set metrics_enabled to false (auto serves only while following)."
                ) from error
            thread = threading.Thread(target=server.serve, name="metrics-server", daemon=True)
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
        server.stop()  # the loop closes every connection and the socket on its way out
        thread.join(timeout=_STOP_TIMEOUT)

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
