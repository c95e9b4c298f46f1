"""Settings from every place a rule container is configured, each value with where it came from.

Lowest to highest precedence: the defaults of ``Settings`` and ``RuleParameters``; the managed
service's job config (``/opt/ml/config/processingjobconfig.json``, its ``Environment`` map, then
its ``RuleParameters`` map); a YAML file (``--config FILE`` or ``RULE_CONFIG``); environment
variables; flags. The same names are used everywhere (the seed rule's for rule parameters), so a
setting moves between layers without renaming: ``samples`` in YAML, ``SAMPLES`` or ``samples`` in
the environment, ``--samples`` on the command line.

A managed service sends every value as a string, so every setting accepts its string form. Every
problem of every layer is collected and reported together, each with its source, because a rule
container that fails one value at a time costs one training job per fix.

The only I/O is reading the two files, through ``read_text``, which tests replace; the command
line and the environment are parameters.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import functools
import inspect
import itertools
import json
import re
import textwrap
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NoReturn

import yaml

from container.settings import DEFAULT_STATUS_FILE, MODES, Settings
from evaluator.core import RULE_NAME, RuleParameters, parse_rule_parameters
from evaluator.core.errors import ParameterError, ParameterProblem
from evaluator.core.params import (
    parse_bool,
    parse_finite_float,
    whole_number_within,
)

DEFAULT_JOB_CONFIG = "/opt/ml/config/processingjobconfig.json"
"""Where a SageMaker processing job finds its own configuration; read only when it exists."""
JOB_CONFIG_VARIABLE = "PROCESSING_JOB_CONFIG"
"""Names another job config file; set it empty to ignore the job config."""
CONFIG_VARIABLE = "RULE_CONFIG"
"""Names the YAML file when ``--config`` is not given."""

RULE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RuleParameters))
RUNTIME_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Settings) if f.name != "rule")
SETTING_NAMES: tuple[str, ...] = (
    "base_trial",
    *RULE_FIELDS,
    *(name for name in RUNTIME_FIELDS if name != "base_trial"),
)
"""Every setting's flat name, in the order ``--print-config`` and the example config use."""

ALIASES = {"action_json": "actions"}
"""Other keys of a setting: the managed service sends the actions as ``action_json``."""
_FLAGS = {"base_trial": ("--trial", "--base-trial"), "actions": ("--actions", "--action-json")}
SWITCHES = frozenset(
    {"once", "verify_payload_crc", "stop_on_first_issue", "metrics_enabled", "linger_after_verdict"}
)
"""Flags that work alone (``--once``) and also take a value (``--once false``)."""
ACTION_NAMES = ("stoptraining", "email", "sms")
_ACTION_TARGET = {"stoptraining": "training_job_prefix", "email": "endpoint", "sms": "endpoint"}
_UNUSED_MANAGED_KEY = re.compile(r"(source_s3_uri|rule_name|other_trial_\d+)", re.IGNORECASE)
"""Parameters the managed service may pass that this image has no use for: warned, not errors,
so a job configured for the managed rule runs unchanged."""


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
class ConfigProblem(ParameterProblem):
    """A problem that is not one value against its accepted forms (a file that does not parse,
    an unknown key, two values that disagree): ``detail`` says it whole, source included."""

    detail: str = ""

    def describe(self) -> str:
        return self.detail or super().describe()


def _problem(name: str, value: Any, source: str | None, detail: str) -> ConfigProblem:
    return ConfigProblem(name, value, "", source, f"{source}: {detail}" if source else detail)


@dataclass(frozen=True)
class Fallback:
    """What is still usable of invalid settings, to report the error where it is expected."""

    status_file: str = DEFAULT_STATUS_FILE
    base_trial: str = ""
    reader: str = "native"
    modes: tuple[str, ...] | None = None
    log_level: str = "INFO"
    log_format: str = "text"


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
        if any(isinstance(p, ConfigProblem) or p.name not in RULE_FIELDS for p in problems):
            lines = "\n".join(f"  - {problem.describe()}" for problem in problems)
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


