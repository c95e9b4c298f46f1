"""The stop file: a small JSON file that a training loop polls to stop itself.

Works with any framework and no cloud API: the evaluator and the training container share a
volume, the loop checks ``os.path.exists(path)`` each step (the README shows the five lines).
Written atomically, so the loop never reads half of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from container.actions.message import message_text
from container.actions.outcomes import DONE, WOULD_RUN
from container.atomic import write_text_atomically


def write_stop_file(
    action: Mapping[str, Any], document: Mapping[str, Any], *, dry_run: bool
) -> tuple[str, str]:
    path = str(action["path"])
    if dry_run:
        return WOULD_RUN, f"would write the stop file {path}"
    content = {
        "stop": True,
        "rule": document["rule"],
        "trial": document["trial"],
        "issue_step": document["issue_step"],
        "findings": document["findings"],
        "reason": message_text(document),
    }
    write_text_atomically(path, json.dumps(content, indent=2) + "\n")
    return DONE, f"wrote the stop file {path}"
