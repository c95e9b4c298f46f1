"""The runtime's settings: typed groups, each setting declared once, with its default and docs.

As kopf groups its ``OperatorSettings``, the settings come in groups, one per subsystem, and each
subsystem takes only its own: the reader its ``trial``, the loop ``following``, the publisher
``outputs``, the metrics server ``metrics``, the checkpointer ``checkpoints``, logging ``logs``
and the managed-service glue ``managed``. The rule's own parameters are the core's
``RuleParameters`` (the seed's names), under ``rule``.

Each field is the one declaration of its setting: its type, its default, its docstring (shown by
``--help``, written in ``config/classimbalance.yaml`` and the README), and in its metadata how its
values are parsed, what it accepts in words, its flat name (the YAML key and the environment
variable; flags are its kebab case) and its flag names. Everything else (the loader, the flags,
``--print-config``) is derived from these declarations, so a new setting is one field here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, get_args

from container.config import values
from container.config.values import Mode
from evaluator.core import RuleParameters, accepted
from evaluator.trial import READERS, SHARD_BY, Reader, ShardBy

DEFAULT_STATUS_FILE = "classimbalance-status.json"
DEFAULT_METRICS_PORT = 9410

LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

_SECONDS = "a number of seconds > 0, such as 1 or 0.5"
_BOOLEAN = 'a boolean: true/false, "True"/"False", 1/0, yes/no'
SPEC = "setting"
"""Field metadata key of a ``SettingSpec``."""


@dataclass(frozen=True)
class SettingSpec:
    """How one setting is given: parsed from what, accepted as what, named how."""

    parse: Callable[[Any], Any]
    """Typed value or string form -> the setting's value; ValueError/TypeError if invalid."""
    accepted: str
    """What is accepted, in words, for messages."""
    name: str | None = None
    """The flat name (YAML key, environment variable, flag); None: the field's name."""
    flags: tuple[str, ...] = ()
    """The command-line flags; empty: ``--`` and the flat name in kebab case."""
    metavar: str = "VALUE"
    switch: bool = False
    """A flag that works alone (``--once``) and also takes a value (``--once false``)."""
    aliases: tuple[str, ...] = ()
    """Other keys and variables of the same setting (the managed service's names)."""
    item_flag: tuple[str, str] | None = None
    """(flag, help) of a flag that gives one item of a list setting and adds up when repeated
    (``--mode``)."""


def setting(
    default: Any = MISSING,
    *,
    parse: Callable[[Any], Any],
    accepted: str,
    name: str | None = None,
    flags: tuple[str, ...] = (),
    metavar: str = "VALUE",
    switch: bool = False,
    aliases: tuple[str, ...] = (),
    item_flag: tuple[str, str] | None = None,
) -> Any:
    """A settings field with its declaration in the metadata."""
    spec = SettingSpec(parse, accepted, name, flags, metavar, switch, aliases, item_flag)
    return field(default=default, metadata={SPEC: spec})


def _switch(default: bool, **extra: Any) -> Any:
    return setting(default, parse=values.parse_bool, accepted=_BOOLEAN, switch=True, **extra)


def _seconds(default: float, *, above: bool = True, accepted_text: str = _SECONDS) -> Any:
    return setting(
        default, parse=values.seconds(0, above=above), accepted=accepted_text, metavar="SECONDS"
    )


