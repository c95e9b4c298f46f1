"""The webhook action against a real HTTP server on loopback: retries with back-off, a hung
endpoint cut by the timeout, a server that fails forever, a refused token, the headers from a
file and the environment (never in the outcome), Alertmanager's format, a dry run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from container.actions import DONE, FAILED, WOULD_RUN
from container.actions.webhook import post, shown
from tests.container.actions.hookserver import hook_server

DOCUMENT: dict[str, Any] = {
    "rule": "ClassImbalance",
    "status": "IssuesFound",
    "trial": "/trials/run-7",
    "issue_step": 12,
    "last_step": 12,
    "samples": 900,
    "steps_evaluated": 13,
    "imbalance_ratio": 14.5,
    "findings": [
        {
            "check": "imbalance",
            "step": 12,
            "value": 14.5,
            "threshold": 10.0,
            "classes": [0, 3],
            "message": "largest/smallest class count 290/20 = 14.5 is above threshold_imbalance 10",
        },
        {
            "check": "misprediction",
            "step": 12,
            "value": 0.8,
            "threshold": 0.7,
            "classes": [3],
            "message": "misprediction fraction above threshold_misprediction 0.7 for 1 class",
        },
    ],
    "current": {
        "misprediction": {"mistaken_for": {"3": [{"class": 0, "count": 16, "fraction": 0.8}]}}
    },
    "classes": {},
}


def run(action: dict[str, Any], **kwargs: Any) -> tuple[str, str]:
    budget = kwargs.pop("budget", 20.0)
    return post(action, DOCUMENT, dry_run=False, deadline=time.monotonic() + budget, **kwargs)


def test_the_issue_is_posted_with_a_text_for_chat_webhooks() -> None:
    with hook_server(200) as server:
        outcome, detail = run({"name": "webhook", "url": server.url})
    assert (outcome, detail) == (
        DONE,
        f"POSTed the issue to http://127.0.0.1:{server.port}/... (HTTP 200, attempt 1)",
    )
    [request] = server.requests
    assert request.headers["Content-Type"] == "application/json"
    body = request.body
    assert body["issue_step"] == 12
    assert body["findings"] == DOCUMENT["findings"]
    assert body["mistaken_for"] == {"3": [{"class": 0, "count": 16, "fraction": 0.8}]}
    assert body["text"].splitlines()[0] == (
        "ClassImbalance found an issue at step 12 in trial /trials/run-7 (900 labels over 13 "
        "steps)."
    )
    assert "class 3 is mostly mistaken for 0 (80%)" in body["text"]
    assert "http" not in body["text"], "link-free"


def test_two_failures_then_success_is_done_on_the_third_attempt() -> None:
    with hook_server(500, 503, 200) as server:
        outcome, detail = run({"name": "webhook", "url": server.url, "retries": 3})
    assert outcome == DONE
    assert detail.endswith("(HTTP 200, attempt 3)")
    assert len(server.requests) == 3


def test_a_server_that_fails_forever_is_given_up_after_the_retries() -> None:
    with hook_server(500) as server:
        outcome, detail = run({"name": "webhook", "url": server.url, "retries": 2})
    assert outcome == FAILED
    assert detail == (
        f"could not POST the issue to {shown(server.url)} after 3 attempt(s): HTTP 500; "
        f"HTTP 500; HTTP 500"
    )
    assert len(server.requests) == 3


def test_a_hung_endpoint_is_cut_by_the_timeout_and_the_budget() -> None:
    with hook_server(("hang", 3.0)) as server:
        started = time.monotonic()
        outcome, detail = run(
            {"name": "webhook", "url": server.url, "timeout": 0.3, "retries": 5}, budget=1.5
        )
        elapsed = time.monotonic() - started
    assert outcome == FAILED
    assert "TimeoutError" in detail or "timed out" in detail
    assert elapsed < 2.5, "the action's budget bounds every attempt and every wait"


def test_a_refused_token_is_not_retried() -> None:
    with hook_server(401) as server:
        outcome, detail = run({"name": "webhook", "url": server.url})
    assert outcome == FAILED
    assert detail.startswith(f"{shown(server.url)} answered HTTP 401")
    assert len(server.requests) == 1


def test_headers_come_from_a_file_and_the_environment_and_are_never_shown(
    tmp_path: Path,
) -> None:
    headers = tmp_path / "headers"
    headers.write_text("X-Team: ml-platform\n\n")
    action = {
        "name": "webhook",
        "headers_file": str(headers),
        "headers_env": "HOOK_HEADERS",
    }
    with hook_server(200) as server:
        outcome, detail = run(
            {**action, "url": server.url},
            environ={"HOOK_HEADERS": "Authorization: Bearer s3cr3t"},
        )
    assert outcome == DONE
    [request] = server.requests
    assert request.headers["Authorization"] == "Bearer s3cr3t"
    assert request.headers["X-Team"] == "ml-platform"
    assert "s3cr3t" not in detail
    outcome, detail = run({**action, "url": server.url}, environ={})
    assert (outcome, detail) == (
        FAILED,
        f"headers_env names HOOK_HEADERS, which is not set; nothing was sent to "
        f"{shown(server.url)}",
    )


def test_the_alertmanager_format_is_its_alert_list() -> None:
    with hook_server(200) as server:
        outcome, _ = run({"name": "webhook", "url": server.url, "format": "alertmanager"})
    assert outcome == DONE
    [request] = server.requests
    assert [alert["labels"]["check"] for alert in request.body] == ["imbalance", "misprediction"]
    assert {alert["labels"]["alertname"] for alert in request.body} == {"ClassImbalanceRuleIssue"}
    assert request.body[0]["annotations"]["description"] == DOCUMENT["findings"][0]["message"]


def test_a_dry_run_sends_nothing() -> None:
    with hook_server(200) as server:
        outcome, detail = post(
            {"name": "webhook", "url": server.url},
            DOCUMENT,
            dry_run=True,
            deadline=time.monotonic() + 5,
        )
    assert (outcome, detail) == (WOULD_RUN, f"would POST the issue to {shown(server.url)}")
    assert server.requests == []


@pytest.mark.parametrize("line", ["no colon here", ": value"])
def test_a_malformed_header_line_fails_without_showing_it(tmp_path: Path, line: str) -> None:
    headers = tmp_path / "headers"
    headers.write_text(f"X-Ok: 1\n{line}\n")
    outcome, detail = run(
        {"name": "webhook", "url": "http://127.0.0.1:9/x", "headers_file": str(headers)}
    )
    assert outcome == FAILED
    assert detail.startswith(f"headers_file {headers} line 2 is not 'Name: value'")


def test_a_redirect_is_not_followed_so_the_token_goes_nowhere_else(tmp_path: Path) -> None:
    with hook_server(200) as elsewhere, hook_server(("redirect", elsewhere.url)) as server:
        outcome, detail = run(
            {"name": "webhook", "url": server.url, "headers_env": "H"},
            environ={"H": "Authorization: Bearer s3cr3t"},
        )
    assert outcome == FAILED
    assert detail.startswith(f"{shown(server.url)} answered HTTP 302 (a redirect, not followed")
    assert len(server.requests) == 1
    assert elsewhere.requests == []


def test_outputs_show_a_webhooks_host_but_not_its_token_path() -> None:
    assert shown("https://hooks.slack.com/services/T0/B0/XXXX") == "https://hooks.slack.com/..."
    assert shown("http://alertmanager:9093") == "http://alertmanager:9093"
    assert shown("https://h.example/?token=abc") == "https://h.example/..."


def test_a_header_http_cannot_carry_fails_without_showing_it(tmp_path: Path) -> None:
    headers = tmp_path / "headers"
    headers.write_text("Authorization: Bearer tok\u00e9n\u2603\n", encoding="utf-8")
    outcome, detail = run(
        {"name": "webhook", "url": "http://127.0.0.1:9/x", "headers_file": str(headers)}
    )
    assert outcome == FAILED
    assert "line 1 has characters an HTTP header cannot carry" in detail
    assert "tok" not in detail


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        pytest.param(
            b"X-Token: " + b"a" * (1 << 20), "is larger than 65,536 bytes", id="too_large"
        ),
        pytest.param(b"X-Token: \xff\xfe\n", "not UTF-8", id="not_utf8"),
    ],
)
def test_a_headers_file_that_is_not_one_fails_without_reading_it_whole(
    tmp_path: Path, content: bytes, phrase: str
) -> None:
    headers = tmp_path / "headers"
    headers.write_bytes(content)
    outcome, detail = run(
        {"name": "webhook", "url": "http://127.0.0.1:9/x", "headers_file": str(headers)}
    )
    assert outcome == FAILED
    assert phrase in detail
    assert "aaaa" not in detail
