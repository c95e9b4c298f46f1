"""One evaluation from settings to verdict: resume, step range, retries, managed outputs."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from container.app import Runtime, run
from container.config import Settings
from container.status import Status
from container.stopping import StopRequest
from devtools.write_trial import end_training, export_collections, write_step
from evaluator.core import RuleParameters
from tests.container.lingering import lingering_run
from tests.container.trials import scores_batch, write_trial


def settings_for(trial: Path, tmp_path: Path, **changes: object) -> Settings:
    base = Settings.of(
        base_trial=str(trial),
        status_file=str(tmp_path / "status.json"),
        rule=RuleParameters(argmax=True),
        metrics_enabled=False,
        poll_interval=0.02,
        idle_timeout=30,
        read_retry_delay=0.05,
    )
    return base.changed(**changes)  # type: ignore[arg-type]


def test_managed_service_files_are_written_when_their_folders_exist(tmp_path: Path) -> None:
    trial = write_trial(tmp_path / "trial", steps=20, make_batch=scores_batch([30, 5, 1], 40))
    managed = tmp_path / "opt-ml"
    (managed / "output").mkdir(parents=True)
    (managed / "processing" / "output" / "rule").mkdir(parents=True)
    outcome = run(settings_for(trial.path, tmp_path), Runtime(managed_root=str(managed)))
    assert outcome.status is Status.ISSUES_FOUND
    message = (managed / "output" / "message").read_text()
    assert message.startswith(
        "RuleEvaluationConditionMet: Evaluation of the rule ClassImbalance at step "
    )
    assert len(message.encode()) <= 1024
    report = json.loads((managed / "processing/output/rule/ClassImbalance.json").read_text())
    assert report["status"] == "IssuesFound"
    assert report["classes"] == outcome.document["classes"]


def test_no_managed_files_without_their_folders(tmp_path: Path) -> None:
    trial = write_trial(tmp_path / "trial", steps=2, make_batch=scores_batch([1, 1]))
    managed = tmp_path / "opt-ml"
    run(settings_for(trial.path, tmp_path), Runtime(managed_root=str(managed)))
    assert not managed.exists()


def test_resuming_from_a_checkpoint_counts_every_step_once(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    make = scores_batch([3, 2, 1], batch=16)
    rng = np.random.default_rng(3)
    export_collections(str(trial), "worker_0", 1)
    expected = np.zeros(3, dtype=np.int64)

    def add_steps(steps: range) -> None:
        for step in steps:
            labels, scores = make(rng, step)
            expected[:] += np.bincount(labels, minlength=3)
            write_step(str(trial), step, "worker_0", {"labels": labels, "predictions": scores})

    checkpoint = tmp_path / "state" / "checkpoint.json"
    settings = settings_for(
        trial, tmp_path, checkpoint_file=str(checkpoint), checkpoint_every_steps=3
    )
    add_steps(range(7))
    first = run(settings.changed(once=True))
    assert first.document["steps_evaluated"] == 7
    add_steps(range(7, 12))
    end_training(str(trial))
    second = run(settings)
    assert second.document["resumed_from_step"] == 6
    assert second.document["steps_evaluated"] == 12
    counted = [second.document["classes"][str(c)]["samples"] for c in range(3)]
    assert counted == expected.tolist()


def test_a_checkpoint_of_other_settings_is_an_error(tmp_path: Path) -> None:
    trial = write_trial(tmp_path / "trial", steps=3, make_batch=scores_batch([1, 1]))
    settings = settings_for(trial.path, tmp_path, checkpoint_file=str(tmp_path / "c.json"))
    assert run(settings).status is Status.NO_ISSUES_FOUND
    changed = settings.changed(rule=RuleParameters(argmax=True, samples=3))
    outcome = run(changed)
    assert outcome.status is Status.ERROR
    assert "saved for another evaluation" in outcome.document["error"]


def test_start_and_end_step_bound_the_evaluation(tmp_path: Path) -> None:
    trial = write_trial(tmp_path / "trial", steps=10, make_batch=scores_batch([1, 1], 8))
    outcome = run(
        settings_for(
            trial.path,
            tmp_path,
            start_step=2,
            end_step=6,
            rule=RuleParameters(argmax=True, samples=0),
        )
    )
    assert outcome.document["steps_evaluated"] == 4
    assert outcome.document["last_step"] == 5
    assert outcome.document["samples"] == 4 * 8
    assert outcome.document["ended_by"] == "end_step"


def test_an_event_file_that_arrives_late_is_read_on_retry(tmp_path: Path) -> None:
    trial = write_trial(tmp_path / "trial", steps=3, make_batch=scores_batch([1, 1], 8))
    event = next((trial.path / "events").rglob("000000000001_worker_0.tfevents"))
    hidden = event.with_suffix(".hidden")
    os.replace(event, hidden)
    timer = threading.Timer(0.15, os.replace, (hidden, event))
    timer.start()
    outcome = run(settings_for(trial.path, tmp_path, rule=RuleParameters(argmax=True, samples=0)))
    timer.join()
    assert outcome.document["samples"] == 3 * 8
    assert outcome.document["skipped"]["batches"] == {}


def test_an_event_file_that_never_arrives_is_skipped_with_its_reason(tmp_path: Path) -> None:
    trial = write_trial(tmp_path / "trial", steps=3, make_batch=scores_batch([1, 1], 8))
    next((trial.path / "events").rglob("000000000001_worker_0.tfevents")).unlink()
    outcome = run(
        settings_for(
            trial.path, tmp_path, read_retries=2, rule=RuleParameters(argmax=True, samples=0)
        )
    )
    assert outcome.document["samples"] == 2 * 8
    # Found missing when the step was listed (each part is loaded from its event file alone),
    # retried on later polls, then left out of its step with the reason.
    assert outcome.document["skipped"]["files"] == {"missing_event_file": 1}
    assert (
        "000000000001_worker_0.tfevents"
        in (outcome.document["skipped"]["examples"]["missing_event_file"])
    )


def test_a_stop_request_ends_with_status_stopped(tmp_path: Path) -> None:
    trial = write_trial(tmp_path / "trial", steps=2, make_batch=scores_batch([1, 1]), end=False)
    stop = StopRequest()
    threading.Timer(0.2, stop.set).start()
    outcome = run(settings_for(trial.path, tmp_path, idle_timeout=None), Runtime(stop=stop))
    assert outcome.status is Status.STOPPED
    assert outcome.document["ended_by"] == "stopped"
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "Stopped"


def test_lingering_keeps_the_verdict_on_metrics_until_stopped(tmp_path: Path) -> None:
    trial = write_trial(tmp_path / "trial", steps=20, make_batch=scores_batch([30, 5, 1], 40))
    with lingering_run(settings_for(trial.path, tmp_path), Runtime()) as lingering:
        time.sleep(0.2)
        assert lingering.runner.is_alive(), "still serving after the verdict"
        base = f"http://127.0.0.1:{lingering.port}"
        metrics = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        assert 'classimbalance_status{classimbalance_status="IssuesFound"} 1.0' in metrics
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"{base}/readyz", timeout=5)
        assert not_ready.value.code == 503
        assert urllib.request.urlopen(f"{base}/healthz", timeout=5).status == 200
    outcomes = lingering.outcomes
    assert outcomes[0].status is Status.ISSUES_FOUND, "the verdict, not Stopped"


def test_one_tensor_for_both_regexes_is_smdebugs_own_unit_test(tmp_path: Path) -> None:
    """smdebug's test of this rule: step 3 of worker algo-1 saves labels_0 (990 zeros, 10 ones)
    and both regexes name it; with every other parameter at its default the imbalance check
    fires at step 3 (990 / 10 = 99 > 10) and nothing is mispredicted."""
    trial = tmp_path / "trial"
    export_collections(str(trial), "algo-1", 1, ("labels_0",))
    labels = np.r_[np.zeros(990, dtype=np.int64), np.ones(10, dtype=np.int64)]
    write_step(str(trial), 3, "algo-1", {"labels_0": labels})
    end_training(str(trial))
    settings = settings_for(trial, tmp_path).changed(
        rule=RuleParameters(labels_regex="labels_0", predictions_regex="labels_0")
    )
    outcome = run(settings)
    assert outcome.status is Status.ISSUES_FOUND
    assert outcome.document["issue_step"] == 3
    (finding,) = outcome.document["findings"]
    assert (finding["check"], finding["value"]) == ("imbalance", 99.0)
    assert outcome.document["classes"]["1"]["mispredicted"] == 0


def test_reductions_are_never_counted_as_tensors(tmp_path: Path) -> None:
    """A hook with ReductionConfig(save_raw_tensor=True) writes smdebug/reductions/<r>/<name>
    records beside the raw tensors; a regex that matches the name matches the raw tensor only."""
    trial = tmp_path / "trial"
    export_collections(
        str(trial), "worker_0", 1, ("CrossEntropyLoss_input_0", "CrossEntropyLoss_input_1")
    )
    rng = np.random.default_rng(5)
    for step in range(4):
        labels = rng.integers(0, 3, 64)
        logits = rng.standard_normal((64, 3)).astype(np.float32)
        write_step(
            str(trial),
            step,
            "worker_0",
            {
                "CrossEntropyLoss_input_0": logits,
                "smdebug/reductions/max/CrossEntropyLoss_input_0": np.float32(logits.max()),
                "CrossEntropyLoss_input_1": labels,
                "smdebug/reductions/max/CrossEntropyLoss_input_1": np.int64(labels.max()),
                "smdebug/reductions/abs_l2_norm/CrossEntropyLoss_input_1": np.float32(3.0),
            },
        )
    end_training(str(trial))
    rule = RuleParameters(
        argmax=True,
        samples=0,
        labels_regex="CrossEntropyLoss_input_1",
        predictions_regex="CrossEntropyLoss_input_0",
    )
    outcome = run(settings_for(trial, tmp_path).changed(rule=rule))
    assert outcome.status in {Status.NO_ISSUES_FOUND, Status.ISSUES_FOUND}
    assert outcome.document["samples"] == 4 * 64
    assert outcome.document["skipped"]["batches"] == {}


def test_a_step_with_only_other_tensors_is_neither_evaluated_nor_skipped(tmp_path: Path) -> None:
    """TF2's GradientTape hook leaves the last step with only the loss."""
    trial = write_trial(tmp_path / "trial", steps=3, make_batch=scores_batch([1, 1], 8), end=False)
    write_step(str(trial.path), 3, "worker_0", {"loss": np.float32(0.25)})
    end_training(str(trial.path))
    outcome = run(settings_for(trial.path, tmp_path, rule=RuleParameters(argmax=True, samples=0)))
    assert outcome.status is Status.NO_ISSUES_FOUND
    assert (outcome.document["steps_evaluated"], outcome.document["last_step"]) == (3, 2)
    assert outcome.document["steps_seen"] == 4
    assert outcome.document["skipped"]["batches"] == {}


