"""S3 trials, against a real S3 endpoint on loopback (moto's server), and what each poll costs.

Trials are written by smdebug's own writer into a local folder, then uploaded file by file in
the order a hook writes them (collections, then per step and worker the event file before its
index file, the end marker last). Requests are counted twice: at the client (botocore events:
what the reader asked for, and the HTTP attempts including retries) and at the server (what
went over the wire). The per-poll figures are printed by the following test (``pytest -s``).
"""

from __future__ import annotations

import datetime
import itertools
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.retries.standard import ExponentialBackoff
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from devtools.s3server import CountingS3Server, S3Request
from devtools.write_trial import end_training, export_collections, write_step
from evaluator.trial import StepRef, TrialError, WorkerTensors
from evaluator.trial import s3 as s3_module
from evaluator.trial.layout import END_MARKER, event_key, index_key
from evaluator.trial.native import NativeTrialReader
from evaluator.trial.open import open_trial, s3_native_reader
from evaluator.trial.parts import EVENT_HEAD_BYTES
from evaluator.trial.records import RECORD_OVERHEAD
from evaluator.trial.s3 import S3Storage, make_client, parse_s3_uri, parse_timestamp
from tests.trial.s3server import ClientCounter, Failures, Fault, FaultProxy, at_rate
from tests.trial.test_native import (
    SCENARIOS,
    SMDEBUG_SAFE_DTYPES,
    TRIAL_CASES,
    End,
    Scenario,
    TrialCase,
    Write,
    assert_same_array,
    given_up,
    large_file_reader,
    late_parts,
    make_array,
    native_reader,
    read_everything,
    write_case,
    write_part,
)

PREFIX = "jobs/run-1/debug-output"
"""Where the trials go in their bucket; a prefix with slashes, as SageMaker writes them."""


def every_tensor(_name: str) -> bool:
    """Every tensor is wanted."""
    return True


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[CountingS3Server]:
    moto = CountingS3Server()
    moto.start()
    try:
        yield moto
    finally:
        moto.stop()


_buckets = itertools.count()


@pytest.fixture(scope="module")
def session() -> Any:
    """Creating a client from a new boto3 session costs ~0.2 s, from a used one ~0.015 s. Tests
    of the credential chain and of ``open_trial`` do not use it."""
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


@pytest.fixture(scope="module")
def uploader(server: CountingS3Server, session: Any) -> Iterator[Any]:
    client = session.client("s3", endpoint_url=server.endpoint)
    yield client
    client.close()


@dataclass
class S3:
    """One test's bucket on the shared server, and what the test needs to use it."""

    server: CountingS3Server
    bucket: str
    writer: Any
    """The uploader's client (never counted as the reader's)."""
    session: Any

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def uri(self, prefix: str = PREFIX) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def put(self, key: str, data: bytes, prefix: str = PREFIX) -> None:
        self.writer.put_object(Bucket=self.bucket, Key=f"{prefix}/{key}", Body=data)

    def upload(self, trial: Path, key: str, prefix: str = PREFIX) -> None:
        self.put(key, (trial / key).read_bytes(), prefix)

    def upload_part(self, trial: Path, step: int, worker: str, prefix: str = PREFIX) -> None:
        """One (step, worker) as a hook writes it: the event file, then its index file."""
        self.upload(trial, event_key(step, worker), prefix)
        self.upload(trial, index_key(step, worker), prefix)

    def upload_collections(
        self, trial: Path, workers: tuple[str, ...], prefix: str = PREFIX
    ) -> None:
        for worker in workers:
            self.upload(trial, f"collections/000000000/{worker}_collections.json", prefix)

    def upload_case(self, trial: Path, case: TrialCase, prefix: str = PREFIX) -> None:
        self.upload_collections(trial, case.workers, prefix)
        for step in case.steps:
            for worker in case.workers:
                self.upload_part(trial, step, worker, prefix)
        self.upload(trial, END_MARKER, prefix)

    def storage(
        self,
        prefix: str = PREFIX,
        *,
        max_pool: int = 10,
        max_attempts: int = 10,
        page_size: int = 1000,
    ) -> tuple[S3Storage, ClientCounter]:
        """A storage whose client is counted (made as ``S3Storage`` makes its own)."""
        client = make_client(
            self.endpoint, max_pool=max_pool, max_attempts=max_attempts, session=self.session
        )
        storage = S3Storage(self.bucket, prefix, client=client, page_size=page_size)
        counter = ClientCounter()
        counter.attach(storage.client)
        return storage, counter


