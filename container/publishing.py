"""Everything the evaluation shows the outside, from snapshots: the metrics' snapshot box, the
status file and the managed service's message and report, each at its own cadence.

Status writes are throttled while nothing important changes (a fast replay must not write a
file per step) but immediate when a finding appears; snapshots are cheap and follow each step
closely so metrics lag a new step by milliseconds. Every output of one moment is built from one
``Snapshot``, so the status file and the metrics never disagree. The publisher takes its own
settings group (``outputs``) and a source of snapshots; it never sees the rule or the reader.

Only the status file is essential: a status that cannot be written raises ``StatusFileError``
(the run ends with it); a report or the message file that cannot be written is logged and the
evaluation goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from container.atomic import write_text_atomically
from container.config import OutputSettings
from container.snapshot import Snapshot, SnapshotBox
from container.status import (
    RunInfo,
    StatusFileError,
    build_status,
    readable_json,
    write_status,
)
from evaluator.core import StepResult

log = logging.getLogger("classimbalance")

MESSAGE_LIMIT = 1024  # the managed service shows the first 1 KB of the message file
REPORT_NAME = "ClassImbalance.json"
HTML_REPORT_NAME = "ClassImbalance.html"
SNAPSHOT_INTERVAL = 0.05
"""Seconds between snapshots while steps are evaluated without a finding: metrics lag a step
by at most this, and a replay of thousands of steps takes a few dozen snapshots, not one each."""

LIVE_PAGE_MAX_AGE = 1.0
"""Seconds a live page is served again before a newer snapshot is rendered: a page of 1,000
classes takes 50 ms, and tabs that refresh every 5 s must not cost the loop a core."""

SnapshotSource = Callable[[], Snapshot]
"""Takes a snapshot of the evaluation as it is now (called only when one is needed)."""


def managed_paths(outputs: OutputSettings, managed_root: str) -> tuple[Path | None, Path | None]:
    """(message file, report folder): the settings', else the managed service's when present."""
    root = Path(managed_root)
    message = outputs.message_file or (
        str(root / "output" / "message") if (root / "output").is_dir() else None
    )
    report = outputs.report_dir or (
        str(root / "processing" / "output" / "rule")
        if (root / "processing" / "output" / "rule").is_dir()
        else None
    )
    return (Path(message) if message else None, Path(report) if report else None)


def write_message(path: Path, text: str) -> bool:
    """The status message, atomically where the file can be replaced; else, when it exists, in
    place: Kubernetes' ``/dev/termination-log`` is a file the kubelet bind-mounts, which a
    rename cannot replace (EBUSY) and whose folder the container cannot write (EACCES), and
    which is read only once the container has exited, so a write in place is whole by then."""
    try:
        write_text_atomically(path, text, what="the message file", setting="message_file")
        return True
    except OSError as exc:
        if not path.is_file():
            log.error("%s", exc, extra={"event": "output_failed"})
            return False
        atomic_error = exc
    try:
        with path.open("w", encoding="utf-8", errors="backslashreplace") as stream:
            stream.write(text)
        return True
    except OSError as exc:
        log.error("%s (in place: %s)", atomic_error, exc, extra={"event": "output_failed"})
        return False


def truncate_utf8(text: str, limit: int) -> str:
    """At most ``limit`` bytes of UTF-8, never cutting a character in half."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


