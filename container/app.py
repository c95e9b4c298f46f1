"""One evaluation from settings to verdict: open the trial, run the loop, write the status.

Every failure ends here as a status of Error with a sentence that says what was expected, what
was found and what to change; nothing escapes as a bare traceback.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from container.evaluation import EndReason, Evaluation, FollowOptions
from container.settings import Settings
from container.status import RunInfo, Status, build_status, write_status
from evaluator.core import ClassImbalanceRule
from evaluator.trial.interface import TrialError, TrialReader
from evaluator.trial.open import open_trial

log = logging.getLogger("classimbalance")


@dataclass
class Outcome:
    """The verdict and the document written for it."""

    status: Status
    document: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def run(
    settings: Settings,
    *,
    stop: threading.Event | None = None,
    open_reader: Callable[[Settings], TrialReader] | None = None,
) -> Outcome:
    """Evaluate the trial named in ``settings`` and write its terminal status."""
    rule = ClassImbalanceRule(settings.rule)
    started = time.time()
    run_info = RunInfo(
        trial=settings.base_trial, reader=settings.reader, modes=settings.modes, started_at=started
    )

    def publish(status: Status, info: RunInfo, error: str | None = None) -> dict[str, Any]:
        document = build_status(rule, info, status, error=error)
        write_status(settings.status_file, document)
        return document

    publish(Status.IN_PROGRESS, run_info)
    try:
        reader = (open_reader or _default_reader)(settings)
    except TrialError as exc:
        return _fail(publish, run_info, str(exc))
    try:
        evaluation = Evaluation(reader, rule, settings.modes)
        if settings.once and not reader.exists():
            return _fail(publish, run_info, _missing_trial(settings.base_trial))
        log.info("attached to trial %s (reader: %s)", settings.base_trial, settings.reader)
        end = evaluation.follow(
            FollowOptions(
                once=settings.once,
                poll_interval=settings.poll_interval,
                idle_timeout=settings.idle_timeout,
                stop_on_first_issue=settings.stop_on_first_issue,
            ),
            stop=stop,
            on_progress=lambda: publish(Status.IN_PROGRESS, run_info),
        )
        return _conclude(evaluation, settings, run_info, end, publish)
    except TrialError as exc:
        return _fail(publish, run_info, str(exc))
    except Exception as exc:  # the last line of defence: a status, never a bare traceback
        log.exception("internal error")
        return _fail(
            publish,
            run_info,
            f"internal error {type(exc).__name__}: {exc}; please report it with the log above",
        )
    finally:
        reader.close()


def _default_reader(settings: Settings) -> TrialReader:
    return open_trial(
        settings.base_trial, reader=settings.reader, verify_payload_crc=settings.verify_payload_crc
    )


def _conclude(
    evaluation: Evaluation,
    settings: Settings,
    run_info: RunInfo,
    end: EndReason,
    publish: Callable[[Status, RunInfo, str | None], dict[str, Any]],
) -> Outcome:
    rule = evaluation.rule
    warnings: list[str] = []
    if end is EndReason.IDLE_TIMEOUT:
        warnings.append(
            f"ended after {settings.idle_timeout:g} s without a new step and without the end "
            f"marker training_job_end.ts: the training job may have been killed"
        )
    if 0 < rule.samples < settings.rule.samples:
        warnings.append(
            f"only {rule.samples} labels were counted, fewer than samples="
            f"{settings.rule.samples}: the checks never ran; lower samples to check smaller "
            f"trials"
        )
    info = RunInfo(
        trial=run_info.trial,
        reader=run_info.reader,
        modes=run_info.modes,
        started_at=run_info.started_at,
        ended_by=str(end),
        warnings=warnings,
    )
    if rule.issue_step is not None:
        status = Status.ISSUES_FOUND
    elif end is EndReason.STOPPED:
        status = Status.STOPPED
    else:
        error = _no_data_error(evaluation, settings, end)
        if error is not None:
            return _fail(publish, info, error)
        status = Status.NO_ISSUES_FOUND
    return Outcome(status, publish(status, info, None), warnings)


def _no_data_error(evaluation: Evaluation, settings: Settings, end: EndReason) -> str | None:
    """Why nothing was counted, as an actionable sentence; None when labels were counted."""
    rule = evaluation.rule
    trial = settings.base_trial
    if rule.samples > 0:
        return None
    if end is EndReason.IDLE_TIMEOUT and not evaluation.reader.exists():
        return _missing_trial(trial)
    if evaluation.steps_seen == 0:
        return (
            f"No debugging data was saved by the training job: expected index files under "
            f"{trial}/index/ (written by an smdebug hook), but found none; check base_trial "
            f"and that the hook saves the labels and predictions collections"
        )
    if rule.steps_evaluated == 0:
        return (
            f"found {evaluation.steps_seen} complete steps, but none in the selected modes "
            f"{', '.join(settings.modes or ())}: change --mode or remove it to use all modes"
        )
    names = sorted(evaluation.tensor_names_seen)
    for role in ("labels", "predictions"):
        regex = getattr(settings.rule, f"{role}_regex")
        if rule.skipped_batches.get(f"missing_{role}", 0) and not any(
            re.search(regex, n) for n in names
        ):
            return (
                f"no tensor in the trial matches {role}_regex {regex!r}; the tensors saved "
                f"are: {', '.join(names) or 'none'}; set {role}_regex to match the "
                f"{role} tensor"
            )
    if rule.skipped_batches:
        reason, _ = rule.skipped_batches.most_common(1)[0]
        example = rule.problem_examples.get(reason, reason)
        return (
            f"no label could be counted: {sum(rule.skipped_batches.values())} batches were "
            f"skipped, mostly for {reason}: {example}"
        )
    return (
        f"no label could be counted over {rule.steps_evaluated} steps: every row was "
        f"skipped ({dict(rule.skipped_rows)}) or ignored ({rule.ignored})"
    )


def _missing_trial(trial: str) -> str:
    return (
        f"expected a trial at {trial} (a folder with index/ and events/ written by an smdebug "
        f"hook), but it does not exist: check --trial / base_trial"
    )


def _fail(
    publish: Callable[[Status, RunInfo, str | None], dict[str, Any]], info: RunInfo, error: str
) -> Outcome:
    log.error("%s", error)
    return Outcome(Status.ERROR, publish(Status.ERROR, info, error))
