"""One evaluation from settings to verdict: resume, attach, follow, publish, conclude.

Every failure ends here as a status of Error with a sentence that says what was expected, what
was found and what to change; nothing escapes as a bare traceback. Each subsystem gets its own
settings group: the reader ``trial``, the loop ``trial`` and ``following``, the publisher
``outputs``, the metrics server ``metrics``, the checkpointer ``checkpoints``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from container import __version__
from container.actions import ActionOutcome, ActionRunner, boto3_client
from container.atomic import FileWriteError, remove_stale_temporaries
from container.checkpoint import (
    Checkpoint,
    Checkpointer,
    CheckpointError,
    fingerprint,
    load_checkpoint,
)
from container.config import MetricsSettings, Settings
from container.evaluation import EndReason, Evaluation
from container.names import ClassNamesError, check_names_fit, load_class_names
from container.progress import ProgressLog
from container.publishing import Publisher
from container.pushing import push_final_metrics
from container.server import MetricsBindError
from container.serving import MetricsEndpoint
from container.sharding import ShardState, part_selection, save_state, shard_info
from container.snapshot import Progress, Snapshot, SnapshotBox, take_snapshot
from container.status import (
    RunInfo,
    Status,
    StatusFileError,
    exit_code,
    too_few_labels_warning,
)
from container.stopping import StopRequest
from container.watch import StepWaiter
from evaluator import compiled
from evaluator.core import (
    Check,
    ClassImbalanceRule,
    LedgerLimitError,
    RuleParameters,
    StepLedger,
    StepResult,
    TensorSelector,
    WindowLimitError,
    name_list,
    quoted,
)
from evaluator.trial import ReaderProblems, TrialError, TrialReader, open_trial

log = logging.getLogger("classimbalance")


@dataclass
class Outcome:
    """The verdict and the document written for it."""

    status: Status
    document: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    shard_state: str | None = None
    """Where this shard's state was written (``emit_state``), once it was."""
    status_written: bool = True
    """Whether the status file holds ``document`` (false: it could not be written)."""

    @property
    def exit_code(self) -> int:
        """The process's exit code: the verdict's, with "never checked" and "stopped" told
        apart from "checked and fine" (``status.exit_code``); 0 for a shard whose state was
        written, since its verdict is the merge's to give (a Job's failed pod is retried)."""
        if self.shard_state is not None:
            return 0
        return exit_code(self.status, bool(self.document["checks_active"]))


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
    checks: Callable[[RuleParameters], Sequence[Check]] | None = None
    """The checks to evaluate instead of the seed rule's (an embedding's own check)."""
    aws_clients: Callable[[str], Any] | None = None
    """Service name -> a boto3 client, for the AWS actions (tests); None: boto3's own."""


def run(settings: Settings, runtime: Runtime | None = None) -> Outcome:
    """Evaluate the trial named in ``settings`` and write its terminal status."""
    runtime = runtime or Runtime()
    _choose_kernels(settings.trial.pure_python)
    stop = runtime.stop or StopRequest()
    checks = tuple(runtime.checks(settings.rule)) if runtime.checks else ()
    ledger = StepLedger() if settings.sharding.emit_state else None
    rule = ClassImbalanceRule(settings.rule, checks=checks, ledger=ledger)
    box = SnapshotBox(_rule_snapshot(rule, settings, Status.IN_PROGRESS))
    info = RunInfo(
        trial=settings.trial.base_trial,
        reader=settings.trial.reader,
        modes=settings.trial.modes,
        started_at=time.time(),
        actions=() if settings.sharding.emit_state else settings.managed.actions,
        warnings=(*runtime.warnings, *_shard_warnings(settings)),
        shard=shard_info(settings),
    )
    publisher = Publisher(settings.outputs, info, box, managed_root=runtime.managed_root)
    own_files = (settings.checkpoints.file, settings.sharding.emit_state)
    remove_stale_temporaries([*publisher.written_paths(), *(Path(p) for p in own_files if p)])
    page = publisher.live_page if settings.outputs.html_report else None
    endpoint = MetricsEndpoint(_shard_metrics(settings), box, page, runtime.metrics_port_ready)
    try:
        if endpoint.wanted_at_start:
            try:
                endpoint.start()
            except MetricsBindError as exc:
                return _fail(
                    publisher, info, _rule_snapshot(rule, settings, Status.ERROR), str(exc)
                )
        try:
            outcome = _evaluate(
                settings,
                runtime,
                stop=stop,
                rule=rule,
                info=info,
                publisher=publisher,
                endpoint=endpoint,
            )
        except StatusFileError as exc:  # the first status, before the loop (which ends on one)
            error = _rule_snapshot(rule, settings, Status.ERROR)
            outcome = _fail(publisher, info, error, str(exc))
        _log_ended(outcome, stop)
        if not settings.sharding.emit_state:  # a shard's figures are its part's: the merge pushes
            push_final_metrics(settings.metrics, box.get())
        if settings.following.linger_after_verdict and not stop.is_set():
            _linger(outcome, endpoint, stop)
        return outcome
    finally:
        endpoint.stop()


