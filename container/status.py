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
import numpy.typing as npt

from container.actions.message import shown
from container.atomic import FileWriteError, write_text_atomically
from container.snapshot import ModeCounts, Snapshot
from evaluator.core import RULE_NAME, Confusion, Finding, misprediction_fractions

IntArray = npt.NDArray[np.int64]


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
    Status.STOPPED: 4,
    Status.IN_PROGRESS: 0,
}
"""The exit code of each terminal status; a gate on it must also tell "checked and fine" (0)
from "never checked" (``NOT_CHECKED``), and an evaluation cut short (4) from either."""
NOT_CHECKED = 3
"""NoIssuesFound with fewer than ``samples`` labels counted: the checks never ran, so nothing
was found because nothing was looked at. The status stays the managed service's name
(``NoIssuesFound``), with ``checks_active: false``."""


def exit_code(status: str, checks_active: bool) -> int:
    """The code a terminal ``status`` exits with (see ``EXIT_CODES`` and ``NOT_CHECKED``)."""
    if status == Status.NO_ISSUES_FOUND and not checks_active:
        return NOT_CHECKED
    return EXIT_CODES[Status(status)]


def too_few_labels_warning(counted: int, required: int) -> str | None:
    """The run's warning when some labels but fewer than ``samples`` were counted, else None
    (an evaluation's end and a merge's say it alike)."""
    if not 0 < counted < required:
        return None
    return (
        f"only {counted} labels were counted, fewer than samples={required}: the checks never "
        f"ran; lower samples to check smaller trials"
    )


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
    """The actions configured (their outcomes come with the snapshot)."""
    resumed_from_step: int | None = None
    """The last step of the checkpoint this run resumed from, if any."""
    shard: Mapping[str, Any] | None = None
    """The shard this run evaluates and the state file it writes (``emit_state``); None for
    an evaluation of its own. A shard's verdict is its part's alone and it exits 0 (``exit_code``
    says so): the merge of every shard's state gives the trial's."""


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
    if status == Status.ISSUES_FOUND and snapshot.issue_step is not None:
        message = condition_met_message(snapshot.issue_step)
    elif status == Status.ERROR:
        message = f"ClientError: {error}" if error else "ClientError: evaluation failed"
    else:
        message = _summary_message(snapshot)
    reader = snapshot.reader
    classes = _classes(snapshot, snapshot.combined, snapshot.confusions, recent=True)
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
        "classes": classes,
        "message": message,
        "error": error,
        "exit_code": _exit_code(status, snapshot.checks_active, run) if terminal else None,
        "imbalance_ratio": snapshot.imbalance_ratio,
        "checks_active": snapshot.checks_active,
        "current": _current(snapshot, snapshot.current_findings(), snapshot.confusions),
        "modes": {mode: _mode(snapshot, mode, classes) for mode in sorted(snapshot.by_mode)},
        "recent_window": _recent_window(snapshot),
        "confusion_matrix": _matrix(snapshot),
        "history_every": snapshot.history_every,
        "history": [point.to_json() for point in snapshot.history],
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
        "trial_found": snapshot.progress.trial_found,
        "parameters": asdict(snapshot.params),
        "reader": run.reader,
        "selected_modes": list(run.modes) if run.modes else None,
        "ended_by": run.ended_by,
        "warnings": list(run.warnings),
        "actions": _actions(snapshot, run),
        "resumed_from_step": run.resumed_from_step,
        "shard": dict(run.shard) if run.shard is not None else None,
        "started_at": _iso(run.started_at),
        "updated_at": _iso(time.time() if now is None else now),
    }


def _exit_code(status: str, checks_active: bool, run: RunInfo) -> int:
    if run.shard is not None and status in {Status.ISSUES_FOUND, Status.NO_ISSUES_FOUND}:
        return 0  # its state is written; the verdict is the merge's
    return exit_code(status, checks_active)


def _actions(snapshot: Snapshot, run: RunInfo) -> list[dict[str, Any]]:
    """Each action's outcome, a webhook's URL without the path that holds its token."""
    outcomes = snapshot.reported_actions(run.actions)
    for outcome in outcomes:
        if "url" in outcome["action"]:
            outcome["action"] = {**outcome["action"], "url": shown(outcome["action"]["url"])}
    return outcomes


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


CONFUSED_CLASSES_SHOWN = 20
"""Classes of a current finding whose top confusions are listed beside it."""


def _named(snapshot: Snapshot, index: int) -> dict[str, Any]:
    name = snapshot.class_name(index)
    return {} if name is None else {"name": name}


def _mistaken_for(
    snapshot: Snapshot, confusions: Mapping[int, tuple[Confusion, ...]], index: int
) -> list[dict[str, Any]]:
    """What a class was most often predicted as: class (and name), count, fraction of its
    samples."""
    return [
        {"class": c.predicted, **_named(snapshot, c.predicted), "count": c.count}
        | {"fraction": round(c.fraction, 6)}
        for c in confusions.get(index, ())
    ]


