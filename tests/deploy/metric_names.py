"""The metric names the evaluator exports, as the README's Metrics table lists them."""

from __future__ import annotations

import re

from tests.deploy.tools import REPO

PROCESS_METRICS = frozenset(
    {
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
        "process_open_fds",
    }
)
"""client_python's standard process metrics that the dashboard uses."""


def exported_metric_names() -> frozenset[str]:
    """The first column of the README's Metrics table."""
    text = (REPO / "README.md").read_text()
    table = text[text.index("### Metrics") :]
    names = re.findall(r"^\| `(classimbalance_[a-z_]+)` \|", table, flags=re.MULTILINE)
    assert len(names) >= 10, "the README's Metrics table was found"
    return frozenset(names)
