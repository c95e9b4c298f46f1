"""User regexes against names anyone can write: matched in linear time, refused clearly.

The labels and predictions regexes are the operator's, the tensor names the trial's, and a trial
is files anyone with write access to the bucket can write. Python's backtracking ``re`` took
80 s for ``(a+)+$`` against 27 ``a`` and over two minutes for ``.*predictions`` against one
256 KiB name; a 10 MiB pattern took 73 s and 1.5 GB to be accepted, and an invalid one repeated
all 10 MiB in its error. Every case that could hang or grow runs in a child under
``bounded.run_bounded``; the hostile names and patterns are made here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devtools.write_trial import end_training, export_collections, write_step
from evaluator.core import ParameterError, RuleParameters, TensorSelector
from evaluator.core.params import MAX_REGEX_CHARS
from evaluator.core.selection import MAX_MATCHED_NAME_CHARS
from tests.faults.bounded import Bounded, evaluator, python, run_bounded

SECONDS = 60.0
"""Wall-clock limit of one child: each case takes a second or two; the regressions ran for
minutes."""
PEAK_MIB = 400
"""Peak resident memory a case may reach: the evaluator takes well under 100 MiB here (numpy's
import included); the 10 MiB pattern took 1.5 GB."""


# -- catastrophic backtracking: the pattern is ordinary, the name hostile ---------------------


@dataclass(frozen=True)
class Backtracking:
    """A pattern Python's ``re`` backtracks on exponentially (or polynomially) for ``name``."""

    id: str
    pattern: str
    name: str
    matches: bool


BACKTRACKING = (
    Backtracking("nested_quantifier", "(a+)+$", "a" * 40 + "!", False),
    Backtracking("overlapping_alternation", "(a|aa)+$", "a" * 40 + "!", False),
    Backtracking("repeated_group_of_words", r"^(\w+\s?)*$", "a" * 40 + "!", False),
    Backtracking("nested_pluses", "(x+x+)+y", "x" * 40, False),
    Backtracking("polynomial_dot_stars", "(.*a){12}$", "a" * 30 + "!", False),
    Backtracking(
        "dot_stars_at_the_longest_name", ".*.*.*labels", "x" * MAX_MATCHED_NAME_CHARS, False
    ),
    Backtracking("matches_after_backtracking", "(a|aa)+$|_labels$", "a" * 40 + "!_labels", True),
)


@pytest.mark.parametrize("case", BACKTRACKING, ids=[c.id for c in BACKTRACKING])
def test_a_backtracking_pattern_answers_at_once(case: Backtracking) -> None:
    code = (
        "import json, sys, time\n"
        "from evaluator.core import TensorSelector\n"
        "pattern, name = json.loads(sys.stdin.read())\n"
        "selector = TensorSelector(pattern, pattern)\n"
        "start = time.monotonic()\n"
        "answers = [selector.wants(name), selector.split([name]) == ([name], [name])]\n"
        "print(json.dumps([answers, time.monotonic() - start]))\n"
    )
    run = run_bounded(
        python(code), seconds=SECONDS, stdin=json.dumps([case.pattern, case.name]).encode()
    )
    assert run.returncode == 0, run.stderr
    answers, seconds = json.loads(run.stdout)
    assert answers == [case.matches, case.matches]
    assert seconds < 5, f"the search took {seconds:.1f} s"


# -- what RE2 does not accept: refused when the parameters load, naming the construct ---------


@dataclass(frozen=True)
class Refused:
    """A pattern Python accepts and RE2 does not (or reads otherwise), and the words that must
    name it and say what to write instead."""

    id: str
    pattern: str
    construct: str
    instead: str


