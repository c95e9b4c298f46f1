"""Step completeness as a pure rule: listings, settled parts and the end, with no storage.

Each rule of ``StepCompleteness`` has a named case; a hypothesis run checks the promises that
hold whatever the order of news: every step is released at most once, in increasing order,
never ahead of a step with an unsettled part, and with every part that was settled for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.trial.completeness import ReleasedStep, StepCompleteness
from evaluator.trial.layout import index_key


def key(step: int, worker: str) -> str:
    return index_key(step, worker)


def listing(*parts: tuple[int, str]) -> list[tuple[str, int, str]]:
    """Index keys as a listing returns them: sorted, so by step then worker."""
    return sorted((key(step, worker), step, worker) for step, worker in parts)


def take_and_load(
    steps: StepCompleteness[str], *parts: tuple[int, str], bound: int = 256
) -> list[tuple[int, str]]:
    """List ``parts`` and load every fresh one successfully (its payload names it)."""
    fresh = steps.take(listing(*parts), new_steps=bound).fresh
    for step, worker in fresh:
        steps.settle(step, worker, f"{step}/{worker}")
    return fresh


def released_steps(released: list[ReleasedStep[str]]) -> list[int]:
    return [item.step for item in released]


@dataclass(frozen=True)
class Case:
    expected_workers: int | None
    news: tuple[tuple[str, tuple[tuple[int, str], ...]], ...]
    """("list", parts) lists and loads; ("end", ()) ends; ("release", steps) expects them."""


W0, W1, W2 = "worker_0", "worker_1", "worker_2"

CASES: dict[str, Case] = {
    "waits_for_every_expected_worker": Case(
        3,
        (
            ("list", ((0, W0), (0, W1))),
            ("release", ()),
            ("list", ((0, W2),)),
            ("release", ((0, W0),)),
        ),
    ),
    "a_later_complete_step_releases_earlier_ones_one_release_late": Case(
        2,
        (
            ("list", ((0, W0), (1, W0), (1, W1))),
            ("release", ()),
            ("release", ((0, W0), (1, W0))),
        ),
    ),
    "the_end_releases_every_step": Case(
        2,
        (("list", ((0, W0), (1, W0))), ("end", ()), ("release", ((0, W0), (1, W0)))),
    ),
    "without_collections_only_the_end_releases": Case(
        None,
        (("list", ((0, W0),)), ("release", ()), ("end", ()), ("release", ((0, W0),))),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_release_rules(case: Case) -> None:
    steps: StepCompleteness[str] = StepCompleteness()
    steps.expected_workers = case.expected_workers
    for kind, parts in case.news:
        if kind == "list":
            take_and_load(steps, *parts)
        elif kind == "end":
            steps.end()
        else:
            expected = sorted({step for step, _ in parts})
            assert released_steps(steps.release()) == expected


def test_an_unsettled_part_holds_back_its_step_and_every_later_one() -> None:
    steps: StepCompleteness[str] = StepCompleteness()
    steps.expected_workers = 1
    fresh = steps.take(listing((0, W0), (1, W0), (2, W0)), new_steps=10).fresh
    assert fresh == [(0, W0), (1, W0), (2, W0)]
    steps.settle(1, W0, "one")
    steps.settle(2, W0, "two")
    assert steps.release() == []
    assert steps.unsettled() == [(0, W0)]
    steps.settle(0, W0, None)  # given up on: the step goes without it
    released = steps.release()
    assert released_steps(released) == [0, 1, 2]
    assert (released[0].parts, released[0].given_up) == ({}, (W0,))
    assert released[1].parts == {W0: "one"}


def test_the_window_releases_the_oldest_steps_with_what_they_have() -> None:
    steps: StepCompleteness[str] = StepCompleteness(window=2)
    steps.expected_workers = 2
    take_and_load(steps, (0, W0), (1, W0), (2, W0))
    steps.take(listing((3, W0)), new_steps=10)  # listed, not loaded yet
    released = steps.release()
    assert released_steps(released) == [0, 1]
    assert all(item.forced for item in released)
    assert released[0].parts == {W0: "0/worker_0"}
    assert steps.pending_steps == 2


def test_a_forced_release_names_the_parts_still_unsettled() -> None:
    steps: StepCompleteness[str] = StepCompleteness(window=1)
    steps.expected_workers = 2
    steps.take(listing((0, W0), (0, W1), (1, W0)), new_steps=10)
    steps.settle(0, W0, "zero")
    (released,) = steps.release()
    assert (released.step, released.parts, released.unsettled) == (0, {W0: "zero"}, (W1,))
    assert steps.unsettled() == [(1, W0)]


def test_parts_of_released_steps_are_late_and_passed_by_the_cursor() -> None:
    steps: StepCompleteness[str] = StepCompleteness()
    steps.expected_workers = 2
    take_and_load(steps, (0, W0))
    steps.end()
    assert released_steps(steps.release()) == [0]
    assert steps.cursor == key(0, W0)
    taken = steps.take(listing((0, W1)), new_steps=10)
    assert (taken.fresh, taken.late) == ([], [key(0, W1)])
    steps.release()
    assert steps.cursor == key(0, W1)
    assert steps.finished


def test_the_cursor_never_passes_a_pending_step() -> None:
    steps: StepCompleteness[str] = StepCompleteness()
    steps.expected_workers = 2
    take_and_load(steps, (0, W0), (0, W1), (1, W0))
    assert released_steps(steps.release()) == [0]
    assert steps.cursor == key(0, W1)


def test_new_steps_are_bounded_and_a_cut_listing_keeps_its_last_step() -> None:
    steps: StepCompleteness[str] = StepCompleteness()
    steps.expected_workers = 1
    parts = listing((0, W0), (1, W0), (2, W0), (3, W0))
    taken = steps.take(parts, new_steps=2)
    assert taken.fresh == [(0, W0), (1, W0)]
    assert steps.backlog
    taken = steps.take(parts, new_steps=10, cut=True)
    assert taken.fresh == [(2, W0)]  # step 3 may have more keys beyond the cut
    assert steps.backlog
    taken = steps.take(parts, new_steps=10)
    assert taken.fresh == [(3, W0)]
    assert not steps.backlog


def test_not_finished_while_steps_are_pending_or_listed_beyond_the_bound() -> None:
    steps: StepCompleteness[str] = StepCompleteness()
    steps.end()
    take_and_load(steps, (0, W0), (1, W0), bound=1)
    assert steps.backlog
    assert released_steps(steps.release()) == [0]
    assert not steps.finished
    take_and_load(steps, (1, W0))
    assert released_steps(steps.release()) == [1]
    assert steps.finished


def test_workers_per_step_is_the_larger_of_expected_and_seen() -> None:
    steps: StepCompleteness[str] = StepCompleteness()
    assert steps.workers_per_step() == 1
    steps.expected_workers = 2
    take_and_load(steps, (0, W0), (0, W1), (0, W2))
    assert steps.workers_per_step() == 3


news = st.lists(
    st.one_of(
        st.tuples(st.just("list"), st.integers(0, 6), st.sampled_from([W0, W1, W2])),
        st.tuples(st.just("settle"), st.integers(0, 6), st.booleans()),
        st.tuples(st.just("end"), st.just(0), st.just(0)),
        st.tuples(st.just("release"), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(news=news, expected=st.sampled_from([None, 1, 2, 3]), window=st.integers(1, 8))
def test_every_order_of_news_keeps_the_promises(
    news: list[tuple[str, int, object]], expected: int | None, window: int
) -> None:
    steps: StepCompleteness[str] = StepCompleteness(window=window)
    steps.expected_workers = expected
    listed: set[tuple[int, str]] = set()
    settled: dict[tuple[int, str], str | None] = {}
    released: list[ReleasedStep[str]] = []
    for kind, step, detail in news:
        if kind == "list":
            worker = str(detail)
            steps.take(listing(*sorted(listed | {(step, worker)})), new_steps=window)
            listed.add((step, worker))
        elif kind == "settle":
            unsettled = steps.unsettled()
            if unsettled:
                part = unsettled[step % len(unsettled)]
                payload = f"{part[0]}/{part[1]}" if detail else None
                steps.settle(*part, payload)
                settled[part] = payload
        elif kind == "end":
            steps.end()
        else:
            released += steps.release()
    order = [item.step for item in released]
    assert order == sorted(set(order)), "each step once, in increasing order"
    for item in released:
        expected_parts = {
            worker: payload
            for (step, worker), payload in settled.items()
            if step == item.step and payload is not None
        }
        assert item.parts == expected_parts
        if not item.forced:
            assert item.unsettled == ()


def test_after_the_end_a_step_missing_a_worker_waits_for_the_grace() -> None:
    """Every rank writes the end marker when it closes: it appears when the first finishes."""
    steps: StepCompleteness[str] = StepCompleteness(end_grace=60.0)
    steps.expected_workers = 2
    take_and_load(steps, (0, W0), (0, W1), (1, W1))
    assert released_steps(steps.release(now=100.0)) == [0]
    steps.end(at=100.0)
    assert steps.incomplete()
    assert steps.release(now=130.0) == []
    assert not steps.finished
    take_and_load(steps, (1, W0))  # the other rank's last step, 40 s after the marker
    (step_1,) = steps.release(now=140.0)
    assert (step_1.step, step_1.missing, step_1.by_end) == (1, (), False)
    assert steps.finished


def test_after_the_grace_a_step_goes_with_the_workers_present_and_names_the_missing() -> None:
    steps: StepCompleteness[str] = StepCompleteness(end_grace=60.0)
    steps.expected_workers = 3
    take_and_load(steps, (0, W0), (0, W1), (0, W2), (1, W0))
    steps.release(now=0.0)
    steps.end(at=10.0)
    assert steps.release(now=69.0) == []
    (step_1,) = steps.release(now=70.0)
    assert (step_1.step, step_1.by_end, step_1.missing, step_1.unseen) == (1, True, (W1, W2), 0)
    assert step_1.parts == {W0: "1/worker_0"}


def test_a_finished_trial_whose_steps_are_complete_does_not_wait() -> None:
    steps: StepCompleteness[str] = StepCompleteness(end_grace=3600.0)
    steps.expected_workers = 2
    take_and_load(steps, (0, W0), (0, W1), (1, W0), (1, W1))
    steps.end(at=0.0)
    assert not steps.incomplete()
    assert released_steps(steps.release(now=0.0)) == [0, 1]
    assert steps.finished


def test_without_collections_files_the_end_releases_at_once() -> None:
    steps: StepCompleteness[str] = StepCompleteness(end_grace=3600.0)
    take_and_load(steps, (0, W0))
    steps.end(at=0.0)
    (step_0,) = steps.release(now=0.0)
    assert (step_0.missing, step_0.unseen) == ((), 0), "nothing says how many were expected"


def test_a_step_released_by_a_later_complete_one_names_its_missing_workers() -> None:
    steps: StepCompleteness[str] = StepCompleteness()
    steps.expected_workers = 2
    take_and_load(steps, (0, W0), (1, W0), (1, W1))
    steps.release()
    step_0, step_1 = steps.release()
    assert (step_0.missing, step_0.by_end, step_0.forced) == ((W1,), False, False)
    assert step_1.missing == ()
