"""Which tensors are the labels and which the predictions: the two regexes, searched by name.

Search semantics (a match anywhere in the name), as the seed rule's ``.*labels``. A trial saves
the same few tensor names at nearly every step, so each distinct set of names is split once and
remembered (bounded), and so is each name's answer: the regexes run per new name, not per
part.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_SPLITS_KEPT = 256
"""Distinct tensor-name sets whose split is remembered."""
_NAMES_KEPT = 4096
"""Distinct tensor names whose answer to ``wants`` is remembered."""


class TensorSelector:
    """The labels and predictions regexes, compiled once."""

    def __init__(self, labels_regex: str, predictions_regex: str) -> None:
        self.labels_regex = labels_regex
        self.predictions_regex = predictions_regex
        self._labels = re.compile(labels_regex)
        self._predictions = re.compile(predictions_regex)
        self._splits: dict[tuple[str, ...], tuple[list[str], list[str]]] = {}
        self._wanted: dict[str, bool] = {}

    def wants(self, tensor_name: str) -> bool:
        """Whether a tensor of this name is a label or prediction tensor (asked for every
        tensor of every part: the same few names, so each is searched once, bounded)."""
        wanted = self._wanted.get(tensor_name)
        if wanted is None:
            wanted = bool(self._labels.search(tensor_name) or self._predictions.search(tensor_name))
            if len(self._wanted) < _NAMES_KEPT:
                self._wanted[tensor_name] = wanted
        return wanted

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