# -- the groups ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialSettings:
    """Which trial is read, how, and which of its steps count."""

    base_trial: str = setting(
        parse=values.text,
        accepted="a trial: a folder path, or s3://bucket/prefix",
        flags=("--trial", "--base-trial"),
        metavar="PATH",
    )
    """The trial smdebug writes: a folder, or ``s3://bucket/prefix``. Required."""

    reader: Reader = setting(
        "native",
        parse=values.choice(*READERS),
        accepted=" or ".join(READERS),
        metavar="|".join(READERS),
    )
    """``native`` (fast, every dtype, all workers) or ``smdebug`` (smdebug's own trial API)."""

    verify_payload_crc: bool = _switch(False)
    """Also check each record's payload CRC when the writer stored one (smdebug by default
    stores a constant instead). The record length CRC is always checked."""

    pure_python: bool = _switch(False)
    """Read and count in pure Python rather than with the compiled kernels (the same results,
    1.5-2x slower): to rule them out when something looks wrong. Without the kernels built
    (installed without a C compiler) the pure-Python path runs anyway, and the log says so."""

    s3_endpoint_url: str | None = setting(
        None,
        parse=values.optional(values.url),
        accepted="an http:// or https:// URL, or none",
        metavar="URL",
    )
    """An S3-compatible endpoint for ``s3://`` trials; None uses ``AWS_ENDPOINT_URL`` or AWS."""

    modes: tuple[Mode, ...] | None = setting(
        None,
        parse=values.modes,
        accepted=f"modes among {', '.join(values.MODES)} (a list in YAML, comma-separated in the "
        f"environment, --mode repeated on the command line), or none for all",
        metavar="MODE,...",
        item_flag=("--mode", "one mode (TRAIN, EVAL, PREDICT, GLOBAL); repeatable"),
    )
    """Evaluate only steps saved in these modes (TRAIN, EVAL, PREDICT, GLOBAL); None: all."""

    start_step: int | None = setting(
        None,
        parse=values.optional(values.whole_number_within(0)),
        accepted="a whole number >= 0, or none",
        metavar="STEP",
    )
    """Evaluate only global steps >= this (the managed service's ``start_step``); None: all."""

    end_step: int | None = setting(
        None,
        parse=values.optional(values.whole_number_within(0)),
        accepted="a whole number >= 0, or none",
        metavar="STEP",
    )
    """Evaluate only global steps < this (the managed service's ``end_step``, exclusive as in
    smdebug's ``invoke_rule``); evaluation ends once it is reached. None: no end."""

    end_grace: float = setting(
        60.0,
        parse=values.seconds(0, above=False),
        accepted="a number of seconds >= 0, such as 60",
        metavar="SECONDS",
    )
    """After the end marker, seconds that a step still missing a worker is waited for, from
    when the marker was written. Outside SageMaker every rank writes the marker when it closes,
    so it appears when the first one finishes while others may still write their last steps;
    60 is the stop grace SageMaker gives rules. A trial whose steps are all complete never
    waits; a step still incomplete then is evaluated with the workers present and reported."""


@dataclass(frozen=True)
class FollowSettings:
    """How the loop follows a trial that is still being written, and when it stops."""

    once: bool = _switch(False)
    """Evaluate the steps that are complete now and exit, even without the end marker."""

    progress_interval: float = _seconds(
        60.0, above=False, accepted_text="a number of seconds >= 0, such as 60; 0: never"
    )
    """While following, a progress line in the log this often (step, labels, ratio, verdict so
    far); 0: none. On a terminal a replay also redraws one line on stderr as it goes."""

    stop_on_first_issue: bool = _switch(False)
    """Stop at the first step where a check holds, as the managed service does; by default
    evaluation goes on so the counts and metrics stay complete."""

    linger_after_verdict: bool = _switch(False)
    """After the verdict, keep serving /metrics (with the final status) and /healthz until
    SIGTERM, then exit with the verdict's code. For a Kubernetes native sidecar, which the
    kubelet restarts whenever it exits before the training container does."""

    poll_interval: float = _seconds(1.0)
    """Seconds between looks for new steps while following; inotify wakes it sooner on local
    trials. smdebug's own reader waits 2 s."""

    max_poll_interval: float = _seconds(8.0)
    """While no new step turns up, the wait between looks doubles from ``poll_interval`` up to
    this many seconds, and drops back once a step arrives. On S3 each look is a billed LIST, so
    a job that saves a step every few minutes costs a few looks per step instead of hundreds;
    local trials are woken by inotify as soon as a step lands, whatever the wait. A value below
    ``poll_interval`` means no backing off."""

    idle_timeout: float | None = setting(
        1800.0,
        parse=values.idle_timeout,
        accepted=f"{_SECONDS}, or none to wait forever",
        metavar="SECONDS",
    )
    """Seconds with no new step (or no trial yet) after which following ends: a killed training
    job writes no end marker. None waits forever."""

    read_retries: int = setting(
        5,
        parse=values.whole_number_within(0),
        accepted="a whole number >= 0, such as 5",
        metavar="N",
    )
    """How often a step whose event file is missing or truncated is read again before it is
    skipped with a counted reason (a file may still be arriving)."""

    read_retry_delay: float = _seconds(
        0.5, above=False, accepted_text="a number of seconds >= 0, such as 0.5"
    )
    """Seconds between those reads."""


