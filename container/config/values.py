"""Value parsers: each accepts a setting's typed value and its string form, and checks it.

A managed service sends every value as a string ("10", "0.7", "False"), environment variables
are strings, and YAML gives typed values: every parser here takes any of them. A parser raises
``ValueError`` (or ``TypeError``) when the value is not accepted, and ``Invalid`` when it can
say more than the accepted forms do; the caller reports either with the setting's ``accepted``
words and the value's source. Rule parameters are coerced by their declared type
(``coerce_rule_value``) and then checked by the core's own typed validation.
"""

from __future__ import annotations

import json
import math
import re
import threading
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal

from container.config.limits import TooLarge, check_document, quote
from evaluator.core import RULE_NAME, RuleParameters

MAX_SECONDS = min(1e9, threading.TIMEOUT_MAX)
"""Longest duration a setting takes (1e9 s, about 31 years; less where the platform's waits
cannot take that): a wait, a select() and the clock arithmetic on it all hold it, where 1e300
ended a run in ``OverflowError: timestamp out of range``. ``idle_timeout: none`` waits
forever."""
MAX_WHOLE_NUMBER = 2**63 - 1
"""Largest whole number a setting takes: what a step number, a count or a NumPy index holds
(int64); Python's own integers would take more, and crash whatever they feed."""
_INTEGER = re.compile(r"[+-]?[0-9][0-9_]*")

_TRUE_WORDS = frozenset({"true", "1", "yes", "y", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "n", "off"})
_NONE_WORDS = frozenset({"", "none", "null"})

Mode = Literal["TRAIN", "EVAL", "PREDICT", "GLOBAL"]
MODES: tuple[str, ...] = typing.get_args(Mode)


class Invalid(ValueError):
    """A rejection that can say more than the accepted forms do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)


# -- scalars ------------------------------------------------------------------------------------


def parse_bool(value: Any) -> bool:
    """Accept booleans and the usual words; Python's ``bool("False")`` is True, which is why."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
        return value.strip().lower() in _TRUE_WORDS
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(value)


def bool_or_auto(value: Any) -> bool | None:
    """A boolean, or ``auto`` (None; ``none`` too, as every optional value takes): decided
    by the run (``metrics_enabled``)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("auto", "none")):
        return None
    return parse_bool(value)


def parse_finite_float(value: Any) -> float:
    """Accept numbers and numeric strings, but never NaN or infinity (they disable a check)."""
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(value.strip() if isinstance(value, str) else value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def parse_whole_number(value: Any) -> int:
    """Accept integers and integral forms such as "500" or "500.0"; reject 500.5."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        whole = int(value.strip())  # exactly: a float holds 53 bits (ValueError past 4300 digits)
    elif isinstance(value, int):
        whole = value
    else:
        number = parse_finite_float(value)
        if not number.is_integer():
            raise ValueError(value)
        whole = int(number)
    if abs(whole) > MAX_WHOLE_NUMBER:
        raise Invalid(
            f"{quote(whole)} is beyond {MAX_WHOLE_NUMBER:,} (2**63 - 1), the largest whole "
            f"number a step or a count holds"
        )
    return whole


def whole_number_within(low: int, high: int | None = None) -> Callable[[Any], int]:
    """A parser of whole numbers in [low, high] (high None: no upper bound)."""

    def parse_bounded(value: Any) -> int:
        number = parse_whole_number(value)
        if number < low or (high is not None and number > high):
            raise ValueError(value)
        return number

    return parse_bounded


def number(low: float, *, above: bool = False, high: float = math.inf) -> Callable[[Any], float]:
    """A parser of finite numbers >= low (> low with ``above``) and <= ``high``."""

    def parse(value: Any) -> float:
        parsed = parse_finite_float(value)
        if parsed < low or (above and parsed == low) or parsed > high:
            raise ValueError(value)
        return parsed

    return parse


def seconds(
    low: float = 0, *, above: bool = True, high: float = MAX_SECONDS
) -> Callable[[Any], float]:
    """A parser of durations: finite numbers of seconds >= low (> low with ``above``), and no
    longer than ``high`` (at most MAX_SECONDS, what the platform's waits hold)."""
    within = number(low, above=above)
    high = min(high, MAX_SECONDS)

    def parse(value: Any) -> float:
        parsed = within(value)
        if parsed > high:
            raise Invalid(
                f"{parsed:g} s is longer than {high:g} s, the longest duration a setting takes "
                f"(a wait cannot hold more)"
            )
        return parsed

    return parse


