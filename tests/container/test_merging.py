"""Shards and their merge driven in-process, on small trials written by smdebug's own writer.

Each shard is ``container.app.run`` with ``emit_state`` (as the Indexed Job's pods run it); the
merge is ``classimbalance-rule merge`` through ``container.merging.main`` (or the command line's
``main``). The merge must say what one process evaluating the whole trial says, refuse states
that do not belong together (saying why), and write every output an evaluation writes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from container import cli, merging
from container.app import Outcome, Runtime, run
from container.config import Settings, load_settings
from container.status import NOT_CHECKED, Status
from container.stopping import StopRequest
from evaluator.core import RuleParameters
from evaluator.trial.layout import event_key, index_key
from tests.container.trials import Batch, scores_batch, write_trial
from tests.integration.test_sharded import COMPARED

STEPS = 8
WORKERS = 2
RULE = RuleParameters(argmax=True, samples=50, threshold_imbalance=3)
"""16 labels per worker and step: the checks run from the second step."""
STOP_ACTION = '{{"name": "stop_file", "path": "{path}"}}'


def drifting(rng: np.random.Generator, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced until step 2, then class 2 all but vanishes: the imbalance builds up over the
    later steps, which a shard of some of them sees sooner than the whole trial does."""
    probs = np.array([1.0, 1.0, 1.0]) if step < 2 else np.array([30.0, 10.0, 0.1])
    return scores_batch(list(probs / probs.sum()), 16, skill=3)(rng, step)


def write(path: Path, make_batch: Batch = drifting, seed: int = 7) -> Path:
    write_trial(path, steps=STEPS, workers=WORKERS, make_batch=make_batch, seed=seed)
    return path


def settings_for(trial: Path, status: Path, **changes: Any) -> Settings:
    base = Settings.of(
        base_trial=str(trial),
        status_file=str(status),
        rule=RULE,
        metrics_enabled=False,
        poll_interval=0.02,
        idle_timeout=30,
    )
    return base.changed(**changes)


def run_shard(trial: Path, out: Path, name: str, **changes: Any) -> Path:
    """Run one shard writing ``<name>.state.json`` in ``out``; its state's path."""
    state = out / f"{name}.state.json"
    outcome = run(settings_for(trial, out / f"{name}.json", emit_state=str(state), **changes))
    assert outcome.status in {Status.ISSUES_FOUND, Status.NO_ISSUES_FOUND}, outcome.document
    assert (outcome.exit_code, outcome.shard_state) == (0, str(state))
    return state


SPLITS: dict[str, list[dict[str, Any]]] = {
    "2 shards of steps": [
        {"shard_count": 2, "shard_index": i, "shard_by": "steps", "shard_steps": 2}
        for i in range(2)
    ],
    "2 shards of workers": [
        {"shard_count": 2, "shard_index": i, "shard_by": "workers"} for i in range(2)
    ],
    "3 shards of 2 workers, one without any": [
        {"shard_count": 3, "shard_index": i, "shard_by": "workers"} for i in range(3)
    ],
    "2 shards of steps, the second without any": [
        {"shard_count": 2, "shard_index": i, "shard_steps": 100} for i in range(2)
    ],
    "2 step ranges": [{"end_step": 5}, {"start_step": 5}],
    "2 ranges, the second split by steps": [
        {"end_step": 3},
        *({"start_step": 3, "shard_count": 2, "shard_index": i, "shard_steps": 1} for i in (0, 1)),
    ],
}
"""Each shard's settings, for one way of splitting the trial."""


def run_shards(trial: Path, out: Path, split: str, **changes: Any) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [
        run_shard(trial, out, f"shard-{index}", **shard, **changes)
        for index, shard in enumerate(SPLITS[split])
    ]


