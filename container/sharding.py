"""Shard states: what one shard of a parallel evaluation writes for ``classimbalance-rule merge``.

A state is a checkpoint with more in it: the rule's state with its ledger of per-step class
counts (``evaluator.core.ledger``), the shard it covers (a step range, shard I of N), what the
reader could not use, and the identity of the trial and of the evaluation (parameters, modes,
checks), so that the merge refuses states of different trials or parameters, or a set of
shards with one missing or given twice. Written atomically, once, at the end of the shard's
evaluation: a state that exists is a whole shard.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from container.atomic import write_text_atomically
from container.config import Settings
from evaluator.trial import PartSelection, ReaderProblems, TrialIdentity

STATE_FORMAT = "classimbalance-rule shard state"
STATE_VERSION = 2
"""Version 2: a rule state's counts may be sparse (their class ids beside them). Mergers before
it read only version 1 and refuse this one, rather than take sparse entries for the classes
0..n-1; this version still reads version 1 (dense counts only)."""
READ_VERSIONS = (1, STATE_VERSION)


class StateError(ValueError):
    """A shard state that cannot be read or merged; the message says why and what to do."""


def part_selection(settings: Settings) -> PartSelection:
    """The parts of the trial these settings evaluate: their step range and shard."""
    trial, sharding = settings.trial, settings.sharding
    return PartSelection(
        start_step=trial.start_step,
        end_step=trial.end_step,
        shard_index=sharding.shard_index,
        shard_count=sharding.shard_count,
        by=sharding.shard_by,
        block_steps=sharding.shard_steps,
    )


def shard_info(settings: Settings) -> dict[str, Any] | None:
    """What the status file says of the shard (``RunInfo.shard``); None when not a shard."""
    path = settings.sharding.emit_state
    if path is None:
        return None
    selection = part_selection(settings)
    return {
        "state_file": path,
        "index": selection.shard_index,
        "count": selection.shard_count,
        "by": selection.by,
        "shard_steps": selection.block_steps,
        "start_step": selection.start_step,
        "end_step": selection.end_step,
        "described": selection.describe(),
    }


@dataclass(frozen=True)
class ShardState:
    """One shard's state file, read."""

    path: str
    evaluation: dict[str, Any]
    """What must be the same in every state of one merge: the trial, the rule's parameters,
    the modes, the checks (``checkpoint.fingerprint`` without the step range)."""
    selection: PartSelection
    rule_state: dict[str, Any]
    trial_identity: TrialIdentity | None
    reader: ReaderProblems
    steps_seen: int
    ended_by: str | None
    warnings: tuple[str, ...] = ()
    tensor_names: tuple[str, ...] = ()
    version: str = ""
    """The evaluator's version that wrote it."""


def save_state(path: str, state: ShardState) -> None:
    selection = state.selection
    document = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "written_by": state.version,
        "evaluation": state.evaluation,
        "shard": {
            "start_step": selection.start_step,
            "end_step": selection.end_step,
            "index": selection.shard_index,
            "count": selection.shard_count,
            "by": selection.by,
            "steps": selection.block_steps,
        },
        "trial_identity": state.trial_identity.to_json() if state.trial_identity else None,
        "steps_seen": state.steps_seen,
        "ended_by": state.ended_by,
        "warnings": list(state.warnings),
        "tensor_names": list(state.tensor_names),
        "reader": problems_to_json(state.reader),
        "rule_state": state.rule_state,
    }
    write_text_atomically(
        path,
        json.dumps(document, separators=(",", ":")),
        what="the shard state",
        setting="emit_state",
    )


def read_state(path: str) -> ShardState:
    """The state at ``path``; StateError if it is missing, damaged or not a shard state."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise StateError(
            f"shard state {path} does not exist: its shard has not finished, or failed (see its "
            f"status file and log); run that shard again"
        ) from error
    except (OSError, ValueError) as error:
        raise StateError(f"shard state {path} cannot be read ({error})") from error
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        raise StateError(
            f"expected {path} to be a shard state written with --emit-state, but it is not one "
            f"(a status file or a checkpoint?)"
        )
    version = document.get("version")
    if type(version) is not int or version not in READ_VERSIONS:
        raise StateError(
            f"shard state {path} has version {version!r}, expected one of "
            f"{', '.join(map(str, READ_VERSIONS))}: evaluate its shard again with this version"
        )
    try:
        shard = document["shard"]
        return ShardState(
            path=path,
            evaluation=dict(document["evaluation"]),
            selection=PartSelection(
                start_step=shard["start_step"],
                end_step=shard["end_step"],
                shard_index=int(shard["index"]),
                shard_count=int(shard["count"]),
                by=shard["by"],
                block_steps=int(shard["steps"]),
            ),
            rule_state=dict(document["rule_state"]),
            trial_identity=TrialIdentity.from_json(document.get("trial_identity")),
            reader=problems_from_json(document.get("reader") or {}),
            steps_seen=int(document["steps_seen"]),
            ended_by=document.get("ended_by"),
            warnings=tuple(str(w) for w in document.get("warnings", ())),
            tensor_names=tuple(str(n) for n in document.get("tensor_names", ())),
            version=str(document.get("written_by", "")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise StateError(
            f"shard state {path} is damaged ({type(error).__name__}: {error}): evaluate its "
            f"shard again"
        ) from error


def problems_to_json(problems: ReaderProblems) -> dict[str, Any]:
    return {
        "skipped_files": dict(problems.skipped_files),
        "notices": dict(problems.notices),
        "examples": dict(problems.examples),
        "incomplete_steps": [[step, list(missing)] for step, missing in problems.incomplete_steps],
        "incomplete_step_count": problems.incomplete_step_count,
    }


def problems_from_json(data: Mapping[str, Any]) -> ReaderProblems:
    return ReaderProblems(
        skipped_files={str(k): int(v) for k, v in data.get("skipped_files", {}).items()},
        notices={str(k): int(v) for k, v in data.get("notices", {}).items()},
        examples={str(k): str(v) for k, v in data.get("examples", {}).items()},
        incomplete_steps=tuple(
            (int(step), tuple(str(w) for w in missing))
            for step, missing in data.get("incomplete_steps", ())
        ),
        incomplete_step_count=int(data.get("incomplete_step_count", 0)),
    )


def merged_problems(parts: Sequence[ReaderProblems], kept: int) -> ReaderProblems:
    """What the readers of every shard could not use: counts add (each part of the trial was
    read by one shard, and each incomplete step reported by one), examples by reason, the
    first ``kept`` incomplete steps."""
    skipped: dict[str, int] = {}
    notices: dict[str, int] = {}
    examples: dict[str, str] = {}
    incomplete: dict[int, set[str]] = {}
    for part in parts:
        for reason, count in part.skipped_files.items():
            skipped[reason] = skipped.get(reason, 0) + count
        for reason, count in part.notices.items():
            notices[reason] = notices.get(reason, 0) + count
        examples.update(part.examples)
        for step, missing in part.incomplete_steps:
            incomplete.setdefault(step, set()).update(missing)
    return ReaderProblems(
        skipped_files=skipped,
        notices=notices,
        examples=examples,
        incomplete_steps=tuple(
            (step, tuple(sorted(incomplete[step]))) for step in sorted(incomplete)[:kept]
        ),
        incomplete_step_count=sum(part.incomplete_step_count for part in parts),
    )