@dataclass(frozen=True)
class _Entry:
    name: str
    value: Any
    source: Source


@dataclass
class _Report:
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
        self.problems.append(_problem(key, value, source, f"unknown setting {key!r}; {hint}"))


# -- value parsers: each accepts the typed value and its string form -------------------------


class _Invalid(ValueError):
    """A rejection that can say more than the accepted forms do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _is_none(value: Any) -> bool:
    return value is None or (
        isinstance(value, str) and value.strip().lower() in {"", "none", "null"}
    )


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if _is_none(value) else parse(value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(value)
    return value.strip()


def _url(value: Any) -> str:
    url = _text(value)
    if not url.startswith(("http://", "https://")):
        raise ValueError(value)
    return url


def _number(low: float, *, above: bool = False) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        number = parse_finite_float(value)
        if number < low or (above and number == low):
            raise ValueError(value)
        return number

    return parse


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(value)
        for choice in choices:
            if value.strip().lower() == choice.lower():
                return choice
        raise ValueError(value)

    return parse


def _idle_timeout(value: Any) -> float | None:
    if _is_none(value) or (isinstance(value, str) and value.strip().lower() in {"never", "inf"}):
        return None
    return _number(0, above=True)(value)


def _modes(value: Any) -> tuple[str, ...] | None:
    if _is_none(value):
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(value)
    modes: list[str] = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        if not isinstance(item, str) or item.strip().upper() not in MODES:
            raise _Invalid(f"{item!r} is not a mode")
        modes.append(item.strip().upper())
    return tuple(dict.fromkeys(modes)) or None


def _rule_to_invoke(value: Any) -> str | None:
    if _is_none(value):
        return None
    if not isinstance(value, str) or re.sub(r"[\s_-]", "", value).lower() != RULE_NAME.lower():
        raise ValueError(value)
    return RULE_NAME


def _actions(value: Any) -> tuple[dict[str, Any], ...]:
    """Actions as data, never as code: the managed container is known to paste them into
    Python source, which runs whatever the string holds."""
    if _is_none(value):
        return ()
    decoded = _decode_action_json(value) if isinstance(value, str) else value
    items = [decoded] if isinstance(decoded, dict) else decoded
    if not isinstance(items, list | tuple):
        raise _Invalid(f"found a JSON {type(decoded).__name__}, not an object or a list")
    actions: list[dict[str, Any]] = []
    for number, item in enumerate(items, start=1):
        where = f"action {number}" if len(items) > 1 else "the action"
        if not isinstance(item, dict):
            raise _Invalid(f"{where} is not an object")
        name = item.get("name")
        if not isinstance(name, str) or name.strip().lower() not in ACTION_NAMES:
            raise _Invalid(f"{where} has name {name!r}")
        name = name.strip().lower()
        target = _ACTION_TARGET[name]
        if not isinstance(item.get(target), str) or not item[target].strip():
            raise _Invalid(f"{where} ({name}) needs a {target!r}")
        actions.append({**item, "name": name})
    return tuple(actions)


def _decode_action_json(text: str) -> Any:
    text = text.strip()
    if _is_none(text):
        return []
    try:
        decoded = json.loads(text)
    except json.JSONDecodeError:
        try:  # the managed service's form: quotes escaped as \"
            decoded = json.loads(text.replace('\\"', '"'))
        except json.JSONDecodeError as exc:
            raise _Invalid(f"not JSON: {exc.msg} at column {exc.colno}") from exc
    if isinstance(decoded, str):  # JSON of JSON, as a string parameter is sometimes quoted
        try:
            decoded = json.loads(decoded)
        except json.JSONDecodeError as exc:
            raise _Invalid(f"a JSON string that is not JSON: {exc.msg}") from exc
    return decoded


_SECONDS = "a number of seconds > 0, such as 1 or 0.5"
_BOOLEAN = 'a boolean: true/false, "True"/"False", 1/0, yes/no'
_RUNTIME: dict[str, tuple[Callable[[Any], Any], str]] = {
    "base_trial": (_text, "a trial: a folder path, or s3://bucket/prefix"),
    "reader": (_choice("native", "smdebug"), "native or smdebug"),
    "verify_payload_crc": (parse_bool, _BOOLEAN),
    "s3_endpoint_url": (_optional(_url), "an http:// or https:// URL, or none"),
    "modes": (
        _modes,
        f"modes among {', '.join(MODES)} (a list in YAML, comma-separated in the environment, "
        f"--mode repeated on the command line), or none for all",
    ),
    "start_step": (_optional(whole_number_within(0)), "a whole number >= 0, or none"),
    "end_step": (_optional(whole_number_within(0)), "a whole number >= 0, or none"),
    "once": (parse_bool, _BOOLEAN),
    "stop_on_first_issue": (parse_bool, _BOOLEAN),
    "linger_after_verdict": (parse_bool, _BOOLEAN),
    "poll_interval": (_number(0, above=True), _SECONDS),
    "max_poll_interval": (_number(0, above=True), _SECONDS),
    "idle_timeout": (_idle_timeout, f"{_SECONDS}, or none to wait forever"),
    "read_retries": (whole_number_within(0), "a whole number >= 0, such as 5"),
    "read_retry_delay": (_number(0), "a number of seconds >= 0, such as 0.5"),
    "status_file": (_text, "a file path"),
    "status_interval": (_number(0), "a number of seconds >= 0, such as 1"),
    "metrics_enabled": (parse_bool, _BOOLEAN),
    "metrics_address": (_text, "an address to bind, such as 0.0.0.0 or 127.0.0.1"),
    "metrics_port": (whole_number_within(0, 65535), "a port within [0, 65535]; 0 picks a free one"),
    "max_class_series": (whole_number_within(1), "a whole number >= 1, such as 20"),
    "message_file": (_optional(_text), "a file path, or none"),
    "report_dir": (_optional(_text), "a folder path, or none"),
    "checkpoint_file": (_optional(_text), "a file path, or none for no checkpoints"),
    "checkpoint_every_steps": (whole_number_within(1), "a whole number >= 1, such as 100"),
    "checkpoint_every_seconds": (_number(0, above=True), _SECONDS),
    "log_format": (_choice("text", "json"), "text or json"),
    "log_level": (_choice("DEBUG", "INFO", "WARNING", "ERROR"), "DEBUG, INFO, WARNING or ERROR"),
    "rule_to_invoke": (
        _rule_to_invoke,
        f"{RULE_NAME}, or none: this image evaluates only the {RULE_NAME} rule; run the image "
        f"of the rule you named instead",
    ),
    "actions": (
        _actions,
        'JSON of an action object or a list of them (quotes may be escaped as \\"), each with a '
        '"name": stoptraining (with "training_job_prefix"), email or sms (with "endpoint"), '
        'such as {"name": "stoptraining", "training_job_prefix": "job"}; or none',
    ),
}


# -- the command line ---------------------------------------------------------------------


class _FlagError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse exits on the first bad flag; here a bad flag is one more problem to report."""

    def error(self, message: str) -> NoReturn:
        raise _FlagError(message)


