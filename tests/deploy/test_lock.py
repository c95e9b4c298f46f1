"""The image's locks (config/requirements, written by `make lock`): every dependency pyproject.toml
declares is pinned there by a version its specifier accepts, each package once, exactly and with
its hashes; and the Dockerfile installs from them only. Fast: nothing is built or downloaded."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from tests.deploy.tools import REPO

LOCKS = REPO / "config" / "requirements"
RUNTIME = LOCKS / "runtime.txt"
"""The slim image's dependencies: pyproject's [project] dependencies, every transitive one."""
SMDEBUG = LOCKS / "smdebug.txt"
"""What the full image adds for the smdebug extra, on top of RUNTIME (none of its packages)."""
BUILD = LOCKS / "build.txt"
"""The build stage's tools: pyproject's [build-system] requires, and wheel."""
ALL_LOCKS = (RUNTIME, SMDEBUG, BUILD)

LINUX_CPYTHON_311 = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
}
"""The environment the locks are for (uv's --python-version 3.11 --python-platform linux)."""


@dataclass(frozen=True)
class Pin:
    name: NormalizedName
    version: Version
    hashes: tuple[str, ...]
    text: str


def read_lock(path: Path) -> list[Pin]:
    """The pins of a lock, a requirements file of `name==version --hash=sha256:...` entries
    (continued with backslashes) and comments; anything else fails here."""
    pins = []
    for line in path.read_text().replace("\\\n", " ").splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        assert not entry.startswith("-"), f"{path.name}: no options, only pins: {entry!r}"
        spec, _, options = entry.partition(" --")
        hashes = tuple(re.findall(r"--hash=(\S+)", f"--{options}" if options else ""))
        requirement = Requirement(spec.strip())
        assert requirement.marker is None, f"{path.name}: a pin for Linux only: {entry!r}"
        assert not requirement.extras, entry
        assert requirement.url is None, entry
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1, f"{path.name}: {spec} is not pinned"
        [specifier] = specifiers
        assert specifier.operator == "==", f"{path.name}: {spec} is not an exact pin"
        assert "*" not in specifier.version, f"{path.name}: {spec} is not an exact pin"
        pins.append(
            Pin(canonicalize_name(requirement.name), Version(specifier.version), hashes, spec)
        )
    assert pins, f"{path.name} pins nothing"
    return pins


def pinned(*paths: Path) -> dict[NormalizedName, Pin]:
    return {pin.name: pin for path in paths for pin in read_lock(path)}


def pyproject() -> dict[str, Any]:
    document: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())
    return document


def applicable(requirements: list[str]) -> list[Requirement]:
    """The requirements that apply on Linux with CPython 3.11 (their markers evaluated)."""
    parsed = [Requirement(text) for text in requirements]
    return [r for r in parsed if r.marker is None or r.marker.evaluate(LINUX_CPYTHON_311)]


def assert_satisfied(requirements: list[Requirement], pins: dict[NormalizedName, Pin]) -> None:
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not pinned"
        version = pins[name].version
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{requirement} is pinned to {version}, which its specifier excludes"
        )


@pytest.mark.parametrize("lock", ALL_LOCKS, ids=lambda path: path.name)
def test_each_lock_pins_every_package_exactly_once_with_hashes(lock: Path) -> None:
    pins = read_lock(lock)
    names = [pin.name for pin in pins]
    twice = sorted({name for name in names if names.count(name) > 1})
    assert not twice, f"{lock.name} pins these more than once: {twice}"
    for pin in pins:
        assert pin.hashes, f"{lock.name}: {pin.text} has no hash (pip --require-hashes)"
        for digest in pin.hashes:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), (pin.text, digest)


def test_the_two_image_locks_pin_each_package_once_between_them() -> None:
    """The full image installs runtime.txt and then smdebug.txt: a package in both would be
    pinned twice (perhaps at two versions)."""
    runtime, smdebug = pinned(RUNTIME), pinned(SMDEBUG)
    assert not runtime.keys() & smdebug.keys()


