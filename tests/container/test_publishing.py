"""The message file where Kubernetes reads a container's termination message: a file the
kubelet bind-mounts, which the atomic write's rename cannot replace, is written in place."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from container.publishing import write_message

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
    assert "cannot write the message file" in caplog.text
