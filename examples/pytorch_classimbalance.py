"""Train a tiny PyTorch classifier whose smdebug hook saves what the ClassImbalance rule reads.

The rule counts the tensors named ``labels`` and ``predictions`` (its default regexes); a hook
that saves neither ends in "No debugging data was saved". This script saves both every step.

    python examples/pytorch_classimbalance.py --out-dir /tmp/trial
    torchrun --nproc_per_node=2 examples/pytorch_classimbalance.py --out-dir /tmp/trial
    classimbalance-rule --trial /tmp/trial --argmax true   # (B, C) logits: argmax them

The data is imbalanced on purpose (each class 3x rarer than the one before), so the rule
reports IssuesFound.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
import torch.distributed as dist
from smdebug import modes
from smdebug.pytorch import Hook, SaveConfig


# smdebug 1.0.34's writer calls ndarray.tostring(), which NumPy 2.3 removed: without this every
# save fails. Hand it arrays of a subclass that keeps the old name (the bytes are the same).
# The alternative: pin numpy<2.3 and delete these five lines.
class _Array(np.ndarray):
    tostring = np.ndarray.tobytes


_to_numpy = Hook._make_numpy_array
Hook._make_numpy_array = staticmethod(lambda value: np.asarray(_to_numpy(value)).view(_Array))

CLASSES, FEATURES = 4, 8
PRIOR = torch.tensor([3.0**-c for c in range(CLASSES)])  # class c is sampled 3^c times less


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", required=True, help="the trial (a new folder or s3:// URI)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    distributed = "WORLD_SIZE" in os.environ  # set by torchrun
    if distributed:
        dist.init_process_group("gloo")  # before the hook: it names workers by rank
    rank = dist.get_rank() if distributed else 0
    generator = torch.Generator().manual_seed(rank)  # each rank its own shard of the data
    centres = torch.randn(CLASSES, FEATURES, generator=torch.Generator().manual_seed(99))

    model: torch.nn.Module = torch.nn.Linear(FEATURES, CLASSES)
    loss_fn = torch.nn.CrossEntropyLoss()
    hook = Hook(
        out_dir=args.out_dir,
        save_config=SaveConfig(save_interval=1),  # the default saves every 500th step only
        include_workers="all",  # else only worker_0 saves and the rule sees its labels alone
    )
    hook.register_module(model)
    hook.register_loss(loss_fn)  # its forward hook writes what save_tensor queued
    hook.set_mode(modes.TRAIN)  # modes.EVAL in a validation loop
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    for _ in range(args.steps):
        labels = torch.multinomial(PRIOR, args.batch_size, replacement=True, generator=generator)
        inputs = centres[labels] + torch.randn(args.batch_size, FEATURES, generator=generator)
        logits = model(inputs)
        # Queue both after the forward pass and before the loss: the loss's forward hook
        # writes them into this step (queued after it, only backward() would: in a loop
        # without backward() they would land a step late, and the last step's never).
        # Keep the default collection: naming a new one here makes smdebug 1.0.34 fail.
        hook.save_tensor("labels", labels)
        hook.save_tensor("predictions", logits.detach())
        loss = loss_fn(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    if distributed:
        dist.destroy_process_group()
    # On exit the hook writes the last step and the end marker training_job_end.ts.


if __name__ == "__main__":
    main()
