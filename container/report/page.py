"""The report: one self-contained HTML page of a status document.

The page is a pure function of the status document, so every place that shows it (the file at
the end, the managed service's rule output, ``/report`` while following, ``classimbalance-rule
report`` afterwards) says what the status file says. It holds no script and makes no request:
inline CSS and SVG only, so it opens from a bucket, an email or an air-gapped cluster; the live
page refreshes itself with a ``<meta http-equiv="refresh">``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from container import __version__
from container.report import classes, details, steps, svg
from container.report.markup import Document, class_label, section, table, text
from container.report.style import CSS

STATUS_WORDS = {
    "IssuesFound": "Issues found",
    "NoIssuesFound": "No issues found",
    "InProgress": "In progress",
    "Error": "Error",
    "Stopped": "Stopped",
}
REFRESH_SECONDS = 5


def package_version() -> str:
    """This package's version, for the page's footer (``container.__version__``, which a test
    holds equal to pyproject's: importlib.metadata would cost 20 ms of imports per page)."""
    return __version__


def render_report(
    document: Document, *, live: bool = False, version: str | None = None, now: float | None = None
) -> str:
    """The page of ``document``; ``live`` pages refresh every few seconds until terminal."""
    version = package_version() if version is None else version
    refresh = (
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        if live and not document.get("terminal", True)
        else ""
    )
    status = str(document["status"])
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    body = "".join(
        [
            _header(document),
            _checks(document),
            classes.distribution(document),
            classes.misprediction(document, classes.class_table(document)),
            steps.over_steps(document),
            classes.confusion(document),
            details.modes(document),
            details.opt_in(document),
            details.left_out(document),
            details.actions(document),
            details.run_details(document),
        ]
    )
    source = "live from the running evaluator" if live else "from the status document"
    refreshing = f" · refreshes every {REFRESH_SECONDS} s" if refresh else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        f"{refresh}<title>ClassImbalance: {text(STATUS_WORDS.get(status, status))} · "
        f"{text(document['trial'])}</title><style>{CSS}</style></head>"
        f'<body class="status-{text(status)}"><main>{body}</main>'
        f"<footer>classimbalance-rule{' ' + text(version) if version else ''} · generated "
        f"{generated} {source}{refreshing}</footer>"
        "</body></html>\n"
    )


def _header(document: Document) -> str:
    status = str(document["status"])
    params = document["parameters"]
    figures = [
        _tile(
            "imbalance ratio",
            svg.number(document["imbalance_ratio"]),
            f"threshold_imbalance {params['threshold_imbalance']:g}",
            _verdict_style(document, "imbalance"),
            "ratio",
        ),
        _worst_tile(document),
        _tile(
            "labels counted",
            f"{document['samples']:,}",
            f"checks run from samples={params['samples']:,}",
            "" if document["checks_active"] else "waiting",
            "samples",
        ),
        _tile(
            "steps evaluated",
            f"{document['steps_evaluated']:,}",
            "last step "
            + ("\u2013" if document["last_step"] is None else f"{document['last_step']:,}"),
            "",
            "steps",
        ),
    ]
    live = "" if document.get("terminal", True) else '<span class="live">live</span>'
    return (
        '<header class="verdict">'
        f'<p class="eyebrow">ClassImbalance rule report {live}</p>'
        f'<h1><span id="verdict" class="badge {text(status)}" data-status="{text(status)}">'
        f"{text(STATUS_WORDS.get(status, status))}</span></h1>"
        f'<p class="trial">on <code>{text(document["trial"])}</code></p>'
        f'<p id="why" class="why">{_why(document)}</p>'
        f'<div class="tiles">{"".join(figures)}</div></header>'
    )


def _verdict_style(document: Document, check: str) -> str:
    """A tile's colour says what the check says now (with ``confidence``, its bound decides,
    not the raw figure); no colour before the checks run."""
    current = document["current"] or {}
    if not document["checks_active"] or check not in current:
        return ""
    return "bad" if current[check] else "good"


