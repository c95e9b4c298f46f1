"""A real PyTorch training job with smdebug's PyTorch hook: the truest client of the evaluator.

A linear model learns a synthetic, imbalanced problem; each step the script hands the hook the
batch's labels and the model's outputs (``hook.save_tensor``), as a user's training loop does,
and writes the step's true per-class counts (computed here, with torch) to a JSON-lines truth
file. Run it once for one worker, or under ``torchrun --nproc_per_node=2`` for two workers over
gloo: every rank's hook writes its own worker's files (``include_workers="all"``) and, when the
process exits, the end marker, as outside SageMaker. ``--binary`` trains a one-logit model with
``BCEWithLogitsLoss`` (predictions (B, 1) logits); ``--close-delay`` keeps rank 0 from exiting
for that many seconds after its last step (a rank that saves a checkpoint before it closes).

smdebug 1.0.34's writer calls ``ndarray.tostring``, which NumPy 2.3 removed: the hook is handed
arrays of a subclass that keeps it as ``tobytes`` (the bytes are identical), the shim a user on
a recent NumPy needs too.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence

os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")

import numpy as np
import torch
import torch.distributed as dist
from smdebug.pytorch import Hook, SaveConfig

from devtools.write_trial import shim_hook_for_numpy


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="the hook's out_dir (the trial)")
    parser.add_argument("--truth", required=True, help="JSON-lines file; rank R appends to it")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--imbalance", type=float, default=20.0)
    parser.add_argument("--binary", action="store_true", help="one logit, BCEWithLogitsLoss")
    parser.add_argument("--close-delay", type=float, default=0.0, help="rank 0 exits this late")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if world > 1 else 0
    shim_hook_for_numpy(Hook)
    torch.manual_seed(args.seed + rank)
    classes = 2 if args.binary else args.classes
    weights = args.imbalance ** (-np.arange(classes) / max(classes - 1, 1))
    prior = torch.tensor(weights / weights.sum(), dtype=torch.float32)
    model = torch.nn.Linear(8, 1 if args.binary else classes)
    loss_fn: torch.nn.Module = (
        torch.nn.BCEWithLogitsLoss() if args.binary else torch.nn.CrossEntropyLoss()
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    hook = Hook(
        out_dir=args.out,
        save_config=SaveConfig(save_interval=1),
        include_collections=["labels", "predictions"],
        include_workers="all",
    )
    for collection in ("labels", "predictions"):
        # Created before the first step, so the hook gives them its save and reduction
        # configs (a collection first named by save_tensor has none, and smdebug fails on it).
        hook.get_collection(collection).include(f"^{collection}$")
    hook.register_module(model)
    hook.register_loss(loss_fn)
    if world > 1:
        # smdebug refuses an out_dir that exists: every rank makes its hook before any writes.
        dist.barrier()
    centres = torch.randn(classes, 8)
    truth_path = f"{args.truth}.{rank}" if world > 1 else args.truth
    with open(truth_path, "w", buffering=1, encoding="utf-8") as truth:
        for step in range(args.steps):
            labels = torch.multinomial(prior, args.batch, replacement=True)
            inputs = centres[labels] + torch.randn(args.batch, 8)
            outputs = model(inputs)
            if args.binary:
                loss = loss_fn(outputs, labels.float().unsqueeze(1))
                predicted = (outputs[:, 0] > 0).long()
            else:
                loss = loss_fn(outputs, labels)
                predicted = outputs.argmax(dim=1)
            hook.save_tensor("labels", labels, "labels")
            hook.save_tensor("predictions", outputs.detach(), "predictions")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            samples = torch.bincount(labels, minlength=classes)
            wrong = torch.bincount(labels[predicted != labels], minlength=classes)
            truth.write(
                json.dumps(
                    {
                        "step": step,
                        "rank": rank,
                        "samples": samples.tolist(),
                        "mispredicted": wrong.tolist(),
                    }
                )
                + "\n"
            )
    if rank == 0 and args.close_delay:
        time.sleep(args.close_delay)
    if world > 1:
        dist.destroy_process_group()
    # The hook writes the last step and the end marker when the process exits.


if __name__ == "__main__":
    main()
