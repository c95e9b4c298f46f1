"""``classimbalance-rule merge STATE...``: the shards' states as one evaluation's verdict.

Each shard of a parallel evaluation (``emit_state``) wrote its state; this command checks that
the states belong together (one trial, the same parameters, modes and checks, every shard of
each step range once, ranges that do not overlap), merges them exactly
(``evaluator.core.merge_states``: totals added, the checks replayed step by step over the
shards' ledgers) and writes what one process evaluating the whole trial would have written: the
status file, the HTML report, the managed service's message, the actions on an issue, the
Pushgateway push, the summary and the exit code. Its settings are the outputs' and the actions'
(flags, environment, YAML, as for an evaluation); the rule's parameters are the states'.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from container.actions import ActionRunner
from container.config import ConfigError, Settings, load_settings
from container.logs import configure_logging
from container.names import ClassNamesError, check_names_fit, load_class_names
from container.publishing import Publisher
from container.pushing import push_final_metrics
from container.sharding import (
    ShardState,
    StateError,
    merged_problems,
    read_state,
)
from container.snapshot import Progress, Snapshot, SnapshotBox, take_snapshot
from container.status import EXIT_CODES, RunInfo, Status, exit_code, too_few_labels_warning
from container.summary import format_summary
from evaluator.core import ClassImbalanceRule, RuleParameters, ShardMergeError, merge_states

log = logging.getLogger("classimbalance.merge")

STATE_SUFFIX = ".state.json"
"""A folder given to the merge stands for every file in it whose name ends so."""
INCOMPLETE_STEPS_KEPT = 20
WAIT_POLL_SECONDS = 5.0
"""How often ``--wait-seconds`` looks for the shards' states again."""

USAGE = """usage: classimbalance-rule merge STATE... [SETTINGS]

Merge the states that shards of one evaluation wrote (emit_state) into the status file, report,
metrics push and exit code one process evaluating the whole trial would give. A STATE is a
state file, or a folder: every *.state.json in it. SETTINGS are the outputs' flags, such as
--status-file PATH or --out-dir DIR (the environment and --config work as for an evaluation);
the rule's parameters are the states'. --wait-seconds S waits up to S seconds for every shard's
state to be there (a merge Job started beside the shards' Job).

examples:
  classimbalance-rule merge shard-0.state.json shard-1.state.json --status-file merged.json
  classimbalance-rule merge /status/shards --out-dir /status --wait-seconds 86400"""


class MergeError(ValueError):
    """The states cannot be merged; the message says why and what to do."""


