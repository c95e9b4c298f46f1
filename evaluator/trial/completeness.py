"""When a step is complete: smdebug's rule, made safe on a live folder, as a pure state machine.

A step is complete when every expected worker wrote it, or a later step is complete, or training
has ended (smdebug's rule). This class decides it from three kinds of news and nothing else, so
it is tested without any storage:

- *keys listed* (``take``): the index keys a listing returned, as (key, step, worker);
- *part settled* (``settle``): a listed part was loaded (its payload) or given up on (None);
- *ended* (``end``): the end marker was seen and every index key written before it listed.

The end releases a step only once every expected worker wrote it, or ``end_grace`` seconds
after the marker was written. Outside SageMaker every rank's ``hook.close()`` writes the
marker, so it appears when the *first* rank finishes while the others may still be writing
their last steps; releasing at once would count those steps without them. A finished trial
whose steps are all complete never waits, and neither does one without collections files
(nothing says how many workers to wait for).

Two refinements make the rule safe on a folder that is being written while it is listed:

- "A later step is complete" is applied one poll late. A listing is not a snapshot: a file that
  lands while the folder is being listed may be missed while a later one is seen. Every file of
  an earlier step was written before the later step's files, so it is visible to any listing
  that starts after the one that saw the later step complete.
- A step held back (incomplete, or a part not settled yet) holds back every later step too, so
  steps are released in order and each exactly once. Only the incomplete-step window (smdebug's
  ``INCOMPLETE_STEP_WAIT_WINDOW``) releases the oldest steps anyway: a worker that died must not
  stall the rule or grow memory.

It also keeps the *cursor*: the last index key of the released steps, after which the next
listing starts, so a poll costs the same at step 10 and at step 100,000.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

INCOMPLETE_STEP_WINDOW = 1000
"""Incomplete steps kept waiting before the oldest are released anyway (smdebug's
``INCOMPLETE_STEP_WAIT_WINDOW``): a worker that died must not stall the rule or grow memory."""

P = TypeVar("P")
"""What a loaded part is to the caller; this class only keeps it until its step is released."""


@dataclass
class _Pending(Generic[P]):
    """A step listed but not released yet."""

    settled: dict[str, P | None] = field(default_factory=dict)
    """Worker -> its loaded part, or None when it was given up on (it did write the step)."""
    unsettled: set[str] = field(default_factory=set)
    """Workers listed whose part is not loaded yet (being loaded, or to be tried again)."""

    def workers_written(self) -> int:
        return len(self.settled) + len(self.unsettled)


@dataclass(frozen=True)
class ReleasedStep(Generic[P]):
    """A step handed over: its loaded parts, and why it was released."""

    step: int
    parts: dict[str, P]
    """Worker -> loaded part, for the parts that could be loaded."""
    given_up: tuple[str, ...] = ()
    """Workers that wrote the step but whose part could not be used."""
    unsettled: tuple[str, ...] = ()
    """Workers whose part was still being retried (only for a ``forced`` release)."""
    forced: bool = False
    """Released by the incomplete-step window, not because it was complete."""
    by_end: bool = False
    """Released without every worker because training ended (after ``end_grace``)."""
    missing: tuple[str, ...] = ()
    """Workers expected but not listed for the step that were seen at other steps."""
    unseen: int = 0
    """Workers expected but not listed for the step, and seen at no step so far."""


@dataclass(frozen=True)
class Taken:
    """What one listing brought: parts to load now, and keys that arrived too late."""

    fresh: list[tuple[int, str]]
    """(step, worker) of every part listed for the first time, in listing order."""
    late: list[str]
    """Keys of steps already released: their parts are not used."""


class StepCompleteness(Generic[P]):
    """Pending steps, the cursor and the end, driven by listings, loads and the end marker."""

    def __init__(self, *, window: int = INCOMPLETE_STEP_WINDOW, end_grace: float = 0.0) -> None:
        self._window = max(1, window)
        self._end_grace = max(0.0, end_grace)
        self._ended_at = 0.0
        """When the end marker was written (the caller's clock)."""
        self.expected_workers: int | None = None
        """``num_workers`` from the collections files (the largest); None until one is read."""
        self.cursor: str | None = None
        """The last index key of the released steps; listings start after it."""
        self.released_through = -1
        """The highest step released; index files of steps up to it arrive late."""
        self.backlog = False
        """Whether the last listing left steps for the next one (the per-poll bound, or a
        listing that may have been cut short)."""
        self.ended = False
        self._pending: dict[int, _Pending[P]] = {}
        self._full_step_seen = -1
        """The highest step every expected worker had written, as of an earlier release."""
        self._workers_seen: set[str] = set()
        self._listed: list[tuple[str, int]] = []
        """The keys of the last listing taken, with their steps, for the cursor."""

    # -- state ------------------------------------------------------------------------------

    @property
    def window(self) -> int:
        """Incomplete steps kept waiting before the oldest is released anyway."""
        return self._window

    @property
    def pending_steps(self) -> int:
        """Steps listed but not released: how far the slowest worker lags (memory held)."""
        return len(self._pending)

    @property
    def finished(self) -> bool:
        """Whether training ended and every step before the end was released."""
        return self.ended and not self._pending and not self.backlog

    def workers_per_step(self) -> int:
        """Parts a step is expected to have: the collections files' count, or the workers seen."""
        return max(self.expected_workers or 1, len(self._workers_seen))

    def unsettled(self) -> list[tuple[int, str]]:
        """(step, worker) of every listed part not loaded yet: to be tried again."""
        return [
            (step, worker)
            for step, pending in self._pending.items()
            for worker in sorted(pending.unsettled)
        ]

    # -- news -------------------------------------------------------------------------------

    def take(
        self, listed: Sequence[tuple[str, int, str]], *, new_steps: int, cut: bool = False
    ) -> Taken:
        """Take on a listing's index keys, at most ``new_steps`` steps not pending yet.

        The rest wait for the next listing (``backlog``). A listing that may have been ``cut``
        short may end in the middle of a step's keys, so its last step waits too: a step is
        only ever taken on with every key listed for it, or the end could release it without
        some of its parts.
        """
        self.backlog = False
        if cut and listed:
            last_step = listed[-1][1]
            listed = [item for item in listed if item[1] != last_step]
            self.backlog = True
        taken: list[tuple[str, int]] = []
        fresh: list[tuple[int, str]] = []
        late: list[str] = []
        added = 0
        for key, step, worker in listed:
            if step <= self.released_through:
                taken.append((key, step))
                late.append(key)
                continue
            pending = self._pending.get(step)
            if pending is None:
                if added >= new_steps:
                    self.backlog = True
                    break
                added += 1
                pending = self._pending[step] = _Pending()
            taken.append((key, step))
            if worker not in pending.settled and worker not in pending.unsettled:
                pending.unsettled.add(worker)
                self._workers_seen.add(worker)
                fresh.append((step, worker))
        self._listed = taken
        return Taken(fresh, late)

    def settle(self, step: int, worker: str, part: P | None) -> None:
        """A listed part was loaded (``part``) or given up on (None)."""
        pending = self._pending.get(step)
        if pending is None or worker not in pending.unsettled:
            return
        pending.unsettled.discard(worker)
        pending.settled[worker] = part

    def end(self, at: float = 0.0) -> None:
        """The end marker was seen, written at ``at``, and every index key written before it
        was listed (a later call changes nothing)."""
        if not self.ended:
            self.ended, self._ended_at = True, at

    def incomplete(self) -> bool:
        """Whether a pending step lacks an expected worker: the end would wait for it."""
        return any(not self._fully_written(pending) for pending in self._pending.values())

    # -- releasing --------------------------------------------------------------------------

    def release(self, now: float = 0.0) -> list[ReleasedStep[P]]:
        """The steps complete at ``now``, in order, then the oldest beyond the window; moves
        the cursor past the keys of released steps."""
        released = self._release_complete(now) + self._release_beyond_window()
        for key, step in self._listed:
            if step > self.released_through:
                break
            self.cursor = key
        self._listed = []
        return released

    def _release_complete(self, now: float) -> list[ReleasedStep[P]]:
        full_now = max(
            (step for step, pending in self._pending.items() if self._fully_written(pending)),
            default=-1,
        )
        over = self.ended and (
            self.expected_workers is None or now - self._ended_at >= self._end_grace
        )
        released = []
        for step in sorted(self._pending):
            pending = self._pending[step]
            whole = self._fully_written(pending)
            by_later = step <= self._full_step_seen
            if not (whole or by_later or over) or pending.unsettled:
                break
            released.append(self._pop(step, by_end=not (whole or by_later)))
        self._full_step_seen = max(self._full_step_seen, full_now)
        return released

    def _release_beyond_window(self) -> list[ReleasedStep[P]]:
        released = []
        while len(self._pending) > self._window:
            released.append(self._pop(min(self._pending), forced=True))
        return released

    def _fully_written(self, pending: _Pending[P]) -> bool:
        expected = self.expected_workers
        return expected is not None and pending.workers_written() >= expected

    def _pop(self, step: int, *, forced: bool = False, by_end: bool = False) -> ReleasedStep[P]:
        pending = self._pending.pop(step)
        self.released_through = max(self.released_through, step)
        parts = {worker: part for worker, part in pending.settled.items() if part is not None}
        return ReleasedStep(
            step=step,
            parts=parts,
            given_up=tuple(sorted(w for w, part in pending.settled.items() if part is None)),
            unsettled=tuple(sorted(pending.unsettled)),
            forced=forced,
            by_end=by_end,
            **self._missing(pending),
        )

    def _missing(self, pending: _Pending[P]) -> dict[str, Any]:
        """``missing`` and ``unseen`` of a released step."""
        expected = self.expected_workers
        if expected is None or len(pending.settled) + len(pending.unsettled) >= expected:
            return {}
        listed = set(pending.settled) | pending.unsettled
        named = tuple(sorted(self._workers_seen - listed)[: expected - len(listed)])
        return {"missing": named, "unseen": expected - len(listed) - len(named)}
