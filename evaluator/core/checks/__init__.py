"""The rule's checks: conditions on per-class tallies, as a list of ``Check``.

The seed rule's two checks are the defaults (``seed_checks``); ``rule_checks`` adds the opt-in
ones the parameters ask for: the guarded forms of the seed's two (``confidence``), the recent
misprediction (``window_steps``) and the minority not improving (``minority_not_improving``).

To add a check: a class with ``name``, ``holds`` and ``describe`` (``base.Check``), its
parameters in ``RuleParameters``, and a line in ``rule_checks``; every output (status, metrics,
logs) iterates the configured checks by name.
"""

from __future__ import annotations

from evaluator.core.checks.base import (
    Check,
    Finding,
    Recent,
    Tallies,
    class_of,
    describe_current,
    holds_now,
    misprediction_fractions,
    uses_window,
)
from evaluator.core.checks.guarded import (
    GuardedImbalanceCheck,
    GuardedMispredictionCheck,
    guarded_ratio,
)
from evaluator.core.checks.recent import (
    MINORITY_NOT_IMPROVING,
    RECENT_MISPREDICTION,
    MinorityNotImprovingCheck,
    RecentMispredictionCheck,
)
from evaluator.core.checks.seed import (
    IMBALANCE,
    MISPREDICTION,
    ImbalanceCheck,
    MispredictionCheck,
    check_imbalance,
    check_misprediction,
    imbalance_ratio,
)
from evaluator.core.params import RuleParameters

__all__ = [
    "IMBALANCE",
    "MINORITY_NOT_IMPROVING",
    "MISPREDICTION",
    "RECENT_MISPREDICTION",
    "Check",
    "Finding",
    "GuardedImbalanceCheck",
    "GuardedMispredictionCheck",
    "ImbalanceCheck",
    "MinorityNotImprovingCheck",
    "MispredictionCheck",
    "Recent",
    "RecentMispredictionCheck",
    "Tallies",
    "check_imbalance",
    "check_misprediction",
    "class_of",
    "describe_current",
    "guarded_ratio",
    "holds_now",
    "imbalance_ratio",
    "misprediction_fractions",
    "rule_checks",
    "seed_checks",
    "uses_window",
]


def seed_checks(params: RuleParameters) -> tuple[Check, ...]:
    """The seed rule's checks, in the order its findings are listed."""
    return (
        ImbalanceCheck(params.threshold_imbalance),
        MispredictionCheck(params.threshold_misprediction),
    )


def rule_checks(params: RuleParameters) -> tuple[Check, ...]:
    """The checks the parameters ask for: the seed's (guarded with ``confidence``), then the
    opt-in ones. With default parameters, exactly ``seed_checks``."""
    confidence = params.confidence
    checks: list[Check] = (
        list(seed_checks(params))
        if confidence is None
        else [
            GuardedImbalanceCheck(params.threshold_imbalance, confidence),
            GuardedMispredictionCheck(params.threshold_misprediction, confidence),
        ]
    )
    if params.window_steps:
        checks.append(
            RecentMispredictionCheck(
                params.threshold_misprediction, params.window_steps, confidence
            )
        )
    if params.minority_not_improving:
        checks.append(MinorityNotImprovingCheck(params.window_steps))
    return tuple(checks)
