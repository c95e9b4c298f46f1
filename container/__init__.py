"""The runtime: settings, the follow loop, the outputs, the command line."""

__version__ = "0.1.0"
"""The package's version; ``tests/test_structure.py`` holds it equal to ``pyproject.toml``'s."""