def test_a_regex_that_matches_nothing_is_named_when_no_step_has_a_wanted_tensor(
    tmp_path: Path,
) -> None:
    trial = write_trial(tmp_path / "trial", steps=3, make_batch=scores_batch([1, 1], 8))
    rule = RuleParameters(argmax=True, labels_regex="^y$", predictions_regex="^y_hat$")
    outcome = run(settings_for(trial.path, tmp_path, rule=rule))
    assert outcome.status is Status.ERROR
    assert "no tensor in the trial matches labels_regex '^y$'" in outcome.document["error"]
    assert "labels, predictions" in outcome.document["error"]


def test_a_checkpoint_of_a_trial_written_again_at_the_same_path_is_refused(tmp_path: Path) -> None:
    """The Kubernetes Job layout: the checkpoint lives on the claim; the trial is deleted and a
    new, balanced one written at the same path. Its counts must not be merged with the old."""
    path = tmp_path / "trial"
    write_trial(path, steps=20, make_batch=scores_batch([30, 5, 1], 40))
    settings = settings_for(path, tmp_path, checkpoint_file=str(tmp_path / "c.json"))
    assert run(settings).status is Status.ISSUES_FOUND
    shutil.rmtree(path)
    write_trial(path, steps=20, make_batch=scores_batch([1, 1, 1], 40), seed=9)
    outcome = run(settings)
    assert outcome.status is Status.ERROR
    assert "was saved for another trial" in outcome.document["error"]
    assert "delete the checkpoint" in outcome.document["error"]
    (tmp_path / "c.json").unlink()
    assert run(settings).status is Status.NO_ISSUES_FOUND


