"""Fault catalogue: sparse, huge class indices.

A class index is whatever a trial's labels say, up to ``max_classes`` (a million by default):
a label of 999,999 beside ten small classes is a valid trial, and a careless or hostile one.
Per-class counts used to be dense arrays indexed by class, and the per-chunk (steps x classes)
cumulative matrices as wide as the largest label, so such a trial made peak RSS 650 MB, and a
1,000-step replay 260 MB and 42 s: a chunk of 2^21 cells shrank to two steps a million wide.
Memory and time must follow the classes seen, not the largest index.

Each case writes its trial here (smdebug's own writer), evaluates it in a child process under
``bounded.run_bounded`` (a wall-clock limit, an address-space cap, its peak RSS measured) and
asserts the bounds with generous margins (the machine is shared) and the exact counts, issue
step and findings against plain Python over the labels as they were written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devtools.write_trial import end_training, export_collections, write_step
from tests.faults.bounded import evaluator, run_bounded

HUGE = 999_999
"""The largest class index below the default ``max_classes`` (1,000,000)."""

StepRows = Callable[[np.random.Generator, int], tuple[list[int], list[int]]]
"""(labels, predicted) of one step."""


@dataclass(frozen=True)
class HugeCase:
    """One hostile trial: its steps' rows, settings, and the bounds its evaluation must keep."""

    steps: int
    rows: StepRows
    max_rss_mib: float
    """Peak RSS the evaluation must stay under (the evaluator alone takes about 45 MiB)."""
    max_seconds: float
    """Wall-clock time the evaluation must take less than (the child's, start-up included)."""
    flags: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    """Rule parameters the reference applies (``samples``, ``threshold_imbalance``)."""


def _small_and_huge(rng: np.random.Generator, step: int) -> tuple[list[int], list[int]]:
    """Ten small classes and one label of 999,999 every step, a few mispredicted."""
    labels = [*rng.integers(0, 10, size=63).tolist(), HUGE]
    predicted = [label if rng.random() < 0.8 else int(rng.integers(0, 10)) for label in labels]
    return labels, predicted


def _huge_once(rng: np.random.Generator, step: int) -> tuple[list[int], list[int]]:
    """Small classes, and at step 0 only, one label of 999,999 predicted as class 3."""
    labels = rng.integers(0, 10, size=64).tolist()
    predicted = [label if rng.random() < 0.9 else int(rng.integers(0, 10)) for label in labels]
    if step == 0:
        labels[-1], predicted[-1] = HUGE, 3
    return labels, predicted


_SPREAD = np.linspace(0, HUGE, 40).astype(np.int64)


def _spread_out(rng: np.random.Generator, step: int) -> tuple[list[int], list[int]]:
    """40 classes spread evenly over [0, 999,999], each step 16 of them, half mispredicted."""
    labels = rng.choice(_SPREAD, size=16).tolist()
    predicted = [label if rng.random() < 0.5 else int(rng.choice(_SPREAD)) for label in labels]
    return labels, predicted


CASES: dict[str, HugeCase] = {
    # The case: one step a million classes wide per cumulative matrix row.
    "one_step_with_a_label_of_999999": HugeCase(
        steps=1, rows=_small_and_huge, max_rss_mib=80, max_seconds=30
    ),
    # The replay: 1,000 steps, each with a label of 999,999 (42 s and 260 MB before).
    "replay_of_1000_steps_each_with_a_label_of_999999": HugeCase(
        steps=1000, rows=_small_and_huge, max_rss_mib=100, max_seconds=40
    ),
    # The largest index seen once, at the first step: the counts stay sparse afterwards.
    "replay_where_999999_appears_once": HugeCase(
        steps=1000, rows=_huge_once, max_rss_mib=100, max_seconds=40
    ),
    # Several sparse classes with the opt-in checks: the recent window and the Wilson bounds
    # keep four more matrices per chunk, each as wide as the chunk's columns.
    "sparse_classes_with_the_window_and_confidence": HugeCase(
        steps=400,
        rows=_spread_out,
        max_rss_mib=100,
        max_seconds=40,
        flags=("--window-steps", "50", "--confidence", "0.95", "--samples", "100"),
        settings={"samples": 100},
    ),
}


