"""The command as a whole process: wall time from exec to exit, and start-up to its first poll.

- ``--mode command``: ``classimbalance-rule --trial T --once --argmax true --metrics-enabled
  false --status-file <scratch>`` on a finished trial, as a user runs it (the HTML report beside
  the status file included), timed from just before the exec to the exit. The counts come from
  the status file. Exit codes 0, 1 and 3 are verdicts; any other is a failure.
- ``--mode startup``: the command with ``--once`` on an empty trial (a folder holding an empty
  ``index/``), ``--runs`` times. Per run, two figures: exec -> the first poll, seen from outside
  as the first open of ``index/`` (an inotify ``IN_OPEN`` watch on the trial folder, set before
  the exec: the reader's first listing opens it, just after the "following trial" log line;
  nothing earlier does), and exec -> exit, which comes right after that poll (the run ends with
  an Error status, as a trial without steps does): an upper bound. For comparison, per run also
  the interpreter alone (``python -c pass``) and the command's imports (``python -c "import
  container.cli"``), exec to exit. One untimed run first, which may write bytecode (even under
  ``PYTHONDONTWRITEBYTECODE``), so that the timed runs start as an installed command does.

smdebug's whole process needs no run of its own: ``bench.run`` takes the wall time of each
``bench.smdebug_loop`` replay, which runs in its own process (``wall_s``: exec to exit).

    python -m bench.process --mode command --trial bench/out/trials/s1000-w1-c10-b256
    python -m bench.process --mode startup --runs 5
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import SCRATCH, BenchError, emit, median
from bench.trials import load_meta, trial_classes

VERDICT_EXIT_CODES = (0, 1, 3)
"""NoIssuesFound, IssuesFound, NoIssuesFound without the checks: verdicts, not failures."""
IN_OPEN = 0x00000020
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then the name
TIMEOUT_S = 600.0


def command_path() -> str:
    """``classimbalance-rule`` beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name("classimbalance-rule")
    if beside.is_file():
        return str(beside)
    found = shutil.which("classimbalance-rule")
    if found is None:
        raise BenchError("classimbalance-rule is not installed (make venv)")
    return found


def command_args(trial: Path, status_file: Path) -> list[str]:
    return [
        command_path(),
        "--trial",
        str(trial),
        "--once",
        "--argmax",
        "true",
        "--metrics-enabled",
        "false",
        "--status-file",
        str(status_file),
    ]


def _timed(command: list[str], log: Any) -> tuple[float, int]:
    """Wall seconds from just before the exec to the exit, and the exit code."""
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=log, check=False)
    return time.perf_counter() - started, done.returncode


def _failure(command: list[str], code: int, log: Any) -> BenchError:
    log.seek(0)
    tail = "\n".join(log.read().decode(errors="replace").strip().splitlines()[-15:])
    return BenchError(f"{' '.join(command)} exited {code}:\n{tail}")


def _verdict(status_file: Path, command: list[str], code: int, log: Any) -> dict[str, Any]:
    """The status document of a run that ended as the command ends (a terminal status; exit
    code 1 alone could also be a traceback), else the failure with the end of its log."""
    try:
        document: dict[str, Any] = json.loads(status_file.read_text())
    except (OSError, ValueError):
        document = {}
    if code not in (*VERDICT_EXIT_CODES, 2) or document.get("terminal") is not True:
        raise _failure(command, code, log)
    return document


