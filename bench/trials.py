"""Benchmark trials: written once with smdebug's own writer, cached, and replayed step by step.

A trial is keyed by its shape (steps, workers, classes, batch) under ``bench/out/trials/<key>``
and reused while its ``bench-trial.json`` (written last) matches; that file also holds the true
per-class figures (samples, and samples whose argmax prediction is another class), computed
with numpy as each batch is made, which every measurement must reproduce exactly.

:class:`Stager` makes a trial appear in a new folder one step at a time, in the order a hook
writes it (collections files first; per step and worker the event file, then the index file;
the end marker last), by hard-linking the cached files: a live trial without the cost of a
writer in the measurement.

    python -m bench.trials --steps 1000 --workers 4 --classes 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import TRIALS, emit

META = "bench-trial.json"
END_MARKER = "training_job_end.ts"


@dataclass(frozen=True)
class TrialSpec:
    """The shape of a benchmark trial; the defaults are the issue's (batch 256, 10 classes)."""

    steps: int
    workers: int
    classes: int = 10
    batch: int = 256
    imbalance: float = 10.0
    seed: int = 0

    @property
    def key(self) -> str:
        return f"s{self.steps}-w{self.workers}-c{self.classes}-b{self.batch}"

    @property
    def label(self) -> str:
        return f"S={self.steps} W={self.workers} C={self.classes}"

    def worker_names(self) -> list[str]:
        return [f"worker_{i}" for i in range(self.workers)]


def event_file(step: int, worker: str) -> str:
    return f"events/{step:012d}/{step:012d}_{worker}.tfevents"


def index_file(step: int, worker: str) -> str:
    return f"index/{step // 1000:09d}/{step:012d}_{worker}.json"


def load_meta(path: Path) -> dict[str, Any] | None:
    try:
        meta: dict[str, Any] = json.loads((path / META).read_text())
    except (OSError, ValueError):
        return None
    return meta


def trial_classes(meta: dict[str, Any] | None, given: int | None) -> int:
    """The class count a measurement uses: the one given, else the trial's own (its
    ``bench-trial.json``), else the benchmark's 10."""
    return given or (meta["spec"]["classes"] if meta else 10)


def ensure_trial(spec: TrialSpec, root: Path = TRIALS) -> tuple[Path, dict[str, Any]]:
    """The cached trial for ``spec`` and its metadata, written first if missing or stale."""
    path = root / spec.key
    meta = load_meta(path)
    if meta is not None and meta.get("spec") == asdict(spec):
        return path, meta
    if path.exists():
        shutil.rmtree(path)
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f"{spec.key}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    meta = write_trial(spec, partial)
    partial.rename(path)
    return path, meta


def write_trial(spec: TrialSpec, out: Path) -> dict[str, Any]:
    """Write a finished trial with smdebug's writer (via devtools) and return its metadata."""
    import numpy as np  # noqa: PLC0415  (the orchestrator never needs numpy or smdebug)

    from devtools.write_trial import (  # noqa: PLC0415
        class_probabilities,
        end_training,
        export_collections,
        make_batch,
        write_step,
    )

    out.mkdir(parents=True)
    rng = np.random.default_rng(spec.seed)
    probs = class_probabilities(spec.classes, spec.imbalance)
    samples = np.zeros(spec.classes, dtype=np.int64)
    wrong = np.zeros(spec.classes, dtype=np.int64)
    workers = spec.worker_names()
    started = time.perf_counter()
    for worker in workers:
        export_collections(str(out), worker, spec.workers)
    for step in range(spec.steps):
        for worker in workers:
            labels, predictions = make_batch(rng, spec.batch, probs)
            samples += np.bincount(labels, minlength=spec.classes)
            predicted = predictions.argmax(axis=1)
            wrong += np.bincount(labels[predicted != labels], minlength=spec.classes)
            write_step(str(out), step, worker, {"labels": labels, "predictions": predictions})
    end_training(str(out))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    meta = {
        "spec": asdict(spec),
        "truth": {"samples": samples.tolist(), "mispredicted": wrong.tolist()},
        "bytes": size,
        "write_s": round(time.perf_counter() - started, 2),
    }
    (out / META).write_text(json.dumps(meta))
    return meta


class Stager:
    """Makes a cached trial appear step by step in ``target``, in a hook's order.

    Files are hard links (same bytes, no copy, atomic appearance, as smdebug's rename into
    place), so staging a step costs a few system calls and is kept out of the timings.
    """

    def __init__(self, source: Path, target: Path, spec: TrialSpec) -> None:
        self.source = source
        self.target = target
        self.spec = spec
        self.workers = spec.worker_names()
        self.staged_steps = 0
        if target.exists():
            shutil.rmtree(target)
        collections = source / "collections" / "000000000"
        (target / "collections" / "000000000").mkdir(parents=True)
        for path in sorted(collections.iterdir()):
            os.link(path, target / "collections" / "000000000" / path.name)

    def stage(self, step: int) -> None:
        """Make every worker's files of ``step`` appear (event file, then index file)."""
        for worker in self.workers:
            for relative in (event_file(step, worker), index_file(step, worker)):
                destination = self.target / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.link(self.source / relative, destination)
        self.staged_steps = max(self.staged_steps, step + 1)

    def end(self) -> None:
        """Write the end marker, as a hook does when training ends."""
        shutil.copyfile(self.source / END_MARKER, self.target / END_MARKER)

    def remove(self) -> None:
        shutil.rmtree(self.target, ignore_errors=True)


def hook_order(spec: TrialSpec) -> list[str]:
    """Every file of a finished trial, relative to its root, in the order a hook writes them."""
    keys = [f"collections/000000000/{w}_collections.json" for w in spec.worker_names()]
    for step in range(spec.steps):
        for worker in spec.worker_names():
            keys += [event_file(step, worker), index_file(step, worker)]
    return [*keys, END_MARKER]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--root", type=Path, default=TRIALS)
    args = parser.parse_args(argv)
    spec = TrialSpec(args.steps, args.workers, args.classes, args.batch)
    started = time.perf_counter()
    path, meta = ensure_trial(spec, args.root)
    emit({"trial": str(path), "meta": meta, "seconds": round(time.perf_counter() - started, 2)})


if __name__ == "__main__":
    main()
