"""The report's per-class sections: the class distribution, each class's mispredicted fraction,
the table behind both, and the confusion between the classes that matter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from container.report import svg
from container.report.markup import (
    Document,
    class_label,
    counted,
    details,
    fraction,
    section,
    table,
    text,
)

SKEWED = 20.0
"""Largest over smallest class count above which the distribution is drawn on a log scale."""
OPEN_TABLE = 50
"""Classes up to which the class table is shown open."""
TOP_CONFUSIONS_SHOWN = 15
TABLE_ROWS = 1200
"""Classes the class table lists whole; above, a third each of the worst, scarcest, largest."""
BARS_UP_TO = 100
"""Classes up to which each class's mispredicted fraction is a bar; above, a dot per class."""


def _classes(document: Document) -> dict[str, Mapping[str, Any]]:
    return dict(document["classes"])


def extremes(classes: Mapping[str, Mapping[str, Any]]) -> tuple[str, str] | None:
    """(largest, smallest) class by samples, ties to the lower index (as the rule decides)."""
    if not classes:
        return None
    largest = max(classes, key=lambda c: (classes[c]["samples"], -int(c)))
    smallest = min(classes, key=lambda c: (classes[c]["samples"], int(c)))
    return largest, smallest


def distribution(document: Document) -> str:
    classes = _classes(document)
    if not classes:
        return section(
            "distribution",
            "Class distribution",
            '<p class="empty">No label was counted, so there is no distribution to show.</p>',
        )
    largest, smallest = extremes(classes) or ("", "")
    total = sum(entry["samples"] for entry in classes.values())
    counts = [entry["samples"] for entry in classes.values()]
    ratio = max(counts) / min(counts)
    log = ratio > SKEWED
    threshold = document["parameters"]["threshold_imbalance"]
    floor = classes[largest]["samples"] / threshold
    # The line at largest / threshold_imbalance only where it tells something: a threshold set
    # huge to turn the check off must not stretch the axis down to a millionth of a label.
    shown_floor = floor if min(counts) / 10 <= floor else None
    bars = [
        svg.Bar(
            c,
            entry["samples"],
            f"{class_label(c, entry)}: {entry['samples']:,} labels "
            f"({100 * entry['samples'] / total:.2f}%)",
            "largest" if c == largest else "smallest" if c == smallest else "",
        )
        for c, entry in classes.items()
    ]
    keys = list(classes)
    summary = (
        f"Labels per class over {counted(len(classes), 'class')}: largest "
        f"{class_label(largest)} with "
        f"{classes[largest]['samples']:,}, smallest {class_label(smallest)} with "
        f"{classes[smallest]['samples']:,}, ratio {svg.number(ratio)}"
    )
    frame = svg.Frame(
        "distribution",
        summary,
        svg.value_axis([*counts] + ([] if shown_floor is None else [shown_floor]), log=log),
        "labels" + (" (log scale)" if log else ""),
        shown_floor,
        f"largest ÷ threshold_imbalance {threshold:g}",
    )
    chart = svg.bar_chart(
        bars,
        frame,
        x_label="class",
        annotate=[
            (keys.index(largest), f"largest: {class_label(largest)}"),
            *(
                [(keys.index(smallest), f"smallest: {class_label(smallest)}")]
                if smallest != largest
                else []
            ),
        ],
    )
    lead = (
        f"{total:,} labels over {counted(len(classes), 'class')}. The imbalance ratio is the "
        f"largest class over the smallest: <strong>{classes[largest]['samples']:,} / "
        f"{classes[smallest]['samples']:,} = {text(svg.number(ratio))}</strong>, against "
        f"threshold_imbalance {threshold:g}."
        + " A class whose bar ends below the dashed line (the largest class's count over "
        f"threshold_imbalance) makes the ratio exceed {threshold:g}."
        + (
            f" Drawn on a log scale: the classes differ by more than {SKEWED:g}\u00d7."
            if log
            else ""
        )
    )
    return section("distribution", "Class distribution", chart, lead=lead)


