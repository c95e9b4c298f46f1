"""Types of the compiled kernels (``_kernels.c``); their docstrings there say what each does."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Span = tuple[str, int, int, int, int, tuple[int, tuple[int, ...], int] | None]

def scan_event_file(
    buf: bytes | bytearray | memoryview, step: int, verify_payload: bool, /
) -> tuple[str | None, int, tuple[Span, ...] | None] | None: ...
def argmax_finite(
    arrays: Sequence[npt.NDArray[np.floating]], out: npt.NDArray[np.int64], /
) -> bool: ...
def step_counts(
    labels: npt.NDArray[np.int64],
    predicted: npt.NDArray[np.int64],
    stops: npt.NDArray[np.int64],
    samples: npt.NDArray[np.int64],
    wrong: npt.NDArray[np.int64],
    /,
) -> None: ...
