"""Settings from every layer: named catalogues of cases, run through ``load_settings`` with the
files held in memory (exact and fast), and through ``main`` where the command line matters."""

from __future__ import annotations

import builtins
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from container.cli import main
from container.config import (
    DECLARED,
    SETTING_NAMES,
    SWITCHES,
    ConfigError,
    LoadedSettings,
    Settings,
    build_parser,
    default_value,
    flag_of,
    format_settings,
    load_settings,
    setting_docs,
    yaml_inline,
)
from container.config.sources import MANAGED_NAMES
from evaluator.core import PARAMETER_NAMES, RuleParameters

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "config" / "classimbalance.yaml"
JOB = "processingjobconfig.json"


def variable(name: str) -> str:
    """A setting's environment variable: unprefixed for the managed service's names."""
    return name.upper() if name in MANAGED_NAMES else f"CLASSIMBALANCE_{name.upper()}"


def load(
    *argv: str,
    env: Mapping[str, str] | None = None,
    yaml_text: str | None = None,
    job: Any = None,
    trial: str | None = "trial",
) -> LoadedSettings:
    """Load with the YAML file and the job config in memory (``config.yaml``, ``JOB``)."""
    files: dict[str, str] = {}
    args = list(argv)
    if yaml_text is not None:
        files["config.yaml"] = yaml_text
        args = ["--config", "config.yaml", *args]
    if job is not None:
        files[JOB] = job if isinstance(job, str) else json.dumps(job)
    if trial is not None:
        args = ["--trial", trial, *args]
    return load_settings(args, env or {}, job_config_path=JOB, read_text=files.get)