def text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(value)
    return value.strip()


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
RESERVED_LABELS = frozenset({"trial", "training_job", "job", "instance"})
"""Labels of ``classimbalance_evaluation_info`` that are ours or Prometheus's target labels."""


def metric_labels(value: Any) -> tuple[tuple[str, str], ...]:
    """Extra labels: a YAML map, ``[[name, value], ...]`` (as ``--print-config`` writes them) or
    ``name=value,name=value``; Prometheus label names, none of them reserved
    (``RESERVED_LABELS``) or starting with ``__``."""
    mapping = _label_mapping(value)
    for name in mapping:
        if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise Invalid(f"{quote(name)} is not a Prometheus label name")
        if name in RESERVED_LABELS:
            raise Invalid(f"{quote(name)} is set by the evaluator or by Prometheus itself")
    return tuple(sorted(mapping.items()))


def _label_mapping(value: Any) -> dict[str, str]:
    """name -> value of every form ``metric_labels`` takes."""
    if is_none(value) or (isinstance(value, str) and value.strip() in ("[]", "{}")):
        return {}
    if isinstance(value, dict):
        return {str(name): str(label) for name, label in value.items()}
    if isinstance(value, list | tuple) and all(
        isinstance(pair, list | tuple) and len(pair) == 2 for pair in value
    ):
        return {str(name): str(label) for name, label in value}
    if not isinstance(value, str):
        raise ValueError(value)
    pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise Invalid("expected name=value pairs separated by commas")
    return {name.strip(): label.strip() for name, label in pairs}


def url(value: Any) -> str:
    parsed = text(value)
    if not parsed.startswith(("http://", "https://")):
        raise ValueError(value)
    return parsed


def optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``parse``, or None for none, null or an empty string."""
    return lambda value: None if is_none(value) else parse(value)


def choice(*choices: str) -> Callable[[Any], str]:
    """One of ``choices``, whatever its case, returned as declared."""

    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(value)
        for option in choices:
            if value.strip().lower() == option.lower():
                return option
        raise ValueError(value)

    return parse


def idle_timeout(value: Any) -> float | None:
    if is_none(value) or (isinstance(value, str) and value.strip().lower() in {"never", "inf"}):
        return None
    return seconds(0, above=True)(value)


# -- structured values -----------------------------------------------------------------------


def modes(value: Any) -> tuple[str, ...] | None:
    if is_none(value):
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(value)
    found: list[str] = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        if not isinstance(item, str) or item.strip().upper() not in MODES:
            raise Invalid(f"{quote(item)} is not a mode")
        found.append(item.strip().upper())
    return tuple(dict.fromkeys(found)) or None


MAX_NAME_LENGTH = 200
"""Longest class name: a name becomes a Prometheus label value and a status key's value."""


def class_names(value: Any) -> tuple[str, ...] | None:
    """A name per class index: a list (YAML), or comma-separated names (environment, flag)."""
    if is_none(value):
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(value)
    return _names(items, "item")


def class_names_from_lines(content: str) -> tuple[str, ...]:
    """The names of a class names file: one per line, line 1 for class 0; a final newline and
    surrounding spaces do not count. Raises Invalid naming the first bad line."""
    lines = content.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return _names(lines, "line")


def _names(items: Sequence[Any], unit: str) -> tuple[str, ...]:
    names: list[str] = []
    for position, item in enumerate(items, start=1):
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise Invalid(f"{unit} {position} ({quote(item)}) is not a name")
        name = str(item).strip()
        if not name:
            raise Invalid(f"{unit} {position} is empty (class {position - 1} needs a name)")
        if len(name) > MAX_NAME_LENGTH:
            raise Invalid(f"{unit} {position} is longer than {MAX_NAME_LENGTH} characters")
        names.append(name)
    if not names:
        raise Invalid("no name given")
    return tuple(names)