def _shard_metrics(settings: Settings) -> MetricsSettings:
    """A shard's metrics would show its part's verdict as the trial's (and fire the alerts):
    with ``metrics_enabled: auto`` a shard serves none; ``true`` still serves them."""
    metrics = settings.metrics
    if settings.sharding.emit_state and metrics.enabled is None:
        return replace(metrics, enabled=False)
    return metrics


def _shard_warnings(settings: Settings) -> tuple[str, ...]:
    if settings.sharding.emit_state and settings.managed.actions:
        return (
            "actions are not carried out by a shard (emit_state), whose verdict is its part's "
            "alone: classimbalance-rule merge carries them out on the trial's verdict",
        )
    return ()


def _linger(outcome: Outcome, endpoint: MetricsEndpoint, stop: StopRequest) -> None:
    """Serve the verdict until stopped (a native sidecar must not exit before training)."""
    try:
        endpoint.following()
    except MetricsBindError as exc:
        log.error("%s; not lingering: the verdict is in the status file", exc)
        return
    if not endpoint.serving:
        return  # metrics_enabled false: nothing to serve
    log.info(
        "verdict %s; serving metrics until stopped (linger_after_verdict)",
        outcome.status,
        extra={"event": "lingering", "status": str(outcome.status)},
    )
    stop.wait()


def _log_ended(outcome: Outcome, stop: StopRequest) -> None:
    """The ``ended`` event: why, the verdict, the figures and the findings, so a JSON log
    consumer has the whole result in one line (the text summary is not printed then)."""
    document = outcome.document
    reason = document.get("ended_by") or "error"
    log.info(
        "evaluation ended: %s%s: %s",
        reason,
        f" ({stop.reason})" if stop.reason else "",
        outcome.status,
        extra={
            "event": "ended",
            "reason": reason,
            "status": str(outcome.status),
            "issue_step": document["issue_step"],
            "figures": {
                "steps_evaluated": document["steps_evaluated"],
                "last_step": document["last_step"],
                "samples": document["samples"],
                "imbalance_ratio": document["imbalance_ratio"],
                "threshold_imbalance": document["parameters"]["threshold_imbalance"],
                "threshold_misprediction": document["parameters"]["threshold_misprediction"],
                "checks_active": document["checks_active"],
            },
            "findings": document["findings"],
            "current": document["current"],
            "error": document["error"],
            "warnings": document["warnings"],
        },
    )


def _rule_snapshot(
    rule: ClassImbalanceRule,
    settings: Settings,
    status: Status,
    progress: Progress | None = None,
    class_names: tuple[str, ...] | None = None,
) -> Snapshot:
    """A snapshot before there is a reader (starting, resuming, failing to open it)."""
    return take_snapshot(
        rule,
        status=str(status),
        trial=settings.trial.base_trial,
        ready=False,
        progress=progress,
        class_names=class_names,
    )


