"""Merging parallel shards' rule states into the evaluation one process would have made.

``ClassImbalanceRule.merge`` adds a checkpoint to what came after it: the checkpoint's steps
came first, so its findings stand. Shards evaluated at the same time are different: a shard of
steps 5000-9999 decided its checks without the counts before step 5000, and a shard of half
the workers without the other half's labels, so their findings (and issue steps) are not the
merged evaluation's. Each shard keeps a ledger of its steps' own class counts instead
(``ledger``); here the ledgers are combined step by step and the checks replayed over them in
step order, which decides every step as one process reading every part would have. The
additive totals (per mode, with the confusion pairs) and the skip tallies come from the
shards' states; the replayed counts must equal them, or the states do not belong together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evaluator.core.checks import Check
from evaluator.core.counts import ClassCounts
from evaluator.core.ledger import StepLedger
from evaluator.core.params import RuleParameters
from evaluator.core.rule import EXAMPLES_KEPT, ClassImbalanceRule


class ShardMergeError(ValueError):
    """States that cannot be merged into one evaluation; the message says why and what to do."""


def merge_states(
    params: RuleParameters,
    states: Sequence[Mapping[str, Any]],
    *,
    shared_steps: bool = False,
    checks: Sequence[Check] = (),
) -> ClassImbalanceRule:
    """The evaluation of every step and worker the shards' rule ``states`` evaluated.

    Totals do not depend on the order of ``states``. With ``shared_steps`` (shards of the
    workers) a step several states hold is one step, its counts summed; without it (shards of
    the steps, or step ranges) a step in two states would be counted twice and is refused.
    """
    if not states:
        raise ShardMergeError("expected at least one shard state to merge, but got none")
    shards = [ClassImbalanceRule.from_state(params, state, checks) for state in states]
    ledgers: list[StepLedger] = []
    for index, shard in enumerate(shards):
        if shard.ledger is None:
            raise ShardMergeError(
                f"state {index + 1} has no ledger of its steps: it is a checkpoint, not a "
                f"shard's state; write shard states with --emit-state"
            )
        ledgers.append(shard.ledger)
    if not shared_steps:
        _refuse_shared_steps(ledgers)
    merged = ClassImbalanceRule(params, checks=tuple(checks))
    merged.binary_form = _binary_form(shards)
    ledger = StepLedger.combined(ledgers)
    merged.replay(ledger)
    replayed = _seen_counts(merged)
    merged.counts_by_mode = _totals(shards)
    _refuse_disagreeing(replayed, _seen_counts(merged))
    for shard in shards:
        merged.ignored += shard.ignored
        merged.skipped_rows.update(shard.skipped_rows)
        merged.skipped_batches.update(shard.skipped_batches)
        for reason, message in shard.problem_examples.items():
            if reason in merged.problem_examples or len(merged.problem_examples) < EXAMPLES_KEPT:
                merged.problem_examples[reason] = message
    merged.ledger = ledger
    return merged


def _refuse_shared_steps(ledgers: Sequence[StepLedger]) -> None:
    counted: Counter[int] = Counter()
    for ledger in ledgers:
        counted.update(ledger.steps.tolist())
    twice = sorted(step for step, times in counted.items() if times > 1)
    if twice:
        raise ShardMergeError(
            f"expected shards of disjoint steps, but {len(twice)} steps are in more than one "
            f"state (the first: step {twice[0]}): the same shard or overlapping step ranges "
            f"were given twice; give each shard's state once"
        )


def _binary_form(shards: Sequence[ClassImbalanceRule]) -> str | None:
    """How binary scores were read: one way in every shard, or the merge is not one process's
    (each shard decided on its own first batch of them)."""
    forms = {shard.binary_form for shard in shards if shard.binary_form is not None}
    if len(forms) > 1:
        raise ShardMergeError(
            f"expected every shard to read binary scores alike, but they read them as "
            f"{' and '.join(sorted(forms))}, each deciding on its own first batch: set "
            f"binary_scores to probability or logit and evaluate the shards again"
        )
    return next(iter(forms), None)


def _totals(shards: Sequence[ClassImbalanceRule]) -> dict[str, ClassCounts]:
    totals: dict[str, ClassCounts] = {}
    for shard in shards:
        for mode, counts in sorted(shard.counts_by_mode.items()):
            totals.setdefault(mode, ClassCounts()).merge(counts)
    return totals


def _seen_counts(rule: ClassImbalanceRule) -> tuple[np.ndarray[Any, Any], ...]:
    """(classes, samples, mispredicted) of the classes with a sample: the same for dense and
    sparse counts, and never spread out to the largest index."""
    classes, samples, mispredicted = rule.combined_columns()
    seen = samples > 0
    return classes[seen], samples[seen], mispredicted[seen]


def _refuse_disagreeing(
    replayed: tuple[np.ndarray[Any, Any], ...], totals: tuple[np.ndarray[Any, Any], ...]
) -> None:
    """Refuse when the replayed (classes, samples, mispredicted) are not the totals."""
    same_classes = np.array_equal(replayed[0], totals[0])
    for index, name in ((1, "labels"), (2, "mispredicted labels")):
        left, right = replayed[index], totals[index]
        if not same_classes or not np.array_equal(left, right):
            raise ShardMergeError(
                f"expected the states' per-step ledgers to add up to their totals, but the "
                f"{name} per class differ ({int(left.sum())} against {int(right.sum())}): a "
                f"state was damaged or edited; evaluate its shard again"
            )
