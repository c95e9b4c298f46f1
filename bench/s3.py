"""S3 requests per saved (step, worker), counted where they arrive: a loopback S3 endpoint.

moto's S3 server runs on 127.0.0.1 behind a counting layer (``devtools.s3server``) that sorts
each request by the client's access key (each process gets its own: uploader, writer, smdebug,
evaluator) and by operation (LIST, GET, HEAD, other). Scenarios, each for smdebug's rule loop
and for the evaluator (``open_trial('s3://...', s3_endpoint_url=...)``, default poll interval
1 s):

- ``replay``: a finished trial uploaded in hook order, then read to the end;
- ``follow``: a writer process (``devtools.live_writer --s3-uri``) appends steps at a fixed
  interval, uploading each file in hook order, while the reader follows; every request the
  reader makes from start to exit counts, idle polls included.

smdebug takes its endpoint from ``AWS_ENDPOINT_URL`` (its client is ``boto3.client("s3",
region_name=AWS_REGION)``, and boto3 >= 1.28 reads the variable).

    python -m bench.s3 --replay-steps 200 --follow-steps 200 --workers 4
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    SCRATCH,
    SMDEBUG_ENV,
    BenchError,
    counts_match,
    emit,
    module_command,
    parse_result,
    python_env,
    writer_command,
)
from bench.latency import truth_totals
from bench.trials import TrialSpec, ensure_trial, hook_order
from devtools.s3server import CountingS3Server

PREFIX = "job/debug-output"


def client_env(endpoint: str, client: str, *, smdebug: bool = False) -> dict[str, str]:
    """The environment of a benchmark process that signs its requests with its own access key
    (``client``), which is how an endpoint's counts tell the processes apart."""
    env = {
        "AWS_ACCESS_KEY_ID": client,
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": endpoint,
    }
    if smdebug:
        env.update(SMDEBUG_ENV)
    return env


class CountingS3(CountingS3Server):
    """The counting endpoint, with the environment and clients of the benchmark's processes
    (each signs with its own access key, which is how the counts tell them apart)."""

    def client_env(self, client: str, *, smdebug: bool = False) -> dict[str, str]:
        return client_env(self.endpoint, client, smdebug=smdebug)

    def boto_client(self, client: str) -> Any:
        import boto3  # noqa: PLC0415

        return boto3.session.Session(
            aws_access_key_id=client, aws_secret_access_key="bench", region_name="us-east-1"
        ).client("s3", endpoint_url=self.endpoint)


def new_bucket(server: CountingS3, name: str) -> str:
    """A bucket per scenario: moto's listings walk every key of a bucket, and a scenario's
    timings should not depend on the ones before it."""
    server.boto_client("bench-upload").create_bucket(Bucket=name)
    return name


def upload(server: CountingS3, trial: Path, spec: TrialSpec, bucket: str) -> None:
    """Upload a finished trial in hook order (8 at a time; the end marker after the rest)."""
    client = server.boto_client("bench-upload")
    keys = hook_order(spec)

    def put(key: str) -> None:
        client.put_object(Bucket=bucket, Key=f"{PREFIX}/{key}", Body=(trial / key).read_bytes())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys[:-1]))
    put(keys[-1])


def summarise(
    counts: dict[str, int], steps: int, workers: int, reader: str, scenario: str
) -> dict[str, Any]:
    known = {"LIST", "GET", "HEAD"}
    total = sum(counts.values())
    return {
        "reader": reader,
        "scenario": scenario,
        "steps": steps,
        "workers": workers,
        "list": counts.get("LIST", 0),
        "get": counts.get("GET", 0),
        "head": counts.get("HEAD", 0),
        "other": sum(n for op, n in counts.items() if op not in known),
        "total": total,
        "per_step_worker": round(total / (steps * workers), 3) if steps else None,
    }


def reader_command(reader: str, location: str, server: CountingS3, poll: float) -> list[str]:
    if reader == "smdebug":
        return module_command(
            "bench.smdebug_loop", "--trial", location, "--mode", "live", "--classes", "10"
        )
    return module_command(
        "bench.evaluator_loop",
        "--trial",
        location,
        "--mode",
        "live",
        "--classes",
        "10",
        "--s3-endpoint",
        server.endpoint,
        "--poll-interval",
        str(poll),
        "--idle-timeout",
        "120",
    )


