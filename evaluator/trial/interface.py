"""The small interface between trial readers and the evaluation loop.

A reader turns a trial (folder or S3 prefix) into complete steps in global-step order. The loop
never sees files: it asks for what became complete since the last call, picks the tensor names it
needs from each step's index, and asks for just those. Both the native reader and the optional
smdebug backend implement it, so the loop and its tests do not care which one is in use.

Whatever a reader could not use is declared here too (``ReaderProblems``, from ``problems()``):
the runtime shows it in the status, the metrics and the log, and reads nothing else of a reader.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from evaluator.trial.identity import TrialIdentity

Array = npt.NDArray[np.generic]


@dataclass(frozen=True)
class WorkerStep:
    """One worker's part of one global step: who wrote it, in which mode, which tensors."""

    worker: str
    mode: str
    mode_step: int
    tensor_names: tuple[str, ...]


@dataclass(frozen=True)
class StepRef:
    """A complete global step: every part that was written for it, one per worker."""

    step: int
    parts: tuple[WorkerStep, ...]

    @property
    def tensor_names(self) -> tuple[str, ...]:
        """Every tensor name any worker saved at this step, sorted."""
        return tuple(sorted({name for part in self.parts for name in part.tensor_names}))


@dataclass
class WorkerTensors:
    """The tensors read for one worker at one step, or why they could not be read."""

    worker: str
    mode: str
    mode_step: int
    tensors: dict[str, Array] = field(default_factory=dict)
    error: str | None = None
    """Set when this worker's part could not be read; ``error_reason`` is its short key."""
    error_reason: str | None = None


@dataclass(frozen=True)
class ReaderProblems:
    """What a reader could not use and why, as of one moment (a copy: safe to keep)."""

    skipped_files: Mapping[str, int] = field(default_factory=dict)
    """Trial files given up on, by reason: left out of their step after retries (a malformed
    index or event file, a missing event file), or arriving after their step was evaluated
    (``late_part``). The status shows them as ``skipped.files``."""
    notices: Mapping[str, int] = field(default_factory=dict)
    """Events that lose no data by themselves but that an operator should know of, by reason:
    polls that found the storage unavailable, steps released by the incomplete-step window,
    parts read again by range because their bytes were over the held budget, keys that are not
    smdebug's. The status shows them as ``reader_notices``."""
    examples: Mapping[str, str] = field(default_factory=dict)
    """The latest message per reason of either kind: which file, and what to change."""
    incomplete_steps: tuple[tuple[int, tuple[str, ...]], ...] = ()
    """(step, missing workers) of the first steps handed over without every expected worker
    (their parts never arrived: a dead worker, or one still writing when the end's grace ran
    out); each missing part is also counted under ``skipped_files`` as ``missing_worker``."""
    incomplete_step_count: int = 0
    """How many steps were handed over without every expected worker, all of them."""
    last: str | None = None
    """The latest message of any kind, a retry included: a diagnostic for tests and tools (the
    runtime logs every message as it comes instead)."""


NO_PROBLEMS = ReaderProblems()


class TrialReader(Protocol):
    """What the evaluation loop needs from a trial."""

    @property
    def location(self) -> str:
        """The trial path or URI, for messages."""
        ...

    @property
    def local_path(self) -> str | None:
        """The trial's folder when it is on this machine (the runtime watches it for new
        steps), None when it is remote."""
        ...

    def exists(self) -> bool:
        """Whether the trial folder or prefix exists yet."""
        ...

    def poll(self) -> Sequence[StepRef]:
        """Steps that became complete since the last call, in increasing global step.

        A step is complete when every expected worker wrote it, a later step is complete, or
        training has ended (smdebug's rule). A step is returned at most once.
        """
        ...

    @property
    def backlog(self) -> bool:
        """Whether the last ``poll`` left complete steps for the next one (it hands a long
        backlog over in bounded slices): poll again without waiting."""
        ...

    @property
    def pending_steps(self) -> int:
        """Steps seen but not handed over yet: waiting for a worker, or for the end's grace."""
        ...

    def training_ended(self) -> bool:
        """Whether the end marker was seen and every step before it was returned by ``poll``."""
        ...

    def read(self, ref: StepRef, wanted: Callable[[str], bool]) -> list[WorkerTensors]:
        """Read the tensors of ``ref`` whose names ``wanted`` accepts, one entry per worker.

        Never raises for a bad record: the worker's entry carries the error instead.
        """
        ...

    def problems(self) -> ReaderProblems:
        """Everything given up on or worth knowing so far; cheap enough to call every step."""
        ...

    def identity(self) -> TrialIdentity | None:
        """What the trial is, by its content (a digest), so that a checkpoint resumes only the
        trial it was saved for; None while the trial has no step yet. A few reads, once."""
        ...

    def same_trial(self, saved: TrialIdentity) -> bool | None:
        """Whether the trial is the one a checkpoint saved ``identity`` of; None while that
        cannot be told yet (no trial there, or no first step, or the storage unavailable)."""
        ...

    def close(self) -> None:
        """Release files, threads or connections."""
        ...
