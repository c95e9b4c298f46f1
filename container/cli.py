"""``classimbalance-rule``: evaluate the ClassImbalance rule on an smdebug trial.

Settings come from defaults, the managed service's job config, a YAML file, the environment and
flags (``container.config``); this module wires the real ``sys.argv`` and ``os.environ`` to them
and turns the outcome into an exit code. Exit codes say the verdict: 0 NoIssuesFound (or Stopped
without an issue), 1 IssuesFound, 2 Error (bad settings, a missing or unreadable trial, no usable
data).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from container.app import Outcome, Runtime, run
from container.config import (
    ConfigError,
    build_parser,
    format_settings,
    load_settings,
    parse_flags,
)
from container.logs import configure_logging
from container.snapshot import take_snapshot
from container.status import EXIT_CODES, RunInfo, Status, build_status, write_status
from container.stopping import StopRequest, stop_on_signals
from evaluator.core import ClassImbalanceRule, RuleParameters

log = logging.getLogger("classimbalance")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if parse_flags(args).help:
        print(build_parser().format_help())
        return 0
    try:
        loaded = load_settings(args, os.environ)
    except ConfigError as exc:
        configure_logging(exc.fallback.log_format, exc.fallback.log_level)
        if exc.print_config:  # a dry run leaves the status file alone
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_CODES[Status.ERROR]
        for warning in exc.warnings:
            log.warning("%s", warning)
        return _settings_error(exc)
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
        print(
            f"error: cannot write the status file {settings.outputs.status_file}: {exc}; set "
            f"--status-file to a writable path",
            file=sys.stderr,
        )
        return EXIT_CODES[Status.ERROR]
    finally:
        stop.close()
    _print_verdict(outcome)
    return EXIT_CODES[outcome.status]


def _settings_error(exc: ConfigError) -> int:
    """Invalid settings: say so on stderr and in the status file, the one the settings name
    when that part of them is valid, so a watcher of that file sees the Error."""
    print(f"error: {exc}", file=sys.stderr)
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
    except OSError as error:
        print(
            f"error: cannot write the status file {fallback.status_file}: {error}", file=sys.stderr
        )
    return EXIT_CODES[Status.ERROR]


def _print_verdict(outcome: Outcome) -> None:
    """A short human summary on stdout; the status file has everything."""
    doc: dict[str, Any] = outcome.document
    print(f"ClassImbalance on {doc['trial']}: {doc['status']}")
    print(f"  {doc['message']}")
    if doc["error"]:
        return
    print(
        f"  steps evaluated: {doc['steps_evaluated']} (last step {doc['last_step']}), "
        f"labels counted: {doc['samples']}, ignored: {doc['ignored']}"
    )
    ratio = doc["imbalance_ratio"]
    if ratio is not None:
        print(f"  imbalance ratio (largest/smallest class count): {ratio:.4g}")
    for finding in doc["findings"]:
        print(f"  {finding['check']} at step {finding['step']}: {finding['message']}")
    classes = doc["classes"]
    if 0 < len(classes) <= 20:
        print("  class  samples  mispredicted  fraction")
        for name, entry in classes.items():
            print(
                f"  {name:>5}  {entry['samples']:>7}  {entry['mispredicted']:>12}  "
                f"{entry['misprediction_fraction']:>8.3f}"
            )
    for warning in outcome.warnings:
        print(f"  warning: {warning}")
    skipped = doc["skipped"]
    if skipped["rows"] or skipped["batches"]:
        print(f"  skipped rows: {skipped['rows']}, skipped batches: {skipped['batches']}")
    print(f"  status file: written ({doc['status']})")


if __name__ == "__main__":
    sys.exit(main())