def problems(*argv: str, **layers: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(*argv, **layers)
    return [problem.describe() for problem in caught.value.problems]


def value(loaded: LoadedSettings, name: str) -> Any:
    return loaded.settings.value(name)


# -- precedence ---------------------------------------------------------------------------

LAYERS: dict[str, dict[str, Any]] = {
    "job Environment": {"job": {"Environment": {"SAMPLES": "100"}}},
    "job RuleParameters": {"job": {"RuleParameters": {"samples": "200"}}},
    "YAML": {"yaml_text": "samples: 300\n"},
    "environment": {"env": {"SAMPLES": "400"}},
    "flag": {"argv": ("--samples", "500")},
}
LAYER_VALUES = {"job Environment": 100, "job RuleParameters": 200, "YAML": 300}
LAYER_VALUES |= {"environment": 400, "flag": 500}
LAYER_SOURCES = {
    "job Environment": f"{JOB} Environment.SAMPLES",
    "job RuleParameters": f"{JOB} RuleParameters.samples",
    "YAML": "config.yaml key samples",
    "environment": "environment variable SAMPLES",
    "flag": "flag --samples",
}
PRECEDENCE = {
    "job Environment over the default": ["job Environment"],
    "job RuleParameters over job Environment": ["job Environment", "job RuleParameters"],
    "YAML over the job config": ["job Environment", "job RuleParameters", "YAML"],
    "environment over YAML": ["YAML", "environment"],
    "environment over the job config": ["job RuleParameters", "environment"],
    "flag over environment": ["environment", "flag"],
    "flag over YAML": ["YAML", "flag"],
    "flag over every layer": list(LAYERS),
}


@pytest.mark.parametrize("case", PRECEDENCE, ids=list(PRECEDENCE))
def test_each_layer_overrides_the_lower(case: str) -> None:
    job: dict[str, Any] = {}
    kwargs: dict[str, Any] = {"argv": (), "env": {}, "yaml_text": None}
    for layer in PRECEDENCE[case]:
        for key, given in LAYERS[layer].items():
            if key == "job":
                job.update(given)
            else:
                kwargs[key] = given
    loaded = load(*kwargs.pop("argv"), job=job or None, **kwargs)
    top = PRECEDENCE[case][-1]
    assert loaded.settings.rule.samples == LAYER_VALUES[top]
    assert str(loaded.sources["samples"]) == LAYER_SOURCES[top]


def test_defaults_apply_where_no_layer_sets_a_value() -> None:
    loaded = load()
    assert loaded.settings == Settings.of(base_trial="trial")
    assert {name for name, s in loaded.sources.items() if s.kind != "default"} == {"base_trial"}
    assert loaded.warnings == ()


# -- each source form ---------------------------------------------------------------------

SOURCE_FORMS: dict[str, tuple[dict[str, Any], str, str]] = {
    "YAML key": ({"yaml_text": "threshold_imbalance: 5\n"}, "file", "config.yaml key"),
    "upper-case environment variable": (
        {"env": {"THRESHOLD_IMBALANCE": "5"}},
        "environment",
        "environment variable THRESHOLD_IMBALANCE",
    ),
    "environment variable named exactly": (
        {"env": {"threshold_imbalance": "5"}},
        "environment",
        "environment variable threshold_imbalance",
    ),
    "flag": ({"argv": ("--threshold-imbalance", "5")}, "flag", "flag --threshold-imbalance"),
    "job config Environment, upper-case": (
        {"job": {"Environment": {"THRESHOLD_IMBALANCE": "5"}}},
        "job config",
        f"{JOB} Environment.THRESHOLD_IMBALANCE",
    ),
    "job config Environment, exact": (
        {"job": {"Environment": {"threshold_imbalance": "5"}}},
        "job config",
        f"{JOB} Environment.threshold_imbalance",
    ),
    "job config RuleParameters": (
        {"job": {"RuleParameters": {"threshold_imbalance": "5"}}},
        "job config",
        f"{JOB} RuleParameters.threshold_imbalance",
    ),
}


@pytest.mark.parametrize("case", SOURCE_FORMS, ids=list(SOURCE_FORMS))
def test_each_source_form_sets_a_rule_parameter(case: str) -> None:
    given, kind, where = SOURCE_FORMS[case]
    kwargs = dict(given)
    loaded = load(*kwargs.pop("argv", ()), **kwargs)
    assert loaded.settings.rule.threshold_imbalance == 5.0
    assert loaded.sources["threshold_imbalance"].kind == kind
    assert str(loaded.sources["threshold_imbalance"]).startswith(where)


RUNTIME_FORMS: dict[str, tuple[dict[str, Any], str, Any]] = {
    "CLASSIMBALANCE_STATUS_FILE": (
        {"env": {"CLASSIMBALANCE_STATUS_FILE": "s.json"}},
        "status_file",
        "s.json",
    ),
    "--status-file": ({"argv": ("--status-file", "s.json")}, "status_file", "s.json"),
    "YAML status_file": ({"yaml_text": "status_file: s.json"}, "status_file", "s.json"),
    "CLASSIMBALANCE_METRICS_PORT": (
        {"env": {"CLASSIMBALANCE_METRICS_PORT": "9000"}},
        "metrics_port",
        9000,
    ),
    "CLASSIMBALANCE_SAMPLES, a rule parameter prefixed": (
        {"env": {"CLASSIMBALANCE_SAMPLES": "7"}},
        "samples",
        7,
    ),
    "STOP_ON_FIRST_ISSUE, as the managed service may send it": (
        {"env": {"STOP_ON_FIRST_ISSUE": "True"}},
        "stop_on_first_issue",
        True,
    ),
    "BASE_TRIAL": ({"env": {"BASE_TRIAL": "s3://b/p"}, "trial": None}, "base_trial", "s3://b/p"),
    "base_trial in RuleParameters": (
        {"job": {"RuleParameters": {"base_trial": "/t"}}, "trial": None},
        "base_trial",
        "/t",
    ),
    "--base-trial": ({"argv": ("--base-trial", "/t"), "trial": None}, "base_trial", "/t"),
    "--trial": ({"argv": ("--trial", "/t"), "trial": None}, "base_trial", "/t"),
    "YAML modes as a list": ({"yaml_text": "modes: [train, EVAL]"}, "modes", ("TRAIN", "EVAL")),
    "CLASSIMBALANCE_MODES comma-separated": (
        {"env": {"CLASSIMBALANCE_MODES": "TRAIN, eval"}},
        "modes",
        ("TRAIN", "EVAL"),
    ),
    "--mode repeated": (
        {"argv": ("--mode", "EVAL", "--mode", "TRAIN")},
        "modes",
        ("EVAL", "TRAIN"),
    ),
    "--modes and --mode add up": (
        {"argv": ("--modes", "EVAL,PREDICT", "--mode", "EVAL")},
        "modes",
        ("EVAL", "PREDICT"),
    ),
    "--once alone": ({"argv": ("--once",)}, "once", True),
    "--once false over CLASSIMBALANCE_ONCE": (
        {"argv": ("--once", "false"), "env": {"CLASSIMBALANCE_ONCE": "1"}},
        "once",
        False,
    ),
    "--verify-payload-crc alone": ({"argv": ("--verify-payload-crc",)}, "verify_payload_crc", True),
    "--stop-on-first-issue alone": (
        {"argv": ("--stop-on-first-issue",)},
        "stop_on_first_issue",
        True,
    ),
    "--metrics-enabled false": ({"argv": ("--metrics-enabled", "false")}, "metrics_enabled", False),
    "--argmax takes a value": ({"argv": ("--argmax", "true")}, "argmax", True),
    "--ignore-index -100": ({"argv": ("--ignore-index", "-5")}, "ignore_index", -5),
    "flag=value": ({"argv": ("--samples=7",)}, "samples", 7),
    "repeated flag: the last wins": ({"argv": ("--samples", "7", "--samples", "8")}, "samples", 8),
}


@pytest.mark.parametrize("case", RUNTIME_FORMS, ids=list(RUNTIME_FORMS))
def test_each_source_form_sets_a_runtime_setting(case: str) -> None:
    given, name, expected = RUNTIME_FORMS[case]
    kwargs = dict(given)
    assert value(load(*kwargs.pop("argv", ()), **kwargs), name) == expected


@pytest.mark.parametrize("name", SETTING_NAMES)
def test_every_setting_takes_its_default_string_form_from_env_and_flag(name: str) -> None:
    """Every setting is settable in every layer: its default, written as a string, loads back."""
    default = "/data/trial" if name == "base_trial" else default_value(name)
    text = "none" if default is None else yaml_inline(default)
    variables = [f"CLASSIMBALANCE_{name.upper()}"]
    if name in MANAGED_NAMES:  # the managed service's names, also without the prefix
        variables += [name.upper(), name]
    forms = [({variable: text}, ()) for variable in variables] + [({}, (flag_of(name), text))]
    for env, argv in forms:
        loaded = load(*argv, env=env, trial=None if name == "base_trial" else "trial")
        assert value(loaded, name) == default, (env, argv)
        assert loaded.sources[name].kind != "default"


# -- string forms -------------------------------------------------------------------------

STRING_FORMS: dict[str, tuple[str, str, Any]] = {
    "threshold as an integer string": ("threshold_imbalance", "10", 10.0),
    "threshold as a decimal string": ("threshold_imbalance", "7.5", 7.5),
    "fraction": ("threshold_misprediction", "0.7", 0.7),
    "samples": ("samples", "500", 500),
    "samples as an integral float": ("samples", "500.0", 500),
    "argmax False": ("argmax", "False", False),
    "argmax True": ("argmax", "True", True),
    "argmax yes": ("argmax", "yes", True),
    "argmax 0": ("argmax", "0", False),
    "ignore_index none": ("ignore_index", "none", None),
    "ignore_index None": ("ignore_index", "None", None),
    "idle_timeout none": ("idle_timeout", "none", None),
    "idle_timeout never": ("idle_timeout", "never", None),
    "idle_timeout seconds": ("idle_timeout", "0.5", 0.5),
    "poll_interval": ("poll_interval", "0.25", 0.25),
    "read_retries 0": ("read_retries", "0", 0),
    "read_retry_delay 0": ("read_retry_delay", "0", 0.0),
    "status_interval 0": ("status_interval", "0", 0.0),
    "metrics_port 0": ("metrics_port", "0", 0),
    "metrics_port 65535": ("metrics_port", "65535", 65535),
    "metrics_enabled False": ("metrics_enabled", "False", False),
    "once true": ("once", "true", True),
    "reader in capitals": ("reader", "SMDEBUG", "smdebug"),
    "log_level in lower case": ("log_level", "debug", "DEBUG"),
    "log_format": ("log_format", "JSON", "json"),
    "modes none": ("modes", "none", None),
    "modes with spaces and repeats": ("modes", " train , EVAL,train", ("TRAIN", "EVAL")),
    "start_step": ("start_step", "10", 10),
    "end_step none": ("end_step", "none", None),
    "checkpoint_file none": ("checkpoint_file", "none", None),
    "checkpoint_file": ("checkpoint_file", "state.json", "state.json"),
    "checkpoint_every_steps": ("checkpoint_every_steps", "1", 1),
    "s3_endpoint_url": ("s3_endpoint_url", "http://localhost:9000", "http://localhost:9000"),
    "rule_to_invoke": ("rule_to_invoke", "ClassImbalance", "ClassImbalance"),
    "rule_to_invoke lower case": ("rule_to_invoke", "classimbalance", "ClassImbalance"),
    "rule_to_invoke none": ("rule_to_invoke", "none", None),
}


@pytest.mark.parametrize("case", STRING_FORMS, ids=list(STRING_FORMS))
def test_string_forms_are_accepted(case: str) -> None:
    name, text, expected = STRING_FORMS[case]
    assert value(load(env={variable(name): text}), name) == expected
    assert value(load(yaml_text=f"{name}: {json.dumps(text)}"), name) == expected


def test_yaml_takes_typed_values() -> None:
    loaded = load(
        yaml_text="samples: 7\nargmax: yes\nignore_index: null\nidle_timeout: ~\n"
        "threshold_misprediction: 0.5\nmetrics_enabled: off\n"
    )
    rule = loaded.settings.rule
    assert (rule.samples, rule.argmax, rule.ignore_index) == (7, True, None)
    assert rule.threshold_misprediction == 0.5
    assert loaded.settings.following.idle_timeout is None
    assert loaded.settings.metrics.enabled is False


# -- invalid values -----------------------------------------------------------------------

INVALID: dict[str, tuple[str, str, str]] = {
    "threshold below 1": ("threshold_imbalance", "0.5", "a finite number >= 1"),
    "fraction above 1": ("threshold_misprediction", "1.5", "within [0, 1]"),
    "samples not a number": ("samples", "many", "a whole number >= 0"),
    "argmax not a boolean": ("argmax", "maybe", "a boolean"),
    "regex that does not compile": ("labels_regex", "(", "regular expression"),
    "base_trial empty": ("base_trial", " ", "a trial"),
    "poll_interval 0": ("poll_interval", "0", "a number of seconds > 0"),
    "poll_interval none": ("poll_interval", "none", "a number of seconds > 0"),
    "idle_timeout 0": ("idle_timeout", "0", "or none to wait forever"),
    "idle_timeout negative": ("idle_timeout", "-1", "or none to wait forever"),
    "read_retries negative": ("read_retries", "-1", "a whole number >= 0"),
    "read_retries fractional": ("read_retries", "1.5", "a whole number >= 0"),
    "read_retry_delay negative": ("read_retry_delay", "-0.1", "seconds >= 0"),
    "status_interval negative": ("status_interval", "-1", "seconds >= 0"),
    "metrics_port too large": ("metrics_port", "65536", "within [0, 65535]"),
    "metrics_port negative": ("metrics_port", "-1", "within [0, 65535]"),
    "max_class_series 0": ("max_class_series", "0", "a whole number >= 1"),
    "checkpoint_every_steps 0": ("checkpoint_every_steps", "0", "a whole number >= 1"),
    "checkpoint_every_seconds 0": ("checkpoint_every_seconds", "0", "seconds > 0"),
    "log_format": ("log_format", "xml", "text or json"),
    "log_level": ("log_level", "TRACE", "DEBUG, INFO, WARNING or ERROR"),
    "reader": ("reader", "fast", "native or smdebug"),
    "modes outside the four": ("modes", "TRAIN,TEST", "'TEST' is not a mode"),
    "start_step negative": ("start_step", "-1", "a whole number >= 0"),
    "end_step fractional": ("end_step", "1.5", "a whole number >= 0"),
    "status_file empty": ("status_file", "", "a file path"),
    "s3_endpoint_url without scheme": ("s3_endpoint_url", "localhost:9000", "http://"),
    "once": ("once", "sometimes", "a boolean"),
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_invalid_values_say_the_source_and_what_is_accepted(case: str) -> None:
    name, text, accepted = INVALID[case]
    trial = None if name == "base_trial" else "trial"
    (message,) = problems(env={variable(name): text}, trial=trial)
    assert message.startswith(f"{name} (from environment variable {variable(name)}): ")
    assert accepted in message
    assert repr(text) in message


def test_base_trial_is_required() -> None:
    (message,) = problems(trial=None)
    assert "base_trial is required" in message
    assert "--trial" in message
    assert "BASE_TRIAL" in message


def test_every_problem_of_every_layer_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            "--samples",
            "many",
            "--sampels",
            "5",
            env={"THRESHOLD_IMBALANCE": "nan", "CLASSIMBALANCE_METRICS_PORT": "70000"},
            yaml_text="poll_interval: 0\nlog_levl: INFO\n",
            job={"Environment": {"reader": "fast"}, "RuleParameters": {"argmax": "perhaps"}},
        )
    error = caught.value
    sources = {problem.source for problem in error.problems}
    assert sources == {
        "command line",
        "config.yaml key log_levl",
        "flag --samples",
        "environment variable THRESHOLD_IMBALANCE",
        f"{JOB} RuleParameters.argmax",
        f"{JOB} Environment.reader",
        "config.yaml key poll_interval",
        "environment variable CLASSIMBALANCE_METRICS_PORT",
    }
    text = str(error)
    assert text.startswith("8 settings are invalid:\n")
    assert "unknown flag --sampels; did you mean --samples?" in text
    assert "did you mean 'log_level'?" in text
    assert "threshold_imbalance (from environment variable THRESHOLD_IMBALANCE)" in text
    assert "reader (from processingjobconfig.json Environment.reader)" in text


def test_only_rule_parameter_problems_keep_the_rule_wording() -> None:
    with pytest.raises(ConfigError, match=r"^2 rule parameters are invalid:"):
        load("--samples", "many", "--threshold-imbalance", "nan")


def test_an_overridden_invalid_value_is_not_a_problem() -> None:
    loaded = load("--samples", "5", env={"SAMPLES": "many"}, yaml_text="samples: lots")
    assert loaded.settings.rule.samples == 5


def test_two_environment_spellings_that_disagree_are_an_error() -> None:
    (message,) = problems(env={"SAMPLES": "5", "samples": "6"})
    assert "environment variable SAMPLES and environment variable samples" in message
    assert "disagree" in message
    assert load(env={"SAMPLES": "5", "samples": "5"}).settings.rule.samples == 5


def test_yaml_actions_and_action_json_together_disagree() -> None:
    (message,) = problems(
        yaml_text='actions: []\naction_json: \'{"name": "sms", "endpoint": "1"}\''
    )
    assert "disagree" in message


# -- did you mean -------------------------------------------------------------------------

DID_YOU_MEAN: dict[str, tuple[dict[str, Any], str]] = {
    "YAML key": ({"yaml_text": "sampels: 5"}, "unknown setting 'sampels'; did you mean 'samples'?"),
    "YAML key in capitals": (
        {"yaml_text": "THRESHOLD_IMBALANCE: 5"},
        "did you mean 'threshold_imbalance'?",
    ),
    "YAML key in kebab case": ({"yaml_text": "status-file: s"}, "did you mean 'status_file'?"),
    "RuleParameters key": (
        {"job": {"RuleParameters": {"treshold_imbalance": "5"}}},
        "did you mean 'threshold_imbalance'?",
    ),
    "flag": ({"argv": ("--treshold-imbalance", "5")}, "did you mean --threshold-imbalance?"),
    "flag with =": ({"argv": ("--poll-intervall=1",)}, "did you mean --poll-interval?"),
    "nothing close": ({"yaml_text": "zzz: 1"}, "every setting is listed by --help"),
    "a nested group": (
        {"yaml_text": "rule:\n  samples: 5\n  argmax: true\n"},
        "settings are flat keys: write samples, argmax at the top level",
    ),
}


@pytest.mark.parametrize("case", DID_YOU_MEAN, ids=list(DID_YOU_MEAN))
def test_unknown_names_suggest_the_closest(case: str) -> None:
    given, expected = DID_YOU_MEAN[case]
    kwargs = dict(given)
    (message,) = problems(*kwargs.pop("argv", ()), **kwargs)
    assert expected in message


def test_unknown_yaml_key_names_its_file() -> None:
    (message,) = problems(yaml_text="sampels: 5")
    assert message.startswith("config.yaml key sampels: ")


def test_unrelated_environment_variables_are_ignored() -> None:
    loaded = load(env={"PATH": "/usr/bin", "SAMPLES_DIR": "x", "Samples": "1", "HOME": "/"})
    assert loaded.settings == Settings.of(base_trial="trial")


# -- the managed service's forms ----------------------------------------------------------

STOP = {"name": "stoptraining", "training_job_prefix": "job"}
EMAIL = {"name": "email", "endpoint": "someone@example.com"}
ACTIONS: dict[str, tuple[str, tuple[dict[str, Any], ...]]] = {
    "escaped quotes": (r"{\"name\": \"stoptraining\", \"training_job_prefix\": \"job\"}", (STOP,)),
    "plain JSON": ('{"name": "stoptraining", "training_job_prefix": "job"}', (STOP,)),
    "a list": (json.dumps([STOP, EMAIL]), (STOP, EMAIL)),
    "an escaped list": (json.dumps([STOP, EMAIL]).replace('"', '\\"'), (STOP, EMAIL)),
    "names in any case": (
        '[{"name": "StopTraining", "training_job_prefix": "job"}, {"name": "SMS", '
        '"endpoint": "+100"}]',
        (STOP, {"name": "sms", "endpoint": "+100"}),
    ),
    "JSON of JSON": (json.dumps(json.dumps(STOP)), (STOP,)),
    "empty": ("", ()),
    "none": ("none", ()),
    "an empty list": ("[]", ()),
}


@pytest.mark.parametrize("case", ACTIONS, ids=list(ACTIONS))
def test_action_json_is_parsed_as_json(case: str) -> None:
    text, expected = ACTIONS[case]
    assert load(env={"action_json": text}).settings.managed.actions == expected
    assert load(job={"RuleParameters": {"action_json": text}}).settings.managed.actions == expected
    assert load("--action-json", text).settings.managed.actions == expected


def test_actions_in_yaml_are_a_list_of_mappings() -> None:
    loaded = load(yaml_text="actions:\n  - {name: stoptraining, training_job_prefix: job}\n")
    assert loaded.settings.managed.actions == (STOP,)


INVALID_ACTIONS: dict[str, tuple[str, str]] = {
    "code": ("__import__('os')", "not JSON"),
    "not an object": ("5", "found a JSON int"),
    "a list of numbers": ("[1]", "the action is not an object"),
    "an unknown action": ('{"name": "reboot"}', "has name 'reboot'"),
    "no name": ('{"training_job_prefix": "job"}', "has name None"),
    "stoptraining without its prefix": ('{"name": "stoptraining"}', "'training_job_prefix'"),
    "email without endpoint": (
        '[{"name": "stoptraining", "training_job_prefix": "j"}, {"name": "email"}]',
        "action 2 (email) needs 'endpoint': a non-empty string",
    ),
    "a misspelled field": (
        '{"name": "stoptraining", "training_job_prefix": "j", "stop_all_match": true}',
        "has an unknown field 'stop_all_match'; did you mean 'stop_all_matches'?",
    ),
    "a webhook without a url scheme": (
        '{"name": "webhook", "url": "hooks.example/x"}',
        "url must be an http:// or https:// URL, not 'hooks.example/x'",
    ),
    "a webhook timeout too long": (
        '{"name": "webhook", "url": "http://h/x", "timeout": 3600}',
        "timeout must be seconds in (0, 300] per attempt (default 5), not 3600",
    ),
    "a stop file without its path": ('{"name": "stop_file"}', "needs 'path': a file path"),
}


@pytest.mark.parametrize("case", INVALID_ACTIONS, ids=list(INVALID_ACTIONS))
def test_invalid_action_json_is_an_error_that_says_why(case: str) -> None:
    text, reason = INVALID_ACTIONS[case]
    (message,) = problems(env={"ACTION_JSON": text})
    assert message.startswith("actions (from environment variable ACTION_JSON): ")
    assert reason in message
    assert '"name": stoptraining' in message, "the accepted forms are named"


def test_action_json_is_never_run_as_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "ran"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("action_json reached eval/exec")

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    (message,) = problems(env={"action_json": payload})
    assert "not JSON" in message
    assert repr(payload) in message, "the string is reported as it is"
    assert not marker.exists()


RULE_TO_INVOKE_ERRORS = ("LossNotDecreasing", "ClassImbalanceX", "5")


@pytest.mark.parametrize("name", RULE_TO_INVOKE_ERRORS)
def test_rule_to_invoke_must_name_this_rule(name: str) -> None:
    (message,) = problems(job={"RuleParameters": {"rule_to_invoke": name}})
    assert message.startswith(f"rule_to_invoke (from {JOB} RuleParameters.rule_to_invoke)")
    assert "this image evaluates only the ClassImbalance rule" in message
    assert repr(name) in message


STEPS: dict[str, tuple[dict[str, str], tuple[int | None, int | None] | str]] = {
    "both": ({"start_step": "0", "end_step": "10"}, (0, 10)),
    "start only": ({"start_step": "5"}, (5, None)),
    "end only": ({"end_step": "5"}, (None, 5)),
    "integral floats": ({"start_step": "5.0", "end_step": "6.0"}, (5, 6)),
    "end equal to start": ({"start_step": "5", "end_step": "5"}, "greater than start_step (5"),
    "end before start": ({"start_step": "5", "end_step": "2"}, "greater than start_step (5"),
    "negative start": ({"start_step": "-1"}, "a whole number >= 0"),
    "fractional end": ({"end_step": "2.5"}, "a whole number >= 0"),
}


@pytest.mark.parametrize("case", STEPS, ids=list(STEPS))
def test_start_and_end_steps(case: str) -> None:
    parameters, expected = STEPS[case]
    if isinstance(expected, str):
        (message,) = problems(job={"RuleParameters": parameters})
        assert expected in message
        assert "RuleParameters." in message
        return
    settings = load(job={"RuleParameters": parameters}).settings
    assert (settings.trial.start_step, settings.trial.end_step) == expected


UNUSED_KEYS: dict[str, dict[str, Any]] = {
    "source_s3_uri in RuleParameters": {"job": {"RuleParameters": {"source_s3_uri": "s3://b/r"}}},
    "other trials in YAML": {"yaml_text": "other_trial_0: /a\nother_trial_12: /b\n"},
    "rule_name in the environment": {"env": {"RULE_NAME": "MyRule"}},
    "other_trial_1 in the job Environment": {"job": {"Environment": {"other_trial_1": "/c"}}},
}


@pytest.mark.parametrize("case", UNUSED_KEYS, ids=list(UNUSED_KEYS))
def test_managed_service_keys_this_image_does_not_use_are_warnings(case: str) -> None:
    loaded = load(**UNUSED_KEYS[case])
    assert loaded.settings == Settings.of(base_trial="trial")
    assert loaded.warnings
    assert all("managed-service parameter this image does not use" in w for w in loaded.warnings)


def test_an_unused_key_seen_in_two_layers_is_warned_once() -> None:
    loaded = load(
        env={"source_s3_uri": "s3://b/r"}, job={"Environment": {"source_s3_uri": "s3://b/r"}}
    )
    assert len(loaded.warnings) == 1


# -- the files ----------------------------------------------------------------------------

FILE_ERRORS: dict[str, tuple[dict[str, Any], str]] = {
    "YAML that does not parse": (
        {"yaml_text": "samples: 5\nargmax: [true\n"},
        "config.yaml line 3, column 1: not valid YAML",
    ),
    "YAML that is a list": (
        {"yaml_text": "- samples\n- 5\n"},
        "config.yaml line 1: expected a mapping",
    ),
    "YAML that is a string": ({"yaml_text": "samples"}, "but the document is a string"),
    "YAML with a key twice": (
        {"yaml_text": "samples: 5\nargmax: true\nsamples: 6\n"},
        "config.yaml line 3, column 1: not valid YAML: duplicate key 'samples'",
    ),
    "two YAML documents": (
        {"yaml_text": "samples: 5\n---\nargmax: true\n"},
        "config.yaml line 2, column 1: not valid YAML: but found another document",
    ),
    "job config that does not parse": (
        {"job": '{"Environment": {\n  "samples": 5,\n}}'},
        f"{JOB} line 3, column 1: not valid JSON",
    ),
    "job config that is a list": ({"job": "[]"}, "expected a JSON object, found a list"),
    "job config RuleParameters that is a list": (
        {"job": {"RuleParameters": ["samples"]}},
        f"{JOB} RuleParameters: expected a map of names to values, found a list",
    ),
    "a --config file that does not exist": (
        {"argv": ("--config", "nowhere.yaml")},
        "flag --config: the file nowhere.yaml does not exist",
    ),
    "a RULE_CONFIG file that does not exist": (
        {"env": {"RULE_CONFIG": "nowhere.yaml"}},
        "environment variable RULE_CONFIG: the file nowhere.yaml does not exist",
    ),
    "a PROCESSING_JOB_CONFIG file that does not exist": (
        {"env": {"PROCESSING_JOB_CONFIG": "nowhere.json"}},
        "environment variable PROCESSING_JOB_CONFIG: the file nowhere.json does not exist",
    ),
    "a flag without its value": ({"argv": ("--samples",)}, "command line: argument --samples"),
}


@pytest.mark.parametrize("case", FILE_ERRORS, ids=list(FILE_ERRORS))
def test_file_and_command_line_errors_name_the_place(case: str) -> None:
    given, expected = FILE_ERRORS[case]
    kwargs = dict(given)
    found = problems(*kwargs.pop("argv", ()), **kwargs)
    assert any(expected in message for message in found), found


def test_an_empty_yaml_file_sets_nothing() -> None:
    assert load(yaml_text="# nothing yet\n").settings == Settings.of(base_trial="trial")


def test_rule_config_names_the_file_and_config_flag_wins() -> None:
    files = {"a.yaml": "samples: 1", "b.yaml": "samples: 2"}
    env = {"RULE_CONFIG": "a.yaml"}
    by_env = load_settings(["--trial", "t"], env, job_config_path=None, read_text=files.get)
    assert by_env.settings.rule.samples == 1
    by_flag = load_settings(
        ["--trial", "t", "--config", "b.yaml"], env, job_config_path=None, read_text=files.get
    )
    assert by_flag.settings.rule.samples == 2
    assert str(by_flag.sources["samples"]) == "b.yaml key samples"


def test_the_job_config_is_read_only_where_it_exists_and_the_variable_moves_it() -> None:
    files = {"other.json": json.dumps({"RuleParameters": {"samples": "3"}})}

    def run(env: dict[str, str]) -> int:
        settings = load_settings(["--trial", "t"], env, job_config_path=JOB, read_text=files.get)
        return settings.settings.rule.samples

    assert run({}) == 500, "the default path does not exist here: no error"
    assert run({"PROCESSING_JOB_CONFIG": "other.json"}) == 3
    files[JOB] = json.dumps({"RuleParameters": {"samples": "4"}})
    assert run({}) == 4
    assert run({"PROCESSING_JOB_CONFIG": ""}) == 500, "an empty variable turns it off"


def test_the_rest_of_the_job_config_is_left_alone() -> None:
    job = {
        "ProcessingJobArn": "arn:aws:sagemaker:...",
        "ProcessingInputs": [{"InputName": "tensors"}],
        "Environment": {"PATH": "/usr/bin", "AWS_REGION": "us-east-1", "SAMPLES": "9"},
        "RuleParameters": {"rule_to_invoke": "ClassImbalance", "base_trial": "/t"},
    }
    loaded = load(job=job, trial=None)
    assert loaded.settings.rule.samples == 9
    assert loaded.settings.trial.base_trial == "/t"
    assert loaded.settings.managed.rule_to_invoke == "ClassImbalance"


def test_files_are_read_from_disk(tmp_path: Path) -> None:
    config = tmp_path / "rule.yaml"
    config.write_text("samples: 11\n")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"Environment": {"argmax": "True"}}))
    loaded = load_settings(["--config", str(config)], {"BASE_TRIAL": "t"}, job_config_path=str(job))
    assert (loaded.settings.rule.samples, loaded.settings.rule.argmax) == (11, True)
    assert str(loaded.sources["argmax"]) == f"{job} Environment.argmax"


