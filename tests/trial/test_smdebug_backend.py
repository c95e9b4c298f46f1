"""The smdebug reference reader gives what the native reader gives, for every worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from devtools.write_trial import end_training, export_collections, write_step
from evaluator.trial.contract import StorageUnavailable
from evaluator.trial.interface import TrialReader, WorkerTensors
from evaluator.trial.local import LocalStorage
from evaluator.trial.open import open_trial
from evaluator.trial.problems import STORAGE_UNAVAILABLE
from evaluator.trial.smdebug_backend import SmdebugTrialReader
from tests.trial.test_native import (
    SMDEBUG_SAFE_DTYPES,
    TRIAL_CASES,
    TrialCase,
    assert_same_array,
    native_reader,
    write_case,
)

pytest.importorskip("smdebug")


@pytest.fixture(autouse=True)
def _no_smdebug_end_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """smdebug sleeps 1 s after it sees the end marker; tests need not wait."""
    monkeypatch.setenv("SMDEBUG_TRAINING_END_DELAY_REFRESH", "0")


def safe_names(case: TrialCase) -> set[str]:
    return {name for name, (dtype, _shape) in case.tensors.items() if dtype in SMDEBUG_SAFE_DTYPES}


def read_all(reader: TrialReader, names: set[str]) -> dict[tuple[int, str], WorkerTensors]:
    parts = {}
    for ref in reader.poll():
        for part in reader.read(ref, names.__contains__):
            assert part.error is None, part.error
            parts[(ref.step, part.worker)] = part
    return parts


@pytest.mark.parametrize("case", TRIAL_CASES.values(), ids=TRIAL_CASES.keys())
def test_same_steps_and_values_as_the_native_reader(tmp_path: Path, case: TrialCase) -> None:
    written = write_case(tmp_path / "trial", case)
    smdebug = SmdebugTrialReader(str(written.path))
    native = native_reader(written.path)
    smdebug_parts = read_all(smdebug, safe_names(case))
    native_parts = read_all(native, safe_names(case))
    assert smdebug_parts.keys() == native_parts.keys() == written.values.keys()
    for key, part in smdebug_parts.items():
        other = native_parts[key]
        assert (part.mode, part.mode_step) == (other.mode, other.mode_step)
        assert part.tensors.keys() == other.tensors.keys() == safe_names(case)
        for name, array in part.tensors.items():
            assert_same_array(array, other.tensors[name])
    assert smdebug.training_ended()


def test_step_refs_match_the_native_reader(tmp_path: Path) -> None:
    written = write_case(tmp_path / "trial", TRIAL_CASES["four_workers_train_eval_interleaved"])
    assert SmdebugTrialReader(str(written.path)).poll() == native_reader(written.path).poll()


def test_every_worker_is_read_not_only_the_first(tmp_path: Path) -> None:
    """smdebug's ``tensor.value(step)`` returns worker_0's tensor only; the backend reads all."""
    from smdebug.trials import create_trial

    trial = tmp_path / "trial"
    for number in range(4):
        export_collections(str(trial), f"worker_{number}", 4)
    for number in range(4):
        write_step(str(trial), 0, f"worker_{number}", {"labels": np.full(2, number)})
    end_training(str(trial))
    reader = SmdebugTrialReader(str(trial))
    (ref,) = reader.poll()
    labels = [part.tensors["labels"].tolist() for part in reader.read(ref, lambda _name: True)]
    assert labels == [[0, 0], [1, 1], [2, 2], [3, 3]]
    assert create_trial(str(trial)).tensor("labels").value(0).tolist() == [0, 0]


# name -> (dtype, what smdebug 1.0.34 does with it): documents why the native reader exists
SMDEBUG_DTYPE_DEFECTS: dict[str, tuple[str, str]] = {
    "int8_read_as_uint8": ("int8", "uint8"),
    "int16_unreadable": ("int16", "error"),
    "uint16_unreadable": ("uint16", "error"),
    "uint32_unreadable": ("uint32", "error"),
    "uint64_unreadable": ("uint64", "error"),
}


@pytest.mark.parametrize(
    ("dtype", "outcome"), SMDEBUG_DTYPE_DEFECTS.values(), ids=SMDEBUG_DTYPE_DEFECTS.keys()
)
def test_smdebug_dtype_defects_are_reported_per_worker(
    tmp_path: Path, dtype: str, outcome: str
) -> None:
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    write_step(str(trial), 0, "worker_0", {"t": np.array([-1, 2]).astype(dtype)})
    end_training(str(trial))
    reader = SmdebugTrialReader(str(trial))
    (ref,) = reader.poll()
    (part,) = reader.read(ref, lambda _name: True)
    if outcome == "error":
        assert (part.error_reason, part.tensors) == ("smdebug_error", {})
        assert "native reader" in (part.error or "")
    else:
        assert part.tensors["t"].dtype == np.dtype(outcome)
    (native_part,) = native_reader(trial).read(native_reader(trial).poll()[0], lambda _n: True)
    assert_same_array(native_part.tensors["t"], np.array([-1, 2]).astype(dtype))


def test_poll_does_not_block_before_collections_files(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    reader = SmdebugTrialReader(str(trial))
    assert not reader.exists()
    assert reader.poll() == []
    export_collections(str(trial), "worker_0", 2)
    write_step(str(trial), 0, "worker_0", {"labels": np.arange(3)})
    assert reader.exists()
    assert reader.poll() == []  # smdebug would wait for worker_1's collections file
    assert not reader.training_ended()


def test_following_returns_each_step_once(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    reader = SmdebugTrialReader(str(trial))
    returned = []
    for step in range(5):
        write_step(str(trial), step, "worker_0", {"labels": np.arange(3)})
        returned += [ref.step for ref in reader.poll()]
    end_training(str(trial))
    returned += [ref.step for ref in reader.poll()]
    assert returned == list(range(5))
    assert reader.training_ended()
    reader.close()


def test_open_trial_gives_the_smdebug_reader(tmp_path: Path) -> None:
    reader = open_trial(str(tmp_path), reader="smdebug")
    assert isinstance(reader, SmdebugTrialReader)
    assert reader.location == str(tmp_path)


class _Unavailable(LocalStorage):
    """A storage whose every question fails, as an S3 endpoint that keeps answering 503."""

    def exists(self) -> bool:
        raise StorageUnavailable("SlowDown: please reduce your request rate")


def test_an_outage_while_looking_for_the_trial_is_ridden_out_and_named(tmp_path: Path) -> None:
    reader = SmdebugTrialReader(str(tmp_path), storage=_Unavailable(str(tmp_path)))
    assert reader.exists() is False
    assert reader.exists() is False
    problems = reader.problems()
    assert problems.notices == {STORAGE_UNAVAILABLE: 2}
    assert "SlowDown" in problems.examples[STORAGE_UNAVAILABLE]