def misprediction(document: Document, table_behind: str = "") -> str:
    """Each class's mispredicted fraction, and ``table_behind`` (the class table) below it."""
    classes = _classes(document)
    if not classes:
        return ""
    threshold = document["parameters"]["threshold_misprediction"]
    above = [c for c, e in classes.items() if e["misprediction_fraction"] > threshold]
    summary = (
        f"Mispredicted fraction per class; {len(above)} of {len(classes)} classes above "
        f"threshold_misprediction {threshold:g}"
    )
    threshold_label = f"threshold_misprediction {threshold:g}"
    if len(classes) > BARS_UP_TO:
        chart = _misprediction_scatter(classes, above, summary, threshold, threshold_label)
    else:
        chart = svg.bar_chart(
            [
                svg.Bar(
                    c,
                    entry["misprediction_fraction"],
                    _misprediction_tooltip(c, entry),
                    "above" if c in above else "",
                )
                for c, entry in classes.items()
            ],
            svg.Frame(
                "misprediction",
                summary,
                svg.Axis(1.0, False),
                "mispredicted fraction",
                threshold,
                threshold_label,
            ),
            x_label="class",
        )
    worst = max(classes, key=lambda c: (classes[c]["misprediction_fraction"], -int(c)))
    entry = classes[worst]
    lead = (
        f"<strong>{len(above)}</strong> of {len(classes)} classes above "
        f"threshold_misprediction {threshold:g}; the worst is {text(class_label(worst, entry))}"
        f" with {entry['mispredicted']:,} of {entry['samples']:,} mispredicted "
        f"({entry['misprediction_fraction']:.3f})."
    )
    return section(
        "misprediction", "Mispredicted fraction per class", chart + table_behind, lead=lead
    )


def _misprediction_tooltip(c: str, entry: Mapping[str, Any]) -> str:
    return (
        f"{class_label(c, entry)}: {entry['mispredicted']:,} of {entry['samples']:,} "
        f"mispredicted = {entry['misprediction_fraction']:.3f}"
    )


def _misprediction_scatter(
    classes: Mapping[str, Mapping[str, Any]],
    above: list[str],
    summary: str,
    threshold: float,
    threshold_label: str,
) -> str:
    """Many classes: a dot per class at (labels, fraction), so a fraction of 1/1 and one of
    900/1,000 are told apart by how much evidence stands behind them."""
    failing = set(above)
    counts = [entry["samples"] for entry in classes.values()]
    dots = [
        svg.Dot(
            c,
            entry["samples"],
            entry["misprediction_fraction"],
            _misprediction_tooltip(c, entry),
            "above" if c in failing else "",
        )
        for c, entry in classes.items()
    ]
    frame = svg.Frame(
        "misprediction",
        summary + " (one dot per class, by its labels)",
        svg.Axis(1.0, False),
        "mispredicted fraction",
        threshold,
        threshold_label,
        height=300,
    )
    return svg.scatter_chart(
        dots,
        frame,
        x_axis=svg.value_axis(counts, log=True),
        x_label="labels of the class (log scale)",
    )


def class_table(document: Document) -> str:
    classes = _classes(document)
    if not classes:
        return ""
    total = sum(entry["samples"] for entry in classes.values()) or 1
    recent = document.get("recent_window") is not None
    named = any("name" in entry for entry in classes.values())
    headers = ["class", "name", "labels", "share", "mispredicted", "fraction", "mistaken for"]
    headers += ["recent fraction"] if recent else []
    listed, note = _listed(classes)
    rows = [_class_row(c, classes[c], total, recent) for c in listed]
    numeric = [0, 2, 3, 4, 5] + ([7] if recent else [])
    if not named:  # no names configured: no empty column
        headers.pop(1)
        rows = [row[:1] + row[2:] for row in rows]
        numeric = [i - 1 if i > 1 else i for i in numeric]
    threshold = document["parameters"]["threshold_misprediction"]
    ends = extremes(classes)
    attributes = [_row_attributes(c, classes[c], threshold, ends) for c in listed]
    body = table(headers, rows, table_id="classes", numeric=numeric, row_attributes=attributes)
    return details(
        f"The numbers behind both charts: {note}",
        body,
        open_=len(classes) <= OPEN_TABLE,
    )


def _listed(classes: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], str]:
    """The classes the table lists, in index order, and what it says of them: all of them up to
    ``TABLE_ROWS``; above, the worst-predicted, the scarcest and the largest (a page of 20,000
    rows would weigh megabytes; the status file has every class)."""
    if len(classes) <= TABLE_ROWS:
        return list(classes), f"all {counted(len(classes), 'class')}"
    each = TABLE_ROWS // 3
    worst = sorted(classes, key=lambda c: (-classes[c]["misprediction_fraction"], int(c)))
    scarce = sorted(classes, key=lambda c: (classes[c]["samples"], int(c)))
    chosen = set(worst[:each]) | set(scarce[:each]) | set(scarce[-each:])
    listed = sorted(chosen, key=int)
    return listed, (
        f"{len(listed):,} of {len(classes):,} classes (the {each} worst-predicted, the {each} "
        f"scarcest and the {each} largest; the status file has every class)"
    )


