"""The code stays in the shape the architecture asks for: small modules, each maintainable,
no function too complex to follow. Figures from radon, the tool the review used."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from radon.complexity import cc_visit
from radon.metrics import mi_rank, mi_visit

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted(
    path
    for package in ("evaluator", "container")
    for path in (REPO / package).rglob("*.py")
    if "__pycache__" not in path.parts
)
MAX_LINES = 700
"""A module past this holds several concerns (the reader and the loader once did)."""
MAX_COMPLEXITY = 20
"""Cyclomatic complexity of one function or method; ruff's C90 holds the same bound."""
GRADES = {"A", "B"}
"""radon's maintainability index grades kept: A (>= 20) or B (10-19)."""


def _ids(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(REPO)) for path in paths]


@pytest.mark.parametrize("path", MODULES, ids=_ids(MODULES))
def test_a_module_is_small_maintainable_and_plain(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert source.count("\n") <= MAX_LINES, f"split {path.name} along its concerns"
    grade = mi_rank(mi_visit(source, multi=True))
    assert grade in GRADES, f"maintainability index grade {grade}"
    complex_blocks = {
        block.fullname: block.complexity
        for block in _functions(cc_visit(source))
        if block.complexity > MAX_COMPLEXITY
    }
    assert complex_blocks == {}


def _functions(blocks: list[Any]) -> list[Any]:
    """Every function, method and closure radon found, however deeply nested."""
    found: list[Any] = []
    for block in blocks:
        nested = [*getattr(block, "methods", []), *getattr(block, "closures", [])]
        if not hasattr(block, "methods"):
            found.append(block)
        found += _functions(nested)
    return found


def test_every_package_module_is_checked() -> None:
    names = {path.relative_to(REPO).parts[0] for path in MODULES}
    assert names == {"evaluator", "container"}
    assert len(MODULES) > 40


def test_the_version_is_pyprojects() -> None:
    """``container.__version__`` (the report's footer) is the package's version, not a copy
    that drifts from it."""
    import tomllib

    import container

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert container.__version__ == project["version"]


def test_the_default_outputs_are_git_ignored() -> None:
    """A newcomer's first run in the checkout leaves nothing for ``git status`` to show."""
    names = ["classimbalance-status.json", "classimbalance-status.html", "demo-output/x"]
    found = subprocess.run(
        ["git", "check-ignore", *names], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert found.stdout.split() == names
