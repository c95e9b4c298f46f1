"""The image as users run it: built with podman from the Dockerfile (on the stand-in base
image), run against a trial mounted from the host, scraped from the host, stopped with
`podman stop`; the exit code and the status file say the verdict."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from container.status import EXIT_CODES, Status
from devtools.write_trial import end_training
from tests.deploy.podman import IMAGE, Podman, podman_session, run_detached
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


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    with podman_session() as session:
        seconds = session.build()
        print(f"image built in {seconds:.1f} s")
        yield session


def writable(path: Path) -> Path:
    """A host folder the image's user (10001) can write: a status file goes there."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


def status(out: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((out / "status.json").read_text())
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


def test_the_image_is_configured_as_documented(podman: Podman) -> None:
    [image] = json.loads(podman("image", "inspect", IMAGE).stdout)
    config = image["Config"]
    assert config["Entrypoint"] == ["/entrypoint.sh"]
    assert config["User"] == "10001:10001"
    assert "9410/tcp" in config["ExposedPorts"]
    assert config["WorkingDir"] == "/work"
    assert config["StopSignal"] in {"SIGTERM", "15"}
    health = image.get("Healthcheck") or config.get("Healthcheck")
    assert health is not None
    assert "/healthz" in " ".join(health["Test"])
    labels = config["Labels"]
    for key in ("title", "description", "version", "revision", "created", "licenses"):
        assert labels[f"org.opencontainers.image.{key}"], key


CONTENTS = """
import importlib.util, json, os, shutil, sys
print(json.dumps({
    "uid": os.getuid(),
    "gid": os.getgid(),
    "modules": {m: importlib.util.find_spec(m) is not None for m in (
        "evaluator", "container", "smdebug", "pandas", "prometheus_client",
        "tests", "devtools", "pytest", "ruff", "mypy", "hypothesis", "moto", "sklearn")},
    "files": {p: os.path.exists(p) for p in (
        "/src", "/wheels", "/deps", "/tmp/wheels", "/requirements.txt", "/work/.venv",
        "/work/tests")},
    "gcc": shutil.which("gcc"),
    "cli": shutil.which("classimbalance-rule"),
    "cwd": os.getcwd(),
}))
"""


def test_the_image_holds_the_runtime_and_nothing_else(podman: Podman) -> None:
    """A first argument that is not a flag runs as a command (the entrypoint's debug door)."""
    result = podman("run", "--rm", IMAGE, "python", "-c", CONTENTS)
    found = json.loads(result.stdout)
    assert (found["uid"], found["gid"]) == (10001, 10001)
    modules = found["modules"]
    for present in ("evaluator", "container", "smdebug", "pandas", "prometheus_client"):
        assert modules[present], present
    for absent in ("tests", "devtools", "pytest", "ruff", "mypy", "hypothesis", "moto"):
        assert not modules[absent], absent
    assert not modules["sklearn"]
    assert not any(found["files"].values()), found["files"]
    assert found["gcc"] is None, "the compiler stays in the build stage"
    assert found["cli"] is not None
    assert found["cwd"] == "/work"


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
    assert (out / "status.json").stat().st_uid == 10001
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


def test_the_smdebug_reader_runs_in_the_image(podman: Podman, tmp_path: Path) -> None:
    """smdebug is in the image for --reader smdebug; it agrees with the native reader."""
    trial, truth = write_live_trial(tmp_path, steps=4)
    end_training(str(trial))
    verdicts = {}
    for reader in ("native", "smdebug"):
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
            IMAGE,
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
    assert sum(c["samples"] for c in verdicts["native"][2].values()) == sum(
        sum(entry["samples"]) for entry in truth
    )