def test_a_restarted_evaluation_of_the_same_trial_resumes(tmp_path: Path) -> None:
    trial = write_trial(tmp_path / "trial", steps=6, make_batch=scores_batch([30, 5, 1], 40))
    settings = settings_for(trial.path, tmp_path, checkpoint_file=str(tmp_path / "c.json"))
    first = run(settings)
    again = run(settings)
    assert again.document["resumed_from_step"] == 5
    assert again.document["classes"] == first.document["classes"]
    saved = json.loads((tmp_path / "c.json").read_text())
    assert len(saved["trial_identity"]["digest"]) == 32
    assert saved["trial_identity"]["keys"] == [
        "collections/000000000/worker_0_collections.json",
        "events/000000000000/000000000000_worker_0.tfevents",
    ]


def write_pairs(
    trial: Path, steps: list[tuple[np.ndarray, np.ndarray]], names: tuple[str, str]
) -> None:
    """One worker's steps, written with smdebug's FileWriter as a hook writes them."""
    export_collections(str(trial), "worker_0", 1, names)
    for step, (labels, predictions) in enumerate(steps):
        write_step(
            str(trial), step, "worker_0", dict(zip(names, (labels, predictions), strict=True))
        )
    end_training(str(trial))


def class_counts(document: dict[str, object], classes: int) -> tuple[list[int], list[int]]:
    table = document["classes"]
    assert isinstance(table, dict)
    return (
        [table.get(str(c), {}).get("samples", 0) for c in range(classes)],
        [table.get(str(c), {}).get("mispredicted", 0) for c in range(classes)],
    )


