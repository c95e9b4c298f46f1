"""Checkpoints: the evaluation's state on disk, so a restarted evaluator neither loses a step
nor counts one twice.

A checkpoint holds the rule's additive state and the last global step delivered by the reader
(evaluated or deliberately passed over); the loop saves it only between steps, so state and
position always agree. After a restart (a restarted sidecar, or kill -9) evaluation resumes at
the next step: steps after the checkpoint are read again from the trial, which still has them.
A checkpoint made under other parameters or for another trial is refused: its counts would
silently mix two evaluations. ``Checkpointer`` decides when to save (every N steps or seconds).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from container.atomic import FileWriteError, write_text_atomically
from container.config import CheckpointSettings, Settings
from evaluator.core import Check, ClassCounts, RuleParameters, rule_checks
from evaluator.trial import TrialIdentity

log = logging.getLogger("classimbalance.checkpoint")

FORMAT_VERSION = 2
"""The format of a checkpoint some of whose counts are sparse (``ClassCounts.to_dict`` gives
them ``classes``, the id of each entry). Versions before sparse counts read only format 1 and
refuse this one (``format != 1``), rather than ignore ``classes`` and take the entries for the
classes 0..n-1."""
DENSE_FORMAT_VERSION = 1
"""The format of a checkpoint whose counts are all dense, which every version reads: still
written whenever it suffices, so that a rollback to an older version resumes from it."""
READ_FORMATS = (DENSE_FORMAT_VERSION, FORMAT_VERSION)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why and what to do."""


def fingerprint(settings: Settings, checks: Sequence[Check] = ()) -> dict[str, Any]:
    """What must not change between the run that saved a checkpoint and the one resuming it.

    The checks are named only when they are not the ones the parameters ask for, so
    checkpoints of ordinary runs stay valid across versions; a run with other checks has other
    findings. A shard's checkpoint names its shard: another shard's would mix their parts."""
    trial = settings.trial
    found: dict[str, Any] = {
        "trial": trial.base_trial,
        "rule": asdict(settings.rule),
        "modes": list(trial.modes) if trial.modes else None,
        "start_step": trial.start_step,
    }
    names = [check.name for check in checks]
    if names and names != [check.name for check in rule_checks(settings.rule)]:
        found["checks"] = names
    sharding = settings.sharding
    if sharding.emit_state is not None:  # a shard's checkpoint holds its ledger, of its parts
        found["shard"] = {
            "index": sharding.shard_index,
            "count": sharding.shard_count,
            "by": sharding.shard_by,
            "steps": sharding.shard_steps,
        }
    return found


@dataclass(frozen=True)
class Checkpoint:
    """A saved evaluation: the rule's state and the last step delivered before it."""

    delivered_through: int
    rule_state: dict[str, Any]
    steps_seen: int
    trial_identity: TrialIdentity | None = None
    """What the trial was, by its content (``TrialReader.identity``), when it was saved: a
    trial written again at the same path is another trial. None in older checkpoints."""
    actions: tuple[dict[str, Any], ...] = ()
    """What became of each action (``ActionOutcome.to_json``): a resumed evaluation does not
    repeat one that was carried out. Empty in older checkpoints."""


def save_checkpoint(path: str, identity: Mapping[str, Any], checkpoint: Checkpoint) -> None:
    """Save atomically, with the ``fingerprint`` of the evaluation it belongs to; in format 1
    unless some counts are sparse (``FORMAT_VERSION``)."""
    sparse = _has_sparse_counts(checkpoint.rule_state)
    document = {
        "format": FORMAT_VERSION if sparse else DENSE_FORMAT_VERSION,
        "fingerprint": dict(identity),
        "delivered_through": checkpoint.delivered_through,
        "steps_seen": checkpoint.steps_seen,
        "trial_identity": (
            checkpoint.trial_identity.to_json() if checkpoint.trial_identity else None
        ),
        "rule_state": checkpoint.rule_state,
        "actions": list(checkpoint.actions),
    }
    write_text_atomically(
        path,
        json.dumps(document, separators=(",", ":")),
        what="the checkpoint",
        setting="checkpoint_file",
    )


def _has_sparse_counts(rule_state: Mapping[str, Any]) -> bool:
    """Whether any mode's counts are saved sparse, with their class ids."""
    counts = rule_state.get("counts_by_mode") or {}
    return any("classes" in mode for mode in counts.values())


def load_checkpoint(path: str, identity: Mapping[str, Any]) -> Checkpoint | None:
    """The checkpoint at ``path``, None when there is none yet; CheckpointError if unusable,
    including one saved for an evaluation of another ``fingerprint``."""
    if not Path(path).exists():
        return None
    saved, checkpoint = read_checkpoint(path)
    if saved != dict(identity):
        raise CheckpointError(
            f"checkpoint {path} was saved for another evaluation "
            f"({_difference(saved, dict(identity))}): its counts "
            f"cannot be combined with these settings; delete it, or set checkpoint_file "
            f"to another path"
        )
    return checkpoint