@dataclass(frozen=True)
class OutputSettings:
    """Where the verdict is written for people, scripts and the managed service."""

    status_file: str = setting(
        DEFAULT_STATUS_FILE, parse=values.text, accepted="a file path", metavar="PATH"
    )
    """Where the JSON status is written (atomically): relative to the working directory."""

    status_interval: float = _seconds(
        1.0, above=False, accepted_text="a number of seconds >= 0, such as 1"
    )
    """At most one InProgress status write per this many seconds while evaluating; findings and
    the terminal status are written at once."""

    message_file: str | None = setting(
        None,
        parse=values.optional(values.text),
        accepted="a file path, or none",
        metavar="PATH",
    )
    """The managed service's status details file; None: ``/opt/ml/output/message`` when
    ``/opt/ml/output`` exists."""

    class_names: tuple[str, ...] | None = setting(
        None,
        parse=values.class_names,
        accepted="a list of names, one per class index from 0 (a list in YAML, comma-separated "
        "in the environment and on the command line), or none",
        metavar="NAME,...",
    )
    """A name per class index (0 first), shown beside the index in the status, the summary and
    the metrics (a ``class_name`` label); a class index beyond the list is an error."""

    class_names_file: str | None = setting(
        None,
        parse=values.optional(values.text),
        accepted="a text file with one class name per line (line 1: class 0), or none",
        metavar="PATH",
    )
    """The names of ``class_names`` from a file, one per line, for long lists; give one of
    the two."""

    report_dir: str | None = setting(
        None,
        parse=values.optional(values.text),
        accepted="a folder path, or none",
        metavar="DIR",
    )
    """Folder for the JSON rule report; None: ``/opt/ml/processing/output/rule`` when it
    exists."""

    html_report: bool = _switch(True)
    """Write the HTML report at the end (``report_file``, and ``ClassImbalance.html`` in the
    report folder) and serve it live at ``/report``."""

    report_file: str | None = setting(
        None,
        parse=values.optional(values.text),
        accepted="a file path, or none",
        metavar="PATH",
    )
    """Where the HTML report is written at the end; None: beside the status file, named
    after it (``classimbalance-status.json`` gives ``classimbalance-status.html``)."""

    @property
    def report_path(self) -> str:
        """``report_file``, or the status file's path with ``.html`` for its extension."""
        if self.report_file is not None:
            return self.report_file
        root, dot, extension = self.status_file.rpartition(".")
        keep = dot and "/" not in extension and root and not root.endswith("/")
        derived = f"{root if keep else self.status_file}.html"
        return f"{self.status_file}.report.html" if derived == self.status_file else derived


