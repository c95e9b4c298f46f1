"""The bounds of a configuration, the same for every layer (YAML, job config, environment, flags).

A sidecar's settings come from files and variables that someone else may write: a YAML
"billion laughs" (nested aliases), a file of 350,000 keys or a 10 MiB value must end in one clear
error at once, never in a hang or a node's memory. So every document is checked for its size,
its nesting, its number of keys and nodes and the length of its strings before any of it is
parsed as a setting (aliases counted each time they are used, since that is what expands), and
every value a message quotes is shortened (``quote``). Checking a value costs time in proportion
to its distinct objects, not to its expansion.
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable, Iterator
from typing import Any

from evaluator.core import QUOTED_CHARS, quoted

MAX_FILE_BYTES = 256 * 1024
"""Largest YAML file or job config read: PyYAML's pure-Python parser takes seconds per MiB,
and 256 KiB holds every setting with thousands of class names (``class_names_file`` takes
more)."""
MAX_TEXT_LENGTH = 128 * 1024
"""Longest string in any value: what Linux allows one environment variable or argument
(``MAX_ARG_STRLEN``), so a value that fits one layer fits every other."""
MAX_TEXT_TOTAL = 1024 * 1024
"""Most characters of all the strings of one document or value, each alias counted where it is
used: four times what a file can hold, so aliases may repeat things but not multiply them."""
MAX_NODES = 20_000
"""Most values (scalars, lists, maps; each alias counted where it is used) in one document:
every setting with ten thousand class names takes fewer, and PyYAML takes about 0.1 ms per
value here (100,000 took 18 s on a busy machine)."""
MAX_KEYS = 1_000
"""Most keys of one mapping: there are fewer than a hundred settings."""
MAX_DEPTH = 32
"""Deepest nesting of lists and maps in a document: settings are flat, actions three levels
deep, the managed service's job config a few more; Python's own recursion limit is 1,000."""
MAX_QUOTED = QUOTED_CHARS
"""Longest value a message quotes (the rest is cut, saying how long the whole was): the rule
core's bound for every layer (``evaluator.core.text``)."""
MAX_REPORTED_UNKNOWN = 20
"""Unknown keys, flags and variables reported one by one (each with a closest-name suggestion,
which costs time); the others are counted in one more line."""

MAX_ARGUMENTS = 1_000
"""Most command-line arguments: every setting given as a flag takes fewer than 300, and
argparse takes time quadratic in the number of unknown flags (8,000 took 7 s)."""
MAX_NEAR_MISS_CHECKS = 2_000
"""Environment variables compared with the settings' names for a "did you mean" warning (each
comparison takes about half a millisecond here): a pod's environment holds a few hundred, and
a hostile one could hold a hundred thousand."""


class TooLarge(ValueError):
    """A document or value beyond a bound: ``reason`` says which, what was found and the
    bound."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_SHORT = reprlib.Repr()
_SHORT.maxlevel = 3
_SHORT.maxdict = 6
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = 6
_SHORT.maxstring = 80
_SHORT.maxlong = 60
_SHORT.maxother = 80


def quote(value: Any, limit: int = MAX_QUOTED) -> str:
    """``repr(value)`` in at most about ``limit`` characters, saying how long the whole was when
    cut: the work is bounded too, whatever the value holds (``repr`` of a billion laughs is
    not)."""
    if isinstance(value, str):
        return quoted(value, limit)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        if value.bit_length() > 14_000:  # past 4,300 digits Python will not write it
            return f"a whole number of about {int(value.bit_length() * 0.30103):,} digits"
        digits = repr(value)
        return f"{digits[:limit]}... ({len(digits):,} digits in all)"
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    try:
        text = _SHORT.repr(value)
    except Exception:  # a value's own __repr__ may raise anything
        text = f"<{type(value).__name__}>"
    size = f" (a {_kind(value)} of {len(value):,} items)" if isinstance(value, list | dict) else ""
    if len(text) > limit:
        return f"{text[:limit]}...{size}"
    return f"{text}{size}" if "..." in text else text


def closest(word: str, names: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The name most like ``word`` (difflib's ratio at least ``cutoff``), or None. A word more
    than three times as long as every name cannot reach 0.6 and is not compared: difflib's
    work grows with the word's length."""
    candidates = list(names)
    longest = max((len(name) for name in candidates), default=0)
    if len(word) > 3 * longest:
        return None
    found = difflib.get_close_matches(word, candidates, n=1, cutoff=cutoff)
    return found[0] if found else None


