"""Waiting for steps: inotify wakes on a landed index file; stops wake at once."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from container.stopping import StopRequest
from container.watch import StepWaiter


def land_index_file(folder: Path, name: str) -> None:
    """As smdebug does: write a temporary file, then rename it into place."""
    temporary = folder / f"{name}.tmp"
    temporary.write_text("{}")
    os.replace(temporary, folder / name)


def test_a_new_index_file_wakes_the_wait_well_before_the_timeout(tmp_path: Path) -> None:
    folder = tmp_path / "index" / "000000000"
    folder.mkdir(parents=True)
    waiter, stop = StepWaiter(str(tmp_path)), StopRequest()
    try:
        assert waiter.uses_inotify
        waiter.wait(0, stop)  # sets up the watches
        timer = threading.Timer(0.1, land_index_file, (folder, "000000000000_worker_0.json"))
        timer.start()
        started = time.monotonic()
        waiter.wait(10, stop)
        timer.join()
        assert time.monotonic() - started < 5
    finally:
        waiter.close()
        stop.close()


def test_a_trial_that_appears_wakes_the_wait(tmp_path: Path) -> None:
    """A sidecar started before training: the trial's folders are created while it waits."""
    root = tmp_path / "job" / "trial"
    waiter, stop = StepWaiter(str(root)), StopRequest()
    try:
        waiter.wait(0, stop)  # watches tmp_path, the nearest folder there
        (tmp_path / "job").mkdir()
        started = time.monotonic()
        waiter.wait(10, stop)  # woken by job/
        waiter.wait(0, stop)  # now watches job/
        timer = threading.Timer(0.1, root.mkdir)
        timer.start()
        waiter.wait(10, stop)  # woken by trial/
        timer.join()
        waiter.wait(0, stop)  # the trial's own watches; the ancestor's is dropped
        folder = root / "index" / "000000000"
        folder.mkdir(parents=True)
        waiter.wait(10, stop)
        assert time.monotonic() - started < 5, "each wait woke on its folder, not the timeout"
    finally:
        waiter.close()
        stop.close()


def test_a_stop_wakes_the_wait(tmp_path: Path) -> None:
    waiter, stop = StepWaiter(str(tmp_path)), StopRequest()
    try:
        threading.Timer(0.1, stop.set).start()
        started = time.monotonic()
        waiter.wait(10, stop)
        assert time.monotonic() - started < 5
    finally:
        waiter.close()
        stop.close()


def test_without_a_local_root_it_just_waits_for_the_timeout() -> None:
    waiter, stop = StepWaiter(None), StopRequest()
    try:
        assert not waiter.uses_inotify
        started = time.monotonic()
        waiter.wait(0.05, stop)
        assert time.monotonic() - started >= 0.04
    finally:
        waiter.close()
        stop.close()
