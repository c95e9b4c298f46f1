"""The Kubernetes manifests as each overlay renders them (`kubectl kustomize`): strict schema
validation for every Kubernetes version from 1.29, then the wiring that schemas miss, checked
with the evaluator's own settings loader. tests/deploy/test_kustomize.py checks the kit itself
(images, namespaces, how the components patch a workload)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path, PurePosixPath
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
from tests.deploy.kustomize import (
    BASE,
    COMPONENTS,
    CRD_KINDS,
    EVALUATOR_OVERLAYS,
    OVERLAYS,
    SHARDED_OVERLAYS,
    SIDECAR_OVERLAYS,
    Evaluator,
    containers,
    evaluator,
    one,
    pods,
    rendered,
    rendered_text,
)
from tests.deploy.prometheusrule import RULES, render
from tests.deploy.prometheusrule import TARGET as PROMETHEUSRULE
from tests.deploy.tools import REPO, required_tool

PROMETHEUSRULE_FILE = COMPONENTS / "monitoring" / "prometheusrule.yaml"
"""Where the monitoring component has the generated PrometheusRule (`make prometheusrule`)."""
OTHER_VARIABLES = {CONFIG_VARIABLE, "PROCESSING_JOB_CONFIG"}
"""Variables the evaluator reads besides the settings: the YAML file and the job config."""
SCRAPE_LABEL = ("classimbalance-rule/scrape", "true")


def workload_pods(overlay: str) -> list[Any]:
    return [pod for doc in rendered(overlay) for pod in pods(doc)]


# -- schemas ------------------------------------------------------------------------------------


def kubernetes_versions() -> list[str]:
    from kubernetes_validate.utils import all_versions  # type: ignore[import-untyped]

    def key(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("."))

    return sorted({v for v in all_versions() if key(v) >= (1, 29)}, key=key)


def pod_templates_of_crds(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A PyTorchJob's replicas' pod templates as core/v1 PodTemplates, which have a schema:
    the sidecar the JSON patch puts there is validated like the Job's."""
    return [
        {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": pod.where.replace("/", "-").lower()},
            "template": pod.template,
        }
        for doc in docs
        if doc["kind"] == "PyTorchJob"
        for pod in pods(doc)
    ]


