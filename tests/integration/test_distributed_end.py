"""The end of a distributed job, for real: one writer process per rank, each writing its own
worker's files and, when it closes, the end marker (smdebug's hook outside SageMaker). The
marker appears when the first rank closes; the evaluator waits for the others' last steps.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.processes import (
    free_port,
    read_truth,
    start_evaluator,
    start_writer,
)

pytestmark = pytest.mark.slow
STEPS = 12
CLASSES = 5


def run_ranks(
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
    *,
    trial: str,
    rank_0: dict[str, float | int],
    evaluator_flags: tuple[str, ...] = (),
    s3_endpoint: str | None = None,
) -> tuple[dict[str, object], list[int], float]:
    """Two ranks write STEPS steps; rank 0 behaves as ``rank_0`` says. Returns the final status,
    the true per-class counts of everything written, and how long the evaluator ran."""
    status_file, port = tmp_path / "status.json", free_port()
    flags = ("--s3-endpoint-url", s3_endpoint) if s3_endpoint else ()
    started = time.monotonic()
    evaluator = start_evaluator(
        trial, status_file, port, "--samples", "0", *flags, *evaluator_flags
    )
    processes.append(evaluator)
    truths = []
    for rank in (0, 1):
        truth = tmp_path / f"truth-{rank}.jsonl"
        truths.append(truth)
        folder = tmp_path / f"staging-{rank}" if s3_endpoint else Path(trial)
        options = rank_0 if rank == 0 else {}
        processes.append(
            start_writer(
                folder,
                truth,
                steps=STEPS,
                interval=0.1,
                workers=2,
                rank=rank,
                s3_uri=trial if s3_endpoint else None,
                s3_endpoint_url=s3_endpoint,
                **options,  # type: ignore[arg-type]
            )
        )
    assert evaluator.wait(90) in {0, 1}
    elapsed = time.monotonic() - started
    expected = [0] * CLASSES
    for truth in truths:
        for entry in read_truth(truth):
            expected = [a + b for a, b in zip(expected, entry["samples"], strict=True)]
    return json.loads(status_file.read_text()), expected, elapsed


def counted(document: dict[str, object]) -> list[int]:
    classes = document["classes"]
    assert isinstance(classes, dict)
    return [classes.get(str(c), {}).get("samples", 0) for c in range(CLASSES)]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_rank_that_closes_ten_seconds_later_is_waited_for(
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
    request: pytest.FixtureRequest,
    where: str,
) -> None:
    """Rank 0 saves a checkpoint before its last step: the marker of rank 1 is there 10 s
    before rank 0's last step. Every label is counted, nothing is reported missing."""
    endpoint = request.getfixturevalue("s3_endpoint").endpoint if where == "s3" else None
    trial = "s3://training/job-2/debug-output" if endpoint else str(tmp_path / "trial")
    document, expected, elapsed = run_ranks(
        tmp_path, processes, trial=trial, rank_0={"last_step_delay": 10.0}, s3_endpoint=endpoint
    )
    assert elapsed >= 10
    assert document["ended_by"] == "end_of_training"
    assert document["steps_evaluated"] == STEPS
    assert counted(document) == expected
    assert document["incomplete_steps"] == {"count": 0, "steps": []}
    assert document["skipped"]["files"] == {}  # type: ignore[index]


def test_a_rank_that_dies_leaves_its_last_steps_reported_after_the_grace(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Rank 0 dies three steps before the end and writes no marker; rank 1 closes. After
    end_grace the three steps are evaluated with rank 1's labels, and reported."""
    document, expected, _ = run_ranks(
        tmp_path,
        processes,
        trial=str(tmp_path / "trial"),
        rank_0={"stop_before": 3},
        evaluator_flags=("--end-grace", "2"),
    )
    assert document["ended_by"] == "end_of_training"
    assert document["steps_evaluated"] == STEPS
    assert counted(document) == expected, "everything written is counted, nothing twice"
    assert document["incomplete_steps"] == {
        "count": 3,
        "steps": [
            {"step": step, "missing_workers": ["worker_0"]} for step in range(STEPS - 3, STEPS)
        ],
    }
    assert document["skipped"]["files"] == {"missing_worker": 3}  # type: ignore[index]
    assert any(
        "3 steps were evaluated without all their workers" in w for w in document["warnings"]
    )  # type: ignore[union-attr]