@dataclass
class Truth:
    """What the trial holds, counted in plain Python as it was written."""

    samples: dict[int, int] = field(default_factory=dict)
    mispredicted: dict[int, int] = field(default_factory=dict)
    confusion: dict[tuple[int, int], int] = field(default_factory=dict)
    imbalance_step: int | None = None
    """The first step at which largest / smallest class count is above the threshold, once
    ``samples`` labels were counted."""
    imbalance_classes: list[int] = field(default_factory=list)
    """The largest and the smallest class there (ties: the lower index)."""


def _write(path: Path, case: HugeCase) -> Truth:
    rng = np.random.default_rng(17)
    truth = Truth()
    samples_required = int(case.settings.get("samples", 500))
    threshold = float(case.settings.get("threshold_imbalance", 10))
    export_collections(str(path), "worker_0", 1, ("labels", "predictions"))
    for step in range(case.steps):
        labels, predicted = case.rows(rng, step)
        write_step(
            str(path),
            step,
            "worker_0",
            {
                "labels": np.asarray(labels, dtype=np.int64),
                "predictions": np.asarray(predicted, dtype=np.int64),
            },
        )
        for label, guess in zip(labels, predicted, strict=True):
            truth.samples[label] = truth.samples.get(label, 0) + 1
            if guess != label:
                truth.mispredicted[label] = truth.mispredicted.get(label, 0) + 1
                truth.confusion[label, guess] = truth.confusion.get((label, guess), 0) + 1
        counts = list(truth.samples.values())
        if (
            truth.imbalance_step is None
            and sum(counts) >= samples_required
            and max(counts) / min(counts) > threshold
        ):
            truth.imbalance_step = step
            truth.imbalance_classes = [
                min(truth.samples, key=lambda c: (-truth.samples[c], c)),
                min(truth.samples, key=lambda c: (truth.samples[c], c)),
            ]
    end_training(str(path))
    return truth


@pytest.mark.parametrize("name", list(CASES))
def test_huge_class_indices_stay_bounded_and_exact(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    trial = tmp_path / "trial"
    truth = _write(trial, case)
    status_file = tmp_path / "status.json"
    result = run_bounded(
        [
            *evaluator(),
            "--trial",
            str(trial),
            "--status-file",
            str(status_file),
            "--metrics-enabled",
            "false",
            "--log-format",
            "json",
            *case.flags,
        ],
        seconds=max(3 * case.max_seconds, 120),
    )
    assert result.returncode in (0, 1, 3), result.stderr[-3000:]
    peak = result.peak_rss_mib
    assert peak < case.max_rss_mib, (
        f"{name}: peak RSS {peak:.0f} MiB, expected under {case.max_rss_mib}"
    )
    assert result.seconds < case.max_seconds, (
        f"{name}: took {result.seconds:.1f} s, expected under {case.max_seconds}"
    )
    status = json.loads(status_file.read_text())
    assert status["steps_evaluated"] == case.steps
    assert status["samples"] == sum(truth.samples.values())
    classes = status["classes"]
    assert {int(c): entry["samples"] for c, entry in classes.items()} == truth.samples
    assert {
        int(c): entry["mispredicted"] for c, entry in classes.items() if entry["mispredicted"]
    } == truth.mispredicted
    for c, entry in classes.items():
        expected = sorted(
            (
                (guess, count)
                for (label, guess), count in truth.confusion.items()
                if label == int(c)
            ),
            key=lambda pair: (-pair[1], pair[0]),
        )[:3]
        assert [(m["class"], m["count"]) for m in entry["mistaken_for"]] == expected, c
    if "--confidence" not in case.flags:  # the seed's imbalance check, in plain Python
        imbalance = next((f for f in status["findings"] if f["check"] == "imbalance"), None)
        assert (None if imbalance is None else imbalance["step"]) == truth.imbalance_step
        if imbalance is not None:
            assert imbalance["classes"] == truth.imbalance_classes
