"""The sharded overlay: an Indexed Job of shards and a merge Job, checked on the rendered
output and then run here as the kubelet would run it.

The pods' own environment and arguments from the rendered manifests (the completion index from
the Downward API, ``$(VAR)`` expanded as the kubelet does, the ConfigMap as a file, every mount
a folder of the test's), as processes on this machine: the merge must write what one evaluator
of the whole trial writes, and exit as its podFailurePolicy expects.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from container.config import load_settings
from container.merging import _leading, _wait_flag
from tests.container.trials import scores_batch, write_trial
from tests.deploy.kustomize import Evaluator, evaluators, one, rendered
from tests.deploy.tools import REPO
from tests.integration.test_sharded import COMPARED

OVERLAY = "sharded-evaluate"
INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def _by_job() -> dict[str, Evaluator]:
    return {found.pod.where.split("/")[1]: found for found in evaluators(OVERLAY)}


def _shards_job() -> dict[str, Any]:
    return next(
        doc for doc in rendered(OVERLAY) if doc["metadata"]["name"] == "classimbalance-shards"
    )


def _env(found: Evaluator, index: int) -> dict[str, str]:
    """The container's environment as the kubelet makes it for the pod of ``index``."""
    env: dict[str, str] = {}
    for item in found.container.get("env", []):
        if "valueFrom" in item:
            assert item["valueFrom"]["fieldRef"]["fieldPath"] == INDEX_FIELD, item
            env[item["name"]] = str(index)
        else:
            env[item["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), str(item["value"])
            )
    return env


def test_the_shard_count_agrees_in_the_three_places() -> None:
    job = _shards_job()
    spec = job["spec"]
    count = int(_env(_by_job()["classimbalance-shards"], 0)["CLASSIMBALANCE_SHARD_COUNT"])
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == count > 1


def test_every_shard_loads_its_own_settings_and_paths() -> None:
    found = _by_job()["classimbalance-shards"]
    count = _shards_job()["spec"]["completions"]
    paths: set[str] = set()
    for index in range(count):
        loaded = load_settings(
            [], _env(found, index), job_config_path=None, read_text=found.read_mounted
        )
        sharding = loaded.settings.sharding
        assert (sharding.shard_index, sharding.shard_count) == (index, count)
        own = (
            sharding.emit_state,
            loaded.settings.outputs.status_file,
            loaded.settings.checkpoints.file,
        )
        assert all(path and f"shard-{index}." in path for path in own)
        for path in own:
            mount = found.mount_of(str(path))
            assert mount is not None, path
            assert not mount.get("readOnly"), path
        paths.update(str(path) for path in own)
        assert loaded.settings.following.once
        assert loaded.settings.metrics.enabled is False, "a shard's verdict is not alerted on"
    assert len(paths) == 3 * count, "no two shards write the same file"


def test_the_merge_reads_the_folder_the_shards_write() -> None:
    jobs = _by_job()
    merge, shards = jobs["classimbalance-merge"], jobs["classimbalance-shards"]
    args = merge.container["args"]
    assert args[:2] == ["classimbalance-rule", "merge"], "the entrypoint runs a command as is"
    folders = _leading(args[2:])
    rest, wait = _wait_flag(args[2 + len(folders) :])
    assert wait >= 3600, "the merge Job waits for the shards it was applied with"
    state = _env(shards, 0)["CLASSIMBALANCE_EMIT_STATE"]
    assert [str(PurePosixPath(state).parent)] == folders
    assert state.endswith(".state.json"), "a folder stands for its *.state.json"
    merge_mount, shard_mount = merge.mount_of(folders[0]), shards.mount_of(state)
    assert merge_mount is not None
    assert shard_mount is not None
    assert merge_mount["name"] == shard_mount["name"], "one claim"
    env = _env(merge, 0)
    loaded = load_settings(
        [*rest, "--trial", "x"], env, job_config_path=None, read_text=merge.read_mounted
    )
    assert not PurePosixPath(loaded.settings.outputs.status_file).is_relative_to(folders[0])
    assert loaded.settings.outputs.message_file == "/dev/termination-log"
    failure = one(
        [d for d in rendered(OVERLAY) if d["metadata"]["name"] == "classimbalance-merge"], "Job"
    )["spec"]["podFailurePolicy"]["rules"][0]
    assert failure["action"] == "FailJob"
    assert failure["onExitCodes"]["values"] == [1, 3]


class Node:
    """A stand-in for the node: the claim, the ConfigMap and the termination log as folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.claim = root / "claim"
        self.config = root / "config"

    def host(self, found: Evaluator, path: str, pod: str) -> str:
        """Where a container path is here."""
        if path == "/dev/termination-log":
            return str(self.root / f"{pod}.termination-log")
        mount = found.mount_of(path)
        assert mount is not None, path
        inside = PurePosixPath(path).relative_to(mount["mountPath"])
        volume = found.volume(mount["name"])
        if "configMap" in volume:
            folder = self.config
            for key, text in found.configmaps[volume["configMap"]["name"]].items():
                folder.mkdir(parents=True, exist_ok=True)
                (folder / key).write_text(text)
        elif "persistentVolumeClaim" in volume:
            folder = self.claim / mount.get("subPath", "")
        else:
            folder = self.root / mount["name"]
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder / inside)

    def process(self, found: Evaluator, index: int, pod: str) -> subprocess.Popen[bytes]:
        env = {
            name: self.host(found, value, pod) if value.startswith("/") else value
            for name, value in _env(found, index).items()
        }
        args = [
            self.host(found, arg, pod) if arg.startswith("/") else arg
            for arg in found.container.get("args", [])
        ]
        if args[:1] == ["classimbalance-rule"]:
            args = args[1:]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CLASSIMBALANCE_")}
        return subprocess.Popen(
            [sys.executable, "-m", "container", *args],
            cwd=REPO,
            env={**clean, **env, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )


def _finish(process: subprocess.Popen[bytes]) -> int:
    try:
        _, stderr = process.communicate(timeout=180)
    finally:
        process.kill()
    assert process.returncode in {0, 1}, stderr.decode()[-2000:]
    return process.returncode


@pytest.mark.slow
def test_the_kit_run_here_merges_to_one_evaluators_verdict(tmp_path: Path) -> None:
    node = Node(tmp_path)
    trial = node.claim / "debug-output"
    write_trial(trial, steps=60, workers=4, make_batch=scores_batch([20, 4, 1], batch=16))
    jobs = _by_job()
    shards, merge = jobs["classimbalance-shards"], jobs["classimbalance-merge"]
    count = _shards_job()["spec"]["completions"]
    started = [node.process(merge, 0, "merge")]  # applied together: the merge waits
    started += [node.process(shards, index, f"shard-{index}") for index in range(count)]
    assert [_finish(p) for p in started[1:]] == [0] * count, "a shard exits 0 with its state"
    merge_code = _finish(started[0])

    config = node.host(shards, _env(shards, 0)["RULE_CONFIG"], "one")
    single = tmp_path / "one.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "container",
            "--trial",
            str(trial),
            "--config",
            config,
            "--once",
            "--status-file",
            str(single),
            "--metrics-enabled",
            "false",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    merged_file = node.host(merge, _env(merge, 0)["CLASSIMBALANCE_STATUS_FILE"], "merge")
    merged, expected = json.loads(Path(merged_file).read_text()), json.loads(single.read_text())
    assert {k: merged[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}
    assert merge_code == done.returncode == 1, "IssuesFound: 20:1, and the Job fails at once"
    message = (tmp_path / "merge.termination-log").read_text()
    assert message == merged["message"]