def _tile(label: str, value: str, note: str, style: str, key: str) -> str:
    return (
        f'<div class="tile {style}" data-figure="{key}"><div class="label">{text(label)}</div>'
        f'<div class="value">{text(value)}</div><div class="note">{text(note)}</div></div>'
    )


def _worst_tile(document: Document) -> str:
    table_: Mapping[str, Mapping[str, Any]] = document["classes"]
    threshold = document["parameters"]["threshold_misprediction"]
    if not table_:
        return _tile(
            "worst mispredicted", "\u2013", f"threshold_misprediction {threshold:g}", "", "worst"
        )
    worst = max(table_, key=lambda c: (table_[c]["misprediction_fraction"], -int(c)))
    fraction = table_[worst]["misprediction_fraction"]
    return _tile(
        f"worst: {class_label(worst, table_[worst])}",
        f"{fraction:.3f}",
        f"threshold_misprediction {threshold:g}",
        _verdict_style(document, "misprediction"),
        "worst",
    )


def _why(document: Document) -> str:
    """The verdict in a sentence or two, with the thresholds."""
    status = document["status"]
    params = document["parameters"]
    if status == "Error":
        return f"The evaluation failed: {text(document['error'] or document['message'])}"
    if not document["checks_active"]:
        return (
            f"{document['samples']:,} labels counted over {document['steps_evaluated']:,} "
            f"steps, fewer than samples={params['samples']:,}: the checks have not run"
            + (" yet." if status == "InProgress" else ", so nothing was checked.")
        )
    findings = document["findings"]
    if findings:
        first = min(findings, key=lambda f: f["step"])
        said = " ".join(
            f"At step {f['step']:,}, {text(f['check'])}: {text(f['message'])}." for f in findings
        )
        current = document["current"] or {}
        holding = [check for check, finding in current.items() if finding]
        now = f" At the last step ({document['last_step']:,}) " + (
            f"{', '.join(holding)} still held." if holding else "no check held any more."
        )
        return f"A check first held at step {first['step']:,}. {said}{now}"
    if status == "InProgress":
        return (
            f"No check has held so far, over {document['samples']:,} labels and "
            f"{document['steps_evaluated']:,} steps (threshold_imbalance "
            f"{params['threshold_imbalance']:g}, threshold_misprediction "
            f"{params['threshold_misprediction']:g}); the evaluation goes on."
        )
    if status == "Stopped":
        return (
            f"Stopped before the end of the trial, after {document['samples']:,} labels and "
            f"{document['steps_evaluated']:,} steps, without a check having held so far."
        )
    return (
        f"No check held over {document['samples']:,} labels and "
        f"{document['steps_evaluated']:,} steps: the imbalance ratio stayed at or below "
        f"threshold_imbalance {params['threshold_imbalance']:g} and every class's mispredicted "
        f"fraction at or below threshold_misprediction {params['threshold_misprediction']:g}."
    )


def _checks(document: Document) -> str:
    current: Mapping[str, Any] = document["current"] or {}
    first = {f["check"]: f for f in document["findings"]}
    names = list(dict.fromkeys([*current, *first]))
    if not names:
        return ""
    rows, attributes = [], []
    for name in names:
        now = current.get(name)
        found = first.get(name)
        rows.append(
            [
                f"<strong>{text(name)}</strong>",
                '<span class="yes">holds</span>'
                if now
                else ('<span class="no">does not hold</span>' if name in current else "\u2013"),
                "\u2013" if found is None else f"{found['step']:,}",
                text(svg.number((now or found or {}).get("value"))),
                text(svg.number((now or found or {}).get("threshold"))),
                text((now or found or {}).get("message", "")),
            ]
        )
        attributes.append(f' data-check="{text(name)}"')
    body = table(
        ["check", "now", "first held at step", "value", "threshold", "finding"],
        rows,
        table_id="checks",
        numeric=[2, 3, 4],
        row_attributes=attributes,
    )
    return section("checks", "The checks", body)
