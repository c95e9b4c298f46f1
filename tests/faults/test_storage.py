"""Storage faults: symbolic links that loop, folders this user may not read, S3 bodies that break
mid-read, an S3 listing that keeps failing.

Every case runs the real command (``python -m container``) under ``bounded.run_bounded`` on a
trial written in the test with smdebug's own writer, whose per-part labels the test knows: a
damaged part is a skipped part with its reason and everything else is counted exactly, or the
run ends with a clear error (status Error, exit code 2, no traceback, no "internal error").

Unreadable folders: the tests run as root, which ignores permission bits. The evaluator child is
started by ``setpriv`` without the two capabilities that make root ignore them
(``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``), on a trial whose guarded folders belong to
another user: to the child those are another user's folders, exactly as for an unprivileged
sidecar, while the Python it runs (under /root, owned by root) stays readable. Without setpriv,
or where the capabilities cannot be dropped, those cases skip (and fail under ``CI=true``).

S3: moto's server on loopback behind ``FaultProxy`` (``tests/trial/s3server.py``), which cuts
or resets bodies after their headers, or answers listings with 503.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from devtools.s3server import CountingS3Server, S3Request
from devtools.write_trial import end_training, export_collections, write_step
from evaluator.trial.layout import event_key, index_key
from tests.faults.bounded import Bounded, evaluator, python, run_bounded
from tests.trial.s3server import Fault, FaultPolicy, FaultProxy, at_rate

SECONDS = 120.0
"""Wall-clock limit of one evaluator run (each takes a few seconds; an S3 run with a third of
its bodies cut about ten)."""

CLASSES = 5
BATCH = 16
WORKERS = ("worker_0", "worker_1")

Part = tuple[int, str]


@dataclass(frozen=True)
class Trial:
    """A trial on disk and the labels of each of its parts, as written."""

    path: Path
    labels: dict[Part, Counter[int]]

    def counts(self, without: frozenset[Part] = frozenset()) -> dict[int, int]:
        """Per-class label counts over every part but ``without``."""
        total: Counter[int] = Counter()
        for part, labels in self.labels.items():
            if part not in without:
                total.update(labels)
        return dict(total)


def write_parts(path: Path, steps: int = 12, seed: int = 0) -> Trial:
    """``steps`` steps of two workers, labels and (B, C) scores, and the end marker."""
    rng = np.random.default_rng(seed)
    for worker in WORKERS:
        export_collections(str(path), worker, len(WORKERS))
    labels: dict[Part, Counter[int]] = {}
    for step in range(steps):
        for worker in WORKERS:
            batch = rng.integers(0, CLASSES, BATCH).astype(np.int64)
            scores = rng.standard_normal((BATCH, CLASSES)).astype(np.float32)
            write_step(str(path), step, worker, {"labels": batch, "predictions": scores})
            labels[(step, worker)] = Counter(batch.tolist())
    end_training(str(path))
    return Trial(path, labels)


def evaluate(trial: str, status: Path, *extra: str, prefix: tuple[str, ...] = ()) -> Bounded:
    """The evaluator on ``trial`` (``prefix``: what starts it, such as setpriv)."""
    command = evaluator(
        "--trial", trial, "--status-file", str(status), "--argmax", "true", "--samples", "10",
        "--idle-timeout", "20", *extra,
    )  # fmt: skip
    return run_bounded([*prefix, *command], seconds=SECONDS)


def counted(status: Path) -> dict[int, int]:
    document = json.loads(status.read_text())
    return {
        int(name): entry["samples"]
        for name, entry in document["classes"].items()
        if entry["samples"]
    }


def assert_counted_exactly(run: Bounded, status: Path, expected: dict[int, int]) -> dict[str, Any]:
    """A verdict (not Error), every label but the lost parts' counted, no internal error."""
    assert "internal error" not in run.stderr, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    document: dict[str, Any] = json.loads(status.read_text())
    assert document["error"] is None, document["error"]
    assert run.returncode in (0, 1, 3), run.stderr[-3000:]
    assert counted(status) == expected
    return document


def assert_clear_error(run: Bounded, status: Path, *words: str) -> str:
    """Status Error, exit code 2, a message with ``words``, no traceback, no "report it"."""
    document = json.loads(status.read_text())
    error = str(document["error"])
    assert run.returncode == 2, run.stderr[-3000:]
    assert document["status"] == "Error"
    assert "internal error" not in error, error
    assert "please report" not in error, error
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    for word in words:
        assert word in error, error
    return error


