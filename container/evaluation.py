"""The evaluation loop: take complete steps from a trial reader and feed them to the rule.

It runs in two shapes over the same step function: evaluate what is there and stop (a saved
trial, ``--once``), or follow a trial that is still being written until training ends, the idle
timeout passes, ``end_step`` is reached, the first issue is found (when asked to stop there) or
a stop is requested. Clock, waits and the stop flag are parameters so tests drive it exactly.

It takes two settings groups: ``trial`` (which steps count) and ``following`` (how to wait, read
again and end). What it has done is offered as a ``Snapshot`` for every output and as a
``Checkpoint`` to resume from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from container.checkpoint import Checkpoint
from container.config import FollowSettings, TrialSettings
from container.progress import ProgressLog, SkipLog, WaitingLog
from container.snapshot import Progress, Snapshot, take_snapshot
from container.status import Status
from container.stopping import StopRequest
from evaluator.core import ClassImbalanceRule, StepResult, WorkerBatch
from evaluator.trial import StepRef, TrialError, TrialIdentity, TrialReader, WorkerTensors

log = logging.getLogger("classimbalance.evaluation")

_NAMES_KEPT = 64
"""Distinct tensor names remembered for the "no tensor matched" message, and sets of names
whose answer is remembered."""
_KEPT_NAMES_CHARS = 16 * 1024
"""Longest name, and most characters of a set of names, remembered: the names come from index
files anyone can write, and real steps save a few names of a few dozen characters each."""
TRANSIENT_READ_ERRORS = frozenset({"missing_event_file", "truncated", "length_mismatch"})
"""Read errors that may clear up: a file still being copied or written."""


class EndReason(StrEnum):
    END_OF_TRAINING = "end_of_training"
    END_STEP = "end_step"
    ONCE = "once"
    FIRST_ISSUE = "first_issue"
    IDLE_TIMEOUT = "idle_timeout"
    STOPPED = "stopped"


@dataclass
class Evaluation:
    """One rule evaluation over one trial."""

    reader: TrialReader
    rule: ClassImbalanceRule
    trial: TrialSettings | None = None
    """Which steps count (``modes``, ``start_step``, ``end_step``); None: every step."""
    following: FollowSettings = field(default_factory=FollowSettings)
    """How ``follow`` waits, reads again and ends."""
    delivered_through: int = -1
    """The last global step the reader delivered and the loop dealt with (evaluated, or passed
    over as out of range or unselected): a checkpoint resumes after it."""
    steps_seen: int = 0
    """Complete steps the reader delivered, selected or not."""
    tensor_names_seen: set[str] = field(default_factory=set)
    _wanted: dict[frozenset[str], bool] = field(default_factory=dict, repr=False)
    """Whether a set of tensor names holds a wanted one, per set seen (bounded)."""
    steps_without_tensors: int = 0
    """Selected steps at which no worker saved a labels or predictions tensor (TF2's tape hook
    ends with a step of only the loss): passed over, neither evaluated nor skipped."""
    end_step_reached: bool = False
    on_step: Callable[[Evaluation, StepResult], object] | None = None
    """Called after each evaluated step, with its result."""
    on_steps: Callable[[Evaluation, Sequence[StepResult]], object] | None = None
    """Called once after each chunk of evaluated steps, with their results (publish,
    checkpoint): the rule counted the whole chunk before, so one call sees what a call per
    step would, at a chunk's cost rather than a step's."""
    on_poll: Callable[[Evaluation], object] | None = None
    """Called after each look at the trial, whether it brought steps or not."""
    resumed_from: tuple[str, TrialIdentity | None] | None = None
    """(checkpoint path, the trial's identity it was saved for) of the checkpoint this
    evaluation resumed, until the trial is known to be that one: nothing is read before."""
    stop: StopRequest | None = None
    last_evaluation_time: float | None = None
    class_names: tuple[str, ...] | None = None
    """A name per class index, carried into every snapshot for the outputs."""
    actions: Callable[[], tuple[dict[str, Any], ...]] = tuple
    """What became of each action (their outcomes as JSON), for snapshots and checkpoints."""
    attached: bool = False
    """Whether the trial was found (it exists) and is being read: /readyz says ready only then."""
    progress: ProgressLog | None = None
    """The progress line while following (and on a terminal); None: the default one."""
    _skips: SkipLog | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.progress is None:
            self.progress = ProgressLog(self.following.progress_interval)
        self._skips = SkipLog(self.rule.skipped_batches)

    @property
    def modes(self) -> Collection[str] | None:
        return None if self.trial is None else self.trial.modes

    @property
    def start_step(self) -> int | None:
        return None if self.trial is None else self.trial.start_step

    @property
    def end_step(self) -> int | None:
        return None if self.trial is None else self.trial.end_step

    def snapshot(self, status: Status | None = None, *, ready: bool | None = None) -> Snapshot:
        """The evaluation as of now, for every output. Without a ``status``, the running one:
        IssuesFound as soon as a check held (evaluation goes on), else InProgress. Ready
        (``/readyz``) unless said otherwise once the trial was found."""
        if status is None:
            issue = self.rule.issue_step is not None
            status = Status.ISSUES_FOUND if issue else Status.IN_PROGRESS
        return take_snapshot(
            self.rule,
            status=str(status),
            trial=self.reader.location if self.trial is None else self.trial.base_trial,
            ready=self.attached if ready is None else ready,
            reader=self.reader.problems(),
            progress=Progress(self.steps_seen, self.last_evaluation_time, self.attached),
            class_names=self.class_names,
            actions=self.actions(),
        )

    def checkpoint(self) -> Checkpoint:
        """What a restart resumes from: the counts, the last step dealt with, the trial (the
        saved one while the trial at the path is not known to be it yet)."""
        identity = self.resumed_from[1] if self.resumed_from else self.reader.identity()
        return Checkpoint(
            self.delivered_through,
            self.rule.to_state(),
            self.steps_seen,
            identity,
            self.actions(),
        )

    def _resumed_trial_confirmed(self) -> bool:
        """Whether steps may be read: True unless this evaluation resumed a checkpoint and the
        trial at the path is not known yet to be its trial (nothing is polled until it is, so no
        step is handed over and left uncounted); raises when it is another trial."""
        if self.resumed_from is None:
            return True
        path, saved = self.resumed_from
        if saved is None:
            self.resumed_from = None  # an older checkpoint: nothing to compare
            return True
        same = self.reader.same_trial(saved)
        if same is None:
            return False
        self.resumed_from = None
        if not same:
            raise TrialError(
                f"checkpoint {path} was saved for another trial at {self.reader.location}: the "
                f"trial there now has other content (the first event file or collections file "
                f"the checkpoint was saved with differs or is gone; was it deleted and written "
                f"again?), so its counts cannot be "
                f"combined with this trial's; delete the checkpoint to evaluate this trial from "
                f"its start, or set checkpoint_file to another path"
            )
        return True

    def evaluate_available(self, stop_on_first_issue: bool = False) -> int:
        """Evaluate every step that is complete now; return how many were evaluated.

        Steps are read one by one but counted in chunks (``ClassImbalanceRule.evaluate_steps``):
        a replay hands over thousands at once, a live trial one or two per poll.
        """
        evaluated = 0
        chunk = _Chunk()
        if not self.attached:  # one look until found: a sidecar may start before training
            self.attached = self.reader.exists()
        if not self._resumed_trial_confirmed():
            return 0
        refs = self.reader.poll()
        for ref in refs:
            if ref.step <= self.delivered_through:
                continue  # evaluated before a restart: never count a step twice
            if self.end_step is not None and ref.step >= self.end_step:
                self.end_step_reached = True
                break
            self.steps_seen += 1
            chunk.add(ref.step, self._batches(ref))
            if chunk.full:
                evaluated += self._flush(chunk, stop_on_first_issue)
                chunk = _Chunk()
                if (stop_on_first_issue and self.rule.issue_step is not None) or self._stopping():
                    return evaluated
        return evaluated + self._flush(chunk, stop_on_first_issue)

    def _stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _remember(self, names: frozenset[str]) -> None:
        """Keep a few of the trial's names for messages, never memory that follows them."""
        for name in names:
            if len(self.tensor_names_seen) >= _NAMES_KEPT:
                return
            if len(name) <= _KEPT_NAMES_CHARS:
                self.tensor_names_seen.add(name)

    def _batches(self, ref: StepRef) -> list[WorkerBatch] | None:
        """The step's worker batches, or None when its mode or step is not selected."""
        if self.start_step is not None and ref.step < self.start_step:
            return None
        modes = self.modes
        parts = ref.parts if modes is None else tuple(p for p in ref.parts if p.mode in modes)
        if not parts:
            return None
        names = frozenset(name for part in parts for name in part.tensor_names)
        wanted = self._wanted.get(names)
        if wanted is None:
            # A trial saves the same few names at nearly every step: decide each set once.
            self._remember(names)
            wanted = any(self.rule.wants(name) for name in names)
            if len(self._wanted) < _NAMES_KEPT and sum(map(len, names)) <= _KEPT_NAMES_CHARS:
                self._wanted[names] = wanted
        if not wanted:
            self.steps_without_tensors += 1
            return None
        return [
            WorkerBatch(
                source=t.worker,
                mode=t.mode,
                tensors=t.tensors,
                error_reason=t.error_reason,
                error=t.error,
            )
            for t in self._read_with_retries(
                ref if parts is ref.parts else StepRef(ref.step, parts)
            )
        ]

    def _flush(self, chunk: _Chunk, stop_on_first_issue: bool) -> int:
        """Count a chunk, advance the position, then tell the listeners step by step."""
        if chunk.last_step < 0:
            return 0
        first = self.rule.steps_evaluated == 0
        had_issue = self.rule.issue_step is not None
        results = (
            self.rule.evaluate_steps(chunk.selected, stop_at_first_issue=stop_on_first_issue)
            if chunk.selected
            else []
        )
        stopped_early = stop_on_first_issue and len(results) < len(chunk.selected)
        # The position moves with the counts, before any listener may save a checkpoint.
        self.delivered_through = results[-1].step if stopped_early else chunk.last_step
        if results:
            self.last_evaluation_time = time.time()
        if results and self.progress is not None:
            self.progress.evaluated(self.rule)
        for result in results:
            self._log_step(result, first=first, had_issue=had_issue)
            first, had_issue = False, had_issue or bool(result.new_findings)
            if self.on_step is not None:
                self.on_step(self, result)
        if results and self.on_steps is not None:
            self.on_steps(self, results)
        return len(results)

    def _read_with_retries(self, ref: StepRef) -> list[WorkerTensors]:
        """Read a step; parts whose files may still be arriving are read again, bounded."""
        results = self.reader.read(ref, self.rule.wants)
        retries, delay = self.following.read_retries, self.following.read_retry_delay
        for attempt in range(1, retries + 1):
            failed = [i for i, t in enumerate(results) if t.error_reason in TRANSIENT_READ_ERRORS]
            if not failed or self._stopping():
                break
            log.info(
                "step %d: %d part(s) not readable yet (%s), retry %d of %d",
                ref.step,
                len(failed),
                results[failed[0]].error_reason,
                attempt,
                retries,
            )
            if self.stop is not None:
                self.stop.wait(delay)
            else:
                time.sleep(delay)
            retried = self.reader.read(
                StepRef(ref.step, tuple(ref.parts[i] for i in failed)), self.rule.wants
            )
            for index, again in zip(failed, retried, strict=True):
                results[index] = again
        return results

    def _log_step(self, result: StepResult, *, first: bool, had_issue: bool) -> None:
        step = result.step
        if first:
            log.info(
                "first step evaluated: step %d, %d labels",
                step,
                result.counted,
                extra={"event": "first_step", "step": step},
            )
        if self._skips is not None:
            self._skips.step(step, result.skipped_reasons)
        for finding in result.new_findings:
            log.warning(
                "step %d: %s check holds: %s",
                step,
                finding.check,
                finding.message,
                extra={
                    "event": "finding",
                    "step": step,
                    "check": finding.check,
                    "value": finding.value,
                    "threshold": finding.threshold,
                },
            )
        if not had_issue and result.new_findings:
            log.warning(
                "issue found at step %d", step, extra={"event": "issue_found", "step": step}
            )

    def _ended(self, stop: StopRequest, *, backlog: bool, idle: float) -> EndReason | None:
        """Why following ends after this poll, or None to go on."""
        options = self.following
        if options.stop_on_first_issue and self.rule.issue_step is not None:
            return EndReason.FIRST_ISSUE
        if self.end_step_reached:
            return EndReason.END_STEP
        if stop.is_set():
            return EndReason.STOPPED
        if self.reader.training_ended():
            return EndReason.END_OF_TRAINING
        if options.once and not backlog:
            return EndReason.ONCE
        if options.idle_timeout is not None and idle >= options.idle_timeout:
            return EndReason.IDLE_TIMEOUT
        return None

    def follow(
        self,
        *,
        stop: StopRequest | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float, StopRequest], None] | None = None,
    ) -> EndReason:
        """Evaluate steps as they become complete until one of the end conditions holds."""
        try:
            return self._follow(stop=stop, clock=clock, wait=wait)
        finally:
            if self.progress is not None:
                self.progress.clear()  # the terminal's line goes before the summary

    def _follow(
        self,
        *,
        stop: StopRequest | None,
        clock: Callable[[], float],
        wait: Callable[[float, StopRequest], None] | None,
    ) -> EndReason:
        options = self.following
        stop = stop or self.stop or StopRequest()
        self.stop = stop
        sleep = wait or (lambda seconds, request: request.wait(seconds) and None)
        last_progress = clock()
        idle_polls = 0
        waiting = WaitingLog(self.reader.location, options.idle_timeout, clock=clock)
        while not stop.is_set():
            seen_before = self.steps_seen
            self.evaluate_available(options.stop_on_first_issue)
            if self.attached:
                waiting.found()
            else:
                waiting.missing()
            # A reader hands a long backlog over in slices: more are ready without waiting.
            backlog = self.reader.backlog
            if self.steps_seen > seen_before or backlog:
                last_progress = clock()
                idle_polls = 0
            else:
                idle_polls += 1
            if self.on_poll is not None:
                self.on_poll(self)
            idle = clock() - last_progress
            end = self._ended(stop, backlog=backlog, idle=idle)
            if end is not None:
                return end
            if not backlog:
                if self.progress is not None:
                    self.progress.waiting(self.rule)
                sleep(_next_wait(options, idle_polls, idle), stop)
        return EndReason.STOPPED


