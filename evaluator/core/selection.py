"""Which tensors are the labels and which the predictions: the two regexes, searched by name.

Search semantics (a match anywhere in the name), as the seed rule's ``.*labels``. The names come
from files anyone can write, so the regexes are matched by RE2 (``google-re2``), in time linear
in the name whatever the pattern, never by Python's backtracking ``re`` (``(a+)+$`` against 27
``a`` ran for minutes, ``.*predictions`` against a 256 KiB name for longer). A pattern must be
one Python's ``re`` accepts too, and mean the same there: what RE2 lacks (backreferences,
lookaround, possessive quantifiers, ...) is refused when the parameters load, naming the
construct and what to write instead (``regex_refusal``). The differences left: ``\\d``, ``\\w``,
``\\s`` and ``\\b`` are ASCII (Python's are Unicode), and ``$`` matches only at the very end
(Python's also before a final newline).

A trial saves the same few tensor names at nearly every step, so each name's answer and each
distinct set of names' split are remembered, bounded in number and in size; a name longer than
``MAX_MATCHED_NAME_CHARS`` is matched by neither regex, and the message of a batch that misses
a tensor says so.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, Final

import re2

from evaluator.core.text import quoted, shortened

MAX_MATCHED_NAME_CHARS: Final = 4096
"""The longest tensor name the regexes are searched in; a longer one matches neither. Framework
hooks write scope paths of at most a few hundred characters, so a name past 4 KiB is not one
they write; refusing it bounds each search by this length times the pattern's compiled size
(microseconds for the patterns tensor names take; 0.4 to 3 s here for the most contrived 4 KiB
patterns ``REGEX_MEMORY_BYTES`` admits, such as 200 copies of ``[ab]*a[ab]{99}z|``)."""

REGEX_MEMORY_BYTES: Final = 1 << 20
"""RE2's budget for one compiled regex, its program and its DFA cache (RE2's default is 8
MiB). A pattern for tensor names needs a few KiB; one that compiles past the budget (counted
repetitions such as ``(?:.{1000}){8}``) is refused, which caps the program, and with it how long
the search of one name can take, and the memory of the two regexes."""

_NAMES_KEPT: Final = 4096
"""Distinct tensor names whose roles (label, prediction) are remembered."""
_KEPT_NAME_CHARS: Final = 512
"""The longest name remembered: names are short, and 4096 of them at most 512 characters are
2 MiB at most. A longer one is searched again each time it is asked about."""
_SPLITS_KEPT: Final = 256
"""Distinct tensor-name sets whose split is remembered."""
_KEPT_SPLIT_CHARS: Final = 16 * 1024
"""The most characters of all the names of one set whose split is remembered (4 MiB for all
of them at most); a part with more names, or longer ones, is split again each time."""
_NAMES_LISTED: Final = 50
"""The most tensor names a message lists; the others are counted."""

_RE2_SYNTAX = "https://github.com/google/re2/wiki/Syntax"


class RegexRefused(ValueError):
    """A labels or predictions regex that cannot be matched in linear time as Python means it:
    the message says what was found and what to write instead."""


def _options() -> Any:
    options = re2.Options()
    options.max_mem = REGEX_MEMORY_BYTES
    options.log_errors = False  # a refused pattern is reported once, in our words
    options.never_capture = True  # whether it matches, never where: no submatch engine runs
    # longest_match stays off (leftmost-first, as Python), UTF-8 stays the encoding: the names
    # are text, passed as UTF-8 bytes (``_utf8``).
    return options


_OPTIONS: Final = _options()


def name_list(names: Iterable[str], *, quote: bool = True) -> str:
    """Tensor names for a message, comma-separated: at most ``_NAMES_LISTED``, each at most
    ``QUOTED_CHARS`` characters, with how many others there are."""
    listed: list[str] = []
    others = 0
    for name in names:
        if len(listed) < _NAMES_LISTED:
            listed.append(quoted(name) if quote else shortened(name))
        else:
            others += 1
    if others:
        listed.append(f"and {others:,} more")
    return ", ".join(listed)


def compile_regex(pattern: str) -> Any:
    """The RE2 regex of ``pattern``; raises ``RegexRefused`` with what to write instead."""
    refusal = regex_refusal(pattern)
    if refusal is not None:
        raise RegexRefused(f"{quoted(pattern)} {refusal}")
    return re2.compile(pattern, _OPTIONS)


def regex_refusal(pattern: str) -> str | None:
    """Why ``pattern`` cannot be a tensor-name regex, worded to follow the pattern ("found
    ..., write ..."), or None when it can: it must compile in Python's ``re`` (the regexes are
    documented as Python's) and in RE2, and mean the same in both."""
    try:
        pattern.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"holds a character that is not valid Unicode at position {exc.start} (a lone "
            f"surrogate): give the pattern as UTF-8 text"
        )
    try:
        with warnings.catch_warnings():  # "possible nested set": refused below, in our words
            warnings.simplefilter("ignore")
            re.compile(pattern)
    except re.error as exc:
        where = "" if exc.pos is None else f" at position {exc.pos}"
        return f"is not a valid regular expression: {exc.msg}{where}"
    except RecursionError:
        return "nests groups too deeply for Python to parse: nest fewer groups"
    try:
        re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        return _explained(pattern, _message(exc))
    return _read_otherwise(pattern)