def _evaluate(
    settings: Settings,
    runtime: Runtime,
    *,
    stop: StopRequest,
    rule: ClassImbalanceRule,
    info: RunInfo,
    publisher: Publisher,
    endpoint: MetricsEndpoint,
) -> Outcome:
    identity = fingerprint(settings, rule.checks)
    try:
        checkpoint = _resume(settings, identity)
    except CheckpointError as exc:
        return _fail(publisher, info, _rule_snapshot(rule, settings, Status.ERROR), str(exc))
    if checkpoint is not None:
        rule = ClassImbalanceRule.from_state(settings.rule, checkpoint.rule_state, rule.checks)
        info = replace(info, resumed_from_step=checkpoint.delivered_through)
        publisher.update_run_info(info)
    try:
        names = load_class_names(settings.outputs)
        check_names_fit(names, rule.num_classes)
    except ClassNamesError as exc:
        return _fail(publisher, info, _rule_snapshot(rule, settings, Status.ERROR), str(exc))
    progress = Progress(steps_seen=checkpoint.steps_seen if checkpoint else 0)
    publisher.publish(
        _rule_snapshot(rule, settings, Status.IN_PROGRESS, progress, names), force=True
    )
    try:
        reader = (runtime.open_reader or _default_reader)(settings)
    except TrialError as exc:
        return _fail(publisher, info, _rule_snapshot(rule, settings, Status.ERROR), str(exc))
    checkpointer = Checkpointer(
        settings.checkpoints, identity, steps_evaluated=rule.steps_evaluated
    )
    managed = settings.managed
    runner = ActionRunner(
        () if settings.sharding.emit_state else managed.actions,
        dry_run=managed.actions_dry_run,
        timeout=managed.action_timeout,
        saved=[ActionOutcome.from_json(saved) for saved in checkpoint.actions]
        if checkpoint
        else (),
        clients=runtime.aws_clients or boto3_client,
    )
    hooks = _Hooks(publisher, checkpointer, runner, settings, names)
    evaluation = Evaluation(
        reader,
        rule,
        progress=ProgressLog(
            settings.following.progress_interval, redraw=settings.logs.format == "text"
        ),
        trial=settings.trial,
        following=settings.following,
        delivered_through=checkpoint.delivered_through if checkpoint else -1,
        steps_seen=progress.steps_seen,
        on_steps=hooks.steps_done,
        on_poll=hooks.poll_done,
        stop=stop,
        resumed_from=(
            (settings.checkpoints.file or "", checkpoint.trial_identity) if checkpoint else None
        ),
        class_names=names,
        actions=lambda: tuple(outcome.to_json() for outcome in runner.outcomes),
    )
    waiter = StepWaiter(reader.local_path)
    try:
        if settings.following.once and not reader.exists():
            missing = _missing_trial(info.trial, reader.problems())
            return _fail(publisher, info, evaluation.snapshot(Status.ERROR), missing)
        log.info(
            "following trial %s (reader: %s%s)",
            info.trial,
            info.reader,
            f", resuming after step {checkpoint.delivered_through}" if checkpoint else "",
            extra={"event": "attached", "trial": info.trial},
        )

        def wait(seconds: float, request: StopRequest) -> None:
            endpoint.following()  # metrics auto: served from the first wait for a step
            waiter.wait(seconds, request)

        end = evaluation.follow(stop=stop, wait=wait)
        hooks.act(evaluation)  # an issue found at the last step, or before a restart
        return _conclude(
            evaluation,
            settings,
            publisher=publisher,
            checkpointer=checkpointer,
            info=info,
            end=end,
            stop=stop,
        )
    except (
        TrialError,
        ClassNamesError,
        WindowLimitError,
        LedgerLimitError,
        MetricsBindError,
        Misconfigured,
        StatusFileError,
    ) as exc:
        return _fail(publisher, info, evaluation.snapshot(Status.ERROR), str(exc))
    except Exception as exc:  # the last line of defence: a status, never a bare traceback
        log.exception("internal error")
        return _fail(
            publisher,
            info,
            evaluation.snapshot(Status.ERROR),
            f"internal error {type(exc).__name__}: {exc}; please report it with the log above",
        )
    finally:
        waiter.close()
        reader.close()