REFUSED = (
    Refused("backreference", r"(\w)\1_labels", r"backreference \1", "repeat the text itself"),
    Refused("named_backreference", r"(?P<x>a)(?P=x)", "(?P=name)", "repeat the text itself"),
    Refused("lookahead", r"labels(?=_0)", "lookahead (?=", "match the text itself"),
    Refused("negative_lookahead", r"labels(?!_1)", "negative lookahead", "name what the tensor"),
    Refused("lookbehind", r"(?<=loss_)labels", "lookbehind (?<=", "match the text itself"),
    Refused("negative_lookbehind", r"(?<!x)labels", "negative lookbehind", "name what"),
    Refused("possessive_quantifier", r"a*+labels", "possessive quantifier *+", "without the"),
    Refused("possessive_counted", r"a{2}+labels", "possessive quantifier {2}+", "without the"),
    Refused("atomic_group", r"(?>a+)labels", "atomic group", "write a group (?:...)"),
    Refused("conditional", r"(a)?(?(1)b|c)", "conditional group", "alternation"),
    Refused("comment", r"labels(?#the labels)", "comment (?#", "leave the comment out"),
    Refused("verbose_flag", r"(?x) labels \d", "inline flag 'x'", "without the verbose"),
    Refused("ascii_flag", r"(?a)\w+labels", "inline flag 'a'", "ASCII already"),
    Refused("end_of_string", r"labels\Z", r"escape \Z", "write $ instead"),
    Refused("unicode_escape", r"\u00e9labels", r"escape \u", r"\x{...}"),
    Refused("named_unicode", r"\N{DIGIT ONE}", r"escape \N", r"\x{...}"),
    Refused("backspace_in_class", r"[\b]labels", r"escape \b", r"\x08"),
    Refused("no_lower_bound", r"labels_\d{,3}", "repetition {,3}", "write {0,3}"),
    Refused("no_bounds", r"labels_\d{,}", "repetition {,}", "write {0,}"),
    Refused("posix_class", r"[[:alpha:]]+_labels", "[:alpha:] in a character class", "a-zA-Z"),
    Refused("repeated_too_often", r"a{1001}", "counted repetition {1001}", "+ or *"),
    Refused("nested_repetition", r"(?:(?:a{40}){40})", "counted repetition {40}", "+ or *"),
    Refused("program_too_large", r"(?:.{1000})" * 8, "more than RE2's budget", "+ or *"),
    Refused("nested_too_deeply", "(" * 1000 + ")" * 1000, "nests groups too deeply", "fewer"),
    Refused("lone_surrogate", "labels\ud800", "not valid Unicode at position 6", "UTF-8"),
)


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_a_pattern_re2_does_not_take_is_refused_naming_the_construct(case: Refused) -> None:
    with pytest.raises(ParameterError) as raised:
        RuleParameters(predictions_regex=case.pattern)
    [problem] = raised.value.problems
    described = problem.describe()
    assert problem.name == "predictions_regex"
    assert described.startswith("predictions_regex: expected a valid Python regular expression")
    assert case.construct in described, described
    assert case.instead in described, described
    assert len(described) < 1200


# -- an oversized pattern: refused by its length, before anything compiles it -----------------


def test_a_10_mib_pattern_is_refused_at_once_and_quoted_short() -> None:
    code = (
        "from evaluator.core import ParameterError, RuleParameters\n"
        "try:\n"
        "    RuleParameters(labels_regex='(' + 'a' * (10 << 20))\n"
        "except ParameterError as error:\n"
        "    print(error)\n"
    )
    run = run_bounded(python(code), seconds=SECONDS)
    assert run.returncode == 0, run.stderr
    assert "labels_regex: expected" in run.stdout
    assert "this one is 10,485,761 characters long" in run.stdout
    assert "(10,485,761 characters in all)" in run.stdout  # the quote: its start, its length
    assert len(run.stdout) < 2000
    assert run.seconds < 20
    assert run.peak_rss_mib < PEAK_MIB