# -- the shipped example ------------------------------------------------------------------


def test_the_example_config_lists_every_setting() -> None:
    keys = set(yaml.safe_load(EXAMPLE.read_text()))
    settings_fields = {name for name, d in DECLARED.items() if d.group != "rule"}
    rule_fields = {f.name for f in fields(RuleParameters)}
    assert keys == settings_fields | rule_fields
    assert keys == set(SETTING_NAMES)


def test_the_example_config_loads_to_the_defaults() -> None:
    loaded = load_settings(["--config", str(EXAMPLE)], {}, job_config_path=None)
    assert loaded.settings == Settings.of(base_trial=loaded.settings.trial.base_trial)
    assert loaded.settings.trial.base_trial == "/opt/ml/processing/input/tensors"
    assert {s.kind for s in loaded.sources.values()} == {"file"}
    assert loaded.warnings == ()


def test_every_setting_is_documented_in_its_class_and_the_readme() -> None:
    documented = setting_docs()
    assert set(SETTING_NAMES) <= set(documented)
    readme = (REPO / "README.md").read_text()
    missing = [name for name in SETTING_NAMES if f"`{name}`" not in readme]
    assert not missing, f"README lacks {missing}"


def test_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in SETTING_NAMES:
        assert flag_of(name) in out
    for flag in ("--trial", "--mode", "--action-json", "--config", "--print-config"):
        assert flag in out
    assert {a.dest for a in build_parser()._actions} >= set(SETTING_NAMES)
    assert set(SETTING_NAMES) - set(PARAMETER_NAMES) >= SWITCHES


