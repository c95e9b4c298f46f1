"""The README's training example (``examples/pytorch_classimbalance.py``) works as it says.

It is the script users copy to make their hook save ``labels`` and ``predictions``, so it is run
as they would run it: once as one process, once under ``torchrun`` with two ranks over gloo
(loopback only), each time with the evaluator already following the trial as a sidecar, with
its defaults but ``argmax`` (which the example says to set). The evaluator must end on the end
marker and count every label of every worker: the reference counts come from reading the trial
back with smdebug's own trial API, worker by worker, and the total from the script's arguments.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.deploy.tools import unavailable
from tests.integration.processes import REPO, free_port, start_evaluator, wait_for

pytestmark = pytest.mark.slow
EXAMPLE = REPO / "examples" / "pytorch_classimbalance.py"
STEPS, BATCH, CLASSES = 20, 32, 4
"""The script's defaults, given explicitly: 640 labels per worker, past the rule's samples=500."""
THRESHOLD_IMBALANCE, THRESHOLD_MISPREDICTION = 10.0, 0.7
"""The rule's defaults, which the evaluator runs with here."""


@pytest.fixture
def launches() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Training launches; each one still running at the end is stopped with its ranks."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:
            stop_launch(process)


def stop_launch(process: subprocess.Popen[bytes]) -> None:
    """Stop a launch and every rank it started. torchrun starts each rank in a session of its
    own, so neither killing torchrun nor its process group reaches them: it is sent SIGTERM,
    which it passes on to its ranks; should it hang, it is killed, and so is each rank it had,
    by pid (only while that pid still runs the example)."""
    if process.poll() is not None:
        return
    ranks = children_of(process.pid)
    process.terminate()
    try:
        process.wait(40)  # torchrun gives its ranks 30 s after SIGTERM
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    for pid in ranks:
        with contextlib.suppress(OSError):
            if str(EXAMPLE).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, from /proc (no tool needed)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # pid (comm) state ppid ...: comm may hold spaces and parentheses
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def launch(trial: Path, ranks: int) -> subprocess.Popen[bytes]:
    """The example as a user starts it: ``python SCRIPT`` or ``torchrun ... SCRIPT``."""
    script = [str(EXAMPLE), "--out-dir", str(trial), "--steps", str(STEPS)]
    script += ["--batch-size", str(BATCH)]
    command = [sys.executable, *script]
    if ranks > 1:
        rendezvous = ["--master_addr=127.0.0.1", f"--master_port={free_port()}"]
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}"]
        command += [*rendezvous, *script]
    # gloo would otherwise pick the interface the host name resolves to.
    environment = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "SMDEBUG_LOG_LEVEL": "warning"}
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def read_back(trial: Path) -> tuple[list[str], list[int], np.ndarray, np.ndarray]:
    """The trial through smdebug's own reader, every worker asked for by name (without
    ``worker=`` it returns the first worker's value only): the workers, the steps, and the
    per-class samples and mispredictions (argmax of the saved logits)."""
    from smdebug.trials import create_trial

    reference = create_trial(str(trial))
    workers, steps = reference.workers(), reference.steps()
    samples, wrong = np.zeros(CLASSES, np.int64), np.zeros(CLASSES, np.int64)
    for step in steps:
        for worker in workers:
            labels = reference.tensor("labels").value(step, worker=worker)
            logits = reference.tensor("predictions").value(step, worker=worker)
            samples += np.bincount(labels, minlength=CLASSES)
            wrong += np.bincount(labels[logits.argmax(axis=1) != labels], minlength=CLASSES)
    return workers, steps, samples, wrong


def expected_holding(samples: np.ndarray, wrong: np.ndarray) -> set[str]:
    """The checks that hold on the final counts, computed here from the reference counts."""
    seen = samples > 0
    holding = set()
    if samples[seen].max() / samples[seen].min() > THRESHOLD_IMBALANCE:
        holding.add("imbalance")
    if (wrong[seen] / samples[seen]).max() > THRESHOLD_MISPREDICTION:
        holding.add("misprediction")
    return holding


def run_example_followed_live(
    tmp_path: Path,
    ranks: int,
    processes: list[subprocess.Popen[bytes]],
    launches: list[subprocess.Popen[bytes]],
) -> dict[str, Any]:
    """Start the evaluator on a trial that does not exist yet, wait until it reports that it
    is following (its first status, InProgress), train, and return its final status once it
    has ended by itself."""
    trial, status, port = tmp_path / "trial", tmp_path / "status.json", free_port()
    evaluator = start_evaluator(trial, status, port, "--html-report", "false")
    processes.append(evaluator)
    wait_for(status.exists, 30)
    following = json.loads(status.read_text())
    assert (following["status"], following["terminal"]) == ("InProgress", False)
    assert not trial.exists(), "the evaluator follows from before the first step lands"
    trainer = launch(trial, ranks)
    launches.append(trainer)
    _, errors = trainer.communicate(timeout=120)
    assert trainer.returncode == 0, errors.decode()[-3000:]
    assert evaluator.wait(60) == 1, "IssuesFound"
    document: dict[str, Any] = json.loads(status.read_text())
    return document


@pytest.mark.parametrize("ranks", [1, 2], ids=["one_process", "torchrun_two_ranks_gloo"])
def test_the_example_saves_every_label_of_every_worker(
    tmp_path: Path,
    ranks: int,
    processes: list[subprocess.Popen[bytes]],
    launches: list[subprocess.Popen[bytes]],
) -> None:
    """The default regexes find the example's tensors, each rank writes its own worker's files
    (``include_workers="all"``), every step is saved (``save_interval=1``), and the verdict is
    the one its imbalanced data calls for."""
    if importlib.util.find_spec("torch") is None:
        unavailable("torch is not installed; make venv installs it (the Makefile's FRAMEWORKS)")
    document = run_example_followed_live(tmp_path, ranks, processes, launches)
    workers, steps, samples, wrong = read_back(tmp_path / "trial")
    assert workers == [f"worker_{rank}" for rank in range(ranks)]
    assert steps == list(range(STEPS))
    assert int(samples.sum()) == STEPS * BATCH * ranks

    assert document["terminal"] is True
    assert document["ended_by"] == "end_of_training"
    assert document["steps_evaluated"] == STEPS
    assert document["samples"] == STEPS * BATCH * ranks
    table = document["classes"]
    assert [table[str(c)]["samples"] for c in range(CLASSES)] == samples.tolist()
    assert [table[str(c)]["mispredicted"] for c in range(CLASSES)] == wrong.tolist()
    assert set(document["modes"]) == {"TRAIN"}
    assert document["incomplete_steps"]["count"] == 0
    assert document["skipped"] == {"rows": {}, "batches": {}, "files": {}, "examples": {}}

    holding = expected_holding(samples, wrong)
    assert "imbalance" in holding, "the example's data is imbalanced on purpose"
    assert document["status"] == "IssuesFound"
    # current names every check, None where it does not hold: compare the ones that hold
    assert {check for check, finding in document["current"].items() if finding} == holding
    assert document["imbalance_ratio"] == pytest.approx(samples.max() / samples.min())
