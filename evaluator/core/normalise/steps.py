"""A chunk of steps prepared for counting: the whole-chunk shortcut when it applies, else each
step batch by batch. The rule calls only this."""

from __future__ import annotations

from collections.abc import Sequence

from evaluator.core.normalise.batches import Inputs, PreparedStep, WorkerBatch, prepare_step
from evaluator.core.normalise.chunk import prepare_uniform


def prepare_steps(
    steps: Sequence[tuple[int, Sequence[WorkerBatch]]],
    inputs: Inputs,
    binary_form: str | None = None,
) -> list[tuple[int, PreparedStep]]:
    """Each step with its rows to count and what was set aside, in order. ``binary_form`` is
    how the trial's binary scores are read so far; each step carries it on (``PreparedStep``)."""
    uniform = prepare_uniform(steps, inputs)
    if uniform is not None:
        form = inputs.binary_form(binary_form)
        for prepared in uniform:
            prepared.binary_form = form
        return list(zip((step for step, _ in steps), uniform, strict=True))
    prepared_steps = []
    for step, batches in steps:
        prepared = prepare_step(step, batches, inputs, binary_form)
        binary_form = prepared.binary_form
        prepared_steps.append((step, prepared))
    return prepared_steps
