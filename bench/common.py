"""What every benchmark module shares: paths, per-step statistics, peak RSS, result lines.

Each measurement runs in a process of its own, so its peak RSS (``ru_maxrss``) is its own and
imports from one system (smdebug, boto3) never sit in another's memory. A measurement prints
one line ``BENCH-RESULT {json}`` on stdout; :func:`run_module` starts it and reads that line.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devtools.launch import live_writer_command

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
TRIALS = OUT / "trials"
SCRATCH = OUT / "scratch"
RESULT_PREFIX = "BENCH-RESULT "

SMDEBUG_ENV = {
    "SMDEBUG_LOG_LEVEL": "error",
    # smdebug sleeps this many seconds before its final refresh once it sees the end marker;
    # 0 so that its figures count work, not a fixed sleep (1 s by default).
    "SMDEBUG_TRAINING_END_DELAY_REFRESH": "0",
}


class BenchError(RuntimeError):
    """A measurement failed; the message carries its command and the end of its stderr."""


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux reports ``ru_maxrss`` in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def per_step_stats(durations: Sequence[float]) -> dict[str, float | None]:
    """Mean, median, p95 and the cost of the first and the last 10% of steps, in microseconds.

    ``last_over_first`` compares the means of the two windows (whole windows, so periodic
    costs such as a status write once a second are counted where they fall).
    """
    if not durations:
        return {}
    values = sorted(durations)
    count = len(durations)
    window = max(1, count // 10)
    first = statistics.fmean(durations[:window])
    last = statistics.fmean(durations[-window:])
    return {
        "step_mean_us": round(statistics.fmean(durations) * 1e6, 1),
        "step_median_us": round(statistics.median(values) * 1e6, 1),
        "step_p95_us": round(values[min(count - 1, math.ceil(0.95 * count) - 1)] * 1e6, 1),
        "first10_us": round(first * 1e6, 1),
        "last10_us": round(last * 1e6, 1),
        "last_over_first": round(last / first, 3) if first > 0 else None,
    }


def percentiles_ms(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p95 and max of ``values`` (seconds) in milliseconds."""
    if not values:
        return {"p50_ms": None, "p95_ms": None, "max_ms": None, "n": 0}
    ordered = sorted(values)
    count = len(ordered)
    return {
        "p50_ms": round(statistics.median(ordered) * 1e3, 1),
        "p95_ms": round(ordered[min(count - 1, math.ceil(0.95 * count) - 1)] * 1e3, 1),
        "max_ms": round(ordered[-1] * 1e3, 1),
        "n": count,
    }


def emit(result: Mapping[str, Any]) -> None:
    """Print the result line the orchestrator reads."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a measurement: this one, the repository on the path, ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONHASHSEED", "0")
    env.update(extra or {})
    return env


def module_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def writer_command(
    trial: Path,
    truth: Path,
    steps: int,
    interval: float,
    workers: int,
    *,
    s3_uri: str | None = None,
    s3_endpoint_url: str | None = None,
) -> list[str]:
    """The stand-in training job with the benchmark's batch: 256 rows, 10 classes, 10:1
    imbalance, so that every scenario reads the same shape of step."""
    return live_writer_command(
        trial,
        truth,
        steps=steps,
        interval=interval,
        workers=workers,
        batch=256,
        classes=10,
        imbalance=10,
        s3_uri=s3_uri,
        s3_endpoint_url=s3_endpoint_url,
    )


def run_module(
    module: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 7200.0,
) -> dict[str, Any]:
    """Run ``python -m module args`` in its own process and return its result line.

    ``wall_s`` (the process's whole life, start-up included) is added to the result.
    """
    command = module_command(module, *args)
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            cwd=REPO,
            env=python_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"{' '.join(command)} took more than {timeout:g} s") from error
    wall = time.perf_counter() - started
    result = parse_result(done.stdout)
    if done.returncode != 0 or result is None:
        tail = "\n".join(done.stderr.strip().splitlines()[-25:])
        raise BenchError(f"{' '.join(command)} exited {done.returncode}:\n{tail}")
    result["wall_s"] = round(wall, 3)
    return result


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The last result line in a measurement's stdout, or None."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            parsed: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return parsed
    return None


def counts_match(result: Mapping[str, Any], truth: Mapping[str, Any]) -> bool:
    """Whether a measurement counted exactly the trial's true per-class figures."""
    return bool(
        list(result.get("samples", [])) == list(truth["samples"])
        and list(result.get("mispredicted", [])) == list(truth["mispredicted"])
    )


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
