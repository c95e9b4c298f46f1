"""``classimbalance-rule``: evaluate the ClassImbalance rule on an smdebug trial.

Exit codes say the verdict: 0 NoIssuesFound (or Stopped without an issue), 1 IssuesFound,
2 Error (bad settings, a missing or unreadable trial, no usable data).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from container.app import Outcome, run
from container.settings import DEFAULT_STATUS_FILE, Settings
from container.status import EXIT_CODES, RunInfo, Status, build_status, write_status
from evaluator.core import ClassImbalanceRule, RuleParameters, parse_rule_parameters
from evaluator.core.errors import ParameterError, ParameterProblem
from evaluator.core.params import parse_finite_float

MODES = ("TRAIN", "EVAL", "PREDICT", "GLOBAL")
_RULE_FLAGS = (
    ("threshold_imbalance", "largest/smallest class count above this is an issue (default 10)"),
    (
        "threshold_misprediction",
        "a class's mispredicted fraction above this is an issue (default 0.7)",
    ),
    ("samples", "labels to count before the checks run (default 500)"),
    ("argmax", "apply argmax to (B, C) predictions: true/false (default false)"),
    ("labels_regex", "regex (search) for the labels tensors (default '.*labels')"),
    ("predictions_regex", "regex (search) for the predictions tensors (default '.*predictions')"),
    ("ignore_index", "label value to skip and count as ignored, or none (default -100)"),
    ("max_classes", "class indices at or above this are out of range (default 1000000)"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="classimbalance-rule",
        description="Evaluate SageMaker Debugger's ClassImbalance rule on an smdebug trial: "
        "per-class sample counts (largest/smallest above threshold_imbalance) and per-class "
        "misprediction (fraction above threshold_misprediction).",
        epilog="Exit codes: 0 NoIssuesFound, 1 IssuesFound, 2 Error.",
    )
    parser.add_argument(
        "--trial",
        "--base-trial",
        dest="base_trial",
        required=True,
        metavar="PATH",
        help="the trial folder written by an smdebug hook",
    )
    rule = parser.add_argument_group("rule parameters (the seed's names; string forms accepted)")
    for name, help_text in _RULE_FLAGS:
        rule.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar="VALUE", help=help_text)
    parser.add_argument(
        "--status-file",
        default=DEFAULT_STATUS_FILE,
        metavar="PATH",
        help=f"where to write the JSON status (default {DEFAULT_STATUS_FILE})",
    )
    parser.add_argument(
        "--mode",
        action="append",
        choices=MODES,
        dest="modes",
        help="evaluate only steps of this mode; repeatable (default: all modes)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="evaluate the complete steps there now and exit, even without the end marker",
    )
    parser.add_argument(
        "--reader",
        choices=("native", "smdebug"),
        default="native",
        help="trial reader (default native; smdebug is the reference reader)",
    )
    parser.add_argument(
        "--verify-payload-crc",
        action="store_true",
        help="also verify each record's payload CRC when one was written",
    )
    parser.add_argument(
        "--stop-on-first-issue",
        action="store_true",
        help="stop at the first issue, as the managed service does",
    )
    parser.add_argument(
        "--poll-interval",
        default="1.0",
        metavar="SECONDS",
        help="seconds between looks for new steps while following (default 1)",
    )
    parser.add_argument(
        "--idle-timeout",
        default="1800",
        metavar="SECONDS",
        help="end after this long without a new step; 'none' waits forever (default 1800)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log verbosity on stderr (default INFO)",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from parsed flags; every invalid value is reported in one ParameterError."""
    raw = {name: getattr(args, name) for name, _ in _RULE_FLAGS if getattr(args, name) is not None}
    problems: list[ParameterProblem] = []
    try:
        rule = parse_rule_parameters(raw)
    except ParameterError as exc:
        problems.extend(
            ParameterProblem(p.name, p.value, p.expected, f"--{p.name.replace('_', '-')}")
            for p in exc.problems
        )
        rule = RuleParameters()
    poll = _seconds(args.poll_interval, "poll_interval", problems, allow_none=False)
    idle = _seconds(args.idle_timeout, "idle_timeout", problems, allow_none=True)
    if problems:
        raise ParameterError(problems)
    return Settings(
        base_trial=args.base_trial,
        rule=rule,
        status_file=args.status_file,
        modes=tuple(dict.fromkeys(args.modes)) if args.modes else None,
        once=args.once,
        reader=args.reader,
        verify_payload_crc=args.verify_payload_crc,
        stop_on_first_issue=args.stop_on_first_issue,
        poll_interval=poll if poll is not None else 1.0,
        idle_timeout=idle,
    )


def _seconds(
    value: str, name: str, problems: list[ParameterProblem], allow_none: bool
) -> float | None:
    if allow_none and value.strip().lower() in {"none", "never", "inf"}:
        return None
    try:
        seconds = parse_finite_float(value)
        if seconds > 0:
            return seconds
    except ValueError:
        pass
    accepted = "a number of seconds > 0" + (", or none" if allow_none else "")
    problems.append(ParameterProblem(name, value, accepted, f"--{name.replace('_', '-')}"))
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = settings_from_args(args)
    except ParameterError as exc:
        return _settings_error(args, str(exc))
    try:
        outcome = run(settings)
    except OSError as exc:
        print(
            f"error: cannot write the status file {settings.status_file}: {exc}; set "
            f"--status-file to a writable path",
            file=sys.stderr,
        )
        return EXIT_CODES[Status.ERROR]
    _print_verdict(outcome)
    return EXIT_CODES[outcome.status]


def _settings_error(args: argparse.Namespace, message: str) -> int:
    """Invalid settings: say so on stderr and, when possible, in the status file."""
    print(f"error: {message}", file=sys.stderr)
    document = build_status(
        ClassImbalanceRule(RuleParameters()),
        RunInfo(trial=args.base_trial, reader=args.reader, modes=args.modes, started_at=0.0),
        Status.ERROR,
        error=message,
    )
    try:
        write_status(args.status_file, document)
    except OSError as exc:
        print(f"error: cannot write the status file {args.status_file}: {exc}", file=sys.stderr)
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
