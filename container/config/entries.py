"""Values as the loader finds them, with where each came from, and what it found wrong.

Every layer (job config, YAML, environment, flags) turns into ``Entry`` values with a ``Source``
worded for messages; every problem of every layer goes into one ``Report``, so that all of them
are reported together (``ConfigError``): a rule container that fails one value at a time costs
one training job per fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from container.config.limits import MAX_REPORTED_UNKNOWN, closest, quote
from container.config.settings import (
    ALIASES,
    DEFAULT_STATUS_FILE,
    SETTING_NAMES,
    LogFormat,
    LogLevel,
    Settings,
)
from evaluator.core import PARAMETER_NAMES, ParameterError, ParameterProblem, shortened
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
        """``detail``, or the core's wording with the value quoted short (``limits.quote``):
        the core quotes it whole, and a value can be a billion laughs."""
        if self.detail:
            return self.detail
        name = shortened(self.name) if isinstance(self.name, str) else _Quoted(quote(self.name))
        return ParameterProblem(
            name, _Quoted(quote(self.value)), self.expected, self.source
        ).describe()


class _Quoted(str):
    """A value already quoted: ``repr`` gives it as it is."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def bounded(found: ParameterProblem) -> ConfigProblem:
    """``found`` described with its value quoted short, its value kept as it was."""
    if isinstance(found, ConfigProblem):
        return found
    return ConfigProblem(found.name, found.value, found.expected, found.source)


def problem(name: str, value: Any, source: str | None, detail: str) -> ConfigProblem:
    """A problem worded whole: ``source: detail``."""
    return ConfigProblem(name, value, "", source, f"{source}: {detail}" if source else detail)


@dataclass
class Report:
    """Every problem and warning of one load."""

    problems: list[ParameterProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _unused: set[str] = field(default_factory=set)
    _unknown: list[str] = field(default_factory=list)
    """Every unknown key, in order: the first MAX_REPORTED_UNKNOWN are reported one by one."""

    def unused(self, key: str, source: str) -> None:
        # The job config's Environment is usually the process environment too: warn once.
        if key.lower() not in self._unused:
            self._unused.add(key.lower())
            self.warnings.append(
                f"{key} (from {source}) is a managed-service parameter this image does not "
                f"use; ignored"
            )

    def unknown(self, key: str, value: Any, source: str) -> None:
        """One problem per unknown key, with the closest setting's name, for the first
        MAX_REPORTED_UNKNOWN; the others are counted by ``close`` (a suggestion costs time,
        and a file of 350,000 unknown keys took minutes)."""
        self._unknown.append(key)
        if len(self._unknown) > MAX_REPORTED_UNKNOWN:
            return
        close = closest(key.lower(), [*SETTING_NAMES, *ALIASES])
        if isinstance(value, dict):  # a nested group such as rule: {samples: 500}
            names = shortened(", ".join(map(str, list(value)[:MAX_REPORTED_UNKNOWN])))
            hint = f"settings are flat keys: write {names} at the top level"
        elif close:
            hint = f"did you mean {close!r}?"
        else:
            hint = "every setting is listed by --help and in config/classimbalance.yaml"
        self.problems.append(problem(key, value, source, f"unknown setting {quote(key)}; {hint}"))

    def close(self) -> None:
        """The unknown keys not reported one by one, in one problem."""
        more = self._unknown[MAX_REPORTED_UNKNOWN:]
        if more:
            self.problems.append(
                problem(
                    "config",
                    None,
                    None,
                    f"{len(more):,} more unknown settings ({shortened(', '.join(more[:10]))}"
                    f"{', ...' if len(more) > 10 else ''}); every setting is listed by --help",
                )
            )
            self._unknown.clear()


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
        named_core_problems = not any(
            isinstance(p, ConfigProblem) or p.name not in PARAMETER_NAMES for p in problems
        )
        problems = [bounded(p) for p in problems]
        super().__init__(problems)
        self.fallback = fallback
        self.warnings = tuple(warnings)
        self.print_config = print_config
        self.only_missing_trial = [p.name for p in problems] == ["base_trial"] and (
            problems[0].value is None
        )
        """Whether the one problem is that no trial was named anywhere (the bare command)."""
        if not named_core_problems:
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
