"""Sharded evaluation on S3: one process against N shard processes and their merge.

A finished trial is served by a loopback S3 endpoint: by default ``devtools.s3files`` (the
trial's folder as a bucket, in worker processes of its own, about 0.5 ms per request), with
``--endpoint moto`` moto's server behind the counting layer (the trial uploaded; about 17 ms of
its CPU per GET, under the benchmark's GIL, so moto is the bottleneck there and sharding cannot
help); ``--endpoint local`` reads the folder itself. Then, in interleaved rounds, the command
line evaluates it as one process (``--once``) and as N shards started together
(``--shard-count N --shard-index I --emit-state``, each with its own access key so its requests
are counted apart), followed by
``classimbalance-rule merge``. Timed: each whole process, start-up included, from the first
start to the last exit, and the merge alone. Checked: the merged status equals the single
process's on every field that says what was evaluated, and the counts are the trial's truth.

The machine matters more here than anywhere: N processes share its cores with the S3 server,
so the speed-up is bounded by the cores the evaluators get (``os.cpu_count()`` is reported).

    python -m bench.shards --steps 1000 --workers 4 --shards 1,2,4 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, SCRATCH, emit, median, python_env
from bench.s3 import PREFIX, CountingS3, client_env, new_bucket, upload
from bench.trials import END_MARKER, TrialSpec, ensure_trial
from devtools.s3files import StaticS3Server

TRIAL_PARTS = ("collections", "events", "index", END_MARKER)
"""What of a cached trial's folder is the trial (its bench-trial.json is not)."""


class FilesS3(StaticS3Server):
    """The static endpoint, with the benchmark's per-process credentials (counted apart)."""

    def client_env(self, client: str, *, smdebug: bool = False) -> dict[str, str]:
        return client_env(self.endpoint, client, smdebug=smdebug)


class LocalFolder:
    """No endpoint: the shards read the trial's folder (how far the evaluator alone goes)."""

    endpoint = ""

    def client_env(self, client: str, *, smdebug: bool = False) -> dict[str, str]:
        return {}

    def counts(self, client: str | None = None) -> dict[str, int]:
        return {}

    def stop(self) -> None:
        pass


Endpoint = CountingS3 | FilesS3 | LocalFolder


def serve(kind: str, spec: TrialSpec, trial: Path) -> tuple[Endpoint, str]:
    """The endpoint of ``kind`` serving the trial, and the trial's location through it."""
    if kind == "local":
        return LocalFolder(), str(trial)
    if kind == "moto":
        server = CountingS3()
        server.start()
        bucket = new_bucket(server, f"shards-{spec.key}")
        upload(server, trial, spec, bucket)
        return server, f"s3://{bucket}/{PREFIX}"
    root = SCRATCH / "shards-s3files"
    shutil.rmtree(root, ignore_errors=True)
    folder = root / "bench" / PREFIX
    folder.mkdir(parents=True)
    for part in TRIAL_PARTS:
        if (trial / part).exists():
            (folder / part).symlink_to(trial / part)
    files = FilesS3(root, processes=2)
    files.start()
    return files, f"s3://bench/{PREFIX}"


COMPARED = (
    "status",
    "last_step",
    "steps_evaluated",
    "samples",
    "issue_step",
    "findings",
    "classes",
    "imbalance_ratio",
    "current",
    "history",
)


