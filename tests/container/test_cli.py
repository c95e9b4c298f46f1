"""The command line end to end, on trials written by smdebug's own writer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import container
from container.cli import main
from container.config import Settings, load_settings
from container.status import NOT_CHECKED
from tests.container.trials import TrialTruth, scores_batch, write_trial

REPO = Path(__file__).resolve().parents[2]
REQUIRED_FIELDS = {
    "rule",
    "status",
    "trial",
    "last_step",
    "steps_evaluated",
    "samples",
    "issue_step",
    "findings",
    "classes",
    "message",
    "error",
}


def evaluate(trial: Path, tmp_path: Path, *flags: str) -> tuple[int, dict[str, Any]]:
    status_file = tmp_path / "status.json"
    loopback_metrics = ["--metrics-address", "127.0.0.1", "--metrics-port", "0"]
    code = main(
        [
            "--trial",
            str(trial),
            "--status-file",
            str(status_file),
            "--log-level",
            "ERROR",
            *loopback_metrics,
            *flags,
        ]
    )
    return code, json.loads(status_file.read_text())


def assert_counts_match(document: dict[str, Any], truth: TrialTruth) -> None:
    expected = {
        str(c): {"samples": n, "mispredicted": truth.mispredicted.get(c, 0)}
        for c, n in sorted(truth.samples.items())
    }
    found = {
        c: {"samples": e["samples"], "mispredicted": e["mispredicted"]}
        for c, e in document["classes"].items()
    }
    assert found == expected
    assert document["samples"] == sum(truth.samples.values())


def test_balanced_trial_with_a_good_model_has_no_issues(tmp_path: Path) -> None:
    truth = write_trial(tmp_path / "trial", steps=12, make_batch=scores_batch([1, 1, 1], skill=4))
    code, doc = evaluate(truth.path, tmp_path, "--argmax", "true")
    assert code == 0
    assert doc.keys() >= REQUIRED_FIELDS
    assert doc["rule"] == "ClassImbalance"
    assert doc["status"] == "NoIssuesFound"
    assert doc["issue_step"] is None
    assert doc["findings"] == []
    assert doc["error"] is None
    assert doc["last_step"] == 11
    assert doc["steps_evaluated"] == 12
    assert doc["ended_by"] == "end_of_training"
    assert_counts_match(doc, truth)


def first_issue_step(
    truth_batches: list[tuple[np.ndarray, np.ndarray]],
    samples: int,
    threshold_imbalance: float,
    threshold_misprediction: float,
) -> int | None:
    """The numpy reference for the issue step: cumulative counts after each step."""
    counts = np.zeros(100, dtype=np.int64)
    wrong = np.zeros(100, dtype=np.int64)
    for step, (labels, predicted) in enumerate(truth_batches):
        counts += np.bincount(labels, minlength=100)
        wrong += np.bincount(labels[predicted != labels], minlength=100)
        if counts.sum() < samples:
            continue
        seen = counts[counts > 0]
        fractions = wrong[counts > 0] / seen
        if (
            seen.max() / seen.min() > threshold_imbalance
            or (fractions > threshold_misprediction).any()
        ):
            return step
    return None


def test_imbalanced_trial_reports_the_first_step_where_the_condition_held(tmp_path: Path) -> None:
    make = scores_batch([30, 5, 1], batch=40, skill=3)
    truth = write_trial(tmp_path / "trial", steps=30, make_batch=make)
    rng = np.random.default_rng(0)
    batches = []
    for step in range(30):
        labels, scores = make(rng, step)
        batches.append((labels, scores.argmax(axis=1)))
    expected_step = first_issue_step(batches, 500, 10, 0.7)
    assert expected_step is not None
    code, doc = evaluate(truth.path, tmp_path, "--argmax", "True")
    assert code == 1
    assert doc["status"] == "IssuesFound"
    assert doc["issue_step"] == expected_step
    assert doc["message"] == (
        f"RuleEvaluationConditionMet: Evaluation of the rule ClassImbalance at step "
        f"{expected_step} resulted in the condition being met"
    )
    assert doc["findings"][0]["check"] == "imbalance"
    assert doc["findings"][0]["threshold"] == 10
    assert doc["findings"][0]["classes"] == [0, 2]
    assert doc["last_step"] == 29, "evaluation goes on to the end by default"
    assert_counts_match(doc, truth)


def test_stop_on_first_issue_stops_at_the_issue_step(tmp_path: Path) -> None:
    truth = write_trial(tmp_path / "trial", steps=30, make_batch=scores_batch([30, 5, 1], 40))
    code, doc = evaluate(truth.path, tmp_path, "--argmax", "1", "--stop-on-first-issue")
    assert code == 1
    assert doc["last_step"] == doc["issue_step"]
    assert doc["ended_by"] == "first_issue"


def test_misprediction_of_a_class_is_an_issue(tmp_path: Path) -> None:
    def make(rng: np.random.Generator, _step: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 2, size=100)
        predicted = np.where(labels == 1, 0, labels)  # class 1 is always mispredicted
        return labels.astype(np.int64), predicted.astype(np.int64)

    truth = write_trial(tmp_path / "trial", steps=6, make_batch=make)
    code, doc = evaluate(truth.path, tmp_path)
    assert code == 1
    finding = doc["findings"][0]
    assert finding["check"] == "misprediction"
    assert finding["classes"] == [1]
    assert finding["value"] == 1.0
    assert doc["issue_step"] == 4, "500 labels are reached at the fifth step of 100"
    assert_counts_match(doc, truth)


def test_all_workers_and_modes_are_counted(tmp_path: Path) -> None:
    truth = write_trial(
        tmp_path / "trial",
        steps=10,
        workers=4,
        make_batch=scores_batch([3, 2, 1], batch=32),
        modes=lambda s: "EVAL" if s % 3 == 2 else "TRAIN",
    )
    code, doc = evaluate(truth.path, tmp_path, "--argmax", "true", "--samples", "100000")
    assert code == NOT_CHECKED, "1,280 labels, fewer than samples: counted, never checked"
    assert (doc["status"], doc["checks_active"], doc["exit_code"]) == ("NoIssuesFound", False, 3)
    assert_counts_match(doc, truth)
    assert doc["samples"] == 10 * 4 * 32
    assert {mode: m["samples"] for mode, m in doc["modes"].items()} == {
        "EVAL": 3 * 4 * 32,
        "TRAIN": 7 * 4 * 32,
    }
    for mode, figures in doc["modes"].items():
        assert {c: e["samples"] for c, e in figures["classes"].items()} == {
            str(c): n for c, n in truth.samples_by_mode[mode].items()
        }
    assert doc["warnings"], "fewer labels than samples is said"


def test_mode_selection_counts_only_that_mode(tmp_path: Path) -> None:
    truth = write_trial(
        tmp_path / "trial",
        steps=9,
        workers=2,
        make_batch=scores_batch([1, 1], batch=16),
        modes=lambda s: "EVAL" if s % 3 == 2 else "TRAIN",
    )
    code, doc = evaluate(
        truth.path, tmp_path, "--argmax", "true", "--mode", "EVAL", "--samples", "0"
    )
    assert code in (0, 1)
    assert doc["samples"] == 3 * 2 * 16
    assert doc["steps_evaluated"] == 3
    assert doc["selected_modes"] == ["EVAL"]


def test_smdebug_reader_gives_the_same_counts(tmp_path: Path) -> None:
    truth = write_trial(
        tmp_path / "trial", steps=5, workers=2, make_batch=scores_batch([4, 1, 1], batch=16)
    )
    native_code, native = evaluate(truth.path, tmp_path, "--argmax", "true")
    smdebug_code, reference = evaluate(
        truth.path, tmp_path, "--argmax", "true", "--reader", "smdebug"
    )
    assert native_code == smdebug_code
    assert native["classes"] == reference["classes"]
    assert_counts_match(reference, truth)


def test_once_evaluates_a_trial_without_the_end_marker(tmp_path: Path) -> None:
    truth = write_trial(tmp_path / "trial", steps=4, make_batch=scores_batch([1, 1]), end=False)
    code, doc = evaluate(truth.path, tmp_path, "--argmax", "true", "--once", "--samples", "10")
    assert code == 0
    assert doc["ended_by"] == "once"
    assert doc["steps_evaluated"] == 4


def test_following_ends_after_the_idle_timeout_without_the_marker(tmp_path: Path) -> None:
    truth = write_trial(tmp_path / "trial", steps=3, make_batch=scores_batch([1, 1]), end=False)
    code, doc = evaluate(
        truth.path, tmp_path, "--argmax", "true", "--idle-timeout", "0.3", "--poll-interval", "0.05"
    )
    assert code == NOT_CHECKED
    assert doc["ended_by"] == "idle_timeout"
    assert any("end marker" in w for w in doc["warnings"])


ERROR_CASES = {
    "missing trial": (["--once"], None, "does not exist: check --trial / base_trial"),
    "empty trial": (["--once"], "empty", "No debugging data was saved"),
    "labels under another name": (["--argmax", "true"], "targets", "set labels_regex to match"),
    "argmax left off for scores": ([], "scores", "set argmax to true"),
    "invalid parameters": (
        ["--samples", "many", "--threshold-imbalance", "nan"],
        "scores",
        "2 rule parameters are invalid",
    ),
}


@pytest.mark.parametrize("case", ERROR_CASES, ids=list(ERROR_CASES))
def test_errors_are_clear_and_exit_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    flags, trial_kind, expected_text = ERROR_CASES[case]
    trial = tmp_path / "trial"
    if trial_kind == "empty":
        trial.mkdir()
    elif trial_kind == "targets":
        write_trial(trial, steps=2, make_batch=scores_batch([1, 1]), labels_name="targets")
    elif trial_kind == "scores":
        write_trial(trial, steps=2, make_batch=scores_batch([1, 1]))
    code, doc = evaluate(trial, tmp_path, *flags)
    assert code == 2
    assert doc["status"] == "Error"
    assert expected_text in doc["error"]
    assert doc["message"].startswith("ClientError: ")
    # In a process the log goes to stderr (see test_errors_reach_stderr_without_a_traceback).
    assert expected_text in capsys.readouterr().err + caplog.text
    assert not list(tmp_path.glob(".status.json.*")), "no temporary file is left behind"


def test_no_matching_tensor_lists_the_names_that_exist(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    write_trial(trial, steps=2, make_batch=scores_batch([1, 1]), labels_name="targets")
    _, doc = evaluate(trial, tmp_path, "--argmax", "true")
    assert "predictions, targets" in doc["error"]


@pytest.mark.parametrize(
    "entry",
    [
        [sys.executable, "-m", "container"],
        [str(Path(sys.executable).with_name("classimbalance-rule"))],
    ],
    ids=["python -m container", "console script"],
)
def test_the_command_runs_as_a_process(entry: list[str], tmp_path: Path) -> None:
    truth = write_trial(tmp_path / "trial", steps=3, make_batch=scores_batch([1, 1]))
    status_file = tmp_path / "status.json"
    result = subprocess.run(
        [
            *entry,
            "--trial",
            str(truth.path),
            "--argmax",
            "true",
            "--samples",
            "10",
            "--status-file",
            str(status_file),
            "--metrics-enabled",
            "false",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ClassImbalance on" in result.stdout
    assert "Traceback" not in result.stderr
    assert json.loads(status_file.read_text())["status"] == "NoIssuesFound"


def test_errors_reach_stderr_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "container",
            "--trial",
            str(tmp_path / "nowhere"),
            "--once",
            "--status-file",
            str(tmp_path / "status.json"),
            "--metrics-enabled",
            "false",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "does not exist: check --trial / base_trial" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_and_the_bare_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"classimbalance-rule {container.__version__}\n"
    assert main([]) == 2
    said = capsys.readouterr()
    assert said.out == ""
    assert said.err.startswith("usage: classimbalance-rule")
    assert "--trial PATH" in said.err
    assert "classimbalance-rule --example-config > rule.yaml" in said.err


def test_the_example_config_is_shipped_and_loads_to_the_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--example-config"]) == 0
    example = tmp_path / "rule.yaml"
    example.write_text(capsys.readouterr().out)
    assert example.read_text() == (REPO / "config" / "classimbalance.yaml").read_text()
    loaded = load_settings(["--config", str(example), "--trial", "t"], {}, job_config_path=None)
    assert loaded.settings == Settings.of(base_trial="t")


def test_help_shows_examples_and_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    help_text = capsys.readouterr().out
    assert "examples:\n  classimbalance-rule --trial ./debug-output --argmax true" in help_text
    for code in ("0 NoIssuesFound", "1 IssuesFound", "2 Error", "3 NoIssuesFound", "4 Stopped"):
        assert code in help_text.replace("\n", " ")
    assert "CLASSIMBALANCE_LOG_LEVEL" in help_text.replace("\n", " ")


def test_a_wrong_setting_for_every_batch_stops_after_the_first_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = write_trial(tmp_path / "trial", steps=600, make_batch=scores_batch([3, 1], batch=4))
    status_file = tmp_path / "status.json"
    flags = ["--status-file", str(status_file), "--metrics-enabled", "false"]
    code = main(["--trial", str(truth.path), *flags])  # (B, C) scores without --argmax true
    doc = json.loads(status_file.read_text())
    assert code == 2
    assert doc["error"].startswith(
        "stopped after the first 264 steps, in which every batch was skipped for "
        "argmax_required: no label could be counted"
    )
    assert "set argmax to true" in doc["error"]
    assert doc["steps_evaluated"] < 600, "the rest of the trial was not read"
    skipped = [line for line in capsys.readouterr().err.splitlines() if "batch(es) skipped" in line]
    assert len(skipped) == 1, "one warning for the reason, not one per step"
    assert skipped[0].endswith(
        "step 0: 1 batch(es) skipped; skipped so far by reason: {'argmax_required': 1}"
    )


_STARTUP_PROBE = """
import json, sys