@dataclass(frozen=True)
class MetricsSettings:
    """The Prometheus endpoint, with the health and readiness probes."""

    enabled: bool | None = setting(
        None,
        parse=values.bool_or_auto,
        accepted=f"auto, or {_BOOLEAN}",
        name="metrics_enabled",
        switch=True,
        metavar="auto|BOOL",
    )
    """Serve Prometheus metrics, /healthz, /readyz and /report: auto (none) serves them while
    following a trial (from the first wait for new steps, and while lingering), not for a
    one-shot evaluation that ends without waiting (a finished trial, ``once``), which then
    never takes the port; true from the start; false never."""

    address: str = setting(
        "0.0.0.0",
        parse=values.text,
        accepted="an address to bind, such as 0.0.0.0 or 127.0.0.1",
        name="metrics_address",
        metavar="ADDRESS",
    )
    """Address the metrics server binds: all interfaces, so Prometheus can scrape the pod."""

    port: int = setting(
        DEFAULT_METRICS_PORT,
        parse=values.whole_number_within(0, 65535),
        accepted="a port within [0, 65535]; 0 picks a free one",
        name="metrics_port",
        metavar="PORT",
    )
    """Port of the metrics server; 0 picks a free one (logged)."""

    max_class_series: int = setting(
        20,
        parse=values.whole_number_within(1),
        accepted="a whole number >= 1, such as 20",
        metavar="N",
    )
    """Per-class metric series kept: the K classes with the highest misprediction fraction
    plus the K scarcest, the rest summed under class="other", so a 20,000-class model cannot
    explode Prometheus' cardinality."""

    max_confusion_series: int = setting(
        10,
        parse=values.whole_number_within(0),
        accepted="a whole number >= 0, such as 10",
        metavar="N",
    )
    """Classes above ``threshold_misprediction`` whose top confusion (the class they are most
    often predicted as) gets a series per mode, the worst first; 0: none."""

    training_job: str | None = setting(
        None,
        parse=values.optional(values.text),
        accepted="a name, or none",
        metavar="NAME",
    )
    """The training job this evaluation belongs to: the ``training_job`` label of
    ``classimbalance_evaluation_info``, so that dashboards and alerts pick an evaluation by
    the job's name rather than a pod's address; none: no such label (``trial`` is always one)."""

    metric_labels: tuple[tuple[str, str], ...] = setting(
        (),
        parse=values.metric_labels,
        accepted="labels: a YAML map, or name=value,name=value; Prometheus label names other "
        "than trial, training_job, job and instance",
        metavar="NAME=VALUE,...",
    )
    """More labels of ``classimbalance_evaluation_info`` (a team, an experiment), for joins."""

    pushgateway_url: str | None = setting(
        None,
        parse=values.optional(values.url),
        accepted="an http:// or https:// URL of a Prometheus Pushgateway, or none",
        metavar="URL",
    )
    """Push the final metrics there at the terminal status (grouped by ``training_job``, else
    the trial), for a short Job whose end falls between two scrapes; none: no push."""

    pushgateway_job: str = setting(
        "classimbalance-rule",
        parse=values.text,
        accepted="a job name",
        metavar="NAME",
    )
    """The ``job`` of the pushed group (with ``honor_labels: true`` in the Pushgateway's scrape,
    the ``job`` label the alerting rules see)."""


@dataclass(frozen=True)
class CheckpointSettings:
    """Saving the evaluation's state so that a restart resumes it exactly."""

    file: str | None = setting(
        None,
        parse=values.optional(values.text),
        accepted="a file path, or none for no checkpoints",
        name="checkpoint_file",
        metavar="PATH",
    )
    """Where the evaluation state is saved to resume after a restart; None: no checkpoints."""

    every_steps: int = setting(
        100,
        parse=values.whole_number_within(1),
        accepted="a whole number >= 1, such as 100",
        name="checkpoint_every_steps",
        metavar="N",
    )
    """Save a checkpoint after this many evaluated steps..."""

    every_seconds: float = setting(
        30.0,
        parse=values.seconds(0),
        accepted=_SECONDS,
        name="checkpoint_every_seconds",
        metavar="SECONDS",
    )
    """...or this many seconds, whichever comes first, and at the end."""


@dataclass(frozen=True)
class ShardSettings:
    """Evaluating one shard of a trial in parallel with others, for an exact merge."""

    emit_state: str | None = setting(
        None,
        parse=values.optional(values.text),
        accepted="a file path, or none",
        metavar="PATH",
    )
    """Write this evaluation's state here at the end, for ``classimbalance-rule merge STATE...``
    to combine with the other shards' into the status, report and exit code one process would
    give. A shard exits 0 once its state is written (the merge gives the verdict), 2 on an
    error; it serves no metrics unless ``metrics_enabled`` is true and pushes none (its figures
    are its part's, the merge's are the trial's). None: no state; one evaluation needs none."""

    shard_count: int = setting(
        1,
        parse=values.whole_number_within(1, 4096),
        accepted="a whole number in [1, 4096]",
        metavar="N",
    )
    """Shards the trial is split into; above 1, this process reads only shard ``shard_index``
    and needs ``emit_state``. Step ranges (``start_step``, ``end_step``) split it too."""

    shard_index: int = setting(
        0,
        parse=values.whole_number_within(0, 4095),
        accepted="a whole number in [0, shard_count)",
        metavar="I",
    )
    """Which shard this process evaluates, from 0 (a Kubernetes Indexed Job's completion
    index)."""

    shard_by: ShardBy = setting(
        "steps",
        parse=values.choice(*SHARD_BY),
        accepted=" or ".join(SHARD_BY),
        metavar="|".join(SHARD_BY),
    )
    """``steps``: each step (or block of ``shard_steps`` steps) to the shard a hash of its number
    picks, evenly whatever the save interval (long trials); ``workers``: each worker's parts to
    one shard, by its rank (many workers)."""

    shard_steps: int = setting(
        1,
        parse=values.whole_number_within(1),
        accepted="a whole number >= 1, such as 1",
        metavar="N",
    )
    """Consecutive global step numbers that go to one shard together when sharding by steps;
    1 spreads the steps most evenly."""


