"""Logging: one line per notable event, as text for people or JSON lines for log pipelines.

Events carry a stable ``event`` name (attached, first_step, issue_found, step_skipped, ended,
...) and their figures as fields, so a JSON consumer filters on names, not on wording.
"""

from __future__ import annotations

import json
import logging
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


class TerminalFormatter(logging.Formatter):
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
        handler.setFormatter(logging.Formatter(text))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
