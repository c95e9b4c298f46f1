"""What is written and what is logged: the temporaries a ``kill -9`` leaves, a disk that fills
mid-run, and values that would forge lines of the text log.

Every case runs the real command (``python -m container``) under ``bounded.run_bounded``; the
full disk is a tmpfs of a few hundred KiB mounted in a private mount namespace (``unshare -m``),
which no other process sees and which is gone when the case's child ends, even if the test is
killed. Without root and unshare those cases skip (and fail under ``CI=true``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from evaluator.core import QUOTED_CHARS
from tests.container.trials import scores_batch, write_trial
from tests.faults.bounded import REPO, Bounded, evaluator, run_bounded

SECONDS = 60.0
"""Wall-clock limit of one evaluator run on these small trials (each takes about a second)."""

LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) \S+: ")
"""How every line of the text log begins."""


def temporaries(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


def small_trial(
    path: Path, *, classes: int = 8, steps: int = 10, skew: float = 1.5, labels: str = "labels"
) -> Path:
    """An imbalanced trial of ``classes`` classes, class i drawn in proportion to 1/(1+i)^skew
    (300 classes with skew 0.3: a status of 140 KB, a checkpoint and a shard state of 20 KB)."""
    probabilities = [1.0 / (1 + index) ** skew for index in range(classes)]
    write_trial(path, steps=steps, make_batch=scores_batch(probabilities), labels_name=labels)
    return path


# -- kill -9 in the middle of a write ---------------------------------------------------------


@dataclass(frozen=True)
class KilledWriter:
    """A child that writes ``files`` in a loop, killed with SIGKILL while a write is under way
    (a temporary of one of them is on disk), ``kills`` times over."""

    id: str
    files: tuple[str, ...]
    kills: int = 12


KILLED_WRITERS = (
    KilledWriter("status_and_checkpoint", ("status.json", "ck.json")),
    KilledWriter("shard_state", ("shard.state.json",), kills=6),
)

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from container.atomic import write_text_atomically

    folder, names = Path(sys.argv[1]), sys.argv[2:]
    text = "x" * 4_000_000  # a write takes long enough to be caught in the middle
    while True:
        for name in names:
            write_text_atomically(folder / name, text)
    """
)
"""Writes as the status file, a checkpoint and a shard state are written (each through
``write_text_atomically``), without the imports that make a child slow to start."""


def kill_mid_write(folder: Path, writer: KilledWriter) -> None:
    """Start the writer, wait for a temporary it is writing, SIGKILL it; ``kills`` times."""
    for _ in range(writer.kills):
        before = set(temporaries(folder))
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(folder), *writer.files],
            cwd=REPO,
            start_new_session=True,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + SECONDS
            while not set(temporaries(folder)) - before:
                assert child.poll() is None, child.communicate()[1].decode()[-2000:]
                assert time.monotonic() < deadline, "the writer never started a write"
                time.sleep(0.002)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.communicate()


@pytest.mark.parametrize("writer", KILLED_WRITERS, ids=[w.id for w in KILLED_WRITERS])
def test_a_run_removes_the_temporaries_of_writers_killed_mid_write(
    writer: KilledWriter, tmp_path: Path
) -> None:
    trial = small_trial(tmp_path / "trial")
    out = tmp_path / "out"
    out.mkdir()
    kill_mid_write(out, writer)
    left = temporaries(out)
    assert left, "the kills left no temporary: the case tests nothing"
    assert all(name.startswith(tuple(f".{f}." for f in writer.files)) for name in left)
    # What the run must not touch: a temporary of a file it does not write, whose writer is
    # gone, and a file that only looks like a temporary of ours.
    foreign = [".other.json.999999999-0123456789ab.tmp", ".status.json.notours.tmp"]
    for name in foreign:
        (out / name).write_text("not ours")
    for name in writer.files:  # the next run starts from its trial, not from garbage
        (out / name).unlink(missing_ok=True)
    flags = {
        "status.json": ["--status-file", str(out / "status.json")],
        "ck.json": ["--checkpoint-file", str(out / "ck.json")],
        "shard.state.json": ["--emit-state", str(out / "shard.state.json")],
    }
    arguments = [arg for name in writer.files for arg in flags[name]]
    if "status.json" not in writer.files:
        arguments += ["--status-file", str(tmp_path / "status.json")]
    run = run_bounded(
        evaluator("--trial", str(trial), "--argmax", "true", "--once", "true", *arguments),
        seconds=SECONDS,
    )
    assert run.returncode in (0, 1), run.stderr
    assert temporaries(out) == sorted(foreign), f"{len(left)} left after {writer.kills} kills"


