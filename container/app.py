"""One evaluation from settings to verdict: resume, attach, follow, publish, conclude.

Every failure ends here as a status of Error with a sentence that says what was expected, what
was found and what to change; nothing escapes as a bare traceback.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from container.checkpoint import CheckpointError, load_checkpoint
from container.evaluation import EndReason, Evaluation, FollowOptions
from container.publishing import Publisher
from container.server import MetricsServer
from container.settings import Settings
from container.snapshot import SnapshotBox, take_snapshot
from container.status import RunInfo, Status
from container.stopping import StopRequest
from container.watch import StepWaiter
from evaluator.core import ClassImbalanceRule
from evaluator.trial import NO_PROBLEMS, ReaderProblems, TrialError, TrialReader, open_trial

log = logging.getLogger("classimbalance")


@dataclass
class Outcome:
    """The verdict and the document written for it."""

    status: Status
    document: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass
class Runtime:
    """What ``run`` may be given instead of the real thing (tests, embedding)."""

    stop: StopRequest | None = None
    open_reader: Callable[[Settings], TrialReader] | None = None
    managed_root: str = "/opt/ml"
    metrics_port_ready: Callable[[int], object] | None = None
    """Called with the bound metrics port (useful with port 0)."""
    warnings: Sequence[str] = ()
    """Warnings found while loading the settings, carried into the status."""


def run(settings: Settings, runtime: Runtime | None = None) -> Outcome:
    """Evaluate the trial named in ``settings`` and write its terminal status."""
    runtime = runtime or Runtime()
    stop = runtime.stop or StopRequest()
    rule = ClassImbalanceRule(settings.rule)
    run_info = RunInfo(
        trial=settings.base_trial,
        reader=settings.reader,
        modes=settings.modes,
        started_at=time.time(),
        actions=settings.actions,
        warnings=tuple(runtime.warnings),
    )
    evaluation = Evaluation(
        reader=_NoReader(settings.base_trial),
        rule=rule,
        modes=settings.modes,
        start_step=settings.start_step,
        end_step=settings.end_step,
        read_retries=settings.read_retries,
        read_retry_delay=settings.read_retry_delay,
        stop=stop,
    )
    box = SnapshotBox(
        take_snapshot(rule, status=str(Status.IN_PROGRESS), trial=settings.base_trial, ready=False)
    )
    publisher = Publisher(
        settings,
        evaluation,
        run_info,
        box,
        reader_problems=lambda: _reader_problems(evaluation.reader),
        reader_examples=lambda: dict(evaluation.reader.problems().examples),
        managed_root=runtime.managed_root,
    )
    with _metrics_server(settings, box, runtime) as metrics_error:
        if metrics_error is not None:
            return _fail(publisher, run_info, metrics_error)
        outcome = _evaluate(settings, runtime, stop, evaluation, publisher)
        if settings.linger_after_verdict and settings.metrics_enabled and not stop.is_set():
            log.info(
                "verdict %s; serving metrics until stopped (linger_after_verdict)",
                outcome.status,
                extra={"event": "lingering", "status": str(outcome.status)},
            )
            stop.wait()
        return outcome


def _evaluate(
    settings: Settings,
    runtime: Runtime,
    stop: StopRequest,
    evaluation: Evaluation,
    publisher: Publisher,
) -> Outcome:
    run_info = publisher.run_info
    try:
        resumed = _resume(settings, evaluation)
    except CheckpointError as exc:
        return _fail(publisher, run_info, str(exc))
    if resumed is not None:
        run_info = replace(run_info, resumed_from_step=resumed)
        publisher.run_info = run_info
    publisher.in_progress(force=True)
    try:
        evaluation.reader = (runtime.open_reader or _default_reader)(settings)
    except TrialError as exc:
        return _fail(publisher, run_info, str(exc))
    waiter = StepWaiter(evaluation.reader.local_path)
    try:
        if settings.once and not evaluation.reader.exists():
            return _fail(publisher, run_info, _missing_trial(settings.base_trial))
        log.info(
            "attached to trial %s (reader: %s%s)",
            settings.base_trial,
            settings.reader,
            f", resuming after step {resumed}" if resumed is not None else "",
            extra={"event": "attached", "trial": settings.base_trial},
        )
        publisher.ready = True
        evaluation.on_step = publisher.step_done
        end = evaluation.follow(
            FollowOptions(
                once=settings.once,
                poll_interval=settings.poll_interval,
                max_poll_interval=settings.max_poll_interval,
                idle_timeout=settings.idle_timeout,
                stop_on_first_issue=settings.stop_on_first_issue,
            ),
            stop=stop,
            wait=waiter.wait,
            on_poll=publisher.poll_done,
        )
        return _conclude(evaluation, settings, publisher, end, stop)
    except TrialError as exc:
        return _fail(publisher, publisher.run_info, str(exc))
    except Exception as exc:  # the last line of defence: a status, never a bare traceback
        log.exception("internal error")
        return _fail(
            publisher,
            publisher.run_info,
            f"internal error {type(exc).__name__}: {exc}; please report it with the log above",
        )
    finally:
        waiter.close()
        evaluation.reader.close()


def _resume(settings: Settings, evaluation: Evaluation) -> int | None:
    """Restore the rule and position from the checkpoint, if one exists."""
    if settings.checkpoint_file is None:
        return None
    checkpoint = load_checkpoint(settings.checkpoint_file, settings)
    if checkpoint is None:
        return None
    evaluation.rule = ClassImbalanceRule.from_state(settings.rule, checkpoint.rule_state)
    evaluation.delivered_through = checkpoint.delivered_through
    evaluation.steps_seen = checkpoint.steps_seen
    log.info(
        "resumed from checkpoint %s: %d steps and %d labels counted through step %d",
        settings.checkpoint_file,
        evaluation.rule.steps_evaluated,
        evaluation.rule.samples,
        checkpoint.delivered_through,
        extra={"event": "resumed"},
    )
    return checkpoint.delivered_through


@contextlib.contextmanager
def _metrics_server(settings: Settings, box: SnapshotBox, runtime: Runtime) -> Iterator[str | None]:
    """Serve metrics and health while the block runs; yield an error sentence if it cannot."""
    if not settings.metrics_enabled:
        yield None
        return
    server = MetricsServer(
        box, settings.metrics_address, settings.metrics_port, settings.max_class_series
    )
    try:
        server.start()
    except OSError as exc:
        yield str(exc)
        return
    log.info(
        "serving metrics on http://%s:%d/metrics",
        settings.metrics_address,
        server.port,
        extra={"event": "metrics_listening", "port": server.port},
    )
    if runtime.metrics_port_ready is not None:
        runtime.metrics_port_ready(server.port)
    try:
        yield None
    finally:
        server.stop()


def _default_reader(settings: Settings) -> TrialReader:
    return open_trial(
        settings.base_trial,
        reader=settings.reader,
        verify_payload_crc=settings.verify_payload_crc,
        s3_endpoint_url=settings.s3_endpoint_url,
        retry_seconds=settings.read_retries * settings.read_retry_delay,
    )


def _reader_problems(reader: TrialReader) -> dict[str, int]:
    return dict(reader.problems().skipped_files)


def _conclude(
    evaluation: Evaluation,
    settings: Settings,
    publisher: Publisher,
    end: EndReason,
    stop: StopRequest,
) -> Outcome:
    rule = evaluation.rule
    warnings = list(publisher.run_info.warnings)
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
    info = replace(publisher.run_info, ended_by=str(end), warnings=warnings)
    log.info(
        "evaluation ended: %s%s",
        end,
        f" ({stop.reason})" if stop.reason else "",
        extra={"event": "ended", "reason": str(end)},
    )
    if rule.issue_step is not None:
        status = Status.ISSUES_FOUND
    elif end is EndReason.STOPPED:
        status = Status.STOPPED
    else:
        error = _no_data_error(evaluation, settings, end)
        if error is not None:
            return _fail(publisher, info, error)
        status = Status.NO_ISSUES_FOUND
    return Outcome(status, publisher.terminal(status, info), warnings)


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
            f"and step range: change modes, start_step or end_step"
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


def _fail(publisher: Publisher, info: RunInfo, error: str) -> Outcome:
    log.error("%s", error, extra={"event": "error"})
    return Outcome(Status.ERROR, publisher.terminal(Status.ERROR, info, error))


class _NoReader:
    """Stands in until the real reader is opened, so every path can publish a status."""

    def __init__(self, location: str) -> None:
        self.location = location

    local_path = None

    def exists(self) -> bool:
        return False

    def problems(self) -> ReaderProblems:
        return NO_PROBLEMS

    def poll(self) -> list[Any]:
        return []

    @property
    def backlog(self) -> bool:
        return False

    def training_ended(self) -> bool:
        return False

    def read(self, ref: Any, wanted: Any) -> list[Any]:
        return []

    def close(self) -> None:
        return None
