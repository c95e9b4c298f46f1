"""The compiled kernels of the hot path, and the switch back to the pure-Python path.

Per (step, worker) the evaluator scans an event file and decodes two tensors; per chunk it
takes the argmax of every score row and counts labels per step and class. In Python the
interpreter, not the machine, bounds that work: ``_kernels.c`` does the scan and the numeric
kernels in C, each as a fast path in front of the Python code, which stays the reference. The
scan declines (returns None) whatever it does not take on, malformed bytes included, and the
Python parser then reads it or raises its typed error; so both paths give the same results and
the same errors, which the differential tests and the fuzz run under AddressSanitizer hold.

Nothing here knows trials, rules or settings: the reader and the rule ask ``kernels()`` at
each call (None: use the Python path), and the runtime sets ``use_compiled`` from its setting
``pure_python``. Without a C compiler at install time the package installs without the
extension, and the Python path runs everywhere (``unavailable`` says why).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol, cast

import numpy as np
import numpy.typing as npt

Span = tuple[str, int, int, int, int, tuple[int, tuple[int, ...], int] | None]
"""A tensor the scan found: tag, record start and length, TensorProto start and stop, and
``(dtype, shape, offset)`` of its raw content when it is a plain numeric one."""


class Kernels(Protocol):
    """What ``_kernels.c`` provides (the C says what each does)."""

    def scan_event_file(
        self, buf: bytes | bytearray | memoryview, step: int, verify_payload: bool, /
    ) -> tuple[str | None, int, tuple[Span, ...] | None] | None: ...

    def argmax_finite(
        self, arrays: Sequence[npt.NDArray[np.floating]], out: npt.NDArray[np.int64], /
    ) -> bool: ...

    def step_counts(
        self,
        labels: npt.NDArray[np.int64],
        predicted: npt.NDArray[np.int64],
        stops: npt.NDArray[np.int64],
        samples: npt.NDArray[np.int64],
        wrong: npt.NDArray[np.int64],
        /,
    ) -> None: ...


_kernels: Kernels | None
unavailable: str | None
"""Why the compiled kernels cannot be used (not built, or not loadable), None when they can."""
try:
    # By name: an extension module has no source for the type checker, and the protocol
    # above is its one declaration of types.
    _kernels = cast(Kernels, importlib.import_module("evaluator.compiled._kernels"))
except ImportError as error:  # built without a compiler, or for another Python
    _kernels = None
    unavailable = f"the compiled kernels are not installed ({error})"
else:
    unavailable = None

_enabled = _kernels is not None


def kernels() -> Kernels | None:
    """The compiled kernels when built and enabled, else None (the pure-Python path)."""
    return _kernels if _enabled else None


def use_compiled(enabled: bool) -> bool:
    """Use the compiled kernels (when built) or force the pure-Python path; returns whether
    the compiled kernels are in use now."""
    global _enabled  # noqa: PLW0603 - one process-wide switch, set once at start
    _enabled = enabled and _kernels is not None
    return _enabled


def in_use() -> bool:
    """Whether the compiled kernels run now."""
    return _enabled


__all__ = ["Kernels", "Span", "in_use", "kernels", "unavailable", "use_compiled"]
