"""Values as the loader finds them, with where each came from, and what it found wrong.

Every layer (job config, YAML, environment, flags) turns into ``Entry`` values with a ``Source``
worded for messages; every problem of every layer goes into one ``Report``, so that all of them
are reported together (``ConfigError``): a rule container that fails one value at a time costs
one training job per fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from container.config.settings import (
    ALIASES,
    DEFAULT_STATUS_FILE,
    SETTING_NAMES,
    LogFormat,
    LogLevel,
    Settings,
)
from evaluator.core import PARAMETER_NAMES, ParameterError, ParameterProblem
from evaluator.trial import Reader


@dataclass(frozen=True)
class Source:
    """Where a value came from, worded for messages: ``environment variable SAMPLES``."""

    kind: str
    """default, job config, file, environment or flag."""
    where: str = "default"

    def __str__(self) -> str:
        return self.where


DEFAULT_SOURCE = Source("default")


@dataclass(frozen=True)
class Entry:
    """One value of one setting, as given (a string, or what YAML made of it)."""

    name: str
    value: Any
    source: Source


@dataclass(frozen=True)
class ConfigProblem(ParameterProblem):
    """A problem that is not one value against its accepted forms (a file that does not parse,
    an unknown key, two values that disagree): ``detail`` says it whole, source included."""

    detail: str = ""

    def describe(self) -> str:
        return self.detail or super().describe()


def problem(name: str, value: Any, source: str | None, detail: str) -> ConfigProblem:
    """A problem worded whole: ``source: detail``."""
    return ConfigProblem(name, value, "", source, f"{source}: {detail}" if source else detail)


@dataclass
class Report:
    """Every problem and warning of one load."""

    problems: list[ParameterProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _unused: set[str] = field(default_factory=set)

    def unused(self, key: str, source: str) -> None:
        # The job config's Environment is usually the process environment too: warn once.
        if key.lower() not in self._unused:
            self._unused.add(key.lower())
            self.warnings.append(
                f"{key} (from {source}) is a managed-service parameter this image does not "
                f"use; ignored"
            )

    def unknown(self, key: str, value: Any, source: str) -> None:
        close = difflib.get_close_matches(key.lower(), [*SETTING_NAMES, *ALIASES], n=1)
        if isinstance(value, dict):  # a nested group such as rule: {samples: 500}
            hint = f"settings are flat keys: write {', '.join(map(str, value))} at the top level"
        elif close:
            hint = f"did you mean {close[0]!r}?"
        else:
            hint = "every setting is listed by --help and in config/classimbalance.yaml"
        self.problems.append(problem(key, value, source, f"unknown setting {key!r}; {hint}"))


@dataclass(frozen=True)
class Fallback:
    """What is still usable of invalid settings, to report the error where it is expected."""

    status_file: str = DEFAULT_STATUS_FILE
    base_trial: str = ""
    reader: Reader = "native"
    modes: tuple[str, ...] | None = None
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "text"


class ConfigError(ParameterError):
    """Every invalid setting of every layer, each with its source."""

    def __init__(
        self,
        problems: list[ParameterProblem],
        *,
        fallback: Fallback,
        warnings: Sequence[str] = (),
        print_config: bool = False,
    ) -> None:
        super().__init__(problems)
        self.fallback = fallback
        self.warnings = tuple(warnings)
        self.print_config = print_config
        self.only_missing_trial = [p.name for p in problems] == ["base_trial"] and (
            problems[0].value is None
        )
        """Whether the one problem is that no trial was named anywhere (the bare command)."""
        if any(isinstance(p, ConfigProblem) or p.name not in PARAMETER_NAMES for p in problems):
            lines = "\n".join(f"  - {item.describe()}" for item in problems)
            noun = "setting is" if len(problems) == 1 else "settings are"
            self.args = (f"{len(problems)} {noun} invalid:\n{lines}",)


@dataclass(frozen=True)
class LoadedSettings:
    """The effective settings, where each value came from and what was ignored."""

    settings: Settings
    sources: Mapping[str, Source]
    """Per flat setting name (``SETTING_NAMES``)."""
    warnings: tuple[str, ...] = ()
    print_config: bool = False
