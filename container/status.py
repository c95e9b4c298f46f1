"""The status file: the evaluation's state as JSON, for people, scripts and the managed service.

Field names are a contract (documented in the README): ``rule``, ``status``, ``trial``,
``last_step``, ``steps_evaluated``, ``samples``, ``issue_step``, ``findings``, ``classes``,
``message``, ``error``; the rest adds detail. The document is built from the same ``Snapshot`` as
the metrics, so the two always agree and building it never changes the evaluation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from container.atomic import write_text_atomically
from container.snapshot import Snapshot
from evaluator.core import RULE_NAME, Finding


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
    """What the runtime knows of the run beyond the snapshot: its settings and how it ended."""

    trial: str
    reader: str
    modes: Sequence[str] | None
    started_at: float
    ended_by: str | None = None
    """Why evaluation ended: end_of_training, end_step, once, first_issue, idle_timeout,
    stopped."""
    warnings: Sequence[str] = ()
    actions: Sequence[Mapping[str, Any]] = ()
    """Actions requested through action_json, recorded (not carried out by this version)."""
    resumed_from_step: int | None = None
    """The last step of the checkpoint this run resumed from, if any."""


def build_status(
    snapshot: Snapshot,
    run: RunInfo,
    *,
    error: str | None = None,
    now: float | None = None,
    terminal: bool = True,
) -> dict[str, Any]:
    """The status document for one snapshot (whose ``status`` it reports).

    ``terminal`` is False while evaluation goes on: the status is then InProgress, or
    IssuesFound once a check held (a sidecar keeps evaluating after an issue).
    """
    status = snapshot.status
    samples, mispredicted = snapshot.combined.samples, snapshot.combined.mispredicted
    fractions = snapshot.fractions
    if status == Status.ISSUES_FOUND and snapshot.issue_step is not None:
        message = condition_met_message(snapshot.issue_step)
    elif status == Status.ERROR:
        message = f"ClientError: {error}" if error else "ClientError: evaluation failed"
    else:
        message = _summary_message(snapshot)
    reader = snapshot.reader
    return {
        "rule": RULE_NAME,
        "status": str(status),
        "terminal": terminal,
        "trial": run.trial,
        "last_step": snapshot.last_step,
        "steps_evaluated": snapshot.steps_evaluated,
        "samples": snapshot.samples,
        "issue_step": snapshot.issue_step,
        "findings": [_finding(finding) for finding in snapshot.findings],
        "classes": {
            str(c): {
                "samples": int(samples[c]),
                "mispredicted": int(mispredicted[c]),
                "misprediction_fraction": round(float(fractions[c]), 6),
            }
            for c in np.flatnonzero(samples).tolist()
        },
        "message": message,
        "error": error,
        "imbalance_ratio": snapshot.imbalance_ratio,
        "checks_active": snapshot.checks_active,
        "current": {
            check: _finding(finding) if finding else None
            for check, finding in snapshot.current_findings().items()
        },
        "modes": {
            mode: {"samples": int(counts.samples.sum())}
            for mode, counts in sorted(snapshot.by_mode.items())
        },
        "ignored": snapshot.ignored,
        "skipped": {
            "rows": dict(snapshot.skipped_rows),
            "batches": dict(snapshot.skipped_batches),
            "files": dict(reader.skipped_files),
            "examples": _examples(snapshot),
        },
        "reader_notices": dict(reader.notices),
        "incomplete_steps": {
            "count": reader.incomplete_step_count,
            "steps": [
                {"step": step, "missing_workers": list(missing)}
                for step, missing in reader.incomplete_steps
            ],
        },
        "steps_seen": snapshot.progress.steps_seen,
        "parameters": asdict(snapshot.params),
        "reader": run.reader,
        "selected_modes": list(run.modes) if run.modes else None,
        "ended_by": run.ended_by,
        "warnings": list(run.warnings),
        "actions": [dict(action) for action in run.actions],
        "resumed_from_step": run.resumed_from_step,
        "started_at": _iso(run.started_at),
        "updated_at": _iso(time.time() if now is None else now),
    }


def _examples(snapshot: Snapshot) -> dict[str, str]:
    """The latest message per reason, the rule's (rows and batches) and the reader's (files and
    notices); a reason both found as a file given up on and as a batch skipped (a file that went
    missing before it was listed, another after) keeps the file's example as ``files/REASON``."""
    examples = dict(snapshot.problem_examples)
    for reason, message in snapshot.reader.examples.items():
        examples[f"files/{reason}" if reason in examples else reason] = message
    return examples


def _finding(finding: Finding) -> dict[str, Any]:
    return asdict(finding) | {"classes": list(finding.classes)}


def _summary_message(snapshot: Snapshot) -> str:
    counted = f"{snapshot.samples} labels over {snapshot.steps_evaluated} steps"
    if not snapshot.checks_active:
        return (
            f"{counted}: fewer than samples={snapshot.samples_required}, so the checks have not "
            f"run yet"
        )
    if snapshot.status == Status.IN_PROGRESS:
        return f"{counted}: no issue so far"
    return f"{counted}: no check held"


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def write_status(path: str, document: Mapping[str, Any]) -> None:
    """Write the document atomically, pretty enough for a person to read."""
    write_text_atomically(path, json.dumps(document, indent=2, sort_keys=False) + "\n")