@dataclass(frozen=True)
class _Hooks:
    """What the loop calls after each step and each poll: publish, and checkpoint when due."""

    publisher: Publisher
    checkpointer: Checkpointer
    actions: ActionRunner
    settings: Settings
    class_names: tuple[str, ...] | None = None

    def steps_done(self, evaluation: Evaluation, results: Sequence[StepResult]) -> None:
        check_names_fit(self.class_names, evaluation.rule.num_classes)
        error = _misconfigured(evaluation, self.settings)
        if error is not None:
            raise Misconfigured(error)
        self.publisher.steps_done(results, evaluation.snapshot)
        self.act(evaluation)
        self.checkpointer.maybe_save(evaluation.rule.steps_evaluated, evaluation.checkpoint)

    def poll_done(self, evaluation: Evaluation) -> None:
        self.publisher.poll_done(evaluation.snapshot)
        self.act(evaluation)
        self.checkpointer.maybe_save(evaluation.rule.steps_evaluated, evaluation.checkpoint)

    def act(self, evaluation: Evaluation) -> None:
        """Once an issue was found: carry out the pending actions, then checkpoint at once (so
        a restart does not repeat them) and show their outcomes."""
        if evaluation.rule.issue_step is None or not self.actions.pending:
            return

        def saved() -> None:
            self.checkpointer.save(evaluation.rule.steps_evaluated, evaluation.checkpoint)

        if self.actions.run_pending(lambda: self.publisher.document(evaluation.snapshot()), saved):
            self.publisher.publish(evaluation.snapshot(), force=True)


def _resume(settings: Settings, identity: dict[str, Any]) -> Checkpoint | None:
    """The checkpoint to resume from, if one exists."""
    path = settings.checkpoints.file
    if path is None:
        return None
    checkpoint = load_checkpoint(path, identity)
    if checkpoint is None:
        return None
    state = checkpoint.rule_state
    log.info(
        "resumed from checkpoint %s: %d steps and %d labels counted through step %d",
        path,
        int(state["steps_evaluated"]),
        sum(sum(counts["samples"]) for counts in state["counts_by_mode"].values()),
        checkpoint.delivered_through,
        extra={"event": "resumed"},
    )
    return checkpoint


_KERNELS_WARNED: list[bool] = []
"""Whether the missing compiled kernels were reported: once per process, not once per run."""


def _choose_kernels(pure_python: bool) -> None:
    """The compiled kernels unless ``pure_python``; their absence is said once."""
    if compiled.use_compiled(not pure_python) or pure_python or _KERNELS_WARNED:
        return
    _KERNELS_WARNED.append(True)
    log.warning(
        "%s: trial files are read and labels counted in pure Python (the same results, "
        "1.5-2x slower); reinstall with a C compiler (gcc) to build them",
        compiled.unavailable,
        extra={"event": "kernels_unavailable"},
    )


def _default_reader(settings: Settings) -> TrialReader:
    trial, following = settings.trial, settings.following
    return open_trial(
        trial.base_trial,
        reader=trial.reader,
        verify_payload_crc=trial.verify_payload_crc,
        s3_endpoint_url=trial.s3_endpoint_url,
        retry_seconds=following.read_retries * following.read_retry_delay,
        end_grace=trial.end_grace,
        selection=part_selection(settings),
    )