def replace_with_link(path: Path, target: str) -> None:
    """``path`` (a file or a folder) becomes a symbolic link to ``target``."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    path.symlink_to(target)


# -- symbolic links that loop ------------------------------------------------------------------


@dataclass(frozen=True)
class LinkCase:
    """A trial damaged by ``damage``: parts ``lost`` are left out, counted under ``skipped``
    (reason -> count), the rest counted exactly; or, with ``error``, a clear error naming it."""

    id: str
    damage: Callable[[Path], None]
    lost: frozenset[Part] = frozenset()
    skipped: tuple[tuple[str, int], ...] = ()
    error: tuple[str, ...] = ()


def _loop_pair(folder: str) -> Callable[[Path], None]:
    def damage(trial: Path) -> None:
        (trial / folder / "loop_a").symlink_to("loop_b")
        (trial / folder / "loop_b").symlink_to("loop_a")

    return damage


def _self_link(relative: str) -> Callable[[Path], None]:
    def damage(trial: Path) -> None:
        path = trial / relative
        replace_with_link(path, path.name)

    return damage


LINK_CASES = (
    LinkCase(
        "loop_in_index",
        _loop_pair("index"),
        skipped=(("unreadable_entry", 2),),
    ),
    LinkCase(
        "dangling_loop_in_an_index_folder",
        _self_link("index/000000000/self"),
        skipped=(("unreadable_entry", 1),),
    ),
    LinkCase(
        "index_file_that_loops",
        _self_link(index_key(5, "worker_0")),
        lost=frozenset({(5, "worker_0")}),
        skipped=(("unreadable_entry", 1), ("missing_worker", 1)),
    ),
    LinkCase(
        "loop_in_collections",
        _loop_pair("collections/000000000"),
        skipped=(("unreadable_entry", 2),),
    ),
    LinkCase(
        "collections_folder_that_loops",
        _self_link("collections"),
        skipped=(("unreadable_entry", 1),),
    ),
    LinkCase(
        "loop_in_an_event_file_folder",
        _loop_pair("events/000000000003"),
    ),
    LinkCase(
        "event_file_folder_that_loops",
        _self_link("events/000000000007"),
        lost=frozenset({(7, "worker_0"), (7, "worker_1")}),
        skipped=(("unreadable_event_file", 2),),
    ),
    LinkCase(
        "event_file_that_loops",
        _self_link(event_key(4, "worker_1")),
        lost=frozenset({(4, "worker_1")}),
        skipped=(("unreadable_event_file", 1),),
    ),
    LinkCase(
        "index_folder_that_loops",
        _self_link("index"),
        error=("index/", "Too many levels of symbolic links", "fix or remove it"),
    ),
    LinkCase(
        "trial_folder_that_loops",
        lambda trial: replace_with_link(trial, trial.name),
        error=("symbolic link that loops", "base_trial"),
    ),
)


@pytest.mark.parametrize("case", LINK_CASES, ids=[case.id for case in LINK_CASES])
def test_a_symbolic_link_loop_is_a_skipped_part_or_a_clear_error(
    case: LinkCase, tmp_path: Path
) -> None:
    trial = write_parts(tmp_path / "trial")
    case.damage(trial.path)
    status = tmp_path / "status.json"
    run = evaluate(str(trial.path), status)
    if case.error:
        assert_clear_error(run, status, *case.error)
        return
    document = assert_counted_exactly(run, status, trial.counts(case.lost))
    assert document["skipped"]["files"] == dict(case.skipped)


# -- folders this user may not read ------------------------------------------------------------

OTHER_USER = 12345
"""The owner of the guarded folders: a user the evaluator child is not."""

UNPRIVILEGED = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
"""Starts a command as root without the capabilities that let root ignore permission bits."""


@pytest.fixture(scope="module")
def unprivileged(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """The prefix that runs the evaluator child without reading what it may not; proven on a
    folder of another user's that it must fail to list."""
    why = None
    if shutil.which("setpriv") is None:
        why = "needs setpriv (util-linux) to drop root's permission override"
    elif os.geteuid() != 0:
        why = "needs root to give the guarded folders to another user"
    else:
        guarded = tmp_path_factory.mktemp("guarded")
        os.chown(guarded, OTHER_USER, OTHER_USER)
        guarded.chmod(0o700)
        probe = subprocess.run(
            [*UNPRIVILEGED, sys.executable, "-c", f"import os; os.listdir({str(guarded)!r})"],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0 or b"PermissionError" not in probe.stderr:
            why = f"setpriv could not drop root's permission override: {probe.stderr[-300:]!r}"
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    return UNPRIVILEGED


def _guard(relative: str, mode: int = 0o700) -> Callable[[Path], None]:
    def damage(trial: Path) -> None:
        path = trial / relative
        for folder, _, files in os.walk(path):
            os.chown(folder, OTHER_USER, OTHER_USER)
            for name in files:
                os.chown(os.path.join(folder, name), OTHER_USER, OTHER_USER)
        if path.is_file():
            os.chown(path, OTHER_USER, OTHER_USER)
        path.chmod(mode)

    return damage


PERMISSION_CASES = (
    LinkCase(
        "index_folder_unreadable",
        _guard("index"),
        error=("index", "Permission denied", f"uid {OTHER_USER}", "chmod -R a+rX"),
    ),
    LinkCase(
        "an_index_subfolder_unreadable",
        _guard("index/000000000"),
        error=("index/000000000", "Permission denied", "chmod -R a+rX"),
    ),
    LinkCase(
        "collections_folder_unreadable",
        _guard("collections/000000000"),
        error=("collections/000000000", "Permission denied", "chmod -R a+rX"),
    ),
    LinkCase(
        "trial_folder_unreadable",
        _guard("."),
        error=("Permission denied", "chmod -R a+rX"),
    ),
    LinkCase(
        "event_file_unreadable",
        _guard(event_key(2, "worker_1"), 0o600),
        lost=frozenset({(2, "worker_1")}),
        skipped=(("unreadable_event_file", 1),),
    ),
)


@pytest.mark.parametrize("case", PERMISSION_CASES, ids=[case.id for case in PERMISSION_CASES])
def test_an_unreadable_folder_is_a_clear_error_and_a_file_a_skipped_part(
    case: LinkCase, tmp_path: Path, unprivileged: tuple[str, ...]
) -> None:
    trial = write_parts(tmp_path / "trial")
    case.damage(trial.path)
    status = tmp_path / "out" / "status.json"
    status.parent.mkdir()
    run = evaluate(str(trial.path), status, prefix=unprivileged)
    if case.error:
        assert_clear_error(run, status, *case.error)
        return
    document = assert_counted_exactly(run, status, trial.counts(case.lost))
    assert document["skipped"]["files"] == dict(case.skipped)
    assert "may not read it" in document["skipped"]["examples"]["unreadable_event_file"]


def test_a_trial_below_a_folder_that_may_not_be_searched_is_a_clear_error(
    tmp_path: Path, unprivileged: tuple[str, ...]
) -> None:
    trial = write_parts(tmp_path / "guarded" / "trial")
    _guard("..")(trial.path)
    status = tmp_path / "status.json"
    run = evaluate(str(trial.path), status, prefix=unprivileged)
    assert_clear_error(run, status, "Permission denied", "chmod -R a+rX")


# -- S3 ----------------------------------------------------------------------------------------

BUCKET = "faults"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="module")
def moto() -> Iterator[CountingS3Server]:
    server = CountingS3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


