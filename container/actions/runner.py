"""Carry out the configured actions once, when the issue is found, each within a time budget.

The runner keeps one ``ActionOutcome`` per configured action. ``run_pending`` is called after
each evaluated step and each look at the trial once an issue was found (and so also right after
a resumed evaluation that had found it); it runs every action still ``pending``, one after the
other, each in a daemon thread joined for at most ``action_timeout`` seconds, so a hung
endpoint can never hang the evaluation or hold back the terminal status longer than that. An
action's own failure (an exception, a refusal, a timeout) is its outcome, never the
evaluation's. Outcomes saved in a checkpoint are not run again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from container.actions.aws import ClientFactory, boto3_client, notify, stop_training
from container.actions.outcomes import FAILED, PENDING, WOULD_RUN, ActionOutcome
from container.actions.stop_file import write_stop_file

log = logging.getLogger("classimbalance.actions")


class ActionRunner:
    """The actions of one evaluation and what became of them."""

    def __init__(
        self,
        actions: Sequence[Mapping[str, Any]],
        *,
        dry_run: bool = False,
        timeout: float = 30.0,
        saved: Sequence[ActionOutcome] = (),
        clients: ClientFactory = boto3_client,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._dry_run = dry_run
        self._timeout = timeout
        self._clients = clients
        self._environ = environ
        unused = list(saved)
        self._outcomes: list[ActionOutcome] = []
        for action in actions:
            match = next((o for o in unused if dict(o.action) == dict(action)), None)
            if match is not None:
                unused.remove(match)
                if match.outcome == WOULD_RUN and not dry_run:  # a dry run did nothing
                    match = ActionOutcome(dict(action), attempts=match.attempts)
            self._outcomes.append(match or ActionOutcome(dict(action)))

    @property
    def outcomes(self) -> tuple[ActionOutcome, ...]:
        return tuple(self._outcomes)

    @property
    def pending(self) -> bool:
        return any(outcome.outcome == PENDING for outcome in self._outcomes)

    def run_pending(
        self,
        document: Callable[[], Mapping[str, Any]],
        after_each: Callable[[], object] = lambda: None,
    ) -> bool:
        """Run every pending action on the issue ``document`` describes (built only if one
        runs), calling ``after_each`` once each has an outcome (the caller saves a checkpoint
        there, so that a restart repeats none that finished); True when any ran."""
        if not self.pending:
            return False
        issue = document()
        for index, outcome in enumerate(self._outcomes):
            if outcome.outcome == PENDING:
                self._outcomes[index] = self._run(outcome, issue)
                after_each()
        return True

    def _run(self, outcome: ActionOutcome, document: Mapping[str, Any]) -> ActionOutcome:
        started = time.monotonic()
        deadline = started + self._timeout
        result: list[tuple[str, str]] = []

        def target() -> None:
            try:
                result.append(self._carry_out(outcome.action, document, deadline))
            except Exception as exc:  # an action's failure is its outcome, never the loop's
                result.append((FAILED, f"{type(exc).__name__}: {exc}"))

        worker = threading.Thread(target=target, name=f"action-{outcome.name}", daemon=True)
        worker.start()
        worker.join(self._timeout)
        if result:
            state, detail = result[0]
        else:
            state, detail = (
                FAILED,
                (
                    f"did not finish within action_timeout {self._timeout:g} s (left running "
                    f"in the background; its result is ignored)"
                ),
            )
        done = replace(
            outcome,
            outcome=state,
            detail=detail,
            at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            attempts=outcome.attempts + 1,
        )
        level = logging.ERROR if state == FAILED else logging.WARNING
        log.log(
            level,
            "action %s %s: %s",
            outcome.name,
            state,
            detail,
            extra={"event": "action", "action": outcome.name, "outcome": state},
        )
        return done

    def _carry_out(
        self, action: Mapping[str, Any], document: Mapping[str, Any], deadline: float
    ) -> tuple[str, str]:
        name, dry = str(action["name"]), self._dry_run
        if name == "stoptraining":
            return stop_training(action, self._clients, dry_run=dry)
        if name in ("email", "sms"):
            return notify(action, document, self._clients, dry_run=dry)
        if name == "webhook":
            # Lazy: http.client, urllib.request and email take ~30 ms to import, and a run
            # that posts no webhook (most runs, and every one without an issue) never uses them.
            from container.actions.webhook import post  # noqa: PLC0415

            return post(action, document, dry_run=dry, deadline=deadline, environ=self._environ)
        if name == "stop_file":
            return write_stop_file(action, document, dry_run=dry)
        return FAILED, f"unknown action {name!r}"
