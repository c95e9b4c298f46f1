"""A chunk of steps prepared for counting: the whole-chunk shortcut when it applies, else each
step batch by batch. The rule calls only this."""

from __future__ import annotations

from collections.abc import Sequence

from evaluator.core.normalise.batches import Inputs, PreparedStep, WorkerBatch, prepare_step
from evaluator.core.normalise.chunk import prepare_uniform


def prepare_steps(
    steps: Sequence[tuple[int, Sequence[WorkerBatch]]], inputs: Inputs
) -> list[tuple[int, PreparedStep]]:
    """Each step with its rows to count and what was set aside, in order."""
    uniform = prepare_uniform(steps, inputs)
    if uniform is not None:
        return list(zip((step for step, _ in steps), uniform, strict=True))
    return [(step, prepare_step(step, batches, inputs)) for step, batches in steps]
