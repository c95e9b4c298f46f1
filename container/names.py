"""Class names: a name per class index, from the settings or a file, checked against the data.

Names are for people only (the status, the summary, the metrics' ``class_name`` label); the
rule counts indices. A list that is shorter than the classes the trial holds would put wrong
or missing names beside the figures, so it stops the evaluation with both numbers, the way a
wrong regex does.
"""

from __future__ import annotations

from pathlib import Path

from container.config import Invalid, OutputSettings, class_names_from_lines

MAX_FILE_BYTES = 16 * 1024 * 1024
"""A class names file larger than this is refused (a million names fit well below it)."""


class ClassNamesError(ValueError):
    """Class names that cannot be used; the message says why and what to change."""


def load_class_names(outputs: OutputSettings) -> tuple[str, ...] | None:
    """The configured names: the list, the file's lines, or None."""
    if outputs.class_names is not None or outputs.class_names_file is None:
        return outputs.class_names
    path = Path(outputs.class_names_file)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ClassNamesError(
                f"expected class_names_file {path} to be a text file of at most "
                f"{MAX_FILE_BYTES} bytes, but it has {size}: give one name per line"
            )
        content = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClassNamesError(
            f"cannot read class_names_file {path}: {exc.strerror or exc}; set it to a readable "
            f"text file with one class name per line, or unset it"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ClassNamesError(
            f"expected class_names_file {path} to be UTF-8 text, but byte {exc.start} is not: "
            f"save it as UTF-8"
        ) from exc
    try:
        return class_names_from_lines(content)
    except Invalid as exc:
        raise ClassNamesError(
            f"class_names_file {path}: {exc}; give one class name per line, line 1 for class 0"
        ) from exc


def check_names_fit(names: tuple[str, ...] | None, classes: int) -> None:
    """Raise when the trial has a class index that the names do not cover."""
    if names is None or classes <= len(names):
        return
    raise ClassNamesError(
        f"class_names has {len(names)} names (classes 0 to {len(names) - 1}), but the trial has "
        f"{classes} classes (class {classes - 1} was counted): give a name for every class, or "
        f"unset class_names"
    )
