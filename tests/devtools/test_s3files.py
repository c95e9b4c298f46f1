"""devtools.s3files: the read-only S3 endpoint that benchmarks read trial folders from.

Checked through botocore (what the reader uses), against moto's S3 where S3 defines the answer
(listing pages), and through the project's own reader and command line on a trial written with
smdebug's writer.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from devtools.s3files import StaticS3Server
from evaluator.trial import TrialReader, WorkerTensors, open_trial
from evaluator.trial.s3 import S3Storage
from tests.container.trials import TrialTruth, scores_batch, write_trial

REPO = Path(__file__).resolve().parents[2]
BUCKET = "trials"
PREFIX = "job/debug-output"

Serve = Callable[..., StaticS3Server]

KEYS = [
    "a/1", "a/10", "a/2", "a/b/c", "a b", "a+b", "a%2F", "a-b", "ab", "b", "Z", "é", "日本/語",
    "\uff5e", "\U0001f600", "z~", ".hidden", "-dash",
]  # fmt: skip
"""Keys whose UTF-8 byte order is not their length, case or UTF-16 order (U+FF5E before an
emoji), with characters that URL encoding must carry (space, ``+``, ``%``)."""


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials, no endpoint from the environment, no profile: nothing can reach AWS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "reader")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start endpoints on a folder; every one is stopped when the test ends, however it ends."""
    started: list[StaticS3Server] = []

    def start(root: Path, **options: Any) -> StaticS3Server:
        server = StaticS3Server(root, **options)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def session() -> Any:
    """One boto3 session for the clients (each client takes its own access key)."""
    return boto3.session.Session(region_name="us-east-1")


def s3_client(session: Any, endpoint: str, access_key: str = "tester", **config: Any) -> Any:
    return session.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}, **config),
    )


