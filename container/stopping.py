"""Stop requests: SIGTERM and SIGINT become a flag the loop checks, plus a wake-up for waits.

As PID 1 in a container a process gets no default SIGTERM action, so without a handler
``podman stop`` or a pod's termination would wait for SIGKILL. The handler only sets a flag and
writes one byte to a pipe: the loop notices between steps, and a wait on files (select) wakes at
once instead of sleeping out its poll interval.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class StopRequest:
    """A thread-safe stop flag whose ``set`` also wakes ``select`` on ``wake_fd``."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self.reason: str | None = None

    @property
    def wake_fd(self) -> int:
        """Readable once a stop was requested."""
        return self._read_fd

    def set(self, reason: str = "stop requested") -> None:
        if self.reason is None:
            self.reason = reason
        self._event.set()
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write_fd, b"x")

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """Turn SIGTERM/SIGINT into ``stop.set`` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum: int, _frame: FrameType | None) -> None:
        stop.set(f"received {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
