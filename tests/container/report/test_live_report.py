"""``/report`` of a running evaluation: InProgress and refreshing while it follows the trial,
the verdict's page once it ended (a lingering sidecar)."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

from container.app import Runtime, run
from container.config import Settings
from container.stopping import StopRequest
from tests.container.lingering import lingering_run
from tests.container.test_app import settings_for as app_settings
from tests.container.trials import scores_batch, write_trial


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/report", timeout=5) as response:
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        return str(response.read().decode("utf-8"))


def settings_for(trial: Path, tmp_path: Path) -> Settings:
    """The app tests' settings, serving metrics (and the report) on a free loopback port."""
    return app_settings(trial, tmp_path).changed(
        metrics_enabled=True, metrics_address="127.0.0.1", metrics_port=0, idle_timeout=60
    )


def test_the_live_report_of_a_trial_still_being_written(tmp_path: Path) -> None:
    trial = write_trial(tmp_path / "trial", steps=12, make_batch=scores_batch([5, 1]), end=False)
    stop = StopRequest()
    ports: list[int] = []
    runner = threading.Thread(
        target=run,
        args=(
            settings_for(trial.path, tmp_path),
            Runtime(stop=stop, metrics_port_ready=ports.append),
        ),
    )
    runner.start()
    try:
        deadline = time.monotonic() + 20
        page = ""
        while time.monotonic() < deadline:
            if ports:
                page = fetch(ports[0])
                if 'data-point="11"' in page:  # the last step written is on the chart
                    break
            time.sleep(0.05)
        assert 'data-point="11"' in page
        assert '<meta http-equiv="refresh"' in page
        assert '<span class="live">live</span>' in page
        assert 'data-status="IssuesFound"' in page or 'data-status="InProgress"' in page
    finally:
        stop.set("test done")
        runner.join(15)
    assert not runner.is_alive()


def test_a_lingering_sidecar_serves_the_verdicts_page(tmp_path: Path) -> None:
    trial = write_trial(tmp_path / "trial", steps=8, make_batch=scores_batch([30, 1]))
    settings = settings_for(trial.path, tmp_path)
    with lingering_run(settings, Runtime()) as lingering:
        page = fetch(lingering.port)
    written = (tmp_path / "status.html").read_text()
    assert 'data-status="IssuesFound"' in page
    assert "refresh" not in page.split("<style>")[0]
    # the same document: the pages differ only in their footer
    assert page.split("<footer>")[0] == written.split("<footer>")[0]
