"""Class names from the settings or a file, and the check that they cover the classes."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

import pytest

from container import names
from container.config import OutputSettings
from container.names import ClassNamesError, check_names_fit, load_class_names


def test_names_come_from_the_list_or_from_the_file(tmp_path: Path) -> None:
    assert load_class_names(OutputSettings()) is None
    assert load_class_names(OutputSettings(class_names=("a", "b"))) == ("a", "b")
    path = tmp_path / "names.txt"
    path.write_text(" cat \r\ndog\n\n\n", encoding="utf-8")
    assert load_class_names(OutputSettings(class_names_file=str(path))) == ("cat", "dog")


def test_a_missing_or_huge_file_says_what_to_change(tmp_path: Path) -> None:
    with pytest.raises(ClassNamesError, match=r"cannot read class_names_file .*: No such file"):
        load_class_names(OutputSettings(class_names_file=str(tmp_path / "none.txt")))
    path = tmp_path / "big.txt"
    path.write_text("a\n" * 10)
    with (
        patch.object(names, "MAX_FILE_BYTES", 5),
        pytest.raises(ClassNamesError, match="at most 5 bytes, but it has 20"),
    ):
        load_class_names(OutputSettings(class_names_file=str(path)))


def test_names_must_cover_every_class_counted() -> None:
    check_names_fit(None, 10)
    check_names_fit(("a", "b"), 2)
    check_names_fit(("a", "b"), 0)
    with pytest.raises(ClassNamesError) as raised:
        check_names_fit(("a", "b"), 5)
    assert str(raised.value) == (
        "class_names has 2 names (classes 0 to 1), but the trial has 5 classes (class 4 was "
        "counted): give a name for every class, or unset class_names"
    )
