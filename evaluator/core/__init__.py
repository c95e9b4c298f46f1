"""The rule core: pure functions and additive state, no I/O (enforced by import-linter).

This is the package's surface for the runtime (an import-linter contract holds ``container`` to
it): the rule and its inputs, its parameters and their errors, the checks and their findings.
"""

from evaluator.core.checks import (
    Check,
    Finding,
    ImbalanceCheck,
    MispredictionCheck,
    describe_current,
    imbalance_ratio,
    misprediction_fractions,
    seed_checks,
)
from evaluator.core.errors import ParameterError, ParameterProblem
from evaluator.core.normalise import IGNORED, WorkerBatch
from evaluator.core.params import PARAMETER_NAMES, RuleParameters, accepted
from evaluator.core.rule import RULE_NAME, ClassImbalanceRule, StepResult

__all__ = [
    "IGNORED",
    "PARAMETER_NAMES",
    "RULE_NAME",
    "Check",
    "ClassImbalanceRule",
    "Finding",
    "ImbalanceCheck",
    "MispredictionCheck",
    "ParameterError",
    "ParameterProblem",
    "RuleParameters",
    "StepResult",
    "WorkerBatch",
    "accepted",
    "describe_current",
    "imbalance_ratio",
    "misprediction_fractions",
    "seed_checks",
]