def test_a_keras_sigmoid_model_with_column_labels(tmp_path: Path) -> None:
    """SageMaker's TF build logs smdebug_y and smdebug_y_pred: (B, 1) float labels and (B, 1)
    sigmoid probabilities; the first batch's scores all in [0, 1] decide probabilities."""
    rng = np.random.default_rng(21)
    steps = []
    for _ in range(4):
        labels = (rng.random((16, 1)) < 0.2).astype(np.float32)
        steps.append(
            (labels, np.clip(labels * 0.6 + rng.random((16, 1)) * 0.5, 0, 1).astype(np.float32))
        )
    write_pairs(tmp_path / "trial", steps, ("smdebug_y", "smdebug_y_pred"))
    rule = RuleParameters(samples=0, labels_regex="smdebug_y$", predictions_regex="smdebug_y_pred")
    outcome = run(settings_for(tmp_path / "trial", tmp_path).changed(rule=rule))
    labels = np.concatenate([batch for batch, _ in steps]).reshape(-1).astype(int)
    predicted = (np.concatenate([p for _, p in steps]).reshape(-1) > 0.5).astype(int)
    expected = (
        np.bincount(labels, minlength=2).tolist(),
        np.bincount(labels[labels != predicted], minlength=2).tolist(),
    )
    assert class_counts(outcome.document, 2) == expected
    assert outcome.document["skipped"]["batches"] == {}


def test_binary_logits_that_later_lie_in_0_1_stay_logits(tmp_path: Path) -> None:
    rng = np.random.default_rng(22)
    first = (rng.integers(0, 2, 32), rng.standard_normal(32).astype(np.float32) * 3)
    inside = (np.array([0, 0, 1, 1]), np.array([0.1, 0.3, 0.6, 0.9], dtype=np.float32))
    write_pairs(tmp_path / "trial", [first, inside], ("labels", "predictions"))
    outcome = run(settings_for(tmp_path / "trial", tmp_path, rule=RuleParameters(samples=0)))
    labels = np.concatenate([first[0], inside[0]])
    predicted = (np.concatenate([first[1], inside[1]]) > 0).astype(int)  # logits: above 0
    assert class_counts(outcome.document, 2) == (
        np.bincount(labels, minlength=2).tolist(),
        np.bincount(labels[labels != predicted], minlength=2).tolist(),
    )


