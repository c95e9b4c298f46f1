"""What an action says about the issue: one message built from the status document.

Every channel (SNS e-mail and SMS, a webhook, the stop file) says the same thing: the rule, the
trial, the issue step, the findings, and the failing classes' top confusions. The text has no
links (a status file's path is not a link a phone can open) and fits an SMS's first lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

CONFUSED_SHOWN = 5
"""Failing classes whose top confusion the text names."""


def shown(url: str) -> str:
    """A URL as outputs show it: scheme, host and port only (a chat webhook's path and query
    hold its token)."""
    parts = urlsplit(url)
    rest = "/..." if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{parts.netloc}{rest}"


def failing_confusions(document: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The top confusions of the classes in the current (else first) misprediction finding."""
    current = document.get("current") or {}
    for check in ("misprediction", "recent_misprediction"):
        finding = current.get(check)
        if finding and finding.get("mistaken_for"):
            return dict(finding["mistaken_for"])
    classes = document.get("classes") or {}
    for finding in document.get("findings", ()):
        if finding["check"] != "imbalance":
            return {
                str(c): classes[str(c)]["mistaken_for"]
                for c in finding["classes"][:CONFUSED_SHOWN]
                if str(c) in classes
            }
    return {}


def message_text(document: Mapping[str, Any]) -> str:
    """A few lines for people: the verdict, each finding, what the failing classes are
    mistaken for."""
    lines = [
        f"{document['rule']} found an issue at step {document['issue_step']} in trial "
        f"{document['trial']} ({document['samples']} labels over "
        f"{document['steps_evaluated']} steps)."
    ]
    lines += [f"- {f['check']} at step {f['step']}: {f['message']}" for f in document["findings"]]
    confused = failing_confusions(document)
    for label, top in list(confused.items())[:CONFUSED_SHOWN]:
        if top:
            guesses = ", ".join(f"{t['class']} ({t['fraction']:.0%})" for t in top)
            lines.append(f"- class {label} is mostly mistaken for {guesses}")
    return "\n".join(lines)


def payload(document: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document a webhook receives: ``text`` for chat webhooks (Slack, Mattermost,
    Rocket.Chat and Google Chat read it), the rest for programs."""
    return {
        "text": message_text(document),
        "rule": document["rule"],
        "status": document["status"],
        "trial": document["trial"],
        "issue_step": document["issue_step"],
        "last_step": document["last_step"],
        "samples": document["samples"],
        "imbalance_ratio": document["imbalance_ratio"],
        "findings": document["findings"],
        "mistaken_for": failing_confusions(document),
    }


def alertmanager_alerts(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The same issue as Alertmanager's API takes it (``POST /api/v2/alerts``): one alert per
    finding, labelled by rule, check and trial."""
    return [
        {
            "labels": {
                "alertname": "ClassImbalanceRuleIssue",
                "rule": document["rule"],
                "check": finding["check"],
                "trial": document["trial"],
                "severity": "warning",
            },
            "annotations": {
                "summary": f"{document['rule']}: {finding['check']} at step {finding['step']}",
                "description": finding["message"],
            },
        }
        for finding in document["findings"]
    ]
