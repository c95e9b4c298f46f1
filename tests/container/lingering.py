"""A run that lingers after its verdict, serving metrics, for tests that scrape the final state."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from container.app import Outcome, Runtime, run
from container.config import Settings
from container.stopping import StopRequest


@dataclass
class Lingering:
    """The running evaluation: its metrics port, its thread, and its outcome once stopped."""

    port: int
    runner: threading.Thread
    outcomes: list[Outcome] = field(default_factory=list)


@contextlib.contextmanager
def lingering_run(
    settings: Settings, runtime: Runtime, *, timeout: float = 30
) -> Iterator[Lingering]:
    """Run with metrics on 127.0.0.1 and ``linger_after_verdict``; yield once the terminal
    status is written; stop the run (and wait for it) on leaving the block."""
    stop = runtime.stop or StopRequest()
    ports: list[int] = []
    runtime.stop, runtime.metrics_port_ready = stop, ports.append
    settings = settings.changed(
        metrics_enabled=True, metrics_address="127.0.0.1", metrics_port=0, linger_after_verdict=True
    )
    outcomes: list[Outcome] = []
    runner = threading.Thread(target=lambda: outcomes.append(run(settings, runtime)))
    runner.start()
    try:
        status_file = Path(settings.outputs.status_file)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (
            status_file.exists() and json.loads(status_file.read_text())["terminal"]
        ):
            time.sleep(0.05)
        yield Lingering(ports[0], runner, outcomes)
    finally:
        stop.set("test done")
        runner.join(10)
