"""A short evaluation pushes its verdict to a real Pushgateway on loopback, a real Prometheus
scrapes the gateway with the alerting rules loaded, and the pushed-verdict alert fires; a
gateway that is down costs a log line, not the verdict."""

from __future__ import annotations

import logging
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from container.app import run
from container.status import Status
from tests.container.test_app import settings_for
from tests.container.trials import scores_batch, write_trial
from tests.deploy.prometheus import running_prometheus, wait_until
from tests.deploy.tools import REPO, required_tool
from tests.integration.processes import free_port, terminate_process

RULES = REPO / "config" / "prometheus" / "classimbalance-rules.yaml"


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    executable = required_tool("prometheus-pushgateway")
    address = f"127.0.0.1:{free_port()}"
    log = (tmp_path / "pushgateway.log").open("wb")
    process = subprocess.Popen(
        [executable, f"--web.listen-address={address}", "--log.level=warn"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://{address}"
    try:
        wait_until("the Pushgateway to answer", lambda: _answers(f"{url}/-/ready"), 20)
        yield url
    finally:
        terminate_process(process)
        log.close()


def _answers(url: str) -> bool | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200 or None
    except OSError:
        return None


def test_the_pushed_verdict_reaches_prometheus_and_fires_its_alert(
    tmp_path: Path, pushgateway: str
) -> None:
    trial = write_trial(tmp_path / "trial", steps=20, make_batch=scores_batch([30, 1], 40))
    settings = settings_for(trial.path, tmp_path).changed(
        pushgateway_url=pushgateway, training_job="resnet-7", metric_labels=(("team", "vision"),)
    )
    assert run(settings).status is Status.ISSUES_FOUND
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as answer:
        pushed = answer.read().decode()
    assert (
        'classimbalance_status{classimbalance_status="IssuesFound",instance="",'
        'job="classimbalance-rule",training_job="resnet-7"} 1' in pushed
    )
    assert 'team="vision"' in pushed
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [pushgateway.removeprefix("http://")]}],
            }
        ],
    }
    executable = required_tool("prometheus")
    with running_prometheus(executable, tmp_path / "prometheus", yaml.safe_dump(config)) as prom:
        status = wait_until(
            "the pushed status in Prometheus",
            lambda: prom.value(
                'classimbalance_status{classimbalance_status="IssuesFound", '
                'training_job="resnet-7"}'
            ),
            30,
        )
        assert status == 1
        alerts = wait_until(
            "the pushed-verdict alert to fire",
            lambda: (
                prom.query(
                    'ALERTS{alertname="ClassImbalancePushedIssuesFound", alertstate="firing"}'
                )
                or None
            ),
            30,
        )
    [alert] = alerts
    assert alert["metric"]["training_job"] == "resnet-7"
    assert alert["metric"]["job"] == "classimbalance-rule"


def test_a_gateway_that_is_down_costs_a_log_line_not_the_verdict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trial = write_trial(tmp_path / "trial", steps=20, make_batch=scores_batch([30, 1], 40))
    down = f"http://127.0.0.1:{free_port()}"
    settings = settings_for(trial.path, tmp_path).changed(pushgateway_url=down)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR):
        outcome = run(settings)
    assert outcome.status is Status.ISSUES_FOUND
    assert outcome.exit_code == 1
    assert time.monotonic() - started < 10
    assert any(
        f"cannot push the final metrics to the Pushgateway {down}" in r.getMessage()
        for r in caplog.records
    )
