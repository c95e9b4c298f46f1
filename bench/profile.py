"""Where the evaluator's time goes: ``bench.evaluator_loop`` under pyinstrument.

Writes the call tree to ``bench/out/profile-<mode>-<trial>.txt`` and returns the functions with
the most self time (time in the function itself, not in what it calls) and the most inclusive
time (the project's own functions, below the loop itself), as shares of the profiled run.
pyinstrument 3 (the version smdebug pins) hooks every call, which slows the run about twofold
and weighs small Python functions more than sampling would: read the shares, not the times.

    python -m bench.profile --trial bench/out/trials/s1000-w4-c10-b256 --mode replay
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from pyinstrument import Profiler  # type: ignore[import-untyped]
from pyinstrument.frame import BaseFrame, SelfTimeFrame  # type: ignore[import-untyped]

from bench.common import OUT, emit
from bench.evaluator_loop import run_once

TOP = 15


def _key(frame: BaseFrame) -> str:
    return f"{frame.function} ({frame.file_path_short}:{frame.line_no})"


def aggregate(root: BaseFrame) -> tuple[Counter[str], Counter[str]]:
    """(self time, inclusive time) per function over the whole tree, recursion counted once."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()

    def walk(frame: BaseFrame, stack: frozenset[str]) -> None:
        key = _key(frame)
        children = [c for c in frame.children if not isinstance(c, SelfTimeFrame)]
        own[key] += frame.time() - sum(c.time() for c in children)
        if key not in stack:
            inclusive[key] += frame.time()
        for child in children:
            walk(child, stack | {key})

    walk(root, frozenset())
    return own, inclusive


def profile(args: argparse.Namespace) -> dict[str, Any]:
    profiler = Profiler(interval=0.0002)
    profiler.start()
    result = run_once(args)
    profiler.stop()
    session = profiler.last_session
    root = session.root_frame()
    total = root.time()
    own, inclusive = aggregate(root)
    text = profiler.output_text(unicode=True, color=False)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"profile-{args.mode}-{Path(args.trial).name}.txt"
    path.write_text(text)

    def top(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": key, "seconds": round(t, 4), "share": round(t / total, 3)}
            for key, t in counter.most_common(TOP)
        ]

    project = Counter(
        {
            key: t
            for key, t in inclusive.items()
            if ("evaluator/" in key or "container/" in key) and t < 0.9 * total
        }
    )
    return {
        "trial": args.trial,
        "mode": args.mode,
        "profiled_s": round(total, 3),
        "us_per_step_profiled": result.get("us_per_step"),
        "tree_file": str(path.relative_to(OUT.parents[1])),
        "self": top(own),
        "inclusive": top(project),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trial", required=True)
    parser.add_argument("--mode", choices=["replay", "follow"], default="replay")
    args = parser.parse_args(argv)
    args.source = None
    args.classes = None
    args.s3_endpoint = None
    args.poll_interval = 1.0
    args.idle_timeout = 300.0
    logging.basicConfig(level=logging.ERROR)
    emit(profile(args))


if __name__ == "__main__":
    main()
