"""``classimbalance-rule report``: the HTML report again, from a status file or a checkpoint.

A status file holds everything the page shows (the history included), so its page is the one
the evaluation wrote. A checkpoint holds the rule's counts and history but not the run's
settings beyond the fingerprint: its page says what was counted up to the checkpoint, as an
evaluation that has not ended (``InProgress``, or ``IssuesFound`` once a check held).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from container.atomic import write_text_atomically
from container.checkpoint import CheckpointError, read_checkpoint
from container.config import OutputSettings
from container.names import ClassNamesError, load_class_names
from container.report import render_report
from container.snapshot import Progress, take_snapshot
from container.status import RunInfo, Status, build_status
from evaluator.core import ClassImbalanceRule, RuleParameters

STATUS_KEYS = frozenset({"rule", "status", "classes", "parameters"})
"""Keys every status document has (a checkpoint has ``rule_state`` and ``fingerprint``)."""


class ReportError(ValueError):
    """The source cannot be rendered; the message says why and what to give instead."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="classimbalance-rule report",
        description="Write the HTML report of an evaluation again, from its status file or "
        "its checkpoint.",
        epilog="examples:\n"
        "  classimbalance-rule report classimbalance-status.json\n"
        "  classimbalance-rule report /data/checkpoint.json --out /tmp/report.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", help="a status file (JSON) or a checkpoint_file")
    parser.add_argument(
        "--out",
        metavar="PATH",
        help="where to write the page (default: SOURCE with .html for its extension)",
    )
    parser.add_argument(
        "--class-names-file",
        metavar="PATH",
        help="class names, one per line (a checkpoint does not keep them; a status file does)",
    )
    return parser


def render_source(source: str, class_names_file: str | None = None) -> str:
    """The page of a status file or a checkpoint; ReportError when it is neither."""
    try:
        document = json.loads(Path(source).read_text(encoding="utf-8"))
    except OSError as error:
        raise ReportError(f"cannot read {source}: {error.strerror or error}") from error
    except ValueError as error:
        raise ReportError(
            f"{source} is not JSON ({error}): give a status file or a checkpoint_file"
        ) from error
    if not isinstance(document, dict):
        raise ReportError(
            f"{source} holds JSON but not an object: give a status file or a checkpoint_file"
        )
    if "rule_state" in document and "fingerprint" in document:
        document = _checkpoint_document(source, class_names_file)
    elif not set(document) >= STATUS_KEYS:
        missing = ", ".join(sorted(STATUS_KEYS - set(document)))
        raise ReportError(
            f"{source} is neither a status file (it lacks {missing}) nor a checkpoint (it "
            f"lacks rule_state and fingerprint): give the status_file or checkpoint_file of "
            f"an evaluation"
        )
    return render_report(document)


def _checkpoint_document(source: str, class_names_file: str | None) -> dict[str, Any]:
    try:
        saved, checkpoint = read_checkpoint(source)
        known = {f.name for f in fields(RuleParameters)}
        params = RuleParameters(**{k: v for k, v in saved["rule"].items() if k in known})
        rule = ClassImbalanceRule.from_state(params, checkpoint.rule_state)
    except CheckpointError as error:
        raise ReportError(str(error)) from error
    except (KeyError, TypeError, ValueError) as error:
        raise ReportError(
            f"checkpoint {source} cannot be rendered ({type(error).__name__}: {error}): it was "
            f"not written by this evaluator or was damaged"
        ) from error
    names = None
    if class_names_file is not None:
        try:
            names = load_class_names(OutputSettings(class_names_file=class_names_file))
        except ClassNamesError as error:
            raise ReportError(str(error)) from error
    status = Status.ISSUES_FOUND if rule.issue_step is not None else Status.IN_PROGRESS
    trial = str(saved.get("trial", ""))
    snapshot = take_snapshot(
        rule,
        status=str(status),
        trial=trial,
        ready=False,
        progress=Progress(steps_seen=checkpoint.steps_seen),
        class_names=names,
        actions=checkpoint.actions,
    )
    info = RunInfo(
        trial=trial,
        reader=f"checkpoint {source}",
        modes=saved.get("modes"),
        started_at=os.stat(source).st_mtime,
        resumed_from_step=None,
    )
    return build_status(snapshot, info, terminal=True, now=os.stat(source).st_mtime)


def main(argv: Sequence[str]) -> int:
    """Write the page; 0 when written, 2 when the source or the destination is unusable."""
    args = build_parser().parse_args(list(argv))
    out = args.out or _beside(args.source)
    try:
        page = render_source(args.source, args.class_names_file)
        write_text_atomically(out, page, what="the HTML report")
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a FileWriteError: the file, the reason, what to change
        print(f"error: {error}; give --out a writable path", file=sys.stderr)
        return 2
    print(f"report written to {out} ({len(page.encode()):,} bytes)")
    return 0


def _beside(source: str) -> str:
    path = Path(source)
    return str(
        path.with_suffix(".html") if path.suffix != ".html" else path.with_suffix(".page.html")
    )
