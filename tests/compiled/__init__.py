"""The compiled kernels (evaluator/compiled/_kernels.c), held to their Python references."""

from __future__ import annotations

import os

import pytest

from evaluator import compiled
from evaluator.compiled import Kernels


def require_kernels() -> Kernels:
    """The compiled kernels, built; else skip the calling module, except under CI=true, where
    a missing build is a failure (the image and CI build them: a C compiler is there)."""
    module = compiled._kernels
    if module is None:
        reason = (
            f"{compiled.unavailable}: build them with `make kernels` (gcc and Python's headers "
            "are needed); without them the evaluator runs its pure-Python path"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}. CI=true: these tests must run", pytrace=False)
        pytest.skip(reason, allow_module_level=True)
    return module
