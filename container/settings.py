"""The runtime's settings: one typed object, each field documented with its default.

The rule's own parameters live in ``evaluator.core.RuleParameters`` (the seed's names); these say
where the trial is, how to follow it and where results go. ``container.config`` builds a
``Settings`` from defaults, the managed service's job config, a YAML file, the environment and
flags, reporting every invalid value at once with where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evaluator.core import RuleParameters

DEFAULT_STATUS_FILE = "classimbalance-status.json"
DEFAULT_METRICS_PORT = 9410
MODES = ("TRAIN", "EVAL", "PREDICT", "GLOBAL")


@dataclass(frozen=True)
class Settings:
    """Everything one evaluation needs."""

    base_trial: str
    """The trial smdebug writes: a folder, or ``s3://bucket/prefix``. Required."""

    rule: RuleParameters = field(default_factory=RuleParameters)
    """The rule's parameters (the seed's names and defaults)."""

    # -- the trial --------------------------------------------------------------------------

    reader: str = "native"
    """``native`` (fast, every dtype, all workers) or ``smdebug`` (smdebug's own trial API)."""

    verify_payload_crc: bool = False
    """Also check each record's payload CRC when the writer stored one (smdebug by default
    stores a constant instead). The record length CRC is always checked."""

    s3_endpoint_url: str | None = None
    """An S3-compatible endpoint for ``s3://`` trials; None uses ``AWS_ENDPOINT_URL`` or AWS."""

    modes: tuple[str, ...] | None = None
    """Evaluate only steps saved in these modes (TRAIN, EVAL, PREDICT, GLOBAL); None: all."""

    start_step: int | None = None
    """Evaluate only global steps >= this (the managed service's ``start_step``); None: all."""

    end_step: int | None = None
    """Evaluate only global steps < this (the managed service's ``end_step``, exclusive as in
    smdebug's ``invoke_rule``); evaluation ends once it is reached. None: no end."""

    # -- following --------------------------------------------------------------------------

    once: bool = False
    """Evaluate the steps that are complete now and exit, even without the end marker."""

    stop_on_first_issue: bool = False
    """Stop at the first step where a check holds, as the managed service does; by default
    evaluation goes on so the counts and metrics stay complete."""

    linger_after_verdict: bool = False
    """After the verdict, keep serving /metrics (with the final status) and /healthz until
    SIGTERM, then exit with the verdict's code. For a Kubernetes native sidecar, which the
    kubelet restarts whenever it exits before the training container does."""

    poll_interval: float = 1.0
    """Seconds between looks for new steps while following; inotify wakes it sooner on local
    trials. smdebug's own reader waits 2 s."""

    max_poll_interval: float = 8.0
    """While no new step turns up, the wait between looks doubles from ``poll_interval`` up to
    this many seconds, and drops back once a step arrives. On S3 each look is a billed LIST, so
    a job that saves a step every few minutes costs a few looks per step instead of hundreds;
    local trials are woken by inotify as soon as a step lands, whatever the wait. A value below
    ``poll_interval`` means no backing off."""

    idle_timeout: float | None = 1800.0
    """Seconds with no new step (or no trial yet) after which following ends: a killed training
    job writes no end marker. None waits forever."""

    read_retries: int = 5
    """How often a step whose event file is missing or truncated is read again before it is
    skipped with a counted reason (a file may still be arriving)."""

    read_retry_delay: float = 0.5
    """Seconds between those reads."""

    # -- outputs ----------------------------------------------------------------------------

    status_file: str = DEFAULT_STATUS_FILE
    """Where the JSON status is written (atomically): relative to the working directory."""

    status_interval: float = 1.0
    """At most one InProgress status write per this many seconds while evaluating; findings and
    the terminal status are written at once."""

    metrics_enabled: bool = True
    """Serve Prometheus metrics, /healthz and /readyz while running."""

    metrics_address: str = "0.0.0.0"
    """Address the metrics server binds: all interfaces, so Prometheus can scrape the pod."""

    metrics_port: int = DEFAULT_METRICS_PORT
    """Port of the metrics server; 0 picks a free one (logged)."""

    max_class_series: int = 20
    """Per-class metric series kept: the K classes with the highest misprediction fraction
    plus the K scarcest, the rest summed under class="other", so a 20,000-class model cannot
    explode Prometheus' cardinality."""

    message_file: str | None = None
    """The managed service's status details file; None: ``/opt/ml/output/message`` when
    ``/opt/ml/output`` exists."""

    report_dir: str | None = None
    """Folder for the JSON rule report; None: ``/opt/ml/processing/output/rule`` when it
    exists."""

    # -- checkpoints ------------------------------------------------------------------------

    checkpoint_file: str | None = None
    """Where the evaluation state is saved to resume after a restart; None: no checkpoints."""

    checkpoint_every_steps: int = 100
    """Save a checkpoint after this many evaluated steps..."""

    checkpoint_every_seconds: float = 30.0
    """...or this many seconds, whichever comes first, and at the end."""

    # -- logs -------------------------------------------------------------------------------

    log_format: str = "text"
    """``text`` for people, ``json`` for one JSON object per line."""

    log_level: str = "INFO"
    """DEBUG, INFO, WARNING or ERROR."""

    # -- the managed service ----------------------------------------------------------------

    rule_to_invoke: str | None = None
    """The managed service names the rule to run; when given it must be ClassImbalance."""

    actions: tuple[dict[str, Any], ...] = ()
    """Actions parsed from ``action_json`` (as JSON, never as code): recorded in the status."""
