"""Checkpoints round-trip exactly and refuse to mix evaluations."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from container.checkpoint import (
    DENSE_FORMAT_VERSION,
    FORMAT_VERSION,
    Checkpoint,
    Checkpointer,
    CheckpointError,
    fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from container.config import Settings
from evaluator.core import ClassImbalanceRule, RuleParameters, WorkerBatch


def evaluated_rule(steps: int) -> ClassImbalanceRule:
    rule = ClassImbalanceRule(RuleParameters(samples=10))
    rng = np.random.default_rng(1)
    for step in range(steps):
        labels = rng.integers(0, 4, size=32)
        rule.evaluate_step(
            step, [WorkerBatch("worker_0", "TRAIN", {"labels": labels, "predictions": labels % 3})]
        )
    return rule


def test_round_trip_restores_the_rule_and_position(tmp_path: Path) -> None:
    settings = Settings.of(base_trial="t", checkpoint_file=str(tmp_path / "c.json"))
    rule = evaluated_rule(5)
    save_checkpoint(
        str(tmp_path / "c.json"), fingerprint(settings), Checkpoint(4, rule.to_state(), 5)
    )
    checkpoint = load_checkpoint(str(tmp_path / "c.json"), fingerprint(settings))
    assert checkpoint is not None
    assert checkpoint.delivered_through == 4
    restored = ClassImbalanceRule.from_state(settings.rule, checkpoint.rule_state)
    assert restored.to_state() == rule.to_state()


def test_no_checkpoint_yet_is_not_an_error(tmp_path: Path) -> None:
    assert (
        load_checkpoint(str(tmp_path / "none.json"), fingerprint(Settings.of(base_trial="t")))
        is None
    )


UNUSABLE = {
    "other parameters": (
        lambda s: s.changed(rule=RuleParameters(samples=7)),
        None,
        r"saved for another evaluation \(rule.samples: saved 500, now 7\): its counts",
    ),
    "other trial": (lambda s: s.changed(base_trial="elsewhere"), None, "trial: saved 't'"),
    "damaged file": (lambda s: s, "{not json", "cannot be read"),
    "other format": (lambda s: s, '{"format": 99}', "has format 99"),
}


@pytest.mark.parametrize("case", UNUSABLE, ids=list(UNUSABLE))
def test_unusable_checkpoints_are_refused_with_a_reason(case: str, tmp_path: Path) -> None:
    change, content, expected = UNUSABLE[case]
    path = tmp_path / "c.json"
    settings = Settings.of(base_trial="t")
    save_checkpoint(
        str(path), fingerprint(settings), Checkpoint(1, evaluated_rule(2).to_state(), 2)
    )
    if content is not None:
        path.write_text(content)
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(str(path), fingerprint(change(settings)))


def saved_before_the_binary_parameters(path: Path, settings: Settings) -> None:
    """A checkpoint as the version before binary scores and dense predictions wrote it."""
    older = fingerprint(settings)
    for added in ("binary_threshold", "binary_scores", "class_axis"):
        del older["rule"][added]
    save_checkpoint(str(path), older, Checkpoint(1, evaluated_rule(2).to_state(), 2))


def test_a_checkpoint_older_than_a_parameter_resumes_while_it_keeps_its_default(
    tmp_path: Path,
) -> None:
    path, settings = tmp_path / "c.json", Settings.of(base_trial="t")
    saved_before_the_binary_parameters(path, settings)
    checkpoint = load_checkpoint(str(path), fingerprint(settings))
    assert checkpoint is not None
    assert checkpoint.delivered_through == 1
    changed = settings.changed(rule=RuleParameters(binary_threshold=0.8))
    with pytest.raises(CheckpointError, match=r"rule\.binary_threshold: saved 0\.5, now 0\.8"):
        load_checkpoint(str(path), fingerprint(changed))


def test_a_failing_save_is_logged_once_retried_at_the_next_save_and_its_end_told(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk must not end the evaluation, nor log a line (and serialise the state) at
    every step: the first failure is said, the next try comes at the next due save, and the
    save that succeeds again is said too."""
    caplog.set_level(logging.INFO, logger="classimbalance.checkpoint")
    folder = tmp_path / "checkpoints"
    folder.write_text("")  # a file where the folder should be: every save fails
    path = folder / "c.json"
    settings = Settings.of(base_trial="t", checkpoint_file=str(path), checkpoint_every_steps=10)
    now = [0.0]
    taken: list[int] = []
    checkpointer = Checkpointer(settings.checkpoints, fingerprint(settings), clock=lambda: now[0])

    def checkpoint() -> Checkpoint:
        taken.append(1)
        return Checkpoint(1, evaluated_rule(2).to_state(), 2)

    for steps in range(1, 40):
        checkpointer.maybe_save(steps, checkpoint)
    assert len(taken) == 3, "tried at steps 10, 20 and 30, not at every step after the first"
    failures = [r for r in caplog.records if getattr(r, "event", None) == "checkpoint_failed"]
    assert len(failures) == 1
    assert failures[0].getMessage().startswith(f"cannot write the checkpoint {path}: ")
    assert "set checkpoint_file to a writable path" in failures[0].getMessage()
    folder.unlink()
    checkpointer.maybe_save(40, checkpoint)
    assert path.exists()
    (saved,) = [r for r in caplog.records if getattr(r, "event", None) == "checkpoint_saved"]
    assert "after 3 failed saves" in saved.getMessage()


