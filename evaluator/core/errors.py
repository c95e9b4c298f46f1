"""Errors of the rule core, worded "expected ..., found ..., change ..."."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

_QUOTED_CHARS = 300
"""The longest value a problem quotes whole (the status file and the log repeat it)."""


@dataclass(frozen=True)
class ParameterProblem:
    """One invalid parameter: its name, the value found and what is accepted."""

    name: str
    value: Any
    expected: str
    source: str | None = None
    """Where the value came from (file and key, environment variable, flag), when known."""

    def describe(self) -> str:
        where = f" (from {self.source})" if self.source else ""
        if self.expected.startswith("one of "):
            known = self.expected.removeprefix("one of ").split(", ")
            close = difflib.get_close_matches(str(self.name), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {self.expected[7:]}"
            return f"unknown parameter {self.name!r}{where}{hint}"
        got = repr(self.value)
        if len(got) > _QUOTED_CHARS:  # a 10 MiB regex is named by its start and its length
            got = f"{got[:_QUOTED_CHARS]}... ({len(got):,} characters in all)"
        return f"{self.name}{where}: expected {self.expected}, but got {got}"


class ParameterError(ValueError):
    """Every invalid parameter of a configuration, reported together."""

    def __init__(self, problems: list[ParameterProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem.describe()}" for problem in problems)
        noun = "parameter is" if len(problems) == 1 else "parameters are"
        super().__init__(f"{len(problems)} rule {noun} invalid:\n{lines}")


class WindowLimitError(ValueError):
    """The recent window would hold more per-class counts than its bound: the message says how
    many, the bound, and what ``window_steps`` would fit."""


class LedgerLimitError(ValueError):
    """A shard's ledger would hold more per-step class counts than its bound: the message says
    how many, the bound, and how many steps a shard may take."""
