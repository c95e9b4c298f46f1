"""The Kubernetes manifests: strict schema validation for every Kubernetes version from 1.29,
then the wiring that schemas miss, checked with the evaluator's own settings loader."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from container.config import (
    ALIASES,
    CONFIG_VARIABLE,
    DEFAULT_METRICS_PORT,
    SETTING_NAMES,
    load_settings,
)
from container.config.sources import ENV_PREFIX, MANAGED_NAMES
from container.status import EXIT_CODES, NOT_CHECKED, Status
from tests.deploy.prometheusrule import RULES, render
from tests.deploy.prometheusrule import TARGET as PROMETHEUSRULE
from tests.deploy.tools import REPO, required_tool

MANIFESTS = REPO / "config" / "kubernetes"
FILES = sorted(MANIFESTS.glob("*.yaml"))
JOBS = ("training-job-sidecar.yaml", "evaluate-trial-job.yaml")
IMAGE = "classimbalance-rule"
OPERATOR_KINDS = {"PodMonitor", "PrometheusRule"}
"""The Prometheus Operator's resources: no Kubernetes schema has them; checked below."""
OTHER_VARIABLES = {CONFIG_VARIABLE, "PROCESSING_JOB_CONFIG"}
"""Variables the evaluator reads besides the settings: the YAML file and the job config."""


def documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((MANIFESTS / name).read_text()) if doc]


def all_documents() -> Iterator[dict[str, Any]]:
    for path in FILES:
        yield from documents(path.name)


def one(kind: str) -> dict[str, Any]:
    [doc] = [doc for doc in all_documents() if doc["kind"] == kind]
    return doc


@dataclass(frozen=True)
class Evaluator:
    """The evaluator's container in a Job's pod."""

    job: str
    pod: dict[str, Any]
    container: dict[str, Any]

    @property
    def env(self) -> dict[str, str]:
        return {item["name"]: item["value"] for item in self.container.get("env", [])}

    @property
    def mounts(self) -> list[dict[str, Any]]:
        return list(self.container.get("volumeMounts", []))

    def volume(self, name: str) -> dict[str, Any]:
        volumes: list[dict[str, Any]] = self.pod["spec"]["volumes"]
        [volume] = [v for v in volumes if v["name"] == name]
        return volume

    def mount_of(self, path: str) -> dict[str, Any] | None:
        """The mount a path lies under (the deepest one)."""
        target = PurePosixPath(path)
        under = [m for m in self.mounts if target.is_relative_to(PurePosixPath(m["mountPath"]))]
        return max(under, key=lambda m: len(m["mountPath"]), default=None)

    def metrics_port(self) -> dict[str, Any]:
        ports: list[dict[str, Any]] = self.container.get("ports", [])
        [port] = [p for p in ports if p.get("name") == "metrics"]
        return port


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def evaluators() -> list[Evaluator]:
    found = []
    for name in JOBS:
        [job] = documents(name)
        pod = job["spec"]["template"]
        for container in containers(pod["spec"]):
            if container["image"].split("/")[-1].split(":")[0] == IMAGE:
                found.append(Evaluator(name, pod, container))
    return found


EVALUATORS = evaluators()


def by_job(evaluator: Evaluator) -> str:
    return evaluator.job


def configmap_files() -> dict[str, str]:
    """Every file the ConfigMaps provide, by name and key: `{name}/{key}` -> text."""
    return {
        f"{doc['metadata']['name']}/{key}": text
        for doc in all_documents()
        if doc["kind"] == "ConfigMap"
        for key, text in doc.get("data", {}).items()
    }


def read_mounted(evaluator: Evaluator, path: str) -> str | None:
    """A file as the evaluator's container would see it, for the files ConfigMaps provide."""
    mount = evaluator.mount_of(path)
    if mount is None:
        return None
    volume = evaluator.volume(mount["name"])
    if "configMap" not in volume:
        return None
    key = str(PurePosixPath(path).relative_to(mount["mountPath"]))
    return configmap_files().get(f"{volume['configMap']['name']}/{key}")


# -- schemas ------------------------------------------------------------------------------------


def kubernetes_versions() -> list[str]:
    from kubernetes_validate.utils import all_versions  # type: ignore[import-untyped]

    def key(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("."))

    return sorted({v for v in all_versions() if key(v) >= (1, 29)}, key=key)


