"""What the log says while an evaluation runs, so that its first hour is never silent or flooded.

Three voices, each bounded: ``SkipLog`` says why batches are skipped, the first time of each
reason at once and then at most one line per interval, with the counts exact at the step it
names (a chunk of steps is counted before its steps are logged, so the rule's running totals
would be ahead); ``ProgressLog`` says where a following evaluation stands every
``progress_interval`` seconds, and on a terminal redraws one line on stderr while a long replay
runs; ``WaitingLog`` says, at once and then every minute, that the trial does not exist yet.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TextIO

from evaluator.core import ClassImbalanceRule, imbalance_ratio

log = logging.getLogger("classimbalance.evaluation")

SKIP_INTERVAL = 30.0
"""Seconds between skipped-batch warnings of reasons already reported."""
WAITING_INTERVAL = 60.0
"""Seconds between "waiting for the trial" lines."""
REDRAW_INTERVAL = 0.2
"""Seconds between redraws of the terminal's progress line."""

Clock = Callable[[], float]


class SkipLog:
    """The skipped-batch warnings: a new reason at once, then one line per ``interval`` at
    most, each with the exact counts by reason up to its step."""

    def __init__(
        self,
        counts: Counter[str],
        *,
        interval: float = SKIP_INTERVAL,
        clock: Clock = time.monotonic,
    ) -> None:
        self._counts = Counter(counts)  # from a checkpoint, the counts already reported
        self._interval = interval
        self._clock = clock
        self._last = -float("inf")
        self._quiet = 0
        """Batches skipped since the last line."""

    def step(self, step: int, reasons: Sequence[str]) -> None:
        if not reasons:
            return
        new = [reason for reason in reasons if reason not in self._counts]
        self._counts.update(reasons)
        self._quiet += len(reasons)
        now = self._clock()
        if not new and now - self._last < self._interval:
            return
        self._last = now
        quiet, self._quiet = self._quiet, 0
        counts = dict(self._counts)
        log.warning(
            "step %d: %d batch(es) skipped%s; skipped so far by reason: %s",
            step,
            len(reasons),
            f" ({quiet} since the last message)" if quiet > len(reasons) else "",
            counts,
            extra={"event": "step_skipped", "step": step, "reasons": counts},
        )


class ProgressLog:
    """Where the evaluation stands: a log line every ``interval`` seconds while following
    (``interval`` 0: never), and a line redrawn on ``stream`` when it is a terminal (a long
    replay), cleared before any other output."""

    def __init__(
        self,
        interval: float,
        *,
        redraw: bool = True,
        stream: TextIO | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._last_line = clock()
        self._stream = stream if stream is not None else sys.stderr
        self._terminal = redraw and self._stream.isatty()
        """Redrawn only for text logs on a terminal: a JSON log stays JSON lines."""
        self._last_redraw = -float("inf")
        self._drawn = False

    def evaluated(self, rule: ClassImbalanceRule) -> None:
        """After steps were evaluated: redraw the terminal's line, at most 5 times a second."""
        if not self._terminal:
            return
        now = self._clock()
        if now - self._last_redraw < REDRAW_INTERVAL:
            return
        self._last_redraw = now
        self._stream.write(f"\r\x1b[K{_figures(rule)}")
        self._stream.flush()
        self._drawn = True

    def clear(self) -> None:
        """Remove the terminal's line (before the summary, or when following starts to wait)."""
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._drawn = False

    def waiting(self, rule: ClassImbalanceRule) -> None:
        """While following, between looks at the trial: the progress line when it is due."""
        self.clear()
        now = self._clock()
        if self._interval <= 0 or now - self._last_line < self._interval:
            return
        self._last_line = now
        log.info(
            "following: %s",
            _figures(rule),
            extra={
                "event": "progress",
                "last_step": rule.last_step,
                "steps_evaluated": rule.steps_evaluated,
                "samples": rule.samples,
            },
        )


def _figures(rule: ClassImbalanceRule) -> str:
    """Step, labels, ratio and the verdict so far, in one line."""
    _, samples, _ = rule.combined_columns()  # the classes seen: never spread out
    found = imbalance_ratio(samples)
    ratio = "-" if found is None else f"{found[0]:.4g}"
    params = rule.params
    if rule.issue_step is not None:
        verdict = f"IssuesFound (first at step {rule.issue_step})"
    elif rule.samples < params.samples:
        verdict = f"checks not run yet (samples={params.samples})"
    else:
        verdict = "no issue so far"
    last = "-" if rule.last_step is None else str(rule.last_step)
    return (
        f"step {last}, {rule.steps_evaluated} steps, {rule.samples} labels, imbalance ratio "
        f"{ratio} (threshold_imbalance {params.threshold_imbalance:g}); {verdict}"
    )


class WaitingLog:
    """ "waiting for the trial at PATH", at once and then every ``interval`` seconds."""

    def __init__(
        self,
        trial: str,
        idle_timeout: float | None,
        *,
        interval: float = WAITING_INTERVAL,
        clock: Clock = time.monotonic,
    ) -> None:
        self._trial = trial
        self._idle_timeout = idle_timeout
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._last = -float("inf")

    def missing(self) -> None:
        now = self._clock()
        if now - self._last < self._interval:
            return
        self._last = now
        waited = now - self._started
        limit = (
            f"gives up after idle_timeout={self._idle_timeout:g} s without it"
            if self._idle_timeout is not None
            else "waits until stopped (idle_timeout none)"
        )
        log.info(
            "waiting for the trial at %s: it does not exist yet (waited %.0f s; %s); check "
            "--trial / base_trial if training should have started",
            self._trial,
            waited,
            limit,
            extra={"event": "waiting_for_trial", "trial": self._trial, "waited": round(waited)},
        )

    def found(self) -> None:
        """The trial exists: said once, when a "waiting" line was said before."""
        if self._last > -float("inf"):
            self._last = -float("inf")
            log.info(
                "the trial at %s exists now; evaluating it",
                self._trial,
                extra={"event": "trial_found", "trial": self._trial},
            )
