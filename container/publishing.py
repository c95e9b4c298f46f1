"""Everything the evaluation shows the outside: status file, snapshot for metrics, checkpoints
and the managed service's files, each at its own cadence.

Status writes are throttled while nothing important changes (a fast replay must not write a
file per step) but immediate when a finding appears; snapshots are cheap and follow each step
closely so metrics lag a new step by milliseconds; checkpoints go every N steps or seconds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from container.atomic import write_text_atomically
from container.checkpoint import save_checkpoint
from container.evaluation import Evaluation
from container.settings import Settings
from container.snapshot import SnapshotBox, take_snapshot
from container.status import RunInfo, Status, build_status, write_status
from evaluator.core import StepResult

log = logging.getLogger("classimbalance")

MESSAGE_LIMIT = 1024  # the managed service shows the first 1 KB of the message file
REPORT_NAME = "ClassImbalance.json"
_SNAPSHOT_INTERVAL = 0.05


def managed_paths(settings: Settings, managed_root: str) -> tuple[Path | None, Path | None]:
    """(message file, report folder): the settings', else the managed service's when present."""
    root = Path(managed_root)
    message = settings.message_file or (
        str(root / "output" / "message") if (root / "output").is_dir() else None
    )
    report = settings.report_dir or (
        str(root / "processing" / "output" / "rule")
        if (root / "processing" / "output" / "rule").is_dir()
        else None
    )
    return (Path(message) if message else None, Path(report) if report else None)


def truncate_utf8(text: str, limit: int) -> str:
    """At most ``limit`` bytes of UTF-8, never cutting a character in half."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


class Publisher:
    """Publishes one evaluation's progress and verdict."""

    def __init__(
        self,
        settings: Settings,
        evaluation: Evaluation,
        run_info: RunInfo,
        box: SnapshotBox,
        *,
        reader_problems: Callable[[], dict[str, int]],
        reader_examples: Callable[[], dict[str, str]] = dict,
        managed_root: str = "/opt/ml",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._evaluation = evaluation
        self.run_info = run_info
        self._box = box
        self._reader_problems = reader_problems
        self._reader_examples = reader_examples
        self._clock = clock
        self._message_file, self._report_dir = managed_paths(settings, managed_root)
        self._last_status_write = -float("inf")
        self._last_snapshot = -float("inf")
        self._last_checkpoint = clock()
        self._steps_at_checkpoint = evaluation.rule.steps_evaluated
        self.ready = False

    # -- while running ----------------------------------------------------------------------

    def step_done(self, result: StepResult) -> None:
        """After each evaluated step: snapshot soon, status at once on a finding."""
        now = self._clock()
        if result.new_findings:
            self.in_progress(force=True)
            self._write_report(self._running_status())
        elif now - self._last_snapshot >= _SNAPSHOT_INTERVAL:
            self._publish_snapshot(self._running_status())
        self._maybe_checkpoint(now)

    def poll_done(self) -> None:
        """After each look at the trial: the status and snapshot catch up, throttled."""
        self.in_progress()
        self._maybe_checkpoint(self._clock())

    def in_progress(self, *, force: bool = False) -> None:
        now = self._clock()
        status = self._running_status()
        self._publish_snapshot(status)
        if force or now - self._last_status_write >= self._settings.status_interval:
            self._write_status(status)
            self._last_status_write = now

    def _running_status(self) -> Status:
        """IssuesFound as soon as a check held, while evaluation goes on; InProgress before."""
        if self._evaluation.rule.issue_step is not None:
            return Status.ISSUES_FOUND
        return Status.IN_PROGRESS

    # -- the end ----------------------------------------------------------------------------

    def terminal(self, status: Status, info: RunInfo, error: str | None = None) -> dict[str, Any]:
        """Write the verdict everywhere it is read, the checkpoint first."""
        self.run_info = info
        self.ready = False
        if error is None:
            self.checkpoint()
        document = self._write_status(status, error, terminal=True)
        self._publish_snapshot(status)
        self._write_report(status, document)
        if self._message_file is not None:
            try:
                write_text_atomically(
                    self._message_file, truncate_utf8(document["message"], MESSAGE_LIMIT)
                )
            except OSError as exc:
                log.error("cannot write the message file %s: %s", self._message_file, exc)
        return document

    def checkpoint(self) -> None:
        path = self._settings.checkpoint_file
        if path is None:
            return
        evaluation = self._evaluation
        try:
            save_checkpoint(
                path,
                self._settings,
                evaluation.rule,
                evaluation.delivered_through,
                evaluation.steps_seen,
            )
        except OSError as exc:
            log.error(
                "cannot save the checkpoint %s: %s; set checkpoint_file to a writable path",
                path,
                exc,
                extra={"event": "checkpoint_failed"},
            )
            return
        self._last_checkpoint = self._clock()
        self._steps_at_checkpoint = evaluation.rule.steps_evaluated

    # -- helpers ----------------------------------------------------------------------------

    def _maybe_checkpoint(self, now: float) -> None:
        if self._settings.checkpoint_file is None:
            return
        steps = self._evaluation.rule.steps_evaluated - self._steps_at_checkpoint
        if steps >= self._settings.checkpoint_every_steps or (
            steps > 0 and now - self._last_checkpoint >= self._settings.checkpoint_every_seconds
        ):
            self.checkpoint()

    def _publish_snapshot(self, status: Status) -> None:
        self._last_snapshot = self._clock()
        evaluation = self._evaluation
        self._box.publish(
            take_snapshot(
                evaluation.rule,
                status=str(status),
                trial=self._settings.base_trial,
                ready=self.ready,
                reader_problems=self._reader_problems(),
                last_evaluation_time=evaluation.last_evaluation_time,
            )
        )

    def _write_status(
        self, status: Status, error: str | None = None, *, terminal: bool = False
    ) -> dict[str, Any]:
        info = replace(
            self.run_info,
            steps_seen=self._evaluation.steps_seen,
            reader_problems=self._reader_problems(),
            reader_examples=self._reader_examples(),
        )
        document = build_status(self._evaluation.rule, info, status, error=error, terminal=terminal)
        write_status(self._settings.status_file, document)
        return document

    def _write_report(self, status: Status, document: dict[str, Any] | None = None) -> None:
        if self._report_dir is None:
            return
        document = document or build_status(self._evaluation.rule, self.run_info, status)
        try:
            write_text_atomically(
                self._report_dir / REPORT_NAME, json.dumps(document, indent=2) + "\n"
            )
        except OSError as exc:
            log.error("cannot write the rule report in %s: %s", self._report_dir, exc)