def _classes(
    snapshot: Snapshot,
    counts: ModeCounts,
    confusions: Mapping[int, tuple[Confusion, ...]],
    *,
    recent: bool = False,
) -> dict[str, dict[str, Any]]:
    """The per-class table, keyed by class index (classes with a sample only, however sparse
    their indices): counts, fraction, what each class is mistaken for, and its counts over the
    recent window when one is kept (over the same entries as the combined counts)."""
    samples, mispredicted = counts.samples, counts.mispredicted
    fractions = misprediction_fractions(samples, mispredicted)
    window = snapshot.recent if recent else None
    table: dict[str, dict[str, Any]] = {}
    for column in np.flatnonzero(samples).tolist():
        c = counts.class_at(column)
        entry: dict[str, Any] = {
            **_named(snapshot, c),
            "samples": int(samples[column]),
            "mispredicted": int(mispredicted[column]),
            "misprediction_fraction": round(float(fractions[column]), 6),
            "mistaken_for": _mistaken_for(snapshot, confusions, c),
        }
        if window is not None:
            count, wrong = int(window.samples[column]), int(window.mispredicted[column])
            entry["recent"] = {
                "samples": count,
                "mispredicted": wrong,
                "misprediction_fraction": round(wrong / count, 6) if count else None,
            }
        table[str(c)] = entry
    return table


def _current(
    snapshot: Snapshot,
    current: Mapping[str, Finding | None],
    confusions: Mapping[int, tuple[Confusion, ...]],
) -> dict[str, Any]:
    """Each check's finding now, with what its classes are mistaken for."""
    described: dict[str, Any] = {}
    for check, finding in current.items():
        if finding is None:
            described[check] = None
            continue
        shown = finding.classes[:CONFUSED_CLASSES_SHOWN]
        described[check] = _finding(finding) | {
            "mistaken_for": {str(c): _mistaken_for(snapshot, confusions, c) for c in shown}
        }
    return described


def _mode(snapshot: Snapshot, mode: str, combined: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One mode's own figures and verdicts (the combined ones decide the status); the only
    mode's table is the combined one, less the recent window's counts."""
    counts = snapshot.by_mode[mode]
    verdict = snapshot.mode_findings(mode)
    if len(snapshot.by_mode) == 1:
        table = {c: {k: v for k, v in e.items() if k != "recent"} for c, e in combined.items()}
    else:
        table = _classes(snapshot, counts, counts.confusions)
    return {
        "samples": verdict.samples,
        "imbalance_ratio": verdict.imbalance_ratio,
        "checks_active": verdict.checks_active,
        "holds": dict(verdict.holds),
        "current": _current(snapshot, verdict.current, counts.confusions),
        "classes": table,
    }


def _matrix(snapshot: Snapshot) -> dict[str, Any]:
    """The confusion matrix of the classes that matter: rows are labels, columns predictions,
    ``other`` the predictions outside it."""
    matrix = snapshot.confusion_matrix
    return {
        "classes": list(matrix.classes),
        "counts": [list(row) for row in matrix.counts],
        "other": list(matrix.other),
    }


def _recent_window(snapshot: Snapshot) -> dict[str, Any] | None:
    recent = snapshot.recent
    if recent is None:
        return None
    return {
        "window_steps": snapshot.params.window_steps,
        "steps": int(recent.steps),
        "previous_steps": int(recent.previous_steps),
        "samples": int(recent.samples.sum()),
    }


def _summary_message(snapshot: Snapshot) -> str:
    if not snapshot.progress.trial_found and snapshot.status == Status.IN_PROGRESS:
        return (
            f"waiting for the trial at {snapshot.trial}: it does not exist yet (the training "
            f"job has not written it, or base_trial is wrong)"
        )
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


def readable_json(value: Any, indent: str = "", depth: int = 0) -> str:
    """JSON with a line per member of the document, of its lists and of its tables (objects
    that hold objects: ``classes``, ``modes``, ``current``), and every other value on one line
    (a class's entry, a finding): as easy to read and to diff as indented JSON at a fraction of
    its cost. ``json.dumps(indent=...)`` runs the pure-Python encoder over every value; here
    Python walks only the tables and each line is encoded in C."""
    expand = (
        isinstance(value, dict)
        and value
        and (depth == 0 or any(isinstance(v, dict) for v in value.values()))
    ) or (isinstance(value, list) and depth == 1 and any(isinstance(v, dict | list) for v in value))
    if not expand:
        return json.dumps(value, separators=(", ", ": "))
    inner = indent + "  "
    if isinstance(value, dict):
        members = [
            f"{inner}{json.dumps(k)}: {readable_json(v, inner, depth + 1)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(members) + "\n" + indent + "}"
    items = [f"{inner}{readable_json(v, inner, depth + 1)}" for v in value]
    return "[\n" + ",\n".join(items) + "\n" + indent + "]"


class StatusFileError(FileWriteError):
    """The status file cannot be written: the run ends, since what it decides would reach no
    one (the previous status file stays whole); other outputs' failures are only logged."""


def write_status(path: str, document: Mapping[str, Any]) -> None:
    """Write the document atomically, pretty enough for a person to read; StatusFileError
    (which file, the system's reason, what to change) when it cannot be written."""
    write_text_atomically(
        path,
        readable_json(dict(document)) + "\n",
        what="the status file",
        setting="status_file",
        error=StatusFileError,
    )