class Publisher:
    """Publishes one evaluation's progress and verdict."""

    def __init__(
        self,
        outputs: OutputSettings,
        run_info: RunInfo,
        box: SnapshotBox,
        *,
        managed_root: str = "/opt/ml",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outputs = outputs
        self._run_info = run_info
        self._box = box
        self._clock = clock
        self._message_file, self._report_dir = managed_paths(outputs, managed_root)
        self._last_status_write = -float("inf")
        self._last_snapshot = -float("inf")
        self._terminal_document: dict[str, Any] | None = None
        self.status_written = True
        """Whether the last status write succeeded: false once the status file could not be
        written (the file holds the last document that could)."""
        self._page_lock = threading.Lock()
        self._page: tuple[Snapshot, float, str] | None = None
        """The live page, the snapshot it shows and when it was made: made again only for a
        new snapshot, and at most once per ``LIVE_PAGE_MAX_AGE``."""

    def update_run_info(self, run_info: RunInfo) -> None:
        """What the run turned out to be after starting (resumed from a checkpoint)."""
        self._run_info = run_info

    # -- while running ----------------------------------------------------------------------

    def publish(self, snapshot: Snapshot, *, force: bool = False) -> dict[str, Any] | None:
        """Show ``snapshot`` on the metrics now; write the status file at most every
        ``status_interval`` unless ``force``. Returns the document when one was written."""
        now = self._clock()
        self._box.publish(snapshot)
        self._last_snapshot = now
        if force or now - self._last_status_write >= self._outputs.status_interval:
            self._last_status_write = now
            return self._write_status(snapshot)
        return None

    def steps_done(self, results: Sequence[StepResult], source: SnapshotSource) -> None:
        """After each chunk of evaluated steps: a finding is written at once, else a snapshot
        soon. (The rule counted the whole chunk before, so one look serves all its steps.)"""
        if any(result.new_findings for result in results):
            document = self.publish(source(), force=True)
            if document is not None:  # the report says what the status file says
                self._write_report(document)
        elif self._clock() - self._last_snapshot >= SNAPSHOT_INTERVAL:
            self._box.publish(source())
            self._last_snapshot = self._clock()

    def poll_done(self, source: SnapshotSource) -> None:
        """After each look at the trial: the snapshot catches up, the status file throttled."""
        self.publish(source())

    # -- the end ----------------------------------------------------------------------------

    def terminal(
        self, snapshot: Snapshot, run_info: RunInfo, error: str | None = None
    ) -> dict[str, Any]:
        """Write the verdict everywhere it is read; the snapshot says the terminal status.

        A verdict whose status file cannot be written raises ``StatusFileError``: the run
        ends in error instead. An error's status that cannot be written either (the error
        is, say, that the disk is full) is given up silently, the error already says why:
        the file keeps its last document, and the report and message file still say it."""
        self._run_info = run_info
        snapshot = replace(snapshot, ready=False)
        document = self._document(snapshot, error, terminal=True)
        try:
            self._write(document)
        except StatusFileError:
            if error is None:
                raise
        self._box.publish(snapshot)
        self._terminal_document = document
        self._write_report(document)
        if self._message_file is not None:
            write_message(self._message_file, truncate_utf8(document["message"], MESSAGE_LIMIT))
        if self._outputs.html_report and self.status_written:  # the page beside the status
            self._write_html_report(document)
        return document

    def live_page(self) -> str:
        """The HTML report of the evaluation as it stands (``/report``): the terminal
        document once there is one, so a lingering sidecar serves the verdict's page."""
        # Imported when a page is first made: its modules take 20-40 ms to import, which a
        # run with html_report false, or before its end, need not pay at start-up.
        from container.report import render_report  # noqa: PLC0415

        with self._page_lock:  # one render at a time: requests wait for it, not the loop
            snapshot, now = self._box.get(), self._clock()
            cached = self._page
            ended = self._terminal_document is not None  # the verdict's page at once
            if cached is None or (
                cached[0] is not snapshot and (ended or now - cached[1] >= LIVE_PAGE_MAX_AGE)
            ):
                document = self._terminal_document or self._document(snapshot)
                cached = self._page = (snapshot, now, render_report(document, live=True))
            return cached[2]

    # -- helpers ----------------------------------------------------------------------------

    def document(self, snapshot: Snapshot) -> dict[str, Any]:
        """The status document of a snapshot as it would be written now (for the actions)."""
        return self._document(snapshot)

    def _document(
        self, snapshot: Snapshot, error: str | None = None, *, terminal: bool = False
    ) -> dict[str, Any]:
        return build_status(snapshot, self._run_info, error=error, terminal=terminal)

    def _write_status(self, snapshot: Snapshot) -> dict[str, Any]:
        document = self._document(snapshot)
        self._write(document)
        return document

    def _write(self, document: dict[str, Any]) -> None:
        self.status_written = False
        write_status(self._outputs.status_file, document)
        self.status_written = True

    def written_paths(self) -> list[Path]:
        """Every file this publisher may write (for ``atomic.remove_stale_temporaries``)."""
        paths = [Path(self._outputs.status_file), *self.html_report_paths()]
        if self._report_dir is not None:
            paths.append(self._report_dir / REPORT_NAME)
        if self._message_file is not None:
            paths.append(self._message_file)
        return paths

    def html_report_paths(self) -> list[Path]:
        """Where the HTML report is written at the end."""
        paths = [Path(self._outputs.report_path)]
        if self._report_dir is not None:
            paths.append(self._report_dir / HTML_REPORT_NAME)
        return paths

    def _write_html_report(self, document: dict[str, Any]) -> None:
        """The page beside the status file and in the report folder. A page that cannot be
        written (or, a bug, rendered) is logged and costs nothing else: the status is out."""
        try:
            from container.report import render_report  # noqa: PLC0415  (as in live_page)

            page = render_report(document)
        except Exception:
            log.exception("rendering the HTML report failed; the status file has the verdict")
            return
        for path, setting in zip(
            self.html_report_paths(), ("report_file", "report_dir"), strict=False
        ):
            try:
                write_text_atomically(path, page, what="the HTML report", setting=setting)
            except OSError as exc:
                log.error("%s", exc, extra={"event": "output_failed"})

    def _write_report(self, document: dict[str, Any]) -> None:
        if self._report_dir is None:
            return
        try:
            write_text_atomically(
                self._report_dir / REPORT_NAME,
                readable_json(document) + "\n",
                what="the rule report",
                setting="report_dir",
            )
        except OSError as exc:
            log.error("%s", exc, extra={"event": "output_failed"})
