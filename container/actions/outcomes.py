"""What became of each configured action: one record per action, saved in checkpoints.

States: ``pending`` (the issue has not been found), ``done`` (with what was done), ``failed``
(with the reason), ``would_run`` (a dry run, with what it would do), and in the terminal
status of an evaluation without an issue ``skipped`` (never saved: a checkpoint keeps the
action pending). A resumed evaluation runs an action still ``pending`` and never another one:
the checkpoint is saved as soon as the actions ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

PENDING = "pending"
DONE = "done"
FAILED = "failed"
SKIPPED = "skipped"
WOULD_RUN = "would_run"
OUTCOMES = (PENDING, DONE, FAILED, SKIPPED, WOULD_RUN)
FINAL = frozenset({DONE, FAILED, SKIPPED, WOULD_RUN})
"""Outcomes that are not attempted again after a restart (a failed action is reported, not
retried: a restart loop must not stop a job or page someone again and again)."""


@dataclass(frozen=True)
class ActionOutcome:
    """One action and what became of it."""

    action: Mapping[str, Any]
    """The action as configured (headers come from a file or a variable, never from here);
    the status shows a webhook's URL without its path, which may hold a token."""
    outcome: str = PENDING
    detail: str = ""
    """What was done, why it failed or why it was skipped, in a sentence."""
    at: str | None = None
    """When it was carried out (ISO 8601, UTC)."""
    attempts: int = 0
    """How many times it was started, over restarts."""

    @property
    def name(self) -> str:
        return str(self.action["name"])

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "action": dict(self.action)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ActionOutcome:
        return cls(
            action=dict(data["action"]),
            outcome=str(data["outcome"]),
            detail=str(data.get("detail", "")),
            at=data.get("at"),
            attempts=int(data.get("attempts", 0)),
        )
