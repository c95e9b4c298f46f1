"""What each action accepts: its required target, its optional fields and their types.

The managed service's built-in actions are ``stoptraining`` (with ``training_job_prefix``),
``email`` and ``sms`` (with ``endpoint``); ``webhook`` and ``stop_file`` are this evaluator's,
for clusters outside AWS and for any training loop. Checked when the settings load, so a typo
in a field is a configuration error that lists what is accepted, not an action that silently
does nothing when the issue is found.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from container.config.limits import MAX_REPORTED_UNKNOWN, closest, quote


@dataclass(frozen=True)
class Field:
    """One field of an action: what it accepts, in words and as a check."""

    accepted: str
    valid: Callable[[Any], bool]


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _url(value: Any) -> bool:
    return _text(value) and value.strip().startswith(("http://", "https://"))


def _seconds(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 < value <= 300
    )


def _retries(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10


def _boolean(value: Any) -> bool:
    return isinstance(value, bool)


TEXT = Field("a non-empty string", _text)
WEBHOOK_FORMATS = ("json", "alertmanager")


@dataclass(frozen=True)
class ActionSpec:
    """An action's target field and its optional fields."""

    target: str
    required: Mapping[str, Field]
    optional: Mapping[str, Field]

    @property
    def fields(self) -> list[str]:
        return ["name", *self.required, *self.optional]


ACTIONS: dict[str, ActionSpec] = {
    "stoptraining": ActionSpec(
        "training_job_prefix",
        {"training_job_prefix": TEXT},
        {"stop_all_matches": Field("true or false (default false)", _boolean)},
    ),
    "email": ActionSpec(
        "endpoint", {"endpoint": TEXT}, {"topic_name": Field("an SNS topic name", _text)}
    ),
    "sms": ActionSpec(
        "endpoint", {"endpoint": TEXT}, {"topic_name": Field("an SNS topic name", _text)}
    ),
    "webhook": ActionSpec(
        "url",
        {"url": Field("an http:// or https:// URL", _url)},
        {
            "timeout": Field("seconds in (0, 300] per attempt (default 5)", _seconds),
            "retries": Field("a whole number in [0, 10] (default 3)", _retries),
            "headers_file": Field("a file of 'Name: value' lines", _text),
            "headers_env": Field("an environment variable of 'Name: value' lines", _text),
            "format": Field(
                f"{' or '.join(WEBHOOK_FORMATS)} (default json)",
                lambda v: isinstance(v, str) and v in WEBHOOK_FORMATS,
            ),
        },
    ),
    "stop_file": ActionSpec("path", {"path": Field("a file path", _text)}, {}),
}
ACTION_NAMES: tuple[str, ...] = tuple(ACTIONS)


def check_action(item: Mapping[str, Any], where: str) -> list[str]:
    """The problems of one action object (empty when it is valid), each saying what is
    accepted."""
    name = str(item["name"])
    spec = ACTIONS[name]
    problems: list[str] = []
    for field, rule in spec.required.items():
        if field not in item:
            problems.append(f"{where} ({name}) needs {field!r}: {rule.accepted}")
        elif not rule.valid(item[field]):
            problems.append(
                f"{where} ({name}): {field} must be {rule.accepted}, not {quote(item[field])}"
            )
    for field, rule in spec.optional.items():
        if field in item and not rule.valid(item[field]):
            problems.append(
                f"{where} ({name}): {field} must be {rule.accepted}, not {quote(item[field])}"
            )
    unknown = [field for field in item if field not in spec.fields]
    for field in unknown[:MAX_REPORTED_UNKNOWN]:  # each suggestion costs time
        close = closest(str(field), spec.fields)
        hint = f"did you mean {close!r}?" if close else f"accepted: {', '.join(spec.fields)}"
        problems.append(f"{where} ({name}) has an unknown field {quote(field)}; {hint}")
    if len(unknown) > MAX_REPORTED_UNKNOWN:
        problems.append(
            f"{where} ({name}) has {len(unknown) - MAX_REPORTED_UNKNOWN:,} more unknown fields"
        )
    return problems
