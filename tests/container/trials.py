"""A named catalogue of trials, written with smdebug's own writer, and their true counts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from devtools.write_trial import end_training, export_collections, write_step


@dataclass
class TrialTruth:
    """What a trial holds, counted with plain numpy as it was written."""

    path: Path
    samples: dict[int, int] = field(default_factory=dict)
    mispredicted: dict[int, int] = field(default_factory=dict)
    steps: list[int] = field(default_factory=list)
    confusion: dict[tuple[int, int], int] = field(default_factory=dict)
    """(label, predicted) -> count, where the two differ."""
    samples_by_mode: dict[str, dict[int, int]] = field(default_factory=dict)

    def add(
        self, labels: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64], mode: str = "TRAIN"
    ) -> None:
        in_mode = self.samples_by_mode.setdefault(mode, {})
        for label, guess in zip(labels.tolist(), predicted.tolist(), strict=True):
            self.samples[label] = self.samples.get(label, 0) + 1
            in_mode[label] = in_mode.get(label, 0) + 1
            if guess != label:
                self.mispredicted[label] = self.mispredicted.get(label, 0) + 1
                pair = (label, guess)
                self.confusion[pair] = self.confusion.get(pair, 0) + 1


Batch = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def scores_batch(probs: Sequence[float], batch: int = 64, skill: float = 2.0) -> Batch:
    """Labels drawn from ``probs``; (B, C) float32 scores favouring the true class."""

    def make(rng: np.random.Generator, _step: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.choice(len(probs), size=batch, p=np.asarray(probs) / sum(probs))
        scores = rng.standard_normal((batch, len(probs))).astype(np.float32)
        scores[np.arange(batch), labels] += skill
        return labels.astype(np.int64), scores

    return make


def write_trial(
    path: Path,
    *,
    steps: int,
    make_batch: Batch,
    workers: int = 1,
    modes: Callable[[int], str] = lambda _s: "TRAIN",
    end: bool = True,
    labels_name: str = "labels",
    predictions_name: str = "predictions",
    seed: int = 0,
) -> TrialTruth:
    """Write ``steps`` steps for ``workers`` workers; return the truth counted with numpy."""
    rng = np.random.default_rng(seed)
    truth = TrialTruth(path)
    names = [f"worker_{i}" for i in range(workers)]
    for worker in names:
        export_collections(str(path), worker, workers, (labels_name, predictions_name))
    for step in range(steps):
        for worker in names:
            labels, predictions = make_batch(rng, step)
            write_step(
                str(path),
                step,
                worker,
                {labels_name: labels, predictions_name: predictions},
                mode=modes(step),
            )
            predicted = predictions.argmax(axis=1) if predictions.ndim == 2 else predictions
            truth.add(labels.reshape(-1).astype(np.int64), predicted.astype(np.int64), modes(step))
        truth.steps.append(step)
    if end:
        end_training(str(path))
    return truth