def test_every_dependency_is_pinned_in_the_runtime_lock_within_its_specifier() -> None:
    assert_satisfied(applicable(pyproject()["project"]["dependencies"]), pinned(RUNTIME))


def test_the_smdebug_extra_is_pinned_in_the_full_locks_within_its_specifiers() -> None:
    extra = applicable(pyproject()["project"]["optional-dependencies"]["smdebug"])
    assert_satisfied(extra, pinned(RUNTIME, SMDEBUG))
    added = pinned(SMDEBUG)
    for requirement in extra:
        name = canonicalize_name(requirement.name)
        assert name in added or name in pinned(RUNTIME), requirement


def test_the_slim_lock_leaves_out_the_smdebug_reader() -> None:
    """smdebug and pandas serve only --reader smdebug: the slim image has neither."""
    runtime, smdebug = pinned(RUNTIME), pinned(SMDEBUG)
    for name in ("smdebug", "pandas", "protobuf", "pyinstrument", "requests", "psutil"):
        assert name not in runtime, name
        assert name in smdebug, name


def test_the_build_lock_satisfies_the_build_system() -> None:
    """The project's wheel is built without build isolation, by the locked setuptools."""
    requires = applicable(pyproject()["build-system"]["requires"])
    assert_satisfied([*requires, Requirement("wheel")], pinned(BUILD))


@pytest.mark.parametrize("lock", ALL_LOCKS, ids=lambda path: path.name)
def test_each_lock_says_how_it_was_made(lock: Path) -> None:
    """Its head has the command `make lock` ran, for CPython 3.11 on Linux, with hashes."""
    head = lock.read_text().split("\n", 2)
    assert head[0] == "# This file was autogenerated by uv via the following command:"
    command = head[1].removeprefix("#").split()
    assert command[:3] == ["uv", "pip", "compile"], head[1]
    for flag in ("--python-version 3.11", "--python-platform linux", "--generate-hashes"):
        assert flag in " ".join(command), flag
    assert re.search(r"--exclude-newer \d{4}-\d\d-\d\d", head[1]), "a lock date: reproducible"
    assert command[-2:] == ["-o", lock.relative_to(REPO).as_posix()]
    makefile = (REPO / "Makefile").read_text()
    assert f"-o $(LOCKS)/{lock.name}" in makefile, "the Makefile's lock target writes it"


def dockerfile_instructions() -> list[str]:
    text = (REPO / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [line.strip() for line in "\n".join(lines).replace("\\\n", " ").splitlines()]


def test_the_dockerfile_installs_from_the_locks_only() -> None:
    """Every pip install or wheel either checks the locks' hashes, or reads no index at all
    (wheels made in an earlier stage): no resolution of unpinned requirements."""
    commands = [
        command.strip()
        for instruction in dockerfile_instructions()
        if instruction.startswith("RUN ")
        for command in re.split(r"&&|;", instruction.removeprefix("RUN "))
        if re.search(r"\bpip (install|wheel|download)\b", command)
    ]
    assert commands
    used = set()
    for command in commands:
        locks = re.findall(r"--requirement /[\w/]*?/(\w+\.txt)", command)
        if "--no-index" in command:
            assert not locks, command
            continue
        assert "--require-hashes" in command, f"not checked against the locks: {command}"
        assert locks, f"--require-hashes without a lock: {command}"
        used.update(locks)
    assert used == {lock.name for lock in ALL_LOCKS}


def test_the_dockerfile_takes_the_locks_from_config_requirements() -> None:
    instructions = dockerfile_instructions()
    assert "FROM scratch AS locks" in instructions
    assert "COPY config/requirements/*.txt /" in instructions
    makefile = (REPO / "Makefile").read_text()
    assert "--build-context locks=$(LOCKS)" in makefile
    assert "LOCKS := config/requirements" in makefile
