"""The step ledger: every evaluated step's per-class counts, so parallel shards merge exactly.

Totals add in any order, but the verdict does not: the issue step is the first step at which a
check held on the counts *up to it*, and the checks are not monotone (a ratio rises and falls).
A shard that evaluated steps 5000-9999 cannot know its steps' cumulative counts without the
counts of steps 0-4999, nor can a shard of half the workers know a step's counts without the
other half's. What it can keep is each step's own counts per class (the step's delta), sparse:
the classes the step saw. The merge adds the ledgers of all shards step by step (a step two
shards hold, one per set of workers, is one step with its counts summed) and replays the checks
over the union in step order, which is exactly what one process would have decided, however the
steps or workers were split. The totals still come from the shards' additive counts (the
confusion pairs are not in the ledger); the merge checks that both agree.

Memory: one entry per (step, class seen at it), bounded by ``MAX_LEDGER_ENTRIES``; a shard past
it stops with an error that says how many steps a shard may take.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from evaluator.core.errors import LedgerLimitError

IntArray = npt.NDArray[np.int64]

MAX_LEDGER_ENTRIES = 1 << 22
"""(step, class) counts a shard's ledger keeps at most (about 100 MB in memory, a few MB on
disk): 4,000 steps of 1,000 classes each, or 400,000 steps of a 10-class model."""

_ENCODING = "zlib+base64:int64-le"


def _encode(array: IntArray) -> str:
    data = np.ascontiguousarray(array, dtype="<i8").tobytes()
    return base64.b64encode(zlib.compress(data, 6)).decode("ascii")


def _decode(text: str, name: str) -> IntArray:
    try:
        data = zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, zlib.error) as error:
        raise ValueError(f"the ledger's {name} cannot be decoded ({error})") from error
    if len(data) % 8:
        raise ValueError(f"the ledger's {name} holds {len(data)} bytes, not whole int64 values")
    return np.frombuffer(data, dtype="<i8").astype(np.int64)


def _joined(parts: Sequence[IntArray]) -> IntArray:
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@dataclass
class StepLedger:
    """Per evaluated step (in evaluation order), the labels and mispredicted labels of each
    class it saw, summed over every mode and worker the evaluation read."""

    limit: int = MAX_LEDGER_ENTRIES
    _steps: list[IntArray] = field(default_factory=list)
    _rows: list[IntArray] = field(default_factory=list)
    """Per entry: the index of its step in the ledger's steps."""
    _classes: list[IntArray] = field(default_factory=list)
    _samples: list[IntArray] = field(default_factory=list)
    _mispredicted: list[IntArray] = field(default_factory=list)
    _step_count: int = 0
    _entries: int = 0

    # -- recording ----------------------------------------------------------------------------

    def record(
        self,
        steps: Sequence[int],
        per_step: IntArray,
        per_step_wrong: IntArray,
        ids: IntArray | None = None,
    ) -> None:
        """Add consecutive evaluated steps: ``per_step`` and ``per_step_wrong`` are their
        (steps x classes) labels and mispredicted labels, one row per step, whose columns are
        classes (``ids`` None) or the classes ``ids`` names."""
        rows, columns = np.nonzero(per_step[: len(steps)])
        classes = columns if ids is None else ids[columns]
        if self._entries + rows.size > self.limit:
            raise LedgerLimitError(self._limit_message(len(steps), rows.size))
        self._steps.append(np.asarray(steps, dtype=np.int64))
        self._rows.append(rows.astype(np.int64) + self._step_count)
        self._classes.append(classes.astype(np.int64))
        self._samples.append(per_step[rows, columns].astype(np.int64))
        self._mispredicted.append(per_step_wrong[rows, columns].astype(np.int64))
        self._step_count += len(steps)
        self._entries += rows.size

    def _limit_message(self, new_steps: int, new_entries: int) -> str:
        steps = self._step_count + new_steps
        per_step = max((self._entries + new_entries) / max(steps, 1), 1.0)
        fits = max(int(self.limit / per_step), 1)
        return (
            f"expected a shard's ledger of per-step class counts to hold at most {self.limit} "
            f"entries, but its {steps} steps would hold {self._entries + new_entries} "
            f"({per_step:.0f} classes a step): split the trial into more shards, so that each "
            f"evaluates at most about {fits} steps (shard_count, or start_step and end_step)"
        )

    # -- reading ------------------------------------------------------------------------------

    @property
    def steps(self) -> IntArray:
        """The evaluated steps, in evaluation order (increasing)."""
        return _joined(self._steps)

    @property
    def step_count(self) -> int:
        return self._step_count

    @property
    def entries(self) -> int:
        return self._entries

    def arrays(self) -> tuple[IntArray, IntArray, IntArray, IntArray, IntArray]:
        """(steps, rows, classes, samples, mispredicted): entries sorted by row, then class."""
        self._compact()
        return (
            self.steps,
            _joined(self._rows),
            _joined(self._classes),
            _joined(self._samples),
            _joined(self._mispredicted),
        )

    def _compact(self) -> None:
        """Join the recorded chunks into one array each, so reading them again is free."""
        if len(self._steps) > 1:
            self._steps = [_joined(self._steps)]
            self._rows = [_joined(self._rows)]
            self._classes = [_joined(self._classes)]
            self._samples = [_joined(self._samples)]
            self._mispredicted = [_joined(self._mispredicted)]

    def width(self) -> int:
        """One past the largest class with an entry."""
        classes = _joined(self._classes)
        return int(classes.max()) + 1 if classes.size else 0

    def classes(self) -> IntArray:
        """The sorted classes with an entry."""
        return np.unique(_joined(self._classes))

    def dense(
        self, start: int, stop: int, width: int, ids: IntArray | None = None
    ) -> tuple[IntArray, IntArray]:
        """Rows ``start`` to ``stop`` as (rows x width) matrices of labels and mispredicted,
        whose columns are classes, or with ``ids`` (sorted, every class of those rows) the
        classes it names (``width`` then its size)."""
        _, rows, classes, samples, mispredicted = self.arrays()
        low, high = np.searchsorted(rows, [start, stop])
        columns = classes[low:high] if ids is None else np.searchsorted(ids, classes[low:high])
        cells = (rows[low:high] - start) * width + columns
        size = (stop - start) * width
        per_step = np.bincount(cells, weights=samples[low:high], minlength=size)
        wrong = np.bincount(cells, weights=mispredicted[low:high], minlength=size)
        shape = (stop - start, width)
        return per_step.astype(np.int64).reshape(shape), wrong.astype(np.int64).reshape(shape)

    # -- combining and saving -----------------------------------------------------------------

    @classmethod
    def combined(cls, ledgers: Sequence[StepLedger]) -> StepLedger:
        """One ledger of every step any of ``ledgers`` holds, in step order; a step several
        hold (shards of the workers) is one step whose class counts are summed."""
        steps = np.unique(_joined([ledger.steps for ledger in ledgers]))
        width = max((ledger.width() for ledger in ledgers), default=0) or 1
        keys, samples, mispredicted = [], [], []
        for ledger in ledgers:
            own_steps, rows, classes, own_samples, own_wrong = ledger.arrays()
            global_rows = np.searchsorted(steps, own_steps)[rows]
            keys.append(global_rows * width + classes)
            samples.append(own_samples)
            mispredicted.append(own_wrong)
        unique, inverse = np.unique(_joined(keys), return_inverse=True)
        merged = cls(limit=max(MAX_LEDGER_ENTRIES, unique.size))
        merged._steps = [steps]
        merged._rows = [unique // width]
        merged._classes = [unique % width]
        merged._samples = [_summed(inverse, _joined(samples), unique.size)]
        merged._mispredicted = [_summed(inverse, _joined(mispredicted), unique.size)]
        merged._step_count = int(steps.size)
        merged._entries = int(unique.size)
        return merged

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready copy (arrays compressed); ``from_state`` restores it exactly."""
        steps, rows, classes, samples, mispredicted = self.arrays()
        per_step = np.bincount(rows, minlength=steps.size).astype(np.int64)
        return {
            "encoding": _ENCODING,
            "steps": _encode(np.diff(steps, prepend=0)),
            "entries_per_step": _encode(per_step),
            "classes": _encode(classes),
            "samples": _encode(samples),
            "mispredicted": _encode(mispredicted),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> StepLedger:
        """The ledger ``to_state`` saved; ValueError if it is not one."""
        if state.get("encoding") != _ENCODING:
            raise ValueError(
                f"expected a ledger encoded as {_ENCODING!r}, but got {state.get('encoding')!r}"
            )
        steps = np.cumsum(_decode(state["steps"], "steps"))
        per_step = _decode(state["entries_per_step"], "entries_per_step")
        classes, samples, mispredicted = (
            _decode(state[name], name) for name in ("classes", "samples", "mispredicted")
        )
        entries = int(per_step.sum()) if per_step.size else 0
        if per_step.size != steps.size or not (
            classes.size == samples.size == mispredicted.size == entries
        ):
            raise ValueError(
                f"the ledger's arrays disagree: {steps.size} steps, {per_step.size} step sizes, "
                f"{classes.size} classes, {samples.size} samples, {mispredicted.size} "
                f"mispredicted for {entries} entries"
            )
        if (
            (steps.size and np.any(np.diff(steps) <= 0))
            or np.any(per_step < 0)
            or np.any(classes < 0)
            or np.any(mispredicted < 0)
            or np.any(samples < mispredicted)
        ):
            raise ValueError(
                "the ledger's steps must increase and its counts be whole and consistent "
                "(0 <= mispredicted <= samples)"
            )
        ledger = cls(limit=max(MAX_LEDGER_ENTRIES, entries))
        ledger._steps = [steps]
        ledger._rows = [np.repeat(np.arange(steps.size, dtype=np.int64), per_step)]
        ledger._classes = [classes]
        ledger._samples = [samples]
        ledger._mispredicted = [mispredicted]
        ledger._step_count = int(steps.size)
        ledger._entries = entries
        return ledger


def _summed(inverse: IntArray, values: IntArray, size: int) -> IntArray:
    return np.bincount(inverse, weights=values, minlength=size).astype(np.int64)
