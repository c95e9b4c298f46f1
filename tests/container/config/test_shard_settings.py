"""The shard settings (emit_state, shard_count, shard_index, shard_by, shard_steps) through
``load_settings``: every contradiction ``_shard_checks`` refuses, from flags, the environment and
YAML, each with its message, and the valid ways of setting a shard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from container.config import ConfigError, LoadedSettings, load_settings
from container.config.settings import ShardSettings
from container.sharding import part_selection
from evaluator.trial import PartSelection

STOP = '{"name": "stoptraining", "training_job_prefix": "job"}'


def load(
    *argv: str, env: Mapping[str, str] | None = None, yaml_text: str | None = None
) -> LoadedSettings:
    """Load with the YAML file in memory (``config.yaml``) and no job config."""
    files = {"config.yaml": yaml_text} if yaml_text is not None else {}
    args = ["--trial", "trial", *(["--config", "config.yaml"] if files else []), *argv]
    return load_settings(args, env or {}, job_config_path=None, read_text=files.get)


def problems(*argv: str, **layers: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(*argv, **layers)
    return [problem.describe() for problem in caught.value.problems]


REFUSED: dict[str, tuple[dict[str, Any], list[str]]] = {
    "shard_index equal to shard_count, by flags": (
        {"argv": ("--emit-state", "s.json", "--shard-count", "2", "--shard-index", "2")},
        [
            "shard_index (from flag --shard-index) is 2, but shard_count is 2: shards are "
            "numbered from 0 to 1"
        ],
    ),
    "shard_index past the default shard_count, by environment": (
        {"env": {"CLASSIMBALANCE_EMIT_STATE": "s.json", "CLASSIMBALANCE_SHARD_INDEX": "1"}},
        [
            "shard_index (from environment variable CLASSIMBALANCE_SHARD_INDEX) is 1, but "
            "shard_count is 1: shards are numbered from 0 to 0"
        ],
    ),
    "shard_count without emit_state, by environment": (
        {"env": {"CLASSIMBALANCE_SHARD_COUNT": "3", "CLASSIMBALANCE_SHARD_INDEX": "1"}},
        [
            "shard_count (from environment variable CLASSIMBALANCE_SHARD_COUNT) is 3, but "
            "emit_state is not set: a shard's verdict alone says nothing of the trial; set "
            "emit_state to the file its state goes to, and merge the states with "
            "classimbalance-rule merge"
        ],
    ),
    "shard_count without emit_state, in YAML": (
        {"yaml_text": "shard_count: 2\n"},
        [
            "shard_count (from config.yaml key shard_count) is 2, but emit_state is not set: a "
            "shard's verdict alone says nothing of the trial; set emit_state to the file its "
            "state goes to, and merge the states with classimbalance-rule merge"
        ],
    ),
    "emit_state with stop_on_first_issue": (
        {"argv": ("--emit-state", "s.json", "--stop-on-first-issue")},
        [
            "stop_on_first_issue (from flag --stop-on-first-issue) is set with emit_state: a "
            "shard cannot tell the first issue: only the merge can; unset stop_on_first_issue "
            "for the shards"
        ],
    ),
    "emit_state is the status file": (
        {"argv": ("--status-file", "out/s.json", "--emit-state", "out/s.json")},
        [
            "emit_state (from flag --emit-state) is the path of another output: give the state "
            "a file of its own"
        ],
    ),
    "emit_state is the default status file": (
        {"env": {"CLASSIMBALANCE_EMIT_STATE": "classimbalance-status.json"}},
        [
            "emit_state (from environment variable CLASSIMBALANCE_EMIT_STATE) is the path of "
            "another output: give the state a file of its own"
        ],
    ),
    "emit_state is the checkpoint file": (
        {"argv": ("--checkpoint-file", "c.json", "--emit-state", "c.json")},
        [
            "emit_state (from flag --emit-state) is the path of another output: give the state "
            "a file of its own"
        ],
    ),
    "emit_state is the report file, in YAML": (
        {"yaml_text": "report_file: r.html\nemit_state: r.html\n"},
        [
            "emit_state (from config.yaml key emit_state) is the path of another output: give "
            "the state a file of its own"
        ],
    ),
    "every problem at once": (
        {
            "argv": ("--shard-count", "2", "--shard-index", "5"),
            "env": {"CLASSIMBALANCE_STOP_ON_FIRST_ISSUE": "true"},
        },
        [
            "shard_index (from flag --shard-index) is 5, but shard_count is 2: shards are "
            "numbered from 0 to 1",
            "shard_count (from flag --shard-count) is 2, but emit_state is not set: a shard's "
            "verdict alone says nothing of the trial; set emit_state to the file its state goes "
            "to, and merge the states with classimbalance-rule merge",
        ],
    ),
    "a shard with every conflict": (
        {
            "argv": ("--emit-state", "s.json", "--status-file", "s.json"),
            "env": {"CLASSIMBALANCE_STOP_ON_FIRST_ISSUE": "true"},
        },
        [
            "stop_on_first_issue (from environment variable CLASSIMBALANCE_STOP_ON_FIRST_ISSUE) "
            "is set with emit_state: a shard cannot tell the first issue: only the merge can; "
            "unset stop_on_first_issue for the shards",
            "emit_state (from flag --emit-state) is the path of another output: give the state "
            "a file of its own",
        ],
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_contradicting_shard_settings_are_refused_saying_why(case: str) -> None:
    given, expected = REFUSED[case]
    kwargs = dict(given)
    assert sorted(problems(*kwargs.pop("argv", ()), **kwargs)) == sorted(expected)


INVALID_VALUES: dict[str, tuple[tuple[str, ...], str]] = {
    "no shard": (("--shard-count", "0"), "a whole number in [1, 4096]"),
    "too many shards": (("--shard-count", "5000"), "a whole number in [1, 4096]"),
    "a negative index": (("--shard-index", "-1"), "a whole number in [0, shard_count)"),
    "an unknown split": (("--shard-by", "rows"), "steps or workers"),
    "empty blocks": (("--shard-steps", "0"), "a whole number >= 1"),
}


@pytest.mark.parametrize("case", INVALID_VALUES)
def test_invalid_shard_values_name_what_is_accepted(case: str) -> None:
    argv, accepted = INVALID_VALUES[case]
    (message,) = problems(*argv, "--emit-state", "s.json")
    assert accepted in message
    assert argv[0].lstrip("-").replace("-", "_") in message


VALID: dict[str, tuple[dict[str, Any], ShardSettings]] = {
    "no shard": ({}, ShardSettings()),
    "a step range's state, one shard": (
        {"argv": ("--emit-state", "states/range-0.state.json", "--start-step", "100")},
        ShardSettings(emit_state="states/range-0.state.json"),
    ),
    "the last shard of four by workers, by flags": (
        {
            "argv": (
                "--emit-state",
                "s-3.state.json",
                "--shard-count",
                "4",
                "--shard-index",
                "3",
                "--shard-by",
                "workers",
            )
        },
        ShardSettings("s-3.state.json", 4, 3, "workers", 1),
    ),
    "an Indexed Job's environment": (
        {
            "env": {
                "CLASSIMBALANCE_EMIT_STATE": "/status/shards/shard-1.state.json",
                "CLASSIMBALANCE_SHARD_COUNT": "2",
                "CLASSIMBALANCE_SHARD_INDEX": "1",
                "CLASSIMBALANCE_SHARD_BY": "steps",
                "CLASSIMBALANCE_SHARD_STEPS": "10",
            }
        },
        ShardSettings("/status/shards/shard-1.state.json", 2, 1, "steps", 10),
    ),
    "YAML with the index from the environment": (
        {
            "yaml_text": "emit_state: s.json\nshard_count: 3\nshard_steps: 50\n",
            "env": {"CLASSIMBALANCE_SHARD_INDEX": "2"},
        },
        ShardSettings("s.json", 3, 2, "steps", 50),
    ),
    "a shard beside a checkpoint and its own status file": (
        {
            "argv": (
                "--emit-state",
                "s.json",
                "--checkpoint-file",
                "c.json",
                "--status-file",
                "st.json",
            )
        },
        ShardSettings(emit_state="s.json"),
    ),
    "a shard given the merge's actions (it skips them, with a warning)": (
        {"argv": ("--emit-state", "s.json"), "env": {"ACTION_JSON": STOP}},
        ShardSettings(emit_state="s.json"),
    ),
}


@pytest.mark.parametrize("case", VALID)
def test_valid_shard_settings_load(case: str) -> None:
    given, expected = VALID[case]
    kwargs = dict(given)
    loaded = load(*kwargs.pop("argv", ()), **kwargs)
    assert loaded.settings.sharding == expected
    selection = part_selection(loaded.settings)
    assert (selection.shard_index, selection.shard_count) == (
        expected.shard_index,
        expected.shard_count,
    )
    assert (selection.by, selection.block_steps) == (expected.shard_by, expected.shard_steps)


def test_the_flags_make_the_selection_the_reader_gets() -> None:
    loaded = load(
        "--emit-state",
        "s.json",
        "--start-step",
        "10",
        "--end-step",
        "90",
        "--shard-count",
        "3",
        "--shard-index",
        "1",
        "--shard-steps",
        "5",
    )
    assert part_selection(loaded.settings) == PartSelection(10, 90, 1, 3, "steps", 5)
    assert loaded.sources["shard_count"].where == "flag --shard-count"


LATER_OUTPUTS: dict[str, tuple[str, ...]] = {
    "the HTML report's path from the status file": (
        "--status-file",
        "out/status.json",
        "--emit-state",
        "out/status.html",
    ),
    "the message file": ("--message-file", "out/message", "--emit-state", "out/message"),
}
"""Outputs written after the state (the HTML report last of all): a state at their path is
overwritten at once, and the merge finds HTML or a message where the state was."""


@pytest.mark.parametrize("case", LATER_OUTPUTS)
def test_emit_state_at_the_path_of_an_output_written_after_it_is_refused(case: str) -> None:
    (message,) = problems(*LATER_OUTPUTS[case])
    assert "is the path of another output: give the state a file of its own" in message