# -- --print-config -----------------------------------------------------------------------


def test_print_config_shows_values_and_sources_as_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THRESHOLD_IMBALANCE", "5")
    monkeypatch.setenv("PROCESSING_JOB_CONFIG", "")
    config = tmp_path / "rule.yaml"
    config.write_text("samples: 50\nmodes: [TRAIN]\n")
    status_file = tmp_path / "status.json"
    argv = ["--print-config", "--trial", "/t", "--config", str(config), "--argmax", "true"]
    assert main([*argv, "--status-file", str(status_file)]) == 0
    out = capsys.readouterr().out
    assert not status_file.exists(), "nothing is evaluated"

    lines = {line.split(":", 1)[0]: line for line in out.splitlines() if not line.startswith("#")}
    assert list(lines) == list(SETTING_NAMES)
    assert re.search(
        r"^threshold_imbalance: +5\.0 +# from environment variable THRESHOLD_", out, re.M
    )
    assert re.search(rf"^samples: +50 +# from {re.escape(str(config))} key samples$", out, re.M)
    assert re.search(r"^argmax: +true +# from flag --argmax$", out, re.M)
    assert re.search(r"^threshold_misprediction: +0\.7 +# default$", out, re.M)
    assert re.search(r"^modes: +\[TRAIN\] +# from ", out, re.M)
    short = [line for name, line in lines.items() if name != "status_file"]
    assert len({line.index("  # ") for line in short}) == 1, "aligned columns"

    document = yaml.safe_load(out)
    assert document["threshold_imbalance"] == 5.0
    assert document["modes"] == ["TRAIN"]
    assert document["idle_timeout"] == 1800.0
    assert document["status_file"] == str(status_file)

    saved = tmp_path / "effective.yaml"
    saved.write_text(out)
    reloaded = load_settings(["--config", str(saved)], {}, job_config_path=None)
    assert (
        reloaded.settings
        == load_settings(
            [*argv, "--status-file", str(status_file)], os.environ, job_config_path=None
        ).settings
    ), "the printed settings load back to the same settings"