def run_reader(
    reader: str, location: str, server: CountingS3, poll: float
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        reader_command(reader, location, server, poll),
        cwd=REPO,
        env=python_env(server.client_env(f"bench-{reader}", smdebug=reader == "smdebug")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    result = parse_result(stdout)
    if result is None:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        if "not available" in stderr:
            return {"not_available": tail}
        raise BenchError(f"S3 reader failed ({process.returncode}):\n{tail}")
    return result


def replay(server: CountingS3, spec: TrialSpec, readers: list[str]) -> list[dict[str, Any]]:
    trial, meta = ensure_trial(spec)
    bucket = new_bucket(server, f"replay-{spec.key}")
    upload(server, trial, spec, bucket)
    rows = []
    for reader in readers:
        client = f"bench-{reader}"
        before = server.counts(client)
        result = finish(run_reader(reader, f"s3://{bucket}/{PREFIX}", server, 1.0), 7200)
        after = server.counts(client)
        delta = {op: after.get(op, 0) - before.get(op, 0) for op in after}
        row = summarise(delta, spec.steps, spec.workers, reader, "replay")
        row.update(_verdict(result, meta["truth"]))
        rows.append(row)
    return rows


def follow(
    server: CountingS3,
    *,
    steps: int,
    workers: int,
    interval: float,
    readers: list[str],
    poll: float,
) -> list[dict[str, Any]]:
    rows = []
    for reader in readers:
        name = f"follow-{reader}-s{steps}-w{workers}-i{interval:g}".replace(".", "-")
        bucket = new_bucket(server, name)
        staging = SCRATCH / f"s3-{name}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        truth = staging / "truth.jsonl"
        client = f"bench-{reader}"
        before = server.counts(client)
        process = run_reader(reader, f"s3://{bucket}/{PREFIX}", server, poll)
        subprocess.run(
            writer_command(
                staging / "trial",
                truth,
                steps,
                interval,
                workers,
                s3_uri=f"s3://{bucket}/{PREFIX}",
                s3_endpoint_url=server.endpoint,
            ),
            cwd=REPO,
            env=python_env(server.client_env("bench-writer")),
            stdout=subprocess.DEVNULL,
            check=True,
        )
        result = finish(process, steps * 5 + 300)
        after = server.counts(client)
        delta = {op: after.get(op, 0) - before.get(op, 0) for op in after}
        row = summarise(delta, steps, workers, reader, f"follow, a step every {interval:g} s")
        row["writer_interval_s"] = interval
        row["poll_interval_s"] = poll if reader == "evaluator" else 2.0
        row.update(_verdict(result, truth_totals(truth)))
        rows.append(row)
        shutil.rmtree(staging, ignore_errors=True)
    return rows


def _verdict(result: dict[str, Any], truth: dict[str, Any]) -> dict[str, Any]:
    if "not_available" in result:
        return {"available": False, "note": result["not_available"].splitlines()[-1]}
    return {
        "available": True,
        "counts_ok": counts_match(result, truth),
        "reader_steps": result.get("steps"),
        "reader_busy_s": result.get("busy_s"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replay-steps", type=int, default=200)
    parser.add_argument("--follow-steps", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[4])
    parser.add_argument(
        "--follow-interval",
        type=float,
        nargs="+",
        default=[0.05],
        help="writer: seconds between steps (one follow scenario each)",
    )
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--readers", nargs="+", default=["smdebug", "evaluator"])
    args = parser.parse_args(argv)
    server = CountingS3()
    server.start()
    rows: list[dict[str, Any]] = []
    try:
        for workers in args.workers:
            if args.replay_steps:
                rows += replay(server, TrialSpec(args.replay_steps, workers), args.readers)
            for interval in args.follow_interval if args.follow_steps else []:
                rows += follow(
                    server,
                    steps=args.follow_steps,
                    workers=workers,
                    interval=interval,
                    readers=args.readers,
                    poll=args.poll_interval,
                )
    finally:
        server.stop()
    emit({"s3": rows})


if __name__ == "__main__":
    main()