@pytest.fixture
def s3(
    server: CountingS3Server,
    uploader: Any,
    session: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> S3:
    """Fake credentials, no endpoint from the environment, no profile: nothing can reach AWS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("SMDEBUG_TRAINING_END_DELAY_REFRESH", "0")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        # Set, then delete: monkeypatch then restores the variable even if the code sets it.
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    bucket = f"trials-{next(_buckets)}"
    uploader.create_bucket(Bucket=bucket)
    server.clear()
    return S3(server, bucket, uploader, session)


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's backoff delays as it computes them; the tests do not sleep them."""
    delays: list[float] = []
    compute = ExponentialBackoff.delay_amount

    def record(self: ExponentialBackoff, context: Any) -> float:
        delays.append(compute(self, context))
        return 0.0

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", record)
    return delays


def reads(calls: list[S3Request]) -> Counter[str]:
    """Requests by kind; GETs by the folder they fetch from (ranged or not: same price)."""
    kinds: Counter[str] = Counter()
    for seen in calls:
        if seen.op == "GetObject":
            kinds[f"GET {seen.key.removeprefix(f'{PREFIX}/').split('/', 1)[0]}"] += 1
        elif seen.op == "ListObjectsV2":
            kinds["LIST"] += 1
        elif seen.op == "HeadObject":
            kinds["HEAD"] += 1
        else:
            kinds[seen.op] += 1
    return kinds


def compare_with_local(
    parts: dict[tuple[int, str], WorkerTensors], local: dict[tuple[int, str], WorkerTensors]
) -> None:
    assert parts.keys() == local.keys()
    for key, part in parts.items():
        expected = local[key]
        assert (part.mode, part.mode_step) == (expected.mode, expected.mode_step)
        assert part.tensors.keys() == expected.tensors.keys()
        for name, array in part.tensors.items():
            assert_same_array(array, expected.tensors[name])


# -- the same trial reads the same from S3 as from a folder --------------------------------------


S3_CASES = {
    name: TRIAL_CASES[name]
    for name in (
        "one_worker_labels_predictions",
        "four_workers_train_eval_interleaved",
        "other_dtypes_four_workers",
    )
}
"""1 and 4 workers, TRAIN and EVAL, eleven dtypes (a request to moto costs ~10 ms, so not every
case: each case of ``TRIAL_CASES`` is read from a folder below by the same parsing;
the index folder boundary is crossed by the following test)."""


@pytest.mark.parametrize("case", S3_CASES.values(), ids=S3_CASES.keys())
def test_reads_what_the_local_reader_reads(s3: S3, tmp_path: Path, case: TrialCase) -> None:
    written = write_case(tmp_path / "trial", case)
    s3.upload_case(written.path, case)
    reader = open_trial(s3.uri(), s3_endpoint_url=s3.endpoint)
    assert isinstance(reader, NativeTrialReader)
    parts = read_everything(reader)
    compare_with_local(parts, read_everything(native_reader(written.path)))
    for (step, worker), part in parts.items():
        assert (part.mode, part.mode_step) == written.modes[step]
        for name, expected in written.values[(step, worker)].items():
            assert_same_array(part.tensors[name], expected)
    gets = reads(s3.server.reads())
    assert gets["GET events"] == len(written.values)  # one GET per (step, worker)
    assert gets["GET index"] == 0
    reader.close()


def test_large_event_files_on_s3_fetch_just_the_wanted_records(s3: S3, tmp_path: Path) -> None:
    """Event files over ``event_head_bytes``: the index gives the layout, and ``read`` GETs only
    the wanted byte ranges."""
    case = TrialCase(
        {"labels": ("int32", (8,)), "predictions": ("float64", (8, 3))},
        steps=(0, 1, 2),
        workers=("worker_0", "worker_1"),
        modes=("TRAIN", "EVAL"),
    )
    written = write_case(tmp_path / "trial", case)
    s3.upload_case(written.path, case)
    storage, counter = s3.storage()
    reader = s3_native_reader(storage, event_head_bytes=RECORD_OVERHEAD)
    parts = {}
    for ref in reader.poll():
        for part in reader.read(ref, lambda name: name == "labels"):
            parts[(ref.step, part.worker)] = part
    for key, part in parts.items():
        assert list(part.tensors) == ["labels"]
        assert_same_array(part.tensors["labels"], written.values[key]["labels"])
    kinds = reads(counter.calls)
    assert kinds["GET index"] == len(written.values)
    assert kinds["GET events"] == 2 * len(written.values)  # the head at poll, labels at read
    assert all(seen.ranged for seen in counter.calls if "/events/" in seen.key)


# -- following a live trial, and what it costs -----------------------------------------------


@pytest.mark.parametrize(
    ("workers", "steps_per_poll"), [(1, 1), (4, 1), (4, 3)], ids=["1w", "4w", "4w-3-steps-per-poll"]
)
def test_following_costs_one_get_per_part(
    s3: S3, tmp_path: Path, workers: int, steps_per_poll: int
) -> None:
    """Steps 997-1002 (index folders 0 and 1) uploaded while a reader follows; each poll costs
    one LIST (which also shows the end marker) and one GET per new (step, worker)."""
    names = tuple(f"worker_{number}" for number in range(workers))
    trial = tmp_path / "trial"
    for worker in names:
        export_collections(str(trial), worker, workers)
    s3.upload_collections(trial, names)
    storage, counter = s3.storage()
    reader = s3_native_reader(storage)

    def poll_and_read() -> tuple[list[StepRef], Counter[str]]:
        before_client, before_server = len(counter.calls), len(s3.server.reads())
        refs = reader.poll()
        for ref in refs:
            for part in reader.read(ref, every_tensor):
                assert part.error is None, part.error
                expected = make_array("int64", (8,), seed=ref.step * 10 + names.index(part.worker))
                assert_same_array(part.tensors["labels"], expected)
        client = reads(counter.calls[before_client:])
        assert client == reads(s3.server.reads()[before_server:])  # the wire agrees
        return refs, client

    _, setup = poll_and_read()
    # exists, marker, collections, index
    assert setup == {"LIST": 3, "HEAD": 1, "GET collections": workers}

    steps = list(range(997, 1003))
    returned: list[int] = []
    busy: list[Counter[str]] = []
    for first in range(0, len(steps), steps_per_poll):
        batch = steps[first : first + steps_per_poll]
        for step in batch:
            for worker in names:
                labels = make_array("int64", (8,), seed=step * 10 + names.index(worker))
                write_step(str(trial), step, worker, {"labels": labels})
                s3.upload_part(trial, step, worker)
        refs, cost = poll_and_read()
        assert [ref.step for ref in refs] == batch
        assert all(len(ref.parts) == workers for ref in refs)
        returned += [ref.step for ref in refs]
        busy.append(cost)
        assert cost == {"LIST": 1, "GET events": len(batch) * workers}

    _, idle = poll_and_read()
    assert idle == {"LIST": 1}
    end_training(str(trial))
    s3.upload(trial, END_MARKER)
    refs, ending = poll_and_read()
    assert refs == []
    assert ending == {"LIST": 2, "HEAD": 1}  # the marker's LastModified: the end's grace
    assert reader.training_ended()
    assert returned == steps

    parts = len(steps) * workers
    total = sum(busy, Counter()) + setup + idle + ending
    assert total["GET events"] == parts  # exactly one GET per (step, worker)
    steady = sum(busy, Counter()).total() / parts
    assert steady == pytest.approx((1 + steps_per_poll * workers) / (steps_per_poll * workers))
    print(
        f"\n{workers} worker(s), {steps_per_poll} step(s) per poll: busy poll = 1 LIST + "
        f"{steps_per_poll * workers} GET; idle poll = 1 LIST; end = 2 LIST + 1 HEAD; "
        f"setup = {dict(setup)}.\n  requests per (step, worker): {steady:.3f} while following, "
        f"{total.total() / parts:.3f} with setup, one idle poll and the end ({dict(total)})"
    )
    reader.close()


def test_a_poll_between_workers_waits_for_the_step(s3: S3, tmp_path: Path) -> None:
    """Polls that land while a step is half uploaded return nothing, then the step once."""
    names = ("worker_0", "worker_1", "worker_2", "worker_3")
    trial = tmp_path / "trial"
    for worker in names:
        export_collections(str(trial), worker, len(names))
    s3.upload_collections(trial, names)
    storage, counter = s3.storage()
    reader = s3_native_reader(storage)
    returned: list[StepRef] = []
    rng = np.random.default_rng(0)
    for step in (998, 999, 1000, 1001):
        for worker in rng.permutation(names):
            write_part(trial, step, str(worker))
            s3.upload_part(trial, step, str(worker))
            returned += reader.poll()
    assert [(ref.step, len(ref.parts)) for ref in returned] == [
        (998, 4),
        (999, 4),
        (1000, 4),
        (1001, 4),
    ]
    assert reads(counter.calls)["GET events"] == 16
    assert reader.pending_steps == 0
    assert reader.held_bytes > 0  # returned, not read: their bytes wait for read()
    for ref in returned:
        reader.read(ref, every_tensor)
    assert reader.held_bytes == 0


def test_parallel_fetches_are_bounded_and_ordered(s3: S3, tmp_path: Path) -> None:
    case = TRIAL_CASES["other_dtypes_four_workers"]
    written = write_case(tmp_path / "trial", case)
    s3.upload_case(written.path, case)
    storage, counter = s3.storage(max_pool=3)
    reader = s3_native_reader(storage, fetch_threads=3)
    refs = reader.poll()
    assert [ref.step for ref in refs] == list(case.steps)
    assert all([p.worker for p in ref.parts] == list(case.workers) for ref in refs)
    assert 1 < counter.max_in_flight <= 3
    reader.close()


def test_replay_lists_in_pages_and_gets_each_part_once(s3: S3, tmp_path: Path) -> None:
    case = TrialCase(
        {"labels": ("int64", (8,)), "predictions": ("float32", (8, 3))},
        steps=tuple(range(4)),
        workers=("worker_0", "worker_1", "worker_2"),
    )
    written = write_case(tmp_path / "trial", case)
    s3.upload_case(written.path, case)
    storage, counter = s3.storage(page_size=5)
    parts = read_everything(s3_native_reader(storage))
    compare_with_local(parts, read_everything(native_reader(written.path)))
    # The root listing after index/ returns the 12 index keys, then the end marker.
    pages = [seen for seen in counter.calls if seen.key == f"{PREFIX}/" and seen.max_keys == 5]
    assert [seen.key for seen in pages] == [f"{PREFIX}/"] * math.ceil(13 / 5)
    assert reads(counter.calls) == {
        "LIST": 1 + 1 + len(pages),  # exists, collections, the root listing's pages
        "HEAD": 2,  # the end marker's existence, then when it was written (the end's grace)
        "GET collections": 3,
        "GET events": 12,
    }
    default, default_counter = s3.storage()
    default.list_keys("index/")
    assert [seen.max_keys for seen in default_counter.calls] == [1000]


# -- the loader's own cases on S3: large files, empty files, missing and broken parts ----------


def test_large_event_file_is_read_by_range(s3: S3, tmp_path: Path) -> None:
    """Past ``event_head_bytes`` the head is kept, the index gives the layout, and only the
    wanted records are fetched: a trial that also saves big tensors is not downloaded whole."""
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    weights = make_array("float32", (64, 64), seed=1)
    labels = make_array("int64", (8,), seed=2)
    write_step(str(trial), 0, "worker_0", {"labels": labels, "weights": weights})
    s3.upload_collections(trial, ("worker_0",))
    s3.upload_part(trial, 0, "worker_0")
    storage, counter = s3.storage()
    reader = s3_native_reader(storage, event_head_bytes=4096)
    (ref,) = reader.poll()
    assert ref.parts[0].tensor_names == ("labels", "weights")
    (part,) = reader.read(ref, lambda name: name == "weights")
    assert_same_array(part.tensors["weights"], weights)
    ranged = [seen for seen in counter.calls if seen.ranged]
    assert len(ranged) == 2  # the head at poll, the weights record at read
    (part,) = reader.read(ref, lambda name: name == "labels")  # read again: fetched again
    assert_same_array(part.tensors["labels"], labels)
    assert reads(counter.calls)["GET index"] == 2


def test_over_the_held_bytes_limit_parts_are_read_by_range(s3: S3, tmp_path: Path) -> None:
    case = TRIAL_CASES["one_worker_labels_predictions"]
    written = write_case(tmp_path / "trial", case)
    s3.upload_case(written.path, case)
    storage, counter = s3.storage()
    reader = s3_native_reader(storage, held_bytes_limit=0)
    parts = read_everything(reader)
    compare_with_local(parts, read_everything(native_reader(written.path)))
    assert reader.problems().notices["unheld_part"] == len(case.steps)
    assert reads(counter.calls)["GET events"] == 2 * len(case.steps)  # at poll, then at read


def test_empty_event_file_takes_the_mode_from_the_index(s3: S3, tmp_path: Path) -> None:
    s3.put("collections/000000000/worker_0_collections.json", b'{"_meta": {"num_workers": 1}}')
    s3.put(event_key(3, "worker_0"), b"")
    index = b'{"meta": {"mode": "EVAL", "mode_step": 1}, "tensor_payload": []}'
    s3.put(index_key(3, "worker_0"), index)
    storage, _counter = s3.storage()
    (ref,) = s3_native_reader(storage).poll()
    assert (ref.parts[0].mode, ref.parts[0].mode_step, ref.parts[0].tensor_names) == (
        "EVAL",
        1,
        (),
    )


def test_missing_event_file_is_retried_then_skipped(s3: S3, tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    for worker in ("worker_0", "worker_1"):
        export_collections(str(trial), worker, 2)
        write_part(trial, 0, worker)
        write_part(trial, 1, worker)
    s3.upload_collections(trial, ("worker_0", "worker_1"))
    s3.upload_part(trial, 0, "worker_0")
    s3.upload(trial, index_key(0, "worker_1"))  # its event file is not there (yet)
    storage, _counter = s3.storage()
    reader = s3_native_reader(storage, part_retry_polls=2)
    assert reader.poll() == []
    assert "will retry" in (reader.problems().last or "")
    s3.upload(trial, event_key(0, "worker_1"))  # arrives while retried: used
    (ref,) = reader.poll()
    assert len(ref.parts) == 2
    s3.upload(trial, index_key(1, "worker_0"))
    s3.upload_part(trial, 1, "worker_1")
    assert reader.poll() == []
    assert reader.poll() == []
    (ref,) = reader.poll()
    assert [part.worker for part in ref.parts] == ["worker_1"]
    assert given_up(reader) == {"missing_event_file": 1}
    assert event_key(1, "worker_0") in (reader.problems().last or "")


def test_truncated_event_file_is_retried_then_skipped(s3: S3, tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    write_part(trial, 0, "worker_0")
    s3.upload_collections(trial, ("worker_0",))
    s3.put(event_key(0, "worker_0"), (trial / event_key(0, "worker_0")).read_bytes()[:-3])
    s3.upload(trial, index_key(0, "worker_0"))
    storage, _counter = s3.storage()
    reader = s3_native_reader(storage, part_retry_polls=1)
    assert reader.poll() == []
    assert "truncated" in (reader.problems().last or "")
    assert reader.poll() == []
    assert given_up(reader) == {"truncated": 1}
    assert reader.training_ended() is False


@pytest.mark.parametrize("case", TRIAL_CASES.values(), ids=TRIAL_CASES.keys())
def test_large_event_files_on_a_folder_read_the_same(tmp_path: Path, case: TrialCase) -> None:
    """The index-and-ranges path of large files gives what the event file alone gives."""
    written = write_case(tmp_path / "trial", case)
    compare_with_local(
        read_everything(large_file_reader(written.path)),
        read_everything(native_reader(written.path)),
    )


LOADERS: dict[str, Callable[[Path], NativeTrialReader]] = {
    "marker_in_listing": lambda path: native_reader(path, marker_in_listing=True),
    "large_files": large_file_reader,
    "large_files_marker_in_listing": lambda path: large_file_reader(path, marker_in_listing=True),
}


@pytest.mark.parametrize("make_reader", LOADERS.values(), ids=LOADERS.keys())
@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_completeness_is_the_same_for_every_loader(
    tmp_path: Path, scenario: Scenario, make_reader: Callable[[Path], NativeTrialReader]
) -> None:
    """The S3 options release the same steps poll by poll as the local reader."""
    trial = tmp_path / "trial"
    if scenario.expected_workers is not None:
        export_collections(str(trial), "worker_0", scenario.expected_workers)
    local, other = native_reader(trial), make_reader(trial)
    for action in scenario.actions:
        if isinstance(action, Write):
            for worker in action.workers:
                write_part(trial, action.step, f"worker_{worker}")
        elif isinstance(action, End):
            end_training(str(trial))
        else:
            assert other.poll() == local.poll()
    assert (late_parts(other), given_up(other)) == (scenario.late_parts, {})
    assert other.training_ended() is local.training_ended() is scenario.ended


def test_foreign_keys_after_index_fall_back_to_a_head_when_idle(s3: S3, tmp_path: Path) -> None:
    """A key that sorts between index/ and the marker would be re-listed on every poll."""
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    write_part(trial, 0, "worker_0")
    s3.upload_collections(trial, ("worker_0",))
    s3.upload_part(trial, 0, "worker_0")
    s3.put("notes/README.txt", b"added by hand")
    storage, counter = s3.storage()
    reader = s3_native_reader(storage)
    assert [ref.step for ref in reader.poll()] == [0]
    assert "notes/README.txt" in (reader.problems().last or "")
    counter.clear()
    assert reader.poll() == []
    assert reads(counter.calls) == {"LIST": 1, "HEAD": 1}
    assert counter.calls[0].key == f"{PREFIX}/index/"
    end_training(str(trial))
    s3.upload(trial, END_MARKER)
    assert reader.poll() == []
    assert reader.training_ended()


# -- endpoints, credentials, failures --------------------------------------------------------------


def small_trial(s3: S3, tmp_path: Path) -> Path:
    case = TRIAL_CASES["one_worker_labels_predictions"]
    written = write_case(tmp_path / "trial", case)
    s3.upload_case(written.path, case)
    return written.path


def test_endpoint_from_the_argument_wins_over_the_environment(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_trial(s3, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    reader = open_trial(s3.uri(), s3_endpoint_url=s3.endpoint)
    assert [ref.step for ref in reader.poll()] == [0, 1, 2, 3, 4]


def test_endpoint_from_aws_endpoint_url(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_trial(s3, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    reader = open_trial(s3.uri())
    assert [ref.step for ref in reader.poll()] == [0, 1, 2, 3, 4]
    assert S3Storage(s3.bucket, PREFIX).endpoint == s3.endpoint


def test_smdebug_reader_reads_s3_itself(s3: S3, tmp_path: Path) -> None:
    pytest.importorskip("smdebug")
    case = TrialCase(
        {"labels": ("int64", (4,)), "predictions": ("float32", (4, 2))},
        steps=(0, 1, 2),
        workers=("worker_0", "worker_1"),
        modes=("TRAIN", "EVAL"),
    )
    written = write_case(tmp_path / "trial", case)
    s3.upload_case(written.path, case)
    reader = open_trial(s3.uri(), reader="smdebug", s3_endpoint_url=s3.endpoint)
    assert reader.exists()
    parts = {}
    for ref in reader.poll():
        for part in reader.read(ref, every_tensor):
            parts[(ref.step, part.worker)] = part
    assert reader.training_ended()
    local = read_everything(native_reader(written.path))
    assert all(case.tensors[name][0] in SMDEBUG_SAFE_DTYPES for name in case.tensors)
    compare_with_local(parts, local)


def test_throttling_and_5xx_are_retried_with_backoff(
    s3: S3, tmp_path: Path, backoff: list[float]
) -> None:
    trial = small_trial(s3, tmp_path)
    storage, counter = s3.storage()
    slow_down = Failures(frozenset({"ListObjectsV2", "GetObject"}), 503, "SlowDown", remaining=3)
    internal = Failures(frozenset({"GetObject"}), 500, "InternalError", remaining=2)
    slow_down.attach(storage.client)
    internal.attach(storage.client)
    parts = read_everything(s3_native_reader(storage))
    compare_with_local(parts, read_everything(native_reader(trial)))
    assert (slow_down.injected, internal.injected) == (3, 2)
    calls = Counter(seen.op for seen in counter.calls)
    assert counter.attempts.total() == calls.total() + 5  # each failure retried once more
    assert len(backoff) == 5
    assert all(delay >= 0 for delay in backoff)


def upload_one_step_of_two_workers(s3: S3, trial: Path) -> None:
    """Step 0 of worker_0 and worker_1 (and their collections files), written and uploaded."""
    for worker in ("worker_0", "worker_1"):
        export_collections(str(trial), worker, 2)
        write_part(trial, 0, worker)
        s3.upload_part(trial, 0, worker)
    s3.upload_collections(trial, ("worker_0", "worker_1"))


def test_a_part_that_keeps_failing_is_skipped_not_fatal(
    s3: S3, tmp_path: Path, backoff: list[float]
) -> None:
    upload_one_step_of_two_workers(s3, tmp_path / "trial")
    storage, counter = s3.storage(max_attempts=2)
    broken = event_key(0, "worker_1")
    Failures(
        frozenset({"GetObject"}), 503, "ServiceUnavailable", match=lambda r: broken in r.url
    ).attach(storage.client)
    reader = s3_native_reader(storage, part_retry_polls=1)
    assert reader.poll() == []
    (ref,) = reader.poll()
    assert [part.worker for part in ref.parts] == ["worker_0"]
    assert given_up(reader) == {"unreadable_event_file": 1}
    assert broken in (reader.problems().last or "")
    # two collections files and worker_0 once; worker_1 on two polls, two attempts each
    assert counter.attempts["GetObject"] == 2 + 1 + 2 * 2


def is_head(request: Any) -> bool:
    """Whether a prepared request is the poll-time GET (the first ``EVENT_HEAD_BYTES``)."""
    value = request.headers.get("Range", b"")
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text == f"bytes=0-{EVENT_HEAD_BYTES - 1}"


def test_a_read_that_keeps_failing_is_a_worker_error(
    s3: S3, tmp_path: Path, backoff: list[float]
) -> None:
    upload_one_step_of_two_workers(s3, tmp_path / "trial")
    storage, _counter = s3.storage(max_attempts=2)
    broken = event_key(0, "worker_1")
    Failures(
        frozenset({"GetObject"}),
        500,
        "InternalError",
        match=lambda request: broken in request.url and not is_head(request),
    ).attach(storage.client)
    reader = s3_native_reader(storage, held_bytes_limit=0)  # read() must GET again
    (ref,) = reader.poll()
    good, bad = reader.read(ref, every_tensor)
    assert good.error is None
    assert good.tensors["labels"].tolist() == [0, 1, 2, 3]
    assert (bad.worker, bad.error_reason, bad.tensors) == ("worker_1", "unreadable_event_file", {})
    assert broken in (bad.error or "")


def test_a_listing_outage_returns_nothing_then_recovers(
    s3: S3, tmp_path: Path, backoff: list[float]
) -> None:
    small_trial(s3, tmp_path)
    storage, _counter = s3.storage(max_attempts=2)
    outage = Failures(frozenset({"ListObjectsV2"}), 503, "SlowDown")
    outage.attach(storage.client)
    reader = s3_native_reader(storage)
    assert reader.poll() == []
    assert reader.problems().notices["storage_unavailable"] == 1
    assert "SlowDown" in (reader.problems().last or "")
    outage.remaining = 0
    assert [ref.step for ref in reader.poll()] == [0, 1, 2, 3, 4]


def test_missing_bucket_says_what_to_check(s3: S3) -> None:
    reader = open_trial("s3://no-such-bucket/trial", s3_endpoint_url=s3.endpoint)
    with pytest.raises(TrialError, match="bucket 'no-such-bucket' does not exist") as error:
        reader.poll()
    assert s3.endpoint in str(error.value)
    with pytest.raises(TrialError, match="endpoint"):
        reader.exists()


def test_trial_not_written_yet_is_waited_for(s3: S3, tmp_path: Path) -> None:
    storage, counter = s3.storage(prefix="later")
    reader = s3_native_reader(storage)
    assert not reader.exists()
    assert reader.poll() == []
    assert reads(counter.calls) == {"LIST": 2}  # one small LIST per poll, nothing else
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    write_part(trial, 0, "worker_0")
    s3.upload_collections(trial, ("worker_0",), prefix="later")
    s3.upload_part(trial, 0, "worker_0", prefix="later")
    assert reader.exists()
    assert [ref.step for ref in reader.poll()] == [0]


def test_no_credentials_is_a_trial_error(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    reader = open_trial(s3.uri(), s3_endpoint_url=s3.endpoint)
    with pytest.raises(TrialError, match="credentials"):
        reader.poll()


def test_unreachable_endpoint_is_a_trial_error(s3: S3) -> None:
    storage = S3Storage(s3.bucket, PREFIX, endpoint_url="http://127.0.0.1:9", max_attempts=1)
    with pytest.raises(TrialError, match="cannot reach"):
        s3_native_reader(storage).poll()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket", ("bucket", "")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://bucket/a/b/", ("bucket", "a/b")),
    ],
)
def test_parse_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert parse_s3_uri(uri) == expected


# -- when objects were written, and what the trial is ---------------------------------------


def test_modified_time_is_the_objects_last_modified(s3: S3, tmp_path: Path) -> None:
    """The end's grace runs from when the marker was written, by the server's clock."""
    before = math.floor(time.time()) - 1
    s3.put(END_MARKER, b"")
    storage, _counter = s3.storage()
    written = storage.modified_time(END_MARKER)
    assert written is not None
    assert before <= written <= time.time() + 1
    assert storage.modified_time("missing.ts") is None
    assert storage.key_exists(END_MARKER)
    assert not storage.key_exists("missing.ts")


LAST_MODIFIED = {
    "aware": (datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC), 1767323045.0),
    "naive, as UTC": (datetime.datetime(2026, 1, 2, 3, 4, 5), 1767323045.0),
    "not sent": (None, None),
}


@pytest.mark.parametrize("case", LAST_MODIFIED.values(), ids=LAST_MODIFIED.keys())
def test_last_modified_in_every_form_an_endpoint_sends(case: tuple[Any, float | None]) -> None:
    from evaluator.trial.s3 import _unix_time

    sent, expected = case
    assert _unix_time(sent) == expected


def test_a_trial_on_s3_is_recognised_by_its_first_bytes(s3: S3, tmp_path: Path) -> None:
    from evaluator.trial.identity import same_trial, trial_identity

    upload_one_step_of_two_workers(s3, tmp_path / "trial")
    storage, counter = s3.storage()
    saved = trial_identity(storage)
    assert saved is not None
    counter.calls.clear()
    assert same_trial(storage, saved) is True
    assert Counter(seen.op for seen in counter.calls) == {"GetObject": 2}, "two ranged GETs"
    upload_one_step_of_two_workers(s3, tmp_path / "again")  # new wall times, same keys
    assert same_trial(storage, saved) is False


TIMESTAMPS: dict[str, object] = {
    "a listing's LastModified": "2026-12-01T19:39:23.000Z",
    "without fractions": "2026-12-01T19:39:23Z",
    "microseconds and an offset": "2026-12-01T19:39:23.123456+02:00",
    "a HEAD's HTTP date": "Tue, 01 Dec 2026 19:39:23 GMT",
    "Unix time": 1764617963,
    "Unix time as text": "1764617963",
}


@pytest.mark.parametrize("case", TIMESTAMPS)
def test_the_fast_timestamp_parser_agrees_with_botocores(case: str) -> None:
    """The listing's dates are read without dateutil (three quarters of a listing's cost),
    to the same aware datetime botocore would give."""
    value = TIMESTAMPS[case]
    ours, theirs = parse_timestamp(value), botocore_parse_timestamp(value)
    assert ours == theirs
    assert ours.tzinfo is not None


def test_the_storage_client_parses_listings_with_the_fast_parser(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[object] = []

    def counting(value: object) -> datetime.datetime:
        seen.append(value)
        return parse_timestamp(value)

    monkeypatch.setattr(s3_module, "parse_timestamp", counting)
    s3.writer.put_object(Bucket=s3.bucket, Key=f"{PREFIX}/index/a.json", Body=b"{}")
    storage, _ = s3.storage()
    assert storage.list_keys("index/") == ["index/a.json"]
    assert seen, "the listing's LastModified went through the fast parser"


# -- bodies that break mid-read --------------------------------------------------------------------


def _cutting(key_suffix: str, times: int | None, fault: Fault = Fault.CUT) -> Callable[..., Fault]:
    """Break the first ``times`` (None: every) GET bodies of keys ending in ``key_suffix``."""
    left = [times]

    def policy(request: S3Request) -> Fault:
        if request.op != "GetObject" or not request.key.endswith(key_suffix):
            return Fault.NONE
        if left[0] is None:
            return fault
        if left[0] <= 0:
            return Fault.NONE
        left[0] -= 1
        return fault

    return policy


def _gets(s3: S3, key: str) -> int:
    return sum(1 for seen in s3.server.reads() if seen.op == "GetObject" and seen.key.endswith(key))


@pytest.mark.parametrize("fault", [Fault.CUT, Fault.RESET], ids=["cut", "reset"])
def test_a_body_that_breaks_mid_read_is_fetched_again_with_backoff(
    s3: S3, tmp_path: Path, fault: Fault
) -> None:
    trial = small_trial(s3, tmp_path)
    key = event_key(2, "worker_0")
    with FaultProxy(s3.endpoint, _cutting(key, 3, fault)) as proxy:
        delays: list[float] = []
        client = make_client(proxy.endpoint, session=s3.session)
        storage = S3Storage(s3.bucket, PREFIX, client=client, sleep=delays.append)
        s3.server.clear()
        assert storage.read_bytes(key) == (trial / key).read_bytes()
        assert proxy.faults[fault] == 3
        data, size = storage.read_range(key, 0, 10)  # ranged GETs too
        assert (data, size) == ((trial / key).read_bytes()[:10], len((trial / key).read_bytes()))
        storage.close()
    assert storage.body_retries == 3
    assert _gets(s3, key) == 5, "one GET per broken body, and one whole: botocore sent no more"
    assert len(delays) == 3
    assert all(0 <= delay <= cap for delay, cap in zip(delays, (0.1, 0.2, 0.4), strict=True))


def test_bodies_that_keep_breaking_give_up_after_their_attempts(s3: S3, tmp_path: Path) -> None:
    small_trial(s3, tmp_path)
    key = event_key(1, "worker_0")
    with FaultProxy(s3.endpoint, _cutting(key, None)) as proxy:
        client = make_client(proxy.endpoint, session=s3.session)
        storage = S3Storage(s3.bucket, PREFIX, client=client, body_attempts=3, sleep=lambda _: None)
        s3.server.clear()
        with pytest.raises(s3_module.StorageUnavailable, match=r"broke .*, 3 time\(s\)"):
            storage.read_bytes(key)
        assert _gets(s3, key) == 3
        timed = S3Storage(s3.bucket, PREFIX, client=client, body_retry_seconds=0.0)
        s3.server.clear()
        with pytest.raises(s3_module.StorageUnavailable, match=r"1 time\(s\)"):
            timed.read_bytes(key)
        assert _gets(s3, key) == 1, "no GET starts once the body's time budget is spent"
        client.close()


def test_the_reader_counts_exactly_while_a_third_of_bodies_break(s3: S3, tmp_path: Path) -> None:
    """No retry by later polls (``part_retry_polls=0``): without retries of the body, a third
    of the parts would be lost."""
    case = TRIAL_CASES["four_workers_train_eval_interleaved"]
    written = write_case(tmp_path / "trial", case)
    s3.upload_case(written.path, case)
    policy = at_rate(0.35, Fault.CUT, frozenset({"GetObject"}), seed=7)
    with FaultProxy(s3.endpoint, policy) as proxy:
        client = make_client(proxy.endpoint, session=s3.session)
        storage = S3Storage(s3.bucket, PREFIX, client=client, sleep=lambda _: None)
        reader = s3_native_reader(storage, part_retry_polls=0)
        parts = read_everything(reader)
        reader.close()
        assert proxy.faults[Fault.CUT] > 0
    compare_with_local(parts, read_everything(native_reader(written.path)))
    assert given_up(reader) == {}


# -- every wait on the endpoint is bounded ---------------------------------------------------------


def test_the_client_bounds_each_wait_on_the_endpoint(s3: S3) -> None:
    """Before: botocore's defaults, 60 s to connect and 60 s for each next bytes, per attempt."""
    client = make_client(s3.endpoint, session=s3.session)
    assert client.meta.config.connect_timeout == s3_module.CONNECT_TIMEOUT_SECONDS == 5.0
    assert client.meta.config.read_timeout == s3_module.READ_TIMEOUT_SECONDS == 20.0
    assert client.meta.config.retries["total_max_attempts"] == s3_module.MAX_ATTEMPTS
    client.close()
    storage = S3Storage(s3.bucket, PREFIX, endpoint_url=s3.endpoint)
    assert storage.client.meta.config.read_timeout == s3_module.READ_TIMEOUT_SECONDS
    storage.close()


class _StallingServer:
    """Answers every GET with its headers and the first bytes of a body, then goes silent."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.release = threading.Event()
        self.gets = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.gets += 1
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
                server.release.wait(30)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> _StallingServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_body_that_stalls_is_cut_by_the_read_timeout_and_fetched_again(s3: S3) -> None:
    """A body that stops arriving breaks after ``read_timeout`` (not botocore's 60 s) and is
    fetched again as any broken body is, then given up on as an outage."""
    with _StallingServer() as stalling:
        client = make_client(stalling.endpoint, read_timeout=0.5, session=s3.session)
        storage = S3Storage("bucket", PREFIX, client=client, body_attempts=2, sleep=lambda _: None)
        started = time.monotonic()
        with pytest.raises(s3_module.StorageUnavailable, match=r"broke .*, 2 time\(s\)"):
            storage.read_bytes("events/x")
        assert time.monotonic() - started < 10
        assert stalling.gets == 2
        assert storage.body_retries == 1
        client.close()