def whole_command(trial: Path, classes: int) -> dict[str, Any]:
    """One run of the command on a finished trial, exec to exit, with its counts."""
    work = Path(tempfile.mkdtemp(prefix="command-", dir=_scratch()))
    command = command_args(trial, work / "status.json")
    try:
        with tempfile.TemporaryFile() as log:
            seconds, code = _timed(command, log)
            document = _verdict(work / "status.json", command, code, log)
            if code not in VERDICT_EXIT_CODES:
                raise _failure(command, code, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seen = document.get("classes") or {}
    return {
        "system": "command",
        "mode": "replay",
        "trial": str(trial),
        "process_s": round(seconds, 4),
        "exit_code": code,
        "status": document.get("status"),
        "steps": int(document.get("steps_evaluated") or 0),
        "samples": [int(seen.get(str(c), {}).get("samples", 0)) for c in range(classes)],
        "mispredicted": [int(seen.get(str(c), {}).get("mispredicted", 0)) for c in range(classes)],
    }


class _OpenWatch:
    """An inotify watch for opens of a folder's entries (``IN_OPEN``), through libc."""

    def __init__(self, folder: Path) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = int(self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
        if self.fd < 0:
            raise BenchError(f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        if self._libc.inotify_add_watch(self.fd, os.fsencode(folder), IN_OPEN) < 0:
            os.close(self.fd)
            raise BenchError(f"inotify_add_watch {folder}: {os.strerror(ctypes.get_errno())}")

    def opened(self) -> list[str]:
        """Names opened since the last call (folders end with ``/``)."""
        names: list[str] = []
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return names
        offset = 0
        while offset + _EVENT.size <= len(data):
            _, mask, _, length = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size
            name = os.fsdecode(data[offset : offset + length].split(b"\0", 1)[0])
            offset += length
            names.append(name + ("/" if mask & IN_ISDIR else ""))
        return names

    def close(self) -> None:
        os.close(self.fd)


def first_poll(trial: Path, status_file: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """One start-up run: exec -> the first open of ``index/``, and exec -> exit."""
    watch = _OpenWatch(trial)
    command = command_args(trial, status_file)
    polled: float | None = None
    try:
        with tempfile.TemporaryFile() as log:
            started = time.perf_counter()
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)
            while process.poll() is None:
                if time.perf_counter() - started > TIMEOUT_S:
                    process.kill()
                    raise BenchError(f"{' '.join(command)} took more than {TIMEOUT_S:g} s")
                ready, _, _ = select.select([watch.fd], [], [], 0.05)
                if ready and "index/" in watch.opened() and polled is None:
                    polled = time.perf_counter() - started
            ended = time.perf_counter() - started
            if polled is None and "index/" in watch.opened():
                polled = ended  # seen only after the exit: no better than the upper bound
            _verdict(status_file, command, process.returncode, log)  # 2: the trial has no steps
    finally:
        watch.close()
    return {
        "first_poll_s": None if polled is None else round(polled, 4),
        "exit_s": round(ended, 4),
        "exit_code": process.returncode,
    }


def startup(runs: int) -> dict[str, Any]:
    """``runs`` start-up runs, each beside the interpreter alone and the command's imports."""
    work = Path(tempfile.mkdtemp(prefix="startup-", dir=_scratch()))
    trial = work / "trial"
    (trial / "index").mkdir(parents=True)
    baselines = {
        "python_s": [sys.executable, "-c", "pass"],
        "imports_s": [sys.executable, "-c", "import container.cli"],
    }
    samples: dict[str, list[float]] = {"first_poll_s": [], "exit_s": []}
    samples.update({name: [] for name in baselines})
    codes = []
    # Untimed, and allowed to write bytecode: the timed runs start as an installed command
    # does, with its modules compiled once.
    warm = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    try:
        first_poll(trial, work / "status.json", env=warm)
        for _ in range(runs):
            for name, command in baselines.items():
                with tempfile.TemporaryFile() as log:
                    seconds, code = _timed(command, log)
                    if code != 0:
                        raise _failure(command, code, log)
                samples[name].append(round(seconds, 4))
            run = first_poll(trial, work / "status.json")
            codes.append(run["exit_code"])
            samples["exit_s"].append(run["exit_s"])
            if run["first_poll_s"] is not None:
                samples["first_poll_s"].append(run["first_poll_s"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "system": "command",
        "mode": "startup",
        "runs": runs,
        "exit_codes": sorted(set(codes)),
        "median": {name: median(values) for name, values in samples.items()},
        "min": {name: min(values, default=None) for name, values in samples.items()},
        "max": {name: max(values, default=None) for name, values in samples.items()},
        "samples": samples,
    }


def _scratch() -> Path:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    return SCRATCH


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["command", "startup"], required=True)
    parser.add_argument("--trial", type=Path, help="command: a cached trial folder")
    parser.add_argument("--classes", type=int, default=None)
    parser.add_argument("--runs", type=int, default=5, help="startup: runs (median of them)")
    args = parser.parse_args(argv)
    try:
        if args.mode == "startup":
            emit(startup(args.runs))
            return
        if args.trial is None:
            parser.error("--mode command needs --trial")
        emit(whole_command(args.trial, trial_classes(load_meta(args.trial), args.classes)))
    except BenchError as error:
        raise SystemExit(f"bench.process: {error}") from error


if __name__ == "__main__":
    main()
