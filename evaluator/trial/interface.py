"""The small interface between trial readers and the evaluation loop.

A reader turns a trial (folder or S3 prefix) into complete steps in global-step order. The loop
never sees files: it asks for what became complete since the last call, picks the tensor names it
needs from each step's index, and asks for just those. Both the native reader and the optional
smdebug backend implement it, so the loop and its tests do not care which one is in use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.generic]


class TrialError(Exception):
    """The trial cannot be read at all (missing, unreadable or malformed beyond one step).

    The message says what was expected, what was found and what to change.
    """


@dataclass(frozen=True)
class WorkerStep:
    """One worker's part of one global step, as its index file describes it."""

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


class TrialReader(Protocol):
    """What the evaluation loop needs from a trial."""

    @property
    def location(self) -> str:
        """The trial path or URI, for messages."""
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

    def training_ended(self) -> bool:
        """Whether the end marker was seen and every step before it was returned by ``poll``."""
        ...

    def read(self, ref: StepRef, wanted: Callable[[str], bool]) -> list[WorkerTensors]:
        """Read the tensors of ``ref`` whose names ``wanted`` accepts, one entry per worker.

        Never raises for a bad record: the worker's entry carries the error instead.
        """
        ...

    def close(self) -> None:
        """Release files, threads or connections."""
        ...