@pytest.mark.parametrize("version", kubernetes_versions())
def test_kubernetes_validate_strict(version: str) -> None:
    tool = required_tool("kubernetes-validate")
    result = subprocess.run(
        [tool, "--strict", "-k", version, *map(str, FILES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for line in output.splitlines():
        if line.startswith("WARN"):
            assert "Couldn't find schema for kind" in line, line
            assert any(f"kind {kind} " in line for kind in OPERATOR_KINDS), line
        else:
            assert line.startswith("INFO"), line
            assert " passed " in line, line
    passed = sum(" passed " in line for line in output.splitlines())
    assert passed == sum(doc["kind"] not in OPERATOR_KINDS for doc in all_documents())


PODMONITOR_FIELDS = {
    "spec": {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels"},
    "endpoint": {
        "port",
        "path",
        "interval",
        "scrapeTimeout",
        "scheme",
        "honorLabels",
        "relabelings",
        "metricRelabelings",
    },
    "relabeling": {
        "action",
        "sourceLabels",
        "separator",
        "targetLabel",
        "regex",
        "replacement",
        "modulus",
    },
}
"""The PodMonitor fields used here, a subset of the Operator's CRD (monitoring.coreos.com/v1)."""


def test_the_podmonitor_uses_only_fields_of_its_crd() -> None:
    monitor = one("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) <= {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert set(spec) <= PODMONITOR_FIELDS["spec"]
    assert set(spec["selector"]) <= {"matchLabels", "matchExpressions"}
    for endpoint in spec["podMetricsEndpoints"]:
        assert set(endpoint) <= PODMONITOR_FIELDS["endpoint"]
        assert re.fullmatch(r"\d+[smh]", endpoint["interval"])
        for relabel in endpoint.get("relabelings", []):
            assert set(relabel) <= PODMONITOR_FIELDS["relabeling"]
            assert relabel.get("action", "replace") in {"replace", "keep", "drop", "labelmap"}


def test_the_prometheusrule_carries_the_rules_file_unchanged() -> None:
    assert PROMETHEUSRULE.read_text() == render(), "run `make prometheusrule`"
    rule = one("PrometheusRule")
    rules = yaml.safe_load(RULES.read_text())
    assert rule["spec"]["groups"] == rules["groups"]


# -- wiring -------------------------------------------------------------------------------------


def test_both_jobs_have_an_evaluator() -> None:
    assert sorted(e.job for e in EVALUATORS) == sorted(JOBS)


@pytest.mark.parametrize("job", JOBS)
def test_every_volume_mount_names_a_defined_volume(job: str) -> None:
    [document] = documents(job)
    spec = document["spec"]["template"]["spec"]
    volumes = [volume["name"] for volume in spec["volumes"]]
    assert len(volumes) == len(set(volumes)), "volume names are unique"
    used = set()
    for container in containers(spec):
        paths = [mount["mountPath"] for mount in container.get("volumeMounts", [])]
        assert len(paths) == len(set(paths)), f"{container['name']} mounts a path twice"
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"{container['name']} mounts {mount['name']}"
            used.add(mount["name"])
    assert used == set(volumes), "every volume is mounted somewhere"
    names = [container["name"] for container in containers(spec)]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("job", JOBS)
def test_config_maps_referenced_exist(job: str) -> None:
    [document] = documents(job)
    defined = {doc["metadata"]["name"] for doc in all_documents() if doc["kind"] == "ConfigMap"}
    for volume in document["spec"]["template"]["spec"]["volumes"]:
        if "configMap" in volume:
            assert volume["configMap"]["name"] in defined


@pytest.mark.parametrize("evaluator", EVALUATORS, ids=by_job)
def test_every_environment_variable_is_a_real_setting(evaluator: Evaluator) -> None:
    prefixed = {f"{ENV_PREFIX}{name.upper()}" for name in (*SETTING_NAMES, *ALIASES)}
    managed = {name.upper() for name in MANAGED_NAMES}
    for variable in evaluator.env:
        assert variable in prefixed | managed | OTHER_VARIABLES, f"{variable} is not read"


@pytest.mark.parametrize("evaluator", EVALUATORS, ids=by_job)
def test_the_settings_load_and_match_the_pod(evaluator: Evaluator) -> None:
    """The evaluator's own loader reads the container's environment and the mounted ConfigMap:
    no invalid value, and ports, paths and mounts agree with what it will use."""
    env = evaluator.env
    assert read_mounted(evaluator, env[CONFIG_VARIABLE]) is not None, "RULE_CONFIG is mounted"
    loaded = load_settings(
        [],
        env,
        job_config_path=None,
        read_text=lambda path: read_mounted(evaluator, path),
    )
    settings = loaded.settings
    assert not loaded.warnings
    assert loaded.sources["threshold_imbalance"].kind == "file", "the ConfigMap was read"

    port = evaluator.metrics_port()
    assert settings.metrics.port == port["containerPort"]
    assert settings.metrics.enabled
    assert settings.metrics.address in {"0.0.0.0", "::"}, "the kubelet and Prometheus reach it"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in evaluator.container:
            target = evaluator.container[probe]["httpGet"]["port"]
            assert target in {"metrics", port["containerPort"]}, probe

    trial_mount = evaluator.mount_of(settings.trial.base_trial)
    assert trial_mount is not None, f"base_trial {settings.trial.base_trial} is on a volume"
    writable = [settings.outputs.status_file]
    if settings.checkpoints.file is not None:
        writable.append(settings.checkpoints.file)
    for path in writable:
        assert PurePosixPath(path).is_absolute(), "the image's working folder may be read-only"
        mount = evaluator.mount_of(path)
        assert mount is not None, f"{path} is on a volume"
        assert not mount.get("readOnly", False), f"{path} is on a writable volume"


@pytest.mark.parametrize("evaluator", EVALUATORS, ids=by_job)
def test_a_read_only_root_filesystem_has_a_writable_tmp(evaluator: Evaluator) -> None:
    security = evaluator.container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    mount = evaluator.mount_of("/tmp/x")
    assert mount is not None
    assert not mount.get("readOnly", False)
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("evaluator", EVALUATORS, ids=by_job)
def test_the_pod_runs_as_the_images_user(evaluator: Evaluator) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    [user] = re.findall(r"^USER (\d+):(\d+)$", dockerfile, flags=re.MULTILINE)
    [exposed] = re.findall(r"^EXPOSE (\d+)$", dockerfile, flags=re.MULTILINE)
    assert int(exposed) == DEFAULT_METRICS_PORT == evaluator.metrics_port()["containerPort"]
    pod_security = evaluator.pod["spec"].get("securityContext", {})
    security = {**pod_security, **evaluator.container.get("securityContext", {})}
    assert security["runAsNonRoot"] is True
    assert (str(security["runAsUser"]), str(security["runAsGroup"])) == user
    assert str(pod_security["fsGroup"]) == user[1], "the volumes are writable by the evaluator"


def test_the_sidecar_is_native_and_shares_the_trial_volume() -> None:
    [sidecar] = [e for e in EVALUATORS if e.job == "training-job-sidecar.yaml"]
    spec = sidecar.pod["spec"]
    assert sidecar.container in spec["initContainers"]
    assert sidecar.container["restartPolicy"] == "Always"
    assert spec["restartPolicy"] == "Never"
    # Training starts only once the startup probe passes, and the trial appears only once
    # training writes it: the startup probe must not wait for readiness.
    assert sidecar.container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar.container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    trial_mount = sidecar.mount_of(sidecar.env["BASE_TRIAL"])
    assert trial_mount is not None
    assert trial_mount.get("readOnly") is True
    [training] = spec["containers"]
    shared = [m for m in training["volumeMounts"] if m["name"] == trial_mount["name"]]
    assert shared, "training writes the trial into the volume the evaluator reads"
    assert not shared[0].get("readOnly", False)
    assert sidecar.volume(trial_mount["name"]).get("emptyDir") is not None


def test_the_standalone_job_reads_the_claim_and_treats_issues_as_final() -> None:
    [evaluator] = [e for e in EVALUATORS if e.job == "evaluate-trial-job.yaml"]
    trial_mount = evaluator.mount_of(evaluator.env["BASE_TRIAL"])
    assert trial_mount is not None
    assert trial_mount.get("readOnly") is True
    assert "persistentVolumeClaim" in evaluator.volume(trial_mount["name"])
    [job] = documents("evaluate-trial-job.yaml")
    [rule] = job["spec"]["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"]["containerName"] == evaluator.container["name"]
    assert rule["onExitCodes"]["values"] == [EXIT_CODES[Status.ISSUES_FOUND], NOT_CHECKED]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_podmonitor_scrapes_both_jobs_on_the_metrics_port() -> None:
    monitor = one("PodMonitor")["spec"]
    [endpoint] = monitor["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    for evaluator in EVALUATORS:
        labels = evaluator.pod["metadata"]["labels"]
        assert monitor["selector"]["matchLabels"].items() <= labels.items(), evaluator.job
        assert endpoint["port"] == evaluator.metrics_port()["name"]
    [relabel] = endpoint["relabelings"]
    assert (relabel["targetLabel"], relabel["replacement"]) == ("job", "classimbalance-rule")


def test_the_configmap_is_a_complete_settings_file() -> None:
    """The ConfigMap's file alone loads (with a trial), and names only real settings."""
    [text] = [t for key, t in configmap_files().items() if key.endswith("/classimbalance.yaml")]
    document = yaml.safe_load(text)
    assert set(document) <= set(SETTING_NAMES)
    loaded = load_settings(
        [],
        {CONFIG_VARIABLE: "/config.yaml", "BASE_TRIAL": "/trial"},
        job_config_path=None,
        read_text=lambda path: text if path == "/config.yaml" else None,
    )
    assert loaded.settings.metrics.port == DEFAULT_METRICS_PORT
