"""The configuration: bombs, values beyond the bounds or what the platform holds, round trips.

A sidecar's settings come from files and variables someone else may write. Each case here is a
configuration that hung the loader or crashed the run (a YAML billion laughs, a file of 350,000
unknown keys, ``poll_interval: 1e300``), generated in the test: it runs in a bounded child
(``bounded.run_bounded``), the real command where the kernel can pass the input (a file, a flag,
a variable) and the loader called directly where it cannot (a variable longer than Linux takes,
a hundred thousand flags), and must end at once in the clear, typed error, never a hang, a node's
memory, a traceback or a message that repeats the whole value. ``--print-config`` must print
every value so that it loads back the same (named cases and a hypothesis property).
"""

from __future__ import annotations

import datetime
import json
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from container.config import ConfigError, LoadedSettings, format_settings, load_settings
from container.config.limits import (
    MAX_ARGUMENTS,
    MAX_FILE_BYTES,
    MAX_KEYS,
    MAX_QUOTED,
    MAX_TEXT_LENGTH,
)
from container.config.values import MAX_SECONDS, MAX_WHOLE_NUMBER
from tests.faults.bounded import Bounded, evaluator, python, run_bounded

LIMIT = 60.0
"""Wall-clock limit of one child: a bounded load takes a few seconds even on a busy machine;
before the bounds, the bombs ran until killed (30 s, 120 s)."""
SECONDS = 30.0
"""What a case may take, start-up included, with a wide margin: each takes 1 to 8 s on a busy
machine (the slowest parses 256 KiB of YAML)."""
PEAK_RSS_MIB = 400.0
"""Peak memory a case may take: a bounded load stays near the interpreter's own 40 MiB."""
MESSAGE_CHARACTERS = 20_000
"""Longest stderr (or status file) a case may write: every value quoted is cut to a few hundred
characters and the unknown names reported one by one are few."""


