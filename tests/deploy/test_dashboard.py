"""The Grafana dashboard against Grafana's JSON model: what a dashboard must have to load, its
panels' layout and data source, and queries that name only metrics the evaluator exports. (The
queries themselves run against a real Prometheus in test_live_prometheus.)"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.dashboard import GRAFANA_VARIABLES, as_promql, load, queries, variables_used
from tests.deploy.metric_names import PROCESS_METRICS, exported_metric_names

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"stat", "timeseries", "bargauge", "table", "text", "row", "gauge", "state-timeline"}
"""Panel types built into Grafana, so the dashboard needs no plugin."""


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load()


def test_the_dashboard_has_what_grafana_needs_to_load_it(dashboard: dict[str, Any]) -> None:
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["schemaVersion"] >= 36, "data source references by uid"
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dashboard["uid"])
    assert dashboard["title"]
    assert "id" not in dashboard or dashboard["id"] is None, "an id is given by Grafana"
    assert isinstance(dashboard["panels"], list)
    assert dashboard["panels"]
    assert set(dashboard["time"]) == {"from", "to"}
    assert isinstance(dashboard["templating"]["list"], list)


def test_panel_ids_and_ref_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]


def test_panels_fit_the_24_column_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert set(grid) == {"x", "y", "w", "h"}, panel["title"]
        assert grid["x"] >= 0
        assert grid["w"] > 0
        assert grid["h"] > 0
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_panel_queries_the_chosen_prometheus(dashboard: dict[str, Any]) -> None:
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE
            assert target["expr"].strip()
            assert isinstance(target["refId"], str)
        assert set(panel["fieldConfig"]) == {"defaults", "overrides"}


def test_the_variables_are_defined_and_chain(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    source = variables["datasource"]
    assert source["type"] == "datasource"
    assert source["query"] == "prometheus"
    metric = {
        "job": "classimbalance_status",
        "training_job": "classimbalance_evaluation_info",
        "instance": "classimbalance_evaluation_info",
    }
    for name, series in metric.items():
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert variable["query"]["query"].startswith(f"label_values({series}")
        assert variable["definition"] == variable["query"]["query"]
    assert "$job" in variables["training_job"]["query"]["query"], "jobs of the chosen targets"
    instances = variables["instance"]["query"]["query"]
    assert "$job" in instances, "the evaluators of the chosen targets"
    assert "$training_job" in instances, "and of the chosen training jobs"
    defined = set(variables) | set(GRAFANA_VARIABLES)
    for query in queries(dashboard):
        assert variables_used(query.expr) <= defined, query
        assert 'job=~"$job"' in query.expr, query
        assert 'instance=~"$instance"' in query.expr, query


def test_queries_name_only_exported_metrics(dashboard: dict[str, Any]) -> None:
    known = exported_metric_names() | PROCESS_METRICS
    for query in queries(dashboard):
        names = re.findall(r"\b((?:classimbalance|process)_[a-z_]+)\b", query.expr)
        assert names, query
        for name in names:
            assert name in known, f"{query.panel}: {name} is not exported"


def test_the_dashboard_shows_what_the_issue_asks_for(dashboard: dict[str, Any]) -> None:
    """Per-class samples and misprediction fraction, the imbalance ratio over time, status."""
    by_metric: dict[str, set[str]] = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\bclassimbalance_[a-z_]+", target["expr"]):
                by_metric.setdefault(name, set()).add(panel["type"])
    assert "timeseries" in by_metric["classimbalance_imbalance_ratio"]
    assert by_metric["classimbalance_class_samples"]
    assert by_metric["classimbalance_class_misprediction_ratio"]
    assert "stat" in by_metric["classimbalance_status"]
    assert "bargauge" in by_metric["classimbalance_class_confusion_ratio"], "top confusions"
    assert by_metric["classimbalance_mode_issue_current"], "per-mode verdicts"
    assert by_metric["classimbalance_mode_imbalance_ratio"]
    assert set(by_metric) >= {
        "classimbalance_imbalance_threshold_ratio",
        "classimbalance_misprediction_threshold_ratio",
        "classimbalance_issue_current",
    }


def test_queries_become_plain_promql_for_the_live_test(dashboard: dict[str, Any]) -> None:
    for query in queries(dashboard):
        promql = as_promql(query.expr, {"job": "classimbalance-rule", "instance": ".*"})
        assert "$" not in promql, promql