def main(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    args = list(argv)
    if not args or args[0] in {"-h", "--help"}:
        print(USAGE, file=sys.stdout if args else sys.stderr)
        return 0 if args else EXIT_CODES[Status.ERROR]
    paths = _leading(args)
    rest, wait = _wait_flag(args[len(paths) :])
    environ = os.environ if environ is None else environ
    try:  # the trial is the states'; until they are read, the first path stands for it
        loaded = load_settings([*rest, "--trial", paths[0] if paths else "merge"], environ)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CODES[Status.ERROR]
    settings = loaded.settings
    configure_logging(settings.logs.format, settings.logs.level)
    try:
        states = wait_for_states(paths, wait) if wait else [read_state(p) for p in expand(paths)]
        settings = settings.changed(base_trial=str(states[0].evaluation.get("trial", "")))
        given = {n for n, source in loaded.sources.items() if source.kind != "default"}
        status, document = merge(states, settings, warnings=loaded.warnings, set_parameters=given)
    except (StateError, MergeError) as error:
        status, document = _failed(settings, _info(settings, 0, loaded.warnings), str(error))
    except OSError as error:
        print(f"error: cannot write the merged outputs: {error}", file=sys.stderr)
        return EXIT_CODES[Status.ERROR]
    if settings.logs.format == "text":
        outputs = settings.outputs
        sys.stdout.write(
            format_summary(
                document,
                status_file=outputs.status_file,
                warnings=document["warnings"],
                report_file=outputs.report_path if outputs.html_report else None,
            )
        )
    return exit_code(status, bool(document["checks_active"]))


def _wait_flag(args: Sequence[str]) -> tuple[list[str], float]:
    """The arguments without ``--wait-seconds S``, and S (0: do not wait)."""
    rest, wait, index = [], 0.0, 0
    while index < len(args):
        if args[index] == "--wait-seconds" and index + 1 < len(args):
            try:
                wait = max(0.0, float(args[index + 1]))
            except ValueError:
                raise SystemExit(
                    f"error: --wait-seconds takes a number of seconds, such as 3600, but got "
                    f"{args[index + 1]!r}"
                ) from None
            index += 2
            continue
        rest.append(args[index])
        index += 1
    return rest, wait


def wait_for_states(
    paths: Sequence[str], seconds: float, *, poll: float = WAIT_POLL_SECONDS
) -> list[ShardState]:
    """The states once every shard's is there (a merge Job started beside the shards' Job),
    waiting up to ``seconds``; then whatever is there, for the merge to say what is missing."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            states = [read_state(path) for path in expand(paths)]
            _check_coverage(states)
            return states
        except (StateError, MergeError) as error:
            if time.monotonic() >= deadline:
                raise
            log.info(
                "waiting for the shards' states: %s",
                error,
                extra={"event": "waiting_for_states"},
            )
            time.sleep(poll)


def _leading(args: Sequence[str]) -> list[str]:
    """The state paths: the arguments before the first flag."""
    leading = []
    for arg in args:
        if arg.startswith("-"):
            break
        leading.append(arg)
    return leading


def expand(paths: Sequence[str]) -> list[str]:
    """State files, a folder standing for its ``*.state.json``; MergeError when none."""
    if not paths:
        raise MergeError("expected at least one shard state (a file or a folder), but got none")
    found: list[str] = []
    for path in paths:
        if Path(path).is_dir():
            inside = sorted(str(p) for p in Path(path).glob(f"*{STATE_SUFFIX}") if p.is_file())
            if not inside:
                raise MergeError(
                    f"expected shard states (*{STATE_SUFFIX}) in the folder {path}, but it has "
                    f"none: have the shards finished, and is emit_state set to a file there?"
                )
            found.extend(inside)
        else:
            found.append(path)
    return found


def merge(
    states: Sequence[ShardState],
    settings: Settings,
    *,
    warnings: Sequence[str] = (),
    set_parameters: Collection[str] = (),
) -> tuple[Status, dict[str, Any]]:
    """Merge and write every output; the verdict and its status document. A merge that cannot
    be made is written as an Error status, with the reason."""
    started = time.time()
    info = _info(settings, len(states), warnings)
    try:
        params, gaps = check_states(states, settings, set_parameters)
        names = load_class_names(settings.outputs)
        shared_steps = any(
            s.selection.by == "workers" for s in states if s.selection.shard_count > 1
        )
        rule = merge_states(params, [s.rule_state for s in states], shared_steps=shared_steps)
        check_names_fit(names, rule.num_classes)
    except (MergeError, ShardMergeError, ClassNamesError, ValueError) as error:
        return _failed(settings, info, str(error))
    ended = {s.ended_by for s in states}
    info = RunInfo(
        trial=info.trial,
        reader=info.reader,
        modes=tuple(states[0].evaluation.get("modes") or ()) or None,
        started_at=started,
        ended_by=ended.pop() if len(ended) == 1 else "merge",
        warnings=_warnings(states, [*warnings, *gaps], rule, params),
        actions=settings.managed.actions,
    )
    if rule.issue_step is not None:
        status = Status.ISSUES_FOUND
    elif rule.samples == 0:
        return _failed(
            settings,
            info,
            f"no label was counted in any of the {len(states)} shards: see each shard's status "
            f"file for why (a tensor name, modes, start_step or end_step)",
        )
    else:
        status = Status.NO_ISSUES_FOUND
    reader = merged_problems([s.reader for s in states], INCOMPLETE_STEPS_KEPT)
    progress = Progress(max(s.steps_seen for s in states), time.time(), True)

    def snapshot_with(actions: tuple[dict[str, Any], ...] = ()) -> Snapshot:
        return take_snapshot(
            rule,
            status=str(status),
            trial=info.trial,
            ready=False,
            reader=reader,
            progress=progress,
            class_names=names,
            actions=actions,
        )

    snapshot = snapshot_with()
    publisher = Publisher(settings.outputs, info, SnapshotBox(snapshot))
    managed = settings.managed
    runner = ActionRunner(
        managed.actions, dry_run=managed.actions_dry_run, timeout=managed.action_timeout
    )
    if status is Status.ISSUES_FOUND and runner.run_pending(lambda: publisher.document(snapshot)):
        snapshot = snapshot_with(tuple(outcome.to_json() for outcome in runner.outcomes))
    document = publisher.terminal(snapshot, info)
    push_final_metrics(settings.metrics, snapshot)
    log.info(
        "merged %d shard states: %s%s",
        len(states),
        status,
        f" (issue at step {rule.issue_step})" if rule.issue_step is not None else "",
        extra={"event": "merged", "status": str(status), "issue_step": rule.issue_step},
    )
    return status, document


def check_states(
    states: Sequence[ShardState], settings: Settings, set_parameters: Collection[str] = ()
) -> tuple[RuleParameters, list[str]]:
    """The parameters the states were evaluated with, once it is sure they belong together,
    and warnings (gaps between step ranges); MergeError otherwise, also when the merge's own
    settings set (``set_parameters``: given anywhere but the defaults) a parameter otherwise."""
    first = states[0]
    for state in states[1:]:
        if state.evaluation != first.evaluation:
            raise MergeError(
                f"expected states of one evaluation, but {state.path} was evaluated with other "
                f"settings than {first.path} ({_difference(first.evaluation, state.evaluation)}): "
                f"merge states of the same trial and parameters only"
            )
        if (
            state.trial_identity is not None
            and first.trial_identity is not None
            and state.trial_identity != first.trial_identity
        ):
            raise MergeError(
                f"expected states of one trial, but {state.path} and {first.path} read different "
                f"content at {first.evaluation.get('trial')} (it was written again between the "
                f"shards?): evaluate every shard of the same trial"
            )
    if "checks" in first.evaluation:
        raise MergeError(
            f"the states were evaluated with the checks {first.evaluation['checks']}, which an "
            f"embedding added: merge them with evaluator.core.merge_states and those checks"
        )
    gaps = _check_coverage(states)
    known = {f.name for f in fields(RuleParameters)}
    saved = first.evaluation.get("rule", {})
    params = RuleParameters(**{k: v for k, v in saved.items() if k in known})
    given = asdict(settings.rule)
    differing = {
        name: given[name]
        for name in sorted(set_parameters)
        if name in known and given[name] != getattr(params, name)
    }
    if differing:
        said = "; ".join(
            f"{name}: {getattr(params, name)!r} against {value!r}"
            for name, value in differing.items()
        )
        raise MergeError(
            f"the merge's settings set rule parameters other than the states' ({said}, the "
            f"states' first): the states were counted with theirs; unset them for the merge"
        )
    return params, gaps


def _check_coverage(states: Sequence[ShardState]) -> list[str]:
    """Every shard of each step range once, and ranges that do not overlap; a warning for
    each gap between ranges."""
    gaps: list[str] = []
    by_range: dict[tuple[int, float], list[ShardState]] = {}
    for state in states:
        selection = state.selection
        span = (
            0 if selection.start_step is None else selection.start_step,
            float("inf") if selection.end_step is None else selection.end_step,
        )
        by_range.setdefault(span, []).append(state)
    for (start, end), group in sorted(by_range.items()):
        layouts = {
            (s.selection.shard_count, s.selection.by, s.selection.block_steps) for s in group
        }
        if len(layouts) > 1:
            raise MergeError(
                f"expected the shards of steps {_span(start, end)} to be split alike, but they "
                f"were split as {sorted(layouts)} (shard_count, shard_by, shard_steps): evaluate "
                f"every shard with the same sharding settings"
            )
        count = group[0].selection.shard_count
        indices = sorted(s.selection.shard_index for s in group)
        missing = sorted(set(range(count)) - set(indices))
        twice = sorted({i for i in indices if indices.count(i) > 1})
        if missing or twice:
            said = []
            if missing:
                said.append(f"shard {', '.join(map(str, missing))} missing")
            if twice:
                said.append(f"shard {', '.join(map(str, twice))} given twice")
            raise MergeError(
                f"expected every one of the {count} shards of steps {_span(start, end)} once, "
                f"but {' and '.join(said)}: give each shard's state once (a missing state: run "
                f"that shard again)"
            )
    spans = sorted(by_range)
    for (start, end), (next_start, next_end) in itertools.pairwise(spans):
        if next_start < end:
            raise MergeError(
                f"expected step ranges that do not overlap, but {_span(start, end)} and "
                f"{_span(next_start, next_end)} do: their common steps would be counted twice"
            )
        if next_start > end:
            gaps.append(
                f"steps {_span(end, next_start)} are in no shard's range: the merge is the "
                f"evaluation of the ranges given, without them"
            )
    return gaps


def _info(settings: Settings, states: int, warnings: Sequence[str]) -> RunInfo:
    return RunInfo(
        trial=settings.trial.base_trial,
        reader=f"merge of {states} shard states",
        modes=settings.trial.modes,
        started_at=time.time(),
        warnings=tuple(warnings),
    )


def _span(start: float, end: float) -> str:
    return f"[{start:g}, {end:g})" if end != float("inf") else f"[{start:g}, end]"


def _warnings(
    states: Sequence[ShardState],
    warnings: Sequence[str],
    rule: ClassImbalanceRule,
    params: RuleParameters,
) -> tuple[str, ...]:
    found = list(dict.fromkeys([*warnings, *(w for s in states for w in s.warnings)]))
    too_few = too_few_labels_warning(rule.samples, params.samples)
    if too_few is not None:
        found.append(too_few)
    return tuple(found)


def _failed(settings: Settings, info: RunInfo, error: str) -> tuple[Status, dict[str, Any]]:
    log.error("%s", error, extra={"event": "error"})
    rule = ClassImbalanceRule(RuleParameters())
    snapshot = take_snapshot(rule, status=str(Status.ERROR), trial=info.trial, ready=False)
    publisher = Publisher(settings.outputs, info, SnapshotBox(snapshot))
    return Status.ERROR, publisher.terminal(snapshot, info, error)


def _difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    parts = []
    for key in sorted({*saved, *current}):
        if saved.get(key) != current.get(key):
            parts.append(f"{key}: {saved.get(key)!r} against {current.get(key)!r}")
    return "; ".join(parts)
