"""The command lines of the stand-in training job (``devtools.live_writer``) and of the evaluator
following it as a sidecar, for the tests and the benchmarks that run them side by side.

A module of its own because ``devtools.live_writer`` imports smdebug (through its writer): a
benchmark measuring a reader's memory must be able to start the job without that import.
"""

from __future__ import annotations

import sys
from pathlib import Path


def live_writer_command(
    out: Path | str,
    truth: Path | str,
    *,
    steps: int | None = None,
    start_step: int | None = None,
    interval: float | None = None,
    batch: int | None = None,
    classes: int | None = None,
    workers: int | None = None,
    imbalance: float | None = None,
    seed: int | None = None,
    no_end: bool = False,
    s3_uri: str | None = None,
    s3_endpoint_url: str | None = None,
    rank: int | None = None,
    last_step_delay: float | None = None,
    stop_before: int | None = None,
    stop_file: Path | str | None = None,
) -> list[str]:
    """``python -m devtools.live_writer ...`` with this interpreter: the job runs in a process of
    its own, so that a reader beside it shares neither its interpreter nor its GIL.

    The arguments are the command line's options, named alike; one left at None keeps the
    command line's default, so that the defaults are stated in one place only.
    """
    command = [sys.executable, "-m", "devtools.live_writer", "--out", str(out)]
    command += ["--truth", str(truth)]
    options: dict[str, object] = {
        "--steps": steps,
        "--start-step": start_step,
        "--interval": interval,
        "--batch": batch,
        "--classes": classes,
        "--workers": workers,
        "--imbalance": imbalance,
        "--seed": seed,
        "--s3-uri": s3_uri,
        "--s3-endpoint-url": s3_endpoint_url,
        "--rank": rank,
        "--last-step-delay": last_step_delay,
        "--stop-before": stop_before,
        "--stop-file": stop_file,
    }
    for flag, value in options.items():
        if value is not None:
            command += [flag, str(value)]
    if no_end:
        command.append("--no-end")
    return command


def sidecar_command(
    trial: Path | str, status_file: Path | str, port: int, *flags: str
) -> list[str]:
    """``python -m container`` following ``trial`` as a sidecar would: argmax on (the stand-in
    job saves scores), metrics on 127.0.0.1 at ``port``; ``flags`` add or override settings
    (a flag given twice takes its last value)."""
    return [
        sys.executable,
        "-m",
        "container",
        "--trial",
        str(trial),
        "--status-file",
        str(status_file),
        "--argmax",
        "true",
        "--metrics-address",
        "127.0.0.1",
        "--metrics-port",
        str(port),
        *flags,
    ]
