"""The webhook action: POST the issue as JSON to a URL, retried with back-off, within a budget.

For Kubernetes and everything outside AWS: a chat webhook (the payload's ``text``), an incident
tool, or Alertmanager itself (``format: alertmanager`` posts its ``/api/v2/alerts`` list).
Headers (a token) come from a file or an environment variable of ``Name: value`` lines, never
from the action JSON, so they never reach the status or the log. 5xx, 408, 429 and network
errors are retried; another 4xx is a mistake in the URL or the token, reported at once.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from container.actions.message import alertmanager_alerts, payload, shown
from container.actions.outcomes import DONE, FAILED, WOULD_RUN

DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 3
FIRST_BACKOFF = 0.5
RETRIED_STATUSES = frozenset({408, 429})


class HeaderError(ValueError):
    """Headers that cannot be read; the message never holds their values."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: urllib would turn the POST into a GET without its body and
    send the headers (a token) to wherever the redirect points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)

MAX_HEADERS_BYTES = 64 * 1024
"""Most of a ``headers_file`` read: a few tokens are a few hundred bytes, and a mounted file
that is not what was meant (a log, a device) must not be read whole into every action."""


def headers(action: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """The extra headers: the file's, then the variable's lines, ``Name: value`` each."""
    found: dict[str, str] = {}
    sources: list[tuple[str, str]] = []
    if "headers_file" in action:
        path = Path(str(action["headers_file"]))
        try:
            with path.open("rb") as file:
                content = file.read(MAX_HEADERS_BYTES + 1)
            text = content.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
            raise HeaderError(f"cannot read headers_file {path}: {reason}") from exc
        if len(content) > MAX_HEADERS_BYTES:
            raise HeaderError(
                f"headers_file {path} is larger than {MAX_HEADERS_BYTES:,} bytes, the most it "
                f"may hold: give the file of 'Name: value' lines"
            )
        sources.append((f"headers_file {path}", text))
    if "headers_env" in action:
        variable = str(action["headers_env"])
        if variable not in environ:
            raise HeaderError(f"headers_env names {variable}, which is not set")
        sources.append((f"headers_env {variable}", environ[variable]))
    for where, text in sources:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            name, colon, value = line.partition(":")
            if not colon or not name.strip():
                raise HeaderError(f"{where} line {number} is not 'Name: value'")
            try:
                (name + value).encode("latin-1")
            except UnicodeEncodeError:
                raise HeaderError(
                    f"{where} line {number} has characters an HTTP header cannot carry"
                ) from None
            found[name.strip()] = value.strip()
    return found


def post(
    action: Mapping[str, Any],
    document: Mapping[str, Any],
    *,
    dry_run: bool,
    deadline: float,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, str]:
    url = str(action["url"])
    where = shown(url)
    if dry_run:
        return WOULD_RUN, f"would POST the issue to {where}"
    try:
        extra = headers(action, os.environ if environ is None else environ)
    except HeaderError as exc:
        return FAILED, f"{exc}; nothing was sent to {where}"
    body = (
        alertmanager_alerts(document)
        if action.get("format") == "alertmanager"
        else payload(document)
    )
    data = json.dumps(body).encode("utf-8")
    timeout = float(action.get("timeout", DEFAULT_TIMEOUT))
    retries = int(action.get("retries", DEFAULT_RETRIES))
    backoff = FIRST_BACKOFF
    problems: list[str] = []
    for attempt in range(1, retries + 2):
        left = deadline - clock()
        if left <= 0:
            problems.append("out of time (action_timeout)")
            break
        request = urllib.request.Request(
            url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", **extra},
        )
        try:
            with _OPENER.open(request, timeout=min(timeout, left)) as response:
                return DONE, (
                    f"POSTed the issue to {where} (HTTP {response.status}, attempt {attempt})"
                )
        except urllib.error.HTTPError as exc:
            problems.append(f"HTTP {exc.code}")
            if 300 <= exc.code < 400:
                return FAILED, (
                    f"{where} answered HTTP {exc.code} (a redirect, not followed: the POST "
                    f"would lose its body and the headers would go elsewhere); give the final "
                    f"URL"
                )
            if exc.code < 500 and exc.code not in RETRIED_STATUSES:
                return FAILED, (
                    f"{where} answered HTTP {exc.code} {exc.reason}: not retried (check the "
                    f"URL and the headers)"
                )
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            problems.append(f"{type(reason).__name__}: {reason}")
        if attempt <= retries:
            wait = min(backoff, max(deadline - clock(), 0))
            sleep(wait)
            backoff *= 2
    return FAILED, (
        f"could not POST the issue to {where} after {len(problems)} attempt(s): "
        f"{'; '.join(problems[-3:])}"
    )