class _Collect(argparse.Action):
    """Records each flag as typed (``--trial`` or ``--base-trial``) so messages name it."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        namespace.entries.append(_Entry(self.dest, values, Source("flag", f"flag {option_string}")))


@dataclass(frozen=True)
class Flags:
    """The command line, split but not yet validated."""

    entries: tuple[_Entry, ...] = ()
    config: str | None = None
    print_config: bool = False
    help: bool = False
    problems: tuple[ParameterProblem, ...] = ()


_SECONDS_FIELDS = (
    "poll_interval",
    "max_poll_interval",
    "idle_timeout",
    "read_retry_delay",
    "status_interval",
    "checkpoint_every_seconds",
)
_METAVARS = {
    "base_trial": "PATH",
    "reader": "native|smdebug",
    "s3_endpoint_url": "URL",
    "modes": "MODE,...",
    "start_step": "STEP",
    "end_step": "STEP",
    "read_retries": "N",
    "status_file": "PATH",
    "metrics_address": "ADDRESS",
    "metrics_port": "PORT",
    "max_class_series": "N",
    "message_file": "PATH",
    "report_dir": "DIR",
    "checkpoint_file": "PATH",
    "checkpoint_every_steps": "N",
    "log_format": "text|json",
    "log_level": "LEVEL",
    "rule_to_invoke": "NAME",
    "actions": "JSON",
    **dict.fromkeys(_SECONDS_FIELDS, "SECONDS"),
}


def flag_of(name: str) -> str:
    """A setting's flag: ``threshold_imbalance`` -> ``--threshold-imbalance``."""
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """The flags, their help taken from the settings' docstrings (the contract)."""
    parser = _Parser(
        prog="classimbalance-rule",
        description="Evaluate SageMaker Debugger's ClassImbalance rule on an smdebug trial: "
        "per-class sample counts (largest/smallest above threshold_imbalance) and per-class "
        "misprediction (fraction above threshold_misprediction). Every setting can also be "
        "given in a YAML file (--config or RULE_CONFIG; see config/classimbalance.yaml), as an "
        "environment variable (SAMPLES or samples) or in the managed service's job config; "
        "flags win over the environment, which wins over the file.",
        epilog="Exit codes: 0 NoIssuesFound, 1 IssuesFound, 2 Error.",
        add_help=False,
        allow_abbrev=False,
    )
    parser.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    parser.add_argument(
        "--config", metavar="FILE", help="a YAML file of settings (flat keys, as in --print-config)"
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective settings and where each came from (as YAML), then exit",
    )
    docs = {**field_docs(RuleParameters), **field_docs(Settings)}
    rule = parser.add_argument_group(
        'rule parameters (the seed\'s names; string forms such as "10" or "False" accepted)'
    )
    runtime = parser.add_argument_group("runtime settings")
    for name in SETTING_NAMES:
        group = rule if name in RULE_FIELDS or name == "base_trial" else runtime
        help_text = f"{docs.get(name, '')} Default: {_default_text(name)}.".strip()
        options: dict[str, Any] = {
            "action": _Collect,
            "dest": name,
            "default": argparse.SUPPRESS,
            "help": help_text.replace("%", "%%"),
        }
        if name in SWITCHES:
            options.update(nargs="?", const="true", metavar="BOOL")
        else:
            options["metavar"] = _METAVARS.get(name, "VALUE")
        group.add_argument(*_FLAGS.get(name, (flag_of(name),)), **options)
        if name == "modes":
            group.add_argument(
                "--mode",
                action=_Collect,
                dest="modes",
                default=argparse.SUPPRESS,
                metavar="MODE",
                help="one mode (TRAIN, EVAL, PREDICT, GLOBAL); repeatable",
            )
    return parser


