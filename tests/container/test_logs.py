"""Log lines: text for people, one JSON object per line with event fields for pipelines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from container.logs import configure_logging


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
