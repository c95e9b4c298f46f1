"""Write smdebug trials with smdebug's own writer, the way a framework hook does.

Order per worker: collections file once; per step one FileWriter (event file, then index file);
the end marker last. NumPy >= 2.3 removed ``ndarray.tostring``, which smdebug 1.0.34 still calls,
so arrays are handed over as a subclass that aliases it to ``tobytes`` (the bytes are identical).
Used by the tests (as the independent reference writer), ``make demo`` and the benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")

from smdebug.core.access_layer import training_has_ended
from smdebug.core.collection_manager import CollectionManager
from smdebug.core.modes import ModeKeys
from smdebug.core.writer import FileWriter


class _TostringArray(np.ndarray):
    """ndarray with the ``tostring`` alias that NumPy 2.3 removed and smdebug 1.0.34 calls."""

    def tostring(self, order: str = "C") -> bytes:
        return self.tobytes(order=order)  # type: ignore[arg-type]


def for_smdebug(array: np.ndarray) -> np.ndarray:
    """Return ``array`` in a form smdebug's writer accepts on any NumPy."""
    array = np.require(array, requirements="C")  # keeps 0-d arrays 0-d
    return array.view(_TostringArray) if not hasattr(np.ndarray, "tostring") else array


def shim_hook_for_numpy(hook_class: Any) -> None:
    """Make a framework hook hand smdebug's writer arrays that keep ``tostring``: the shim a
    training script on NumPy >= 2.3 needs with smdebug 1.0.34 (the bytes written are the same)."""
    original = hook_class._make_numpy_array

    def make_numpy_array(value: Any) -> np.ndarray:
        return for_smdebug(np.asarray(original(value)))

    hook_class._make_numpy_array = staticmethod(make_numpy_array)


def export_collections(
    trial: str, worker: str, num_workers: int, names: Sequence[str] = ("labels", "predictions")
) -> None:
    """Write ``collections/000000000/<worker>_collections.json`` as BaseHook does."""
    manager = CollectionManager()
    for name in names:
        manager.add(name)
        manager.get(name).tensor_names = [name]
        manager.get(name).include(name)
    manager.set_num_workers(num_workers)
    manager.export(trial, f"{worker}_collections.json")


def write_step(
    trial: str,
    step: int,
    worker: str,
    tensors: Mapping[str, Any],
    *,
    mode: str = "TRAIN",
    mode_step: int | None = None,
) -> None:
    """Write one (step, worker): an event file with one record per tensor, then its index."""
    writer = FileWriter(trial_dir=trial, step=step, worker=worker)
    for name, value in tensors.items():
        writer.write_tensor(
            for_smdebug(np.asarray(value)),
            name,
            mode=ModeKeys[mode],
            mode_step=step if mode_step is None else mode_step,
        )
    writer.close()


def end_training(trial: str) -> None:
    """Write the ``training_job_end.ts`` marker."""
    training_has_ended(trial)


def class_probabilities(num_classes: int, imbalance: float) -> np.ndarray:
    """Geometric class prior whose largest / smallest probability equals ``imbalance``."""
    k = np.arange(num_classes)
    weights = imbalance ** (-k / max(num_classes - 1, 1))
    probabilities: np.ndarray = weights / weights.sum()
    return probabilities


def make_batch(
    rng: np.random.Generator, batch: int, probs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (B,) int64 and softmax predictions (B, C) float32; rare classes are harder."""
    num_classes = probs.shape[0]
    skill = (1.0 + 3.0 * probs / probs.max()).astype(np.float32)
    labels = rng.choice(num_classes, size=batch, p=probs).astype(np.int64)
    logits = rng.standard_normal((batch, num_classes)).astype(np.float32)
    logits[np.arange(batch), labels] += skill[labels]
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return labels, (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="trial folder (must not exist yet)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--start-step", type=int, default=0)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--imbalance", type=float, default=10.0, help="largest / smallest class probability"
    )
    parser.add_argument("--mode", default="TRAIN", choices=[m.name for m in ModeKeys])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--never-end", action="store_true", help="leave out the end marker")
    args = parser.parse_args(argv)

    if os.path.exists(args.out):
        sys.exit(f"{args.out} exists: choose a new folder")
    os.makedirs(args.out)
    rng = np.random.default_rng(args.seed)
    probs = class_probabilities(args.classes, args.imbalance)
    workers = [f"worker_{i}" for i in range(args.workers)]
    for worker in workers:
        export_collections(args.out, worker, args.workers)
    counts = np.zeros(args.classes, dtype=np.int64)
    for step in range(args.start_step, args.start_step + args.steps):
        for worker in workers:
            labels, predictions = make_batch(rng, args.batch, probs)
            counts += np.bincount(labels, minlength=args.classes)
            write_step(
                args.out,
                step,
                worker,
                {"labels": labels, "predictions": predictions},
                mode=args.mode,
            )
    if not args.never_end:
        end_training(args.out)
    print(
        json.dumps(
            {
                "trial": args.out,
                "steps": args.steps,
                "workers": args.workers,
                "batch": args.batch,
                "classes": args.classes,
                "true_class_counts": counts.tolist(),
            }
        )
    )


if __name__ == "__main__":
    main()
