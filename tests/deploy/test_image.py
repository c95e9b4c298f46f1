"""The images as users run them: both targets of the Dockerfile built with podman (on the
stand-in base image) — the slim default, with the native reader only, and the full one with
smdebug — run against a trial mounted from the host, scraped from the host, stopped with
`podman stop`, under the default uid and under any uid with gid 0 (as OpenShift runs them);
the exit code and the status file say the verdict."""

from __future__ import annotations

import json
import os
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from container.status import EXIT_CODES, Status
from devtools.write_trial import end_training
from tests.deploy.podman import IMAGE, IMAGE_FULL, LABEL, Podman, podman_session, run_detached
from tests.deploy.tools import REPO
from tests.integration.processes import (
    free_port,
    read_truth,
    scrape,
    start_writer,
    stop_process,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.podman]

ENTRYPOINT_ENV = ("-e", "CLASSIMBALANCE_STATUS_FILE=/out/status.json", "-e", "ARGMAX=true")
"""Settings from the environment, as a managed service or a manifest passes them."""


DEFAULT_USER = (10001, 0)
"""The image's USER: a numeric uid, and gid 0, which owns what the image writes."""
RANDOM_UID = 123456
"""A uid the image knows nothing of, as OpenShift's restricted SCC assigns one (with gid 0)."""
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
FULL_TAG = f"classimbalance-rule:{VERSION}-smdebug"
"""The tag of the image with the smdebug reader (`make image-full`), which the slim one names."""


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    """Both images, the slim one first: the full one is built on its layers."""
    with podman_session() as session:
        for image in (IMAGE, IMAGE_FULL):
            seconds = session.build(image)
            print(f"{image} built in {seconds:.1f} s")
        yield session