@dataclass(frozen=True)
class LogSettings:
    """The log on stderr."""

    format: LogFormat = setting(
        "text",
        parse=values.choice(*get_args(LogFormat)),
        accepted=" or ".join(get_args(LogFormat)),
        name="log_format",
        metavar="|".join(get_args(LogFormat)),
    )
    """``text`` for people, ``json`` for one JSON object per line."""

    level: LogLevel = setting(
        "INFO",
        parse=values.choice(*get_args(LogLevel)),
        accepted=", ".join(get_args(LogLevel)[:-1]) + f" or {get_args(LogLevel)[-1]}",
        name="log_level",
        metavar="LEVEL",
    )
    """DEBUG, INFO, WARNING or ERROR."""


@dataclass(frozen=True)
class ManagedSettings:
    """What a managed debugger service passes besides the rule parameters."""

    rule_to_invoke: str | None = setting(
        None,
        parse=values.rule_to_invoke,
        accepted="ClassImbalance, or none: this image evaluates only the ClassImbalance rule; "
        "run the image of the rule you named instead",
        metavar="NAME",
    )
    """The managed service names the rule to run; when given it must be ClassImbalance (this
    is its only use: a job meant for another rule fails at once instead of being evaluated)."""

    actions: tuple[dict[str, Any], ...] = setting(
        (),
        parse=values.actions,
        accepted='JSON of an action object or a list of them (quotes may be escaped as \\"), each '
        'with a "name": stoptraining (with "training_job_prefix"), email or sms (with '
        '"endpoint"), webhook (with "url"), stop_file (with "path"), such as {"name": '
        '"stoptraining", "training_job_prefix": "job"}; or none',
        flags=("--actions", "--action-json"),
        metavar="JSON",
        aliases=("action_json",),
    )
    """Actions parsed from ``action_json`` (as JSON, never as code), carried out once when the
    issue is found; each one's outcome is in the status, the log and the metrics."""

    actions_dry_run: bool = _switch(False)
    """Evaluate and report what each action would do (``would_run``) without doing it."""

    action_timeout: float = setting(
        30.0,
        parse=values.number(0, above=True, high=3600),
        accepted="a number of seconds in (0, 3600], such as 30",
        metavar="SECONDS",
    )
    """Seconds each action may take at most (its retries included): an action never hangs the
    evaluation nor holds back the terminal status longer than this."""


# -- the whole ----------------------------------------------------------------------------------

GROUPS: tuple[tuple[str, type[Any]], ...] = (
    ("trial", TrialSettings),
    ("following", FollowSettings),
    ("outputs", OutputSettings),
    ("metrics", MetricsSettings),
    ("checkpoints", CheckpointSettings),
    ("sharding", ShardSettings),
    ("logs", LogSettings),
    ("managed", ManagedSettings),
)
"""Each group's attribute on ``Settings`` and its class, in the order settings are listed."""