def _kind(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "list"


def check_text(text: str, what: str) -> None:
    """A string any setting can hold: not too long, no NUL (no path or name holds one), valid
    Unicode (an environment variable of undecodable bytes reaches Python as lone surrogates,
    which no output can write)."""
    if len(text) > MAX_TEXT_LENGTH:
        raise TooLarge(
            f"{what} is {len(text):,} characters long; at most {MAX_TEXT_LENGTH:,} are accepted"
        )
    if "\x00" in text:
        raise TooLarge(
            f"{what} holds a NUL character (at {text.index(chr(0))}), which no setting can take"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TooLarge(
            f"{what} is not valid UTF-8 (an undecodable byte at character {exc.start}); give it "
            f"in UTF-8"
        ) from None


def check_document(document: Any, what: str) -> None:
    """Refuse a document (or one value) beyond the bounds, aliases counted where they are used:
    its depth, its number of nodes and keys, its strings. Raises TooLarge; takes time in
    proportion to the distinct objects (a shared one is measured once)."""
    nodes, characters = _measure(document, what)
    if nodes > MAX_NODES:
        raise TooLarge(
            f"{what} holds more than {MAX_NODES:,} values (scalars, lists and maps, each alias "
            f"counted where it is used), the most a configuration may hold"
        )
    if characters > MAX_TEXT_TOTAL:
        raise TooLarge(
            f"{what} holds more than {MAX_TEXT_TOTAL:,} characters of text (each alias counted "
            f"where it is used), the most a configuration may hold"
        )


def _children(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield item
    else:
        yield from value


def _measure(root: Any, what: str) -> tuple[int, int]:
    """(nodes, characters) of ``root`` expanded, walked without recursion: a shared container is
    measured once and its size reused; a container inside itself (a recursive alias) and one
    nested deeper than MAX_DEPTH are refused."""
    sizes: dict[int, tuple[int, int]] = {}
    keep: list[Any] = []  # the measured containers, alive so that their ids stay theirs
    open_ids: set[int] = set()
    stack: list[tuple[Any, Iterator[Any], list[int]]] = []

    def enter(container: Any) -> None:
        if len(stack) >= MAX_DEPTH:
            raise TooLarge(f"{what} is nested more than {MAX_DEPTH} levels deep")
        if isinstance(container, dict) and len(container) > MAX_KEYS:
            raise TooLarge(
                f"{what} has a mapping of {len(container):,} keys; at most {MAX_KEYS:,} are "
                f"accepted"
            )
        open_ids.add(id(container))
        stack.append((container, _children(container), [1, 0]))

    def scalar(value: Any) -> tuple[int, int]:
        if isinstance(value, str):
            check_text(value, f"a string in {what}")
            return 1, len(value)
        return 1, 0

    if not isinstance(root, list | tuple | dict):
        if isinstance(root, str):
            check_text(root, what)
        return 1, len(root) if isinstance(root, str) else 0
    enter(root)
    while True:
        container, children, total = stack[-1]
        child = next(children, _END)
        if child is _END:
            stack.pop()
            open_ids.discard(id(container))
            sizes[id(container)] = (total[0], total[1])
            keep.append(container)
            if not stack:
                return total[0], total[1]
            parent = stack[-1][2]
            parent[0] += total[0]
            parent[1] += total[1]
            if parent[0] > MAX_NODES or parent[1] > MAX_TEXT_TOTAL:
                return parent[0], parent[1]  # already beyond: no need to walk the rest
            continue
        if isinstance(child, list | tuple | dict):
            if id(child) in open_ids:
                raise TooLarge(f"{what} holds itself (a recursive alias)")
            known = sizes.get(id(child))
            if known is None:
                enter(child)
                continue
            nodes, characters = known
        else:
            nodes, characters = scalar(child)
        total[0] += nodes
        total[1] += characters
        if total[0] > MAX_NODES or total[1] > MAX_TEXT_TOTAL:
            return total[0], total[1]


_END = object()
