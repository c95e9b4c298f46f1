"""A trial's identity: stable for the trial it was made of, different for one written again."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from devtools.write_trial import export_collections, write_step
from evaluator.trial.identity import HEAD_BYTES, TrialIdentity, same_trial, trial_identity
from evaluator.trial.layout import event_key
from evaluator.trial.local import LocalStorage
from tests.trial.test_native import RangedLocalStorage, native_reader, write_part


def start_trial(trial: Path, workers: tuple[str, ...] = ("worker_0",)) -> None:
    for worker in workers:
        export_collections(str(trial), worker, len(workers))
        write_part(trial, 0, worker)


@pytest.mark.parametrize("storage_class", [LocalStorage, RangedLocalStorage])
def test_the_same_trial_is_recognised_and_another_at_its_path_is_not(
    tmp_path: Path, storage_class: type[LocalStorage]
) -> None:
    trial = tmp_path / "trial"
    start_trial(trial)
    storage = storage_class(trial)
    saved = trial_identity(storage)
    assert saved is not None
    assert saved.keys[1] == event_key(0, "worker_0")
    write_part(trial, 1, "worker_0")
    assert same_trial(storage, saved) is True, "later steps do not change what the trial is"
    shutil.rmtree(trial)
    start_trial(trial)  # the same tensors, written again: smdebug's wall times differ
    assert same_trial(storage, saved) is False


def test_a_worker_whose_first_step_lands_late_does_not_change_the_trial(tmp_path: Path) -> None:
    """The checkpoint was saved when only worker_1 had written step 0; worker_0's step 0, first
    in key order, lands after. The saved keys are hashed again, not whatever is first now."""
    trial = tmp_path / "trial"
    start_trial(trial, ("worker_1",))
    storage = LocalStorage(trial)
    saved = trial_identity(storage)
    assert saved is not None
    start_trial(trial, ("worker_0",))
    now = trial_identity(storage)
    assert now is not None
    assert now.keys != saved.keys
    assert same_trial(storage, saved) is True


def test_a_gone_file_means_another_trial_once_the_new_one_has_begun(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    start_trial(trial)
    storage = LocalStorage(trial)
    saved = trial_identity(storage)
    assert saved is not None
    shutil.rmtree(trial)
    assert same_trial(storage, saved) is None, "no trial there yet: cannot be told"
    export_collections(str(trial), "worker_0", 1)
    assert same_trial(storage, saved) is None, "a trial that has not written a step yet"
    write_part(trial, 3, "worker_0")
    assert same_trial(storage, saved) is False


def test_only_the_first_bytes_of_a_file_are_hashed(tmp_path: Path) -> None:
    """A first step of dense tensors can be hundreds of megabytes: its head identifies it."""
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    write_step(str(trial), 0, "worker_0", {"labels": np.zeros(HEAD_BYTES, dtype=np.int64)})
    storage = LocalStorage(trial)
    saved = trial_identity(storage)
    assert saved is not None
    event = trial / event_key(0, "worker_0")
    data = bytearray(event.read_bytes())
    assert len(data) > 4 * HEAD_BYTES
    data[-HEAD_BYTES // 2] ^= 0xFF
    event.write_bytes(bytes(data))
    assert same_trial(storage, saved) is True
    data[HEAD_BYTES // 2] ^= 0xFF
    event.write_bytes(bytes(data))
    assert same_trial(storage, saved) is False


def test_a_reader_computes_its_identity_once(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    reader = native_reader(trial)
    assert reader.identity() is None, "no trial yet"
    start_trial(trial)
    first = reader.identity()
    assert first is not None
    shutil.rmtree(trial)
    start_trial(trial)
    assert reader.identity() == first, "kept: what the reader attached to"
    assert reader.same_trial(first) is False


IDENTITY_DOCUMENTS = {
    "older checkpoint, a bare digest": ("0123abcd", None),
    "no identity": (None, None),
    "keys and digest": (
        {"keys": ["a/b", "c"], "digest": "ff"},
        TrialIdentity(("a/b", "c"), "ff"),
    ),
}


@pytest.mark.parametrize("case", IDENTITY_DOCUMENTS.values(), ids=IDENTITY_DOCUMENTS.keys())
def test_identities_read_back_from_checkpoints(case: tuple[object, TrialIdentity | None]) -> None:
    document, expected = case
    assert TrialIdentity.from_json(document) == expected
    if expected is not None:
        assert TrialIdentity.from_json(expected.to_json()) == expected


@pytest.mark.parametrize(
    "document",
    [{"keys": ["../../etc/passwd"], "digest": "ff"}, {"keys": "a", "digest": "ff"}, {"keys": []}],
)
def test_a_damaged_identity_is_refused(document: object) -> None:
    with pytest.raises(ValueError, match="trial_identity"):
        TrialIdentity.from_json(document)
