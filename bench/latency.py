"""Notice latency: from a step's files landing to the metrics (or smdebug's rule) reflecting it.

A stand-in training job (``devtools.live_writer``, smdebug's writer) appends steps at a fixed
interval and logs ``time.time()`` right after the step's last index file is in place. The
evaluator runs as the command users run (``python -m container``, metrics on 127.0.0.1, the
default poll interval unless told otherwise) and a scraper reads ``/metrics`` every few
milliseconds, noting when ``classimbalance_last_evaluated_step`` first reaches each step. The
latency of a step is that scrape's answer time minus the writer's time: conservative by at
most one scrape period plus one scrape. For comparison smdebug's rule loop follows the same
kind of run and notes when ``invoke_at_step`` starts for each step.

    python -m bench.latency --workers 1 --steps 200 --interval 0.05
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    SCRATCH,
    SMDEBUG_ENV,
    emit,
    module_command,
    parse_result,
    percentiles_ms,
    python_env,
    writer_command,
)
from devtools.launch import sidecar_command

LAST_STEP = re.compile(rb"^classimbalance_last_evaluated_step (\S+)$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def written_times(truth: Path) -> dict[int, float]:
    """Step -> when its last index file was in place (the writer's clock, time.time())."""
    lines = truth.read_text().splitlines()
    return {int(e["step"]): float(e["time"]) for e in map(json.loads, filter(None, lines))}


def truth_totals(truth: Path) -> dict[str, list[int]]:
    """The per-class figures a live writer wrote, summed over its steps."""
    samples: list[int] = []
    wrong: list[int] = []
    for line in filter(None, truth.read_text().splitlines()):
        entry = json.loads(line)
        samples = [
            a + b
            for a, b in zip(samples or [0] * len(entry["samples"]), entry["samples"], strict=True)
        ]
        wrong = [
            a + b
            for a, b in zip(
                wrong or [0] * len(entry["mispredicted"]), entry["mispredicted"], strict=True
            )
        ]
    return {"samples": samples, "mispredicted": wrong}


def scrape_last_step(port: int) -> tuple[float, float] | None:
    """(answer time, classimbalance_last_evaluated_step), or None before it exists."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            body = answer.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    now = time.time()
    match = LAST_STEP.search(body)
    return (now, float(match.group(1))) if match else None


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def evaluator_latency(
    workers: int, steps: int, interval: float, poll_interval: float, scrape_period: float
) -> dict[str, Any]:
    work = SCRATCH / f"latency-evaluator-w{workers}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    trial, truth = work / "trial", work / "truth.jsonl"
    port = free_port()
    command = sidecar_command(
        trial,
        work / "status.json",
        port,
        "--poll-interval",
        str(poll_interval),
        "--idle-timeout",
        "120",
        "--log-level",
        "WARNING",
    )
    with open(work / "evaluator.log", "wb") as log:
        evaluator = subprocess.Popen(command, cwd=REPO, env=python_env(), stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while not healthy(port):
                if evaluator.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the evaluator did not start; see {work / 'evaluator.log'}")
                time.sleep(0.02)
            writer = subprocess.Popen(
                writer_command(trial, truth, steps, interval, workers),
                cwd=REPO,
                env=python_env(),
                stdout=subprocess.DEVNULL,
            )
            seen: list[tuple[float, float]] = []
            scrapes = 0
            deadline = time.monotonic() + steps * (interval + 0.5) + 120
            while evaluator.poll() is None and time.monotonic() < deadline:
                answer = scrape_last_step(port)
                scrapes += 1
                if answer is not None and (not seen or answer[1] != seen[-1][1]):
                    seen.append(answer)
                if writer.poll() is not None and seen and seen[-1][1] >= steps - 1:
                    break  # every step reflected (the evaluator may linger after its verdict)
                time.sleep(scrape_period)
            writer.wait(60)
            try:
                evaluator.wait(30)
            except subprocess.TimeoutExpired:
                evaluator.terminate()
                evaluator.wait(30)
        finally:
            for process in (evaluator,):
                if process.poll() is None:
                    process.kill()
                    process.wait(10)
    written = written_times(truth)
    latencies = []
    for step, at in sorted(written.items()):
        reflected = next((t for t, value in seen if value >= step), None)
        if reflected is not None:
            latencies.append(reflected - at)
    status = json.loads((work / "status.json").read_text())
    result = {
        "system": "evaluator",
        "workers": workers,
        "steps": steps,
        "writer_interval_s": interval,
        "poll_interval_s": poll_interval,
        "scrape_period_s": scrape_period,
        "scrapes": scrapes,
        "reflected": len(latencies),
        "exit_code": evaluator.returncode,
        "counts_ok": [int(status["classes"].get(str(c), {}).get("samples", 0)) for c in range(10)]
        == truth_totals(truth)["samples"],
        **percentiles_ms(latencies),
        "per_step_ms": [round(x * 1e3, 1) for x in latencies],
    }
    shutil.rmtree(work, ignore_errors=True)
    return result


def smdebug_latency(workers: int, steps: int, interval: float) -> dict[str, Any]:
    work = SCRATCH / f"latency-smdebug-w{workers}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    trial, truth = work / "trial", work / "truth.jsonl"
    rule = subprocess.Popen(
        module_command(
            "bench.smdebug_loop", "--trial", str(trial), "--mode", "live", "--classes", "10"
        ),
        cwd=REPO,
        env=python_env(SMDEBUG_ENV),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    subprocess.run(
        writer_command(trial, truth, steps, interval, workers),
        cwd=REPO,
        env=python_env(),
        stdout=subprocess.DEVNULL,
        check=True,
    )
    stdout, _ = rule.communicate(timeout=steps * 3 + 300)
    loop = parse_result(stdout) or {}
    written = written_times(truth)
    latencies = [
        at - written[int(step)] for step, at in loop.get("evaluated_at", []) if int(step) in written
    ]
    result = {
        "system": "smdebug",
        "workers": workers,
        "steps": steps,
        "writer_interval_s": interval,
        "poll_interval_s": 2.0,  # smdebug's wait_for_steps sleeps 2 s when a step is not there
        "reflected": len(latencies),
        "counts_ok": loop.get("samples") == truth_totals(truth)["samples"],
        **percentiles_ms(latencies),
    }
    shutil.rmtree(work, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.05, help="writer: s between steps")
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--scrape-period", type=float, default=0.02)
    parser.add_argument("--no-smdebug", action="store_true")
    args = parser.parse_args(argv)
    results = [
        evaluator_latency(
            args.workers, args.steps, args.interval, args.poll_interval, args.scrape_period
        )
    ]
    if not args.no_smdebug:
        results.append(smdebug_latency(args.workers, args.steps, args.interval))
    emit({"latency": results})


if __name__ == "__main__":
    main()
