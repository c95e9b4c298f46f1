"""The layers settings come from, each turned into entries: job config, YAML, environment, flags.

Lowest to highest precedence: the managed service's job config (its ``Environment`` map, then its
``RuleParameters`` map), a YAML file, environment variables, flags; the defaults are below them
all. The same flat names are used everywhere (the seed rule's for rule parameters), so a setting
moves between layers without renaming: ``samples`` in YAML, ``SAMPLES`` in the environment,
``--samples`` on the command line. In the process environment only the names the managed
service sends are read without a prefix (``MANAGED_NAMES``: the rule parameters, ``base_trial``
and a few more); every runtime setting takes ``CLASSIMBALANCE_`` (``CLASSIMBALANCE_LOG_LEVEL``),
so a platform-wide ``LOG_LEVEL`` or ``STATUS_FILE`` set for the training container is never
taken for ours. A variable that nearly names a setting gets a "did you mean" warning. Nothing
here parses a value: entries carry what was written, and ``loading`` parses each once, with its
source for messages. The YAML layer is in ``yaml_source``, imported only when a YAML file is
named (PyYAML takes 30 ms to import).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from container.config.entries import Entry, Report, Source, problem
from container.config.limits import (
    MAX_NEAR_MISS_CHECKS,
    MAX_REPORTED_UNKNOWN,
    TooLarge,
    check_document,
    closest,
    quote,
)
from container.config.settings import ALIASES, DECLARED, SETTING_NAMES
from evaluator.core import PARAMETER_NAMES, shortened

ENV_PREFIX = "CLASSIMBALANCE_"
"""What every setting's environment variable may start with, and a runtime setting's must."""
MANAGED_NAMES = frozenset(
    {*PARAMETER_NAMES, "base_trial", "start_step", "end_step", "rule_to_invoke", "action_json"}
    | {"stop_on_first_issue"}
)
"""Read from the environment without the prefix too: what the managed service sends (its rule
parameters, the trial, the step range, the rule's name and actions), and what its users put in
``rule_parameters`` beside them (``stop_on_first_issue``, as the managed rule behaves)."""
_NEAR_MISS = 0.85
"""difflib's similarity from which an unread variable is taken for a misspelled setting."""

_UNUSED_MANAGED_KEY = re.compile(r"(source_s3_uri|rule_name|other_trial_\d+)", re.IGNORECASE)
"""Parameters the managed service may pass that this image has no use for: warned, not errors,
so a job configured for the managed rule runs unchanged."""


def _single_values(entries: list[Entry], report: Report) -> list[Entry]:
    """One value per setting within a layer: two spellings that disagree are an error, since
    either choice would silently ignore something the user set."""
    chosen: dict[str, Entry] = {}
    for entry in entries:
        prior = chosen.setdefault(entry.name, entry)
        if prior is not entry and prior.value != entry.value:
            report.problems.append(
                problem(
                    entry.name,
                    entry.value,
                    f"{prior.source} and {entry.source}",
                    f"disagree ({quote(prior.value)} and {quote(entry.value)}); set only one",
                )
            )
    return list(chosen.values())


def keyed_entries(
    mapping: Mapping[Any, Any], source: Callable[[str], Source], report: Report
) -> list[Entry]:
    """Exact keys (YAML, the job config's RuleParameters): unknown ones are errors."""
    entries: list[Entry] = []
    for raw_key, value in mapping.items():
        key = str(raw_key)
        name = ALIASES.get(key, key)
        if name in SETTING_NAMES:
            entries.append(Entry(name, value, source(key)))
        elif _UNUSED_MANAGED_KEY.fullmatch(key):
            report.unused(key, str(source(key)))
        else:
            report.unknown(key, value, str(source(shortened(key))))
    return _single_values(entries, report)


def environment_entries(
    environ: Mapping[str, Any],
    source: Callable[[str], Source],
    report: Report,
    *,
    prefixed: bool = True,
) -> list[Entry]:
    """Settings from environment variables: ``CLASSIMBALANCE_NAME`` for any setting, and
    ``NAME`` (or ``name``) for the managed service's names; with ``prefixed`` False (the job
    config's Environment map, which only the service writes), every name unprefixed. Other
    variables belong to someone else and are ignored, but a near miss is warned about."""
    entries: list[Entry] = []
    for key in (*SETTING_NAMES, *ALIASES):
        unprefixed = not prefixed or key in MANAGED_NAMES
        spellings = [ENV_PREFIX + key.upper()] if prefixed else []
        spellings += [key.upper(), key] if unprefixed else []
        for variable in dict.fromkeys(spellings):
            if variable in environ:
                entries.append(Entry(ALIASES.get(key, key), environ[variable], source(variable)))
    near_misses = _NearMisses(source, report)
    for variable in environ:
        if variable in (variable.upper(), variable.lower()) and _UNUSED_MANAGED_KEY.fullmatch(
            variable
        ):
            report.unused(variable, str(source(variable)))
        elif prefixed:
            near_misses.check(variable)
    near_misses.close()
    return _single_values(entries, report)


_READ_UNPREFIXED = frozenset(name.upper() for name in MANAGED_NAMES)
_PREFIXED = frozenset(ENV_PREFIX + name.upper() for name in (*SETTING_NAMES, *ALIASES))
_RUNTIME = frozenset(name.upper() for name in SETTING_NAMES) - _READ_UNPREFIXED


class _NearMisses:
    """Warnings about variables that are not read but look meant for us: a runtime setting
    without its prefix (read before the prefix existed), a prefixed name that is no setting, or
    a misspelled managed name (``THRESHOLD_IMBALENCE``). The comparisons are bounded
    (``MAX_NEAR_MISS_CHECKS``) and so are the warnings (``MAX_REPORTED_UNKNOWN``); what is
    left unchecked or unsaid is counted in one more warning."""

    def __init__(self, source: Callable[[str], Source], report: Report) -> None:
        self.source = source
        self.report = report
        self.compared = 0
        self.unchecked = 0
        self.warned = 0
        self.unsaid = 0

    def check(self, variable: str) -> None:
        if variable in _READ_UNPREFIXED or variable in _PREFIXED or variable != variable.upper():
            return
        if variable in _RUNTIME:
            self._warn(
                f"{variable} (from {self.source(variable)}) is not read: runtime settings take "
                f"the prefix {ENV_PREFIX} in the environment ({ENV_PREFIX}{variable}), so that "
                f"a variable set for other containers is not taken for this one's"
            )
            return
        if self.compared >= MAX_NEAR_MISS_CHECKS:
            self.unchecked += 1
            return
        self.compared += 1
        if variable.startswith(ENV_PREFIX):
            close = closest(variable, _PREFIXED)
            hint = f"did you mean {close}?" if close else "see --help for the settings"
            self._warn(
                f"{shortened(variable)} (from {self.source(shortened(variable))}) is no setting; "
                f"{hint} It is ignored."
            )
            return
        close = closest(variable, _READ_UNPREFIXED, cutoff=_NEAR_MISS)
        if close:
            self._warn(
                f"{variable} (from {self.source(variable)}) is not a setting and is ignored; did "
                f"you mean {close}?"
            )

    def _warn(self, warning: str) -> None:
        if self.warned >= MAX_REPORTED_UNKNOWN:
            self.unsaid += 1
            return
        self.warned += 1
        self.report.warnings.append(warning)

    def close(self) -> None:
        if self.unsaid:
            self.report.warnings.append(
                f"{self.unsaid:,} more environment variables look like misspelled settings "
                f"and are ignored"
            )
        if self.unchecked:
            self.report.warnings.append(
                f"{self.unchecked:,} more environment variables were not compared with the "
                f"settings' names (after {MAX_NEAR_MISS_CHECKS:,}): a misspelled one among them "
                f"is ignored without a warning"
            )


def job_entries(text: str, name: str, report: Report) -> list[list[Entry]]:
    """The job config's format is not public: only its Environment and RuleParameters maps
    are read, the rest of its structure is left alone."""
    try:
        document = json.loads(text)
        check_document(document, "the job config")
    except json.JSONDecodeError as exc:
        where = f"{name} line {exc.lineno}, column {exc.colno}"
        report.problems.append(problem("job config", None, where, f"not valid JSON: {exc.msg}"))
        return []
    except TooLarge as exc:
        report.problems.append(problem("job config", None, name, f"refused: {exc.reason}"))
        return []
    except RecursionError:
        report.problems.append(
            problem("job config", None, name, "refused: it is nested too deeply to read")
        )
        return []
    except ValueError as exc:  # a number Python cannot hold, as 10**5000
        report.problems.append(
            problem("job config", None, name, f"not valid: {shortened(str(exc))}")
        )
        return []
    if not isinstance(document, dict):
        report.problems.append(
            problem(
                "job config",
                document,
                name,
                f"expected a JSON object, found a {kind_of(document)}",
            )
        )
        return []
    layers: list[list[Entry]] = []
    for section in ("Environment", "RuleParameters"):
        content = document.get(section)
        if content is None:
            continue
        if not isinstance(content, dict):
            report.problems.append(
                problem(
                    section,
                    content,
                    f"{name} {section}",
                    f"expected a map of names to values, found a {kind_of(content)}",
                )
            )
        elif section == "Environment":
            layers.append(
                environment_entries(
                    content,
                    lambda v: Source("job config", f"{name} Environment.{v}"),
                    report,
                    prefixed=False,
                )
            )
        else:
            layers.append(
                keyed_entries(
                    content, lambda k: Source("job config", f"{name} RuleParameters.{k}"), report
                )
            )
    return layers


def flag_entries(entries: Sequence[Entry]) -> list[Entry]:
    """The last of a repeated flag wins, except a list's item flag (``--mode``): items add up."""
    merged = [entry for entry in entries if DECLARED[entry.name].item_flag is None]
    for name in dict.fromkeys(e.name for e in entries if DECLARED[e.name].item_flag):
        items = [entry for entry in entries if entry.name == name]
        joined = ",".join(str(entry.value) for entry in items)
        merged.append(Entry(name, joined, items[0].source))
    return merged


def kind_of(value: Any) -> str:
    names: dict[type, str] = {dict: "mapping", list: "list", str: "string"}
    return names.get(type(value), type(value).__name__)
