"""The rule core: pure functions and additive state, no I/O (enforced by import-linter)."""

from evaluator.core.checks import Finding
from evaluator.core.params import RuleParameters, parse_rule_parameters
from evaluator.core.rule import RULE_NAME, ClassImbalanceRule, StepResult, WorkerBatch

__all__ = [
    "RULE_NAME",
    "ClassImbalanceRule",
    "Finding",
    "RuleParameters",
    "StepResult",
    "WorkerBatch",
    "parse_rule_parameters",
]
