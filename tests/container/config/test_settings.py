"""The settings' declarations: every default pinned (kopf's habit), every setting declared once
with what it accepts, and the flat names mapped onto the groups."""

from __future__ import annotations

from typing import Any

import pytest

from container.config import (
    DECLARED,
    SETTING_NAMES,
    Settings,
    TrialSettings,
    setting_docs,
)

DEFAULTS: dict[str, Any] = {
    "threshold_imbalance": 10.0,
    "threshold_misprediction": 0.7,
    "samples": 500,
    "argmax": False,
    "labels_regex": ".*labels",
    "predictions_regex": ".*predictions",
    "ignore_index": -100,
    "max_classes": 1_000_000,
    "binary_threshold": 0.5,
    "binary_scores": "auto",
    "class_axis": -1,
    "confidence": None,
    "window_steps": 0,
    "minority_not_improving": False,
    "reader": "native",
    "verify_payload_crc": False,
    "pure_python": False,
    "s3_endpoint_url": None,
    "modes": None,
    "start_step": None,
    "end_step": None,
    "end_grace": 60.0,
    "once": False,
    "progress_interval": 60.0,
    "stop_on_first_issue": False,
    "linger_after_verdict": False,
    "poll_interval": 1.0,
    "max_poll_interval": 8.0,
    "idle_timeout": 1800.0,
    "read_retries": 5,
    "read_retry_delay": 0.5,
    "status_file": "classimbalance-status.json",
    "status_interval": 1.0,
    "message_file": None,
    "class_names": None,
    "class_names_file": None,
    "report_dir": None,
    "html_report": True,
    "report_file": None,
    "metrics_enabled": None,
    "metrics_address": "0.0.0.0",
    "metrics_port": 9410,
    "max_class_series": 20,
    "max_confusion_series": 10,
    "training_job": None,
    "metric_labels": (),
    "pushgateway_url": None,
    "pushgateway_job": "classimbalance-rule",
    "checkpoint_file": None,
    "checkpoint_every_steps": 100,
    "checkpoint_every_seconds": 30.0,
    "emit_state": None,
    "shard_count": 1,
    "shard_index": 0,
    "shard_by": "steps",
    "shard_steps": 1,
    "log_format": "text",
    "log_level": "INFO",
    "rule_to_invoke": None,
    "actions": (),
    "actions_dry_run": False,
    "action_timeout": 30.0,
}
"""Every default, as the README and config/classimbalance.yaml document it: a change here is a
change of behaviour for every user, so it must be made on purpose, in both places."""


def test_every_default_is_pinned() -> None:
    settings = Settings.of(base_trial="trial")
    assert set(DEFAULTS) | {"base_trial"} == set(SETTING_NAMES)
    assert {name: settings.value(name) for name in DEFAULTS} == DEFAULTS
    assert DECLARED["base_trial"].required
    assert not any(DECLARED[name].required for name in DEFAULTS)


@pytest.mark.parametrize("name", SETTING_NAMES)
def test_every_setting_is_declared_whole(name: str) -> None:
    declared = DECLARED[name]
    assert setting_docs()[name], "a docstring that says what it is for"
    assert declared.accepted, "what it accepts, in words"
    assert declared.flags, "a flag"
    if not declared.required:
        assert declared.parse(declared.default) == declared.default, "its default parses"


def test_flat_names_map_onto_the_groups() -> None:
    settings = Settings.of(
        base_trial="t", metrics_port=0, checkpoint_file="c.json", log_level="DEBUG", samples=7
    )
    assert settings.trial == TrialSettings("t")
    assert (settings.metrics.port, settings.checkpoints.file) == (0, "c.json")
    assert (settings.logs.level, settings.rule.samples) == ("DEBUG", 7)
    changed = settings.changed(metrics_port=9, base_trial="u")
    assert (changed.metrics.port, changed.trial.base_trial, changed.rule.samples) == (9, "u", 7)
    assert settings.metrics.port == 0, "a copy, the original unchanged"


def test_an_unknown_flat_name_is_refused() -> None:
    with pytest.raises(TypeError, match="unknown setting 'metric_port'"):
        Settings.of(base_trial="t", metric_port=1)
