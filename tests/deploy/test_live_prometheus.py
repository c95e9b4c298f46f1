"""A real Prometheus scrapes an evaluator that follows a live trial, with the alerting rules
loaded: the imbalance ratio read back through Prometheus' HTTP API is the one the written
counts give, the imbalance alert goes pending, and every dashboard query runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.deploy.dashboard import as_promql, load, queries
from tests.deploy.prometheus import Prometheus, running_prometheus, wait_until
from tests.deploy.tools import REPO, required_tool
from tests.integration.processes import (
    free_port,
    read_truth,
    start_evaluator,
    start_writer,
    stop_process,
)

pytestmark = pytest.mark.slow

JOB = "classimbalance-rule"
"""The job label the kit's PodMonitor gives, which the rules and dashboard use."""
EXAMPLE = REPO / "config" / "prometheus" / "prometheus.yml"
STEPS = 30


def example_config(port: int) -> str:
    """config/prometheus/prometheus.yml as the README runs it, with its evaluator on ``port``,
    every second instead of every 5 s, and the rules file's path made absolute."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["global"] = {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
    }
    config["rule_files"] = [str(EXAMPLE.parent / name) for name in config["rule_files"]]
    [scrape] = config["scrape_configs"]
    assert scrape["job_name"] == JOB
    scrape["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    return yaml.safe_dump(config)


class Live:
    def __init__(self, prometheus: Prometheus, truth: Path, status: Path) -> None:
        self.prometheus, self.truth, self.status = prometheus, truth, status


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    executable = required_tool("prometheus")
    folder = tmp_path_factory.mktemp("live")
    trial, truth, status = folder / "trial", folder / "truth.jsonl", folder / "status.json"
    port = free_port()
    config = example_config(port)
    # Without the end marker the evaluator keeps following, serving the final counts.
    writer = start_writer(trial, truth, steps=STEPS, interval=0.05, workers=2, end=False)
    evaluator = start_evaluator(trial, status, port, "--samples", "200", "--idle-timeout", "120")
    try:
        with running_prometheus(executable, folder / "prometheus", config) as prometheus:
            assert writer.wait(60) == 0
            yield Live(prometheus, truth, status)
    finally:
        stop_process(writer)
        stop_process(evaluator)


def expected_ratio(truth: Path) -> float:
    entries = read_truth(truth)
    totals: list[int] = [sum(entry["samples"][c] for entry in entries) for c in range(5)]
    seen = [count for count in totals if count > 0]
    return max(seen) / min(seen)


def test_the_imbalance_ratio_reads_back_through_prometheus(live: Live) -> None:
    expected = expected_ratio(live.truth)
    assert expected > 10, "the writer's trial is imbalanced beyond the threshold"

    def final_ratio() -> float | None:
        value = live.prometheus.value(f'classimbalance_imbalance_ratio{{job="{JOB}"}}')
        return value if value is not None and abs(value - expected) < 1e-9 else None

    assert wait_until("the final ratio in Prometheus", final_ratio, 60) == pytest.approx(expected)
    assert live.prometheus.value(f'up{{job="{JOB}"}}') == 1
    issues = 'classimbalance_status{classimbalance_status="IssuesFound"}'
    assert live.prometheus.value(issues) == 1
    samples = sum(sum(entry["samples"]) for entry in read_truth(live.truth))
    assert live.prometheus.value("classimbalance_samples_total") == samples
    assert live.prometheus.value("classimbalance_last_evaluated_step") == STEPS - 1


def test_the_alerting_rules_evaluate_and_the_imbalance_alert_goes_pending(live: Live) -> None:
    def pending() -> list[dict[str, object]] | None:
        alerts = live.prometheus.query(
            'ALERTS{alertname="ClassImbalanceImbalanceDetected", alertstate="pending"}'
        )
        return alerts or None

    [alert] = wait_until("the imbalance alert to be pending", pending, 60)
    assert alert["metric"]["job"] == JOB  # type: ignore[index]
    groups = live.prometheus.get("/api/v1/rules")["groups"]
    evaluated = [rule for group in groups for rule in group["rules"]]
    assert len(evaluated) == 13
    for rule in evaluated:
        assert rule["health"] == "ok", rule
        assert not rule.get("lastError"), rule
    firing = {rule["name"] for rule in evaluated if rule["state"] == "firing"}
    assert not firing & {"ClassImbalanceRuleError", "ClassImbalanceEvaluatorDown"}


def test_every_dashboard_query_runs_and_the_main_panels_have_data(live: Live) -> None:
    wait_until(
        "the first scrape",
        lambda: live.prometheus.value("classimbalance_imbalance_ratio"),
        30,
    )
    dashboard = load()
    empty = set()
    for query in queries(dashboard):
        promql = as_promql(query.expr, {"job": JOB, "instance": ".*"})
        if not live.prometheus.query(promql):  # a PromQL error raises
            empty.add(query.panel)
    assert not empty & {
        "Status",
        "Imbalance ratio",
        "Imbalance ratio over time",
        "Misprediction fraction per class",
        "Samples per class",
        "Labels counted",
        "Checks per mode",
        "Imbalance ratio per mode",
    }
    # The variables' label_values(classimbalance_status, job) and (..., instance).
    jobs = live.prometheus.get("/api/v1/label/job/values", **{"match[]": "classimbalance_status"})
    assert jobs == [JOB]
    [status] = live.prometheus.query(
        as_promql(
            next(q.expr for q in queries(dashboard) if q.panel == "Status"),
            {
                "job": JOB,
                "instance": ".*",
            },
        )
    )
    assert status["metric"]["classimbalance_status"] == "IssuesFound"