def test_a_live_writers_temporary_is_left_alone(tmp_path: Path) -> None:
    """A run cleaning up must not take the temporary from under a writer still writing it."""
    trial = small_trial(tmp_path / "trial")
    holder = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from container.atomic import _create_temporary
        _, name = _create_temporary(Path(sys.argv[1]))
        print(name, flush=True)
        time.sleep(120)
        """
    )
    status = tmp_path / "status.json"
    child = subprocess.Popen(
        [sys.executable, "-c", holder, str(status)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert child.stdout is not None
        held = Path(child.stdout.readline().strip())
        run = run_bounded(
            evaluator("--trial", str(trial), "--argmax", "true", "--status-file", str(status)),
            seconds=SECONDS,
        )
        assert run.returncode in (0, 1), run.stderr
        assert held.exists(), "a live writer's temporary was removed"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.communicate()


def test_a_live_writers_temporary_in_another_pid_namespace_is_left_alone(tmp_path: Path) -> None:
    """Another container or pod writing the same file on a shared volume: its pid names no
    process here (or another one), so ``kill(pid, 0)`` cannot say whether it is still writing.
    The holder runs in a new pid namespace under a pid that no process of this one has."""
    unshare = in_private_mount_namespace()  # root and unshare, as for the full disks
    trial = small_trial(tmp_path / "trial")
    status = tmp_path / "status.json"
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    gone = child.pid  # reaped: no process of this namespace has it
    holder = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from container.atomic import _create_temporary
        _, name = _create_temporary(Path(sys.argv[1]))
        print(name, flush=True)
        time.sleep(120)
        """
    )
    # The new namespace hands out ns_last_pid + 1 next; "exit" keeps sh from exec'ing python
    # as its own pid 1.
    script = 'echo $(($1 - 1)) > /proc/sys/kernel/ns_last_pid || exit 97; shift; "$@"; exit $?'
    namespace = [unshare, "-p", "-f", "--mount-proc", "sh", "-c", script, "sh", str(gone)]
    writer = subprocess.Popen(
        [*namespace, sys.executable, "-c", holder, str(status)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert writer.stdout is not None
        held = Path(writer.stdout.readline().strip())
        assert held.name.startswith(f".status.json.{gone}-"), f"not the pid wanted: {held}"
        run = run_bounded(
            evaluator("--trial", str(trial), "--argmax", "true", "--status-file", str(status)),
            seconds=SECONDS,
        )
        assert run.returncode in (0, 1), run.stderr
        assert held.exists(), "another namespace's live writer's temporary was removed"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(writer.pid, signal.SIGKILL)
        writer.communicate()


# -- a disk that fills mid-run ------------------------------------------------------------------


@dataclass(frozen=True)
class FullDisk:
    """One output on a tmpfs of ``size_kib`` with only ``free_kib`` of it free; the rest of the
    outputs beside the trial. ``fatal``: the run must end in Error (exit 2) with one message."""

    id: str
    flag: str
    name: str
    free_kib: int
    fatal: bool
    says: str


FULL_DISKS = (
    # The first status (2 KiB) fits; the first with the 300 classes counted (140 KB) does not.
    FullDisk("status_file", "--status-file", "status.json", 40, True, "the status file"),
    FullDisk("shard_state", "--emit-state", "shard.state.json", 8, True, "the shard state"),
    FullDisk("checkpoint", "--checkpoint-file", "ck.json", 8, False, "the checkpoint"),
    FullDisk("html_report", "--report-file", "report.html", 20, False, "the HTML report"),
)

FULL_SCRIPT = """
mount -t tmpfs -o size=256k tmpfs "$FULL" || exit 97
dd if=/dev/zero of="$FULL/filler" bs=1024 count="$FILL" 2>/dev/null
"$@"
code=$?
ls -A "$FULL" > "$KEPT/listing"
cp "$FULL/$NAME" "$KEPT/$NAME" 2>/dev/null
exit $code
"""


def in_private_mount_namespace() -> str:
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("needs root and unshare (util-linux) to mount a tmpfs", pytrace=False)
        pytest.skip("needs root and unshare to mount a small tmpfs")
    return unshare


@pytest.fixture(scope="module")
def many_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_trial(tmp_path_factory.mktemp("full") / "trial", classes=300, steps=20, skew=0.3)


def run_on_full_disk(case: FullDisk, trial: Path, tmp_path: Path) -> tuple[Bounded, Path]:
    full, kept = tmp_path / "full", tmp_path / "kept"
    full.mkdir()
    kept.mkdir()
    arguments = ["--trial", str(trial), "--argmax", "true", "--once", "true"]
    arguments += ["--status-interval", "0", case.flag, str(full / case.name)]
    if case.flag != "--status-file":
        arguments += ["--status-file", str(tmp_path / "status.json")]
    if case.flag == "--checkpoint-file":
        arguments += ["--checkpoint-every-steps", "2"]
    command = [in_private_mount_namespace(), "-m", "sh", "-c", FULL_SCRIPT, "sh"]
    run = run_bounded(
        [*command, *evaluator(*arguments)],
        seconds=SECONDS,
        env={
            "FULL": str(full),
            "KEPT": str(kept),
            "NAME": case.name,
            "FILL": str(256 - case.free_kib),
        },
    )
    assert run.returncode != 97, f"mount failed: {run.stderr}"
    return run, kept


@pytest.mark.parametrize("case", FULL_DISKS, ids=[c.id for c in FULL_DISKS])
def test_a_full_disk_ends_in_one_clear_message_and_leaves_no_temporary(
    case: FullDisk, many_classes: Path, tmp_path: Path
) -> None:
    run, kept = run_on_full_disk(case, many_classes, tmp_path)
    assert "Traceback" not in run.stderr, run.stderr
    assert "internal error" not in run.stderr + run.stdout
    errors = [line for line in run.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, run.stderr
    (error,) = errors
    assert f"cannot write {case.says} {tmp_path / 'full' / case.name}: " in error
    assert "No space left on device (ENOSPC)" in error
    assert re.search(r"needs \d+ KiB free on the file system holding .*: free space there", error)
    assert sorted((kept / "listing").read_text().split()) in (
        ["filler"],
        sorted(["filler", case.name]),
    )
    if case.fatal:
        assert run.returncode == 2, run.stderr
        if case.flag == "--status-file":  # the previous good status, whole
            assert json.loads((kept / case.name).read_text())["status"] == "InProgress"
        else:  # the status file, elsewhere, says why
            status = json.loads((tmp_path / "status.json").read_text())
            assert status["status"] == "Error"
            assert status["error"] in error
    else:
        assert run.returncode == 1, run.stderr  # the verdict, as without the full disk
        assert json.loads((tmp_path / "status.json").read_text())["status"] == "IssuesFound"


# -- forged log lines -------------------------------------------------------------------------

HOSTILE = (
    "x\n2026-01-01 00:00:00,000 ERROR classimbalance: forged by a newline"
    "\r2026-01-01 00:00:00,000 ERROR x: by CR"
    "\x1b[2K\x1b[1Gby ANSI"
    "\u2028by LS\x85by NEL\x7f\u202eby RLO"
)
"""Every way a value could end a log line or repaint the terminal, in one value (no ``/``: it
is also a folder name), short enough to be repeated whole (``evaluator.core.QUOTED_CHARS``)."""


def unwritable_checkpoint(tmp_path: Path) -> list[str]:
    """A checkpoint_file under a file: the failed save is logged with its path."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return ["--checkpoint-file", str(blocker / HOSTILE / "ck.json")]


@dataclass(frozen=True)
class LogSource:
    """Where a hostile value enters what is logged."""

    id: str
    trial: str = "trial"
    labels: str = "labels"
    arguments: Callable[[Path], list[str]] = lambda _tmp_path: []


LOG_SOURCES = (
    LogSource("trial_path", trial=HOSTILE),  # the attached event names the trial
    LogSource(  # the tensors saved are listed when none matches the regex
        "tensor_name", labels=f"labels{HOSTILE}", arguments=lambda _: ["--labels-regex", "^no$"]
    ),
    LogSource("setting", arguments=unwritable_checkpoint),
)


def hostile_run(source: LogSource, tmp_path: Path, log_format: str) -> Bounded:
    trial = small_trial(tmp_path / source.trial, labels=source.labels)
    arguments = ["--argmax", "true", "--once", "true", "--log-format", log_format]
    arguments += ["--status-file", str(tmp_path / "status.json"), *source.arguments(tmp_path)]
    return run_bounded(evaluator("--trial", str(trial), *arguments), seconds=SECONDS)


@pytest.mark.parametrize("source", LOG_SOURCES, ids=[s.id for s in LOG_SOURCES])
def test_a_hostile_value_stays_inside_its_text_log_line(source: LogSource, tmp_path: Path) -> None:
    run = hostile_run(source, tmp_path, "text")
    assert run.stderr, "nothing was logged"
    lines = run.stderr.splitlines()  # at every line boundary Python knows, \r and \u2028 too
    assert len(lines) == run.stderr.count("\n"), "a line ends other than in a newline"
    assert [line for line in lines if not LOG_LINE.match(line)] == []
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]", run.stderr)
    assert r"x\n2026-01-01 00:00:00,000 ERROR classimbalance: forged by a newline\r" in run.stderr


@pytest.mark.parametrize("source", LOG_SOURCES, ids=[s.id for s in LOG_SOURCES])
def test_a_hostile_value_round_trips_through_json_log_lines(
    source: LogSource, tmp_path: Path
) -> None:
    run = hostile_run(source, tmp_path, "json")
    lines = run.stderr.splitlines()
    assert len(lines) == run.stderr.count("\n")
    entries = [json.loads(line) for line in lines]
    assert any(HOSTILE in entry["message"] for entry in entries), run.stderr


def test_the_hostile_value_is_short_enough_to_be_repeated_whole() -> None:
    assert len(f"labels{HOSTILE}") <= QUOTED_CHARS