def _conclude(
    evaluation: Evaluation,
    settings: Settings,
    *,
    publisher: Publisher,
    checkpointer: Checkpointer,
    info: RunInfo,
    end: EndReason,
    stop: StopRequest,
) -> Outcome:
    rule = evaluation.rule
    warnings = list(info.warnings)
    if end is EndReason.IDLE_TIMEOUT:
        warnings.append(
            f"ended after {settings.following.idle_timeout:g} s without a new step and without "
            f"the end marker training_job_end.ts: the training job may have been killed"
        )
    pending = evaluation.reader.pending_steps
    if end is EndReason.ONCE and pending:
        warnings.append(
            f"{pending} steps were written by some workers but not complete when this one pass "
            f"ended (waiting for the other workers, or for end_grace after the end marker): "
            f"they were not evaluated; run again when training has ended, or without once"
        )
    incomplete = evaluation.reader.problems()
    if incomplete.incomplete_step_count:
        step, missing = incomplete.incomplete_steps[0]
        warnings.append(
            f"{incomplete.incomplete_step_count} steps were evaluated without all their workers "
            f"(the first: step {step}, without {', '.join(missing)}); their labels are not "
            f"counted: see incomplete_steps"
        )
    too_few = too_few_labels_warning(rule.samples, settings.rule.samples)
    if too_few is not None and not settings.sharding.emit_state:
        warnings.append(too_few)
    info = replace(info, ended_by=str(end), warnings=warnings)
    if rule.issue_step is not None:
        status = Status.ISSUES_FOUND
    elif end is EndReason.STOPPED:
        status = Status.STOPPED
    else:
        # A shard may hold no label (a worker that saved none): the merge decides on the rest.
        shard_without_labels = settings.sharding.emit_state and evaluation.steps_seen > 0
        error = None if shard_without_labels else _no_data_error(evaluation, settings, end)
        if error is not None:
            return _fail(publisher, info, evaluation.snapshot(Status.ERROR), error)
        status = Status.NO_ISSUES_FOUND
    # The checkpoint first, and only for a verdict: a run retried after its settings were
    # fixed must not find a checkpoint of the mistake.
    checkpointer.save(rule.steps_evaluated, evaluation.checkpoint)
    try:  # before the status: a status that says done has its state beside it
        shard_state = _emit_state(evaluation, settings, info, end)
    except OSError as exc:
        message = (
            str(exc)
            if isinstance(exc, FileWriteError)
            else (
                f"cannot write the shard state {settings.sharding.emit_state}: {exc}; set "
                f"emit_state to a writable path"
            )
        )
        return _fail(publisher, info, evaluation.snapshot(Status.ERROR), message)
    document = publisher.terminal(evaluation.snapshot(status, ready=False), info)
    return Outcome(status, document, warnings, shard_state)


def _emit_state(
    evaluation: Evaluation, settings: Settings, info: RunInfo, end: EndReason
) -> str | None:
    """Write this shard's state for the merge (``emit_state``), after its verdict; only a
    whole evaluation's: one stopped before its end has steps missing and writes none."""
    path = settings.sharding.emit_state
    if path is None or end is EndReason.STOPPED:
        return None
    identity = fingerprint(settings, evaluation.rule.checks)
    identity.pop("start_step", None)
    identity.pop("shard", None)
    save_state(
        path,
        ShardState(
            path=path,
            evaluation=identity,
            selection=part_selection(settings),
            rule_state=evaluation.rule.to_state(),
            trial_identity=evaluation.reader.identity(),
            reader=evaluation.reader.problems(),
            steps_seen=evaluation.steps_seen,
            ended_by=str(end),
            warnings=tuple(info.warnings),
            tensor_names=tuple(sorted(evaluation.tensor_names_seen)),
            version=__version__,
        ),
    )
    log.info(
        "shard state written to %s (%s): merge it with the other shards' states with "
        "classimbalance-rule merge",
        path,
        part_selection(settings).describe(),
        extra={"event": "state_written", "path": path},
    )
    return path


