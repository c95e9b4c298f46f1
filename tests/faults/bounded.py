"""Run a case in a child process that cannot hang the suite or eat the machine.

``run_bounded`` kills the child's whole process group after ``seconds`` and caps its address
space, and reports its peak resident memory (from ``wait4``, the child's own, not the
maximum over every child the test process ever reaped). A hang fails the test with the output
so far, instead of holding CI until its own limit.
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

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        process = subprocess.Popen(
            list(command),
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
            _, status, usage = os.wait4(process.pid, 0)
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
            peak_rss_mib=usage.ru_maxrss / 1024,
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
