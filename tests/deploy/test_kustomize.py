"""The Kustomize kit itself: every overlay renders offline (the dashboard's only without the load
restrictor), sets the image and the namespace once for everything, stays short, and the sidecar
component adds itself to a workload without taking anything away from it."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.kustomize import (
    BASE,
    COMPONENTS,
    CONTAINER,
    EVALUATOR_OVERLAYS,
    IMAGE,
    OVERLAYS,
    OVERLAYS_DIR,
    SHARDED_OVERLAYS,
    SIDECAR_OVERLAYS,
    UNRESTRICTED,
    containers,
    evaluator,
    image_name,
    kustomization,
    kustomize,
    one,
    parse,
    pods,
    rendered,
)
from tests.deploy.tools import REPO

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
OVERLAY_KEYS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "components",
    "images",
    "patches",
    "configMapGenerator",
}
"""What an overlay may say: a user edits an image, a namespace and the trial's volume."""
DASHBOARD = REPO / "config" / "grafana" / "classimbalance-dashboard.json"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def all_images(docs: list[dict[str, Any]]) -> list[str]:
    return [c["image"] for doc in docs for pod in pods(doc) for c in containers(pod.spec)]


def render_beside(tmp_path: Path, config: dict[str, Any], files: dict[str, Any]) -> list[Any]:
    """Render a throwaway overlay in tmp_path that names the kit's folders by relative paths
    (kustomize refuses absolute ones), with `files` as its own resources."""
    for name, document in files.items():
        (tmp_path / name).write_text(yaml.safe_dump(document))

    def relative(path: Path) -> str:
        return os.path.relpath(path, tmp_path)

    config = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        **config,
        "resources": [relative(BASE), *files],
        "components": [relative(COMPONENTS / c) for c in config.get("components", [])],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(config))
    result = kustomize(tmp_path)
    assert result.returncode == 0, result.stderr
    return parse(result.stdout)


# -- every overlay ------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", sorted(set(OVERLAYS) - UNRESTRICTED))
def test_the_overlay_renders_as_kubectl_apply_k_reads_it(overlay: str) -> None:
    """With the default load restrictor, so `kubectl apply -k` takes it as it is."""
    result = kustomize(OVERLAYS_DIR / overlay)
    assert result.returncode == 0, result.stderr
    assert parse(result.stdout)


def test_the_overlays_are_the_documented_ones() -> None:
    assert set(OVERLAYS) == {*EVALUATOR_OVERLAYS, *SHARDED_OVERLAYS, *UNRESTRICTED}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_is_short(overlay: str) -> None:
    config = kustomization(OVERLAYS_DIR / overlay)
    assert set(config) <= OVERLAY_KEYS
    assert config["kind"] == "Kustomization"
    assert config.get("namespace"), "the namespace is set once, here"
    text = (OVERLAYS_DIR / overlay / "kustomization.yaml").read_text()
    assert len(text.splitlines()) <= 40


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_namespace_is_set_on_every_namespaced_object(overlay: str) -> None:
    namespace = kustomization(OVERLAYS_DIR / overlay)["namespace"]
    for doc in rendered(overlay):
        assert doc["kind"] not in CLUSTER_SCOPED, "the kit makes no cluster-wide object"
        assert doc["metadata"].get("namespace") == namespace, doc["metadata"]["name"]


@pytest.mark.parametrize("overlay", EVALUATOR_OVERLAYS)
def test_the_image_is_the_overlays_and_appears_once(overlay: str) -> None:
    [entry] = kustomization(OVERLAYS_DIR / overlay)["images"]
    assert entry["name"] == IMAGE
    expected = f"{entry.get('newName', IMAGE)}:{entry['newTag']}"
    assert entry["newTag"] == VERSION, "the tag `make image` builds (pyproject.toml's version)"
    images = all_images(rendered(overlay))
    assert evaluator(overlay).container["image"] == expected
    assert images.count(expected) == 1, images
    assert [i for i in images if image_name(i) == IMAGE] == [expected], "none left unset"


@pytest.mark.parametrize("overlay", EVALUATOR_OVERLAYS)
def test_no_object_relies_on_generate_name(overlay: str) -> None:
    """`kubectl apply` cannot create from generateName: every object has a fixed name, and the
    overlay says how to run its Job again (delete it, then apply)."""
    text = (OVERLAYS_DIR / overlay / "kustomization.yaml").read_text()
    for doc in rendered(overlay):
        assert "generateName" not in doc["metadata"]
        if doc["kind"] in {"Job", "PyTorchJob"}:
            command = f"kubectl delete {doc['kind'].lower()} {doc['metadata']['name']}"
            assert command in text, f"the overlay says `{command}` before applying again"


# -- the dashboard ------------------------------------------------------------------------------


def test_the_dashboard_overlay_needs_the_load_restrictor_off() -> None:
    result = kustomize(OVERLAYS_DIR / "grafana-dashboard")
    assert result.returncode != 0
    assert "security; file" in result.stderr
    text = (OVERLAYS_DIR / "grafana-dashboard" / "kustomization.yaml").read_text()
    assert "--load-restrictor LoadRestrictionsNone" in text, "the overlay says so"


