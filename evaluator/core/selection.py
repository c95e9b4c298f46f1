"""Which tensors are the labels and which the predictions: the two regexes, searched by name.

Search semantics (a match anywhere in the name), as the seed rule's ``.*labels``. A trial saves
the same few tensor names at nearly every step, so each distinct set of names is split once and
remembered (bounded): the regexes run per new name set, not per part.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_SPLITS_KEPT = 256
"""Distinct tensor-name sets whose split is remembered."""


class TensorSelector:
    """The labels and predictions regexes, compiled once."""

    def __init__(self, labels_regex: str, predictions_regex: str) -> None:
        self.labels_regex = labels_regex
        self.predictions_regex = predictions_regex
        self._labels = re.compile(labels_regex)
        self._predictions = re.compile(predictions_regex)
        self._splits: dict[tuple[str, ...], tuple[list[str], list[str]]] = {}

    def wants(self, tensor_name: str) -> bool:
        """Whether a tensor of this name is a label or prediction tensor."""
        return bool(self._labels.search(tensor_name) or self._predictions.search(tensor_name))

    def split(self, tensor_names: Sequence[str]) -> tuple[list[str], list[str]]:
        """(label names, prediction names), each sorted: the order tensors are concatenated."""
        key = tuple(tensor_names)
        cached = self._splits.get(key)
        if cached is None:
            labels = sorted(n for n in tensor_names if self._labels.search(n))
            predictions = sorted(n for n in tensor_names if self._predictions.search(n))
            cached = (labels, predictions)
            if len(self._splits) < _SPLITS_KEPT:
                self._splits[key] = cached
        return list(cached[0]), list(cached[1])
