"""smdebug's rule loop: a ClassImbalance Rule driven by ``invoke_rule``, as the rule container runs.

The Rule declares its required tensors (the labels and predictions of the step, by regex), so
``Rule.invoke`` does what the managed container does per step: ``wait_for_steps`` (which
refreshes the trial while training has not ended), ``req_tensors.fetch()``, ``invoke_at_step``.
``invoke_at_step`` reads every worker's labels and predictions (``tensor.value(step, worker=w)``;
without ``worker`` smdebug returns only the first worker's), takes the argmax, adds per-class
counts and runs the two checks with the rule's default parameters. It keeps going after an
issue, as the evaluator does by default, so both count every step.

Modes:

- ``replay``: a finished trial (end marker present), from ``create_trial`` to ``NoMoreData``.
- ``follow``: the trial while it is being written. The trial starts with only its collections
  files; before each ``Rule.invoke(step)`` the step's files are hard-linked into place (event
  file, then index file, per worker; untimed), so every step is found on its first refresh
  and nothing sleeps. The per-step cost is ``Rule.invoke``: the refresh of a trial without the
  end marker, the reads and the maths, with the trial holding the steps written so far.
- ``live``: someone else writes (a writer process, S3); runs until ``NoMoreData`` and records
  when each step was evaluated, for notice latency.

    python -m bench.smdebug_loop --trial bench/out/trials/s1000-w1-c10-b256 --mode replay
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import SCRATCH, SMDEBUG_ENV, emit, peak_rss_mb, per_step_stats

for _name, _value in SMDEBUG_ENV.items():
    os.environ.setdefault(_name, _value)

import numpy as np  # noqa: E402
from smdebug.exceptions import NoMoreData  # noqa: E402
from smdebug.rules.rule import Rule  # noqa: E402
from smdebug.rules.rule_invoker import invoke_rule  # noqa: E402
from smdebug.trials import create_trial  # noqa: E402

from bench.trials import Stager, TrialSpec, load_meta  # noqa: E402


class ClassImbalanceReference(Rule):  # type: ignore[misc]  # smdebug is untyped
    """The ClassImbalance rule's documented behaviour on smdebug's Rule API, all workers."""

    def __init__(
        self,
        base_trial: Any,
        classes: int,
        *,
        threshold_imbalance: float = 10.0,
        threshold_misprediction: float = 0.7,
        samples: int = 500,
        labels_regex: str = ".*labels",
        predictions_regex: str = ".*predictions",
        declare_required: bool = True,
        before_invoke: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(base_trial, action_str="")
        self.samples = np.zeros(classes, dtype=np.int64)
        self.mispredicted = np.zeros(classes, dtype=np.int64)
        self.threshold_imbalance = threshold_imbalance
        self.threshold_misprediction = threshold_misprediction
        self.samples_required = samples
        self.labels_regex = labels_regex
        self.predictions_regex = predictions_regex
        self.declare_required = declare_required
        self.before_invoke = before_invoke
        self.issue_step: int | None = None
        self.invoke_seconds: list[float] = []
        """Per ``Rule.invoke``: wait/refresh, required tensors, ``invoke_at_step``."""
        self.evaluated: list[tuple[int, float]] = []
        """(step, time.time()) as each step is evaluated."""

    def invoke(self, step: int) -> Any:
        if self.before_invoke is not None:
            self.before_invoke(step)  # untimed: the writer's part
        started = time.perf_counter()
        try:
            return super().invoke(step)
        finally:
            self.invoke_seconds.append(time.perf_counter() - started)

    def set_required_tensors(self, step: int) -> None:
        if self.declare_required:
            for regex in (self.labels_regex, self.predictions_regex):
                self.req_tensors.add(regex, steps=[step], should_match_regex=True)

    def invoke_at_step(self, step: int) -> bool:
        self.evaluated.append((step, time.time()))
        trial = self.base_trial
        label_names = sorted(trial.tensor_names(regex=self.labels_regex))
        prediction_names = sorted(trial.tensor_names(regex=self.predictions_regex))
        for label_name, prediction_name in zip(label_names, prediction_names, strict=False):
            labels_tensor = trial.tensor(label_name)
            predictions_tensor = trial.tensor(prediction_name)
            for worker in labels_tensor.workers(step):
                labels = np.asarray(labels_tensor.value(step, worker=worker)).reshape(-1)
                scores = np.asarray(predictions_tensor.value(step, worker=worker))
                self._add(labels.astype(np.int64, copy=False), scores.argmax(axis=-1))
        if self._issue() and self.issue_step is None:
            self.issue_step = step
        return False  # keep going: every step is counted, as the evaluator does by default

    def _add(self, labels: Any, predicted: Any) -> None:
        classes = self.samples.size
        self.samples += np.bincount(labels, minlength=classes)[:classes]
        wrong = labels[predicted != labels]
        self.mispredicted += np.bincount(wrong, minlength=classes)[:classes]

    def _issue(self) -> bool:
        if int(self.samples.sum()) < self.samples_required:
            return False
        seen = self.samples[self.samples > 0]
        imbalanced = seen.size > 0 and seen.max() / seen.min() > self.threshold_imbalance
        fractions = np.divide(
            self.mispredicted,
            self.samples,
            out=np.zeros(self.samples.size),
            where=self.samples > 0,
        )
        return bool(imbalanced or (fractions > self.threshold_misprediction).any())


def run(args: argparse.Namespace) -> dict[str, Any]:
    meta = (
        load_meta(Path(args.source or args.trial)) if not args.trial.startswith("s3://") else None
    )
    classes = args.classes or (meta["spec"]["classes"] if meta else 10)
    stager: Stager | None = None
    location = args.trial
    if args.mode == "follow":
        assert meta is not None, "follow needs the cached trial (--trial) to stage from"
        spec = TrialSpec(**meta["spec"])
        target = SCRATCH / f"smdebug-follow-{spec.key}-{os.getpid()}"
        stager = Stager(Path(args.trial), target, spec)
        location = str(target)
    started = time.perf_counter()
    trial = create_trial(location)
    open_s = time.perf_counter() - started
    rule = ClassImbalanceReference(
        trial,
        classes,
        declare_required=not args.no_declare,
        before_invoke=stager.stage if stager is not None else None,
    )
    loop_started = time.perf_counter()
    ended_by = "end_step"
    try:
        end_step = stager.spec.steps if stager is not None else None
        invoke_rule(rule, start_step=0, end_step=end_step, raise_eval_cond=False)
    except NoMoreData:
        ended_by = "NoMoreData"
    loop_s = time.perf_counter() - loop_started
    steps = len(rule.evaluated)
    per_step = rule.invoke_seconds[:steps]  # the last invoke of a replay only raises NoMoreData
    # Following: the sum of the step costs (the staging between invokes is the writer's work);
    # replay: everything from create_trial to NoMoreData.
    busy = sum(per_step) if args.mode == "follow" else open_s + loop_s
    if stager is not None:
        stager.remove()
    result: dict[str, Any] = {
        "system": "smdebug",
        "mode": args.mode,
        "trial": args.trial,
        "declare_required": not args.no_declare,
        "steps": steps,
        "open_s": round(open_s, 4),
        "loop_s": round(loop_s, 4),
        "busy_s": round(busy, 4),
        "us_per_step": round(busy / steps * 1e6, 1) if steps else None,
        "steps_per_s": round(steps / busy, 1) if busy > 0 else None,
        "slept_invokes": sum(1 for s in per_step if s >= 1.9),
        "ended_by": ended_by,
        "issue_step": rule.issue_step,
        "samples": rule.samples.tolist(),
        "mispredicted": rule.mispredicted.tolist(),
        "rss_mb": peak_rss_mb(),
        **per_step_stats(per_step),
    }
    if args.mode == "live":
        result["evaluated_at"] = rule.evaluated
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trial", required=True, help="a cached trial folder, or s3://...")
    parser.add_argument("--mode", choices=["replay", "follow", "live"], default="replay")
    parser.add_argument("--source", default=None, help="live: the cached trial, for metadata")
    parser.add_argument("--classes", type=int, default=None)
    parser.add_argument("--no-declare", action="store_true", help="do not declare required tensors")
    emit(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
