"""The YAML layer: a file of flat setting keys, with duplicate keys refused and the document
bounded (``limits``) before any of it is read as a setting.

Imported only when a YAML file is named (``--config`` or ``RULE_CONFIG``): PyYAML takes about
30 ms to import, a tenth of a short replay, and most runs in a container take their settings from
the environment.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

from container.config.entries import Entry, Report, Source, problem
from container.config.limits import (
    MAX_DEPTH,
    MAX_KEYS,
    MAX_NODES,
    TooLarge,
    check_document,
    quote,
)
from container.config.sources import keyed_entries, kind_of
from evaluator.core import shortened


class _YamlLoader(yaml.SafeLoader):
    """PyYAML keeps the last of duplicate keys silently; here they are errors, since a setting
    written twice would be half-ignored. Its composer recurses once per level of nesting and
    its merge keys copy mappings: both are bounded here, so a deep or merged document ends in
    TooLarge rather than in a RecursionError or a long copy."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._composed = 0
        self._merged = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        self._composed += 1
        try:
            if self._depth > MAX_DEPTH:
                raise TooLarge(f"{self._where()} is nested more than {MAX_DEPTH} levels deep")
            if self._composed > MAX_NODES:
                raise TooLarge(f"it holds more than {MAX_NODES:,} values ({self._where()})")
            if isinstance(parent, yaml.MappingNode) and len(parent.value) >= MAX_KEYS:
                raise TooLarge(
                    f"it has a mapping of more than {MAX_KEYS:,} keys, at most {MAX_KEYS:,} are "
                    f"accepted ({self._where()})"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _where(self) -> str:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        return f"line {mark.line + 1}, column {mark.column + 1}"

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        super().flatten_mapping(node)
        self._merged += len(node.value)
        if self._merged > MAX_NODES:
            raise TooLarge(
                f"its merge keys (<<) copy more than {MAX_NODES:,} values (line "
                f"{node.start_mark.line + 1})"
            )

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: PyYAML reports it itself
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {quote(key)}", key_node.start_mark
                )
        return super().construct_mapping(node, deep)


def _load(text: str, name: str, report: Report) -> tuple[yaml.Node | None, Any]:
    """The composed root and the document; (None, None) after adding the problem."""
    loader: _YamlLoader | None = None
    try:
        loader = _YamlLoader(text)  # its reader refuses control characters at once
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name} line {mark.line + 1}, column {mark.column + 1}" if mark else name
        reason = getattr(exc, "problem", None) or str(exc)
        report.problems.append(problem("config", None, where, f"not valid YAML: {reason}"))
        return None, None
    except TooLarge as exc:
        report.problems.append(problem("config", None, name, f"refused: {exc.reason}"))
        return None, None
    except (ValueError, OverflowError) as exc:  # a number Python cannot hold, as 10**5000
        report.problems.append(
            problem("config", None, name, f"not a valid settings file: {shortened(str(exc))}")
        )
        return None, None
    finally:
        if loader is not None:
            loader.dispose()
    return node, document


def yaml_entries(text: str, name: str, report: Report) -> list[Entry]:
    node, document = _load(text, name, report)
    if node is None or document is None:
        return []
    try:
        check_document(document, "the document")
    except TooLarge as exc:
        report.problems.append(problem("config", None, name, f"refused: {exc.reason}"))
        return []
    if not isinstance(document, dict):
        report.problems.append(
            problem(
                "config",
                document,
                f"{name} line {node.start_mark.line + 1}",
                f"expected a mapping of setting names to values (such as `samples: 500`), but "
                f"the document is a {kind_of(document)}",
            )
        )
        return []
    return keyed_entries(document, lambda key: Source("file", f"{name} key {key}"), report)