def laughs(levels: int = 9, width: int = 9, leaf: str = '["lol"]') -> str:
    """A flow list whose anchors each repeat the previous one ``width`` times: ``width **
    levels`` leaves when expanded, in a few hundred bytes."""
    items = [f"&a0 {leaf}"]
    items += [f"&a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return f"[{', '.join(items)}]"


# -- the bombs, through the real command ----------------------------------------------------------


@dataclass(frozen=True)
class Bomb:
    """A configuration given to ``python -m container`` (``{dir}`` in the arguments and the
    environment is the case's folder), and a phrase its error must hold."""

    id: str
    files: Mapping[str, Callable[[], str]]
    argv: tuple[str, ...]
    expected: str
    env: Mapping[str, str] = field(default_factory=dict)


def _deep_yaml() -> str:
    return "base_trial: /t\nclass_names: " + "[" * 50_000 + "]" * 50_000 + "\n"


def _many_keys(count: int, line: str = "unknown_setting_{i:07d}: 1\n") -> Callable[[], str]:
    return lambda: "base_trial: /t\n" + "".join(line.format(i=i) for i in range(count))


def _job_config(document: Any) -> Callable[[], str]:
    return lambda: json.dumps(document)


QUIET = ("--metrics-enabled", "false", "--idle-timeout", "1")
"""Given to every case: a regression that lets the configuration through then ends at once
(the trials named do not exist) and takes no port."""
YAML = ("--config", "{dir}/rule.yaml", "--status-file", "{dir}/status.json")
JOB = {"PROCESSING_JOB_CONFIG": "{dir}/job.json"}
BOMBS = (
    Bomb(
        "yaml_laughs_in_a_setting",
        {"rule.yaml": lambda: f"base_trial: /t\nclass_names: {laughs()}\n"},
        YAML,
        "holds more than 20,000 values",
    ),
    Bomb(
        "yaml_laughs_in_actions",
        {"rule.yaml": lambda: f"base_trial: /t\nactions: {laughs(leaf='{name: x}')}\n"},
        YAML,
        "holds more than 20,000 values",
    ),
    Bomb(
        "yaml_laughs_with_print_config",
        {"rule.yaml": lambda: f"base_trial: /t\nmetric_labels: {{team: {laughs()}}}\n"},
        ("--config", "{dir}/rule.yaml", "--print-config"),
        "holds more than 20,000 values",
    ),
    Bomb(
        "yaml_laughs_of_a_long_string",
        {
            "rule.yaml": lambda: (
                f"base_trial: /t\nclass_names: [&s {'x' * 100_000}, "
                + ", ".join(["*s"] * 20)
                + "]\n"
            )
        },
        YAML,
        "characters of text",
    ),
    Bomb(
        "yaml_recursive_alias",
        {"rule.yaml": lambda: "base_trial: /t\nclass_names: &a [*a, x]\n"},
        YAML,
        "holds itself",
    ),
    Bomb(
        "yaml_merge_keys_doubling",
        {
            "rule.yaml": lambda: (
                "base_trial: /t\nmetric_labels: ["
                + ", ".join(
                    [f"&m0 {{{', '.join(f'k{j}: v' for j in range(40))}}}"]
                    + [f"&m{i} {{<<: [*m{i - 1}, *m{i - 1}], n{i}: v}}" for i in range(1, 30)]
                )
                + "]\n"
            )
        },
        YAML,
        "(a list of 30 items)",  # the merged maps quoted short (19 KB of them before)
    ),
    Bomb(
        "yaml_350k_unknown_keys_in_10_mib",
        {"rule.yaml": _many_keys(350_000)},
        YAML,
        f"larger than {MAX_FILE_BYTES:,} bytes",
    ),
    Bomb(
        "yaml_many_keys_within_the_size",
        {"rule.yaml": _many_keys(20_000, "k{i}: 1\n")},
        YAML,
        f"at most {MAX_KEYS:,} are accepted",
    ),
    Bomb(
        "yaml_unknown_keys_below_the_bound",
        {"rule.yaml": _many_keys(900)},
        YAML,
        "880 more unknown settings",
    ),
    Bomb(
        "yaml_deep_nesting",
        {"rule.yaml": _deep_yaml},
        YAML,
        "nested more than 32 levels deep",
    ),
    Bomb(
        "yaml_long_string",
        {"rule.yaml": lambda: f"base_trial: /t\nstatus_file: {'x' * 200_000}\n"},
        YAML,
        f"at most {MAX_TEXT_LENGTH:,} are accepted",
    ),
    Bomb(
        "yaml_number_of_5000_digits",
        {"rule.yaml": lambda: f"base_trial: /t\nsamples: 1{'0' * 5000}\n"},
        YAML,
        "not a valid settings file",
    ),
    Bomb(
        "job_config_deep_json",
        {"job.json": lambda: '{"RuleParameters": ' + "[" * 100_000 + "]" * 100_000 + "}"},
        ("--status-file", "{dir}/status.json"),
        "nested too deeply",
        JOB,
    ),
    Bomb(
        "job_config_many_keys",
        {"job.json": _job_config({"RuleParameters": {f"k{i}": i for i in range(5_000)}})},
        ("--status-file", "{dir}/status.json"),
        f"at most {MAX_KEYS:,} are accepted",
        JOB,
    ),
    Bomb(
        "job_config_too_large",
        {"job.json": _job_config({"Other": "x" * (MAX_FILE_BYTES + 1)})},
        ("--status-file", "{dir}/status.json"),
        "larger than",
        JOB,
    ),
    Bomb(
        "action_json_deep_in_a_variable",
        {},
        ("--trial", "/t", "--status-file", "{dir}/status.json"),
        "nested too deeply",
        {"ACTION_JSON": "[" * 100_000},
    ),
    Bomb(
        "poll_interval_1e300",
        {},
        ("--trial", "{dir}/trial", "--poll-interval", "1e300", "--status-file", "{dir}/s.json"),
        "longer than 1e+09 s",
    ),
)


def _fill(text: str, folder: Path) -> str:
    return text.replace("{dir}", str(folder))


def assert_bounded(result: Bounded, expected: str) -> None:
    """The clear error, at once, in little memory, with a message of bounded length."""
    output = result.stderr + result.stdout
    assert expected in output, output[-3000:]
    assert "internal error" not in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert result.seconds < SECONDS, f"took {result.seconds:.1f} s"
    assert result.peak_rss_mib < PEAK_RSS_MIB, f"peak RSS {result.peak_rss_mib:.0f} MiB"
    assert len(output) < MESSAGE_CHARACTERS, f"{len(output):,} characters of output"


@pytest.mark.parametrize("bomb", BOMBS, ids=[bomb.id for bomb in BOMBS])
def test_a_configuration_bomb_ends_at_once_in_a_clear_error(bomb: Bomb, tmp_path: Path) -> None:
    for name, content in bomb.files.items():
        (tmp_path / name).write_text(content(), encoding="utf-8")
    env = {"PROCESSING_JOB_CONFIG": "", **{k: _fill(v, tmp_path) for k, v in bomb.env.items()}}
    arguments = [_fill(argument, tmp_path) for argument in (*bomb.argv, *QUIET)]
    result = run_bounded(
        evaluator(*arguments),
        seconds=LIMIT,
        env=env,
        cwd=None,
    )
    assert result.returncode == 2, result
    assert_bounded(result, bomb.expected)
    status = tmp_path / "status.json"
    if status.exists():
        assert len(status.read_text(encoding="utf-8")) < MESSAGE_CHARACTERS


# -- what the kernel cannot pass: the loader in a child, called directly ----------------------


@dataclass(frozen=True)
class Direct:
    """``argv`` and ``environ`` (Python expressions, evaluated in the child) handed to
    ``load_settings``, and a phrase its ConfigError (or a warning) must hold."""

    id: str
    argv: str
    environ: str
    expected: str


DIRECT = (
    Direct(
        "variable_longer_than_linux_takes",
        "[]",
        "{'BASE_TRIAL': '/t', 'CLASSIMBALANCE_STATUS_FILE': 'x' * 10_000_000}",
        f"at most {MAX_TEXT_LENGTH:,} are accepted",
    ),
    Direct(
        "labels_regex_of_10_mib",
        "[]",
        "{'BASE_TRIAL': '/t', 'LABELS_REGEX': 'a' * 10 * 1024 * 1024}",
        f"at most {MAX_TEXT_LENGTH:,} are accepted",
    ),
    Direct(
        "hundred_thousand_unknown_flags",
        "['--trial', '/t'] + [f'--unknown-flag-{i}' for i in range(100_000)]",
        "{}",
        f"but at most {MAX_ARGUMENTS:,} are read",
    ),
    Direct(
        "unknown_flags_below_the_bound",
        "['--trial', '/t'] + [f'--unknown-flag-{i}' for i in range(990)]",
        "{}",
        "970 more unknown flags or arguments",
    ),
    Direct(
        "flag_value_of_1_mib",
        "['--trial', '/t', '--status-file=' + 'x' * (1 << 20)]",
        "{}",
        f"at most {MAX_TEXT_LENGTH:,} are accepted",
    ),
    Direct(
        "hundred_thousand_variables",
        "['--trial', '/t', '--samples', 'x']",
        "{f'SOME_SERVICE_{i}_PORT': '1' for i in range(100_000)}",
        "were not compared with the settings' names",
    ),
    Direct(
        "action_field_of_100_kib",
        "[]",
        "{'BASE_TRIAL': '/t', 'ACTION_JSON': '{\"name\": \"webhook\", \"url\": \"' + 'x' * 100_000"
        " + '\"}'}",
        "100,000 characters in all",
    ),
    Direct(
        "nul_in_a_value",
        "[]",
        "{'BASE_TRIAL': '/t\\x00/x'}",
        "holds a NUL character",
    ),
    Direct(
        "undecodable_bytes_in_a_variable",
        "[]",
        "{'BASE_TRIAL': '/t/\\udcff'}",
        "is not valid UTF-8",
    ),
)

LOAD = textwrap.dedent(
    """
    from container.config import ConfigError, load_settings
    try:
        loaded = load_settings({argv}, {environ}, job_config_path=None)
    except ConfigError as error:
        print(error, *error.warnings, sep="\\n")
    else:
        print("loaded", *loaded.warnings, sep="\\n")
    """
)


@pytest.mark.parametrize("case", DIRECT, ids=[case.id for case in DIRECT])
def test_a_value_the_kernel_cannot_pass_is_bounded_too(case: Direct) -> None:
    result = run_bounded(
        python(LOAD.format(argv=case.argv, environ=case.environ)), seconds=LIMIT, env={}
    )
    assert result.returncode == 0, result
    assert_bounded(result, case.expected)


def _error(environ: Mapping[str, str], argv: tuple[str, ...] = ()) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(list(argv), {"BASE_TRIAL": "/t", **environ}, job_config_path=None)
    return caught.value


def test_the_unknown_keys_reported_one_by_one_are_few_and_the_rest_counted() -> None:
    text = "".join(f"samplez_{i}: 1\n" for i in range(300))
    with pytest.raises(ConfigError) as caught:
        load_settings(
            ["--config", "rule.yaml", "--trial", "/t"],
            {},
            job_config_path=None,
            read_text=lambda path: text,
        )
    message = str(caught.value)
    assert message.count("unknown setting '") == 20
    assert "280 more unknown settings (samplez_20, samplez_21," in message


def test_a_value_quoted_in_a_message_is_shortened_saying_how_long_it_was() -> None:
    message = str(_error({"SAMPLES": "z" * 100_000}))
    assert "100,000 characters in all" in message
    assert len(message) < 2 * MAX_QUOTED + 500


# -- values beyond what the platform holds ------------------------------------------------------

DURATIONS = (
    "poll_interval",
    "max_poll_interval",
    "idle_timeout",
    "progress_interval",
    "read_retry_delay",
    "status_interval",
    "checkpoint_every_seconds",
    "end_grace",
)
WHOLE_NUMBERS = ("start_step", "end_step", "read_retries", "checkpoint_every_steps", "samples")


@pytest.mark.parametrize(
    "raw", ["1e300", "1e10", str(threading.TIMEOUT_MAX * 2), "nan", "inf", "-inf", "1e999"]
)
def test_every_duration_beyond_what_a_wait_holds_is_refused_at_once(raw: str) -> None:
    environ = {f"CLASSIMBALANCE_{name.upper()}": raw for name in DURATIONS}
    error = _error(environ)
    forever = {"idle_timeout"} if raw == "inf" else set()  # idle_timeout: inf waits forever
    assert sorted(problem.name for problem in error.problems) == sorted(set(DURATIONS) - forever)


@pytest.mark.parametrize("raw", ["1e300", str(2**63), "9" * 30, str(-(2**64)), "1" + "0" * 5000])
def test_every_whole_number_beyond_int64_is_refused_at_once(raw: str) -> None:
    environ = {f"CLASSIMBALANCE_{name.upper()}": raw for name in WHOLE_NUMBERS}
    error = _error(environ)
    assert sorted({problem.name for problem in error.problems}) == sorted(WHOLE_NUMBERS)
    assert len(str(error)) < 10_000


def test_the_longest_duration_and_number_are_what_the_platform_holds() -> None:
    assert MAX_SECONDS <= threading.TIMEOUT_MAX
    datetime.datetime.fromtimestamp(time.time() + MAX_SECONDS, tz=datetime.UTC)
    time.gmtime(time.time() + MAX_SECONDS)
    assert float(MAX_WHOLE_NUMBER) < 2.0**64
    loaded = load_settings(
        [], {"BASE_TRIAL": "/t", "CLASSIMBALANCE_POLL_INTERVAL": "1e9"}, job_config_path=None
    )
    assert loaded.settings.following.poll_interval == 1e9


# -- --print-config round trips -------------------------------------------------------------------

ODD_TEXTS = (
    "a\nb",
    "ends with a newline\n",
    "yes",
    "no",
    "null",
    "~",
    "1e3",
    "#",
    "a #b",
    ": ",
    "a: b",
    "'quoted'",
    '"double"',
    "back\\slash",
    "tab\there",
    "é ü 名前 🚀",
    "line\u2028separator",
    "next\x85line",
    "\ufeffbom",
    "del\x7f",
    "- dash",
    "[x]",
    "{x}",
    "&anchor",
    "*alias",
    "!tag",
    "%percent",
    "@at",
    "`tick",
    "0x10",
    "010",
    "true",
    "True",
    ".inf",
    "-.nan",
    "2001-12-14",
)


def _round_trip(document: Mapping[str, Any], config_path: str = "/job.json") -> None:
    """Load ``document`` as the job config's RuleParameters (JSON: any value), print it, load the
    printed YAML: the settings are the same."""
    text = json.dumps({"RuleParameters": dict(document)})
    loaded = load_settings(
        ["--print-config"], {}, job_config_path=config_path, read_text=lambda path: text
    )
    _round_trip_loaded(loaded)


def _odd_document(odd: str) -> dict[str, Any]:
    return {
        "base_trial": f"/t/{odd}/x",
        "status_file": f"s{odd}s",
        "message_file": f"m{odd}m",
        "training_job": f"j{odd}j",
        "class_names": [f"c{odd}c", "other", f"{odd}z"],
        "metric_labels": {"team": odd, "other": f" {odd} "},
        "actions": [{"name": "stop_file", "path": f"p{odd}p"}],
        "pushgateway_job": f"p{odd}p",
    }


@pytest.mark.parametrize("odd", ODD_TEXTS, ids=[repr(text) for text in ODD_TEXTS])
def test_print_config_round_trips_an_odd_value_in_every_setting(odd: str) -> None:
    _round_trip(_odd_document(odd))


def test_print_config_escapes_a_line_break_in_where_a_value_came_from() -> None:
    _round_trip(_odd_document("x"), config_path="/job\nbase_trial: /forged\n.json")


_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20
)
_NAME = _TEXT.map(lambda text: f"n{text}n")
_DOCUMENTS = st.fixed_dictionaries(
    {"base_trial": _NAME},
    optional={
        "status_file": _NAME,
        "message_file": _NAME,
        "training_job": _NAME,
        "class_names": st.lists(_NAME.filter(lambda n: len(n) <= 200), min_size=1, max_size=4),
        "metric_labels": st.dictionaries(
            st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
                lambda n: n not in {"trial", "training_job", "job", "instance"}
            ),
            _TEXT,
            max_size=3,
        ),
        "actions": st.lists(
            st.builds(lambda path: {"name": "stop_file", "path": path}, _NAME), max_size=2
        ),
        "poll_interval": st.floats(min_value=1e-6, max_value=MAX_SECONDS),
        "idle_timeout": st.one_of(st.none(), st.floats(min_value=1e-6, max_value=MAX_SECONDS)),
        "samples": st.integers(min_value=1, max_value=MAX_WHOLE_NUMBER),
        "threshold_imbalance": st.floats(min_value=1, max_value=1e300),
        "start_step": st.integers(min_value=0, max_value=10**6),
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_DOCUMENTS)
def test_print_config_then_load_gives_the_same_settings(document: dict[str, Any]) -> None:
    text = json.dumps({"RuleParameters": document})
    try:
        loaded = load_settings(
            ["--print-config"], {}, job_config_path="/job.json", read_text=lambda path: text
        )
    except ConfigError:
        assume(False)
        return
    _round_trip_loaded(loaded)


def _round_trip_loaded(loaded: LoadedSettings) -> None:
    printed = format_settings(loaded)
    again = load_settings(
        ["--config", "printed.yaml"], {}, job_config_path=None, read_text=lambda path: printed
    )
    assert again.settings == loaded.settings, printed


# -- the fuzz harness itself ----------------------------------------------------------------------


def test_the_fuzz_harness_reports_an_exception_other_than_the_typed_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devtools import fuzz_config

    def broken(*arguments: Any, **options: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr("container.config.load_settings", broken)
    with pytest.raises(fuzz_config.Finding, match="KeyError"):
        fuzz_config.run_case(fuzz_config.Case(argv=["--trial", "/t"]), tmp_path)


def test_a_short_fuzz_run_finds_nothing(tmp_path: Path) -> None:
    result = run_bounded(
        [sys.executable, "-m", "devtools.fuzz_config", "--seconds", "5", "--out", str(tmp_path)],
        seconds=LIMIT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no finding" in result.stderr
    assert not list(tmp_path.iterdir())
