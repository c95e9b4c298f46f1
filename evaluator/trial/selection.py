"""Which parts of a trial a reader loads: a range of steps, and one shard of several.

A trial too large or too slow for one process is split over N processes, each evaluating one
shard and writing a state that ``classimbalance-rule merge`` combines exactly. The split is by
steps or by workers (each worker's parts go to one shard, for trials of many workers and few
steps). By steps, blocks of ``block_steps`` consecutive global step numbers (1: every step on
its own) go to the shard a hash of the block's number picks: a hook saves every Kth step, and
dealing step numbers round robin would give every step to one shard whenever K and N share a
factor (save_interval 500, 5 shards), where a hash deals any stride evenly.

The reader applies the selection before it loads an event file, so a shard reads and transfers
only its own parts; steps it leaves to other shards are still handed over, empty, so that the
loop sees every step (an ``end_step`` is noticed, progress is counted alike in every shard).

A part of the trial belongs to exactly one shard: the shards' states cover the trial once.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Literal, get_args

ShardBy = Literal["steps", "workers"]
SHARD_BY: tuple[str, ...] = get_args(ShardBy)

_TRAILING_NUMBER = re.compile(r"(\d+)$")


_MASK = (1 << 64) - 1


def block_shard(block: int, count: int) -> int:
    """The shard of ``count`` that a block of steps goes to: splitmix64 of its number, so that
    consecutive, strided or random blocks all spread evenly (the merge does not care which
    steps a shard holds, only that each step is in one)."""
    mixed = (block + 0x9E3779B97F4A7C15) & _MASK
    mixed = ((mixed ^ (mixed >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    mixed = ((mixed ^ (mixed >> 27)) * 0x94D049BB133111EB) & _MASK
    return (mixed ^ (mixed >> 31)) % count


def worker_number(worker: str) -> int:
    """A worker's number for dealing workers out: smdebug names them ``worker_0``,
    ``worker_1``, ... (the rank), so the trailing number deals them round robin; a name
    without one is dealt by a stable digest of the name. TF's device strings end in the
    device's index (``.../task:1/device:GPU:0``): two tasks' GPU 0 share a shard, which
    costs balance, never a part (each is still read by exactly one shard)."""
    found = _TRAILING_NUMBER.search(worker)
    if found:
        return int(found.group(1))
    return zlib.crc32(worker.encode("utf-8"))


@dataclass(frozen=True)
class PartSelection:
    """The parts of a trial one evaluation reads: steps in [start_step, end_step), of shard
    ``shard_index`` of ``shard_count``."""

    start_step: int | None = None
    end_step: int | None = None
    shard_index: int = 0
    shard_count: int = 1
    by: ShardBy = "steps"
    block_steps: int = 1

    def __post_init__(self) -> None:
        if self.shard_count < 1 or not 0 <= self.shard_index < self.shard_count:
            raise ValueError(
                f"Expected a shard index in [0, {self.shard_count}) of at least one shard, but "
                f"got shard {self.shard_index} of {self.shard_count}"
            )
        if self.block_steps < 1:
            raise ValueError(f"Expected block_steps >= 1, but got {self.block_steps}")
        if self.by not in SHARD_BY:
            raise ValueError(f"Expected shard by {' or '.join(SHARD_BY)}, but got {self.by!r}")

    @property
    def everything(self) -> bool:
        """Whether every part is selected (no range, one shard): nothing to filter."""
        return self.start_step is None and self.end_step is None and self.shard_count == 1

    def in_range(self, step: int) -> bool:
        return (self.start_step is None or step >= self.start_step) and (
            self.end_step is None or step < self.end_step
        )

    def step_selected(self, step: int) -> bool:
        """Whether any part of ``step`` may be this shard's."""
        if not self.in_range(step):
            return False
        if self.by != "steps" or self.shard_count == 1:
            return True
        return block_shard(step // self.block_steps, self.shard_count) == self.shard_index

    def part_selected(self, step: int, worker: str) -> bool:
        """Whether this shard reads ``worker``'s part of ``step``."""
        if not self.step_selected(step):
            return False
        if self.by != "workers" or self.shard_count == 1:
            return True
        return worker_number(worker) % self.shard_count == self.shard_index

    def reports_step(self, step: int) -> bool:
        """Whether this shard reports what is wrong with ``step`` as a whole (a worker missing
        from it): the step's own shard, or shard 0 when every shard has a part of every step,
        so that the merged status names each incomplete step once."""
        if not self.step_selected(step):
            return False
        return self.by != "workers" or self.shard_index == 0

    def describe(self) -> str:
        """In words, for logs and messages."""
        parts = []
        if self.start_step is not None or self.end_step is not None:
            start = 0 if self.start_step is None else self.start_step
            end = "end" if self.end_step is None else self.end_step
            parts.append(f"steps [{start}, {end})")
        if self.shard_count > 1:
            how = "workers" if self.by == "workers" else "steps"
            if self.by == "steps" and self.block_steps > 1:
                how = f"blocks of {self.block_steps} steps"
            parts.append(f"shard {self.shard_index} of {self.shard_count} (by {how})")
        return ", ".join(parts) or "every step"


EVERYTHING = PartSelection()
