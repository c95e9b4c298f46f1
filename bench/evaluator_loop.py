"""The evaluator on a trial: ``container.app.run``, the loop the sidecar runs, in one process.

Everything the command does per step is measured (reader, rule, snapshot for the metrics, the
throttled status file, the metrics server on 127.0.0.1), with the native reader from
``open_trial``. A thin wrapper around the reader takes the timings:

- ``replay``: a finished trial; the per-step costs are the gaps between successive ``read``
  calls (the first includes start-up and the one poll that finds every step).
- ``follow``: the trial while it is being written, lock-step as in ``bench.smdebug_loop``:
  as each ``poll`` returns, the next step's files appear (untimed), so every poll finds exactly
  one new step, the most polls per step a live run can make, and the loop's wait ends at once
  (as with a writer that keeps up). The time from the end of one staging to the next poll is
  one step's cost: the rule and publishing of the step just returned, the wait, the next
  poll's listing and loading (the costs of consecutive steps, so the sum is exact).
  After the last step the end marker appears and the loop ends as it does in production.
- ``live``: someone else writes (a writer process, S3): plain following until the end marker.

    python -m bench.evaluator_loop --trial bench/out/trials/s1000-w1-c10-b256 --mode replay
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import SCRATCH, emit, peak_rss_mb, per_step_stats
from bench.trials import Stager, TrialSpec, load_meta, trial_classes
from container.app import Runtime, run
from container.config import Settings
from evaluator.core import RuleParameters
from evaluator.trial.interface import StepRef, TrialReader, WorkerTensors
from evaluator.trial.open import open_trial


class TimedReader:
    """A ``TrialReader`` that records when each step is read and stages steps in follow mode."""

    def __init__(self, inner: TrialReader, stager: Stager | None = None) -> None:
        self.inner = inner
        self.stager = stager
        self.read_marks: list[float] = []
        self.step_costs: list[float] = []
        """Follow mode: per step, from the end of its staging to the next poll."""
        self.polls = 0
        self._next_step = 0
        self._staged_at: float | None = None
        self._ended = False

    def __getattr__(self, name: str) -> Any:  # problems(), local_path: the rest of the reader
        return getattr(self.inner, name)

    @property
    def location(self) -> str:
        return self.inner.location

    def exists(self) -> bool:
        return self.inner.exists()

    def poll(self) -> Sequence[StepRef]:
        self.polls += 1
        if self.stager is None:
            return self.inner.poll()
        now = time.perf_counter()
        if self._staged_at is None:
            self._stage_next()  # the first step is there before the first look
        elif len(self.step_costs) < self.stager.spec.steps:
            self.step_costs.append(now - self._staged_at)
        refs = self.inner.poll()
        # The next step lands as soon as this look is over, as with a writer that keeps up:
        # its files are in place (and their inotify events queued) before the loop waits.
        self._stage_next()
        self._staged_at = time.perf_counter()
        return refs

    def _stage_next(self) -> None:
        assert self.stager is not None
        if self._next_step < self.stager.spec.steps:
            self.stager.stage(self._next_step)
            self._next_step += 1
        elif not self._ended:
            self.stager.end()
            self._ended = True

    @property
    def backlog(self) -> bool:
        return self.inner.backlog

    def training_ended(self) -> bool:
        return self.inner.training_ended()

    def read(self, ref: StepRef, wanted: Callable[[str], bool]) -> list[WorkerTensors]:
        self.read_marks.append(time.perf_counter())
        return self.inner.read(ref, wanted)

    def close(self) -> None:
        self.inner.close()


def open_reader(location: str, s3_endpoint_url: str | None) -> TrialReader:
    """``open_trial`` as the command calls it, with the S3 endpoint when there is one."""
    if location.startswith("s3://"):
        if "s3_endpoint_url" not in inspect.signature(open_trial).parameters:
            raise SystemExit("not available: open_trial has no S3 support in this checkout")
        try:
            return open_trial(location, s3_endpoint_url=s3_endpoint_url)
        except ImportError as error:
            raise SystemExit(
                f"not available: the S3 reader cannot be imported ({error})"
            ) from error
    return open_trial(location)


def run_once(args: argparse.Namespace) -> dict[str, Any]:
    source = None if args.trial.startswith("s3://") else Path(args.trial)
    described = Path(args.source) if args.source else source
    meta = load_meta(described) if described is not None else None
    classes = trial_classes(meta, args.classes)
    work = SCRATCH / f"evaluator-{args.mode}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    stager: Stager | None = None
    location = args.trial
    if args.mode == "follow":
        assert meta is not None, "follow needs a cached trial"
        assert source is not None, "follow needs a local trial"
        stager = Stager(source, work / "trial", TrialSpec(**meta["spec"]))
        location = str(stager.target)
    settings = Settings.of(
        base_trial=location,
        rule=RuleParameters(argmax=True),
        status_file=str(work / "status.json"),
        metrics_address="127.0.0.1",
        metrics_port=0,
        poll_interval=args.poll_interval,
        idle_timeout=args.idle_timeout,
        s3_endpoint_url=args.s3_endpoint,
    )
    readers: list[TimedReader] = []

    def factory(chosen: Settings) -> TrialReader:
        reader = TimedReader(open_reader(chosen.trial.base_trial, args.s3_endpoint), stager)
        readers.append(reader)
        return reader

    started = time.perf_counter()
    outcome = run(settings, Runtime(open_reader=factory, managed_root=str(work / "no-managed")))
    total = time.perf_counter() - started
    reader = readers[0]
    document = outcome.document
    steps = int(document.get("steps_evaluated") or 0)
    classes_seen = document.get("classes") or {}
    samples = [int(classes_seen.get(str(c), {}).get("samples", 0)) for c in range(classes)]
    wrong = [int(classes_seen.get(str(c), {}).get("mispredicted", 0)) for c in range(classes)]
    if stager is not None:
        per_step = reader.step_costs
        busy = sum(per_step)  # the staging before each poll is the writer's work
    else:
        marks = [started, *reader.read_marks, started + total]
        per_step = [b - a for a, b in itertools.pairwise(marks)][: max(steps, 0)]
        busy = total
    shutil.rmtree(work, ignore_errors=True)
    return {
        "system": "evaluator",
        "mode": args.mode,
        "trial": args.trial,
        "status": str(outcome.status),
        "ended_by": document.get("ended_by"),
        "error": document.get("error"),
        "steps": steps,
        "polls": reader.polls,
        "busy_s": round(busy, 4),
        "total_s": round(total, 4),
        "us_per_step": round(busy / steps * 1e6, 1) if steps else None,
        "steps_per_s": round(steps / busy, 1) if busy > 0 else None,
        "issue_step": document.get("issue_step"),
        "samples": samples,
        "mispredicted": wrong,
        "rss_mb": peak_rss_mb(),
        **per_step_stats(per_step),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trial", required=True, help="a cached trial folder, or s3://...")
    parser.add_argument("--mode", choices=["replay", "follow", "live"], default="replay")
    parser.add_argument("--source", default=None, help="the cached trial, for its metadata")
    parser.add_argument("--classes", type=int, default=None)
    parser.add_argument("--s3-endpoint", default=None)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--idle-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    emit(run_once(args))


if __name__ == "__main__":
    main()
