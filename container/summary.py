"""The command's summary on stdout: the verdict, the figures beside their thresholds, and the
classes that matter, read from the status document (so it never says anything the file does
not).

People read it after a run, so it answers their questions in order: did it fire, by how much
against which threshold, which classes now, how many samples stand behind each fraction, what
the failing classes are mistaken for, per mode, and where the whole story is (the status file).
With more than ``TABLE_LIMIT`` classes the table shows the worst-predicted and the scarcest.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

TABLE_LIMIT = 20
"""Classes shown in the table whole; above it, the worst and the scarcest ``SHOWN_EACH``."""
SHOWN_EACH = 10
MARK = "*"


def format_summary(
    document: Mapping[str, Any],
    *,
    status_file: str,
    warnings: Sequence[str] = (),
    report_file: str | None = None,
) -> str:
    """The summary of one status document, as lines of text; ``report_file``: where its HTML
    report was written."""
    lines = list(_lines(document, status_file, warnings))
    if report_file is not None:
        lines.append(f"  report: {report_file} (HTML; open it in a browser)")
    return "\n".join(lines) + "\n"


def _lines(document: Mapping[str, Any], status_file: str, warnings: Sequence[str]) -> Iterator[str]:
    yield f"ClassImbalance on {document['trial']}: {document['status']}"
    yield f"  {document['message']}"
    if document["error"]:
        yield f"  status file: {status_file} ({document['status']})"
        return
    params = document["parameters"]
    yield (
        f"  steps evaluated: {document['steps_evaluated']} (last step {document['last_step']}), "
        f"labels counted: {document['samples']} (the checks run from samples="
        f"{params['samples']}), ignored: {document['ignored']}"
    )
    classes: Mapping[str, Mapping[str, Any]] = document["classes"]
    current = document["current"]
    yield from _imbalance_line(document, classes, params)
    yield from _misprediction_line(classes, params, current)
    yield from _checks_now(current, document)
    for finding in document["findings"]:
        yield f"  first {finding['check']} finding, at step {finding['step']}: {finding['message']}"
    yield from _modes(document)
    failing = set(_above(classes, params, current))
    yield from _tables(classes, params["threshold_misprediction"], failing)
    yield from _actions(document)
    for warning in warnings:
        yield f"  warning: {warning}"
    skipped = document["skipped"]
    if skipped["rows"] or skipped["batches"]:
        yield f"  skipped rows: {skipped['rows']}, skipped batches: {skipped['batches']}"
    yield f"  status file: {status_file} ({document['status']})"


def _actions(document: Mapping[str, Any]) -> Iterator[str]:
    """What each action did, or that it was not carried out (never silent)."""
    for position, outcome in enumerate(document.get("actions") or (), start=1):
        name = outcome["action"]["name"]
        detail = outcome.get("detail") or (
            "not carried out yet: no issue so far" if outcome["outcome"] == "pending" else ""
        )
        yield f"  action {position} ({name}): {outcome['outcome']}{': ' + detail if detail else ''}"


def _label(index: str, entry: Mapping[str, Any]) -> str:
    return f"class {index} ({entry['name']})" if "name" in entry else f"class {index}"


def _imbalance_line(
    document: Mapping[str, Any], classes: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any]
) -> Iterator[str]:
    ratio = document["imbalance_ratio"]
    if ratio is None or not classes:
        return
    largest = max(classes, key=lambda c: (classes[c]["samples"], -int(c)))
    smallest = min(classes, key=lambda c: (classes[c]["samples"], int(c)))
    threshold = params["threshold_imbalance"]
    where = "above" if ratio > threshold else "not above"
    confidence, current = params.get("confidence"), document["current"]
    if confidence is not None and "imbalance" in current:  # the guarded check decides
        finding = current["imbalance"]
        where = (
            f"at confidence {confidence:g} at least {finding['value']:.4g}, above"
            if finding
            else f"not above (at confidence {confidence:g})"
        )
    yield (
        f"  imbalance ratio {ratio:.4g} = {classes[largest]['samples']}/"
        f"{classes[smallest]['samples']} (largest {_label(largest, classes[largest])}, "
        f"smallest {_label(smallest, classes[smallest])}): {where} threshold_imbalance "
        f"{threshold:g} now"
    )


def _above(
    classes: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any], current: Mapping[str, Any]
) -> list[str]:
    """The classes failing the misprediction check now: above the threshold, or with
    ``confidence`` the classes of the guarded check's current finding (whose lower bounds are
    above it), worst first."""
    if params.get("confidence") is not None and "misprediction" in current:
        finding = current["misprediction"]
        return [str(c) for c in finding["classes"]] if finding else []
    threshold = params["threshold_misprediction"]
    above = [c for c, e in classes.items() if e["misprediction_fraction"] > threshold]
    return sorted(above, key=lambda c: (-classes[c]["misprediction_fraction"], int(c)))


def _misprediction_line(
    classes: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any], current: Mapping[str, Any]
) -> Iterator[str]:
    if not classes:
        return
    threshold = params["threshold_misprediction"]
    above = _above(classes, params, current)
    guard = (
        f" at confidence {params['confidence']:g}" if params.get("confidence") is not None else ""
    )
    if not above:
        worst = max(classes, key=lambda c: (classes[c]["misprediction_fraction"], -int(c)))
        entry = classes[worst]
        yield (
            f"  no class above threshold_misprediction {threshold:g}{guard} now (worst "
            f"{_label(worst, entry)}: {entry['mispredicted']}/{entry['samples']} = "
            f"{entry['misprediction_fraction']:.3f})"
        )
        return
    shown = ", ".join(
        f"{_label(c, classes[c])}: {classes[c]['mispredicted']}/{classes[c]['samples']} = "
        f"{classes[c]['misprediction_fraction']:.3f}{_confused(classes[c], 1)}"
        for c in above[:5]
    )
    more = f" and {len(above) - 5} more" if len(above) > 5 else ""
    count = f"{len(above)} class{'es' if len(above) != 1 else ''}"
    yield f"  above threshold_misprediction {threshold:g}{guard} now: {count} ({shown}{more})"


def _confused(entry: Mapping[str, Any], limit: int) -> str:
    mistaken = entry.get("mistaken_for") or []
    if not mistaken:
        return ""
    parts = [
        f"{m['class']}{' (' + m['name'] + ')' if 'name' in m else ''} "
        f"{m['count']} = {m['fraction']:.3f}"
        for m in mistaken[:limit]
    ]
    return f", mostly mistaken for {', '.join(parts)}"


def _checks_now(current: Mapping[str, Any], document: Mapping[str, Any]) -> Iterator[str]:
    if not document["checks_active"]:
        yield (
            f"  checks not run yet: {document['samples']} labels, fewer than samples="
            f"{document['parameters']['samples']}"
        )
        return
    verdicts = ", ".join(
        f"{check} {'holds' if finding else 'does not hold'}" for check, finding in current.items()
    )
    yield f"  checks now: {verdicts}"


def _modes(document: Mapping[str, Any]) -> Iterator[str]:
    modes: Mapping[str, Mapping[str, Any]] = document["modes"]
    if len(modes) < 2:  # one mode's verdict is the combined one
        return
    for mode, figures in modes.items():
        ratio = figures["imbalance_ratio"]
        holding = [check for check, holds in figures["holds"].items() if holds]
        if not figures["checks_active"]:
            verdict = "too few labels for its own checks"
        else:
            verdict = f"holds: {', '.join(holding)}" if holding else "no check holds"
        ratio_text = "" if ratio is None else f", imbalance ratio {ratio:.4g}"
        yield f"  mode {mode}: {figures['samples']} labels{ratio_text}; {verdict}"


def _tables(
    classes: Mapping[str, Mapping[str, Any]], threshold: float, failing: set[str]
) -> Iterator[str]:
    if not classes:
        return
    if len(classes) <= TABLE_LIMIT:
        yield f"  classes ({MARK} above threshold_misprediction {threshold:g} now):"
        yield from _table(classes, list(classes), failing)
        return
    worst = sorted(classes, key=lambda c: (-classes[c]["misprediction_fraction"], int(c)))
    scarcest = sorted(classes, key=lambda c: (classes[c]["samples"], int(c)))
    yield (
        f"  {len(classes)} classes; the {SHOWN_EACH} worst-predicted ({MARK} above "
        f"threshold_misprediction {threshold:g} now):"
    )
    yield from _table(classes, worst[:SHOWN_EACH], failing)
    yield f"  the {SHOWN_EACH} scarcest:"
    yield from _table(classes, scarcest[:SHOWN_EACH], failing)
    yield "  (every class is in the status file)"


def _table(
    classes: Mapping[str, Mapping[str, Any]], shown: Sequence[str], failing: set[str]
) -> Iterator[str]:
    names = [classes[c].get("name", "") for c in shown]
    width = max((len(n) for n in names), default=0)
    name_header = f"  {'name':<{width}}" if width else ""
    yield f"      class{name_header}  samples  mispredicted  fraction  mistaken for"
    for c, name in zip(shown, names, strict=True):
        entry = classes[c]
        mark = MARK if c in failing else " "
        name_cell = f"  {name:<{width}}" if width else ""
        mistaken = ", ".join(
            f"{m['class']} ({m['count']}, {m['fraction']:.3f})" for m in entry["mistaken_for"]
        )
        yield (
            f"    {mark} {c:>5}{name_cell}  {entry['samples']:>7}  {entry['mispredicted']:>12}  "
            f"{entry['misprediction_fraction']:>8.3f}  {mistaken or '-'}"
        )
