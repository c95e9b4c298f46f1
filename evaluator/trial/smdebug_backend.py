"""The reference reader: the same interface on smdebug's own trial API (``--reader smdebug``).

It exists to cross-check the native reader against the library every SageMaker rule uses, not
to run in production. Known limits, all smdebug 1.0.34's:

- Dtypes: int8 comes back as uint8 (-1 becomes 255); int16, uint16, uint32 and uint64 raise.
  float16, float32, float64, int32, int64, uint8 and bool are read correctly.
- Cost: every refresh re-lists and re-sorts the whole index tree (O(N^2 log N) to open a trial
  of N index files; following a run is quadratic), and every value re-opens its event file.
- Waiting: opening a trial blocks until every collections file is there (this class waits for
  them itself, so ``poll`` does not block); a missing event file is retried every 2 s up to 100
  times before smdebug gives up, unless training has ended.
- Empty tensors (a batch of 0 samples) cannot be read back.
- Worker names: smdebug turns ``_`` into ``/`` and ``-`` into ``:`` whenever the *path* of an
  index file contains ``__``, so a trial folder named ``a__b`` turns ``worker_0`` into
  ``worker/0``. Values are still correct; the names differ from the native reader's.

``tensor.value(step)`` returns only the first worker's tensor, so this reader always asks for
each worker by name (``worker=``): a rule must see the whole batch, not a quarter of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from evaluator.trial.contract import StorageUnavailable, TrialError, TrialStorage
from evaluator.trial.identity import IdentityOf, TrialIdentity
from evaluator.trial.interface import (
    NO_PROBLEMS,
    ReaderProblems,
    StepRef,
    WorkerStep,
    WorkerTensors,
)
from evaluator.trial.layout import COLLECTIONS_PREFIX, END_MARKER, parse_collections_key
from evaluator.trial.local import LocalStorage
from evaluator.trial.parsers import parse_num_workers
from evaluator.trial.problems import STORAGE_UNAVAILABLE


class SmdebugTrialReader:
    """Implements ``TrialReader`` with ``smdebug.trials.create_trial`` on a folder or S3 prefix.

    smdebug reads the trial itself (on S3 with its own boto3 client, which takes the endpoint
    from ``AWS_ENDPOINT_URL``). ``storage`` only answers this class's own questions (does the
    trial exist, are the collections files there, has training ended) without importing smdebug.
    """

    def __init__(self, path: str, storage: TrialStorage | None = None) -> None:
        self._path = path
        self._storage: TrialStorage = storage if storage is not None else LocalStorage(path)
        self._trial: Any = None
        self._returned_through = -1
        self._identity = IdentityOf(self._storage)
        self._outages = 0
        self._last_outage = ""

    @property
    def location(self) -> str:
        return self._path

    @property
    def local_path(self) -> str | None:
        return self._storage.local_path

    def exists(self) -> bool:
        """False while the storage is unavailable, as the native reader rides an outage out:
        the runtime's idle timeout then ends the run with the failure named."""
        try:
            return self._storage.exists()
        except StorageUnavailable as error:
            self._outages += 1
            self._last_outage = f"{self._path}: {error}"
            return False

    def poll(self) -> Sequence[StepRef]:
        try:
            trial = self._open()
            if trial is None:
                return []
            steps = [step for step in trial.steps() if step > self._returned_through]
            refs = [self._step_ref(trial, step) for step in steps]
        except Exception as error:
            raise TrialError(f"smdebug cannot read the trial at {self._path}: {error!r}") from error
        if steps:
            self._returned_through = steps[-1]
        return [ref for ref in refs if ref.parts]

    @property
    def backlog(self) -> bool:
        """smdebug's trial hands over every step it knows at once."""
        return False

    @property
    def pending_steps(self) -> int:
        """smdebug hands over every step it has loaded: none waits here."""
        return 0

    def training_ended(self) -> bool:
        trial = self._trial
        if trial is None or not self._storage.key_exists(END_MARKER):
            return False
        trial.maybe_refresh()
        return bool(trial.loaded_all_steps) and all(
            step <= self._returned_through for step in trial.steps()
        )

    def read(self, ref: StepRef, wanted: Callable[[str], bool]) -> list[WorkerTensors]:
        return [self._read_part(ref.step, part, wanted) for part in ref.parts]

    def identity(self) -> TrialIdentity | None:
        return self._identity.current()

    def same_trial(self, saved: TrialIdentity) -> bool | None:
        return self._identity.same_as(saved)

    def problems(self) -> ReaderProblems:
        """smdebug keeps its problems to itself (its log): a part it cannot read reaches the
        rule as a skipped batch with smdebug's message. Only the storage outages seen while
        looking for the trial are this class's own."""
        if not self._outages:
            return NO_PROBLEMS
        return ReaderProblems(
            notices={STORAGE_UNAVAILABLE: self._outages},
            examples={STORAGE_UNAVAILABLE: self._last_outage},
            last=self._last_outage,
        )

    def close(self) -> None:
        self._trial = None
        self._storage.close()

    def _open(self) -> Any:
        """The smdebug trial, once every collections file smdebug will wait for is there."""
        if self._trial is None and self._collections_ready():
            os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")
            # Lazy: smdebug is an optional extra, and importing it pulls pandas and botocore.
            from smdebug.trials import create_trial  # noqa: PLC0415

            self._trial = create_trial(self._path)
        return self._trial

    def _collections_ready(self) -> bool:
        try:
            keys = [
                key
                for key in self._storage.list_keys(COLLECTIONS_PREFIX)
                if parse_collections_key(key) is not None
            ]
        except OSError:
            return False
        expected = 0
        for key in keys:
            try:
                expected = max(expected, parse_num_workers(self._storage.read_bytes(key)))
            except (OSError, ValueError):
                return False
        return bool(keys) and len(keys) >= expected

    @staticmethod
    def _step_ref(trial: Any, step: int) -> StepRef:
        """Every worker's part of ``step``, from smdebug's per-tensor worker lists."""
        mode, mode_step = trial.mode_modestep(step)
        names_by_worker: dict[str, list[str]] = {}
        for name in trial.tensor_names(step=step):
            for worker in trial.tensor(name).workers(step):
                names_by_worker.setdefault(str(worker), []).append(name)
        parts = tuple(
            WorkerStep(worker, mode.name, int(mode_step), tuple(names))
            for worker, names in sorted(names_by_worker.items())
        )
        return StepRef(step=step, parts=parts)

    def _read_part(
        self, step: int, part: WorkerStep, wanted: Callable[[str], bool]
    ) -> WorkerTensors:
        result = WorkerTensors(part.worker, part.mode, part.mode_step)
        for name in part.tensor_names:
            if not wanted(name):
                continue
            try:
                result.tensors[name] = self._trial.tensor(name).value(step, worker=part.worker)
            except Exception as error:
                result.tensors.clear()
                result.error = (
                    f"smdebug cannot read tensor {name!r} of worker {part.worker} at step "
                    f"{step} in {self._path}: {error!r}. Try the native reader."
                )
                result.error_reason = "smdebug_error"
                break
        return result
