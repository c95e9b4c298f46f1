"""The README's SageMaker custom-rule example, built by the real SDK and read by this evaluator.

The example is easy to get wrong without noticing: the SDK refuses ``rule_to_invoke`` without a
``source``, botocore refuses non-string ``RuleParameters``, and ``Estimator.fit`` silently drops an
``action_json`` rule parameter. So the example runs in the SDK's own environment
(``sagemaker_env.sh``, apart from the project's .venv), offline, and the request it makes is
handed to this image's settings loader the way the service hands it over. The README's code
block must be the example script's marked region, so what is tested is what users copy.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from container.config import LoadedSettings, load_settings
from tests.deploy.tools import REPO, unavailable

HERE = Path(__file__).resolve().parent
ENV_SCRIPT = HERE / "sagemaker_env.sh"
EXAMPLE = HERE / "sagemaker_rule_example.py"
README = REPO / "README.md"
README_SECTION = "### 3. A custom rule image"
"""The heading whose first python code block is the example."""
START_MARKER = "# --- README example: start ---"
END_MARKER = "# --- README example: end ---"
INSTALL_TIMEOUT = 900
"""The first install downloads about a hundred packages (80 s here); allow a slow mirror."""
JOB_CONFIG = "/opt/ml/config/processingjobconfig.json"

INTENDED = {
    "threshold_imbalance": 10,
    "samples": 500,
    "argmax": True,
    "stop_on_first_issue": True,
    "rule_to_invoke": "ClassImbalance",
}
"""What the example means to set, as the evaluator's parsed settings (by flat name)."""


# -- the README block and the example script's region ------------------------------------------


def readme_example(text: str) -> str:
    """The first ```python block after the section heading: the code users copy."""
    section = text.find(README_SECTION)
    assert section >= 0, f"README.md has no heading {README_SECTION!r}"
    block = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
    found = block.search(text, section)
    assert found is not None, f"no ```python block after {README_SECTION!r} in README.md"
    return found.group(1)


def script_example(text: str) -> str:
    """The lines between the script's marker lines, dedented to the README's top level."""
    lines = text.splitlines(keepends=True)
    marks = [line.strip() for line in lines]
    assert marks.count(START_MARKER) == 1, f"{EXAMPLE.name} needs one line {START_MARKER!r}"
    assert marks.count(END_MARKER) == 1, f"{EXAMPLE.name} needs one line {END_MARKER!r}"
    start, end = marks.index(START_MARKER), marks.index(END_MARKER)
    return textwrap.dedent("".join(lines[start + 1 : end]))


def test_the_readme_holds_the_example_verbatim() -> None:
    """A README edit that is not also made to the tested script fails here, not for a user."""
    expected = script_example(EXAMPLE.read_text(encoding="utf-8"))
    actual = readme_example(README.read_text(encoding="utf-8"))
    assert actual == expected, (
        f"the python block under {README_SECTION!r} in README.md must be the region of "
        f"{EXAMPLE.relative_to(REPO)} between its markers, dedented:\n{expected}"
    )


# -- the example, built by the SDK --------------------------------------------------------------