@dataclass(frozen=True)
class Settings:
    """Everything one evaluation needs, by group."""

    trial: TrialSettings
    rule: RuleParameters = field(default_factory=RuleParameters)
    following: FollowSettings = field(default_factory=FollowSettings)
    outputs: OutputSettings = field(default_factory=OutputSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    checkpoints: CheckpointSettings = field(default_factory=CheckpointSettings)
    sharding: ShardSettings = field(default_factory=ShardSettings)
    logs: LogSettings = field(default_factory=LogSettings)
    managed: ManagedSettings = field(default_factory=ManagedSettings)

    @classmethod
    def of(cls, *, rule: RuleParameters | None = None, **flat: Any) -> Settings:
        """Settings from typed values by flat name (``base_trial``, ``metrics_port`` ...),
        the rest at their defaults: for tests, tools and embedding (no parsing)."""
        if "base_trial" not in flat:
            raise TypeError("Settings.of() needs base_trial")
        trial = TrialSettings(base_trial=flat.pop("base_trial"))
        return cls(trial=trial).changed(rule=rule, **flat)

    def changed(self, *, rule: RuleParameters | None = None, **flat: Any) -> Settings:
        """A copy with the settings named by their flat names changed (typed values), and the
        rule's parameters replaced by ``rule`` if given."""
        groups: dict[str, dict[str, Any]] = {}
        rule_changes: dict[str, Any] = {}
        for name, value in flat.items():
            declared = DECLARED.get(name)
            if declared is None:
                raise TypeError(f"unknown setting {name!r}")
            if declared.group == "rule":
                rule_changes[declared.attribute] = value
            else:
                groups.setdefault(declared.group, {})[declared.attribute] = value
        changes: dict[str, Any] = {
            group: dataclasses.replace(getattr(self, group), **attributes)
            for group, attributes in groups.items()
        }
        if rule is not None or rule_changes:
            changes["rule"] = dataclasses.replace(rule or self.rule, **rule_changes)
        return dataclasses.replace(self, **changes)

    def value(self, name: str) -> Any:
        """A setting by its flat name."""
        declared = DECLARED[name]
        return getattr(getattr(self, declared.group), declared.attribute)


# -- the flat names -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Declared:
    """One setting as the loader sees it: flat name, where it lives, how it is given."""

    name: str
    group: str
    """The attribute of ``Settings`` holding it (``rule`` for rule parameters)."""
    attribute: str
    """Its field in that group."""
    parse: Callable[[Any], Any]
    accepted: str
    default: Any
    """The default value; MISSING for a required setting."""
    flags: tuple[str, ...]
    metavar: str = "VALUE"
    switch: bool = False
    aliases: tuple[str, ...] = ()
    item_flag: tuple[str, str] | None = None

    @property
    def required(self) -> bool:
        return self.default is MISSING


def flag_of(name: str) -> str:
    """A setting's flag: ``threshold_imbalance`` -> ``--threshold-imbalance``."""
    return "--" + name.replace("_", "-")


def _group_settings(group: str, cls: type[Any]) -> list[Declared]:
    declared = []
    for spec_field in fields(cls):
        spec: SettingSpec = spec_field.metadata[SPEC]
        name = spec.name or spec_field.name
        default = (
            spec_field.default_factory()
            if spec_field.default_factory is not MISSING
            else spec_field.default
        )
        declared.append(
            Declared(
                name=name,
                group=group,
                attribute=spec_field.name,
                parse=spec.parse,
                accepted=spec.accepted,
                default=default,
                flags=spec.flags or (flag_of(name),),
                metavar=spec.metavar,
                switch=spec.switch,
                aliases=spec.aliases,
                item_flag=spec.item_flag,
            )
        )
    return declared


def _rule_settings() -> list[Declared]:
    return [
        Declared(
            name=spec_field.name,
            group="rule",
            attribute=spec_field.name,
            parse=values.RULE_COERCERS[spec_field.name],
            accepted=accepted(spec_field.name),
            default=spec_field.default,
            flags=(flag_of(spec_field.name),),
        )
        for spec_field in fields(RuleParameters)
    ]


def _declare() -> dict[str, Declared]:
    """Every setting by flat name: ``base_trial``, the rule's parameters, then the groups."""
    runtime = [item for group, cls in GROUPS for item in _group_settings(group, cls)]
    ordered = [runtime[0], *_rule_settings(), *runtime[1:]]
    return {item.name: item for item in ordered}


DECLARED: Mapping[str, Declared] = _declare()
"""Every setting by its flat name, in the order ``--print-config`` and the example list them."""
SETTING_NAMES: tuple[str, ...] = tuple(DECLARED)
ALIASES: Mapping[str, str] = {
    alias: item.name for item in DECLARED.values() for alias in item.aliases
}
"""Other keys of a setting: the managed service sends the actions as ``action_json``."""
SWITCHES = frozenset(item.name for item in DECLARED.values() if item.switch)
"""Runtime flags that work alone (``--once``) and also take a value (``--once false``)."""
