"""The trial reader: smdebug's format, local and on S3, behind the small interface the loop uses.

This is the package's surface for the runtime (an import-linter contract holds ``container`` to
it): open a reader for a location, then poll it for complete steps and read their tensors.
"""

from evaluator.trial.contract import TrialError
from evaluator.trial.identity import TrialIdentity
from evaluator.trial.interface import (
    NO_PROBLEMS,
    ReaderProblems,
    StepRef,
    TrialReader,
    WorkerStep,
    WorkerTensors,
)
from evaluator.trial.open import READERS, Reader, open_trial
from evaluator.trial.selection import SHARD_BY, PartSelection, ShardBy

__all__ = [
    "NO_PROBLEMS",
    "READERS",
    "SHARD_BY",
    "PartSelection",
    "Reader",
    "ReaderProblems",
    "ShardBy",
    "StepRef",
    "TrialError",
    "TrialIdentity",
    "TrialReader",
    "WorkerStep",
    "WorkerTensors",
    "open_trial",
]