def test_the_dashboard_configmap_is_the_dashboard_file() -> None:
    configmap = one(rendered("grafana-dashboard"), "ConfigMap")
    assert configmap["metadata"]["name"] == "classimbalance-dashboard", "no hash suffix"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"] == {DASHBOARD.name: DASHBOARD.read_text()}


# -- the sidecar component ----------------------------------------------------------------------


def test_the_sidecar_is_the_same_in_a_job_and_a_pytorchjob() -> None:
    """job-patch.yaml and pytorchjob-patch.yaml carry one container, and the same pod labels,
    annotations and fsGroup."""
    job, pytorch = (evaluator(overlay) for overlay in SIDECAR_OVERLAYS)
    assert job.container == pytorch.container
    for pod in (job.pod, pytorch.pod):
        assert pod.spec["securityContext"]["fsGroup"] == 10001
    added = ("classimbalance-rule/scrape", "prometheus.io/scrape", "prometheus.io/port")
    for key in added:
        for field in ("labels", "annotations"):
            assert job.pod.template["metadata"][field].get(key) == (
                pytorch.pod.template["metadata"][field].get(key)
            )


def test_the_pytorchjob_sidecar_is_in_the_master_only() -> None:
    pytorch = one(rendered("sidecar-pytorchjob"), "PyTorchJob")
    for pod in pods(pytorch):
        names = [c["name"] for c in containers(pod.spec)]
        assert (CONTAINER in names) == pod.where.endswith("/Master"), pod.where


WORKLOAD_POD: dict[str, Any] = {
    "metadata": {"labels": {"team": "vision"}, "annotations": {"owner": "ml"}},
    "spec": {
        "restartPolicy": "Never",
        "securityContext": {"runAsUser": 1000},
        "initContainers": [{"name": "fetch-data", "image": "busybox"}],
        "containers": [
            {
                "name": "pytorch",
                "image": "training",
                "volumeMounts": [{"name": "debug-output", "mountPath": "/debug-output"}],
            }
        ],
        "volumes": [
            {"name": "debug-output", "emptyDir": {}},
            {"name": "data", "emptyDir": {}},
        ],
    },
}


def check_kept(pod: dict[str, Any]) -> None:
    """The workload's own labels, annotations, security, init containers and volumes are
    there, with the sidecar first among the init containers (where a strategic merge puts it,
    and the PyTorchJob's JSON patch likewise)."""
    assert pod["metadata"]["labels"]["team"] == "vision"
    assert pod["metadata"]["annotations"]["owner"] == "ml"
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["spec"]["securityContext"] == {"runAsUser": 1000, "fsGroup": 10001}
    assert [c["name"] for c in pod["spec"]["initContainers"]] == [CONTAINER, "fetch-data"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert set(volumes) == {"debug-output", "data", "rule-config", "tmp"}
    assert volumes["debug-output"] == {"name": "debug-output", "emptyDir": {}}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_the_sidecar_adds_to_a_jobs_own_lists(tmp_path: Path) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "mine"},
        "spec": {"template": WORKLOAD_POD},
    }
    docs = render_beside(tmp_path, {"components": ["sidecar"]}, {"job.yaml": job})
    check_kept(one(docs, "Job")["spec"]["template"])


def test_the_sidecar_adds_to_a_pytorchjobs_own_lists(tmp_path: Path) -> None:
    replica = {"replicas": 1, "restartPolicy": "Never", "template": WORKLOAD_POD}
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "mine"},
        "spec": {"pytorchReplicaSpecs": {"Master": replica}},
    }
    docs = render_beside(tmp_path, {"components": ["sidecar"]}, {"job.yaml": job})
    check_kept(one(docs, "PyTorchJob")["spec"]["pytorchReplicaSpecs"]["Master"]["template"])


def test_a_pytorchjob_without_an_init_containers_list_is_refused(tmp_path: Path) -> None:
    """The JSON patch inserts, so the Master's pod must list its initContainers (maybe `[]`):
    kustomize says so rather than replacing the workload's own."""
    pod = {**WORKLOAD_POD, "spec": dict(WORKLOAD_POD["spec"])}
    del pod["spec"]["initContainers"]
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "mine"},
        "spec": {"pytorchReplicaSpecs": {"Master": {"restartPolicy": "Never", "template": pod}}},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    config = {
        "resources": ["job.yaml"],
        "components": [os.path.relpath(COMPONENTS / "sidecar", tmp_path)],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(config))
    result = kustomize(tmp_path)
    assert result.returncode != 0
    assert re.search(r"missing path.*Master/template/spec/initContainers", result.stderr)


def test_the_sidecar_leaves_the_evaluate_job_alone(tmp_path: Path) -> None:
    sample = yaml.safe_load((OVERLAYS_DIR / "sidecar-job" / "training-job.yaml").read_text())
    docs = render_beside(
        tmp_path, {"components": ["sidecar", "evaluate-job"]}, {"training-job.yaml": sample}
    )
    jobs = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Job"}
    evaluate = jobs.pop("classimbalance-evaluate")["spec"]["template"]["spec"]
    assert "initContainers" not in evaluate
    [training] = jobs.values()
    assert [c["name"] for c in training["spec"]["template"]["spec"]["initContainers"]] == [
        CONTAINER
    ]
