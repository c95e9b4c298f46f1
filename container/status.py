"""The status file: the evaluation's state as JSON, for people, scripts and the managed service.

Field names are a contract (documented in the README): ``rule``, ``status``, ``trial``,
``last_step``, ``steps_evaluated``, ``samples``, ``issue_step``, ``findings``, ``classes``,
``message``, ``error``; the rest adds detail. The document is built from a snapshot of the rule,
so building it never changes the evaluation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from container.atomic import write_text_atomically
from evaluator.core import RULE_NAME, ClassImbalanceRule
from evaluator.core.checks import imbalance_ratio, misprediction_fractions


class Status(StrEnum):
    """The managed service's rule statuses (Stopping is transient and never written)."""

    IN_PROGRESS = "InProgress"
    NO_ISSUES_FOUND = "NoIssuesFound"
    ISSUES_FOUND = "IssuesFound"
    ERROR = "Error"
    STOPPED = "Stopped"


EXIT_CODES = {
    Status.NO_ISSUES_FOUND: 0,
    Status.ISSUES_FOUND: 1,
    Status.ERROR: 2,
    Status.STOPPED: 0,
    Status.IN_PROGRESS: 0,
}


def condition_met_message(step: int) -> str:
    """The managed service's wording, which users and tools already match on."""
    return (
        f"RuleEvaluationConditionMet: Evaluation of the rule {RULE_NAME} at step {step} "
        f"resulted in the condition being met"
    )


@dataclass(frozen=True)
class RunInfo:
    """What the runtime knows beyond the rule's counts."""

    trial: str
    reader: str
    modes: Sequence[str] | None
    started_at: float
    ended_by: str | None = None
    """Why evaluation ended: end_of_training, end_step, once, first_issue, idle_timeout,
    stopped."""
    warnings: Sequence[str] = ()
    steps_seen: int = 0
    """Complete steps the reader delivered, in the selected modes or not."""
    reader_problems: Mapping[str, int] = field(default_factory=dict)
    """Files the reader gave up on, by reason."""
    reader_examples: Mapping[str, str] = field(default_factory=dict)
    """The reader's latest message per reason: which file, and what to change."""
    actions: Sequence[Mapping[str, Any]] = ()
    """Actions requested through action_json, recorded (not carried out by this version)."""
    resumed_from_step: int | None = None
    """The last step of the checkpoint this run resumed from, if any."""


def build_status(
    rule: ClassImbalanceRule,
    run: RunInfo,
    status: Status,
    *,
    error: str | None = None,
    now: float | None = None,
    terminal: bool = True,
) -> dict[str, Any]:
    """The status document for ``rule`` in the given state.

    ``terminal`` is False while evaluation goes on: the status is then InProgress, or
    IssuesFound once a check held (a sidecar keeps evaluating after an issue).
    """
    samples, mispredicted = rule.combined_counts()
    ratio = imbalance_ratio(samples)
    fractions = misprediction_fractions(samples, mispredicted)
    if status is Status.ISSUES_FOUND and rule.issue_step is not None:
        message = condition_met_message(rule.issue_step)
    elif status is Status.ERROR:
        message = f"ClientError: {error}" if error else "ClientError: evaluation failed"
    else:
        message = _summary_message(rule, status)
    return {
        "rule": RULE_NAME,
        "status": str(status),
        "terminal": terminal,
        "trial": run.trial,
        "last_step": rule.last_step,
        "steps_evaluated": rule.steps_evaluated,
        "samples": rule.samples,
        "issue_step": rule.issue_step,
        "findings": [
            asdict(finding) | {"classes": list(finding.classes)} for finding in rule.findings
        ],
        "classes": {
            str(c): {
                "samples": int(samples[c]),
                "mispredicted": int(mispredicted[c]),
                "misprediction_fraction": round(float(fractions[c]), 6),
            }
            for c in range(samples.size)
            if samples[c] > 0
        },
        "message": message,
        "error": error,
        "imbalance_ratio": None if ratio is None else ratio[0],
        "checks_active": rule.samples >= rule.params.samples,
        "current": {
            check: (asdict(f) | {"classes": list(f.classes)}) if f else None
            for check, f in rule.current_findings().items()
        },
        "modes": {
            mode: {"samples": counts.total} for mode, counts in sorted(rule.counts_by_mode.items())
        },
        "ignored": rule.ignored,
        "skipped": {
            "rows": dict(rule.skipped_rows),
            "batches": dict(rule.skipped_batches),
            "files": dict(run.reader_problems),
            "examples": {**run.reader_examples, **rule.problem_examples},
        },
        "steps_seen": run.steps_seen,
        "parameters": asdict(rule.params),
        "reader": run.reader,
        "selected_modes": list(run.modes) if run.modes else None,
        "ended_by": run.ended_by,
        "warnings": list(run.warnings),
        "actions": [dict(action) for action in run.actions],
        "resumed_from_step": run.resumed_from_step,
        "started_at": _iso(run.started_at),
        "updated_at": _iso(time.time() if now is None else now),
    }


def _summary_message(rule: ClassImbalanceRule, status: Status) -> str:
    counted = f"{rule.samples} labels over {rule.steps_evaluated} steps"
    if rule.samples < rule.params.samples:
        return (
            f"{counted}: fewer than samples={rule.params.samples}, so the checks have not run yet"
        )
    if status is Status.IN_PROGRESS:
        return f"{counted}: no issue so far"
    return f"{counted}: neither check held"


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def write_status(path: str, document: Mapping[str, Any]) -> None:
    """Write the document atomically, pretty enough for a person to read."""
    write_text_atomically(path, json.dumps(document, indent=2, sort_keys=False) + "\n")
