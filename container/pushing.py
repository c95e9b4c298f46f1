"""The final metrics pushed to a Prometheus Pushgateway, for evaluations too short to scrape.

A Job that evaluates a finished trial ends in seconds: its terminal state falls between two
scrapes, and alerts with a ``for:`` never see it. With ``pushgateway_url`` set, the terminal
snapshot's families (the same collector the server scrapes) are pushed once, grouped by
``training_job`` (or the trial) so that evaluations of different jobs do not replace each other.
A push that fails is logged and costs nothing else: the verdict is in the status file and the
exit code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from container.config import MetricsSettings
from container.snapshot import Snapshot, SnapshotBox

log = logging.getLogger("classimbalance")

PUSH_TIMEOUT = 10.0
"""Seconds one push may take: the process exits right after it."""

Pusher = Callable[..., Any]
"""``prometheus_client.exposition.push_to_gateway``'s signature (tests may stand in)."""


def push_final_metrics(
    metrics: MetricsSettings, snapshot: Snapshot, *, push: Pusher | None = None
) -> bool:
    """Push ``snapshot``'s metrics when a Pushgateway is set (with ``push``, by default
    ``push_to_gateway``); whether they were pushed."""
    url = metrics.pushgateway_url
    if url is None:
        return False
    # Lazy: prometheus_client (with http.server, urllib.request and email) and the collector
    # take ~30 ms to import, and most runs push nothing.
    from prometheus_client.exposition import push_to_gateway  # noqa: PLC0415
    from prometheus_client.registry import CollectorRegistry  # noqa: PLC0415

    from container.metrics import ClassImbalanceCollector, info_labels  # noqa: PLC0415

    registry = CollectorRegistry()
    registry.register(
        ClassImbalanceCollector(
            SnapshotBox(snapshot),
            metrics.max_class_series,
            metrics.max_confusion_series,
            info_labels(metrics),
        )
    )
    grouping = {"training_job": metrics.training_job} if metrics.training_job else {}
    grouping = grouping or {"trial": snapshot.trial}
    try:
        (push or push_to_gateway)(
            url,
            job=metrics.pushgateway_job,
            registry=registry,
            grouping_key=grouping,
            timeout=PUSH_TIMEOUT,
        )
    except (OSError, ValueError) as exc:  # URLError is an OSError
        log.error(
            "cannot push the final metrics to the Pushgateway %s: %s; the verdict is in the "
            "status file",
            url,
            exc,
            extra={"event": "push_failed"},
        )
        return False
    log.info(
        "pushed the final metrics to %s (job %s, %s)",
        url,
        metrics.pushgateway_job,
        ", ".join(f"{k}={v}" for k, v in grouping.items()),
        extra={"event": "pushed", "job": metrics.pushgateway_job},
    )
    return True