def test_the_longest_pattern_is_taken_and_one_more_character_is_not() -> None:
    longest = "(?:" + "labels|" * ((MAX_REGEX_CHARS - 4) // 7)
    longest += "x" * (MAX_REGEX_CHARS - 1 - len(longest)) + ")"
    assert len(longest) == MAX_REGEX_CHARS
    assert RuleParameters(labels_regex=longest).labels_regex == longest
    with pytest.raises(ParameterError, match="this one is 4,097 characters long"):
        RuleParameters(labels_regex=longest + "x")


# -- long tensor names: searched up to a length, remembered within a size ---------------------


def test_a_name_past_the_longest_searched_matches_no_regex() -> None:
    selector = TensorSelector(".*labels", ".*predictions")
    overlong = "x" * MAX_MATCHED_NAME_CHARS + "_labels"
    assert selector.wants("x" * (MAX_MATCHED_NAME_CHARS - 7) + "_labels")
    assert not selector.wants(overlong)
    assert selector.split([overlong, "predictions"]) == ([], ["predictions"])
    message = selector.missing_message("labels", ["predictions"])
    assert message.startswith("no tensor matching labels_regex '.*labels' among ['predictions']")
    assert "longer than 4,096 characters match no regex" in message
    assert f"({len(overlong):,} characters in all)" in message
    assert len(message) < 600


REMEMBERING = """
import tracemalloc
from evaluator.core import TensorSelector
from evaluator.core.selection import MAX_MATCHED_NAME_CHARS
selector = TensorSelector(".*labels", ".*predictions")
selector.wants("labels")  # the regexes' own memory is allocated before the measure
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
for index in range(5_000):
    name = f"{index:08d}" + "x" * (MAX_MATCHED_NAME_CHARS - 8)
    selector.wants(name)
    selector.split([name, f"{index}_labels", "predictions"])
print(tracemalloc.get_traced_memory()[0] - before)
"""


def test_remembered_names_hold_bounded_memory_whatever_their_length() -> None:
    """Asked about 5,000 distinct 4 KiB names (more than it remembers; each is 4 KiB of index
    file), the selector keeps at most a few MiB (it kept 16 MiB): a long name is searched
    again, not kept. In a child: with Python's re, each search of these names took 0.1 s."""
    run = run_bounded(python(REMEMBERING), seconds=SECONDS)
    assert run.returncode == 0, run.stderr
    kept = int(run.stdout)
    assert kept < 4 << 20, f"{kept / 2**20:.1f} MiB kept"


# -- end to end: the evaluator on hostile trials ----------------------------------------------


def hostile_trial(path: Path, labels: str, predictions: str, **at_step: str) -> dict[str, Any]:
    """Six steps of 16 labels, the labels tensor of step ``int(key[5:])`` renamed to the value
    of each ``step_N`` keyword; returns the samples counted per class, the renamed steps left
    out."""
    export_collections(str(path), "worker_0", 1, (labels, predictions))
    rng = np.random.default_rng(0)
    samples: dict[str, int] = {}
    renamed = {int(key.removeprefix("step_")): name for key, name in at_step.items()}
    for step in range(6):
        label_rows = rng.integers(0, 3, 16).astype(np.int64)
        scores = rng.standard_normal((16, 3)).astype(np.float32)
        name = renamed.get(step, labels)
        write_step(str(path), step, "worker_0", {name: label_rows, predictions: scores})
        if step not in renamed:
            for label in label_rows.tolist():
                samples[str(label)] = samples.get(str(label), 0) + 1
    end_training(str(path))
    return samples


def evaluate(trial: Path, tmp_path: Path, *flags: str) -> tuple[Bounded, dict[str, Any]]:
    status = tmp_path / "status.json"
    run = run_bounded(
        evaluator(
            "--trial", str(trial), "--argmax", "true", "--once", "true", "--metrics-enabled",
            "false", "--status-file", str(status), *flags,
        ),
        seconds=SECONDS,
    )  # fmt: skip
    assert "Traceback" not in run.stderr, run.stderr
    assert run.peak_rss_mib < PEAK_MIB
    return run, json.loads(status.read_text())


def counted(document: dict[str, Any]) -> dict[str, int]:
    return {label: entry["samples"] for label, entry in document["classes"].items()}


def test_a_backtracking_labels_regex_against_hostile_names_counts_exactly(tmp_path: Path) -> None:
    """The issue's case: ``(a+)+$`` and names of 27 ``a`` (80 s before, killed at 90 s)."""
    truth = hostile_trial(tmp_path / "trial", "a" * 27, "a" * 27 + "_predictions")
    run, document = evaluate(tmp_path / "trial", tmp_path, "--labels-regex", "(a+)+$")
    assert run.returncode == 3, run.stderr  # too few labels for the checks: counted, no verdict
    assert counted(document) == truth
    assert document["skipped"]["batches"] == {}


def test_a_regex_no_name_matches_is_reported_without_backtracking(tmp_path: Path) -> None:
    """When nothing matches, the names are searched once more to say so: by RE2 too."""
    hostile_trial(tmp_path / "trial", "a" * 30 + "_labels", "predictions")
    run, document = evaluate(tmp_path / "trial", tmp_path, "--labels-regex", "(a+)+$")
    assert run.returncode == 2, run.stderr
    assert "no tensor in the trial matches labels_regex '(a+)+$'" in document["error"]
    assert "a" * 30 + "_labels" in document["error"]


def test_one_part_with_a_256_kib_labels_name_is_skipped_and_the_rest_counted(
    tmp_path: Path,
) -> None:
    """The issue's case: a 256 KiB labels name at one step (over two minutes before, against
    the default regexes); now that part is skipped, saying why, and every other counted."""
    long_name = "x" * (256 << 10) + "_labels"
    truth = hostile_trial(tmp_path / "trial", "labels", "predictions", step_3=long_name)
    run, document = evaluate(tmp_path / "trial", tmp_path)
    assert run.returncode == 3, run.stderr
    assert counted(document) == truth
    assert document["skipped"]["batches"] == {"missing_labels": 1}
    example = document["skipped"]["examples"]["missing_labels"]
    assert "tensor names longer than 4,096 characters match no regex" in example
    assert f"({len(long_name):,} characters in all)" in example
    assert len(example) < 1000
    assert run.seconds < 30


def test_a_long_pattern_on_the_command_line_is_refused_quoted_short(tmp_path: Path) -> None:
    """100,000 characters: within what a flag can carry, beyond what a pattern may be."""
    hostile_trial(tmp_path / "trial", "labels", "predictions")
    run, document = evaluate(tmp_path / "trial", tmp_path, "--labels-regex", "a" * 100_000)
    assert run.returncode == 2, run.stderr
    assert "this one is 100,000 characters long" in document["error"]
    assert len(json.dumps(document)) < 8000
    assert len(run.stderr) < 4000
