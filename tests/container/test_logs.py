"""Log lines: text for people, one JSON object per line with event fields for pipelines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from container.logs import configure_logging, escape_control


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logger")
def test_json_lines_carry_the_event_and_its_fields() -> None:
    stream = io.StringIO()
    configure_logging("json", "INFO", stream)
    logging.getLogger("classimbalance").warning(
        "issue found at step %d", 86, extra={"event": "issue_found", "step": 86}
    )
    logging.getLogger("classimbalance").debug("not shown at INFO")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["message"] == "issue found at step 86"
    assert entry["event"] == "issue_found"
    assert entry["step"] == 86
    assert entry["level"] == "WARNING"
    assert entry["time"].endswith("Z")


@pytest.mark.usefixtures("restore_root_logger")
def test_exceptions_stay_inside_one_json_line() -> None:
    stream = io.StringIO()
    configure_logging("json", "INFO", stream)
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("classimbalance").exception("internal error")
    (line,) = stream.getvalue().splitlines()
    assert "ValueError: broken" in json.loads(line)["exception"]


@pytest.mark.usefixtures("restore_root_logger")
def test_text_format_is_one_readable_line() -> None:
    stream = io.StringIO()
    configure_logging("text", "INFO", stream)
    logging.getLogger("classimbalance").info("attached to trial %s", "/t")
    assert stream.getvalue().rstrip().endswith("INFO classimbalance: attached to trial /t")


CONTROL_CHARACTERS = (
    pytest.param("\n", r"\n", id="newline"),
    pytest.param("\r", r"\r", id="carriage_return"),
    pytest.param("\x1b[2K\x1b[1G", r"\x1b[2K\x1b[1G", id="ansi_erase_line"),
    pytest.param("\x85", r"\x85", id="next_line"),
    pytest.param("\x9b2K", r"\x9b2K", id="c1_csi"),
    pytest.param("\u2028", r"\u2028", id="line_separator"),
    pytest.param("\u2029", r"\u2029", id="paragraph_separator"),
    pytest.param("\u202e", r"\u202e", id="right_to_left_override"),
    pytest.param("\x00\x07\x08\x7f", r"\x00\x07\x08\x7f", id="nul_bell_backspace_delete"),
    pytest.param("\t", r"\t", id="tab"),
)
"""What a value quoted in a log line could hold to end the line, or to repaint the terminal."""


@pytest.mark.usefixtures("restore_root_logger")
@pytest.mark.parametrize(("control", "escaped"), CONTROL_CHARACTERS)
def test_a_control_character_in_a_value_stays_inside_its_text_line(
    control: str, escaped: str
) -> None:
    stream = io.StringIO()
    configure_logging("text", "INFO", stream)
    value = f"t{control}2026-01-01 00:00:00,000 ERROR classimbalance: forged"
    logging.getLogger("classimbalance").info("following trial %s", value)
    text = stream.getvalue()
    assert len(text.splitlines()) == 1, text
    assert text.endswith(
        f"following trial t{escaped}2026-01-01 00:00:00,000 ERROR classimbalance: forged\n"
    )


@pytest.mark.usefixtures("restore_root_logger")
@pytest.mark.parametrize(
    "control", [pytest.param(case.values[0], id=case.id) for case in CONTROL_CHARACTERS]
)
def test_a_control_character_round_trips_through_a_json_line(control: str) -> None:
    """JSON lines were safe already (``json.dumps`` escapes all of them): held so."""
    stream = io.StringIO()
    configure_logging("json", "INFO", stream)
    value = f"t{control}forged"
    logging.getLogger("classimbalance").info("trial %s", value, extra={"trial": value})
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert (entry["message"], entry["trial"]) == (f"trial {value}", value)


@pytest.mark.usefixtures("restore_root_logger")
def test_a_traceback_in_text_is_one_line_with_its_value_escaped() -> None:
    stream = io.StringIO()
    configure_logging("text", "INFO", stream)
    try:
        raise OSError(f"cannot read {'x' + chr(10) + 'forged'}")
    except OSError:
        logging.getLogger("classimbalance").exception("internal error")
    (line,) = stream.getvalue().splitlines()
    assert r"Traceback (most recent call last):\n" in line
    assert r"OSError: cannot read x\nforged" in line


def test_escaping_leaves_printable_text_and_backslashes_as_they_are() -> None:
    text = r"labels_regex '.*\d+labels' für Zürich, 日本 ✓"
    assert escape_control(text) == text