def folder(root: Path, files: dict[str, bytes], bucket: str = BUCKET) -> Path:
    for key, data in files.items():
        path = root / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def raw_get(endpoint: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request on a new connection, unsigned and unnormalised (no client library)."""
    host, port = endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# -- a trial, read by the project's reader and command line ------------------------------------


@dataclass
class Trial:
    root: Path
    """The endpoint's folder: the trial is its bucket ``BUCKET``, under ``PREFIX``."""
    path: Path
    truth: TrialTruth

    uri = f"s3://{BUCKET}/{PREFIX}"


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> Trial:
    root = tmp_path_factory.mktemp("s3files")
    path = root / BUCKET / PREFIX
    truth = write_trial(
        path, steps=4, workers=2, make_batch=scores_batch([0.6, 0.3, 0.1], batch=16), seed=3
    )
    return Trial(root, path, truth)


def read_all(reader: TrialReader) -> dict[tuple[int, str], WorkerTensors]:
    """Poll until the trial has ended, reading every tensor of every part."""
    parts: dict[tuple[int, str], WorkerTensors] = {}
    try:
        for _ in range(5):
            for ref in reader.poll():
                for part in reader.read(ref, lambda _name: True):
                    assert part.error is None, part.error
                    parts[(ref.step, part.worker)] = part
            if reader.training_ended():
                return parts
        raise AssertionError("the reader never saw the end of training")
    finally:
        reader.close()


def test_the_reader_reads_from_the_endpoint_what_it_reads_from_the_folder(
    trial: Trial, serve: Serve
) -> None:
    server = serve(trial.root)
    remote = read_all(open_trial(trial.uri, s3_endpoint_url=server.endpoint))
    local = read_all(open_trial(str(trial.path)))
    assert remote.keys() == local.keys()
    assert len(remote) == 4 * 2
    for key, part in remote.items():
        assert (part.mode, part.mode_step) == (local[key].mode, local[key].mode_step)
        assert part.tensors.keys() == local[key].tensors.keys()
        for name, array in part.tensors.items():
            np.testing.assert_array_equal(array, local[key].tensors[name])
    labels = Counter(int(v) for part in remote.values() for v in part.tensors["labels"].ravel())
    assert labels == trial.truth.samples
    counts = server.counts("reader")
    # a GET per (step, worker), and one per worker's collections file (if the reader wants it)
    assert len(remote) <= counts["GET"] <= len(remote) + 2
    assert counts["LIST"] >= 1
    assert set(counts) <= {"LIST", "GET", "HEAD"}


COMPARED = ("status", "last_step", "steps_evaluated", "samples", "classes", "imbalance_ratio")


def test_the_command_line_counts_on_two_processes_what_it_counts_in_the_folder(
    trial: Trial, serve: Serve, tmp_path: Path
) -> None:
    server = serve(trial.root, processes=2)
    env = dict(os.environ, AWS_ACCESS_KEY_ID="cli")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    common = ["--once", "--argmax", "true", "--metrics-enabled", "false"]
    common += ["--html-report", "false", "--log-format", "json"]
    runs = {
        "s3": [trial.uri, "--s3-endpoint-url", server.endpoint],
        "folder": [str(trial.path)],
    }
    processes = {}
    for name, where in runs.items():
        status = ["--status-file", str(tmp_path / f"{name}.json")]
        processes[name] = subprocess.Popen(
            [sys.executable, "-m", "container", "--trial", *where, *common, *status],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        for name, process in processes.items():
            _, stderr = process.communicate(timeout=120)
            assert process.returncode in {0, 1, 3}, f"{name}: {stderr[-2000:]}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    remote = json.loads((tmp_path / "s3.json").read_text())
    local = json.loads((tmp_path / "folder.json").read_text())
    assert {k: remote[k] for k in COMPARED} == {k: local[k] for k in COMPARED}
    samples = {int(c): figures["samples"] for c, figures in remote["classes"].items()}
    assert samples == trial.truth.samples
    counts = server.counts("cli")
    assert counts["GET"] >= 4 * 2
    assert set(counts) <= {"LIST", "GET", "HEAD"}
    assert server.clients() == {"cli": counts}


# -- listings --------------------------------------------------------------------------------------


def pages(client: Any, bucket: str, page_size: int, **arguments: Any) -> list[dict[str, Any]]:
    """Every ListObjectsV2 page, following continuation tokens, as the fields a reader uses."""
    found = []
    arguments = {"Bucket": bucket, "MaxKeys": page_size, **arguments}
    while True:
        page = client.list_objects_v2(**arguments)
        found.append(
            {
                "keys": [entry["Key"] for entry in page.get("Contents", [])],
                "sizes": [entry["Size"] for entry in page.get("Contents", [])],
                "classes": {entry["StorageClass"] for entry in page.get("Contents", [])},
                "count": page["KeyCount"],
                "truncated": page["IsTruncated"],
                "token": "NextContinuationToken" in page,
            }
        )
        if not page["IsTruncated"]:
            return found
        arguments["ContinuationToken"] = page["NextContinuationToken"]


def expected_keys(keys: list[str], prefix: str = "", after: str | None = None) -> list[str]:
    return [
        key
        for key in sorted(keys, key=str.encode)
        if key.startswith(prefix) and (after is None or key.encode() > after.encode())
    ]


LISTINGS = [
    (page_size, prefix, after)
    for page_size in (1, 3, 1000)
    for prefix in ("", "a", "日本/", "nothing")
    for after in (None, "a/1", "\uff5e")
]


def test_listing_pages_are_the_sorted_keys(tmp_path: Path, serve: Serve, session: Any) -> None:
    server = serve(folder(tmp_path, {key: key.encode() for key in KEYS}))
    client = s3_client(session, server.endpoint)
    requests = 0
    for page_size, prefix, after in LISTINGS:
        extra = {"StartAfter": after} if after is not None else {}
        found = pages(client, BUCKET, page_size, Prefix=prefix, **extra)
        requests += len(found)
        keys = expected_keys(KEYS, prefix, after)
        chunks = [keys[i : i + page_size] for i in range(0, len(keys), page_size)] or [[]]
        assert [page["keys"] for page in found] == chunks, (page_size, prefix, after)
        assert [page["count"] for page in found] == [len(chunk) for chunk in chunks]
        assert [page["truncated"] for page in found] == [True] * (len(chunks) - 1) + [False]
        assert [page["sizes"] for page in found] == [[len(k.encode()) for k in c] for c in chunks]
    paginated = client.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, PaginationConfig={"PageSize": 4}
    )
    assert [entry["Key"] for page in paginated for entry in page["Contents"]] == expected_keys(KEYS)
    assert server.counts("tester") == {"LIST": requests + -(-len(KEYS) // 4)}


def test_listing_pages_match_moto(tmp_path: Path, serve: Serve, session: Any) -> None:
    from devtools.s3server import CountingS3Server

    server = serve(folder(tmp_path, {key: key.encode() for key in KEYS}))
    moto = CountingS3Server()
    moto.start()
    try:
        theirs = s3_client(session, moto.endpoint)
        theirs.create_bucket(Bucket=BUCKET)
        for key in KEYS:
            theirs.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
        ours = s3_client(session, server.endpoint)
        for page_size, prefix, after in [
            (1000, "", None),
            (1000, "a/", None),
            (1000, "", "\uff5e"),
            (5, "", None),
            (2, "a", "a/10"),
            (1000, "日本/", None),
            (1000, "nothing", None),
        ]:
            extra = {"StartAfter": after} if after is not None else {}
            assert pages(ours, BUCKET, page_size, Prefix=prefix, **extra) == pages(
                theirs, BUCKET, page_size, Prefix=prefix, **extra
            ), (page_size, prefix, after)
    finally:
        moto.stop()


def test_a_page_holds_1000_keys_at_most(tmp_path: Path, serve: Serve, session: Any) -> None:
    keys = [f"k/{i:05d}" for i in range(1003)]
    server = serve(folder(tmp_path, dict.fromkeys(keys, b"")))
    client = s3_client(session, server.endpoint)
    first = client.list_objects_v2(Bucket=BUCKET)
    assert (first["KeyCount"], first["MaxKeys"], first["IsTruncated"]) == (1000, 1000, True)
    assert client.list_objects_v2(Bucket=BUCKET, MaxKeys=5000)["KeyCount"] == 1000
    rest = client.list_objects_v2(Bucket=BUCKET, ContinuationToken=first["NextContinuationToken"])
    assert [entry["Key"] for entry in rest["Contents"]] == keys[1000:]
    assert not rest["IsTruncated"]
    storage = S3Storage(BUCKET, "k", client=client)
    assert storage.list_keys("") == [key.removeprefix("k/") for key in keys]
    assert storage.list_keys("", start_after="01001") == ["01002"]
    assert storage.exists()


def test_listing_errors_are_s3_errors(tmp_path: Path, serve: Serve, session: Any) -> None:
    server = serve(folder(tmp_path, {"a": b"a"}))
    client = s3_client(session, server.endpoint)
    with pytest.raises(ClientError) as missing:
        client.list_objects_v2(Bucket="no-such-bucket")
    assert missing.value.response["Error"]["Code"] == "NoSuchBucket"
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as token:
        client.list_objects_v2(Bucket=BUCKET, ContinuationToken="not a token!")
    assert token.value.response["Error"]["Code"] == "InvalidArgument"
    with pytest.raises(ClientError) as delimiter:
        client.list_objects_v2(Bucket=BUCKET, Delimiter="/")
    assert delimiter.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    status, body = raw_get(server.endpoint, f"/{BUCKET}?list-type=2&max-keys=-1")
    assert status == 400
    assert b"<Code>InvalidArgument</Code>" in body
    status, body = raw_get(server.endpoint, f"/{BUCKET}?list-type=2")
    assert status == 200
    assert b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' in body
    client.head_bucket(Bucket=BUCKET)
    with pytest.raises(ClientError) as head:
        client.head_bucket(Bucket="no-such-bucket")
    assert head.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# -- objects ---------------------------------------------------------------------------------------

DATA = bytes(range(100))


@pytest.mark.parametrize(
    ("header", "span"),
    [
        ("bytes=0-9", (0, 9)),
        ("bytes=90-199", (90, 99)),
        ("bytes=99-99", (99, 99)),
        ("bytes=10-", (10, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-1000", (0, 99)),
    ],
)
def test_ranged_gets_return_the_range(
    tmp_path: Path, serve: Serve, session: Any, header: str, span: tuple[int, int]
) -> None:
    server = serve(folder(tmp_path, {"d/data": DATA}))
    response = s3_client(session, server.endpoint).get_object(
        Bucket=BUCKET, Key="d/data", Range=header
    )
    first, last = span
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert response["Body"].read() == DATA[first : last + 1]
    assert response["ContentRange"] == f"bytes {first}-{last}/100"
    assert response["ContentLength"] == last - first + 1


def test_gets_heads_and_what_s3_answers_past_the_end(
    tmp_path: Path, serve: Serve, session: Any
) -> None:
    root = folder(tmp_path, {"d/data": DATA, "d/empty": b""})
    server = serve(root)
    client = s3_client(session, server.endpoint)
    whole = client.get_object(Bucket=BUCKET, Key="d/data")
    assert whole["Body"].read() == DATA
    assert "ContentRange" not in whole
    ignored = client.get_object(Bucket=BUCKET, Key="d/data", Range="bytes=5-2")  # as S3 does
    assert ignored["Body"].read() == DATA
    for key, header, size in [
        ("d/data", "bytes=100-", 100),
        ("d/data", "bytes=100-200", 100),
        ("d/empty", "bytes=0-0", 0),
    ]:
        with pytest.raises(ClientError) as past:
            client.get_object(Bucket=BUCKET, Key=key, Range=header)
        assert past.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
        assert past.value.response["Error"]["Code"] == "InvalidRange"
        assert past.value.response["Error"]["ActualObjectSize"] == str(size)
    storage = S3Storage(BUCKET, "d", client=client)
    assert storage.read_range("data", 95, 10) == (DATA[95:], 100)
    assert storage.read_range("data", 100, 10) == (b"", 100)
    assert storage.read_range("empty", 0, 10) == (b"", 0)
    assert storage.read_bytes("empty") == b""
    head = client.head_object(Bucket=BUCKET, Key="d/data")
    assert head["ContentLength"] == 100
    (listed,) = client.list_objects_v2(Bucket=BUCKET, Prefix="d/data")["Contents"]
    assert head["ETag"] == listed["ETag"] == whole["ETag"]
    assert head["LastModified"].timestamp() == int((root / BUCKET / "d/data").stat().st_mtime)
    assert storage.modified_time("data") == head["LastModified"].timestamp()
    assert storage.key_exists("data")
    assert not storage.key_exists("nothing")
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("nothing")
    with pytest.raises(ClientError) as missing:
        client.get_object(Bucket=BUCKET, Key="nothing")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"


def test_large_objects_follow_their_headers(tmp_path: Path, serve: Serve, session: Any) -> None:
    """Over 1 MiB a body is not read into memory but sent from the file (``sendfile``)."""
    large = os.urandom(3 << 20)
    server = serve(folder(tmp_path, {"large": large}))
    client = s3_client(session, server.endpoint)
    assert client.get_object(Bucket=BUCKET, Key="large")["Body"].read() == large
    ranged = client.get_object(Bucket=BUCKET, Key="large", Range="bytes=1000-2101000")
    assert ranged["Body"].read() == large[1000:2101001]
    assert ranged["ContentRange"] == f"bytes 1000-2101000/{len(large)}"
    tail = client.get_object(Bucket=BUCKET, Key="large", Range="bytes=-5")["Body"].read()
    assert tail == large[-5:]
    assert server.counts() == {"GET": 3}


@pytest.mark.parametrize(
    "path",
    [
        f"/{BUCKET}/../secret.txt",
        f"/{BUCKET}/../../secret.txt",
        f"/{BUCKET}/%2e%2e/%2E%2E/secret.txt",
        f"/{BUCKET}/inside/..%2F..%2F..%2Fsecret.txt",
        "/..%2Fsecret.txt",
        "/../secret.txt",
        f"/{BUCKET}/%2Fetc%2Fpasswd",
        f"/{BUCKET}//etc/passwd",
        f"/{BUCKET}/inside%00",
        f"/{BUCKET}/./inside",
        f"/{BUCKET}/%ff%fe",
    ],
)
def test_a_key_outside_the_root_is_refused(tmp_path: Path, serve: Serve, path: str) -> None:
    root = folder(tmp_path / "root", {"inside": b"inside"})
    (tmp_path / "secret.txt").write_bytes(b"SECRET")
    (tmp_path / "root" / "secret.txt").write_bytes(b"SECRET")  # in the root, in no bucket
    server = serve(root)
    assert raw_get(server.endpoint, f"/{BUCKET}/inside") == (200, b"inside")
    status, body = raw_get(server.endpoint, path)
    assert status == 400
    assert b"SECRET" not in body
    assert b"<Error><Code>" in body


# -- counting and latency --------------------------------------------------------------------------


def test_requests_are_counted_per_client(tmp_path: Path, serve: Serve, session: Any) -> None:
    server = serve(folder(tmp_path, {"a": b"a", "b": b"b"}))
    alice = s3_client(session, server.endpoint, "alice")
    bob = s3_client(session, server.endpoint, "bob")
    unsigned = s3_client(session, server.endpoint, signature_version=UNSIGNED)
    alice.list_objects_v2(Bucket=BUCKET)
    alice.get_object(Bucket=BUCKET, Key="a")["Body"].read()
    with pytest.raises(ClientError):
        alice.get_object(Bucket=BUCKET, Key="missing")
    alice.head_object(Bucket=BUCKET, Key="b")
    bob.head_bucket(Bucket=BUCKET)
    bob.get_object(Bucket=BUCKET, Key="b", Range="bytes=0-0")["Body"].read()
    with pytest.raises(ClientError) as write:
        bob.put_object(Bucket=BUCKET, Key="c", Body=b"c")
    assert write.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    unsigned.get_object(Bucket=BUCKET, Key="a")["Body"].read()
    assert server.counts("alice") == {"LIST": 1, "GET": 2, "HEAD": 1}
    assert server.counts("bob") == {"HEAD": 1, "GET": 1, "PUT": 1}
    assert server.counts("anonymous") == {"GET": 1}
    assert server.counts() == {"LIST": 1, "GET": 4, "HEAD": 2, "PUT": 1}
    assert not (tmp_path / BUCKET / "c").exists()
    server.clear()
    assert server.counts() == {}
    alice.head_object(Bucket=BUCKET, Key="a")
    assert server.counts() == {"HEAD": 1}
    server.stop()
    assert server.counts("alice") == {"HEAD": 1}, "counts outlive the server"


def test_latency_is_waited_before_each_response_not_in_turn(
    tmp_path: Path, serve: Serve, session: Any
) -> None:
    latency = 0.1
    server = serve(folder(tmp_path, {f"k{i}": b"x" for i in range(4)}), latency=latency)
    client = s3_client(session, server.endpoint)

    def get(key: str) -> bytes:
        return bytes(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    for request, argument in [
        (client.head_object, {"Key": "k0"}),
        (client.list_objects_v2, {}),
        (client.get_object, {"Key": "k0"}),
    ]:
        started = time.perf_counter()
        request(Bucket=BUCKET, **argument)
        assert time.perf_counter() - started >= latency
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(get, [f"k{i}" for i in range(4)]))
    elapsed = time.perf_counter() - started
    assert bodies == [b"x"] * 4
    assert latency <= elapsed < 3 * latency, "four requests wait at the same time"


def test_worker_processes_share_the_port_and_their_counts_add_up(
    tmp_path: Path, serve: Serve
) -> None:
    files = {f"k{i}": f"object {i}".encode() for i in range(6)}
    server = serve(folder(tmp_path, files), processes=2, latency=0.02)
    assert len(server.pids) == 2
    assert os.getpid() not in server.pids
    served_by: Counter[str] = Counter()

    def get(index: int) -> None:
        client = f"client-{index % 3}"
        key = f"k{index % 6}"
        auth = f"AWS4-HMAC-SHA256 Credential={client}/20240101/us-east-1/s3/aws4_request, x=y"
        host, port = server.endpoint.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            for method in ("GET", "HEAD"):
                connection.request(method, f"/{BUCKET}/{key}", headers={"Authorization": auth})
                response = connection.getresponse()
                body = response.read()
                assert response.status == 200
                assert body == (files[key] if method == "GET" else b"")
                served_by[response.headers["x-amz-request-id"].split("-")[0]] += 1
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(get, range(30)))
    assert {int(pid, 16) for pid in served_by} <= set(server.pids)
    for client in range(3):
        assert server.counts(f"client-{client}") == {"GET": 10, "HEAD": 10}
    assert server.counts() == {"GET": 30, "HEAD": 30}
    pids = server.pids
    server.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert server.counts() == {"GET": 30, "HEAD": 30}, "counts outlive the workers"


def test_the_command_line_prints_the_endpoint(tmp_path: Path) -> None:
    root = folder(tmp_path, {"a": b"hello"})
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.s3files", str(root), "--port", "0", "--processes", "2"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        endpoint = process.stdout.readline().strip()
        assert endpoint.startswith("http://127.0.0.1:")
        assert raw_get(endpoint, f"/{BUCKET}/a") == (200, b"hello")
        process.terminate()
        _, stderr = process.communicate(timeout=10)
        assert process.returncode == 0
        assert json.loads(stderr.strip().splitlines()[-1]) == {
            "requests": {"anonymous": {"GET": 1}}
        }
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