def parse_flags(argv: Sequence[str]) -> Flags:
    """Split the command line; an unknown or malformed flag is a problem, not an exit."""
    parser = build_parser()
    try:
        namespace, extras = parser.parse_known_args(list(argv), argparse.Namespace(entries=[]))
    except _FlagError as exc:
        problem = _problem("flags", list(argv), "command line", f"{exc}; see --help")
        return Flags(help="-h" in argv or "--help" in argv, problems=(problem,))
    problems: list[ParameterProblem] = []
    known = [o for action in parser._actions for o in action.option_strings]
    after_unknown = False
    for extra in extras:
        if extra.startswith("-"):
            flag = extra.split("=", 1)[0]
            close = difflib.get_close_matches(flag, known, n=1)
            hint = f"did you mean {close[0]}?" if close else "see --help"
            problems.append(_problem(flag, extra, "command line", f"unknown flag {flag}; {hint}"))
            after_unknown = "=" not in extra
        elif not after_unknown:
            problems.append(
                _problem("flags", extra, "command line", f"unexpected argument {extra!r}")
            )
    return Flags(
        entries=tuple(namespace.entries),
        config=namespace.config,
        print_config=namespace.print_config,
        help=namespace.help,
        problems=tuple(problems),
    )


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring, read from the class source, so --help repeats the contract
    instead of a second copy that drifts. Empty when the source is not installed."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.replace("``", "").split())
    return docs