trial, out = sys.argv[1], sys.argv[2]
seen = {}


def first_look(event, args):
    # The first file the command opens in the trial is its first poll's (issue 16).
    if "first_poll" not in seen and event in ("open", "os.scandir") and args:
        if isinstance(args[0], str) and args[0].startswith(trial):
            seen["first_poll"] = sorted(sys.modules)


sys.addaudithook(first_look)
from container.cli import main

code = main(sys.argv[3:])
with open(out, "w") as stream:
    json.dump({"code": code, "exit": sorted(sys.modules), **seen}, stream)
"""
LAZY_UNTIL_NEEDED = {
    "http.client": "the webhook action and the metrics server",
    "email": "the webhook action, the metrics server, importlib.metadata",
    "urllib.request": "the webhook action and the Pushgateway",
    "importlib.metadata": "the smdebug-missing message",
    "prometheus_client": "the metrics server (auto: from the first wait) and the Pushgateway",
    "container.metrics": "the metrics server and the Pushgateway",
    "container.server.handler": "the metrics server",
    "container.server.loop": "the metrics server",
    "container.actions.webhook": "the webhook action",
    "boto3": "S3 trials and the AWS actions",
    "botocore": "S3 trials and the AWS actions",
    "yaml": "a settings file",
    "smdebug": "reader smdebug",
}
"""Modules a one-pass evaluation of a local trial, without actions or metrics, never imports
(what each is for): start-up is the command's cost before its first poll (issue 16)."""


