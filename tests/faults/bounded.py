"""Run a case in a child process that cannot hang the suite or eat the machine.

``run_bounded`` kills the child's whole process group after ``seconds`` and caps its address
space, and reports its peak resident memory. A hang fails the test with the output so far,
instead of holding CI until its own limit.

The peak is measured by a small launcher (``_LAUNCHER``) that forks the command and reads its
``wait4`` usage. A direct child of the test process could not be measured so: Linux keeps a
process's peak across ``exec``, and a forked child's peak starts at its parent's resident size
(hundreds of MiB for a pytest session), which would hide any case below it. The launcher is a
bare interpreter (``-S``, a few MiB), so the floor of what is measured is that.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

ADDRESS_SPACE_MIB = 4096
"""The default cap on a child's address space: far above what a bounded case needs (numpy
alone reserves a few hundred MiB of it), far below what would hurt a 24 GB machine."""


_LAUNCHER = """
import os, signal, sys
peak_file, command = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(command[0], command)
    finally:
        os._exit(127)
while True:
    try:
        _, status, usage = os.wait4(pid, 0)
        break
    except InterruptedError:
        continue
with open(peak_file, "w") as out:
    out.write(str(usage.ru_maxrss))
if os.WIFSIGNALED(status):
    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
    os.kill(os.getpid(), os.WTERMSIG(status))
sys.exit(os.waitstatus_to_exitcode(status))
"""
"""Runs the command as its own child and writes that child's peak RSS (KiB) to a file; ends
as the command ended (its exit code, or killed by the same signal)."""


@dataclass(frozen=True)
class Bounded:
    """How a bounded child ended."""

    returncode: int
    stdout: str
    stderr: str
    peak_rss_mib: float
    seconds: float


class Hung(AssertionError):
    """The child was still running at its limit (it was killed)."""


def run_bounded(
    command: Sequence[str],
    *,
    seconds: float,
    address_space_mib: int = ADDRESS_SPACE_MIB,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: bytes | None = None,
) -> Bounded:
    """Run ``command``; raise ``Hung`` if it outlives ``seconds``."""
    child_env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    child_env.update(env or {})
    limit = address_space_mib * 1024 * 1024

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as scratch,
    ):
        peak_file = Path(scratch) / "peak"
        start = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-S", "-c", _LAUNCHER, str(peak_file), *command],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=child_env,
            cwd=cwd or REPO,
            start_new_session=True,
            preexec_fn=cap,  # noqa: PLW1509 (one setrlimit call: takes no lock)
        )
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

        timer = threading.Timer(seconds, kill)
        timer.start()
        try:
            if stdin is not None and process.stdin is not None:
                try:
                    process.stdin.write(stdin)
                    process.stdin.close()
                except BrokenPipeError:
                    pass
            _, status = os.waitpid(process.pid, 0)
        finally:
            timer.cancel()
            # nothing of the case outlives it, its own children included
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        result = Bounded(
            returncode=process.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            peak_rss_mib=_peak_kib(peak_file) / 1024,
            seconds=elapsed,
        )
    if killed.is_set():
        raise Hung(
            f"{' '.join(command)[:300]} was still running after {seconds} s (killed); "
            f"stderr so far:\n{result.stderr[-3000:]}"
        )
    return result


def evaluator(*arguments: str) -> list[str]:
    """The command line of the evaluator, as the image runs it."""
    return [sys.executable, "-m", "container", *arguments]


def python(code: str) -> list[str]:
    """A child Python running ``code`` (for cases that call the library directly)."""
    return [sys.executable, "-c", code]


def _peak_kib(peak_file: Path) -> float:
    """The command's peak RSS as the launcher wrote it; 0 when the launcher was killed first
    (a hang: the caller raises Hung instead)."""
    try:
        return float(peak_file.read_text())
    except (OSError, ValueError):
        return 0.0
