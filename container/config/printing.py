"""What the settings say about themselves: their docs, their defaults, ``--print-config``.

Docs are each field's docstring, read from the class source, so ``--help`` and the printed
settings repeat the declaration instead of a second copy that drifts.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

from container.config.entries import LoadedSettings
from container.config.settings import DECLARED, GROUPS, SETTING_NAMES
from container.config.sources import ENV_PREFIX, MANAGED_NAMES
from evaluator.core import RuleParameters


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring, read from the class source. Empty when the source is not
    installed."""
    # Here, not at the top: only --help and the docs need the source (ast and inspect cost
    # 15 ms to import), never an evaluation.
    import ast  # noqa: PLC0415
    import inspect  # noqa: PLC0415
    import textwrap  # noqa: PLC0415

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.replace("``", "").split())
    return docs


@functools.cache
def setting_docs() -> dict[str, str]:
    """Every setting's docstring by its flat name."""
    classes: dict[str, type] = {"rule": RuleParameters, **dict(GROUPS)}
    docs = {}
    for name, declared in DECLARED.items():
        doc = field_docs(classes[declared.group]).get(declared.attribute)
        if doc:
            docs[name] = doc
    return docs


def default_value(name: str) -> Any:
    """A setting's default; ``base_trial`` has none (it is required) and gives None."""
    declared = DECLARED[name]
    return None if declared.required else declared.default


def default_text(name: str) -> str:
    """A setting's default as ``--help`` and the example config show it."""
    if DECLARED[name].required:
        return "required"
    value = default_value(name)
    return "none" if value is None else yaml_inline(value)


def yaml_inline(value: Any) -> str:
    """One-line YAML for a value, so the printed settings load back as a config file: PyYAML's
    own flow form when it is one line of ordinary characters and loads back the same, else
    every string double-quoted with anything unusual escaped (a line break, U+2028, a control
    character), which always does."""
    import yaml  # noqa: PLC0415  (30 ms; --print-config and --help only)

    plain = _plain(value)
    text = yaml.safe_dump(
        plain, default_flow_style=True, width=1 << 30, allow_unicode=True, sort_keys=False
    )
    text = text.removesuffix("\n...\n").rstrip("\n")
    if all(_ordinary(character) for character in text):
        try:
            if yaml.safe_load(text) == plain:
                return text
        except yaml.YAMLError:
            pass
    return _escaped_flow(plain)


def _plain(value: Any) -> Any:
    """Tuples as lists, all the way down: what YAML writes and reads."""
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _ordinary(character: str) -> bool:
    """Printable and no line break to YAML (which takes U+0085, U+2028 and U+2029 for one)."""
    return character.isprintable() and character not in "\x85\u2028\u2029\ufeff"


def _escaped_flow(value: Any) -> str:
    """Flow YAML with every string double-quoted and escaped: one line whatever it holds."""
    import yaml  # noqa: PLC0415

    if isinstance(value, str):
        return _double_quoted(value)
    if isinstance(value, list):
        return "[" + ", ".join(_escaped_flow(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{_escaped_flow(key)}: {_escaped_flow(item)}" for key, item in value.items())
        return "{" + ", ".join(pairs) + "}"
    text: str = yaml.safe_dump(value, default_flow_style=True, width=1 << 30)
    return text.removesuffix("\n...\n").rstrip("\n")


def _double_quoted(text: str) -> str:
    escaped = []
    for character in text:
        if character in '"\\':
            escaped.append("\\" + character)
        elif _ordinary(character):
            escaped.append(character)
        elif ord(character) < 0x100:
            escaped.append(f"\\x{ord(character):02x}")
        elif ord(character) < 0x10000:
            escaped.append(f"\\u{ord(character):04x}")
        else:
            escaped.append(f"\\U{ord(character):08x}")
    return '"' + "".join(escaped) + '"'


def comment(text: str) -> str:
    """``text`` for a YAML comment: a line break or a control character (in a path, a variable's
    name) escaped, so that it cannot end the comment and start a line of its own."""
    if all(_ordinary(character) for character in text):
        return text
    return _double_quoted(text)[1:-1]


def example_config() -> str:
    """The example YAML file shipped in the package (``container/config/classimbalance.yaml``,
    which the repository's ``config/classimbalance.yaml`` links to): every setting, its default
    and why, loadable as it is."""
    from importlib import resources  # noqa: PLC0415  (--example-config only)

    return resources.files("container.config").joinpath("classimbalance.yaml").read_text("utf-8")


def format_settings(loaded: LoadedSettings) -> str:
    """The effective settings as aligned, commented YAML: ``key: value  # from source``."""
    rows = []
    for name in SETTING_NAMES:
        source = loaded.sources[name]
        origin = "default" if source.kind == "default" else f"from {source}"
        rows.append((f"{name}:", yaml_inline(loaded.settings.value(name)), origin))
    key_width = max(len(key) for key, _, _ in rows)
    value_width = min(max(len(value) for _, value, _ in rows), 32)
    lines = [
        "# classimbalance-rule: effective settings; valid YAML for --config",
        f"# in the environment: {ENV_PREFIX}NAME for any setting ({ENV_PREFIX}LOG_LEVEL);",
        f"# also NAME for {', '.join(sorted(MANAGED_NAMES))}",
    ]
    lines += [
        f"{key:<{key_width}} {value:<{value_width}}  # {comment(origin)}"
        for key, value, origin in rows
    ]
    lines += [f"# warning: {comment(warning)}" for warning in loaded.warnings]
    return "\n".join(lines) + "\n"
