"""The report's sections of detail: per mode, the opt-in checks, what was left out, the actions,
and the parameters and the run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from container.report import svg
from container.report.markup import (
    Document,
    class_label,
    definitions,
    fraction,
    section,
    table,
    text,
)

RECENT_SHOWN = 10


def modes(document: Document) -> str:
    by_mode: Mapping[str, Mapping[str, Any]] = document["modes"]
    if not by_mode:
        return ""
    checks = sorted({check for figures in by_mode.values() for check in figures["holds"]})
    rows = []
    for mode, figures in by_mode.items():
        verdicts = [
            ("holds" if figures["holds"][c] else "does not hold")
            if c in figures["holds"]
            else "\u2013"
            for c in checks
        ]
        rows.append(
            [
                text(mode),
                f"{figures['samples']:,}",
                text(svg.number(figures["imbalance_ratio"])),
                "yes" if figures["checks_active"] else "not yet (too few labels)",
                *verdicts,
            ]
        )
    lead = (
        "Each mode's counts checked on their own: TRAIN says whether the training data is "
        "balanced, EVAL whether the model does well on the rare classes. The verdict above is "
        "over every mode together."
        if len(by_mode) > 1
        else f"Every step evaluated was in mode {text(next(iter(by_mode)))}."
    )
    body = table(
        ["mode", "labels", "imbalance ratio", "checks run", *checks],
        rows,
        table_id="modes",
        numeric=[1, 2],
    )
    return section("modes", "Per mode", body, lead=lead)


def opt_in(document: Document) -> str:
    params = document["parameters"]
    enabled = []
    if params.get("confidence") is not None:
        enabled.append(
            f"<li><strong>confidence {params['confidence']:g}</strong>: the checks hold only "
            "when the Wilson bounds of the fractions (and counts) clear the thresholds, so a "
            "handful of labels cannot raise an issue.</li>"
        )
    if params.get("window_steps"):
        enabled.append(
            f"<li><strong>window_steps {params['window_steps']:,}</strong>: the "
            "recent_misprediction check looks at the last steps' counts only.</li>"
        )
    if params.get("minority_not_improving"):
        enabled.append(
            "<li><strong>minority_not_improving</strong>: holds when the smallest classes' "
            "recent fraction is no better than in the window before.</li>"
        )
    if not enabled:
        return ""
    body = f"<ul>{''.join(enabled)}</ul>"
    window = document.get("recent_window")
    if window:
        body += definitions(
            [
                ("steps in the window", f"{window['steps']:,} of {window['window_steps']:,}"),
                ("steps in the window before", f"{window['previous_steps']:,}"),
                ("labels in the window", f"{window['samples']:,}"),
            ],
            list_id="recent-window",
        )
        classes: Mapping[str, Mapping[str, Any]] = document["classes"]
        recent = [(c, e) for c, e in classes.items() if e.get("recent", {}).get("samples")]
        recent.sort(key=lambda item: (-item[1]["recent"]["misprediction_fraction"], int(item[0])))
        body += table(
            [
                "class",
                "recent labels",
                "recent mispredicted",
                "recent fraction",
                "fraction overall",
            ],
            [
                [
                    text(class_label(c, e)),
                    f"{e['recent']['samples']:,}",
                    f"{e['recent']['mispredicted']:,}",
                    fraction(e["recent"]["misprediction_fraction"]),
                    fraction(e["misprediction_fraction"]),
                ]
                for c, e in recent[:RECENT_SHOWN]
            ],
            table_id="recent-classes",
            numeric=[1, 2, 3, 4],
            caption=f"The {min(len(recent), RECENT_SHOWN)} worst-predicted classes of the "
            "recent window",
        )
    return section("opt-in", "Opt-in checks", body)


def left_out(document: Document) -> str:
    skipped = document["skipped"]
    examples: Mapping[str, str] = skipped.get("examples", {})
    rows = []
    for kind in ("rows", "batches", "files"):
        for reason, count in sorted(skipped[kind].items(), key=lambda item: -item[1]):
            example = examples.get(
                f"files/{reason}" if kind == "files" and f"files/{reason}" in examples else reason,
                "",
            )
            rows.append([text(kind), text(reason), f"{count:,}", text(example)])
    for reason, count in sorted(document.get("reader_notices", {}).items()):
        rows.append(["notice", text(reason), f"{count:,}", text(examples.get(reason, ""))])
    parts = []
    ignored = document["ignored"]
    parts.append(
        f"<p>{ignored:,} label{'s' if ignored != 1 else ''} ignored (the ignore value, such "
        "as -100, by design).</p>"
        if ignored
        else "<p>No label was ignored.</p>"
    )
    if rows:
        parts.append(
            table(
                ["what", "reason", "count", "the latest message"],
                rows,
                table_id="skipped",
                numeric=[2],
            )
        )
    else:
        parts.append('<p class="empty">Nothing was skipped: every batch and row was read.</p>')
    incomplete = document.get("incomplete_steps") or {}
    if incomplete.get("count"):
        listed = ", ".join(
            f"{entry['step']:,} (without {', '.join(entry['missing_workers'])})"
            for entry in incomplete["steps"][:10]
        )
        parts.append(
            f"<p class=warning>{incomplete['count']:,} steps were evaluated without all their "
            f"workers; their labels are not counted: {text(listed)}.</p>"
        )
    for warning in document.get("warnings") or ():
        parts.append(f'<p class="warning">{text(warning)}</p>')
    return section("left-out", "Ignored and skipped", "".join(parts))


def actions(document: Document) -> str:
    outcomes = document.get("actions") or []
    if not outcomes:
        return ""
    rows = []
    for position, outcome in enumerate(outcomes, start=1):
        action = dict(outcome["action"])
        name = action.pop("name", "?")
        rows.append(
            [
                f"{position}",
                text(name),
                text(", ".join(f"{k}={v}" for k, v in action.items())),
                f'<span class="outcome {text(outcome["outcome"])}">'
                f"{text(outcome['outcome'])}</span>",
                text(outcome.get("detail") or ""),
            ]
        )
    return section(
        "actions",
        "Actions",
        table(["#", "action", "settings", "outcome", "detail"], rows, table_id="actions"),
    )


def run_details(document: Document) -> str:
    params = document["parameters"]
    parameters = definitions(
        [(name, text("none" if value is None else value)) for name, value in params.items()],
        list_id="parameters",
    )
    run = definitions(
        [
            ("trial", f"<code>{text(document['trial'])}</code>"),
            ("reader", text(document.get("reader", ""))),
            ("modes", text(", ".join(document.get("selected_modes") or []) or "all")),
            ("started", text(document.get("started_at", ""))),
            ("updated", text(document.get("updated_at", ""))),
            ("ended by", text(document.get("ended_by") or "still running")),
            ("steps seen", f"{document.get('steps_seen', 0):,}"),
            (
                "resumed after step",
                text(
                    "\u2013"
                    if document.get("resumed_from_step") is None
                    else f"{document['resumed_from_step']:,}"
                ),
            ),
        ],
        list_id="run",
    )
    body = (
        f'<div class="columns"><div><h3>Parameters</h3>{parameters}</div>'
        f"<div><h3>The run</h3>{run}</div></div>"
    )
    return section("run", "Parameters and run", body)
