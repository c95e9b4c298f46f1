"""The bounded runner itself: a hang is caught, memory is capped and measured."""

from __future__ import annotations

import pytest

from tests.faults.bounded import Hung, python, run_bounded


def test_a_child_that_ends_reports_its_peak_memory():
    r = run_bounded(python("import numpy; a = bytearray(200*1024*1024); print('hi')"), seconds=20)
    assert r.returncode == 0, r
    assert "hi" in r.stdout
    assert r.peak_rss_mib > 200


def test_a_child_that_hangs_is_killed_at_its_limit():
    with pytest.raises(Hung):
        run_bounded(python("import time; time.sleep(30)"), seconds=1)


def test_a_child_is_capped_in_address_space():
    r = run_bounded(python("a = bytearray(3*1024**3)"), seconds=20, address_space_mib=1024)
    assert r.returncode != 0
    assert "MemoryError" in r.stderr


def test_the_peak_is_the_childs_own_not_its_parents() -> None:
    """Linux keeps a peak across exec, and a forked child starts at its parent's size: a test
    process of 300 MiB must not make a small child look large."""
    ballast = bytearray(300 * 1024 * 1024)
    ballast[::4096] = b"x" * len(ballast[::4096])  # resident, not only reserved
    r = run_bounded(python("print('small')"), seconds=20)
    assert r.returncode == 0
    assert r.peak_rss_mib < 100, f"{r.peak_rss_mib:.0f} MiB"
    del ballast


def test_a_child_killed_by_a_signal_is_reported_so() -> None:
    r = run_bounded(python("import os, signal; os.kill(os.getpid(), signal.SIGABRT)"), seconds=20)
    assert r.returncode == -6
