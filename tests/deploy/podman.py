"""Podman for the image tests: the environment of tests/deploy/podman_env.sh (private storage,
a containers.conf for this kind of host, the stand-in base image), the build, and containers
that are always removed."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.deploy.tools import REPO, required_tool, unavailable

SETUP = REPO / "tests" / "deploy" / "podman_env.sh"
IMAGE = "localhost/classimbalance-rule:test"
"""The slim image (the Dockerfile's default target, `slim`): the native reader only."""
IMAGE_FULL = "localhost/classimbalance-rule:test-smdebug"
"""The full image (target `full`): the slim one plus smdebug for ``--reader smdebug``."""
TARGETS = {IMAGE: "slim", IMAGE_FULL: "full"}
LOCKS = REPO / "config" / "requirements"
LABEL = "classimbalance-rule.test"


def environment() -> dict[str, str]:
    """The process environment plus podman's, after making the stand-in base image if missing
    (which needs root and debootstrap; about a minute, once per machine)."""
    if os.geteuid() != 0:
        unavailable("the image tests need root (rootful podman with the stand-in base image)")
    required_tool("podman")
    if subprocess.run(["which", "debootstrap"], capture_output=True, check=False).returncode:
        required_tool("debootstrap")
    result = subprocess.run(
        [str(SETUP), "base"], capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"{SETUP} base failed:\n{result.stdout}{result.stderr}")
    env = dict(os.environ)
    for name, value in re.findall(r"^export (\w+)=(\S+)$", result.stdout, flags=re.MULTILINE):
        env[name] = value
    return env


@dataclass
class Podman:
    env: dict[str, str]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    names: list[str] = field(default_factory=list)

    def __call__(
        self, *arguments: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *arguments],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(arguments)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def build(self, image: str = IMAGE) -> float:
        """Build ``image`` (its target in TARGETS) from the Dockerfile, the dependencies from the
        locks (the build context ``locks``), docker format (which keeps the HEALTHCHECK); the
        seconds it took."""
        started = time.monotonic()
        self(
            "build",
            "--format",
            "docker",
            "--pull=never",
            "--build-context",
            f"locks={LOCKS}",
            "--target",
            TARGETS[image],
            "--tag",
            image,
            ".",
            timeout=1800,
        )
        return time.monotonic() - started

    def new_name(self) -> str:
        name = f"classimbalance-test-{self.run_id}-{len(self.names)}"
        self.names.append(name)
        return name

    def remove_all(self) -> None:
        """Remove the containers of this run, and those a killed earlier run left behind."""
        left = self("ps", "-a", "-q", "--filter", f"label={LABEL}", check=False).stdout.split()
        for container in [*self.names, *left]:
            self("rm", "-f", "-t", "0", container, check=False)


@contextmanager
def podman_session() -> Iterator[Podman]:
    podman = Podman(environment())
    podman.remove_all()
    try:
        yield podman
    finally:
        podman.remove_all()
        # Each build with changed sources leaves untagged layers (the build cache): keep a
        # day's worth, so the storage stays bounded on a machine that runs this suite often.
        podman("image", "prune", "--force", "--filter", "until=24h", check=False)


def run_detached(
    podman: Podman, options: Sequence[str], arguments: Sequence[str], image: str = IMAGE
) -> str:
    """Start a container of ``image`` in the background; its name."""
    name = podman.new_name()
    podman(
        "run",
        "-d",
        "--name",
        name,
        "--label",
        LABEL,
        # As in the Kubernetes manifests: read-only root, no capabilities, no privilege gain.
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--health-interval",
        "disable",
        *options,
        image,
        *arguments,
    )
    return name
