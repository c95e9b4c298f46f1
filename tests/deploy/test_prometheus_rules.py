"""The alerting rules: promtool checks them and runs their unit tests; every metric they use is
one the evaluator exports."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import yaml

from tests.deploy.metric_names import exported_metric_names
from tests.deploy.tools import REPO, required_tool

FOLDER = REPO / "config" / "prometheus"
RULES = FOLDER / "classimbalance-rules.yaml"
TESTS = FOLDER / "classimbalance-rules.test.yaml"


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [required_tool("promtool"), *arguments],
        cwd=FOLDER,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_checks_the_example_prometheus_config() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_test_rules() -> None:
    result = promtool("test", "rules", TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_rules_use_only_exported_metrics() -> None:
    known = exported_metric_names()
    for rule in rules():
        for name in re.findall(r"\bclassimbalance_[a-z_]+", str(rule["expr"])):
            assert name in known, f"{rule['alert']}: {name} is not in the README's Metrics table"


def test_every_alert_the_issue_asks_for_is_there_and_tested() -> None:
    """Imbalance, misprediction, not reporting or stalled, rule error: each has a rule, and
    each rule has at least one unit test where it fires."""
    by_name = {str(rule["alert"]): str(rule["expr"]) for rule in rules()}
    assert "classimbalance_imbalance_ratio" in by_name["ClassImbalanceImbalanceDetected"]
    assert (
        "classimbalance_class_misprediction_ratio"
        in (by_name["ClassImbalanceMispredictionDetected"])
    )
    assert 'classimbalance_status="Error"' in by_name["ClassImbalanceRuleError"]
    assert (
        "time() - classimbalance_last_evaluation_timestamp_seconds"
        in (by_name["ClassImbalanceEvaluationStalled"])
    )
    assert "absent(" in by_name["ClassImbalanceEvaluatorMissing"]
    assert "up{" in by_name["ClassImbalanceEvaluatorDown"]
    tests = yaml.safe_load(TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == set(by_name)
    for rule in rules():
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}


def test_the_readme_table_lists_what_the_collector_exports() -> None:
    """The names the rules and the dashboard are checked against are the exporter's own."""
    from prometheus_client.core import CounterMetricFamily

    from container.metrics import ClassImbalanceCollector
    from container.snapshot import SnapshotBox
    from tests.container.test_metrics import rich_snapshot

    collector = ClassImbalanceCollector(SnapshotBox(rich_snapshot()), max_class_series=3)
    exported = {
        f"{family.name}_total" if isinstance(family, CounterMetricFamily) else family.name
        for family in collector.describe()
    }
    assert exported == exported_metric_names()