def read_checkpoint(path: str) -> tuple[dict[str, Any], Checkpoint]:
    """(the fingerprint it was saved with, the checkpoint), whatever evaluation it belongs
    to (``classimbalance-rule report`` renders any); CheckpointError if it cannot be read."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        version = document.get("format")
        if type(version) is not int or version not in READ_FORMATS:
            raise CheckpointError(
                f"checkpoint {path} has format {version!r}, expected one of "
                f"{', '.join(map(str, READ_FORMATS))} (it was written by another version of "
                f"the evaluator): delete it to start over"
            )
        _check_counts(document["rule_state"])
        saved = _with_parameters_added_since(document["fingerprint"])
        return saved, Checkpoint(
            int(document["delivered_through"]),
            document["rule_state"],
            int(document["steps_seen"]),
            TrialIdentity.from_json(document.get("trial_identity")),
            tuple(dict(action) for action in document.get("actions", ())),
        )
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); it was not "
            f"written by this evaluator or was damaged: delete it to start over"
        ) from error


def _check_counts(rule_state: Mapping[str, Any]) -> None:
    """ValueError (``ClassCounts.from_dict``'s, which says what is wrong) when a mode's counts
    are not ones this evaluator writes, such as a negative class id or one of 2**31 or more:
    the checkpoint is refused as it is read, not when the rule is restored from it."""
    for counts in rule_state["counts_by_mode"].values():
        ClassCounts.from_dict(counts)


def _with_parameters_added_since(saved: Mapping[str, Any]) -> dict[str, Any]:
    """The saved fingerprint with every rule parameter it predates at its default: a checkpoint
    saved by the version before a parameter was added is refused only when the parameter is
    now set to something other than its default, not after every upgrade."""
    found = dict(saved)
    rule = found.get("rule")
    if isinstance(rule, Mapping):
        found["rule"] = {**asdict(RuleParameters()), **rule}
    return found


def _difference(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> str:
    """What differs, one ``name: saved X, now Y`` per value, nested maps by their keys."""
    parts = []
    for key in {**saved, **current}:
        before, now = saved.get(key), current.get(key)
        if before == now:
            continue
        if isinstance(before, Mapping) and isinstance(now, Mapping):
            parts.append(_difference(before, now, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key}: saved {before!r}, now {now!r}")
    return "; ".join(parts)


class Checkpointer:
    """Saves a checkpoint every ``every_steps`` evaluated steps or ``every_seconds``, whichever
    comes first, and when asked (at the end); does nothing without ``file``.

    A checkpoint that cannot be saved (a full disk) is not fatal: the previous one stays whole,
    the evaluation goes on, and the next save tries again. The first failure of a run of them
    is logged, and the save that succeeds after them, not every failed save in between."""

    def __init__(
        self,
        checkpoints: CheckpointSettings,
        identity: Mapping[str, Any],
        *,
        steps_evaluated: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._checkpoints = checkpoints
        self._identity = identity
        self._clock = clock
        self._last_save = clock()
        self._steps_at_save = steps_evaluated
        self._failed_saves = 0
        """Saves that failed since the last one that succeeded."""

    def maybe_save(self, steps_evaluated: int, checkpoint: Callable[[], Checkpoint]) -> None:
        """Save if enough steps or time passed since the last save."""
        if self._checkpoints.file is None:
            return
        steps = steps_evaluated - self._steps_at_save
        if steps >= self._checkpoints.every_steps or (
            steps > 0 and self._clock() - self._last_save >= self._checkpoints.every_seconds
        ):
            self.save(steps_evaluated, checkpoint)

    def save(self, steps_evaluated: int, checkpoint: Callable[[], Checkpoint]) -> None:
        """Save now (``checkpoint`` is taken only when there is a file to save it to); a
        failure is logged, never fatal (the evaluation goes on without)."""
        path = self._checkpoints.file
        if path is None:
            return
        try:
            save_checkpoint(path, self._identity, checkpoint())
        except OSError as exc:
            if not self._failed_saves:
                replaced = isinstance(exc, FileWriteError) and exc.replaced
                log.error(
                    "%s; the evaluation goes on%s, and each later save tries again",
                    exc,
                    "" if replaced else ", the previous checkpoint stays",
                    extra={"event": "checkpoint_failed"},
                )
            self._failed_saves += 1
            self._last_save = self._clock()  # the next try after the interval, not each step
            self._steps_at_save = steps_evaluated
            return
        if self._failed_saves:
            log.info(
                "checkpoint %s saved again, after %d failed saves",
                path,
                self._failed_saves,
                extra={"event": "checkpoint_saved", "failed_saves": self._failed_saves},
            )
            self._failed_saves = 0
        self._last_save = self._clock()
        self._steps_at_save = steps_evaluated