def _class_row(c: str, entry: Mapping[str, Any], total: int, recent: bool) -> list[str]:
    mistaken = ", ".join(
        f"{text(class_label(m['class'], m))} \u00d7{m['count']:,}" for m in entry["mistaken_for"]
    )
    row = [
        text(c),
        text(entry.get("name", "")),
        f"{entry['samples']:,}",
        f"{100 * entry['samples'] / total:.2f}%",
        f"{entry['mispredicted']:,}",
        fraction(entry["misprediction_fraction"]),
        mistaken or "\u2013",
    ]
    if recent:
        row.append(fraction(entry.get("recent", {}).get("misprediction_fraction")))
    return row


def _row_attributes(
    c: str, entry: Mapping[str, Any], threshold: float, ends: tuple[str, str] | None
) -> str:
    """The row's class, and its styles: above the threshold, the largest or the smallest."""
    largest, smallest = ends or ("", "")
    styles = [
        "above" if entry["misprediction_fraction"] > threshold else "",
        "largest" if c == largest else "smallest" if c == smallest else "",
    ]
    style = " ".join(s for s in styles if s)
    return f' data-class="{text(c)}"' + (f' class="{style}"' if style else "")


def confusion(document: Document) -> str:
    matrix = document.get("confusion_matrix") or {}
    classes = _classes(document)
    shown = [str(c) for c in matrix.get("classes", ())]
    if not shown or not classes:
        return ""
    head = (
        "".join(f'<th scope="col" class="num">{text(c)}</th>' for c in shown)
        + '<th scope="col" class="num">other</th>'
    )
    body = []
    for c, row, other in zip(shown, matrix["counts"], matrix["other"], strict=True):
        samples = sum(row) + other or 1
        cells = []
        for column, count in zip(shown, row, strict=True):
            share = count / samples
            kind = "right" if column == c else "wrong"
            cells.append(
                f'<td class="num cell {kind}" style="--share:{share:.3f}" '
                f'title="{text(class_label(c))} predicted as {text(class_label(column))}: '
                f'{count:,} of {samples:,} ({share:.3f})">{count:,}</td>'
            )
        cells.append(
            f'<td class="num cell wrong" style="--share:{other / samples:.3f}">{other:,}</td>'
        )
        body.append(
            f'<tr data-class="{text(c)}"><th scope="row">'
            f"{text(class_label(c, classes.get(c)))}</th>{''.join(cells)}</tr>"
        )
    grid = (
        '<div class="scroll"><table id="confusion-matrix" class="matrix"><thead><tr>'
        f'<th scope="col">label ↓ / predicted →</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
    lead = (
        f"Labels (rows) against predictions (columns) for the {len(shown)} classes that matter:"
        " the largest and the smallest, the worst-predicted and what each is most mistaken "
        "for. Shading is the share of the row's labels; <em>other</em> sums the predictions "
        "of classes not shown."
    )
    return section("confusion", "Top confusions", grid + _confusion_table(classes), lead=lead)


def _confusion_table(classes: Mapping[str, Mapping[str, Any]]) -> str:
    pairs = [(m["count"], c, m) for c, entry in classes.items() for m in entry["mistaken_for"]]
    pairs.sort(key=lambda p: (-p[0], int(p[1]), p[2]["class"]))
    if not pairs:
        return '<p class="empty">No label was mispredicted.</p>'
    rows = [
        [
            text(class_label(c, classes[c])),
            text(class_label(m["class"], m)),
            f"{m['count']:,}",
            f"{classes[c]['samples']:,}",
            fraction(m["fraction"]),
        ]
        for _, c, m in pairs[:TOP_CONFUSIONS_SHOWN]
    ]
    return table(
        ["label", "predicted as", "times", "of labels", "fraction"],
        rows,
        table_id="top-confusions",
        numeric=[2, 3, 4],
        caption=f"The {len(rows)} most frequent mispredictions (up to 3 per class)",
    )