def _imported(modules: list[str], name: str) -> bool:
    return any(module == name or module.startswith(f"{name}.") for module in modules)


def test_a_once_run_imports_only_what_it_uses(tmp_path: Path) -> None:
    truth = write_trial(tmp_path / "trial", steps=3, make_batch=scores_batch([1, 1]))
    out = tmp_path / "modules.json"
    flags = ["--trial", str(truth.path), "--once", "--argmax", "true", "--samples", "10"]
    flags += ["--status-file", str(tmp_path / "status.json"), "--log-level", "ERROR"]
    subprocess.run(
        [sys.executable, "-c", _STARTUP_PROBE, str(truth.path), str(out), *flags],
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    found = json.loads(out.read_text())
    assert found["code"] == 0
    at_first_poll, at_exit = found["first_poll"], found["exit"]
    assert _imported(at_first_poll, "evaluator.trial"), "the probe saw the first poll"
    for stage, modules in (("the first poll", at_first_poll), ("the exit", at_exit)):
        loaded = {name: why for name, why in LAZY_UNTIL_NEEDED.items() if _imported(modules, name)}
        assert loaded == {}, f"imported by {stage}, though only needed for those"
    # The HTML report is written at the end, and its package imported only then.
    assert not _imported(at_first_poll, "container.report")
    assert _imported(at_exit, "container.report")
