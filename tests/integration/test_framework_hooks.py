"""Trials written by the frameworks' own smdebug hooks during real training: the truest clients.

PyTorch (one worker, and two over gloo under ``torchrun``) and XGBoost train small models on
synthetic imbalanced data (``devtools/torch_train.py``, ``devtools/xgboost_train.py``), each
writing the true per-class counts of what its hook saved; the evaluator must count exactly
those. The frameworks are installed by ``make venv`` (the Makefile's FRAMEWORKS).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.tools import unavailable
from tests.integration.processes import (
    REPO,
    free_port,
    read_truth,
    start_evaluator,
)

pytestmark = pytest.mark.slow


def require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        unavailable(f"{module} is not installed; make venv installs it (the Makefile's FRAMEWORKS)")


def train(script: str, *args: str, ranks: int = 1) -> subprocess.Popen[bytes]:
    if ranks == 1:
        command = [sys.executable, "-m", script, *args]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={ranks}",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
            "-m",
            script,
            *args,
        ]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def evaluate(trial: Path, tmp_path: Path, *flags: str) -> dict[str, Any]:
    status = tmp_path / "status.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "container",
            "--trial",
            str(trial),
            "--status-file",
            str(status),
            "--metrics-enabled",
            "false",
            "--samples",
            "0",
            *flags,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in {0, 1}, done.stderr
    document: dict[str, Any] = json.loads(status.read_text())
    return document


def truth_of(*files: Path) -> tuple[list[int], list[int], int]:
    """Per-class samples and mispredictions over every step of every rank, and the steps."""
    entries = [entry for file in files for entry in read_truth(file)]
    classes = len(entries[0]["samples"])
    samples = [sum(e["samples"][c] for e in entries) for c in range(classes)]
    wrong = [sum(e["mispredicted"][c] for e in entries) for c in range(classes)]
    return samples, wrong, len({e["step"] for e in entries})


def counted(document: dict[str, Any], classes: int) -> tuple[list[int], list[int]]:
    table = document["classes"]
    samples = [table.get(str(c), {}).get("samples", 0) for c in range(classes)]
    wrong = [table.get(str(c), {}).get("mispredicted", 0) for c in range(classes)]
    return samples, wrong


def last_index_written(trial: Path, rank: int) -> float:
    """When a rank's last index file was written; each rank writes the end marker as it
    closes, right after its last step, so the marker was there from rank 1's time on."""
    return max(path.stat().st_mtime for path in trial.glob(f"index/*/*_worker_{rank}.json"))


def finish(process: subprocess.Popen[bytes]) -> None:
    _, errors = process.communicate(timeout=300)
    assert process.returncode == 0, errors.decode()[-3000:]


@pytest.mark.parametrize("binary", [False, True], ids=["cross_entropy", "bce_with_logits"])
def test_pytorch_hook_one_worker(tmp_path: Path, binary: bool) -> None:
    """save_tensor of the labels and the model's outputs: (B, C) logits with argmax, or a
    BCEWithLogitsLoss model's (B, 1) logits, read as binary logits."""
    require("torch")
    trial, truth = tmp_path / "trial", tmp_path / "truth.jsonl"
    finish(
        train(
            "devtools.torch_train",
            "--out",
            str(trial),
            "--truth",
            str(truth),
            "--steps",
            "8",
            *(["--binary"] if binary else []),
        )
    )
    document = evaluate(trial, tmp_path, "--argmax", "true")
    samples, wrong, steps = truth_of(truth)
    assert document["steps_evaluated"] == steps == 8
    assert counted(document, len(samples)) == (samples, wrong)
    assert document["skipped"]["batches"] == {}
    assert document["skipped"]["rows"] == {}


def test_pytorch_two_workers_over_gloo_live_with_a_rank_closing_late(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """torchrun, two ranks, every rank's hook saving (include_workers="all"); the evaluator
    follows as a sidecar. Rank 0 exits 10 s after its last step, so rank 1's end marker is
    there 10 s before rank 0's last step lands: every label is counted nonetheless."""
    require("torch")
    trial, truth = tmp_path / "trial", tmp_path / "truth.jsonl"
    status, port = tmp_path / "status.json", free_port()
    evaluator = start_evaluator(trial, status, port, "--samples", "0")
    processes.append(evaluator)
    trainer = train(
        "devtools.torch_train",
        "--out",
        str(trial),
        "--truth",
        str(truth),
        "--steps",
        "10",
        "--close-delay",
        "10",
        ranks=2,
    )
    processes.append(trainer)
    finish(trainer)
    assert evaluator.wait(120) in {0, 1}
    rank_0_last, rank_1_last = (last_index_written(trial, worker) for worker in (0, 1))
    assert rank_0_last - rank_1_last >= 5, "rank 0's last step landed well after rank 1 ended"
    document = json.loads(status.read_text())
    samples, wrong, steps = truth_of(tmp_path / "truth.jsonl.0", tmp_path / "truth.jsonl.1")
    assert document["ended_by"] == "end_of_training"
    assert document["steps_evaluated"] == steps == 10
    assert counted(document, len(samples)) == (samples, wrong)
    assert document["incomplete_steps"]["count"] == 0
    assert document["skipped"]["files"] == {}


def test_xgboost_hook_binary_logistic(tmp_path: Path) -> None:
    """binary:logistic: the hook saves the validation labels (floats) and one probability per
    sample at every iteration."""
    require("xgboost")
    trial, truth = tmp_path / "trial", tmp_path / "truth.jsonl"
    finish(train("devtools.xgboost_train", "--out", str(trial), "--truth", str(truth)))
    document = evaluate(trial, tmp_path)
    samples, wrong, steps = truth_of(truth)
    assert document["steps_evaluated"] == steps
    assert counted(document, 2) == (samples, wrong)
    assert document["skipped"]["batches"] == {}
