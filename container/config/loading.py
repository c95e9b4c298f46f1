"""Settings from every place a rule container is configured, each value with where it came from.

Lowest to highest precedence: the declared defaults; the managed service's job config
(``/opt/ml/config/processingjobconfig.json``); a YAML file (``--config FILE`` or ``RULE_CONFIG``);
environment variables; flags (see ``sources``). Every value is parsed once, by its setting's
declared parser, and every problem of every layer is collected and reported together, each with
its source. The only I/O is reading the two files, through ``read_text``, which tests replace;
the command line and the environment are parameters.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from container.config.entries import (
    DEFAULT_SOURCE,
    ConfigError,
    ConfigProblem,
    Entry,
    Fallback,
    LoadedSettings,
    Report,
    Source,
    bounded,
    problem,
)
from container.config.flags import parse_flags
from container.config.limits import (
    MAX_FILE_BYTES,
    MAX_REPORTED_UNKNOWN,
    TooLarge,
    check_document,
    quote,
)
from container.config.settings import (
    DECLARED,
    DEFAULT_STATUS_FILE,
    GROUPS,
    SETTING_NAMES,
    OutputSettings,
    Settings,
)
from container.config.sources import environment_entries, flag_entries, job_entries
from container.config.values import Invalid, coerce_rule_value
from evaluator.core import (
    PARAMETER_NAMES,
    ParameterError,
    ParameterProblem,
    RuleParameters,
    accepted,
    shortened,
)

DEFAULT_JOB_CONFIG = "/opt/ml/config/processingjobconfig.json"
"""Where a SageMaker processing job finds its own configuration; read only when it exists."""
JOB_CONFIG_VARIABLE = "PROCESSING_JOB_CONFIG"
"""Names another job config file; set it empty to ignore the job config."""
CONFIG_VARIABLE = "RULE_CONFIG"
"""Names the YAML file when ``--config`` is not given."""


class FileTooLarge(OSError):
    """A configuration file beyond ``MAX_FILE_BYTES``: read no further than the bound."""


def read_text_if_exists(path: str) -> str | None:
    """The file's text, or None when it does not exist (other failures raise OSError, and
    FileTooLarge past MAX_FILE_BYTES: no more than that is ever read)."""
    try:
        with Path(path).open("rb") as file:
            content = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    if len(content) > MAX_FILE_BYTES:
        raise FileTooLarge(errno.EFBIG, _too_large())
    return content.decode("utf-8")


def _too_large() -> str:
    return (
        f"it is larger than {MAX_FILE_BYTES:,} bytes, the most a configuration file may hold; "
        f"give long class name lists in class_names_file"
    )


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
    report = Report(problems=list(flags.problems))
    layers: list[list[Entry]] = []

    job_source: str | None = None
    if JOB_CONFIG_VARIABLE in environ:
        job_config_path = environ[JOB_CONFIG_VARIABLE] or None
        job_source = f"environment variable {JOB_CONFIG_VARIABLE}"
    if job_config_path:
        text = _read(job_config_path, job_source, read_text, report)
        if text is not None:
            layers.extend(job_entries(text, job_config_path, report))

    config_path, config_source = flags.config, "flag --config"
    if not config_path:
        config_path, config_source = (
            environ.get(CONFIG_VARIABLE),
            f"environment variable {CONFIG_VARIABLE}",
        )
    if config_path:
        text = _read(config_path, config_source, read_text, report)
        if text is not None:
            # Only here: PyYAML costs 30 ms to import, and most runs name no YAML file.
            from container.config.yaml_source import yaml_entries  # noqa: PLC0415

            layers.append(yaml_entries(text, config_path, report))

    layers.append(
        environment_entries(
            environ, lambda v: Source("environment", f"environment variable {v}"), report
        )
    )
    layers.append(flag_entries(flags.entries))
    return _resolve(layers, report, print_config=flags.print_config)


def _read(
    path: str,
    required_by: str | None,
    read_text: Callable[[str], str | None],
    report: Report,
) -> str | None:
    """A missing file is an error only when someone named it."""
    shown = shortened(path)
    try:
        text = read_text(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        report.problems.append(
            problem("file", path, required_by or shown, f"cannot read {shown}: {reason}")
        )
        return None
    if text is None and required_by is not None:
        report.problems.append(
            problem("file", path, required_by, f"the file {shown} does not exist")
        )
    if text is not None and len(text) > MAX_FILE_BYTES:
        report.problems.append(
            problem("file", path, required_by or shown, f"cannot read {shown}: {_too_large()}")
        )
        return None
    return text


def _parse(name: str, entry: Entry, problems: list[ParameterProblem]) -> tuple[bool, Any]:
    """(True, value) for an accepted value; (False, None) after adding the problem. A value
    beyond the bounds (``limits``) is refused before its parser sees it, whatever its layer."""
    declared = DECLARED[name]
    try:
        check_document(entry.value, "the value")
        return True, declared.parse(entry.value)
    except TooLarge as exc:
        said = f"refused: {exc.reason}"
    except Invalid as exc:
        said = f"{exc.reason}; expected {declared.accepted}, but got {quote(entry.value)}"
    except (ValueError, TypeError, OverflowError):
        problems.append(ParameterProblem(name, entry.value, declared.accepted, str(entry.source)))
        return False, None
    message = f"{name} (from {entry.source}): {said}"
    problems.append(ConfigProblem(name, entry.value, declared.accepted, str(entry.source), message))
    return False, None


def _resolve(layers: list[list[Entry]], report: Report, *, print_config: bool) -> LoadedSettings:
    report.close()
    winners: dict[str, Entry] = {}
    for layer in layers:
        for entry in layer:
            winners[entry.name] = entry
    problems: list[ParameterProblem] = []
    values: dict[str, Any] = {}
    for name, entry in winners.items():
        ok, value = _parse(name, entry, problems)
        if ok:
            values[name] = value

    rule: RuleParameters | None = None
    try:
        rule = RuleParameters(**{name: values[name] for name in PARAMETER_NAMES if name in values})
    except ParameterError as exc:
        problems.extend(
            replace(p, value=winners[p.name].value, source=str(winners[p.name].source))
            for p in exc.problems
        )
    problems.extend(_cross_checks(values, winners))
    problems.extend(_shard_checks(values, winners))

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
    return LoadedSettings(
        settings=_build(values, rule),
        sources={
            name: winners[name].source if name in winners else DEFAULT_SOURCE for name in DECLARED
        },
        warnings=tuple(report.warnings),
        print_config=print_config,
    )


def _cross_checks(
    values: Mapping[str, Any], winners: Mapping[str, Entry]
) -> list[ParameterProblem]:
    """What no single setting can say: a missing required one, settings that contradict."""
    problems: list[ParameterProblem] = []
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
    if values.get("class_names") is not None and values.get("class_names_file") is not None:
        problems.append(
            ConfigProblem(
                "class_names_file",
                winners["class_names_file"].value,
                "class names from one place",
                str(winners["class_names_file"].source),
                f"class_names (from {winners['class_names'].source}) and class_names_file "
                f"(from {winners['class_names_file'].source}) are both set: give the names "
                f"in one of them",
            )
        )
    report = values.get("report_file")
    for other in ("status_file", "checkpoint_file"):
        if report is not None and report == values.get(other, DEFAULT_STATUS_FILE):
            problems.append(
                ConfigProblem(
                    "report_file",
                    winners["report_file"].value,
                    "a path of its own",
                    str(winners["report_file"].source),
                    f"report_file (from {winners['report_file'].source}) is the {other}: the "
                    f"HTML report would overwrite it; give report_file a path of its own",
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
    return problems


def _shard_checks(values: Mapping[str, Any], winners: Mapping[str, Entry]) -> list[ConfigProblem]:
    """A shard needs a state to write and an index below the count, and cannot stop at the
    first issue, which only the merge can tell (its actions are the merge's: see app)."""
    problems: list[ConfigProblem] = []

    def where(name: str) -> str:
        return f"{name} (from {winners[name].source})"

    count, index = values.get("shard_count", 1), values.get("shard_index", 0)
    if index >= count:
        problems.append(
            ConfigProblem(
                "shard_index",
                index,
                "",
                str(winners["shard_index"].source),
                f"{where('shard_index')} is {index}, but shard_count is {count}: shards are "
                f"numbered from 0 to {count - 1}",
            )
        )
    if values.get("emit_state") is None:
        if count > 1:
            problems.append(
                ConfigProblem(
                    "emit_state",
                    None,
                    "",
                    None,
                    f"{where('shard_count')} is {count}, but emit_state is not set: a shard's "
                    f"verdict alone says nothing of the trial; set emit_state to the file its "
                    f"state goes to, and merge the states with classimbalance-rule merge",
                )
            )
        return problems
    conflicts = {
        "stop_on_first_issue": "a shard cannot tell the first issue: only the merge can",
    }
    for name, why in conflicts.items():
        if values.get(name):
            problems.append(
                ConfigProblem(
                    name,
                    values[name],
                    "",
                    str(winners[name].source),
                    f"{where(name)} is set with emit_state: {why}; unset {name} for the shards",
                )
            )
    outputs = OutputSettings(
        status_file=values.get("status_file", DEFAULT_STATUS_FILE),
        report_file=values.get("report_file"),
    )
    others = [outputs.status_file, values.get("checkpoint_file"), values.get("message_file")]
    if values.get("html_report", True):
        others.append(outputs.report_path)
    if os.path.normpath(values["emit_state"]) in {os.path.normpath(p) for p in others if p}:
        problems.append(
            ConfigProblem(
                "emit_state",
                values["emit_state"],
                "",
                str(winners["emit_state"].source),
                f"{where('emit_state')} is the path of another output: give the state a file "
                f"of its own",
            )
        )
    return problems


def _build(values: Mapping[str, Any], rule: RuleParameters) -> Settings:
    groups: dict[str, dict[str, Any]] = {group: {} for group, _ in GROUPS}
    for name, value in values.items():
        declared = DECLARED[name]
        if declared.group != "rule":
            groups[declared.group][declared.attribute] = value
    built = {group: cls(**groups[group]) for group, cls in GROUPS}
    return Settings(rule=rule, **built)


def parse_rule_parameters(raw: Mapping[Any, Any]) -> RuleParameters:
    """Rule parameters from typed or string values (as a managed service sends them),
    reporting every problem at once: unknown keys (with a suggestion) and invalid values."""
    problems: list[ParameterProblem] = []
    typed: dict[str, Any] = {}
    unknown = 0
    for key, value in raw.items():
        if key not in PARAMETER_NAMES:
            unknown += 1
            if unknown <= MAX_REPORTED_UNKNOWN:  # each suggestion costs time
                problems.append(
                    bounded(
                        ParameterProblem(key, value, f"one of {', '.join(sorted(PARAMETER_NAMES))}")
                    )
                )
            continue
        try:
            check_document(value, "the value")
            typed[key] = coerce_rule_value(key, value)
        except TooLarge as exc:
            problems.append(
                ConfigProblem(key, value, accepted(key), None, f"{key}: refused: {exc.reason}")
            )
        except (ValueError, TypeError, OverflowError):
            problems.append(bounded(ParameterProblem(key, value, accepted(key))))
    if unknown > MAX_REPORTED_UNKNOWN:
        problems.append(
            ConfigProblem(
                "parameters",
                None,
                "",
                None,
                f"{unknown - MAX_REPORTED_UNKNOWN:,} more unknown parameters; known: "
                f"{', '.join(sorted(PARAMETER_NAMES))}",
            )
        )
    parameters: RuleParameters | None = None
    try:
        parameters = RuleParameters(**typed)
    except ParameterError as error:
        problems.extend(bounded(replace(p, value=raw[p.name])) for p in error.problems)
    if problems or parameters is None:
        position = {key: index for index, key in enumerate(raw)}
        known = {name: index for index, name in enumerate(PARAMETER_NAMES)}
        problems.sort(key=lambda p: known.get(p.name, len(known) + position.get(p.name, 0)))
        raise ParameterError(problems)
    return parameters
