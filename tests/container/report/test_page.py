"""The page as markup: self-contained, within its size, saying what the status document says,
escaping what the trial and the settings put in it, and refreshing only while live."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from container.app import run
from container.report import render_report
from tests.container.report.evaluations import CATALOGUE, Evaluation

SIZE_LIMIT = 400_000
"""Bytes a page may take with 1,000 classes: 'a few hundred KB'."""


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def having(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())
        ]


def parse(page: str) -> Elements:
    elements = Elements()
    elements.feed(page)
    elements.close()
    return elements


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_the_page_is_self_contained(evaluations: dict[str, Evaluation], name: str) -> None:
    evaluation = evaluations[name]
    page = evaluation.report.read_text(encoding="utf-8")
    elements = parse(page)
    assert not elements.having("script")
    assert not elements.having("link")
    assert not elements.having("img")
    assert not elements.having("iframe")
    for tag, attrs in elements.tags:
        for key, value in attrs.items():
            if key == "xmlns":
                continue
            assert not re.match(r"\s*(https?:|//|ftp:)", value or ""), (tag, key, value)
    assert "url(" not in page
    assert "@import" not in page
    assert len(page.encode()) < SIZE_LIMIT


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_the_page_says_what_the_status_says(evaluations: dict[str, Evaluation], name: str) -> None:
    evaluation = evaluations[name]
    document = evaluation.document
    elements = parse(evaluation.report.read_text(encoding="utf-8"))
    [verdict] = elements.having("span", id="verdict")
    assert verdict["data-status"] == document["status"]
    rows = [a["data-class"] for t, a in elements.tags if t == "tr" and "data-class" in a]
    classes = document["classes"]
    matrix = document["confusion_matrix"]["classes"]
    assert rows == list(classes) + [str(c) for c in matrix]  # the class table, then the matrix
    counted = {str(c): n for c, n in evaluation.truth.samples.items()}
    if document["status"] == "Error":  # nothing was counted: the regex matched no tensor
        counted = {}
    assert {c: e["samples"] for c, e in classes.items()} == counted
    checks = [a["data-check"] for t, a in elements.tags if "data-check" in a]
    assert checks == list(dict.fromkeys([*document["current"], *document_checks(document)]))


def document_checks(document: dict[str, Any]) -> list[str]:
    return [finding["check"] for finding in document["findings"]]


def test_the_error_page_names_the_error(evaluations: dict[str, Evaluation]) -> None:
    evaluation = evaluations["error"]
    text = " ".join(parse(evaluation.report.read_text()).text)
    assert "no tensor in the trial matches labels_regex 'targets$'" in text
    assert "No label was counted" in text


def test_hostile_names_and_messages_are_escaped(evaluations: dict[str, Evaluation]) -> None:
    document = json.loads(json.dumps(evaluations["balanced"].document))
    hostile = '<script>alert("x")</script><img src=http://127.0.0.1:9/x>'
    document["trial"] = hostile
    for entry in document["classes"].values():
        entry["name"] = hostile
    document["warnings"] = [hostile]
    elements = parse(render_report(document))
    assert not elements.having("script")
    assert not elements.having("img")
    assert hostile in "".join(elements.text)


def test_only_a_live_page_of_a_running_evaluation_refreshes(
    evaluations: dict[str, Evaluation],
) -> None:
    document = dict(evaluations["demo"].document)
    refresh = {"http-equiv": "refresh"}
    assert not parse(render_report(document, live=True)).having("meta", **refresh)
    running = {**document, "terminal": False, "status": "InProgress"}
    assert parse(render_report(running, live=True)).having("meta", **refresh)
    assert not parse(render_report(running)).having("meta", **refresh)


def test_a_status_document_of_one_step_has_no_chart_over_steps(
    evaluations: dict[str, Evaluation],
) -> None:
    document = dict(evaluations["demo"].document)
    document.update(history=[], last_step=0, steps_evaluated=1)
    page = render_report(document)
    assert 'data-chart="ratio"' not in page
    assert "need two evaluated steps" in page


def test_the_thousand_class_page_draws_a_dot_per_class(
    evaluations: dict[str, Evaluation],
) -> None:
    evaluation = evaluations["thousand_classes"]
    page = evaluation.report.read_text()
    classes = evaluation.document["classes"]
    dots = sum(int(n) for n in re.findall(r'data-dots="(\d+)"', page))
    titled = len(re.findall(r'<circle class="dot above" data-key=', page))
    assert dots + titled == len(classes)
    bars = sum(int(n) for n in re.findall(r'data-bars="(\d+)"', page))
    marked = len(re.findall(r'<rect class="bar (?:largest|smallest)"', page))
    assert bars + marked == len(classes)


def test_the_report_is_written_beside_the_status_file_and_in_the_report_folder(
    tmp_path: Path,
) -> None:
    managed = tmp_path / "opt-ml" / "processing" / "output" / "rule"
    managed.mkdir(parents=True)
    evaluation = CATALOGUE["balanced"](tmp_path / "run")
    assert evaluation.report == tmp_path / "run" / "status.html"
    assert evaluation.report.exists()
    # the managed service's folder, named by report_dir
    settings = evaluation.settings.changed(
        report_dir=str(managed), report_file=str(tmp_path / "r.html")
    )
    outcome = run(settings)
    first = (tmp_path / "r.html").read_text()
    assert (managed / "ClassImbalance.html").read_text() == first
    assert outcome.document["status"] in first


def test_html_report_false_writes_no_page(tmp_path: Path) -> None:
    evaluation = CATALOGUE["balanced"](tmp_path / "run")
    evaluation.report.unlink()
    run(evaluation.settings.changed(html_report=False))
    assert not evaluation.report.exists()


def test_a_page_of_20000_classes_lists_a_bounded_table_and_stays_small(
    evaluations: dict[str, Evaluation],
) -> None:
    document = json.loads(json.dumps(evaluations["thousand_classes"].document))
    rng = __import__("random").Random(3)
    document["classes"] = {
        str(c): {
            "samples": n,
            "mispredicted": (w := rng.randint(0, n)),
            "misprediction_fraction": round(w / n, 6),
            "mistaken_for": [],
        }
        for c in range(20_000)
        for n in [rng.randint(1, 500)]
    }
    page = render_report(document)
    rows = re.findall(r'<tr data-class="\d+"', page.split('id="confusion-matrix"')[0])
    assert 400 < len(rows) <= 1200  # the three sets overlap
    assert f"{len(rows):,} of 20,000 classes (the 400 worst-predicted, the 400 scarcest" in page
    assert len(page.encode()) < 1_500_000


def test_a_huge_threshold_does_not_stretch_the_distribution_axis(
    evaluations: dict[str, Evaluation],
) -> None:
    document = json.loads(json.dumps(evaluations["demo"].document))
    document["parameters"]["threshold_imbalance"] = 1e300
    page = render_report(document)
    distribution = page.split('data-chart="distribution"')[1].split("</svg>")[0]
    assert 'class="threshold"' not in distribution
    assert distribution.count('class="tick"') < 40


@pytest.mark.parametrize("name", ["demo", "balanced", "every_opt_in_check", "error"])
def test_the_tiles_are_coloured_by_what_the_checks_say_now(
    evaluations: dict[str, Evaluation], name: str
) -> None:
    document = evaluations[name].document
    elements = parse(evaluations[name].report.read_text())
    tiles = {
        a["data-figure"]: (a["class"] or "").split() for t, a in elements.tags if "data-figure" in a
    }
    current = document["current"] or {}
    for figure, check in (("ratio", "imbalance"), ("worst", "misprediction")):
        expected = "" if check not in current else ("bad" if current[check] else "good")
        assert [c for c in tiles[figure] if c in ("bad", "good")] == (
            [expected] if expected else []
        )