def default_value(name: str) -> Any:
    """A setting's default; ``base_trial`` has none (it is required) and gives None."""
    cls: type = RuleParameters if name in RULE_FIELDS else Settings
    spec = {f.name: f for f in fields(cls)}[name]
    return None if spec.default is MISSING else spec.default


def _default_text(name: str) -> str:
    if name == "base_trial":
        return "required"
    value = default_value(name)
    return "none" if value is None else yaml_inline(value)


# -- the layers ---------------------------------------------------------------------------


def _single_values(entries: list[_Entry], report: _Report) -> list[_Entry]:
    """One value per setting within a layer: two spellings that disagree are an error, since
    either choice would silently ignore something the user set."""
    chosen: dict[str, _Entry] = {}
    for entry in entries:
        prior = chosen.setdefault(entry.name, entry)
        if prior is not entry and prior.value != entry.value:
            report.problems.append(
                _problem(
                    entry.name,
                    entry.value,
                    f"{prior.source} and {entry.source}",
                    f"disagree ({prior.value!r} and {entry.value!r}); set only one",
                )
            )
    return list(chosen.values())


def _keyed_entries(
    mapping: Mapping[Any, Any], source: Callable[[str], Source], report: _Report
) -> list[_Entry]:
    """Exact keys (YAML, the job config's RuleParameters): unknown ones are errors."""
    entries: list[_Entry] = []
    for raw_key, value in mapping.items():
        key = str(raw_key)
        name = ALIASES.get(key, key)
        if name in SETTING_NAMES:
            entries.append(_Entry(name, value, source(key)))
        elif _UNUSED_MANAGED_KEY.fullmatch(key):
            report.unused(key, str(source(key)))
        else:
            report.unknown(key, value, str(source(key)))
    return _single_values(entries, report)


def _environment_entries(
    environ: Mapping[str, Any], source: Callable[[str], Source], report: _Report
) -> list[_Entry]:
    """Upper-case or exact names; other variables belong to someone else and are ignored."""
    entries: list[_Entry] = []
    for key in (*SETTING_NAMES, *ALIASES):
        for variable in dict.fromkeys((key.upper(), key)):
            if variable in environ:
                entries.append(_Entry(ALIASES.get(key, key), environ[variable], source(variable)))
    for variable in environ:
        if variable in (variable.upper(), variable.lower()) and _UNUSED_MANAGED_KEY.fullmatch(
            variable
        ):
            report.unused(variable, str(source(variable)))
    return _single_values(entries, report)


class _YamlLoader(yaml.SafeLoader):
    """PyYAML keeps the last of duplicate keys silently; here they are errors, since a setting
    written twice would be half-ignored."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: PyYAML reports it itself
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep)


def _yaml_entries(text: str, name: str, report: _Report) -> list[_Entry]:
    loader = _YamlLoader(text)
    try:
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name} line {mark.line + 1}, column {mark.column + 1}" if mark else name
        reason = getattr(exc, "problem", None) or str(exc)
        report.problems.append(_problem("config", None, where, f"not valid YAML: {reason}"))
        return []
    finally:
        loader.dispose()
    if node is None or document is None:
        return []
    if not isinstance(document, dict):
        report.problems.append(
            _problem(
                "config",
                document,
                f"{name} line {node.start_mark.line + 1}",
                f"expected a mapping of setting names to values (such as `samples: 500`), but "
                f"the document is a {_kind(document)}",
            )
        )
        return []
    return _keyed_entries(document, lambda key: Source("file", f"{name} key {key}"), report)


def _job_entries(text: str, name: str, report: _Report) -> list[list[_Entry]]:
    """The job config's format is not public: only its Environment and RuleParameters maps
    are read, the rest of its structure is left alone."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"{name} line {exc.lineno}, column {exc.colno}"
        report.problems.append(_problem("job config", None, where, f"not valid JSON: {exc.msg}"))
        return []
    if not isinstance(document, dict):
        report.problems.append(
            _problem(
                "job config",
                document,
                name,
                f"expected a JSON object, found a {_kind(document)}",
            )
        )
        return []
    layers: list[list[_Entry]] = []
    for section in ("Environment", "RuleParameters"):
        content = document.get(section)
        if content is None:
            continue
        if not isinstance(content, dict):
            report.problems.append(
                _problem(
                    section,
                    content,
                    f"{name} {section}",
                    f"expected a map of names to values, found a {_kind(content)}",
                )
            )
        elif section == "Environment":
            layers.append(
                _environment_entries(
                    content, lambda v: Source("job config", f"{name} Environment.{v}"), report
                )
            )
        else:
            layers.append(
                _keyed_entries(
                    content, lambda k: Source("job config", f"{name} RuleParameters.{k}"), report
                )
            )
    return layers


