"""Values from outside are repeated whole in messages up to one bound, else their start and
their length."""

from __future__ import annotations

import pytest

from evaluator.core.text import QUOTED_CHARS, quoted, shortened


def test_a_short_value_is_repeated_as_it_is() -> None:
    assert quoted("labels") == "'labels'"
    assert shortened("index/000000000") == "index/000000000"
    assert shortened("x" * QUOTED_CHARS) == "x" * QUOTED_CHARS


@pytest.mark.parametrize("function", [quoted, shortened], ids=["quoted", "shortened"])
def test_a_long_value_is_cut_saying_how_long_it_was(function: object) -> None:
    assert callable(function)
    long = function("x" * 1_000_000)
    assert long.startswith(("'xxx", "xxx"))
    assert long.endswith("... (1,000,000 characters in all)")
    assert len(long) < QUOTED_CHARS + 50


def test_the_cut_is_measured_in_characters_of_the_value_not_of_its_repr() -> None:
    assert quoted("\n" * (QUOTED_CHARS + 1)).endswith(f"({QUOTED_CHARS + 1:,} characters in all)")
    assert quoted("\n" * QUOTED_CHARS) == repr("\n" * QUOTED_CHARS)
