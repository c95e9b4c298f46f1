"""Stop requests: signals become a flag and wake any wait at once."""

from __future__ import annotations

import os
import select
import signal

from container.stopping import StopRequest, stop_on_signals


def test_set_wakes_a_select_on_the_wake_fd() -> None:
    stop = StopRequest()
    try:
        assert select.select([stop.wake_fd], [], [], 0)[0] == []
        stop.set("test")
        assert select.select([stop.wake_fd], [], [], 1)[0] == [stop.wake_fd]
        assert stop.is_set()
        assert stop.reason == "test"
    finally:
        stop.close()


def test_sigterm_and_sigint_set_the_flag_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = StopRequest()
    try:
        with stop_on_signals(stop):
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.wait(2)
            assert stop.reason == "received SIGTERM"
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        stop.close()