@pytest.fixture(scope="module")
def ended_trial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A finished trial of four steps, and how many labels it holds."""
    trial, truth = write_live_trial(tmp_path_factory.mktemp("ended"), steps=4)
    end_training(str(trial))
    return trial, sum(sum(entry["samples"]) for entry in truth)


def writable(path: Path) -> Path:
    """A host folder any container uid can write: a status file goes there."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def owned(path: Path, uid: int, gid: int, mode: int) -> Path:
    """A host folder with this owner and mode (and nothing more): what a volume looks like."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    path.chmod(mode)
    return path


def user_options(user: tuple[int, int] | None) -> list[str]:
    return [] if user is None else ["--user", f"{user[0]}:{user[1]}"]


def image_config(podman: Podman, image: str) -> dict[str, Any]:
    [found] = json.loads(podman("image", "inspect", image).stdout)
    config: dict[str, Any] = found
    return config


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


def status(out: Path, name: str = "status.json") -> dict[str, Any]:
    document: dict[str, Any] = json.loads((out / name).read_text())
    return document


def exit_code(podman: Podman, name: str, timeout: float = 60) -> int:
    return int(podman("wait", name, timeout=timeout).stdout.strip())


def write_live_trial(tmp_path: Path, steps: int) -> tuple[Path, list[dict[str, Any]]]:
    """A trial of `steps` complete steps without the end marker: a training job still going."""
    trial, truth = tmp_path / "trial", tmp_path / "truth.jsonl"
    writer = start_writer(trial, truth, steps=steps, interval=0, workers=2, end=False)
    try:
        assert writer.wait(120) == 0
    finally:
        stop_process(writer)
    return trial, read_truth(truth)


@pytest.mark.parametrize(("image", "variant"), [(IMAGE, "slim"), (IMAGE_FULL, "smdebug")])
def test_the_image_is_configured_as_documented(podman: Podman, image: str, variant: str) -> None:
    found = image_config(podman, image)
    config = found["Config"]
    assert config["Entrypoint"] == ["/entrypoint.sh"]
    assert config["User"] == "10001:0", "numeric (runAsNonRoot can check it), and gid 0"
    assert "9410/tcp" in config["ExposedPorts"]
    assert config["WorkingDir"] == "/work"
    assert "HOME=/work" in config["Env"], "a HOME for any uid, passwd entry or not"
    assert config["StopSignal"] in {"SIGTERM", "15"}
    health = found.get("Healthcheck") or config.get("Healthcheck")
    assert health is not None
    assert "/healthz" in " ".join(health["Test"])
    labels = config["Labels"]
    for key in ("title", "description", "version", "revision", "created", "licenses"):
        assert labels[f"org.opencontainers.image.{key}"], key
    assert labels["classimbalance-rule.variant"] == variant


def test_the_full_image_is_the_slim_one_plus_smdebug(podman: Podman) -> None:
    """One Dockerfile, two targets: the full image shares every layer of the slim one (built
    once, stored once), and adds smdebug and what it needs."""
    slim, full = (image_config(podman, image) for image in (IMAGE, IMAGE_FULL))
    slim_layers, full_layers = slim["RootFS"]["Layers"], full["RootFS"]["Layers"]
    assert full_layers[: len(slim_layers)] == slim_layers
    assert len(full_layers) - len(slim_layers) <= 2, "the installed files, and pip check"
    assert slim["Size"] < full["Size"]
    assert full["Config"]["Entrypoint"] == slim["Config"]["Entrypoint"]
    assert full["Config"]["User"] == slim["Config"]["User"]


CONTENTS = """
import importlib.util, json, os, shutil, sys
home = os.path.expanduser("~")
print(json.dumps({
    "uid": os.getuid(),
    "gid": os.getgid(),
    "home": home,
    "writable": {p: os.access(p, os.W_OK) for p in (home, os.getcwd(), "/tmp")},
    "modules": {m: importlib.util.find_spec(m) is not None for m in (
        "evaluator", "container", "smdebug", "pandas", "prometheus_client",
        "tests", "devtools", "pytest", "ruff", "mypy", "hypothesis", "moto", "sklearn")},
    "files": {p: os.path.exists(p) for p in (
        "/src", "/wheels", "/deps", "/install", "/locks", "/tmp/wheels", "/tmp/locks",
        "/requirements.txt", "/work/.venv", "/work/tests")},
    "gcc": shutil.which("gcc"),
    "cli": shutil.which("classimbalance-rule"),
    "cwd": os.getcwd(),
}))
"""

READER_MODULES = ("smdebug", "pandas")
"""What only the full image holds: they serve only --reader smdebug."""


@pytest.mark.parametrize("user", [None, (RANDOM_UID, 0)], ids=["default-uid", "random-uid"])
@pytest.mark.parametrize("image", [IMAGE, IMAGE_FULL], ids=["slim", "full"])
def test_the_image_holds_the_runtime_and_nothing_else(
    podman: Podman, image: str, user: tuple[int, int] | None
) -> None:
    """A first argument that is not a flag runs as a command (the entrypoint's debug door)."""
    result = podman("run", "--rm", *user_options(user), image, "python", "-c", CONTENTS)
    found = json.loads(result.stdout)
    assert (found["uid"], found["gid"]) == (user or DEFAULT_USER)
    assert found["home"] == "/work"
    assert all(found["writable"].values()), found["writable"]
    modules = found["modules"]
    for present in ("evaluator", "container", "prometheus_client"):
        assert modules[present], present
    for module in READER_MODULES:
        assert modules[module] is (image == IMAGE_FULL), module
    for absent in ("tests", "devtools", "pytest", "ruff", "mypy", "hypothesis", "moto"):
        assert not modules[absent], absent
    assert not modules["sklearn"]
    assert not any(found["files"].values()), found["files"]
    assert found["gcc"] is None, "the compiler stays in the build stage"
    assert found["cli"] is not None
    assert found["cwd"] == "/work"


OWNERSHIP = """
import json, os, stat
owned, private = [], []
for root, folders, files in os.walk("/"):
    if root in ("/proc", "/sys", "/dev"):
        folders[:] = []
        continue
    for name in folders + files:
        path = os.path.join(root, name)
        info = os.lstat(path)
        if info.st_uid == 10001:
            owned.append(path)
        if stat.S_ISDIR(info.st_mode) and info.st_uid != 0 and not info.st_mode & stat.S_IWGRP:
            private.append(path)
work = os.stat("/work")
print(json.dumps({"owned": owned, "private": private,
                  "work": [work.st_gid, stat.filemode(work.st_mode)]}))
"""


@pytest.mark.parametrize("image", [IMAGE, IMAGE_FULL], ids=["slim", "full"])
def test_what_the_image_writes_belongs_to_group_0(podman: Podman, image: str) -> None:
    """OpenShift runs the image as a random uid in group 0: the working folder is group 0's
    with its owner's rights, and nothing belongs to uid 10001 alone."""
    result = podman("run", "--rm", "--user", "0:0", image, "python", "-c", OWNERSHIP)
    found = json.loads(result.stdout)
    assert found["work"] == [0, "drwxrwxr-x"]
    assert found["owned"] == [], "owned by uid 10001"
    assert found["private"] == [], "folders of a user that group 0 cannot write"


def test_the_container_follows_a_mounted_trial_and_exits_with_the_verdict(
    podman: Podman, tmp_path: Path
) -> None:
    trial, truth = write_live_trial(tmp_path, steps=12)
    out = writable(tmp_path / "out")
    port = free_port()
    name = run_detached(
        podman,
        [
            "-p",
            f"127.0.0.1:{port}:9410",
            "-v",
            f"{trial}:/trial:ro",
            "-v",
            f"{out}:/out",
            *ENTRYPOINT_ENV,
            "-e",
            "SAMPLES=200",
        ],
        ["--trial", "/trial", "--poll-interval", "0.2", "--log-format", "json"],
    )
    total = sum(sum(entry["samples"]) for entry in truth)
    wait_for(lambda: (s := scrape(port)) is not None and s.samples_total == total, 60)
    scraped = scrape(port)
    assert scraped is not None
    expected = [sum(entry["samples"][c] for entry in truth) for c in range(5)]
    assert scraped.class_samples == {str(c): n for c, n in enumerate(expected) if n}
    assert get(port, "/healthz")[0] == 200
    assert get(port, "/readyz")[0] == 200
    code, page = get(port, "/report")
    assert code == 200, "the live report"
    assert '<meta http-equiv="refresh"' in page
    assert podman("healthcheck", "run", name, check=False).returncode == 0, "healthy"
    assert status(out)["terminal"] is False

    end_training(str(trial))  # training ends: the evaluator finishes and exits
    assert exit_code(podman, name) == 1, "IssuesFound: the classes are 20:1 imbalanced"
    document = status(out)
    assert document["status"] == "IssuesFound"
    assert document["terminal"] is True
    assert document["ended_by"] == "end_of_training"
    assert document["samples"] == total
    assert document["parameters"]["samples"] == 200, "SAMPLES from the environment"
    written = (out / "status.json").stat()
    assert (written.st_uid, written.st_gid) == DEFAULT_USER, "uid 10001, group 0"
    report = (out / "status.html").read_text()
    assert 'data-status="IssuesFound"' in report, "the HTML report beside the status file"
    logs = podman("logs", name).stderr
    events = [json.loads(line)["event"] for line in logs.splitlines() if line.startswith("{")]
    assert "ended" in events, "--log-format json passed through"


def test_podman_stop_is_prompt_and_leaves_a_stopped_status(podman: Podman, tmp_path: Path) -> None:
    trial, _ = write_live_trial(tmp_path, steps=3)
    out = writable(tmp_path / "out")
    port = free_port()
    name = run_detached(
        podman,
        [
            "-p",
            f"127.0.0.1:{port}:9410",
            "-v",
            f"{trial}:/trial:ro",
            "-v",
            f"{out}:/out",
            *ENTRYPOINT_ENV,
        ],
        ["--trial", "/trial", "--samples", "100000"],
    )
    wait_for(lambda: get(port, "/readyz")[0] == 200, 60)
    started = time.monotonic()
    podman("stop", "--time", "10", name, timeout=30)
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"podman stop took {elapsed:.1f} s: SIGTERM did not reach the evaluator"
    assert exit_code(podman, name) == EXIT_CODES[Status.STOPPED], "4: stopped before a verdict"
    [state] = json.loads(podman("inspect", name).stdout)
    assert state["State"]["ExitCode"] == EXIT_CODES[Status.STOPPED]
    document = status(out)
    assert document["status"] == "Stopped"
    assert document["terminal"] is True
    assert document["ended_by"] == "stopped"


def test_invalid_settings_exit_2_with_an_error_status(podman: Podman, tmp_path: Path) -> None:
    out = writable(tmp_path / "out")
    name = podman.new_name()
    result = podman(
        "run",
        "--name",
        name,
        "--read-only",
        "-v",
        f"{out}:/out",
        *ENTRYPOINT_ENV,
        "-e",
        "THRESHOLD_IMBALANCE=0.5",
        IMAGE,
        "--trial",
        "/nowhere",
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "THRESHOLD_IMBALANCE" in result.stderr
    document = status(out)
    assert document["status"] == "Error"
    assert "threshold_imbalance" in document["error"]


@pytest.mark.parametrize("user", [None, (RANDOM_UID, 0)], ids=["default-uid", "random-uid"])
def test_any_uid_evaluates_a_trial_into_the_working_folder(
    podman: Podman, ended_trial: tuple[Path, int], tmp_path: Path, user: tuple[int, int] | None
) -> None:
    """The default status file (relative) and its report land in /work, under any uid."""
    trial, total = ended_trial
    name = podman.new_name()
    result = podman(
        "run",
        "--name",
        name,
        "--label",
        LABEL,
        *user_options(user),
        "-v",
        f"{trial}:/trial:ro",
        "-e",
        "ARGMAX=true",
        IMAGE,
        "--trial",
        "/trial",
        "--samples",
        "50",
        check=False,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    podman("cp", f"{name}:/work/.", str(tmp_path))
    document = status(tmp_path, "classimbalance-status.json")
    assert document["status"] == "IssuesFound"
    assert document["samples"] == total
    assert 'data-status="IssuesFound"' in (tmp_path / "classimbalance-status.html").read_text()


@pytest.mark.parametrize(
    ("user", "folder"),
    [
        pytest.param(None, (0, 0, 0o770), id="default-uid-through-gid-0"),
        pytest.param((RANDOM_UID, 0), (0, 0, 0o770), id="random-uid-through-gid-0"),
        pytest.param(
            (RANDOM_UID, 0), (RANDOM_UID, RANDOM_UID, 0o755), id="random-uid-owns-the-folder"
        ),
    ],
)
def test_any_uid_writes_its_status_and_report_into_a_mounted_folder(
    podman: Podman,
    ended_trial: tuple[Path, int],
    tmp_path: Path,
    user: tuple[int, int] | None,
    folder: tuple[int, int, int],
) -> None:
    """A volume group 0 may write (OpenShift's, or `chgrp 0 out && chmod g+rwx out`), or a
    folder of the uid the container runs as (the Dockerfile's `--user "$(id -u):0"`), with a
    read-only root file system and no capabilities, as the Kubernetes manifests run it."""
    trial, total = ended_trial
    out = owned(tmp_path / "out", *folder)
    result = podman(
        "run",
        "--rm",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        *user_options(user),
        "-v",
        f"{trial}:/trial:ro",
        "-v",
        f"{out}:/out",
        *ENTRYPOINT_ENV,
        IMAGE,
        "--trial",
        "/trial",
        "--samples",
        "50",
        check=False,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    document = status(out)
    assert document["status"] == "IssuesFound"
    assert document["samples"] == total
    written = out / "status.json"
    assert (written.stat().st_uid, written.stat().st_gid) == (user or DEFAULT_USER)
    assert 'data-status="IssuesFound"' in (out / "status.html").read_text()


def test_the_smdebug_reader_runs_in_the_full_image(
    podman: Podman, ended_trial: tuple[Path, int], tmp_path: Path
) -> None:
    """--reader smdebug in the full image agrees with the native reader in the slim one."""
    trial, total = ended_trial
    verdicts = {}
    for reader, image in (("native", IMAGE), ("smdebug", IMAGE_FULL)):
        out = writable(tmp_path / reader)
        result = podman(
            "run",
            "--rm",
            "--read-only",
            "-v",
            f"{trial}:/trial:ro",
            "-v",
            f"{out}:/out",
            *ENTRYPOINT_ENV,
            image,
            "--trial",
            "/trial",
            "--reader",
            reader,
            "--samples",
            "50",
            check=False,
            timeout=120,
        )
        assert result.returncode in (0, 1), result.stderr
        document = status(out)
        assert document["reader"] == reader
        verdicts[reader] = (result.returncode, document["status"], document["classes"])
    assert verdicts["smdebug"] == verdicts["native"]
    assert sum(c["samples"] for c in verdicts["native"][2].values()) == total


def test_the_slim_image_says_which_image_has_the_smdebug_reader(
    podman: Podman, ended_trial: tuple[Path, int], tmp_path: Path
) -> None:
    """--reader smdebug in the slim image: an Error at once (exit 2) that names the image with
    smdebug, not an ImportError once the trial shows up."""
    trial, _ = ended_trial
    out = writable(tmp_path / "out")
    result = podman(
        "run",
        "--rm",
        "--read-only",
        "-v",
        f"{trial}:/trial:ro",
        "-v",
        f"{out}:/out",
        *ENTRYPOINT_ENV,
        IMAGE,
        "--trial",
        "/trial",
        "--reader",
        "smdebug",
        check=False,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    document = status(out)
    assert document["status"] == "Error"
    for said in (result.stderr, document["error"]):
        assert FULL_TAG in said, said
        assert "ModuleNotFoundError" not in said, said
