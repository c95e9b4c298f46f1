"""The command line: one flag per setting, derived from the declarations, every mistake reported.

argparse exits at the first bad flag; here a bad flag is one more problem, reported with the
rest, and an unknown one gets the closest known flag as a suggestion.
"""

from __future__ import annotations

import argparse
import functools
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from container.config.entries import Entry, Source, problem
from container.config.limits import (
    MAX_ARGUMENTS,
    MAX_REPORTED_UNKNOWN,
    closest,
    quote,
)
from container.config.printing import default_text, setting_docs
from container.config.settings import DECLARED
from evaluator.core import ParameterProblem, shortened


@dataclass(frozen=True)
class Flags:
    """The command line, split but not yet validated."""

    entries: tuple[Entry, ...] = ()
    config: str | None = None
    print_config: bool = False
    help: bool = False
    version: bool = False
    example_config: bool = False
    problems: tuple[ParameterProblem, ...] = ()


EPILOG = """examples:
  classimbalance-rule --trial ./debug-output --argmax true
      evaluate a finished trial (or follow one until training_job_end.ts), print the verdict
  classimbalance-rule --trial s3://bucket/job/debug-output --argmax true --once
      what is complete now, then exit
  classimbalance-rule --example-config > rule.yaml && classimbalance-rule --config rule.yaml
      start from the example settings file
  classimbalance-rule report classimbalance-status.json
      write the HTML report again from a status file (or a checkpoint)

exit codes: 0 NoIssuesFound (the checks ran), 1 IssuesFound, 2 Error, 3 NoIssuesFound without
the checks having run (fewer than samples labels), 4 Stopped before a verdict."""


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
        namespace.entries.append(Entry(self.dest, values, Source("flag", f"flag {option_string}")))


class _SplitFormatter(argparse.RawDescriptionHelpFormatter):
    """The formatter of the parser that only splits the command line: argparse makes one per
    flag added, and the default one imports shutil (with bz2 and lzma, ~3 ms of start-up) to
    ask the terminal's width, which splitting never shows."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_SPLIT_WIDTH)


_SPLIT_WIDTH = 79


def build_parser(*, with_help: bool = True) -> argparse.ArgumentParser:
    """The flags, their help taken from the settings' docstrings (the contract). Without
    ``with_help`` the help texts are left out: splitting a command line needs none, and reading
    every docstring from the source costs milliseconds at every start."""
    return _build_parser(with_help, argparse.RawDescriptionHelpFormatter)


@functools.cache
def _splitter() -> argparse.ArgumentParser:
    """The parser ``parse_flags`` splits with, built once per process (``main`` and
    ``load_settings`` both split the command line; a parser takes ~2 ms to build)."""
    return _build_parser(False, _SplitFormatter)


def _build_parser(
    with_help: bool, formatter: type[argparse.HelpFormatter]
) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="classimbalance-rule",
        description=textwrap.fill(
            "Evaluate SageMaker Debugger's ClassImbalance rule on an smdebug trial: "
            "per-class sample counts (largest/smallest above threshold_imbalance) and per-class "
            "misprediction (fraction above threshold_misprediction). Every setting can also be "
            "given in a YAML file (--config or RULE_CONFIG; --example-config prints one with every "
            "setting and its default), as an environment variable (CLASSIMBALANCE_ and the name "
            "in capitals, such as CLASSIMBALANCE_LOG_LEVEL; the rule parameters and base_trial "
            "also without the prefix, as the managed service sends them: SAMPLES) or in the "
            "managed service's job config; flags win over the environment, which wins over the "
            "file.",
            width=79,
        ),
        epilog=EPILOG,
        formatter_class=formatter,
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
    parser.add_argument(
        "--example-config",
        action="store_true",
        help="print the example YAML file (every setting, its default and why), then exit",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    docs = setting_docs() if with_help else {}
    rule = parser.add_argument_group(
        'rule parameters (the seed\'s names; string forms such as "10" or "False" accepted)'
    )
    runtime = parser.add_argument_group("runtime settings")
    for name, declared in DECLARED.items():
        group = rule if declared.group == "rule" or name == "base_trial" else runtime
        help_text = (
            f"{docs.get(name, '')} Default: {default_text(name)}.".strip() if with_help else ""
        )
        options: dict[str, Any] = {
            "action": _Collect,
            "dest": name,
            "default": argparse.SUPPRESS,
            "help": help_text.replace("%", "%%"),
        }
        if declared.switch:
            options.update(nargs="?", const="true", metavar="BOOL")
        else:
            options["metavar"] = declared.metavar
        group.add_argument(*declared.flags, **options)
        if declared.item_flag is not None:
            item_flag, item_help = declared.item_flag
            group.add_argument(
                item_flag,
                action=_Collect,
                dest=name,
                default=argparse.SUPPRESS,
                metavar=declared.metavar.removesuffix(",..."),
                help=item_help,
            )
    return parser


def parse_flags(argv: Sequence[str]) -> Flags:
    """Split the command line; an unknown or malformed flag is a problem, not an exit."""
    if len(argv) > MAX_ARGUMENTS:
        found = problem(
            "flags",
            None,
            "command line",
            f"{len(argv):,} arguments, but at most {MAX_ARGUMENTS:,} are read; give the "
            f"settings in a file (--config) instead",
        )
        return Flags(problems=(found,))
    parser = _splitter()
    try:
        namespace, extras = parser.parse_known_args(list(argv), argparse.Namespace(entries=[]))
    except _FlagError as exc:
        found = problem("flags", list(argv), "command line", f"{shortened(str(exc))}; see --help")
        return Flags(help="-h" in argv or "--help" in argv, problems=(found,))
    problems: list[ParameterProblem] = []
    known = [o for action in parser._actions for o in action.option_strings]
    after_unknown = False
    unreported = 0
    for extra in extras:
        if extra.startswith("-") or not after_unknown:
            if len(problems) >= MAX_REPORTED_UNKNOWN:  # each suggestion costs time
                unreported += 1
            elif extra.startswith("-"):
                flag = shortened(extra.split("=", 1)[0])
                close = closest(flag, known)
                hint = f"did you mean {close}?" if close else "see --help"
                problems.append(
                    problem(flag, extra, "command line", f"unknown flag {flag}; {hint}")
                )
            else:
                problems.append(
                    problem("flags", extra, "command line", f"unexpected argument {quote(extra)}")
                )
        if extra.startswith("-"):
            after_unknown = "=" not in extra
    if unreported:
        problems.append(
            problem(
                "flags", None, "command line", f"{unreported:,} more unknown flags or arguments"
            )
        )
    return Flags(
        entries=tuple(namespace.entries),
        config=namespace.config,
        print_config=namespace.print_config,
        help=namespace.help,
        version=namespace.version,
        example_config=namespace.example_config,
        problems=tuple(problems),
    )
