"""Sharded evaluation, as an Indexed Job runs it: N evaluator processes, each one shard of the
same trial writing its state, then ``classimbalance-rule merge``; the merge must say exactly
what one process evaluating the whole trial says (counts, findings, issue step, the checks now,
the history and the exit code), on local disk and on a real S3 endpoint on loopback.

The trial's imbalance builds up only after step 30, so the issue step lies inside some shard's
steps where that shard alone could not have found it: the merge has to replay the ledgers.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from devtools.s3server import CountingS3Server
from tests.container.trials import TrialTruth, write_trial
from tests.integration.processes import REPO

pytestmark = pytest.mark.slow

WORKERS = 6
STEPS = 90
COMPARED = (
    "status",
    "exit_code",
    "last_step",
    "steps_evaluated",
    "samples",
    "issue_step",
    "findings",
    "classes",
    "message",
    "imbalance_ratio",
    "checks_active",
    "current",
    "modes",
    "recent_window",
    "confusion_matrix",
    "history_every",
    "history",
    "ignored",
    "skipped",
    "incomplete_steps",
    "steps_seen",
    "parameters",
)
"""Every field of the status that says what was evaluated (not when, nor by which process)."""
PARAMETER_SETS = {
    "seed": ("--threshold-imbalance", "3", "--samples", "500"),
    "window": (
        "--threshold-imbalance",
        "3",
        "--window-steps",
        "10",
        "--minority-not-improving",
        "true",
        "--confidence",
        "0.95",
    ),
}


def _drifting(rng: np.random.Generator, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced until step 30, then class 2 all but vanishes; scores favour the true class."""
    probs = np.array([1.0, 1.0, 1.0]) if step < 30 else np.array([30.0, 10.0, 0.2])
    labels = rng.choice(3, size=16, p=probs / probs.sum())
    scores = rng.standard_normal((16, 3)).astype(np.float32)
    scores[np.arange(16), labels] += 1.0 if step < 60 else 0.2
    return labels.astype(np.int64), scores


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrialTruth]:
    path = tmp_path_factory.mktemp("sharded") / "trial"
    return path, write_trial(path, steps=STEPS, workers=WORKERS, make_batch=_drifting, seed=7)


def _command(trial: str, status: Path, *flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "container",
        "--trial",
        trial,
        "--once",
        "--argmax",
        "true",
        "--status-file",
        str(status),
        "--metrics-enabled",
        "false",
        "--log-format",
        "json",
        *flags,
    ]


def _run_all(commands: Sequence[list[str]]) -> list[int]:
    """Run the commands at once (as an Indexed Job's pods run); their exit codes."""
    started = [
        subprocess.Popen(c, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for c in commands
    ]
    codes = []
    for process in started:
        try:
            _, stderr = process.communicate(timeout=240)
        finally:
            process.kill()
        codes.append(process.returncode)
        assert process.returncode in {0, 1, 3}, stderr.decode()[-2000:]
    return codes


def _shard_flags(split: str, count: int) -> list[list[str]]:
    """Each shard's flags for one way of splitting the trial."""
    if split == "ranges":
        edges = np.linspace(0, STEPS, count + 1).astype(int).tolist()
        return [
            ["--start-step", str(start), "--end-step", str(end)]
            for start, end in itertools.pairwise(edges)
        ]
    by = {
        "steps": ["--shard-by", "steps", "--shard-steps", "4"],
        "workers": ["--shard-by", "workers"],
    }
    return [
        ["--shard-count", str(count), "--shard-index", str(index), *by[split]]
        for index in range(count)
    ]


def _one_and_merged(
    trial: str, out: Path, split: str, count: int, parameters: Sequence[str], *extra: str
) -> tuple[dict[str, Any], dict[str, Any], int, int]:
    """(one process's status, the merge's, their exit codes)."""
    states = out / "states"
    states.mkdir(parents=True)
    commands = [_command(trial, out / "one.json", *parameters, *extra)]
    for index, flags in enumerate(_shard_flags(split, count)):
        commands.append(
            _command(
                trial,
                out / f"shard-{index}.json",
                *parameters,
                *extra,
                *flags,
                "--emit-state",
                str(states / f"shard-{index}.state.json"),
            )
        )
    codes = _run_all(commands)
    assert codes[1:] == [0] * count, "a shard exits 0 once its state is written"
    merged = subprocess.run(
        [
            sys.executable,
            "-m",
            "container",
            "merge",
            str(states),
            "--status-file",
            str(out / "merged.json"),
            "--log-format",
            "json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    one = json.loads((out / "one.json").read_text())
    return one, json.loads((out / "merged.json").read_text()), codes[0], merged.returncode


def _same(one: dict[str, Any], merged: dict[str, Any]) -> None:
    differing = [key for key in COMPARED if one[key] != merged[key]]
    assert not differing, {key: (one[key], merged[key]) for key in differing[:3]}


@pytest.mark.parametrize("parameters", sorted(PARAMETER_SETS))
@pytest.mark.parametrize(("split", "count"), [("steps", 3), ("workers", 4), ("ranges", 3)])
def test_merge_of_local_shards_equals_one_process(
    trial: tuple[Path, TrialTruth], tmp_path: Path, split: str, count: int, parameters: str
) -> None:
    path, truth = trial
    one, merged, one_code, merge_code = _one_and_merged(
        str(path), tmp_path, split, count, PARAMETER_SETS[parameters]
    )
    _same(one, merged)
    assert merge_code == one_code == merged["exit_code"]
    if parameters == "seed":
        assert one["issue_step"] is not None
        assert one["issue_step"] > 30, "found inside a shard"
    counted = {int(c): v["samples"] for c, v in merged["classes"].items() if v["samples"]}
    assert counted == truth.samples


def test_a_shard_alone_would_not_have_said_what_the_merge_says(
    trial: tuple[Path, TrialTruth], tmp_path: Path
) -> None:
    """The shard holding the issue step finds its first imbalance elsewhere (or never), so the
    merge did not just keep the shards' findings."""
    path, _ = trial
    one, _, _, _ = _one_and_merged(str(path), tmp_path, "ranges", 3, PARAMETER_SETS["seed"])
    shards = [json.loads((tmp_path / f"shard-{i}.json").read_text()) for i in range(3)]
    holding = next(
        s for s in shards if s["shard"]["start_step"] <= one["issue_step"] < s["shard"]["end_step"]
    )
    assert holding["issue_step"] != one["issue_step"]
    assert all(s["exit_code"] == 0 and s["shard"]["state_file"] for s in shards)


def test_merge_of_s3_shards_equals_one_process(
    trial: tuple[Path, TrialTruth], tmp_path: Path, s3_endpoint: CountingS3Server
) -> None:
    path, truth = trial
    client = boto3.client("s3", endpoint_url=s3_endpoint.endpoint)
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        client.upload_file(str(file), "training", f"job/debug/{file.relative_to(path)}")
    endpoint = ("--s3-endpoint-url", s3_endpoint.endpoint)
    one, merged, one_code, merge_code = _one_and_merged(
        "s3://training/job/debug", tmp_path, "steps", 2, PARAMETER_SETS["seed"], *endpoint
    )
    _same(one, merged)
    assert merge_code == one_code == 1
    counted = {int(c): v["samples"] for c, v in merged["classes"].items() if v["samples"]}
    assert counted == truth.samples
