"""The YAML layer: a file of flat setting keys, with duplicate keys refused.

Imported only when a YAML file is named (``--config`` or ``RULE_CONFIG``): PyYAML takes about
30 ms to import, a tenth of a short replay, and most runs in a container take their settings from
the environment.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

from container.config.entries import Entry, Report, Source, problem
from container.config.sources import keyed_entries, kind_of


class _YamlLoader(yaml.SafeLoader):
    """PyYAML keeps the last of duplicate keys silently; here they are errors, since a setting
    written twice would be half-ignored."""

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
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep)


def yaml_entries(text: str, name: str, report: Report) -> list[Entry]:
    loader = _YamlLoader(text)
    try:
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name} line {mark.line + 1}, column {mark.column + 1}" if mark else name
        reason = getattr(exc, "problem", None) or str(exc)
        report.problems.append(problem("config", None, where, f"not valid YAML: {reason}"))
        return []
    finally:
        loader.dispose()
    if node is None or document is None:
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
