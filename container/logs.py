"""Logging: one line per notable event, as text for people or JSON lines for log pipelines.

Events carry a stable ``event`` name (attached, first_step, issue_found, step_skipped, ended,
...) and their figures as fields, so a JSON consumer filters on names, not on wording.

Messages quote text anyone can write: trial paths, tensor names, settings. In the text format
every control character of a line (newlines, carriage returns, ANSI escapes, Unicode line
separators and bidirectional overrides) is written as its escape, so one event is always one
line and no value can forge a line or repaint the terminal; a traceback is escaped with it. JSON
lines need nothing more: ``json.dumps`` escapes every control character and every non-ASCII one.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, TextIO

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {
    "message",
    "asctime",
}


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({key: value for key, value in vars(record).items() if key not in _RESERVED})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""What a line of text log must not hold raw: C0 and C1 control characters (line feed,
carriage return, escape, next line, CSI), the Unicode line and paragraph separators, and the
bidirectional embeddings, overrides and isolates that make text read in another order."""

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_control(text: str) -> str:
    """``text`` with every character of ``_CONTROL`` as its Python escape (``\\n``,
    ``\\x1b``, ``\\u2028``); the rest, backslashes included, as it is."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    code = ord(character)
    named = _NAMED_ESCAPES.get(character)
    if named is not None:
        return named
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class TextFormatter(logging.Formatter):
    """One line per event for people: the record formatted, its control characters escaped
    (``escape_control``), the traceback of ``log.exception`` included."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_control(super().format(record))


class TerminalFormatter(TextFormatter):
    """Text lines that first erase the progress line a replay redraws on a terminal
    (``progress.ProgressLog``), so a log line never runs on after it."""

    def format(self, record: logging.LogRecord) -> str:
        return "\r\x1b[K" + super().format(record)


def configure_logging(log_format: str, level: str, stream: TextIO | None = None) -> None:
    """Route the root logger to ``stream`` (stderr) in the chosen format, replacing handlers."""
    target = stream or sys.stderr
    handler = logging.StreamHandler(target)
    text = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if log_format == "json":
        handler.setFormatter(JsonLineFormatter())
    elif target.isatty():
        handler.setFormatter(TerminalFormatter(text))
    else:
        handler.setFormatter(TextFormatter(text))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
