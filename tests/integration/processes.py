"""Processes for the live tests: the stand-in training job, the evaluator, scraping."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from devtools.launch import live_writer_command, sidecar_command

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_writer(
    trial: Path,
    truth: Path,
    *,
    steps: int,
    interval: float,
    workers: int,
    end: bool = True,
    imbalance: float = 20.0,
    s3_uri: str | None = None,
    s3_endpoint_url: str | None = None,
    rank: int | None = None,
    last_step_delay: float | None = None,
    stop_before: int | None = None,
    stop_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    command = live_writer_command(
        trial,
        truth,
        steps=steps,
        interval=interval,
        workers=workers,
        batch=32,
        classes=5,
        imbalance=imbalance,
        no_end=not end,
        s3_uri=s3_uri,
        s3_endpoint_url=s3_endpoint_url,
        rank=rank,
        last_step_delay=last_step_delay,
        stop_before=stop_before,
        stop_file=stop_file,
    )
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)


def start_evaluator(
    trial: Path | str, status_file: Path, port: int, *flags: str
) -> subprocess.Popen[bytes]:
    command = sidecar_command(
        trial,
        status_file,
        port,
        "--poll-interval",
        "0.2",
        "--status-interval",
        "0.1",
        "--idle-timeout",
        "60",
        "--log-format",
        "json",
        *flags,
    )
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(10)


def terminate_process(process: subprocess.Popen[bytes], grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds: a server gets to shut down cleanly."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {seconds} s")


@dataclass(frozen=True)
class Scrape:
    """The figures a test compares, from one scrape of /metrics."""

    samples_total: int
    class_samples: dict[str, int]
    """Per class, summed over modes (the writer uses TRAIN only)."""


def scrape(port: int) -> Scrape | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    total = 0
    classes: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "classimbalance_samples_total":
                total = int(sample.value)
            elif sample.name == "classimbalance_class_samples":
                name = sample.labels["class"]
                classes[name] = classes.get(name, 0) + int(sample.value)
    return Scrape(total, classes)


def read_truth(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def prefix_sums(truth: list[dict[str, Any]]) -> dict[int, list[int]]:
    """Total labels after k steps -> per-class samples after k steps (k = 0..len)."""
    sums: dict[int, list[int]] = {0: [0] * len(truth[0]["samples"])}
    running = [0] * len(truth[0]["samples"])
    for entry in truth:
        running = [a + b for a, b in zip(running, entry["samples"], strict=True)]
        sums[sum(running)] = list(running)
    return sums