def _evaluate(
    server: Endpoint, uri: str, status: Path, client: str, *flags: str
) -> subprocess.Popen[str]:
    endpoint = ["--s3-endpoint-url", server.endpoint] if server.endpoint else []
    command = [
        sys.executable, "-m", "container", "--trial", uri, "--once", "--argmax", "true",
        *endpoint, "--status-file", str(status),
        "--metrics-enabled", "false", "--html-report", "false", "--log-format", "json",
        *flags,
    ]  # fmt: skip
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=python_env(server.client_env(client)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _children_cpu() -> float:
    """CPU seconds (user and system) of every reaped child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wait(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        _, stderr = process.communicate(timeout=3600)
        if process.returncode not in {0, 1, 3}:
            raise RuntimeError(f"an evaluator exited {process.returncode}: {stderr[-2000:]}")


def one_process(server: Endpoint, uri: str, out: Path, tag: str) -> dict[str, Any]:
    status = out / f"one-{tag}.json"
    client = f"bench-one-{tag}"
    before = sum(server.counts(client).values())
    cpu, started = _children_cpu(), time.perf_counter()
    _wait([_evaluate(server, uri, status, client)])
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "cpu_s": _children_cpu() - cpu,
        "requests": sum(server.counts(client).values()) - before,
        "document": json.loads(status.read_text()),
    }


def sharded(server: Endpoint, uri: str, out: Path, shards: int, tag: str) -> dict[str, Any]:
    folder = out / f"shards-{shards}-{tag}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    clients = [f"bench-shard-{tag}-{shards}-{i}" for i in range(shards)]
    cpu, started = _children_cpu(), time.perf_counter()
    _wait(
        [
            _evaluate(
                server,
                uri,
                folder / f"shard-{index}.json",
                clients[index],
                "--shard-count",
                str(shards),
                "--shard-index",
                str(index),
                "--emit-state",
                str(folder / f"shard-{index}.state.json"),
            )
            for index in range(shards)
        ]
    )
    shards_done, shards_cpu = time.perf_counter(), _children_cpu() - cpu
    merged = folder / "merged.json"
    done = subprocess.run(
        [sys.executable, "-m", "container", "merge", str(folder), "--status-file", str(merged),
         "--html-report", "false", "--log-format", "json"],
        cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode not in {0, 1, 3}:
        raise RuntimeError(f"the merge exited {done.returncode}: {done.stderr[-2000:]}")
    ended = time.perf_counter()
    return {
        "shards_s": shards_done - started,
        "shards_cpu_s": shards_cpu,
        "merge_s": ended - shards_done,
        "wall_s": ended - started,
        "requests": sum(sum(server.counts(c).values()) for c in clients),
        "state_bytes": sum(p.stat().st_size for p in folder.glob("*.state.json")),
        "document": json.loads(merged.read_text()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--shards", default="1,2,4", help="comma-separated shard counts")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--endpoint",
        choices=("files", "moto", "local"),
        default="files",
        help="devtools.s3files (default), moto's server, or the local folder",
    )
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.shards.split(",")]
    spec = TrialSpec(args.steps, args.workers, args.classes)
    trial, meta = ensure_trial(spec)
    out = SCRATCH / "shards"
    out.mkdir(parents=True, exist_ok=True)
    server, uri = serve(args.endpoint, spec, trial)
    try:
        rounds: list[dict[str, Any]] = []
        for round_index in range(args.repeat):
            tag = str(round_index)
            single = one_process(server, uri, out, tag)
            row: dict[str, Any] = {"one": single, "shards": {}}
            for shards in counts:
                result = sharded(server, uri, out, shards, tag)
                same = all(result["document"][k] == single["document"][k] for k in COMPARED)
                if not same:
                    raise RuntimeError(f"{shards} shards did not merge to one process's status")
                row["shards"][shards] = result
            truth = meta["truth"]["samples"]
            counted = [
                single["document"]["classes"].get(str(c), {}).get("samples", 0)
                for c in range(len(truth))
            ]
            if counted != list(truth):
                raise RuntimeError("one process did not count the trial's true labels")
            rounds.append(row)
    finally:
        server.stop()
    summary: dict[str, Any] = {
        "trial": spec.label,
        "endpoint": args.endpoint,
        "cpus": os.cpu_count(),
        "rounds": args.repeat,
        "one_process_s": median([r["one"]["wall_s"] for r in rounds]),
        "one_process_cpu_s": median([r["one"]["cpu_s"] for r in rounds]),
        "one_process_requests": rounds[0]["one"]["requests"],
        "shards": {},
    }
    for shards in counts:
        walls = [r["shards"][shards]["wall_s"] for r in rounds]
        ratios = [r["one"]["wall_s"] / r["shards"][shards]["wall_s"] for r in rounds]
        summary["shards"][shards] = {
            "wall_s": median(walls),
            "shards_s": median([r["shards"][shards]["shards_s"] for r in rounds]),
            "shards_cpu_s": median([r["shards"][shards]["shards_cpu_s"] for r in rounds]),
            "merge_s": median([r["shards"][shards]["merge_s"] for r in rounds]),
            "speedup": median(ratios),
            "requests": rounds[0]["shards"][shards]["requests"],
            "state_bytes": rounds[0]["shards"][shards]["state_bytes"],
            "merged_equals_one_process": True,
        }
    emit({"shards": summary})
    print(json.dumps(summary, indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