def merge(
    states: Sequence[Path | str],
    status: Path,
    *flags: str,
    environ: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """``classimbalance-rule merge STATE... --status-file STATUS FLAGS``: its exit code and the
    status it wrote."""
    argv = [str(s) for s in states]
    argv += ["--status-file", str(status), "--log-level", "ERROR", *flags]
    code = merging.main(argv, environ={} if environ is None else environ)
    return code, json.loads(status.read_text())


@dataclass(frozen=True)
class Shards:
    """One trial, one process's status of it, and the states of its 2 shards of steps."""

    trial: Path
    one: dict[str, Any]
    one_code: int
    states: list[Path]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Shards:
    out = tmp_path_factory.mktemp("shards")
    trial = write(out / "trial")
    one = run(settings_for(trial, out / "one.json"))
    return Shards(trial, one.document, one.exit_code, run_shards(trial, out, "2 shards of steps"))


# -- the merge equals one process -------------------------------------------------------------

PARAMETER_SETS: dict[str, RuleParameters] = {
    "seed": RULE,
    "window": RuleParameters(
        argmax=True,
        samples=50,
        threshold_imbalance=3,
        window_steps=2,
        minority_not_improving=True,
        confidence=0.9,
    ),
}


def assert_same(one: Mapping[str, Any], merged: Mapping[str, Any]) -> None:
    differing = [key for key in COMPARED if one[key] != merged[key]]
    assert not differing, {key: (one[key], merged[key]) for key in differing[:3]}


@pytest.mark.parametrize("parameters", PARAMETER_SETS)
@pytest.mark.parametrize("split", SPLITS)
def test_a_merge_of_shards_equals_one_process(
    shards: Shards, tmp_path: Path, split: str, parameters: str
) -> None:
    trial = shards.trial
    rule = PARAMETER_SETS[parameters]
    one = run(settings_for(trial, tmp_path / "one.json", rule=rule))
    states = run_shards(trial, tmp_path / "states", split, rule=rule)
    code, merged = merge(states, tmp_path / "merged.json")
    assert_same(one.document, merged)
    assert code == one.exit_code == merged["exit_code"]
    if parameters == "seed":
        assert one.status is Status.ISSUES_FOUND
        assert one.document["issue_step"] >= 2, "found after the imbalance began"


@pytest.mark.parametrize(
    "split", ["2 shards of steps", "2 shards of workers", "2 ranges, the second split by steps"]
)
def test_a_merge_of_an_incomplete_trial_equals_one_process(tmp_path: Path, split: str) -> None:
    """worker_1 never wrote step 3: the merge names the step once, as one process does."""
    trial = write(tmp_path / "trial")
    (trial / index_key(3, "worker_1")).unlink()
    (trial / event_key(3, "worker_1")).unlink()
    one = run(settings_for(trial, tmp_path / "one.json"))
    assert one.document["incomplete_steps"]["steps"] == [
        {"step": 3, "missing_workers": ["worker_1"]}
    ]
    states = run_shards(trial, tmp_path / "states", split)
    code, merged = merge(states, tmp_path / "merged.json")
    assert_same(one.document, merged)
    assert code == one.exit_code


def test_the_merge_finds_the_issue_step_no_shard_found(shards: Shards, tmp_path: Path) -> None:
    """The shard holding the issue step saw too few of the labels before it to decide there:
    the merge replayed the checks over every shard's steps, it did not keep a shard's finding."""
    _, merged = merge(shards.states, tmp_path / "merged.json")
    issue_step = shards.one["issue_step"]
    assert merged["issue_step"] == issue_step is not None
    own = [json.loads(s.with_name(s.name.replace(".state", "")).read_text()) for s in shards.states]
    assert issue_step not in [o["issue_step"] for o in own]
    assert sum(o["samples"] for o in own) == STEPS * WORKERS * 16
    assert all(o["samples"] for o in own), "both shards hold steps"
    assert merged["samples"] == shards.one["samples"] == STEPS * WORKERS * 16


# -- exit codes ---------------------------------------------------------------------------------

EXIT_CODES: dict[str, tuple[Batch, RuleParameters, int, str]] = {
    "issues found": (drifting, RULE, 1, "IssuesFound"),
    "no issues found": (
        scores_batch([1, 1, 1], 16, skill=6),
        RuleParameters(argmax=True, samples=50, threshold_misprediction=0.9),
        0,
        "NoIssuesFound",
    ),
    "the checks never ran": (drifting, RuleParameters(argmax=True), NOT_CHECKED, "NoIssuesFound"),
}


@pytest.mark.parametrize("case", EXIT_CODES)
def test_the_merge_exits_with_the_verdicts_code(tmp_path: Path, case: str) -> None:
    make_batch, rule, expected, status = EXIT_CODES[case]
    trial = write(tmp_path / "trial", make_batch)
    states = run_shards(trial, tmp_path / "states", "2 shards of steps", rule=rule)
    merged_status = tmp_path / "merged.json"
    argv = ["merge", *map(str, states), "--status-file", str(merged_status), "--log-level", "ERROR"]
    assert cli.main(argv) == expected
    document = json.loads(merged_status.read_text())
    assert (document["status"], document["exit_code"]) == (status, expected)
    if expected == NOT_CHECKED:
        assert not document["checks_active"]
        assert any("the checks never ran" in warning for warning in document["warnings"])


def test_the_merge_exits_2_on_an_error(shards: Shards, tmp_path: Path) -> None:
    merged_status = tmp_path / "merged.json"
    argv = ["merge", str(shards.states[0]), "--status-file", str(merged_status)]
    assert cli.main([*argv, "--log-level", "ERROR"]) == 2
    document = json.loads(merged_status.read_text())
    assert (document["status"], document["exit_code"]) == ("Error", 2)
    assert "shard 1 missing" in document["error"]


# -- refusals -----------------------------------------------------------------------------------

Refusal = Callable[[Shards, Path], tuple[list[str], list[str]]]
"""Given the shards and a folder of its own: (the merge's arguments, the error's parts)."""


def other_parameters(shards: Shards, tmp_path: Path) -> tuple[list[str], list[str]]:
    other = run_shard(
        shards.trial,
        tmp_path,
        "other",
        rule=RuleParameters(argmax=True, samples=60),
        **SPLITS["2 shards of steps"][1],
    )
    return [str(shards.states[0]), str(other)], [
        f"expected states of one evaluation, but {other} was evaluated with other settings "
        f"than {shards.states[0]} (rule: ",
        "'samples': 50",
        "'samples': 60",
        "merge states of the same trial and parameters only",
    ]


def other_trial_content(_shards: Shards, tmp_path: Path) -> tuple[list[str], list[str]]:
    trial = write(tmp_path / "trial", seed=1)
    first = run_shard(trial, tmp_path, "first", **SPLITS["2 shards of steps"][0])
    shutil.rmtree(trial)
    write(trial, seed=2)  # the same path, written again: another trial
    second = run_shard(trial, tmp_path, "second", **SPLITS["2 shards of steps"][1])
    return [str(first), str(second)], [
        f"expected states of one trial, but {second} and {first} read different content at "
        f"{trial} (it was written again between the shards?): evaluate every shard of the same "
        f"trial"
    ]


def a_shard_missing(shards: Shards, _tmp_path: Path) -> tuple[list[str], list[str]]:
    return [str(shards.states[1])], [
        "expected every one of the 2 shards of steps [0, end] once, but shard 0 missing: give "
        "each shard's state once (a missing state: run that shard again)"
    ]


def a_state_file_missing(shards: Shards, tmp_path: Path) -> tuple[list[str], list[str]]:
    missing = tmp_path / "shard-1.state.json"
    return [str(shards.states[0]), str(missing)], [
        f"shard state {missing} does not exist: its shard has not finished, or failed (see its "
        f"status file and log); run that shard again"
    ]


def a_shard_given_twice(shards: Shards, _tmp_path: Path) -> tuple[list[str], list[str]]:
    first, second = map(str, shards.states)
    return [first, second, first], [
        "expected every one of the 2 shards of steps [0, end] once, but shard 0 given twice"
    ]


def overlapping_ranges(shards: Shards, tmp_path: Path) -> tuple[list[str], list[str]]:
    early = run_shard(shards.trial, tmp_path, "early", end_step=5)
    late = run_shard(shards.trial, tmp_path, "late", start_step=3)
    return [str(early), str(late)], [
        "expected step ranges that do not overlap, but [0, 5) and [3, end] do: their common "
        "steps would be counted twice"
    ]


def split_differently(shards: Shards, tmp_path: Path) -> tuple[list[str], list[str]]:
    by_workers = run_shard(shards.trial, tmp_path, "workers", **SPLITS["2 shards of workers"][1])
    return [str(shards.states[0]), str(by_workers)], [
        "expected the shards of steps [0, end] to be split alike, but they were split as",
        "(shard_count, shard_by, shard_steps): evaluate every shard with the same sharding "
        "settings",
    ]


def a_checkpoint(shards: Shards, tmp_path: Path) -> tuple[list[str], list[str]]:
    checkpoint = tmp_path / "checkpoint.json"
    run(settings_for(shards.trial, tmp_path / "status.json", checkpoint_file=str(checkpoint)))
    return [str(shards.states[0]), str(checkpoint)], [
        f"expected {checkpoint} to be a shard state written with --emit-state, but it is not "
        f"one (a status file or a checkpoint?)"
    ]


def a_status_file(shards: Shards, _tmp_path: Path) -> tuple[list[str], list[str]]:
    status = shards.states[0].with_name("shard-0.json")
    return [str(status), str(shards.states[1])], [
        f"expected {status} to be a shard state written with --emit-state, but it is not one"
    ]


def a_folder_without_states(_shards: Shards, tmp_path: Path) -> tuple[list[str], list[str]]:
    folder = tmp_path / "shards"
    folder.mkdir()
    (folder / "shard-0.json").write_text("{}")
    return [str(folder)], [
        f"expected shard states (*.state.json) in the folder {folder}, but it has none: have "
        f"the shards finished, and is emit_state set to a file there?"
    ]


def other_merge_parameters(shards: Shards, _tmp_path: Path) -> tuple[list[str], list[str]]:
    return [*map(str, shards.states), "--samples", "7"], [
        "the merge's settings set rule parameters other than the states' (",
        "samples: 50 against 7, the states' first): the states were counted with theirs; unset "
        "them for the merge",
    ]


REFUSALS: dict[str, Refusal] = {
    "different rule parameters": other_parameters,
    "different trial content at the same path": other_trial_content,
    "a shard missing": a_shard_missing,
    "a shard's state file missing": a_state_file_missing,
    "a shard given twice": a_shard_given_twice,
    "overlapping step ranges": overlapping_ranges,
    "shards of one range split differently": split_differently,
    "a checkpoint given as a state": a_checkpoint,
    "a status file given as a state": a_status_file,
    "a folder without *.state.json": a_folder_without_states,
    "merge settings that set other rule parameters": other_merge_parameters,
}


@pytest.mark.parametrize("case", REFUSALS)
def test_states_that_do_not_belong_together_are_refused_saying_why(
    shards: Shards, tmp_path: Path, case: str
) -> None:
    argv, expected = REFUSALS[case](shards, tmp_path)
    code, document = merge(argv, tmp_path / "merged.json")
    assert (code, document["status"], document["exit_code"]) == (2, "Error", 2)
    for part in expected:
        assert part in document["error"], document["error"]
    assert document["samples"] == 0, "nothing of a refused merge is counted"


def test_no_state_at_all_is_refused(tmp_path: Path) -> None:
    code, document = merge([], tmp_path / "merged.json")
    assert code == 2
    assert document["error"] == (
        "expected at least one shard state (a file or a folder), but got none"
    )


def test_merge_settings_that_agree_with_the_states_are_accepted(
    shards: Shards, tmp_path: Path
) -> None:
    """The merge may be given the shards' own rule settings (one config for the whole Job)."""
    code, document = merge(
        shards.states,
        tmp_path / "merged.json",
        "--argmax",
        "true",
        "--samples",
        "50",
        "--threshold-imbalance",
        "3",
    )
    assert code == shards.one_code
    assert_same(shards.one, document)


def test_a_merge_given_some_of_the_states_parameters_is_accepted(
    shards: Shards, tmp_path: Path
) -> None:
    code, document = merge(shards.states, tmp_path / "merged.json", "--argmax", "true")
    assert document["error"] is None
    assert code == shards.one_code


def test_a_merge_setting_at_its_default_against_other_states_is_refused(
    shards: Shards, tmp_path: Path
) -> None:
    code, document = merge(shards.states, tmp_path / "merged.json", "--samples", "500")
    assert code == 2
    assert "samples: 50 against 500" in document["error"]


# -- gaps, outputs --------------------------------------------------------------------------------


def test_a_gap_between_ranges_is_a_warning_of_the_merge(shards: Shards, tmp_path: Path) -> None:
    early = run_shard(shards.trial, tmp_path, "early", end_step=3)
    late = run_shard(shards.trial, tmp_path, "late", start_step=5)
    code, document = merge([early, late], tmp_path / "merged.json")
    assert document["status"] != "Error", document["error"]
    assert code == document["exit_code"]
    assert (
        "steps [3, 5) are in no shard's range: the merge is the evaluation of the ranges given, "
        "without them"
    ) in document["warnings"]
    assert document["steps_evaluated"] == STEPS - 2
    assert document["samples"] == (STEPS - 2) * WORKERS * 16


MESSAGE_FILE: dict[str, Callable[[Path], tuple[list[str], dict[str, str]]]] = {
    "environment variable": lambda path: ([], {"CLASSIMBALANCE_MESSAGE_FILE": str(path)}),
    "flag": lambda path: (["--message-file", str(path)], {}),
}


@pytest.mark.parametrize("how", MESSAGE_FILE)
def test_the_merge_writes_every_output_of_an_evaluation(
    shards: Shards, tmp_path: Path, how: str
) -> None:
    message = tmp_path / "out" / "message"
    flags, environ = MESSAGE_FILE[how](message)
    message.parent.mkdir()
    status = tmp_path / "out" / "merged.json"
    code, document = merge(shards.states, status, *flags, environ=environ)
    assert code == 1
    assert document["rule"] == "ClassImbalance"
    assert message.read_text() == document["message"] == shards.one["message"]
    assert message.read_text().startswith("RuleEvaluationConditionMet: Evaluation of the rule ")
    page = (tmp_path / "out" / "merged.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "IssuesFound" in page
    assert document["shard"] is None, "the merge is no shard"


def test_the_merge_reads_a_folder_of_states(shards: Shards, tmp_path: Path) -> None:
    folder = shards.states[0].parent
    code, document = merge([folder], tmp_path / "merged.json")
    assert code == shards.one_code
    assert_same(shards.one, document)


def test_the_merge_carries_out_the_actions_the_shards_skip(tmp_path: Path) -> None:
    trial = write(tmp_path / "trial")
    stop_file = tmp_path / "stop.json"
    environ = {"ACTION_JSON": STOP_ACTION.format(path=stop_file)}
    states = []
    for index, shard in enumerate(SPLITS["2 shards of steps"]):
        state = tmp_path / f"shard-{index}.state.json"
        argv = ["--trial", str(trial), "--status-file", str(tmp_path / f"shard-{index}.json")]
        argv += [
            "--argmax",
            "true",
            "--samples",
            "50",
            "--threshold-imbalance",
            "3",
            "--emit-state",
            str(state),
        ]
        argv += [f"--{name.replace('_', '-')}={value}" for name, value in shard.items()]
        loaded = load_settings(argv, environ, job_config_path=None)
        settings = loaded.settings.changed(metrics_enabled=False)
        outcome = run(settings, Runtime(warnings=loaded.warnings))
        assert outcome.exit_code == 0
        assert any("not carried out by a shard" in w for w in outcome.document["warnings"])
        assert outcome.document["actions"] == []
        states.append(state)
    assert not stop_file.exists(), "no shard stopped the training on its part's verdict"
    code, document = merge(states, tmp_path / "merged.json", environ=environ)
    assert code == 1
    written = json.loads(stop_file.read_text())
    assert (written["stop"], written["issue_step"]) == (True, document["issue_step"])
    assert [(a["action"]["name"], a["outcome"]) for a in document["actions"]] == [
        ("stop_file", "done")
    ]


# -- a shard's own outcome ------------------------------------------------------------------------


def test_a_shards_own_status_names_its_shard_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trial = write(tmp_path / "trial", scores_batch([30, 5, 1], 16))
    state, status = tmp_path / "shard-1.state.json", tmp_path / "shard-1.json"
    argv = ["--trial", str(trial), "--status-file", str(status), "--argmax", "true"]
    argv += ["--samples", "50", "--threshold-imbalance", "3"]
    argv += ["--metrics-enabled", "false", "--log-level", "ERROR"]
    argv += ["--emit-state", str(state), "--shard-count", "2", "--shard-index", "1"]
    argv += ["--shard-steps", "2"]
    assert cli.main(argv) == 0
    document = json.loads(status.read_text())
    assert document["status"] == "IssuesFound", "its part's verdict"
    assert document["exit_code"] == 0
    assert document["shard"] == {
        "state_file": str(state),
        "index": 1,
        "count": 2,
        "by": "steps",
        "shard_steps": 2,
        "start_step": None,
        "end_step": None,
        "described": "shard 1 of 2 (by blocks of 2 steps)",
    }
    assert state.is_file()
    out = capsys.readouterr().out
    assert (
        f"  shard state: {state} (shard 1 of 2 (by blocks of 2 steps)); the verdict above is "
        f"this shard's part alone: classimbalance-rule merge with every shard's state gives "
        f"the trial's\n"
    ) in out


def test_a_stopped_shard_writes_no_state(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    write_trial(trial, steps=2, workers=WORKERS, make_batch=drifting, end=False)
    state = tmp_path / "shard-0.state.json"
    stop = StopRequest()
    stop.set()
    try:
        outcome: Outcome = run(
            settings_for(
                trial, tmp_path / "shard-0.json", emit_state=str(state), idle_timeout=None
            ),
            Runtime(stop=stop),
        )
    finally:
        stop.close()
    assert outcome.status is Status.STOPPED
    assert outcome.shard_state is None
    assert not state.exists(), "a stopped shard has steps missing: no state"
    assert outcome.exit_code == 4
    assert json.loads((tmp_path / "shard-0.json").read_text())["exit_code"] == 4


def test_a_state_that_cannot_be_written_ends_in_error_naming_emit_state(
    shards: Shards, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    state = blocker / "shard-0.state.json"
    outcome = run(settings_for(shards.trial, tmp_path / "status.json", emit_state=str(state)))
    assert outcome.status is Status.ERROR
    assert outcome.shard_state is None
    assert outcome.exit_code == 2
    error = outcome.document["error"]
    assert error.startswith(f"cannot write the shard state {state}: ")
    assert error.endswith("; set emit_state to a writable path")
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["status"], status["error"], status["exit_code"]) == ("Error", error, 2)


def test_a_shard_resumed_from_its_checkpoint_merges_as_one_that_ran_whole(
    shards: Shards, tmp_path: Path
) -> None:
    """A shard's pod retried by its Job resumes from its checkpoint (whose state holds the
    ledger so far) and still merges exactly: stopped here by end_step, then run again."""
    checkpoint = str(tmp_path / "shard-0.ck.json")
    split = {"shard_count": 2, "shard_index": 0, "shard_by": "steps", "shard_steps": 2}
    run_shard(shards.trial, tmp_path, "partial", end_step=5, checkpoint_file=checkpoint, **split)
    resumed = run_shard(shards.trial, tmp_path, "shard-0", checkpoint_file=checkpoint, **split)
    assert json.loads((tmp_path / "shard-0.json").read_text())["resumed_from_step"] == 4
    code, document = merge([resumed, shards.states[1]], tmp_path / "merged.json")
    assert_same(shards.one, document)
    assert code == shards.one_code


def test_a_shard_serves_and_pushes_no_metrics_unless_told_to(
    shards: Shards, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part's figures would read as the trial's (and fire the alerts): with metrics_enabled
    auto a shard serves none, and it never pushes; the merge pushes the trial's."""
    import container.app as app_module

    pushed: list[object] = []
    monkeypatch.setattr(app_module, "push_final_metrics", lambda *a: pushed.append(a))
    ports: list[int] = []
    state = tmp_path / "s.state.json"
    settings = settings_for(
        shards.trial,
        tmp_path / "s.json",
        emit_state=str(state),
        metrics_enabled=None,
        metrics_port=0,
        pushgateway_url="http://127.0.0.1:9",
    )
    outcome = run(settings, Runtime(metrics_port_ready=ports.append))
    assert outcome.shard_state == str(state)
    assert ports == [], "no metrics server"
    assert pushed == []
    run(settings.changed(metrics_enabled=True), Runtime(metrics_port_ready=ports.append))
    assert len(ports) == 1, "metrics_enabled true serves them"