def _no_data_error(evaluation: Evaluation, settings: Settings, end: EndReason) -> str | None:
    """Why nothing was counted, as an actionable sentence; None when labels were counted."""
    rule = evaluation.rule
    trial = settings.trial.base_trial
    if rule.samples > 0:
        return None
    if end is EndReason.IDLE_TIMEOUT and not evaluation.reader.exists():
        return _missing_trial(trial, evaluation.reader.problems())
    if evaluation.steps_seen == 0:
        return _storage_failed(trial, evaluation.reader.problems()) or (
            f"No debugging data was saved by the training job: expected index files under "
            f"{trial}/index/ (written by an smdebug hook), but found none; check base_trial "
            f"and that the hook saves the labels and predictions collections"
        )
    names = sorted(evaluation.tensor_names_seen)
    # RE2, never Python's re: the names are the trial's, which anyone can write
    selector = TensorSelector(settings.rule.labels_regex, settings.rule.predictions_regex)
    for role in ("labels", "predictions"):
        regex = getattr(settings.rule, f"{role}_regex")
        looked = rule.skipped_batches.get(f"missing_{role}", 0) or evaluation.steps_without_tensors
        if looked and not any(selector.matches(role, n) for n in names):
            return (
                f"no tensor in the trial matches {role}_regex {quoted(regex)}; the tensors "
                f"saved are: {name_list(names, quote=False) or 'none'}; set {role}_regex to "
                f"match the {role} tensor"
            )
    if rule.steps_evaluated == 0:
        return (
            f"found {evaluation.steps_seen} complete steps, but none in the selected modes "
            f"and step range: change modes, start_step or end_step"
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


EARLY_STEPS = 10
"""Evaluated steps after which an evaluation that counted nothing, every batch rejected for one
and the same configuration reason, stops with the error rather than reading the whole trial."""
CONFIGURATION_REASONS = frozenset(
    {
        "missing_labels",
        "missing_predictions",
        "argmax_required",
        "unsupported_predictions_shape",
        "ambiguous_class_axis",
        "binary_predictions_for_multiclass_labels",
        "batch_size_mismatch",
    }
)
"""Reasons a batch is skipped that a setting causes (a regex, argmax, class_axis), not data."""


class Misconfigured(ValueError):
    """The first steps say the settings do not fit the trial; the message says what to set."""


def _misconfigured(evaluation: Evaluation, settings: Settings) -> str | None:
    """Why the evaluation should stop now: after ``EARLY_STEPS`` steps without a label counted,
    every batch skipped for one configuration reason; None while that is not so."""
    rule = evaluation.rule
    if rule.samples or rule.ignored or rule.skipped_rows or rule.steps_evaluated < EARLY_STEPS:
        return None
    reasons = set(rule.skipped_batches)
    if len(reasons) != 1 or not reasons <= CONFIGURATION_REASONS:
        return None
    error = _no_data_error(evaluation, settings, EndReason.ONCE)
    return (
        f"stopped after the first {rule.steps_evaluated} steps, in which every batch was "
        f"skipped for {next(iter(reasons))}: {error}"
    )


def _missing_trial(trial: str, problems: ReaderProblems) -> str:
    return _storage_failed(trial, problems) or (
        f"expected a trial at {trial} (a folder with index/ and events/ written by an smdebug "
        f"hook), but it does not exist: check --trial / base_trial"
    )


def _storage_failed(trial: str, problems: ReaderProblems) -> str | None:
    """Why nothing was found when the storage kept failing while the reader looked (the
    reader rides an outage out, so it ends here, at the idle timeout), else None."""
    failed = problems.notices.get("storage_unavailable", 0)  # evaluator.trial.problems'
    if not failed:
        return None
    return (
        f"expected steps of the trial {trial}, but its storage failed {failed} time(s) while "
        f"they were looked for, and none was found (the latest failure: "
        f"{problems.examples.get('storage_unavailable', '?')}): check that the storage answers "
        f"(s3_endpoint_url / AWS_ENDPOINT_URL, the network, a proxy, throttling), then run again"
    )


def _fail(publisher: Publisher, info: RunInfo, snapshot: Snapshot, error: str) -> Outcome:
    log.error("%s", error, extra={"event": "error"})
    document = publisher.terminal(snapshot, info, error)
    return Outcome(Status.ERROR, document, status_written=publisher.status_written)