def test_dense_segmentation_and_padded_tokens_count_every_labelled_element(tmp_path: Path) -> None:
    """A segmentation model's (B, C, H, W) logits against (B, H, W) masks, and a tagger's
    (B, T, C) logits against -100-padded (B, T) labels, each a trial of its own."""
    rng = np.random.default_rng(23)
    masks = rng.integers(0, 3, (2, 5, 6))
    logits = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    tags = rng.integers(0, 4, (3, 7))
    tags[1, 4:] = -100
    tag_logits = rng.standard_normal((3, 7, 4)).astype(np.float32)
    for name, (labels, scores, predicted) in {
        "segmentation": (masks, logits, logits.argmax(axis=1)),
        "tagging": (tags, tag_logits, tag_logits.argmax(axis=-1)),
    }.items():
        trial = tmp_path / name
        write_pairs(trial, [(labels, scores)], ("labels", "predictions"))
        out = tmp_path / f"{name}-out"
        out.mkdir()
        outcome = run(settings_for(trial, out))
        keep = labels.reshape(-1) != -100
        flat, guess = labels.reshape(-1)[keep], predicted.reshape(-1)[keep]
        classes = scores.shape[1] if name == "segmentation" else scores.shape[-1]
        assert class_counts(outcome.document, classes) == (
            np.bincount(flat, minlength=classes).tolist(),
            np.bincount(flat[flat != guess], minlength=classes).tolist(),
        ), name
        assert outcome.document["ignored"] == (0 if name == "segmentation" else 3)


def test_one_pass_that_ends_while_steps_wait_for_a_worker_says_so(tmp_path: Path) -> None:
    """Rank 1 has not written its last steps yet; the marker is fresh (rank 0 closed first):
    a --once run ends without them, and must say they were not evaluated."""
    trial = tmp_path / "trial"
    for worker in ("worker_0", "worker_1"):
        export_collections(str(trial), worker, 2)
    rng = np.random.default_rng(4)
    for step in range(4):
        for worker in ("worker_0", "worker_1") if step < 2 else ("worker_0",):
            labels = rng.integers(0, 3, 20)
            write_step(str(trial), step, worker, {"labels": labels, "predictions": labels})
    end_training(str(trial))
    outcome = run(settings_for(trial, tmp_path, once=True, rule=RuleParameters(samples=0)))
    assert outcome.document["steps_evaluated"] == 2
    (warning,) = [w for w in outcome.warnings if "one pass" in w]
    assert warning.startswith("2 steps were written by some workers but not complete")
    assert "end_grace" in warning


def test_the_history_survives_a_restart_from_a_checkpoint(tmp_path: Path) -> None:
    """A run stopped after 7 steps and resumed has the charts over steps of an uninterrupted
    run: the points before the restart come from the checkpoint."""
    trial = tmp_path / "trial"
    make = scores_batch([6, 2, 1], batch=16)
    rng = np.random.default_rng(5)
    export_collections(str(trial), "worker_0", 1)
    for step in range(20):
        labels, scores = make(rng, step)
        write_step(str(trial), step, "worker_0", {"labels": labels, "predictions": scores})
    (tmp_path / "whole").mkdir()
    whole = run(settings_for(trial, tmp_path / "whole", once=True))
    settings = settings_for(
        trial, tmp_path, checkpoint_file=str(tmp_path / "checkpoint.json"), end_step=7, once=True
    )
    first = run(settings)
    assert first.document["steps_evaluated"] == 7
    resumed = run(settings.changed(end_step=None))
    assert resumed.document["resumed_from_step"] == 6
    assert resumed.document["history"] == whole.document["history"]
    assert [p["step"] for p in resumed.document["history"]] == list(range(20))
