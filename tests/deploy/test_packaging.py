"""The package builds and runs without a C compiler: the compiled kernels are optional.

A wheel built where no compiler works (``CC=false``) must still build, hold no extension, and
run the evaluator in pure Python with the same verdict and counts, saying once why it is
slower. The real build path (gcc) is what every other test runs on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.container.trials import scores_batch, write_trial

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "evaluator", "container")


def _copy_sources(target: Path) -> None:
    """The files a wheel is built from, without anything built in place here."""
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)


def _evaluate(site: Path | None, trial: Path, status: Path) -> subprocess.CompletedProcess[str]:
    """The command on ``trial``, importing the package from ``site`` when given."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLASSIMB")}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    status.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "container",
            "--trial",
            str(trial),
            "--once",
            "--status-file",
            str(status),
            "--argmax",
            "true",
            "--samples",
            "100",
        ],
        env=env,
        cwd=status.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_a_compiler_the_wheel_builds_and_runs_in_pure_python(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    _copy_sources(source)
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--verbose",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            str(source),
        ],
        env={**os.environ, "CC": "false"},
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "evaluator.compiled._kernels" in build.stdout + build.stderr, "the build says so"
    (wheel,) = wheels.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [name for name in names if name.endswith(".so")], names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)

    trial = tmp_path / "trial"
    write_trial(trial, steps=12, make_batch=scores_batch([8, 4, 2, 1], batch=32), workers=2)
    pure = _evaluate(site, trial, tmp_path / "pure" / "status.json")
    compiled = _evaluate(None, trial, tmp_path / "compiled" / "status.json")

    notice = "the compiled kernels are not installed"
    assert pure.stderr.count(notice) == 1, pure.stderr
    assert notice not in compiled.stderr
    assert pure.returncode == compiled.returncode
    pure_status = json.loads((tmp_path / "pure" / "status.json").read_text())
    compiled_status = json.loads((tmp_path / "compiled" / "status.json").read_text())
    for key in (
        "status",
        "samples",
        "classes",
        "issue_step",
        "findings",
        "confusion_matrix",
        "steps_evaluated",
    ):
        assert pure_status.get(key) == compiled_status.get(key), key