def sparse_rule() -> ClassImbalanceRule:
    """A rule whose counts are sparse: a label of 999,999 beside a few small classes."""
    rule = ClassImbalanceRule(RuleParameters(samples=10))
    labels = np.array([0, 1, 2, 999_999, 2, 1], dtype=np.int64)
    rule.evaluate_step(
        0, [WorkerBatch("worker_0", "TRAIN", {"labels": labels, "predictions": labels % 3})]
    )
    assert "classes" in rule.to_state()["counts_by_mode"]["TRAIN"], "the counts are sparse"
    return rule


def saved_document(path: Path, rule: ClassImbalanceRule) -> dict[str, Any]:
    save_checkpoint(
        str(path), fingerprint(Settings.of(base_trial="t")), Checkpoint(0, rule.to_state(), 1)
    )
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def older_version_reads(document: dict[str, Any]) -> bool:
    """The check of the versions before sparse counts, which read only format 1 (and would
    take the entries of sparse counts for the classes 0..n-1)."""
    return bool(document.get("format") == 1)


def test_a_checkpoint_of_dense_counts_keeps_the_format_older_versions_read(tmp_path: Path) -> None:
    document = saved_document(tmp_path / "c.json", evaluated_rule(3))
    assert document["format"] == DENSE_FORMAT_VERSION == 1
    assert older_version_reads(document), "a rollback resumes from a dense checkpoint"


def test_a_checkpoint_of_sparse_counts_has_a_format_older_versions_refuse(tmp_path: Path) -> None:
    path, settings = tmp_path / "c.json", Settings.of(base_trial="t")
    rule = sparse_rule()
    document = saved_document(path, rule)
    assert document["format"] == FORMAT_VERSION == 2
    assert not older_version_reads(document)
    checkpoint = load_checkpoint(str(path), fingerprint(settings))
    assert checkpoint is not None
    restored = ClassImbalanceRule.from_state(settings.rule, checkpoint.rule_state)
    assert restored.to_state() == rule.to_state()


@pytest.mark.parametrize("version", [0, 3, "2", True, None])
def test_a_format_this_version_does_not_read_is_refused(version: object, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    document = saved_document(path, sparse_rule())
    path.write_text(json.dumps({**document, "format": version}))
    with pytest.raises(
        CheckpointError, match=rf"has format {re.escape(repr(version))}, expected one of 1, 2"
    ):
        load_checkpoint(str(path), fingerprint(Settings.of(base_trial="t")))


DAMAGED_IDS = {
    "negative": ([-1, 1, 2, 999_999], "within"),
    "not_increasing": ([0, 2, 1, 999_999], "but id 1 follows 2"),
    "of_2_31": ([0, 1, 2, 2**31], "within"),
}


@pytest.mark.parametrize("case", DAMAGED_IDS, ids=list(DAMAGED_IDS))
def test_a_checkpoint_of_damaged_class_ids_is_refused_as_it_is_read(
    case: str, tmp_path: Path
) -> None:
    """Refused with the file named and what to do, not when the rule is restored from it
    (a pair key of an id of 2**31 runs into the other id; a negative id indexes from the end)."""
    path = tmp_path / "c.json"
    document = saved_document(path, sparse_rule())
    classes, expected = DAMAGED_IDS[case]
    document["rule_state"]["counts_by_mode"]["TRAIN"]["classes"] = classes
    path.write_text(json.dumps(document))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(str(path), fingerprint(Settings.of(base_trial="t")))
    message = str(caught.value)
    assert message.startswith(
        f"checkpoint {path} cannot be read (ValueError: expected sparse class"
    )
    assert expected in message
    assert message.endswith("delete it to start over")


def test_a_save_that_replaced_the_checkpoint_does_not_say_the_previous_one_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="classimbalance.checkpoint")
    path = tmp_path / "c.json"
    settings = Settings.of(base_trial="t", checkpoint_file=str(path))
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        if os.readlink(f"/proc/self/fd/{descriptor}") == str(tmp_path):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(descriptor)

    monkeypatch.setattr("os.fsync", fsync)
    checkpointer = Checkpointer(settings.checkpoints, fingerprint(settings))
    checkpointer.save(2, lambda: Checkpoint(1, evaluated_rule(2).to_state(), 2))
    assert path.exists()
    (failure,) = [r for r in caplog.records if getattr(r, "event", None) == "checkpoint_failed"]
    assert f"the checkpoint {path} was replaced, but" in failure.getMessage()
    assert "the previous checkpoint stays" not in failure.getMessage()