_prefixes = iter(range(1_000_000))


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Fake credentials, nothing from a profile: no request can reach AWS."""
    env = {
        **CREDENTIALS,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return env


def upload(server: CountingS3Server, trial: Path) -> str:
    """The trial under a new prefix of the bucket; its URI."""
    prefix = f"trial-{next(_prefixes)}"
    client = boto3.client("s3", endpoint_url=server.endpoint, **_client_credentials())
    try:
        if BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=BUCKET)
        for path in sorted(trial.rglob("*")):
            if path.is_file():
                key = f"{prefix}/{path.relative_to(trial)}"
                client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
    finally:
        client.close()
    return f"s3://{BUCKET}/{prefix}"


def _client_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "us-east-1",
    }


@dataclass(frozen=True)
class BodyCase:
    """Bodies of GETs broken by ``fault`` at ``rate``, over ``runs`` runs (seeds)."""

    id: str
    fault: Fault
    rate: float = 0.35
    runs: int = 3


BODY_CASES = (
    BodyCase("bodies_cut_off_mid_stream", Fault.CUT),
    BodyCase("connections_reset_mid_read", Fault.RESET),
)


@pytest.mark.parametrize("case", BODY_CASES, ids=[case.id for case in BODY_CASES])
def test_s3_bodies_that_break_mid_read_are_read_again_and_counted_exactly(
    case: BodyCase, tmp_path: Path, moto: CountingS3Server, s3_env: dict[str, str]
) -> None:
    """At this rate a part fails its four polls (the reader's own retries) once in 70: over
    three runs of 80 parts, without retries of the body, about three parts are lost."""
    trial = write_parts(tmp_path / "trial", steps=40)
    uri = upload(moto, trial.path)
    injected = 0
    for run_number in range(case.runs):
        policy = at_rate(case.rate, case.fault, frozenset({"GetObject"}), seed=run_number)
        status = tmp_path / f"status-{run_number}.json"
        with FaultProxy(moto.endpoint, policy) as proxy:
            run = evaluate(uri, status, "--s3-endpoint-url", proxy.endpoint)
            injected += proxy.faults[case.fault]
        document = assert_counted_exactly(run, status, trial.counts())
        assert document["skipped"]["files"] == {}, document["skipped"]
    assert injected > case.runs * 80 * case.rate / 2, "the proxy broke too few bodies to tell"


_NO_BACKOFF = textwrap.dedent(
    """
    import runpy, sys
    from botocore.retries.standard import ExponentialBackoff
    ExponentialBackoff.delay_amount = lambda self, context: 0.0  # botocore's 10 attempts, fast
    sys.argv = ["container", *sys.argv[1:]]
    runpy.run_module("container", run_name="__main__")
    """
)
"""The evaluator with botocore's retries kept but not slept: each failing listing costs its ten
attempts in milliseconds instead of a minute of backoff."""


def _failing_listings(after: int) -> FaultPolicy:
    """Listings answer 503 SlowDown from the ``after``-th one on (0: from the first)."""
    seen = iter(range(1_000_000))

    def policy(request: S3Request) -> Fault:
        if request.op != "ListObjectsV2":
            return Fault.NONE
        return Fault.UNAVAILABLE if next(seen) >= after else Fault.NONE

    return policy


@dataclass(frozen=True)
class ListingCase:
    id: str
    failing_after: int
    """Listings answered before they fail: 0 (never), 1 (the one that finds the trial)."""
    extra: tuple[str, ...] = ()


LISTING_CASES = (
    ListingCase("listing_fails_from_the_start", 0),
    ListingCase("listing_fails_once_the_trial_was_found", 1),
    ListingCase("listing_fails_in_one_pass", 0, ("--once", "true")),
)


@pytest.mark.parametrize("case", LISTING_CASES, ids=[case.id for case in LISTING_CASES])
def test_an_s3_listing_that_keeps_failing_ends_in_a_clear_error(
    case: ListingCase, tmp_path: Path, moto: CountingS3Server, s3_env: dict[str, str]
) -> None:
    trial = write_parts(tmp_path / "trial", steps=2)
    uri = upload(moto, trial.path)
    status = tmp_path / "status.json"
    with FaultProxy(moto.endpoint, _failing_listings(case.failing_after)) as proxy:
        command = [
            *python(_NO_BACKOFF), "--trial", uri, "--status-file", str(status),
            "--s3-endpoint-url", proxy.endpoint, "--argmax", "true", "--idle-timeout", "3",
            "--poll-interval", "0.5", *case.extra,
        ]  # fmt: skip
        run = run_bounded(command, seconds=SECONDS)
        assert proxy.faults[Fault.UNAVAILABLE] > 0, (dict(proxy.faults), run.stderr[-3000:])
    assert_clear_error(run, status, "storage failed", "SlowDown", "check that the storage answers")


def test_links_that_loop_past_the_named_ones_are_all_counted(tmp_path: Path) -> None:
    """Before: past ``UNUSABLE_ENTRIES_KEPT`` (10,000) entries that loop were neither named nor
    counted, so 10,050 of them were reported as 10,000. Now every one is counted under
    ``unreadable_entry``, the first 10,000 by name and the rest by one message."""
    from evaluator.trial.local import UNUSABLE_ENTRIES_KEPT

    trial = write_parts(tmp_path / "trial")
    loops = UNUSABLE_ENTRIES_KEPT + 50
    for number in range(loops):
        (trial.path / "index" / f"loop_{number:05}").symlink_to(f"loop_{number:05}")
    status = tmp_path / "status.json"
    run = evaluate(str(trial.path), status)
    document = assert_counted_exactly(run, status, trial.counts())
    assert document["skipped"]["files"] == {"unreadable_entry": loops}
    assert run.stderr.count("further ones are counted under unreadable_entry") == 1