def test_print_config_round_trips_every_kind_of_value(tmp_path: Path) -> None:
    loaded = load(
        "--action-json",
        json.dumps([STOP, EMAIL]),
        env={"IGNORE_INDEX": "none", "LABELS_REGEX": "a #b: c", "MODES": "EVAL,TRAIN"},
    )
    text = format_settings(loaded)
    files = {"printed.yaml": text}
    reloaded = load_settings(
        ["--config", "printed.yaml"], {}, job_config_path=None, read_text=files.get
    )
    assert reloaded.settings == loaded.settings


def test_print_config_with_warnings_stays_yaml() -> None:
    loaded = load(env={"source_s3_uri": "s3://b/r"})
    text = format_settings(loaded)
    assert "# warning: source_s3_uri" in text
    assert yaml.safe_load(text)["base_trial"] == "trial"


def test_print_config_with_invalid_settings_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status_file = tmp_path / "status.json"
    argv = ["--print-config", "--trial", "t", "--samples", "x", "--status-file", str(status_file)]
    assert main(argv) == 2
    assert "samples (from flag --samples)" in capsys.readouterr().err
    assert not status_file.exists()


def test_print_config_runs_as_a_process(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "THRESHOLD_IMBALANCE": "5",
        "action_json": r"{\"name\": \"stoptraining\", \"training_job_prefix\": \"job\"}",
        "PROCESSING_JOB_CONFIG": "",
    }
    result = subprocess.run(
        [sys.executable, "-m", "container", "--print-config", "--trial", "/t", "--once"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    assert document["threshold_imbalance"] == 5.0
    assert document["once"] is True
    assert document["actions"] == [STOP]
    assert "# from environment variable THRESHOLD_IMBALANCE" in result.stdout
    assert "# from flag --once" in result.stdout
    assert not list(tmp_path.iterdir()), "no status file is written"


# -- the command line on invalid settings -------------------------------------------------


def test_invalid_settings_write_an_error_status_where_the_settings_say(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLASSIMBALANCE_STATUS_FILE", str(tmp_path / "named.json"))
    monkeypatch.setenv("PROCESSING_JOB_CONFIG", "")
    config = tmp_path / "rule.yaml"
    config.write_text("sampels: 5\n")
    code = main(["--trial", "t", "--config", str(config), "--poll-interval", "0"])
    assert code == 2
    document = json.loads((tmp_path / "named.json").read_text())
    assert document["status"] == "Error"
    assert document["trial"] == "t"
    assert f"{config} key sampels: unknown setting 'sampels'; did you mean" in document["error"]
    assert "poll_interval (from flag --poll-interval)" in document["error"]
    err = capsys.readouterr().err
    assert "2 settings are invalid" in err


def test_an_invalid_status_file_falls_back_to_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROCESSING_JOB_CONFIG", "")
    assert main(["--status-file", " ", "--samples", "x"]) == 2
    document = json.loads((tmp_path / "classimbalance-status.json").read_text())
    assert document["status"] == "Error"
    assert "base_trial is required" in document["error"]
    assert "status_file (from flag --status-file)" in document["error"]
    assert "3 settings are invalid" in capsys.readouterr().err


def test_an_unknown_flag_is_an_error_status_not_a_usage_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCESSING_JOB_CONFIG", "")
    status_file = tmp_path / "status.json"
    code = main(["--trial", "t", "--status-file", str(status_file), "--bogus"])
    assert code == 2
    assert "unknown flag --bogus" in json.loads(status_file.read_text())["error"]


def test_settings_sequence_types_are_stable() -> None:
    """Settings holds tuples (hashable, immutable), whatever form the layer gave."""
    settings = load("--mode", "EVAL", env={"action_json": json.dumps([STOP])}).settings
    assert isinstance(settings.trial.modes, tuple)
    assert isinstance(settings.managed.actions, tuple)
    assert isinstance(settings.managed.actions[0], dict)


# -- the environment's names ------------------------------------------------------------------

UNREAD_VARIABLES: dict[str, tuple[dict[str, str], str]] = {
    "a platform's LOG_LEVEL is not ours": (
        {"LOG_LEVEL": "trace"},
        "LOG_LEVEL (from environment variable LOG_LEVEL) is not read: runtime settings take the "
        "prefix CLASSIMBALANCE_ in the environment (CLASSIMBALANCE_LOG_LEVEL)",
    ),
    "a misspelled rule parameter": (
        {"THRESHOLD_IMBALENCE": "5"},
        "THRESHOLD_IMBALENCE (from environment variable THRESHOLD_IMBALENCE) is not a setting "
        "and is ignored; did you mean THRESHOLD_IMBALANCE?",
    ),
    "a misspelled prefixed setting": (
        {"CLASSIMBALANCE_POLL_INTERVALL": "2"},
        "CLASSIMBALANCE_POLL_INTERVALL (from environment variable CLASSIMBALANCE_POLL_INTERVALL) "
        "is no setting; did you mean CLASSIMBALANCE_POLL_INTERVAL?",
    ),
}


@pytest.mark.parametrize("case", list(UNREAD_VARIABLES))
def test_a_variable_that_is_not_read_is_warned_about_and_changes_nothing(case: str) -> None:
    env, warning = UNREAD_VARIABLES[case]
    loaded = load(env=env)
    assert loaded.settings == load().settings
    assert any(w.startswith(warning) for w in loaded.warnings), loaded.warnings


def test_other_variables_are_left_alone() -> None:
    env = {"PATH": "/bin", "HOME": "/root", "HOSTNAME": "pod-1", "EXAMPLES": "x", "LANG": "C"}
    assert load(env=env).warnings == ()


def test_the_prefixed_and_the_managed_name_must_agree() -> None:
    with pytest.raises(ConfigError, match="disagree"):
        load(env={"SAMPLES": "5", "CLASSIMBALANCE_SAMPLES": "6"})


@pytest.mark.parametrize("other", ["status_file", "checkpoint_file"])
def test_the_report_never_overwrites_the_status_or_the_checkpoint(other: str) -> None:
    flags = ["--status-file", "s.json", "--checkpoint-file", "c.json"]
    path = "s.json" if other == "status_file" else "c.json"
    with pytest.raises(ConfigError, match=f"report_file .* is the {other}"):
        load(*flags, "--report-file", path)
    assert (
        load("--status-file", "out/s.html").settings.outputs.report_path == "out/s.html.report.html"
    )


METRIC_LABELS: dict[str, tuple[dict[str, Any], Any]] = {
    "from the environment": (
        {"env": {"CLASSIMBALANCE_METRIC_LABELS": "team=vision, experiment=e12"}},
        (("experiment", "e12"), ("team", "vision")),
    ),
    "a YAML map": ({"yaml_text": "metric_labels: {team: vision}"}, (("team", "vision"),)),
    "the --print-config form": (
        {"yaml_text": "metric_labels: [[team, vision]]"},
        (("team", "vision"),),
    ),
    "reserved": ({"argv": ("--metric-labels", "job=x")}, "set by the evaluator or by Prometheus"),
    "not a label name": ({"argv": ("--metric-labels", "a-b=x")}, "not a Prometheus label name"),
    "not pairs": ({"argv": ("--metric-labels", "team")}, "expected name=value pairs"),
}


@pytest.mark.parametrize("case", list(METRIC_LABELS))
def test_metric_labels(case: str) -> None:
    given, expected = METRIC_LABELS[case]
    kwargs = dict(given)
    argv = kwargs.pop("argv", ())
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected):
            load(*argv, **kwargs)
        return
    assert load(*argv, **kwargs).settings.metrics.metric_labels == expected
