"""The rule core: pure functions and additive state, no I/O (enforced by import-linter).

This is the package's surface for the runtime (an import-linter contract holds ``container`` to
it): the rule and its inputs, its parameters and their errors, the checks and their findings,
and the explanations of a verdict.
"""

from evaluator.core.checks import (
    Check,
    Finding,
    ImbalanceCheck,
    MispredictionCheck,
    Recent,
    Tallies,
    class_of,
    describe_current,
    imbalance_ratio,
    misprediction_fractions,
    rule_checks,
    seed_checks,
    uses_window,
)
from evaluator.core.counts import ClassCounts, FrozenPairs, aligned, column_of, is_identity
from evaluator.core.errors import (
    LedgerLimitError,
    ParameterError,
    ParameterProblem,
    WindowLimitError,
)
from evaluator.core.explain import (
    MATRIX_CLASSES,
    TOP_CONFUSIONS,
    Confusion,
    ConfusionMatrix,
    ModeVerdict,
    classes_that_matter,
    confusion_matrix,
    mode_verdict,
    top_confusions,
)
from evaluator.core.history import History, HistoryPoint
from evaluator.core.ledger import StepLedger
from evaluator.core.normalise import IGNORED, WorkerBatch
from evaluator.core.params import PARAMETER_NAMES, RuleParameters, accepted
from evaluator.core.rule import RULE_NAME, ClassImbalanceRule, StepResult
from evaluator.core.selection import TensorSelector, name_list
from evaluator.core.shards import ShardMergeError, merge_states
from evaluator.core.text import QUOTED_CHARS, quoted, shortened

__all__ = [
    "IGNORED",
    "MATRIX_CLASSES",
    "PARAMETER_NAMES",
    "QUOTED_CHARS",
    "RULE_NAME",
    "TOP_CONFUSIONS",
    "Check",
    "ClassCounts",
    "ClassImbalanceRule",
    "Confusion",
    "ConfusionMatrix",
    "Finding",
    "FrozenPairs",
    "History",
    "HistoryPoint",
    "ImbalanceCheck",
    "LedgerLimitError",
    "MispredictionCheck",
    "ModeVerdict",
    "ParameterError",
    "ParameterProblem",
    "Recent",
    "RuleParameters",
    "ShardMergeError",
    "StepLedger",
    "StepResult",
    "Tallies",
    "TensorSelector",
    "WindowLimitError",
    "WorkerBatch",
    "accepted",
    "aligned",
    "class_of",
    "classes_that_matter",
    "column_of",
    "confusion_matrix",
    "describe_current",
    "imbalance_ratio",
    "is_identity",
    "merge_states",
    "misprediction_fractions",
    "mode_verdict",
    "name_list",
    "quoted",
    "rule_checks",
    "seed_checks",
    "shortened",
    "top_confusions",
    "uses_window",
]
