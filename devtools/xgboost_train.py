"""A real XGBoost training job with smdebug's XGBoost hook, for a binary model.

``binary:logistic`` boosting on a synthetic, imbalanced problem; the hook saves the validation
data's labels and the model's predictions (one probability per sample) at every iteration, as
a SageMaker XGBoost job with the Debugger's ``labels`` and ``predictions`` collections does.
The truth file holds, per iteration, the labels counted and those mispredicted at a 0.5 cut,
computed from the booster's own predictions with the trees of that iteration.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")

import numpy as np
import xgboost as xgb
from smdebug import SaveConfig
from smdebug.xgboost import Hook

from devtools.write_trial import shim_hook_for_numpy


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="the hook's out_dir (the trial)")
    parser.add_argument("--truth", required=True, help="JSON-lines file of per-step counts")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--positive", type=float, default=0.05, help="share of class 1")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    shim_hook_for_numpy(Hook)
    rng = np.random.default_rng(args.seed)
    labels = (rng.random(args.rows * 2) < args.positive).astype(np.float32)
    features = rng.standard_normal((args.rows * 2, 6)).astype(np.float32)
    features[:, 0] += 1.5 * labels
    train = xgb.DMatrix(features[: args.rows], label=labels[: args.rows])
    validation = xgb.DMatrix(features[args.rows :], label=labels[args.rows :])
    hook = Hook(
        out_dir=args.out,
        train_data=train,
        validation_data=validation,
        include_collections=["labels", "predictions"],
        save_config=SaveConfig(save_interval=1),
    )
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2, "eta": 0.3, "seed": args.seed},
        train,
        num_boost_round=args.rounds,
        callbacks=[hook],
    )
    truth_labels = labels[args.rows :].astype(np.int64)
    with open(args.truth, "w", encoding="utf-8") as truth:
        for step in range(args.rounds):
            probabilities = booster.predict(validation, iteration_range=(0, step + 1))
            predicted = (probabilities > 0.5).astype(np.int64)
            samples = np.bincount(truth_labels, minlength=2)
            wrong = np.bincount(truth_labels[predicted != truth_labels], minlength=2)
            record = {"step": step, "samples": samples.tolist(), "mispredicted": wrong.tolist()}
            truth.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
