"""When the metrics server runs: never for a one-shot evaluation under auto (the port stays
free, and taken does not matter), from the first wait while following, from the start when
asked, and a port in use is an error that names the port and the setting."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from container.app import Runtime, run
from container.status import Status
from container.stopping import StopRequest
from tests.container.test_app import settings_for
from tests.container.trials import scores_batch, write_trial


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_a_one_shot_evaluation_never_takes_the_port(tmp_path: Path, taken_port: int) -> None:
    trial = write_trial(tmp_path / "trial", steps=5, make_batch=scores_batch([1, 1]))
    ports: list[int] = []
    settings = settings_for(trial.path, tmp_path).changed(
        metrics_enabled=None, metrics_address="127.0.0.1", metrics_port=taken_port
    )
    outcome = run(settings, Runtime(metrics_port_ready=ports.append))
    assert outcome.status is Status.NO_ISSUES_FOUND
    assert ports == []


def test_asked_for_a_port_in_use_is_an_error_that_names_it_and_the_setting(
    tmp_path: Path, taken_port: int
) -> None:
    trial = write_trial(tmp_path / "trial", steps=2, make_batch=scores_batch([1, 1]))
    settings = settings_for(trial.path, tmp_path).changed(
        metrics_enabled=True, metrics_address="127.0.0.1", metrics_port=taken_port
    )
    outcome = run(settings)
    assert outcome.status is Status.ERROR
    error = outcome.document["error"]
    assert f"127.0.0.1:{taken_port}" in error
    assert "metrics_port setting (--metrics-port, CLASSIMBALANCE_METRICS_PORT" in error


def test_following_serves_from_the_first_wait_and_ready_only_once_the_trial_exists(
    tmp_path: Path,
) -> None:
    trial = tmp_path / "trial"  # not written yet: a sidecar started before training
    stop = StopRequest()
    ports: list[int] = []
    settings = settings_for(trial, tmp_path).changed(
        metrics_enabled=None, metrics_address="127.0.0.1", metrics_port=0, idle_timeout=60
    )
    runner = threading.Thread(
        target=run, args=(settings, Runtime(stop=stop, metrics_port_ready=ports.append))
    )
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while not ports and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ports, "auto serves while following"
        assert readyz(ports[0])[0] == 503
        status_file = tmp_path / "status.json"
        deadline = time.monotonic() + 10  # the status is written at most once a second
        while '"trial_found": false' not in status_file.read_text():
            assert time.monotonic() < deadline, status_file.read_text()
            time.sleep(0.05)
        assert "waiting for the trial at" in status_file.read_text()
        write_trial(trial, steps=3, make_batch=scores_batch([1, 1]), end=False)
        deadline = time.monotonic() + 10
        while readyz(ports[0])[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert readyz(ports[0]) == (200, "ready\n")
    finally:
        stop.set("test done")
        runner.join(15)
    assert not runner.is_alive()


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