def _message(exc: Exception) -> str:
    found = exc.args[0] if exc.args else ""
    return found.decode("utf-8", "replace") if isinstance(found, bytes) else str(found)


# RE2's "invalid perl operator: (?X" -> what it is and what to write instead
_GROUPS: Final = {
    "(?=": ("a lookahead (?=...)", "match the text itself: a search finds it anywhere"),
    "(?!": ("a negative lookahead (?!...)", "name what the tensor is, not what it is not"),
    "(?<=": ("a lookbehind (?<=...)", "match the text itself: a search finds it anywhere"),
    "(?<!": ("a negative lookbehind (?<!...)", "name what the tensor is, not what it is not"),
    "(?>": ("an atomic group (?>...)", "write a group (?:...): RE2 never backtracks"),
    "(?(": ("a conditional group (?(...)...)", "write an alternation (a|b)"),
    "(?#": ("a comment (?#...)", "leave the comment out"),
    "(?P": (
        "a named backreference (?P=name)",
        "repeat the text itself: RE2 has no backreferences",
    ),
}
_FLAGS: Final = {
    "x": "write the pattern without the verbose flag's spaces and comments",
    "a": r"leave the flag out: RE2's \d, \w and \s are ASCII already",
    "u": "leave the flag out: RE2 matches Unicode text already",
    "L": "leave the flag out",
}
_ESCAPES: Final = {
    "Z": r"write $ instead: RE2's $ (without (?m)) matches only at the very end, as \Z does",
    "u": r"write the character itself, or \x{...} with its hexadecimal code",
    "U": r"write the character itself, or \x{...} with its hexadecimal code",
    "N": r"write the character itself, or \x{...} with its hexadecimal code",
    "b": r"write \x08 for a backspace in a class",
    "G": "anchor with ^ instead",
}


def _explained(pattern: str, message: str) -> str:
    """RE2's refusal of a pattern Python accepts, as the construct and its replacement."""
    kind, _, found = message.partition(": ")
    if kind == "invalid perl operator":
        if found == "(?P":
            found = "(?P" if "(?P=" in pattern else ""
        if found in _GROUPS:
            construct, instead = _GROUPS[found]
            return f"uses {construct}, which RE2 does not support: {instead}"
        flag = found[-1:]
        if found.startswith("(?") and flag in _FLAGS:
            return f"uses the inline flag {flag!r}, which RE2 does not support: {_FLAGS[flag]}"
    if kind == "invalid escape sequence" and found[1:2].isdigit():
        return f"uses the backreference {found}, which RE2 does not support: repeat the text itself"
    if kind == "invalid escape sequence" and found[1:2] in _ESCAPES:
        return f"uses the escape {found}, which RE2 does not support: {_ESCAPES[found[1:2]]}"
    if kind == "bad repetition operator":
        return (
            f"uses the possessive quantifier {found}, which RE2 does not support: write it "
            f"without the last + (RE2 never backtracks, so it matches the same names)"
        )
    if kind == "invalid repetition size":
        return (
            f"has the counted repetition {found}, which alone or times the repetitions around "
            f"or inside it is more than RE2's 1000: write + or * instead"
        )
    if kind.startswith("pattern too large"):
        return (
            f"compiles to more than RE2's budget of {REGEX_MEMORY_BYTES:,} bytes (counted "
            f"repetitions such as {{1000}} make it large): write + or * instead"
        )
    return f"is refused by RE2: {shortened(message)}; see {_RE2_SYNTAX}"


def _split_classes(pattern: str) -> tuple[str, str]:
    """(``pattern`` outside character classes, inside them): each with the other part and every
    escaped character blanked out as spaces, keeping positions. Outside, a ``{`` is a
    repetition; inside, ``[:alpha:]`` is what RE2 reads as a POSIX class."""
    outside: list[str] = []
    inside: list[str] = []
    in_class = False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            outside.append("  ")
            inside.append("  ")
            index += 2
            continue
        opens = not in_class and char == "["
        outside.append(" " if in_class or opens else char)
        inside.append(char if in_class else " ")
        index += 1
        if opens:
            in_class = True
            # a ] right after [ or [^ is a literal inside the class
            for literal in ("^", "]"):
                if pattern[index : index + 1] == literal:
                    outside.append(" ")
                    inside.append(" ")
                    index += 1
        elif in_class:
            in_class = char != "]"
    return "".join(outside)[: len(pattern)], "".join(inside)[: len(pattern)]