def _next_wait(options: FollowSettings, idle_polls: int, idle: float) -> float:
    """Steps just arrived: look again after the interval (an immediate look would find nothing
    and cost an S3 listing). Idle: back off, doubling up to the maximum, never past the idle
    timeout."""
    backed_off = options.poll_interval * float(2 ** min(idle_polls, 16))
    wait = max(options.poll_interval, min(options.max_poll_interval, backed_off))
    if options.idle_timeout is not None:
        wait = min(wait, options.idle_timeout - idle)
    return wait


_CHUNK_STEPS = 512
_CHUNK_BYTES = 64 << 20
"""A chunk is counted once it holds this many steps or tensor bytes, so replaying a trial of
large tensors keeps memory bounded while small ones go in large, cheap chunks."""


@dataclass
class _Chunk:
    """Steps read and waiting to be counted together."""

    selected: list[tuple[int, Sequence[WorkerBatch]]] = field(default_factory=list)
    last_step: int = -1
    """The last step delivered into this chunk, selected or not."""
    nbytes: int = 0

    def add(self, step: int, batches: list[WorkerBatch] | None) -> None:
        self.last_step = step
        if batches is not None:
            self.selected.append((step, batches))
            self.nbytes += sum(
                getattr(tensor, "nbytes", 0)
                for batch in batches
                for tensor in batch.tensors.values()
            )

    @property
    def full(self) -> bool:
        return len(self.selected) >= _CHUNK_STEPS or self.nbytes >= _CHUNK_BYTES
