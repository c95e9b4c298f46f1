"""Each report of the catalogue opened in a real headless Chromium: no console error, no request
beyond the page itself, every chart drawn, the page no wider than the window, and the numbers
read back from the rendered DOM equal to the status document's (and to the trial's truth).

Screenshots are kept as test artifacts in ``build/report-screenshots`` (or
``$REPORT_SCREENSHOTS``), never committed: look at them after a change to the page.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.container.report.browser import PageLoad, load_page, require_chromium
from tests.container.report.evaluations import CATALOGUE, Evaluation

require_chromium()

REPO = Path(__file__).resolve().parents[3]
SCREENSHOTS = Path(os.environ.get("REPORT_SCREENSHOTS", REPO / "build" / "report-screenshots"))

NUMBER = "(text) => Number(text.replace(/,/g, ''))"
READ_BACK = {
    "status": "document.getElementById('verdict').dataset.status",
    "verdict": "document.getElementById('verdict').textContent",
    "class_rows": f"""(() => {{
        const table = document.getElementById('classes');
        if (!table) return [];
        const headers = Array.from(table.tHead.rows[0].cells).map(c => c.textContent);
        const [labels, wrong] = [headers.indexOf('labels'), headers.indexOf('mispredicted')];
        return Array.from(table.tBodies[0].rows).map(tr => [tr.dataset.class,
            ({NUMBER})(tr.cells[labels].textContent), ({NUMBER})(tr.cells[wrong].textContent)]);
    }})()""",
    "class_names": """Array.from(document.querySelectorAll('#classes thead th')).map(
        th => th.textContent).includes('name')""",
    "bars": """Array.from(document.querySelectorAll(
        'svg[data-chart=distribution] rect.bar')).map(r => [r.dataset.key, +r.dataset.value])""",
    "path_bars": """Array.from(document.querySelectorAll(
        'svg[data-chart=distribution] path.bar')).map(p => +p.dataset.bars)""",
    "matrix": f"""Array.from(document.querySelectorAll('#confusion-matrix tbody tr')).map(tr =>
        Array.from(tr.querySelectorAll('td')).map(td => ({NUMBER})(td.textContent)))""",
    "ratio_points": """Array.from(document.querySelectorAll(
        'svg[data-chart=ratio] circle[data-point]')).map(c => [+c.dataset.point,
        +c.dataset.value])""",
    "chart_heights": """Array.from(document.querySelectorAll('svg.chart')).map(
        s => s.getBoundingClientRect().height)""",
    "overflow": "document.documentElement.scrollWidth - window.innerWidth",
    "tiles": """Object.fromEntries(Array.from(document.querySelectorAll('.tile')).map(
        t => [t.dataset.figure, t.querySelector('.value').textContent]))""",
    "sections": "Array.from(document.querySelectorAll('section')).map(s => s.id)",
    "actions": """Array.from(document.querySelectorAll('#actions tbody tr')).map(
        tr => tr.cells[3].textContent)""",
    "recent_rows": "document.querySelectorAll('#recent-classes tbody tr').length",
}


@pytest.fixture(scope="module")
def loads(evaluations: dict[str, Evaluation]) -> dict[str, PageLoad]:
    return {
        name: load_page(
            evaluation.report,
            expressions=READ_BACK,
            screenshot=SCREENSHOTS / f"{name}.png",
            width=1280,
            height=900,
        )
        for name, evaluation in evaluations.items()
    }


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_the_page_loads_cleanly_and_offline(
    loads: dict[str, PageLoad], evaluations: dict[str, Evaluation], name: str
) -> None:
    load = loads[name]
    assert load.errors == []
    assert load.requests == [evaluations[name].report.resolve().as_uri()]
    assert load.values["overflow"] <= 0  # nothing wider than the window
    assert all(height > 100 for height in load.values["chart_heights"])
    assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_the_rendered_numbers_are_the_status_documents(
    loads: dict[str, PageLoad], evaluations: dict[str, Evaluation], name: str
) -> None:
    values, evaluation = loads[name].values, evaluations[name]
    document: dict[str, Any] = evaluation.document
    assert values["status"] == document["status"]
    classes = document["classes"]
    assert values["class_rows"] == [
        [c, e["samples"], e["mispredicted"]] for c, e in classes.items()
    ]
    if document["status"] != "Error":  # the truth, counted with numpy as the trial was written
        assert {int(c): n for c, n, _ in values["class_rows"]} == evaluation.truth.samples
    drawn = dict(values["bars"])
    assert len(drawn) + sum(values["path_bars"]) == len(classes)
    assert all(drawn[c] == classes[c]["samples"] for c in drawn)
    matrix = document["confusion_matrix"]
    assert values["matrix"] == [
        [*row, other] for row, other in zip(matrix["counts"], matrix["other"], strict=True)
    ]
    history = {p["step"]: p["imbalance_ratio"] for p in document["history"]}
    drawn_ratio = dict(map(tuple, values["ratio_points"]))
    if document["samples"]:
        assert set(history) <= set(drawn_ratio)
        assert all(abs(drawn_ratio[s] - r) <= 1e-5 * r for s, r in history.items() if r)
    else:
        assert drawn_ratio == {}


def test_the_demo_shows_the_issue_and_its_ratio(loads: dict[str, PageLoad]) -> None:
    values = loads["demo"].values
    assert values["verdict"] == "Issues found"
    assert not values["class_names"]  # no names configured: no empty column
    assert loads["balanced"].values["class_names"]
    assert values["sections"][:3] == ["checks", "distribution", "misprediction"]
    assert "confusion" in values["sections"]


def test_the_opt_in_page_shows_the_window_and_the_action(loads: dict[str, PageLoad]) -> None:
    values = loads["every_opt_in_check"].values
    assert "opt-in" in values["sections"]
    assert values["recent_rows"] == 4
    assert values["actions"] == ["would_run"]


def test_the_error_page_shows_no_chart_of_nothing(loads: dict[str, PageLoad]) -> None:
    values = loads["error"].values
    assert values["verdict"] == "Error"
    assert values["chart_heights"] == []
    assert values["tiles"]["samples"] == "0"
