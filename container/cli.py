"""``classimbalance-rule``: evaluate the ClassImbalance rule on an smdebug trial.

Settings come from defaults, the managed service's job config, a YAML file, the environment and
flags (``container.config``); this module wires the real ``sys.argv`` and ``os.environ`` to them
and turns the outcome into an exit code. Exit codes say the verdict: 0 NoIssuesFound (the checks
ran), 1 IssuesFound, 2 Error (bad settings, a missing or unreadable trial, no usable data), 3
NoIssuesFound without the checks having run (fewer than ``samples`` labels), 4 Stopped before a
verdict.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence

from container import __version__
from container.app import Outcome, Runtime, run
from container.config import (
    EPILOG,
    ConfigError,
    Settings,
    build_parser,
    example_config,
    format_settings,
    load_settings,
    parse_flags,
)
from container.logs import configure_logging, escape_control
from container.sharding import part_selection
from container.snapshot import take_snapshot
from container.status import EXIT_CODES, RunInfo, Status, build_status, write_status
from container.stopping import StopRequest, stop_on_signals
from container.summary import format_summary
from evaluator.core import ClassImbalanceRule, RuleParameters

log = logging.getLogger("classimbalance")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["report"]:  # the page again; its modules are imported only for it
        from container import reporting  # noqa: PLC0415

        return reporting.main(args[1:])
    if args[:1] == ["merge"]:  # the shards' states as one verdict
        from container import merging  # noqa: PLC0415

        return merging.main(args[1:])
    flags = parse_flags(args)
    if flags.help:
        print(build_parser().format_help())
        return 0
    if flags.version:
        print(f"classimbalance-rule {__version__}")
        return 0
    if flags.example_config:
        sys.stdout.write(example_config())
        return 0
    try:
        loaded = load_settings(args, os.environ)
    except ConfigError as exc:
        if not args and exc.only_missing_trial:  # the bare command: how to use it
            print(_usage(), file=sys.stderr)
            return EXIT_CODES[Status.ERROR]
        configure_logging(exc.fallback.log_format, exc.fallback.log_level)
        if exc.print_config:  # a dry run leaves the status file alone
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_CODES[Status.ERROR]
        for warning in exc.warnings:
            log.warning("%s", warning)
        return _settings_error(exc, json_logs=exc.fallback.log_format == "json")
    settings = loaded.settings
    if loaded.print_config:
        sys.stdout.write(format_settings(loaded))
        return 0
    configure_logging(settings.logs.format, settings.logs.level)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    stop = StopRequest()
    try:
        with stop_on_signals(stop):
            outcome = run(settings, Runtime(stop=stop, warnings=tuple(loaded.warnings)))
    except OSError as exc:
        _say_error(
            f"cannot write the status file {settings.outputs.status_file}: {exc}; set "
            f"--status-file to a writable path",
            json_logs=settings.logs.format == "json",
        )
        return EXIT_CODES[Status.ERROR]
    finally:
        stop.close()
    _print_verdict(outcome, settings)
    return outcome.exit_code


def _usage() -> str:
    """What the bare command prints: the usage line, the examples, where the rest is."""
    parser = build_parser(with_help=False)
    return (
        f"{parser.format_usage().splitlines()[0]} ...\n\n"
        f"Give the trial to evaluate: --trial PATH (a folder, or s3://bucket/prefix).\n\n"
        f"{EPILOG}\n\nEvery setting: classimbalance-rule --help"
    )


def _say_error(message: str, *, json_logs: bool) -> None:
    """An error before or after the evaluation: a line on stderr, or a JSON log event when the
    log is JSON, so that stream holds nothing but JSON objects."""
    if json_logs:
        log.error("%s", message, extra={"event": "error"})
    else:  # a list of invalid settings keeps its lines; each line its control characters escaped
        lines = (escape_control(line) for line in message.split("\n"))
        print("error: " + "\n".join(lines), file=sys.stderr)


def _settings_error(exc: ConfigError, *, json_logs: bool) -> int:
    """Invalid settings: say so on stderr and in the status file, the one the settings name
    when that part of them is valid, so a watcher of that file sees the Error."""
    _say_error(str(exc), json_logs=json_logs)
    fallback = exc.fallback
    snapshot = take_snapshot(
        ClassImbalanceRule(RuleParameters()),
        status=str(Status.ERROR),
        trial=fallback.base_trial,
        ready=False,
    )
    document = build_status(
        snapshot,
        RunInfo(
            trial=fallback.base_trial,
            reader=fallback.reader,
            modes=fallback.modes,
            started_at=time.time(),
        ),
        error=str(exc),
    )
    try:
        write_status(fallback.status_file, document)
    except OSError as error:  # a StatusFileError: it names the file, the reason, what to do
        _say_error(str(error), json_logs=json_logs)
    return EXIT_CODES[Status.ERROR]


def _print_verdict(outcome: Outcome, settings: Settings) -> None:
    """A human summary on stdout; with JSON logs, none: the ``ended`` log event carries the
    verdict, the figures and the findings, and the stream stays one JSON object per line."""
    if settings.logs.format == "json":
        return
    outputs = settings.outputs
    written = outcome.status_written
    summary = format_summary(
        outcome.document,
        status_file=outputs.status_file if written else f"{outputs.status_file}, not written",
        warnings=outcome.warnings,
        report_file=outputs.report_path if outputs.html_report and written else None,
    )
    sys.stdout.write(summary)
    if outcome.shard_state is not None:
        sys.stdout.write(
            f"  shard state: {outcome.shard_state} ({part_selection(settings).describe()}); the "
            f"verdict above is this shard's part alone: classimbalance-rule merge with every "
            f"shard's state gives the trial's\n"
        )


if __name__ == "__main__":
    sys.exit(main())
