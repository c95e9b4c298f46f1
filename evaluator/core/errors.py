"""Errors of the rule core, worded "expected ..., found ..., change ..."."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from evaluator.core.text import QUOTED_CHARS, quoted, shortened


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
        got = _value_quoted(self.value)
        return f"{self.name}{where}: expected {self.expected}, but got {got}"


def _value_quoted(value: Any) -> str:
    """A 10 MiB regex is named by its start and its length. A value that is not a plain string
    is cut by its repr; one quoted already by its maker (the settings loader's, whose repr is
    its quote: the bound and "(N characters in all)") fits, and is left whole."""
    if type(value) is str:
        return quoted(value)
    return shortened(repr(value), _QUOTED_REPR_CHARS)


_QUOTED_REPR_CHARS = QUOTED_CHARS + 64
"""Room for a value quoted already: ``QUOTED_CHARS`` and its "(N characters in all)"."""


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
