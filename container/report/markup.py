"""Small HTML builders the report's sections share: escaped text, tables, labels of classes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

Document = Mapping[str, Any]
"""A status document (``container.status.build_status``): the report's only input."""


def text(value: object) -> str:
    return escape(str(value))


def class_label(index: str | int, entry: Mapping[str, Any] | None = None) -> str:
    """``class 3`` or ``class 3 (cat)``, as the summary and the status say it."""
    name = (entry or {}).get("name")
    return f"class {index} ({name})" if name else f"class {index}"


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    table_id: str = "",
    numeric: Sequence[int] = (),
    row_attributes: Iterable[str] | None = None,
    caption: str = "",
) -> str:
    """A table of already-escaped cells; ``numeric`` columns are right-aligned."""
    right = set(numeric)
    head = "".join(
        f'<th scope="col"{" class=num" if i in right else ""}>{text(h)}</th>'
        for i, h in enumerate(headers)
    )
    attributes = iter(row_attributes) if row_attributes is not None else None
    body = []
    for row in rows:
        extra = next(attributes, "") if attributes is not None else ""
        cells = "".join(
            f"<td{' class=num' if i in right else ''}>{cell}</td>" for i, cell in enumerate(row)
        )
        body.append(f"<tr{extra}>{cells}</tr>")
    identity = f' id="{table_id}"' if table_id else ""
    caption_html = f"<caption>{text(caption)}</caption>" if caption else ""
    return (
        f"<table{identity}>{caption_html}<thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def definitions(pairs: Iterable[tuple[str, str]], *, list_id: str = "") -> str:
    """A definition list of (term, already-escaped value)."""
    identity = f' id="{list_id}"' if list_id else ""
    items = "".join(f"<dt>{text(term)}</dt><dd>{value}</dd>" for term, value in pairs)
    return f'<dl class="pairs"{identity}>{items}</dl>'


def section(section_id: str, title: str, body: str, *, lead: str = "") -> str:
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return (
        f'<section id="{section_id}" aria-labelledby="{section_id}-title">'
        f'<h2 id="{section_id}-title">{text(title)}</h2>{lead_html}{body}</section>'
    )


def details(summary: str, body: str, *, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{text(summary)}</summary>{body}</details>"


def fraction(value: float | None) -> str:
    return "\u2013" if value is None else f"{value:.3f}"


def counted(count: int, word: str) -> str:
    """``1 class``, ``940 classes``: the count grouped, the noun agreeing."""
    plural = word + ("es" if word.endswith(("s", "sh", "ch", "x")) else "s")
    return f"{count:,} {word if count == 1 else plural}"
