"""The report's charts over steps, from the status document's history points.

The points are exact figures at the steps they keep (``evaluator.core.history``); the last one
is the document's own figures when the history has not kept the last step, so a chart always
ends where the verdict stands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from container.report import svg
from container.report.classes import SKEWED
from container.report.markup import Document, class_label, details, section, table, text

WORST_LINES = 5
"""Classes drawn as lines in the misprediction chart: the worst-predicted now."""


def points(document: Document) -> list[dict[str, Any]]:
    """The history points, with the document's current figures as a last point."""
    kept = [dict(point) for point in document.get("history") or ()]
    last = document["last_step"]
    if last is None or (kept and kept[-1]["step"] == last):
        return kept
    classes: Mapping[str, Mapping[str, Any]] = document["classes"]
    worst = sorted(classes, key=lambda c: (-classes[c]["misprediction_fraction"], int(c)))
    current = document["current"] or {}
    kept.append(
        {
            "step": last,
            "evaluated": document["steps_evaluated"],
            "samples": document["samples"],
            "imbalance_ratio": document["imbalance_ratio"],
            "classes": [
                [int(c), classes[c]["samples"], classes[c]["mispredicted"]] for c in worst[:10]
            ],
            "holding": [check for check, finding in current.items() if finding],
            "checks_active": document["checks_active"],
            "pinned": False,
        }
    )
    return kept


def markers(document: Document, kept: Sequence[Mapping[str, Any]]) -> list[svg.Marker]:
    found = [
        svg.Marker(f["step"], f"{f['check']} first held (step {f['step']:,})")
        for f in document["findings"]
    ]
    start = next((p for p in kept if p["checks_active"]), None)
    if start is not None and start is not kept[0]:
        samples = document["parameters"]["samples"]
        found.append(
            svg.Marker(
                start["step"],
                f"checks run from step {start['step']:,} (samples={samples:,})",
                "start",
            )
        )
    return found


def over_steps(document: Document) -> str:
    kept = points(document)
    if "history" not in document:  # a status file of a version that kept no history
        return section(
            "over-steps",
            "Over steps",
            '<p class="empty">This status file was written before the evaluator kept a history '
            "of its figures over steps; evaluate again to see them.</p>",
        )
    if not document["samples"]:
        return section(
            "over-steps",
            "Over steps",
            '<p class="empty">No label was counted, so there is nothing to chart over steps.</p>',
        )
    if len(kept) < 2:
        return section(
            "over-steps",
            "Over steps",
            '<p class="empty">Charts over steps need two evaluated steps or more.</p>',
        )
    params = document["parameters"]
    flags = markers(document, kept)
    ratios = [(p["step"], p["imbalance_ratio"]) for p in kept]
    values = [r for _, r in ratios if r is not None]
    log = bool(values) and max([*values, params["threshold_imbalance"]]) / min(values) > SKEWED
    ratio_frame = svg.Frame(
        "ratio",
        f"The imbalance ratio at {len(kept)} steps, against threshold_imbalance "
        f"{params['threshold_imbalance']:g}",
        svg.value_axis(values, log=log, top=params["threshold_imbalance"] * 1.1),
        "imbalance ratio" + (" (log)" if log else ""),
        params["threshold_imbalance"],
        f"threshold_imbalance {params['threshold_imbalance']:g}",
        height=260,
    )
    ratio_chart = svg.line_chart(
        [svg.Series("imbalance ratio", ratios, 0)], ratio_frame, markers=flags
    )
    classes: Mapping[str, Mapping[str, Any]] = document["classes"]
    worst = sorted(classes, key=lambda c: (-classes[c]["misprediction_fraction"], int(c)))
    lines = [
        _class_line(int(c), kept, classes[c], style)
        for style, c in enumerate(worst[:WORST_LINES], start=1)
    ]
    lines.append(
        svg.Series(
            "the worst class at each step",
            [(p["step"], _fraction(p["classes"][0]) if p["classes"] else None) for p in kept],
            0,
            dashed=True,
        )
    )
    threshold = params["threshold_misprediction"]
    fraction_frame = svg.Frame(
        "worst-classes",
        f"The mispredicted fraction of the {len(lines) - 1} worst-predicted classes over steps, "
        f"against threshold_misprediction {threshold:g}",
        svg.Axis(1.0, False),
        "mispredicted fraction",
        threshold,
        f"threshold_misprediction {threshold:g}",
        height=260,
    )
    fraction_chart = svg.line_chart(lines, fraction_frame, markers=flags)
    every = document.get("history_every", 1)
    lead = (
        f"{len(kept)} points, one every {every:,} evaluated step{'s' if every != 1 else ''} "
        "(and the steps where the checks started and first held); each point's figures are "
        "exact at its step."
    )
    legend = "".join(
        f'<li><span class="swatch c{line.style}{" dashed" if line.dashed else ""}"></span>'
        f"{text(line.name)}</li>"
        for line in lines
    )
    gaps = (
        "<p class=note>A point keeps the 10 worst-predicted classes at its step: a line "
        "breaks where its class was not among them.</p>"
        if len(classes) > 10
        else ""
    )
    body = (
        f"<h3>Imbalance ratio</h3>{ratio_chart}"
        f"<h3>Mispredicted fraction of the worst classes</h3>{fraction_chart}"
        f'<ul class="legend">{legend}</ul>{gaps}{_history_table(kept)}'
    )
    return section("over-steps", "Over steps", body, lead=lead)


def _fraction(entry: Sequence[int]) -> float:
    _, samples, mispredicted = entry
    return mispredicted / samples if samples else 0.0


def _class_line(
    index: int, kept: Sequence[Mapping[str, Any]], entry: Mapping[str, Any], style: int
) -> svg.Series:
    found: list[tuple[int, float | None]] = []
    for point in kept:
        mine = next((e for e in point["classes"] if e[0] == index), None)
        found.append((point["step"], None if mine is None else _fraction(mine)))
    return svg.Series(class_label(index, entry), found, style)


def _history_table(kept: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for point in kept:
        worst = point["classes"][0] if point["classes"] else None
        rows.append(
            [
                f"{point['step']:,}",
                f"{point['samples']:,}",
                text(svg.number(point["imbalance_ratio"])),
                "\u2013"
                if worst is None
                else f"class {worst[0]}: {worst[2]:,}/{worst[1]:,} = {_fraction(worst):.3f}",
                text(
                    ", ".join(point["holding"])
                    or ("none" if point["checks_active"] else "not yet running")
                ),
            ]
        )
    body = table(
        ["step", "labels", "imbalance ratio", "worst class", "checks holding"],
        rows,
        table_id="history",
        numeric=[0, 1, 2],
        row_attributes=[f' data-step="{p["step"]}"' for p in kept],
    )
    return details(f"The numbers behind both charts: {len(kept)} points", body)
