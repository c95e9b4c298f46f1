"""``classimbalance-rule report``: the page again from a status file or a checkpoint, and a clear
error for anything else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from container.app import run
from container.cli import main
from container.config import Settings
from evaluator.core import RuleParameters
from tests.container.trials import scores_batch, write_trial


def evaluated(tmp_path: Path, **changes: object) -> Settings:
    trial = write_trial(tmp_path / "trial", steps=30, make_batch=scores_batch([30, 3, 1], 32))
    settings = Settings.of(
        base_trial=str(trial.path),
        status_file=str(tmp_path / "status.json"),
        checkpoint_file=str(tmp_path / "checkpoint.json"),
        rule=RuleParameters(argmax=True),
        metrics_enabled=False,
    ).changed(**changes)  # type: ignore[arg-type]
    run(settings)
    return settings


def body(page: str) -> str:
    """The page without its footer (which says when and from what it was generated)."""
    return page.split("<footer>", maxsplit=1)[0]


def test_the_page_of_a_status_file_is_the_one_the_evaluation_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evaluated(tmp_path)
    out = tmp_path / "again.html"
    assert main(["report", str(tmp_path / "status.json"), "--out", str(out)]) == 0
    assert body(out.read_text()) == body((tmp_path / "status.html").read_text())
    assert f"report written to {out}" in capsys.readouterr().out


def test_the_default_output_is_beside_the_source(tmp_path: Path) -> None:
    evaluated(tmp_path)
    (tmp_path / "status.html").unlink()
    assert main(["report", str(tmp_path / "status.json")]) == 0
    assert (tmp_path / "status.html").exists()


def test_the_page_of_a_checkpoint_has_its_counts_and_history(tmp_path: Path) -> None:
    evaluated(tmp_path)
    names = tmp_path / "names.txt"
    names.write_text("common\nrare\nrarest\n")
    out = tmp_path / "checkpoint.html"
    code = main(
        [
            "report",
            str(tmp_path / "checkpoint.json"),
            "--out",
            str(out),
            "--class-names-file",
            str(names),
        ]
    )
    assert code == 0
    page = out.read_text()
    status = json.loads((tmp_path / "status.json").read_text())
    assert 'data-status="IssuesFound"' in page
    for c, entry in status["classes"].items():
        assert f'data-class="{c}"' in page
        assert f"<td>{entry['samples']:,}</td>" in page.replace(" class=num", "")
    assert "class 2 (rarest)" in page
    assert page.count('data-chart="ratio"') == 1
    assert f'data-point="{status["last_step"]}"' in page


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "holds JSON but not an object"),
        (
            '{"rule": "ClassImbalance"}',
            "neither a status file (it lacks classes, parameters, status)",
        ),
        ('{"format": 99, "fingerprint": {}, "rule_state": {}}', "has format 99"),
        ('{"format": 1, "fingerprint": {"rule": {}}, "rule_state": {}}', "cannot be read"),
    ],
    ids=["not json", "a list", "another document", "another format", "a broken checkpoint"],
)
def test_anything_else_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    source = tmp_path / "source.json"
    source.write_text(content)
    assert main(["report", str(source)]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "source.html").exists()


def test_a_missing_source_and_an_unwritable_output_are_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path / "nothing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    evaluated(tmp_path)
    out = tmp_path / "no" / "such" / "dir" / "x.html"
    (tmp_path / "no").write_text("a file, not a folder")
    assert main(["report", str(tmp_path / "status.json"), "--out", str(out)]) == 2
    assert "give --out a writable path" in capsys.readouterr().err
