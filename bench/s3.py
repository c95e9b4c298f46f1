"""S3 requests per saved (step, worker), counted where they arrive: a loopback S3 endpoint.

moto's S3 server runs on 127.0.0.1 behind a counting layer that sorts each request by the
client's access key (each process gets its own: uploader, writer, smdebug, evaluator) and by
operation (LIST, GET, HEAD, other). Scenarios, each for smdebug's rule loop and for the
evaluator (``open_trial('s3://...', s3_endpoint_url=...)``, default poll interval 1 s):

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
import logging
import re
import shutil
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

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

PREFIX = "job/debug-output"
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


def classify(method: str, path: str, query: str) -> str:
    """LIST, GET, HEAD or the method and target of anything else (path-style requests)."""
    _bucket, _, key = path.lstrip("/").partition("/")
    params = parse_qs(query, keep_blank_values=True)
    if method == "GET" and not key and ("list-type" in params or "prefix" in params):
        return "LIST"
    if method == "GET" and key:
        return "GET"
    if method == "HEAD":
        return "HEAD"
    if method == "PUT":
        return "PUT"
    return f"{method} {'object' if key else 'bucket'}"


class CountingS3:
    """moto's S3 on 127.0.0.1 and a free port, counting requests by access key and operation."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import (  # noqa: PLC0415  (heavy; only here)
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server  # noqa: PLC0415

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto_app = DomainDispatcherApplication(create_backend_app)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = str(environ.get("PATH_INFO", ""))
            if not path.startswith("/moto-api"):
                found = _CREDENTIAL.search(str(environ.get("HTTP_AUTHORIZATION", "")))
                client = found.group(1) if found else "anonymous"
                op = classify(
                    str(environ["REQUEST_METHOD"]), path, str(environ.get("QUERY_STRING", ""))
                )
                with self._lock:
                    self.counts[client, op] += 1
            answer: Iterable[bytes] = moto_app(environ, start_response)
            return answer

        self._server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def of(self, client: str) -> dict[str, int]:
        with self._lock:
            return {op: n for (who, op), n in self.counts.items() if who == client}

    def client_env(self, client: str, *, smdebug: bool = False) -> dict[str, str]:
        env = {
            "AWS_ACCESS_KEY_ID": client,
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": self.endpoint,
        }
        if smdebug:
            env.update(SMDEBUG_ENV)
        return env

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
        before = server.of(client)
        result = finish(run_reader(reader, f"s3://{bucket}/{PREFIX}", server, 1.0), 7200)
        after = server.of(client)
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
        before = server.of(client)
        process = run_reader(reader, f"s3://{bucket}/{PREFIX}", server, poll)
        subprocess.run(
            writer_command(
                staging / "trial",
                truth,
                steps,
                interval,
                workers,
                "--s3-uri",
                f"s3://{bucket}/{PREFIX}",
                "--s3-endpoint-url",
                server.endpoint,
            ),
            cwd=REPO,
            env=python_env(server.client_env("bench-writer")),
            stdout=subprocess.DEVNULL,
            check=True,
        )
        result = finish(process, steps * 5 + 300)
        after = server.of(client)
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
