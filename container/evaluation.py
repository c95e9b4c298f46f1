"""The evaluation loop: take complete steps from a trial reader and feed them to the rule.

It runs in two shapes over the same step function: evaluate what is there and stop (a saved
trial, ``--once``), or follow a trial that is still being written until training ends, the idle
timeout passes, the first issue is found (when asked to stop there) or a stop is requested.
Clock, sleep and the stop flag are parameters so tests drive the loop exactly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from enum import StrEnum

from evaluator.core import ClassImbalanceRule, WorkerBatch
from evaluator.trial.interface import StepRef, TrialReader

log = logging.getLogger("classimbalance.evaluation")

_NAMES_KEPT = 64  # distinct tensor names remembered for "no tensor matched" messages


class EndReason(StrEnum):
    END_OF_TRAINING = "end_of_training"
    ONCE = "once"
    FIRST_ISSUE = "first_issue"
    IDLE_TIMEOUT = "idle_timeout"
    STOPPED = "stopped"


@dataclass
class FollowOptions:
    """How the loop waits; see the settings for each default."""

    once: bool = False
    poll_interval: float = 1.0
    idle_timeout: float | None = 1800.0
    stop_on_first_issue: bool = False


@dataclass
class Evaluation:
    """One rule evaluation over one trial."""

    reader: TrialReader
    rule: ClassImbalanceRule
    modes: Collection[str] | None = None
    tensor_names_seen: set[str] = field(default_factory=set)
    steps_seen: int = 0
    """Complete steps the reader delivered, selected or not."""

    def evaluate_available(self, stop_on_first_issue: bool = False) -> int:
        """Evaluate every step that is complete now; return how many were evaluated."""
        evaluated = 0
        for ref in self.reader.poll():
            self.steps_seen += 1
            if self._evaluate(ref):
                evaluated += 1
            if stop_on_first_issue and self.rule.issue_step is not None:
                break
        return evaluated

    def _evaluate(self, ref: StepRef) -> bool:
        parts = tuple(p for p in ref.parts if self.modes is None or p.mode in self.modes)
        if not parts:
            return False
        if len(self.tensor_names_seen) < _NAMES_KEPT:
            self.tensor_names_seen.update(ref.tensor_names)
        selected = StepRef(ref.step, parts)
        batches = [
            WorkerBatch(
                source=t.worker,
                mode=t.mode,
                tensors=t.tensors,
                error_reason=t.error_reason,
                error=t.error,
            )
            for t in self.reader.read(selected, self.rule.wants)
        ]
        had_issue = self.rule.issue_step is not None
        result = self.rule.evaluate_step(ref.step, batches)
        if result.skipped_batches:
            log.warning(
                "step %d: %d batch(es) skipped (%s)",
                ref.step,
                result.skipped_batches,
                ", ".join(f"{k}={v}" for k, v in self.rule.skipped_batches.items()),
            )
        for finding in result.new_findings:
            log.warning("step %d: %s check holds: %s", ref.step, finding.check, finding.message)
        if not had_issue and self.rule.issue_step is not None:
            log.warning("issue found at step %d", self.rule.issue_step)
        return True

    def follow(
        self,
        options: FollowOptions,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_progress: Callable[[], object] | None = None,
    ) -> EndReason:
        """Evaluate steps as they become complete until one of the end conditions holds."""
        stop = stop or threading.Event()
        last_progress = clock()
        while not stop.is_set():
            evaluated = self.evaluate_available(options.stop_on_first_issue)
            if evaluated:
                last_progress = clock()
                if on_progress is not None:
                    on_progress()
            if options.stop_on_first_issue and self.rule.issue_step is not None:
                return EndReason.FIRST_ISSUE
            if self.reader.training_ended():
                return EndReason.END_OF_TRAINING
            if options.once:
                return EndReason.ONCE
            idle = clock() - last_progress
            if options.idle_timeout is not None and idle >= options.idle_timeout:
                return EndReason.IDLE_TIMEOUT
            if not evaluated:
                stop.wait(options.poll_interval)
        return EndReason.STOPPED