def _flag_entries(entries: Sequence[_Entry]) -> list[_Entry]:
    """The last of a repeated flag wins, except ``--mode``, which adds up."""
    modes = [entry for entry in entries if entry.name == "modes"]
    merged = [entry for entry in entries if entry.name != "modes"]
    if modes:
        joined = ",".join(str(entry.value) for entry in modes)
        merged.append(_Entry("modes", joined, modes[0].source))
    return merged


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "mapping", list: "list", str: "string"}
    return names.get(type(value), type(value).__name__)


# -- loading ------------------------------------------------------------------------------


def read_text_if_exists(path: str) -> str | None:
    """The file's text, or None when it does not exist (other failures raise OSError)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def load_settings(
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    job_config_path: str | None = DEFAULT_JOB_CONFIG,
    read_text: Callable[[str], str | None] = read_text_if_exists,
) -> LoadedSettings:
    """The effective settings from every layer, or a ConfigError listing every problem.

    ``job_config_path`` is read when it exists (None: never); ``PROCESSING_JOB_CONFIG`` in
    ``environ`` overrides it, and the file it names must exist. The YAML file is the one
    ``--config`` or ``RULE_CONFIG`` names. ``read_text`` returns None for a missing file.
    """
    flags = parse_flags(argv)
    report = _Report(problems=list(flags.problems))
    layers: list[list[_Entry]] = []

    job_source: str | None = None
    if JOB_CONFIG_VARIABLE in environ:
        job_config_path = environ[JOB_CONFIG_VARIABLE] or None
        job_source = f"environment variable {JOB_CONFIG_VARIABLE}"
    if job_config_path:
        text = _read(job_config_path, job_source, read_text, report)
        if text is not None:
            layers.extend(_job_entries(text, job_config_path, report))

    config_path, config_source = flags.config, "flag --config"
    if not config_path:
        config_path, config_source = (
            environ.get(CONFIG_VARIABLE),
            f"environment variable {CONFIG_VARIABLE}",
        )
    if config_path:
        text = _read(config_path, config_source, read_text, report)
        if text is not None:
            layers.append(_yaml_entries(text, config_path, report))

    layers.append(
        _environment_entries(
            environ, lambda v: Source("environment", f"environment variable {v}"), report
        )
    )
    layers.append(_flag_entries(flags.entries))
    return _resolve(layers, report, print_config=flags.print_config)


def _read(
    path: str,
    required_by: str | None,
    read_text: Callable[[str], str | None],
    report: _Report,
) -> str | None:
    """A missing file is an error only when someone named it."""
    try:
        text = read_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        report.problems.append(
            _problem("file", path, required_by or path, f"cannot read {path}: {reason}")
        )
        return None
    if text is None and required_by is not None:
        report.problems.append(
            _problem("file", path, required_by, f"the file {path} does not exist")
        )
    return text


def _resolve(layers: list[list[_Entry]], report: _Report, *, print_config: bool) -> LoadedSettings:
    winners: dict[str, _Entry] = {}
    for layer in layers:
        for entry in layer:
            winners[entry.name] = entry
    problems: list[ParameterProblem] = []

    rule_values = {name: winners[name].value for name in RULE_FIELDS if name in winners}
    rule: RuleParameters | None = None
    try:
        rule = parse_rule_parameters(rule_values)
    except ParameterError as exc:
        problems.extend(replace(p, source=str(winners[p.name].source)) for p in exc.problems)

    values: dict[str, Any] = {}
    for name in RUNTIME_FIELDS:
        if name not in winners:
            continue
        entry = winners[name]
        parse, expected = _RUNTIME[name]
        try:
            values[name] = parse(entry.value)
        except _Invalid as exc:
            problems.append(
                ConfigProblem(
                    name,
                    entry.value,
                    expected,
                    str(entry.source),
                    f"{name} (from {entry.source}): {exc.reason}; expected {expected}, but got "
                    f"{entry.value!r}",
                )
            )
        except (ValueError, TypeError, OverflowError):
            problems.append(ParameterProblem(name, entry.value, expected, str(entry.source)))

    if "base_trial" not in winners:
        problems.append(
            ConfigProblem(
                "base_trial",
                None,
                "a trial",
                None,
                "base_trial is required: the trial to evaluate (a folder, or s3://bucket/prefix); "
                "set --trial PATH, the environment variable BASE_TRIAL, or base_trial in the "
                "config file",
            )
        )
    start, end = values.get("start_step"), values.get("end_step")
    if start is not None and end is not None and end <= start:
        problems.append(
            ParameterProblem(
                "end_step",
                winners["end_step"].value,
                f"a whole number greater than start_step ({start}, from "
                f"{winners['start_step'].source}): end_step is exclusive",
                str(winners["end_step"].source),
            )
        )

    order = {name: index for index, name in enumerate(SETTING_NAMES)}
    problems.sort(key=lambda p: order.get(p.name, len(order)))
    problems = report.problems + problems
    if problems or rule is None:
        raise ConfigError(
            problems,
            fallback=Fallback(
                status_file=values.get("status_file", DEFAULT_STATUS_FILE),
                base_trial=values.get("base_trial", ""),
                reader=values.get("reader", "native"),
                modes=values.get("modes"),
                log_level=values.get("log_level", "INFO"),
                log_format=values.get("log_format", "text"),
            ),
            warnings=report.warnings,
            print_config=print_config,
        )
    base_trial = values.pop("base_trial")
    return LoadedSettings(
        settings=Settings(base_trial=base_trial, rule=rule, **values),
        sources={
            name: winners[name].source if name in winners else DEFAULT_SOURCE
            for name in SETTING_NAMES
        },
        warnings=tuple(report.warnings),
        print_config=print_config,
    )


# -- --print-config -----------------------------------------------------------------------


def setting_value(settings: Settings, name: str) -> Any:
    """A setting by its flat name (rule parameters live in ``settings.rule``)."""
    return getattr(settings.rule if name in RULE_FIELDS else settings, name)


def yaml_inline(value: Any) -> str:
    """One-line YAML for a value, so the printed settings load back as a config file."""
    plain = list(value) if isinstance(value, tuple) else value
    text = yaml.safe_dump(
        plain, default_flow_style=True, width=1 << 30, allow_unicode=True, sort_keys=False
    )
    text = text.removesuffix("\n...\n").rstrip("\n")
    return json.dumps(plain) if "\n" in text else text


def format_settings(loaded: LoadedSettings) -> str:
    """The effective settings as aligned, commented YAML: ``key: value  # from source``."""
    rows = []
    for name in SETTING_NAMES:
        source = loaded.sources[name]
        origin = "default" if source.kind == "default" else f"from {source}"
        rows.append((f"{name}:", yaml_inline(setting_value(loaded.settings, name)), origin))
    key_width = max(len(key) for key, _, _ in rows)
    value_width = min(max(len(value) for _, value, _ in rows), 32)
    lines = ["# classimbalance-rule: effective settings; valid YAML for --config"]
    lines += [
        f"{key:<{key_width}} {value:<{value_width}}  # {origin}" for key, value, origin in rows
    ]
    lines += [f"# warning: {warning}" for warning in loaded.warnings]
    return "\n".join(lines) + "\n"