def _read_otherwise(pattern: str) -> str | None:
    """Why a pattern both accept means something else to RE2 than to Python, or None."""
    outside, inside = _split_classes(pattern)
    unbounded_below = re.search(r"\{,\d*\}", outside)
    if unbounded_below is not None:
        text = unbounded_below.group()
        return (
            f"has the repetition {text} at position {unbounded_below.start()}, which RE2 reads "
            f"as the literal text {text} (Python as {{0{text[1:]}): write {{0{text[1:]}"
        )
    posix = re.search(r"\[:\^?[A-Za-z]+:\]", inside)
    if posix is not None:
        return (
            f"has {posix.group()} in a character class at position {posix.start()}, which RE2 "
            f"reads as a POSIX class and Python as the characters it holds: write the "
            f"characters the class means, such as a-zA-Z for [:alpha:]"
        )
    return None


def _utf8(name: str) -> bytes:
    # a name read from JSON may hold a lone surrogate, which strict UTF-8 cannot write
    return name.encode("utf-8", "surrogatepass")


class TensorSelector:
    """The labels and predictions regexes, compiled once."""

    def __init__(self, labels_regex: str, predictions_regex: str) -> None:
        self.labels_regex = labels_regex
        self.predictions_regex = predictions_regex
        self._labels = compile_regex(labels_regex)
        self._predictions = compile_regex(predictions_regex)
        self._splits: dict[tuple[str, ...], tuple[list[str], list[str]]] = {}
        self._roles: dict[str, tuple[bool, bool]] = {}
        self.overlong_example: str | None = None
        """The first such name, shortened for messages."""

    def roles(self, tensor_name: str) -> tuple[bool, bool]:
        """(matches labels_regex, matches predictions_regex): searched once per name, both
        False for a name past MAX_MATCHED_NAME_CHARS."""
        roles = self._roles.get(tensor_name)
        if roles is not None:
            return roles
        if len(tensor_name) > MAX_MATCHED_NAME_CHARS:
            if self.overlong_example is None:
                self.overlong_example = quoted(tensor_name, 80)
            return False, False
        text = _utf8(tensor_name)
        roles = (
            self._labels.search(text) is not None,
            self._predictions.search(text) is not None,
        )
        if len(self._roles) < _NAMES_KEPT and len(tensor_name) <= _KEPT_NAME_CHARS:
            self._roles[tensor_name] = roles
        return roles

    def wants(self, tensor_name: str) -> bool:
        """Whether a tensor of this name is a label or prediction tensor (asked for every
        tensor of every part: the same few names, so each is searched once, bounded)."""
        return any(self.roles(tensor_name))

    def matches(self, role: str, tensor_name: str) -> bool:
        """Whether the name matches ``labels_regex`` (role "labels") or
        ``predictions_regex`` (role "predictions")."""
        return self.roles(tensor_name)[0 if role == "labels" else 1]

    def split(self, tensor_names: Sequence[str]) -> tuple[list[str], list[str]]:
        """(label names, prediction names), each sorted: the order tensors are concatenated."""
        key = tuple(tensor_names)
        cached = self._splits.get(key)
        if cached is None:
            roles = [(name, self.roles(name)) for name in key]
            labels = sorted(name for name, (label, _) in roles if label)
            predictions = sorted(name for name, (_, prediction) in roles if prediction)
            cached = (labels, predictions)
            if len(self._splits) < _SPLITS_KEPT and sum(map(len, key)) <= _KEPT_SPLIT_CHARS:
                self._splits[key] = cached
        return list(cached[0]), list(cached[1])

    def missing_message(self, role: str, tensor_names: Iterable[str]) -> str:
        """Why a batch of these tensors has no ``role`` tensor, naming any name too long to be
        searched that the trial holds."""
        regex = self.labels_regex if role == "labels" else self.predictions_regex
        names = sorted(tensor_names)
        among = f"[{name_list(names)}]" if names else "no tensors"
        message = f"no tensor matching {role}_regex {quoted(regex)} among {among}"
        if self.overlong_example is not None:
            message += (
                f"; tensor names longer than {MAX_MATCHED_NAME_CHARS:,} characters match no "
                f"regex, and the trial has such a name: {self.overlong_example}"
            )
        return message
