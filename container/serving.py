"""When the metrics server runs: from the start, never, or (``auto``) only while following.

A one-shot evaluation (a finished trial, ``once``, ``make demo``) ends without ever waiting for
a step, and must not take port 9410 from whatever else runs on the machine, nor fail because
something does. A following evaluation needs the port while it waits (probes, scrapes, the live
report), so ``auto`` starts the server at the first wait, and for ``linger_after_verdict``. A
port that cannot be bound is an error that names the port and the setting, at start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from container.config import MetricsSettings
from container.server import MetricsServer, ReportPage
from container.snapshot import SnapshotBox

log = logging.getLogger("classimbalance")


class MetricsEndpoint:
    """The metrics server of one run, started when ``metrics_enabled`` says."""

    def __init__(
        self,
        metrics: MetricsSettings,
        box: SnapshotBox,
        page: ReportPage | None,
        on_port: Callable[[int], object] | None = None,
    ) -> None:
        self._metrics = metrics
        self._box = box
        self._page = page
        self._on_port = on_port
        self._server: MetricsServer | None = None

    @property
    def wanted_at_start(self) -> bool:
        return self._metrics.enabled is True

    @property
    def automatic(self) -> bool:
        return self._metrics.enabled is None

    @property
    def serving(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Bind and serve, once; ``MetricsBindError`` (naming the port and the setting) when
        the port cannot be bound."""
        if self._server is not None or self._metrics.enabled is False:
            return
        # Lazy: the metrics module imports prometheus_client, which a run serving none never
        # needs (metrics_enabled false, or auto in a run that never waits for a step).
        from container.metrics import info_labels  # noqa: PLC0415

        metrics = self._metrics
        server = MetricsServer(
            self._box,
            metrics.address,
            metrics.port,
            metrics.max_class_series,
            max_confusion_series=metrics.max_confusion_series,
            report=self._page,
            info_labels=info_labels(metrics),
        )
        server.start()
        self._server = server
        log.info(
            "serving metrics on http://%s:%d/metrics%s",
            metrics.address,
            server.port,
            " (the live HTML report on /report)" if self._page is not None else "",
            extra={"event": "metrics_listening", "port": server.port},
        )
        if self._on_port is not None:
            self._on_port(server.port)

    def following(self) -> None:
        """The evaluation waits for new steps: ``auto`` serves from now on."""
        if self.automatic:
            self.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
