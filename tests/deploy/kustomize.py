"""The Kustomize kit of config/kubernetes, rendered with `kubectl kustomize` for the tests: the
base, the components, and the overlays a user applies. Every test of the manifests reads the
rendered output, which is what reaches the cluster, not the files that make it."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from tests.deploy.tools import REPO, required_tool

KUBERNETES = REPO / "config" / "kubernetes"
BASE = KUBERNETES / "base"
COMPONENTS = KUBERNETES / "components"
OVERLAYS_DIR = KUBERNETES / "overlays"
OVERLAYS = tuple(
    sorted(path.name for path in OVERLAYS_DIR.iterdir() if (path / "kustomization.yaml").exists())
)
UNRESTRICTED = frozenset({"grafana-dashboard"})
"""Overlays that read a file outside their folder (the dashboard's JSON in config/grafana), so
render only with --load-restrictor LoadRestrictionsNone; every other one renders without it,
as `kubectl apply -k` does."""
EVALUATOR_OVERLAYS = ("evaluate", "sidecar-job", "sidecar-pytorchjob")
"""The overlays that run the evaluator, one container each."""
SIDECAR_OVERLAYS = ("sidecar-job", "sidecar-pytorchjob")
SHARDED_OVERLAYS = ("sharded-evaluate",)
"""The overlays that run the evaluator in two Jobs: the shards' Indexed Job and the merge."""
IMAGE = "classimbalance-rule"
"""The image name the components use, which each overlay's `images:` rewrites."""
CONTAINER = "classimbalance-rule"
"""The evaluator's container name in every pod the components make or patch."""
CRD_KINDS = frozenset({"PodMonitor", "PrometheusRule", "PyTorchJob"})
"""Custom resources: no Kubernetes schema has them; their fields are checked by the tests."""


def kustomize(directory: Path, *, unrestricted: bool = False) -> subprocess.CompletedProcess[str]:
    """`kubectl kustomize DIRECTORY`, offline; skipped without kubectl (failed under CI=true)."""
    command = [required_tool("kubectl"), "kustomize", str(directory)]
    if unrestricted:
        command += ["--load-restrictor", "LoadRestrictionsNone"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@functools.cache
def rendered_text(overlay: str) -> str:
    result = kustomize(OVERLAYS_DIR / overlay, unrestricted=overlay in UNRESTRICTED)
    assert result.returncode == 0, f"kubectl kustomize overlays/{overlay}: {result.stderr}"
    return result.stdout


def parse(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def rendered(overlay: str) -> list[dict[str, Any]]:
    """The overlay's objects as `kubectl apply -k` would send them (a fresh copy each call)."""
    return parse(rendered_text(overlay))


def kustomization(directory: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return document


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [doc] = [doc for doc in docs if doc["kind"] == kind]
    return doc


@dataclass(frozen=True)
class Pod:
    """A pod template of a workload, with the restart policy its pods get."""

    where: str
    template: dict[str, Any]
    restart_policy: str

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.template["spec"]
        return spec


def pods(doc: dict[str, Any]) -> Iterator[Pod]:
    """The pod templates of a Job or a PyTorchJob (whose replica's restartPolicy is its pods')."""
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    if doc["kind"] == "Job":
        template = doc["spec"]["template"]
        yield Pod(name, template, template["spec"]["restartPolicy"])
    elif doc["kind"] == "PyTorchJob":
        for replica, spec in doc["spec"]["pytorchReplicaSpecs"].items():
            yield Pod(f"{name}/{replica}", spec["template"], spec["restartPolicy"])


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def image_name(image: str) -> str:
    """The name without registry or tag: registry.example.com/ml/classimbalance-rule:0.1.0 ->
    classimbalance-rule."""
    return image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]


@dataclass(frozen=True)
class Evaluator:
    """The evaluator's container in a rendered pod, with the overlay's ConfigMaps."""

    overlay: str
    pod: Pod
    container: dict[str, Any]
    configmaps: dict[str, dict[str, str]]
    """Every rendered ConfigMap's data, by name."""

    @property
    def env(self) -> dict[str, str]:
        return {item["name"]: item["value"] for item in self.container.get("env", [])}

    @property
    def mounts(self) -> list[dict[str, Any]]:
        return list(self.container.get("volumeMounts", []))

    def volume(self, name: str) -> dict[str, Any]:
        volumes: list[dict[str, Any]] = self.pod.spec["volumes"]
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

    def read_mounted(self, path: str) -> str | None:
        """A file as the container would see it, for the files ConfigMaps provide."""
        mount = self.mount_of(path)
        if mount is None:
            return None
        volume = self.volume(mount["name"])
        if "configMap" not in volume:
            return None
        key = str(PurePosixPath(path).relative_to(mount["mountPath"]))
        return self.configmaps.get(volume["configMap"]["name"], {}).get(key)


def evaluators(overlay: str) -> list[Evaluator]:
    docs = rendered(overlay)
    configmaps = {
        doc["metadata"]["name"]: dict(doc.get("data", {}))
        for doc in docs
        if doc["kind"] == "ConfigMap"
    }
    return [
        Evaluator(overlay, pod, container, configmaps)
        for doc in docs
        for pod in pods(doc)
        for container in containers(pod.spec)
        if container["name"] == CONTAINER
    ]


def evaluator(overlay: str) -> Evaluator:
    [found] = evaluators(overlay)
    return found