@pytest.fixture(scope="module")
def sdk_python() -> str:
    """The SDK environment's python, made on first use (skipped locally when it cannot be)."""
    try:
        made = subprocess.run(
            [str(ENV_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"cannot make the SageMaker SDK environment with {ENV_SCRIPT.name}: {exc}")
    if made.returncode != 0:
        unavailable(
            f"cannot install the SageMaker SDK with {ENV_SCRIPT.name} (needs PyPI): "
            f"{made.stderr.strip()[-2000:]}"
        )
    return made.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def request_parts(sdk_python: str) -> dict[str, Any]:
    """The CreateTrainingJob request's debugger parts, as the example makes them."""
    ran = subprocess.run(
        [sdk_python, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        # Nothing of this machine's AWS setup: the script sets what it needs.
        env={"PATH": "/usr/bin:/bin"},
    )
    assert ran.returncode == 0, f"the example failed to build:\n{ran.stderr}"
    parts: dict[str, Any] = json.loads(ran.stdout)
    return parts


@pytest.fixture(scope="module")
def rule_config(request_parts: dict[str, Any]) -> dict[str, Any]:
    (config,) = request_parts["DebugRuleConfigurations"]
    assert isinstance(config, dict)
    return config


@pytest.mark.slow
def test_the_example_builds_one_rule_with_this_image(rule_config: dict[str, Any]) -> None:
    assert rule_config["RuleConfigurationName"] == "ClassImbalance"
    assert rule_config["RuleEvaluatorImage"].endswith("/classimbalance-rule:0.1.0")
    assert rule_config["InstanceType"] == "ml.m5.xlarge"
    assert rule_config["VolumeSizeInGB"] == 30


@pytest.mark.slow
def test_every_rule_parameter_is_a_string(rule_config: dict[str, Any]) -> None:
    """The service's RuleParameters is a map of strings (botocore also refuses others)."""
    parameters = rule_config["RuleParameters"]
    assert parameters
    assert {key: type(value) for key, value in parameters.items()} == dict.fromkeys(parameters, str)


@pytest.mark.slow
def test_rule_to_invoke_names_this_rule(rule_config: dict[str, Any]) -> None:
    """In RuleParameters, where the evaluator reads it (as the built-in ClassImbalance has it)."""
    assert rule_config["RuleParameters"]["rule_to_invoke"] == "ClassImbalance"


@pytest.mark.slow
def test_the_hook_saves_labels_and_predictions(request_parts: dict[str, Any]) -> None:
    collections = request_parts["DebugHookConfig"]["CollectionConfigurations"]
    assert {collection["CollectionName"] for collection in collections} >= {
        "labels",
        "predictions",
    }


# -- the request, as the service hands it to the evaluator --------------------------------------


def _base_trial(parts: Mapping[str, Any]) -> str:
    """Where the service points the rule: the training job's debug output."""
    output = parts["DebugHookConfig"]["S3OutputPath"].rstrip("/")
    return f"{output}/{parts['TrainingJobName']}/debug-output/"


def _in_job_rule_parameters(parameters: Mapping[str, str], trial: str) -> LoadedSettings:
    files = {JOB_CONFIG: json.dumps({"RuleParameters": {**parameters, "base_trial": trial}})}
    return load_settings([], {}, job_config_path=JOB_CONFIG, read_text=files.get)


def _in_job_environment(parameters: Mapping[str, str], trial: str) -> LoadedSettings:
    files = {JOB_CONFIG: json.dumps({"Environment": {**parameters, "base_trial": trial}})}
    return load_settings([], {}, job_config_path=JOB_CONFIG, read_text=files.get)


def _in_environment(parameters: Mapping[str, str], trial: str) -> LoadedSettings:
    return load_settings([], {**parameters, "base_trial": trial}, job_config_path=None)


DELIVERIES: dict[str, Callable[[Mapping[str, str], str], LoadedSettings]] = {
    "job config RuleParameters": _in_job_rule_parameters,
    "job config Environment": _in_job_environment,
    "environment variables": _in_environment,
}
"""How the parameters may reach the container: the service does not document it."""


@pytest.mark.slow
@pytest.mark.parametrize("delivery", DELIVERIES, ids=list(DELIVERIES))
def test_the_parameters_load_into_the_intended_settings(
    delivery: str, request_parts: dict[str, Any], rule_config: dict[str, Any]
) -> None:
    trial = _base_trial(request_parts)
    loaded = DELIVERIES[delivery](rule_config["RuleParameters"], trial)
    assert loaded.warnings == ()
    settings = loaded.settings
    assert {name: settings.value(name) for name in INTENDED} == INTENDED
    assert settings.value("base_trial") == trial
    # The SDK names the training job in StopTraining's prefix, so the rule stops that job.
    stop = {"name": "stoptraining", "training_job_prefix": request_parts["TrainingJobName"]}
    assert settings.value("actions") == (stop,)