def rule_to_invoke(value: Any) -> str | None:
    if is_none(value):
        return None
    if not isinstance(value, str) or re.sub(r"[\s_-]", "", value).lower() != RULE_NAME.lower():
        raise ValueError(value)
    return RULE_NAME


def actions(value: Any) -> tuple[dict[str, Any], ...]:
    """Actions as data, never as code: the managed container is known to paste them into
    Python source, which runs whatever the string holds."""
    if is_none(value):
        return ()
    # Lazy: the actions' field table (two dataclasses, sixteen specs) costs ~2 ms of start-up,
    # and most runs are given no action.
    from container.config.action_specs import ACTION_NAMES, check_action  # noqa: PLC0415

    decoded = _decode_action_json(value) if isinstance(value, str) else value
    items = [decoded] if isinstance(decoded, dict) else decoded
    if not isinstance(items, list | tuple):
        raise Invalid(f"found a JSON {type(decoded).__name__}, not an object or a list")
    parsed: list[dict[str, Any]] = []
    for position, item in enumerate(items, start=1):
        where = f"action {position}" if len(items) > 1 else "the action"
        if not isinstance(item, dict):
            raise Invalid(f"{where} is not an object")
        name = item.get("name")
        if not isinstance(name, str) or name.strip().lower() not in ACTION_NAMES:
            raise Invalid(f"{where} has name {quote(name)}; accepted: {', '.join(ACTION_NAMES)}")
        normal = {**item, "name": name.strip().lower()}
        problems = check_action(normal, where)
        if problems:
            raise Invalid("; ".join(problems))
        parsed.append(normal)
    return tuple(parsed)


def _decode_action_json(raw: str) -> Any:
    raw = raw.strip()
    if is_none(raw):
        return []
    try:
        decoded = _bounded_json(raw)
    except json.JSONDecodeError:
        try:  # the managed service's form: quotes escaped as \"
            decoded = _bounded_json(raw.replace('\\"', '"'))
        except json.JSONDecodeError as exc:
            raise Invalid(f"not JSON: {exc.msg} at column {exc.colno}") from exc
    if isinstance(decoded, str):  # JSON of JSON, as a string parameter is sometimes quoted
        try:
            decoded = _bounded_json(decoded)
        except json.JSONDecodeError as exc:
            raise Invalid(f"a JSON string that is not JSON: {exc.msg}") from exc
    return decoded


def _bounded_json(text: str) -> Any:
    """``json.loads``, its document within the bounds of every configuration (``limits``):
    Invalid for a document nested too deeply (json's RecursionError), a number Python does not
    hold, or one beyond the bounds."""
    try:
        decoded = json.loads(text)
        check_document(decoded, "the JSON")
    except json.JSONDecodeError:
        raise
    except TooLarge as exc:
        raise Invalid(exc.reason) from None
    except RecursionError:
        raise Invalid("the JSON is nested too deeply to read") from None
    except ValueError as exc:  # a number of more than 4,300 digits
        raise Invalid(f"the JSON holds a value Python cannot read: {exc}") from None
    return decoded


# -- rule parameters: coerced by their declared type, validated by the core -----------------


def _optional_whole(value: Any) -> int | None:
    return None if is_none(value) else parse_whole_number(value)


def _optional_float(value: Any) -> float | None:
    return None if is_none(value) else parse_finite_float(value)


def _regex_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(value)
    return value


_COERCERS: dict[Any, Callable[[Any], Any]] = {
    float: parse_finite_float,
    int: parse_whole_number,
    bool: parse_bool,
    str: _regex_text,
    int | None: _optional_whole,
    float | None: _optional_float,
}


def _coercer(hint: Any) -> Callable[[Any], Any]:
    """The coercion of a rule parameter's declared type: a Literal is a choice of its values."""
    if typing.get_origin(hint) is Literal:
        return choice(*typing.get_args(hint))
    return _COERCERS[hint]


RULE_COERCERS: dict[str, Callable[[Any], Any]] = {
    name: _coercer(hint) for name, hint in typing.get_type_hints(RuleParameters).items()
}
"""Rule parameter -> the coercion of its string and typed forms, from its declared type."""


def coerce_rule_value(name: str, value: Any) -> Any:
    """A rule parameter's typed value from any accepted form; ValueError/TypeError if none."""
    return RULE_COERCERS[name](value)
