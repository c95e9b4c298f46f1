"""The C floor: ``bench/cfloor.c``, compiled here with gcc -O2, on a trial.

The C program does the evaluator's counts with the least work a real reader must do: list
``index/`` (no JSON parsed: the event file's key follows from each index file's name), one
``read`` of each event file's ``fstat`` size into a reused buffer, TFRecord framing with the
length CRC checked (software CRC32C; the footer not, as the evaluator by default), a bounds-
checked protobuf walk to the labels' and predictions' ``tensor_content``, argmax per row and
the per-class counts. It times itself (``CLOCK_MONOTONIC``, from opening the trial to the
counts) and prints the result line of ``bench.floor`` with system ``cfloor``; this wrapper
builds it when needed, runs it, checks its counts against the trial's truth and emits it.

The binary is cached as ``bench/out/cfloor-<digest>``, the digest of the source and the
compiler flags, so an edit of the source rebuilds it.

    python -m bench.cfloor --trial bench/out/trials/s1000-w1-c10-b256
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import OUT, BenchError, counts_match, emit, parse_result
from bench.trials import load_meta, trial_classes

SOURCE = Path(__file__).with_name("cfloor.c")
COMPILER = "gcc"
FLAGS = ("-O2", "-std=c11", "-Wall", "-Wextra")
LIBRARIES = ("-lm",)


class CompilerMissing(BenchError):
    """gcc is not on PATH, so the C floor cannot be built."""


def compiler() -> str:
    """gcc's path; :class:`CompilerMissing` with what to do when there is none."""
    found = shutil.which(COMPILER)
    if found is None:
        raise CompilerMissing(
            f"{COMPILER} not found on PATH: the C floor ({SOURCE.relative_to(SOURCE.parents[1])})"
            f" is compiled with `{COMPILER} -O2`; install it (Debian: apt-get install gcc)"
        )
    return found


def compiler_version() -> str | None:
    """``gcc -dumpfullversion``, or None without gcc."""
    try:
        done = subprocess.run(
            [compiler(), "-dumpfullversion"], capture_output=True, text=True, check=False
        )
    except CompilerMissing:
        return None
    return done.stdout.strip() or None


def binary_path() -> Path:
    """Where the binary of the current source and flags is cached."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update("\0".join((*FLAGS, *LIBRARIES)).encode())
    return OUT / f"cfloor-{digest.hexdigest()[:12]}"


def build() -> Path:
    """The cached binary, compiled first if the source or the flags changed."""
    target = binary_path()
    if target.is_file() and os.access(target, os.X_OK):
        return target
    gcc = compiler()
    OUT.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    command = [gcc, *FLAGS, "-o", str(partial), str(SOURCE), *LIBRARIES]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BenchError(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    if done.stderr.strip():
        sys.stderr.write(f"bench.cfloor: {COMPILER} warned:\n{done.stderr}")
    os.replace(partial, target)  # atomic: a concurrent build finds a whole binary or none
    for stale in OUT.glob("cfloor-*"):
        if stale != target and ".partial-" not in stale.name:
            stale.unlink(missing_ok=True)
    return target


def run(trial: Path, classes: int) -> dict[str, Any]:
    """One run of the binary on ``trial``: its result line, parsed."""
    binary = build()
    command = [str(binary), "--trial", str(trial), "--classes", str(classes)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    result = parse_result(done.stdout)
    if done.returncode != 0 or result is None:
        raise BenchError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trial", required=True, type=Path)
    parser.add_argument("--classes", type=int, default=None)
    args = parser.parse_args(argv)
    meta = load_meta(args.trial)
    classes = trial_classes(meta, args.classes)
    try:
        result = run(args.trial, classes)
    except BenchError as error:
        raise SystemExit(f"bench.cfloor: {error}") from error
    if meta is not None:
        result["counts_ok"] = counts_match(result, meta["truth"])
        if not result["counts_ok"]:
            sys.stderr.write(f"bench.cfloor: the counts differ from {args.trial}'s truth\n")
    emit(result)


if __name__ == "__main__":
    main()
