"""Text from outside (names, paths, values) repeated in messages, bounded.

A tensor name, a path or a setting comes from files and variables anyone who can write the
trial or the pod spec fills, and a message goes into the log, the status file and the managed
service's message: a value is repeated whole up to ``QUOTED_CHARS`` characters, else its start
and how long the whole was. One bound for every layer, so a message says the same of a value
whichever layer found it.
"""

from __future__ import annotations

QUOTED_CHARS = 200
"""The longest value a message repeats whole: real names and paths are shorter."""


def shortened(text: str, limit: int = QUOTED_CHARS) -> str:
    """``text`` as it is, or its first ``limit`` characters and how long the whole was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters in all)"


def quoted(text: str, limit: int = QUOTED_CHARS) -> str:
    """``repr(text)``, or of its first ``limit`` characters and how long the whole was."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters in all)"
