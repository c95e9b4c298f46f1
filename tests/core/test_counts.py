"""ClassCounts and PairCounts: additive counts against scikit-learn and collections.Counter."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.core import counts as counts_module
from evaluator.core.counts import ClassCounts, PairCounts
from tests.core.cases import CASES, Case
from tests.core.reference import assert_confusion_matches_sklearn
from tests.core.strategies import index_rows

COUNTED = {name: case for name, case in CASES.items() if case.pairs}

ROWS_SETTINGS = settings(max_examples=50, deadline=None)


def _ints(values: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def _counts(labels: list[int], predicted: list[int]) -> ClassCounts:
    counts = ClassCounts()
    counts.add(_ints(labels), _ints(predicted))
    return counts


def _triples_counter(pairs: PairCounts) -> Counter[tuple[int, int]]:
    labels, predicted, counts = pairs.triples()
    return Counter(
        {
            (a, b): c
            for a, b, c in zip(labels.tolist(), predicted.tolist(), counts.tolist(), strict=True)
        }
    )


@pytest.mark.parametrize("case", COUNTED.values(), ids=list(COUNTED))
def test_catalogue_pairs_give_the_expected_per_class_counts(case: Case) -> None:
    labels = [label for label, _ in case.pairs]
    predicted = [guess for _, guess in case.pairs]
    counts = _counts(labels, predicted)
    samples, mispredicted = counts.trimmed()
    assert samples.tolist() == list(case.samples)
    assert mispredicted.tolist() == list(case.mispredicted)
    assert counts.num_classes == len(case.samples)
    assert_confusion_matches_sklearn(counts, labels, predicted)


@ROWS_SETTINGS
@given(index_rows(), st.integers(1, 6))
def test_counts_over_several_adds_equal_sklearn(
    rows: tuple[int, list[int], list[int]], pieces: int
) -> None:
    _, labels, predicted = rows
    counts = ClassCounts()
    for part in np.array_split(np.arange(len(labels)), pieces):
        counts.add(_ints(labels)[part], _ints(predicted)[part])
    assert_confusion_matches_sklearn(counts, labels, predicted)


@ROWS_SETTINGS
@given(index_rows(max_rows=12, num_classes=1000), st.integers(1, 12))
def test_thousand_classes_in_many_small_adds_equal_sklearn(
    rows: tuple[int, list[int], list[int]], pieces: int
) -> None:
    _, labels, predicted = rows
    counts = ClassCounts()
    for part in np.array_split(np.arange(len(labels)), pieces):
        counts.add(_ints(labels)[part], _ints(predicted)[part])
    assert_confusion_matches_sklearn(counts, labels, predicted)


def test_sparse_and_dense_accumulation_agree() -> None:
    # A large class first grows the arrays to 1000 entries, so later small batches take the
    # np.add.at path; a large batch takes the bincount path.
    rng = np.random.default_rng(7)
    small = [_ints([3, 3, 999, 0]), _ints([5])]
    large = rng.integers(0, 1000, size=5000)
    counts = ClassCounts()
    for labels in (_ints([999]), *small, large):
        counts.add(labels, labels)
    expected = np.bincount(np.concatenate([_ints([999]), *small, large]), minlength=1000)
    samples, mispredicted = counts.trimmed()
    np.testing.assert_array_equal(samples, expected)
    assert not mispredicted.any()
    assert counts.total == expected.sum()


def test_empty_add_changes_nothing() -> None:
    counts = ClassCounts()
    counts.add(_ints([]), _ints([]))
    assert counts.num_classes == 0
    assert counts.total == 0
    assert counts.to_dict() == {"samples": [], "mispredicted": [], "confusion": [[], [], []]}


def test_num_classes_is_one_past_the_largest_class_with_a_sample() -> None:
    counts = _counts([2, 0], [7, 0])  # class 7 was only predicted
    assert counts.num_classes == 3
    assert counts.trimmed()[0].tolist() == [1, 0, 1]
    assert counts.confusion.row(2) == {7: 1}
    assert counts.confusion.row(0) == {}


@ROWS_SETTINGS
@given(index_rows(), st.data())
def test_merge_of_halves_equals_the_whole_and_is_commutative(
    rows: tuple[int, list[int], list[int]], data: st.DataObject
) -> None:
    _, labels, predicted = rows
    cut = data.draw(st.integers(0, len(labels)), label="cut")
    whole = _counts(labels, predicted)

    forward = _counts(labels[:cut], predicted[:cut])
    forward.merge(_counts(labels[cut:], predicted[cut:]))
    backward = _counts(labels[cut:], predicted[cut:])
    backward.merge(_counts(labels[:cut], predicted[:cut]))

    assert forward.to_dict() == whole.to_dict()
    assert backward.to_dict() == whole.to_dict()
    assert forward.total == backward.total == whole.total == len(labels)
    assert_confusion_matches_sklearn(forward, labels, predicted)


@ROWS_SETTINGS
@given(index_rows())
def test_to_dict_round_trips_through_json_exactly(rows: tuple[int, list[int], list[int]]) -> None:
    _, labels, predicted = rows
    counts = _counts(labels, predicted)
    text = json.dumps(counts.to_dict())
    restored = ClassCounts.from_dict(json.loads(text))
    assert json.dumps(restored.to_dict()) == text
    assert restored.total == counts.total
    assert restored.num_classes == counts.num_classes
    assert _triples_counter(restored.confusion) == _triples_counter(counts.confusion)
    # Restored counts keep counting and merging like the originals.
    restored.add(_ints(labels), _ints(predicted))
    counts.merge(_counts(labels, predicted))
    assert restored.to_dict() == counts.to_dict()


# -- PairCounts ------------------------------------------------------------------------------


def test_pair_counts_compaction_gives_the_same_triples_as_a_counter() -> None:
    rng = np.random.default_rng(2024)
    pairs = PairCounts()
    expected: Counter[tuple[int, int]] = Counter()
    compacted = False
    added = 0
    while added < 3 * counts_module._COMPACT_AFTER:
        size = int(rng.integers(1, 5000))
        labels = rng.integers(0, 300, size=size)
        predicted = rng.integers(0, 300, size=size)
        # Include the largest class index the parameters allow: the key packing must hold it.
        labels[0], predicted[0] = 2**31 - 1, 2**31 - 2
        wrong = labels != predicted
        pairs.add(labels[wrong], predicted[wrong])
        expected.update(zip(labels[wrong].tolist(), predicted[wrong].tolist(), strict=True))
        added += int(wrong.sum())
        compacted |= pairs._pending_size == 0 and pairs.keys.size > 0
        assert pairs._pending_size < counts_module._COMPACT_AFTER
    assert compacted, "adding more than _COMPACT_AFTER pairs must fold the pending buffer"
    assert _triples_counter(pairs) == expected
    labels_out, predicted_out, _ = pairs.triples()
    order = np.lexsort((predicted_out, labels_out))
    np.testing.assert_array_equal(order, np.arange(order.size))
    assert pairs.row(2**31 - 1) == {2**31 - 2: expected[(2**31 - 1, 2**31 - 2)]}


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), max_size=30), max_size=6),
    st.integers(0, 6),
)
def test_pair_counts_merge_equals_a_counter_sum(
    chunks: list[list[tuple[int, int]]], cut: int
) -> None:
    left, right = PairCounts(), PairCounts()
    expected: Counter[tuple[int, int]] = Counter()
    for index, chunk in enumerate(chunks):
        target = left if index < cut else right
        labels = _ints([a for a, _ in chunk])
        predicted = _ints([b for _, b in chunk])
        target.add(labels, predicted)
        expected.update(chunk)
    left.merge(right)
    assert _triples_counter(left) == expected
    assert _triples_counter(right) == Counter(p for c in chunks[cut:] for p in c)
    for label in {a for a, _ in expected}:
        assert left.row(label) == {b: n for (a, b), n in expected.items() if a == label}


def test_pair_counts_row_of_an_absent_label_is_empty() -> None:
    pairs = PairCounts()
    pairs.add(_ints([1, 3]), _ints([2, 0]))
    assert pairs.row(0) == {}
    assert pairs.row(2) == {}
    assert pairs.row(1) == {2: 1}


# -- sparse, huge class indices ----------------------------------------------------------------


def _as_dict(counts: ClassCounts) -> dict[int, tuple[int, int]]:
    classes, samples, mispredicted = counts.columns()
    return {
        int(c): (int(n), int(w))
        for c, n, w in zip(classes.tolist(), samples.tolist(), mispredicted.tolist(), strict=True)
        if n
    }


def _counted(labels: list[int], predicted: list[int]) -> dict[int, tuple[int, int]]:
    samples = Counter(labels)
    wrong = Counter(a for a, b in zip(labels, predicted, strict=True) if a != b)
    return {c: (n, wrong[c]) for c, n in samples.items()}


def test_a_label_of_999999_beside_small_classes_keeps_the_classes_seen_only() -> None:
    counts = _counts([0, 1, 2, 999_999, 2], [0, 2, 2, 3, 2])
    assert counts.sparse
    assert counts.samples.tolist() == [1, 1, 2, 1]
    assert counts.classes is not None
    assert counts.classes.tolist() == [0, 1, 2, 999_999]
    assert counts.num_classes == 1_000_000
    assert _as_dict(counts) == _counted([0, 1, 2, 999_999, 2], [0, 2, 2, 3, 2])
    state = counts.to_dict()
    assert state["classes"] == [0, 1, 2, 999_999]
    assert ClassCounts.from_dict(json.loads(json.dumps(state))).to_dict() == state


def test_dense_counts_keep_the_dense_form_and_state_of_older_versions() -> None:
    counts = _counts(list(range(20_000)), list(range(20_000)))
    assert not counts.sparse, "a dense 20,000-class model stays on the dense path"
    assert "classes" not in counts.to_dict()


def test_an_older_state_of_sparse_indices_is_loaded_compact() -> None:
    samples = [0] * 1_000_000
    samples[3], samples[999_999] = 2, 1
    older = {"samples": samples, "mispredicted": [0] * 1_000_000, "confusion": [[], [], []]}
    restored = ClassCounts.from_dict(older)
    assert restored.sparse
    assert _as_dict(restored) == {3: (2, 0), 999_999: (1, 0)}


def test_sparse_counts_become_dense_again_when_the_classes_fill_the_range() -> None:
    counts = _counts([0, 50_000], [0, 0])
    assert counts.sparse
    counts.add(np.arange(50_001, dtype=np.int64), np.arange(50_001, dtype=np.int64))
    assert not counts.sparse
    assert _as_dict(counts)[50_000] == (2, 1)


def test_a_sparse_state_whose_ids_disagree_is_refused() -> None:
    with pytest.raises(ValueError, match="sorted, distinct class id"):
        ClassCounts.from_dict(
            {
                "classes": [5, 3],
                "samples": [1, 1],
                "mispredicted": [0, 0],
                "confusion": [[], [], []],
            }
        )


def _sparse_state(
    classes: list[object], confusion: list[list[object]] | None = None
) -> dict[str, object]:
    return {
        "classes": classes,
        "samples": [1] * len(classes),
        "mispredicted": [0] * len(classes),
        "confusion": confusion or [[], [], []],
    }


# What no version writes and restoring would get wrong: a pair key holds two ids of 32 bits
# each (one of 2**31 or more runs into the other), and a negative id indexes from the end.
DAMAGED_STATES = {
    "negative_id": (_sparse_state([-1, 999_999]), r"sparse class ids within \[0, 2\*\*31\).*-1$"),
    "repeated_id": (
        _sparse_state([7, 7]),
        "sorted, distinct class id per count, but id 7 follows 7",
    ),
    "descending_ids": (_sparse_state([9, 3]), "but id 3 follows 9"),
    "id_of_2_31": (_sparse_state([0, 2**31]), r"within \[0, 2\*\*31\).*2147483648$"),
    "id_beyond_int64": (_sparse_state([0, 2**64]), "whole numbers within"),
    "fractional_id": (_sparse_state([0, 1.5]), "whole numbers within"),
    "confusion_label_negative": (
        _sparse_state([0, 999_999], [[-1], [0], [1]]),
        r"confusion's labels within \[0, 2\*\*31\)",
    ),
    "confusion_predicted_of_2_31": (
        _sparse_state([0, 999_999], [[0], [2**31], [1]]),
        "confusion's predicted classes within",
    ),
    "confusion_unsorted": (
        _sparse_state([0, 999_999], [[999_999, 0], [0, 999_999], [1, 1]]),
        "confusion pairs sorted",
    ),
    "confusion_of_other_lengths": (
        _sparse_state([0, 999_999], [[0, 999_999], [999_999], [1]]),
        "as many confusion labels",
    ),
}


@pytest.mark.parametrize("case", DAMAGED_STATES, ids=list(DAMAGED_STATES))
def test_a_state_of_ids_no_version_writes_is_refused(case: str) -> None:
    state, message = DAMAGED_STATES[case]
    with pytest.raises(ValueError, match=message):
        ClassCounts.from_dict(state)


def test_the_largest_class_id_max_classes_allows_round_trips() -> None:
    top = 2**31 - 1
    counts = _counts([0, top, top], [top, 0, top])
    state = json.loads(json.dumps(counts.to_dict()))
    assert state["classes"] == [0, top]
    assert ClassCounts.from_dict(state).to_dict() == counts.to_dict()


@ROWS_SETTINGS
@given(
    st.lists(st.sampled_from([0, 1, 7, 40_000, 999_999]), max_size=30),
    st.lists(st.sampled_from([0, 7, 999_999]), max_size=30),
    st.integers(1, 4),
    st.booleans(),
)
def test_sparse_counts_over_adds_and_merges_equal_a_counter(
    labels: list[int], guesses: list[int], pieces: int, dense_first: bool
) -> None:
    predicted = (guesses * (len(labels) // max(len(guesses), 1) + 1))[: len(labels)]
    if len(predicted) < len(labels):
        predicted = labels
    start = ClassCounts()
    if dense_first:
        start.add(_ints([0, 1, 2]), _ints([0, 1, 1]))
    parts = [start] + [ClassCounts() for _ in range(pieces)]
    for index, (label, guess) in enumerate(zip(labels, predicted, strict=True)):
        parts[index % len(parts)].add(_ints([label]), _ints([guess]))
    merged = ClassCounts()
    for part in parts:
        merged.merge(part)
    head = [0, 1, 2] if dense_first else []
    expected = _counted(head + labels, ([0, 1, 1] if dense_first else []) + predicted)
    assert _as_dict(merged) == expected
    assert merged.total == len(head) + len(labels)
    assert _triples_counter(merged.confusion) == Counter(
        (a, b)
        for a, b in zip(head + labels, ([0, 1, 1] if dense_first else []) + predicted, strict=True)
        if a != b
    )
    assert ClassCounts.from_dict(json.loads(json.dumps(merged.to_dict()))).to_dict() == (
        merged.to_dict()
    )
