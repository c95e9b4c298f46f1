"""A stand-in training job: appends steps to a trial at a steady rate with smdebug's writer.

Each step's true per-class counts (summed over workers, computed with numpy as the batch is
made) go to a JSON-lines truth file right after the step's index files land, so a test can
compare what the evaluator reports at any moment with what was written by then. With
``--s3-uri`` the files are written to a local staging folder and uploaded in the order a hook
writes them (event file, then index file; the end marker last).

A distributed job runs one process per rank (``--rank R`` of ``--workers N``, each writing only
its own worker's files and, when it closes, the end marker, as smdebug's hook does outside
SageMaker); ``--last-step-delay`` holds a rank back before its last step (a rank that saves a
checkpoint before it closes), ``--stop-before N`` ends a rank N steps early without a marker
(a rank that died).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from devtools.write_trial import (
    class_probabilities,
    end_training,
    export_collections,
    make_batch,
    write_step,
)


class S3Mirror:
    """Uploads new files of a local trial to S3 in hook order."""

    def __init__(self, local: Path, uri: str, endpoint_url: str | None) -> None:
        import boto3

        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        self._client = boto3.client("s3", endpoint_url=endpoint_url)
        self._bucket, self._prefix, self._local = bucket, prefix.rstrip("/"), local
        self._sent: set[Path] = set()

    def sync(self) -> None:
        files = [
            p
            for p in self._local.rglob("*")
            if p.is_file() and p not in self._sent and not p.name.endswith(".tmp")
        ]
        order = {"collections": 0, "events": 1, "index": 2}
        for path in sorted(
            files, key=lambda p: (order.get(p.relative_to(self._local).parts[0], 3), str(p))
        ):
            key = f"{self._prefix}/{path.relative_to(self._local)}".lstrip("/")
            self._client.put_object(Bucket=self._bucket, Key=key, Body=path.read_bytes())
            self._sent.add(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="trial folder (the staging folder for S3)")
    parser.add_argument("--truth", required=True, help="JSON-lines file of per-step counts")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--start-step", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between steps")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--imbalance", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-end", action="store_true", help="leave out the end marker")
    parser.add_argument("--rank", type=int, default=None, help="write only this worker's files")
    parser.add_argument(
        "--last-step-delay", type=float, default=0.0, help="seconds to wait before the last step"
    )
    parser.add_argument(
        "--stop-before", type=int, default=0, help="die this many steps before the end"
    )
    parser.add_argument(
        "--stop-file",
        default=None,
        help="before each step, stop training (and close, writing the end marker) when this "
        "file exists: the five lines the README shows a training loop",
    )
    parser.add_argument("--s3-uri", default=None, help="also upload to this s3:// prefix")
    parser.add_argument("--s3-endpoint-url", default=None)
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mirror = S3Mirror(out, args.s3_uri, args.s3_endpoint_url) if args.s3_uri else None
    rng = np.random.default_rng(args.seed if args.rank is None else args.seed + 1000 * args.rank)
    probs = class_probabilities(args.classes, args.imbalance)
    workers = [f"worker_{i}" for i in range(args.workers)]
    if args.rank is not None:
        workers = [workers[args.rank]]
    for worker in workers:
        export_collections(str(out), worker, args.workers)
    last = args.start_step + args.steps - 1
    with open(args.truth, "a", buffering=1, encoding="utf-8") as truth:
        for step in range(args.start_step, args.start_step + args.steps - args.stop_before):
            if args.stop_file and os.path.exists(args.stop_file):
                break  # asked to stop by the evaluator's stop_file action
            if step == last and args.last_step_delay:
                time.sleep(args.last_step_delay)
            samples = np.zeros(args.classes, dtype=np.int64)
            wrong = np.zeros(args.classes, dtype=np.int64)
            for worker in workers:
                labels, predictions = make_batch(rng, args.batch, probs)
                predicted = predictions.argmax(axis=1)
                samples += np.bincount(labels, minlength=args.classes)
                wrong += np.bincount(labels[predicted != labels], minlength=args.classes)
                write_step(str(out), step, worker, {"labels": labels, "predictions": predictions})
            if mirror is not None:
                mirror.sync()
            truth.write(
                json.dumps(
                    {
                        "step": step,
                        "samples": samples.tolist(),
                        "mispredicted": wrong.tolist(),
                        "time": time.time(),
                    }
                )
                + "\n"
            )
            time.sleep(args.interval)
    if args.stop_before:
        return  # a rank that died writes no end marker
    if not args.no_end:
        end_training(str(out))
        if mirror is not None:
            mirror.sync()
    os.sync()


if __name__ == "__main__":
    main()
