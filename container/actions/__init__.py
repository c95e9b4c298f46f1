"""The actions on an issue: stop the training job, notify people, post a webhook, write a stop
file; carried out once, within a time budget, each one's outcome recorded and checkpointed."""

from container.actions.aws import boto3_client
from container.actions.outcomes import (
    DONE,
    FAILED,
    FINAL,
    OUTCOMES,
    PENDING,
    SKIPPED,
    WOULD_RUN,
    ActionOutcome,
)
from container.actions.runner import ActionRunner

__all__ = [
    "DONE",
    "FAILED",
    "FINAL",
    "OUTCOMES",
    "PENDING",
    "SKIPPED",
    "WOULD_RUN",
    "ActionOutcome",
    "ActionRunner",
    "boto3_client",
]