@pytest.fixture(scope="module")
def rendered_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Every overlay's output, and the CRDs' pod templates, one file each."""
    folder = tmp_path_factory.mktemp("rendered")
    files = []
    for overlay in OVERLAYS:
        path = folder / f"{overlay}.yaml"
        path.write_text(rendered_text(overlay))
        files.append(path)
        templates = pod_templates_of_crds(rendered(overlay))
        if templates:
            path = folder / f"{overlay}-pod-templates.yaml"
            path.write_text(yaml.safe_dump_all(templates))
            files.append(path)
    return files


@pytest.mark.parametrize("version", kubernetes_versions())
def test_kubernetes_validate_strict(version: str, rendered_files: list[Path]) -> None:
    tool = required_tool("kubernetes-validate")
    result = subprocess.run(
        [tool, "--strict", "-k", version, *map(str, rendered_files)],
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
            assert any(f"kind {kind} " in line for kind in CRD_KINDS), line
        else:
            assert line.startswith("INFO"), line
            assert " passed " in line, line
    docs = [doc for path in rendered_files for doc in yaml.safe_load_all(path.read_text()) if doc]
    passed = sum(" passed " in line for line in output.splitlines())
    assert passed == sum(doc["kind"] not in CRD_KINDS for doc in docs)
    assert any(doc["kind"] == "PodTemplate" for doc in docs), "the PyTorchJob's pods too"


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
    monitor = one(rendered("evaluate"), "PodMonitor")
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


PYTORCHJOB_FIELDS = {
    "spec": {"pytorchReplicaSpecs", "runPolicy", "elasticPolicy", "nprocPerNode"},
    "replica": {"replicas", "restartPolicy", "template"},
    "restartPolicy": {"Always", "OnFailure", "Never", "ExitCode"},
}
"""The PyTorchJob fields used here, a subset of Kubeflow's CRD (kubeflow.org/v1); the pod
templates are validated as PodTemplates above."""


def test_the_pytorchjob_uses_only_fields_of_its_crd() -> None:
    job = one(rendered("sidecar-pytorchjob"), "PyTorchJob")
    assert job["apiVersion"] == "kubeflow.org/v1"
    assert set(job) <= {"apiVersion", "kind", "metadata", "spec"}
    assert set(job["spec"]) <= PYTORCHJOB_FIELDS["spec"]
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) <= {"Master", "Worker"}
    assert replicas["Master"].get("replicas", 1) == 1
    for spec in replicas.values():
        assert set(spec) <= PYTORCHJOB_FIELDS["replica"]
        assert spec["restartPolicy"] in PYTORCHJOB_FIELDS["restartPolicy"]
        names = [c["name"] for c in spec["template"]["spec"]["containers"]]
        assert "pytorch" in names, "the training operator looks for the container pytorch"


def test_the_prometheusrule_carries_the_rules_file_unchanged() -> None:
    assert PROMETHEUSRULE_FILE.read_text() == render(), "run `make prometheusrule`"
    assert PROMETHEUSRULE.resolve() == PROMETHEUSRULE_FILE.resolve(), (
        "`make prometheusrule` writes the monitoring component's file"
    )
    rule = one(rendered("evaluate"), "PrometheusRule")
    rules = yaml.safe_load(RULES.read_text())
    assert rule["spec"]["groups"] == rules["groups"]


# -- wiring -------------------------------------------------------------------------------------


def test_the_overlays_that_run_the_evaluator_have_one_each() -> None:
    for overlay in OVERLAYS:
        found = [
            container
            for pod in workload_pods(overlay)
            for container in containers(pod.spec)
            if container["name"] == "classimbalance-rule"
        ]
        expected = 2 if overlay in SHARDED_OVERLAYS else int(overlay in EVALUATOR_OVERLAYS)
        assert len(found) == expected, overlay


@pytest.mark.parametrize("overlay", EVALUATOR_OVERLAYS)
def test_every_volume_mount_names_a_defined_volume(overlay: str) -> None:
    for pod in workload_pods(overlay):
        spec = pod.spec
        volumes = [volume["name"] for volume in spec["volumes"]]
        assert len(volumes) == len(set(volumes)), f"{pod.where}: volume names are unique"
        used = set()
        for container in containers(spec):
            paths = [mount["mountPath"] for mount in container.get("volumeMounts", [])]
            assert len(paths) == len(set(paths)), f"{container['name']} mounts a path twice"
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{container['name']} mounts {mount['name']}"
                used.add(mount["name"])
        assert used == set(volumes), f"{pod.where}: every volume is mounted somewhere"
        names = [container["name"] for container in containers(spec)]
        assert len(names) == len(set(names))


@pytest.mark.parametrize("overlay", EVALUATOR_OVERLAYS)
def test_config_maps_referenced_exist(overlay: str) -> None:
    docs = rendered(overlay)
    defined = {doc["metadata"]["name"] for doc in docs if doc["kind"] == "ConfigMap"}
    for pod in workload_pods(overlay):
        for volume in pod.spec["volumes"]:
            if "configMap" in volume:
                assert volume["configMap"]["name"] in defined, pod.where


@pytest.mark.parametrize("overlay", EVALUATOR_OVERLAYS)
def test_every_environment_variable_is_a_real_setting(overlay: str) -> None:
    prefixed = {f"{ENV_PREFIX}{name.upper()}" for name in (*SETTING_NAMES, *ALIASES)}
    managed = {name.upper() for name in MANAGED_NAMES}
    for variable in evaluator(overlay).env:
        assert variable in prefixed | managed | OTHER_VARIABLES, f"{variable} is not read"


@pytest.mark.parametrize("overlay", EVALUATOR_OVERLAYS)
def test_the_settings_load_and_match_the_pod(overlay: str) -> None:
    """The evaluator's own loader reads the container's environment and the mounted ConfigMap:
    no invalid value, and ports, paths and mounts agree with what it will use."""
    found = evaluator(overlay)
    env = found.env
    assert found.read_mounted(env[CONFIG_VARIABLE]) is not None, "RULE_CONFIG is mounted"
    loaded = load_settings([], env, job_config_path=None, read_text=found.read_mounted)
    settings = loaded.settings
    assert not loaded.warnings
    assert loaded.sources["threshold_imbalance"].kind == "file", "the ConfigMap was read"

    port = found.metrics_port()
    assert settings.metrics.port == port["containerPort"]
    assert settings.metrics.enabled is True, "the probes need the server from the start"
    assert settings.metrics.address in {"0.0.0.0", "::"}, "the kubelet and Prometheus reach it"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in found.container:
            target = found.container[probe]["httpGet"]["port"]
            assert target in {"metrics", port["containerPort"]}, probe

    trial_mount = found.mount_of(settings.trial.base_trial)
    assert trial_mount is not None, f"base_trial {settings.trial.base_trial} is on a volume"
    assert trial_mount.get("readOnly") is True, "the evaluator cannot change the trial"
    writable = [settings.outputs.status_file]
    if settings.checkpoints.file is not None:
        writable.append(settings.checkpoints.file)
    for path in writable:
        assert PurePosixPath(path).is_absolute(), "the image's working folder may be read-only"
        mount = found.mount_of(path)
        assert mount is not None, f"{path} is on a volume"
        assert not mount.get("readOnly", False), f"{path} is on a writable volume"
    # written in place (publishing.write_message): the verdict is the termination message
    assert settings.outputs.message_file == "/dev/termination-log"
    assert found.container["terminationMessagePolicy"] == "FallbackToLogsOnError"


@pytest.mark.parametrize("overlay", EVALUATOR_OVERLAYS)
def test_a_read_only_root_filesystem_has_a_writable_tmp(overlay: str) -> None:
    found = evaluator(overlay)
    security = found.container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    mount = found.mount_of("/tmp/x")
    assert mount is not None
    assert not mount.get("readOnly", False)
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("overlay", EVALUATOR_OVERLAYS)
def test_the_pod_runs_as_the_images_user(overlay: str) -> None:
    found = evaluator(overlay)
    dockerfile = (REPO / "Dockerfile").read_text()
    [user] = re.findall(r"^USER (\d+):(\d+)$", dockerfile, flags=re.MULTILINE)
    [exposed] = re.findall(r"^EXPOSE (\d+)$", dockerfile, flags=re.MULTILINE)
    assert int(exposed) == DEFAULT_METRICS_PORT == found.metrics_port()["containerPort"]
    pod_security = found.pod.spec.get("securityContext", {})
    security = {**pod_security, **found.container.get("securityContext", {})}
    assert security["runAsNonRoot"] is True
    assert (str(security["runAsUser"]), str(security["runAsGroup"])) == user
    # The volumes are group-owned by fsGroup, which every process of the pod also gets as a
    # supplementary group: writable by the evaluator whatever its uid and primary group.
    assert int(pod_security["fsGroup"]) > 0, "the volumes are writable by the evaluator"


@pytest.mark.parametrize("overlay", EVALUATOR_OVERLAYS)
def test_the_pod_is_scraped_on_the_metrics_port(overlay: str) -> None:
    """By the PodMonitor (a label) and by annotation-based discovery alike."""
    found = evaluator(overlay)
    metadata = found.pod.template["metadata"]
    assert SCRAPE_LABEL in metadata["labels"].items()
    annotations = metadata["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(found.metrics_port()["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("overlay", SIDECAR_OVERLAYS)
def test_the_sidecar_is_native_and_shares_the_trial_volume(overlay: str) -> None:
    sidecar = evaluator(overlay)
    spec = sidecar.pod.spec
    assert sidecar.container in spec["initContainers"]
    assert sidecar.container["restartPolicy"] == "Always"
    assert sidecar.pod.restart_policy == "Never"
    # Training starts only once the startup probe passes, and the trial appears only once
    # training writes it: the startup probe must not wait for readiness.
    assert sidecar.container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar.container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The verdict stays on /metrics until the kubelet stops the sidecar after training.
    assert sidecar.env["CLASSIMBALANCE_LINGER_AFTER_VERDICT"] == "true"
    trial_mount = sidecar.mount_of(sidecar.env["BASE_TRIAL"])
    assert trial_mount is not None
    assert trial_mount.get("readOnly") is True
    [training] = spec["containers"]
    shared = [m for m in training["volumeMounts"] if m["name"] == trial_mount["name"]]
    assert shared, "training writes the trial into the volume the evaluator reads"
    assert not shared[0].get("readOnly", False)
    # The status file is on that same volume, in a folder of its own, not on an emptyDir of
    # the sidecar's that goes with the pod.
    status = sidecar.mount_of(sidecar.env["CLASSIMBALANCE_STATUS_FILE"])
    assert status is not None
    assert status["name"] == trial_mount["name"]
    assert status["subPath"] == "classimbalance-rule"


def test_the_standalone_job_reads_the_claim_and_treats_issues_as_final() -> None:
    found = evaluator("evaluate")
    trial_mount = found.mount_of(found.env["BASE_TRIAL"])
    assert trial_mount is not None
    assert trial_mount.get("readOnly") is True
    assert "persistentVolumeClaim" in found.volume(trial_mount["name"])
    job = one(rendered("evaluate"), "Job")
    [rule] = job["spec"]["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"]["containerName"] == found.container["name"]
    assert rule["onExitCodes"]["values"] == [EXIT_CODES[Status.ISSUES_FOUND], NOT_CHECKED]
    assert rule["onExitCodes"]["values"] == [1, 3]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_podmonitor_scrapes_every_evaluator_on_the_metrics_port() -> None:
    monitor = one(rendered("evaluate"), "PodMonitor")["spec"]
    [endpoint] = monitor["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    for overlay in EVALUATOR_OVERLAYS:
        found: Evaluator = evaluator(overlay)
        labels = found.pod.template["metadata"]["labels"]
        assert monitor["selector"]["matchLabels"].items() <= labels.items(), overlay
        assert endpoint["port"] == found.metrics_port()["name"]
    [relabel] = endpoint["relabelings"]
    assert (relabel["targetLabel"], relabel["replacement"]) == ("job", "classimbalance-rule")


def test_the_configmap_is_a_complete_settings_file() -> None:
    """The base's settings file alone loads (with a trial), names only real settings, and is
    the rendered ConfigMap's file."""
    text = (BASE / "classimbalance.yaml").read_text()
    document = yaml.safe_load(text)
    assert set(document) <= set(SETTING_NAMES)
    loaded = load_settings(
        [],
        {CONFIG_VARIABLE: "/config.yaml", "BASE_TRIAL": "/trial"},
        job_config_path=None,
        read_text=lambda path: text if path == "/config.yaml" else None,
    )
    assert loaded.settings.metrics.port == DEFAULT_METRICS_PORT
    for overlay in EVALUATOR_OVERLAYS:
        configmap = one(rendered(overlay), "ConfigMap")
        assert configmap["metadata"]["name"] == "classimbalance-rule", "no hash suffix"
        assert configmap["data"] == {"classimbalance.yaml": text}
