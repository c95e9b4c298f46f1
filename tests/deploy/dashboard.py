"""The Grafana dashboard's queries, and the same queries as plain PromQL for a real Prometheus."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.deploy.tools import REPO

DASHBOARD = REPO / "config" / "grafana" / "classimbalance-dashboard.json"
GRAFANA_VARIABLES = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
"""Grafana's built-in variables, with values for running a panel's query in Prometheus."""


@dataclass(frozen=True)
class Query:
    panel: str
    ref: str
    expr: str


def load() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def queries(dashboard: dict[str, Any]) -> Iterator[Query]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield Query(panel["title"], target["refId"], target["expr"])


def variables_used(expr: str) -> set[str]:
    return set(re.findall(r"\$\{?(\w+)", expr))


def as_promql(expr: str, values: dict[str, str]) -> str:
    """The expression with Grafana's variables replaced (dashboard ones from ``values``)."""
    every = {**GRAFANA_VARIABLES, **values}
    return re.sub(r"\$\{?(\w+)\}?", lambda m: every[m.group(1)], expr)
