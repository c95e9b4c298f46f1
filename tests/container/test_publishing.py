"""The message file where Kubernetes reads a container's termination message: a file the
kubelet bind-mounts, which the atomic write's rename cannot replace, is written in place."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from container.config import Settings
from container.publishing import Publisher, write_message
from container.snapshot import Snapshot, SnapshotBox, take_snapshot
from container.status import RunInfo, StatusFileError
from evaluator.core import ClassImbalanceRule, RuleParameters

REPO = Path(__file__).resolve().parents[2]


def test_an_ordinary_message_file_is_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "output" / "message"
    assert write_message(target, "RuleEvaluationConditionMet: step 3")
    assert target.read_text() == "RuleEvaluationConditionMet: step 3"


def test_a_bind_mounted_file_like_the_termination_log_is_written_in_place(
    tmp_path: Path,
) -> None:
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("needs root and unshare (util-linux) to bind-mount a file", pytrace=False)
        pytest.skip("needs root and unshare to bind-mount a file, as the kubelet does")
    source, log = tmp_path / "kubelet-file", tmp_path / "termination-log"
    source.write_text("")
    log.write_text("")
    script = (
        "from pathlib import Path; from container.publishing import write_message; "
        f"print(write_message(Path({str(log)!r}), 'RuleEvaluationConditionMet: step 3'))"
    )
    shell = f'mount --bind {source} {log} && exec {sys.executable} -c "{script}"'
    done = subprocess.run(
        [unshare, "-m", "sh", "-c", shell],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    assert source.read_text() == "RuleEvaluationConditionMet: step 3", "through the mount"


def test_a_message_file_that_cannot_be_written_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert not write_message(blocker / "message", "x")  # its folder is a file
    assert f"cannot write the message file {blocker / 'message'}: " in caplog.text
    assert caplog.text.rstrip().endswith("; set message_file to a writable path")


def publisher_writing_to(tmp_path: Path, status: Path) -> tuple[Publisher, Snapshot]:
    settings = Settings.of(
        base_trial="t", status_file=str(status), report_dir=str(tmp_path / "rule")
    )
    rule = ClassImbalanceRule(RuleParameters())
    snapshot = take_snapshot(rule, status="InProgress", trial="t", ready=False)
    info = RunInfo(trial="t", reader="native", modes=None, started_at=0.0)
    publisher = Publisher(
        settings.outputs, info, SnapshotBox(snapshot), managed_root=str(tmp_path / "none")
    )
    return publisher, snapshot


def unwritable_status(tmp_path: Path) -> Path:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return blocker / "status.json"


def test_a_verdict_whose_status_cannot_be_written_raises_the_status_error(
    tmp_path: Path,
) -> None:
    """The status file is the one output a run cannot do without: the run ends in error."""
    publisher, snapshot = publisher_writing_to(tmp_path, unwritable_status(tmp_path))
    with pytest.raises(StatusFileError, match=r"cannot write the status file .*status_file"):
        publisher.publish(snapshot, force=True)
    with pytest.raises(StatusFileError):
        publisher.terminal(replace(snapshot, status="NoIssuesFound"), publisher_info())
    assert not publisher.status_written


def test_an_error_whose_status_cannot_be_written_still_reaches_the_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The error says why the status is missing: nothing more is raised or logged for it,
    the rule report says the error, and no HTML page is written beside a stale status."""
    publisher, snapshot = publisher_writing_to(tmp_path, unwritable_status(tmp_path))
    document = publisher.terminal(
        replace(snapshot, status="Error"), publisher_info(), "the disk is full"
    )
    assert document["error"] == "the disk is full"
    assert not publisher.status_written
    assert caplog.records == []
    report = json.loads((tmp_path / "rule" / "ClassImbalance.json").read_text())
    assert report["error"] == "the disk is full"
    assert not (tmp_path / "rule" / "ClassImbalance.html").exists()


def test_the_files_a_publisher_writes_are_all_named(tmp_path: Path) -> None:
    publisher, _ = publisher_writing_to(tmp_path, tmp_path / "status.json")
    assert sorted(str(path.relative_to(tmp_path)) for path in publisher.written_paths()) == [
        "rule/ClassImbalance.html",
        "rule/ClassImbalance.json",
        "status.html",
        "status.json",
    ]


def publisher_info() -> RunInfo:
    return RunInfo(trial="t", reader="native", modes=None, started_at=0.0, ended_by="once")
