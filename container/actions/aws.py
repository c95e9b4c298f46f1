"""The AWS actions: stop the training job (SageMaker) and notify by e-mail or SMS (SNS).

Region and credentials come from boto3's usual chain, the region from ``AWS_REGION`` first as
smdebug does (then ``AWS_DEFAULT_REGION``, then us-east-1); an endpoint from boto3's own
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_SNS`` / ``_SAGEMAKER``), so the tests reach moto's
server on loopback the way a user reaches a VPC endpoint.

smdebug's ``StopTrainingAction`` stops a job only when exactly one matches its prefix and
otherwise does nothing, silently. Here none or several matches fail loudly with the names, and
``stop_all_matches`` says whether several may be stopped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from container.actions.message import message_text
from container.actions.outcomes import DONE, FAILED, WOULD_RUN

ClientFactory = Callable[[str], Any]
"""Service name -> a boto3 client (injected by tests)."""
DEFAULT_TOPIC = "SMDebugRules"
"""smdebug's topic name, so a subscription made for the managed rule receives ours too."""
NAMES_SHOWN = 10


def boto3_client(service: str) -> Any:
    import boto3  # noqa: PLC0415  (the image has it for S3; imported only when an AWS action runs)

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client(service, region_name=region)


def in_progress_jobs(client: Any, prefix: str) -> list[str]:
    """Names of the in-progress training jobs that start with ``prefix``, every page."""
    names: list[str] = []
    pages = client.get_paginator("list_training_jobs").paginate(
        StatusEquals="InProgress", NameContains=prefix
    )
    for page in pages:
        names += [
            job["TrainingJobName"]
            for job in page.get("TrainingJobSummaries", ())
            if job["TrainingJobName"].startswith(prefix)
        ]
    return sorted(set(names))


def _shown(names: list[str]) -> str:
    more = f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else ""
    return ", ".join(names[:NAMES_SHOWN]) + more


def stop_training(
    action: Mapping[str, Any], clients: ClientFactory, *, dry_run: bool
) -> tuple[str, str]:
    prefix = str(action["training_job_prefix"])
    client = clients("sagemaker")
    names = in_progress_jobs(client, prefix)
    if not names:
        return FAILED, (
            f"no in-progress training job's name starts with {prefix!r}, so none was stopped; "
            f"check training_job_prefix (the job may also have ended already)"
        )
    if len(names) > 1 and not action.get("stop_all_matches", False):
        return FAILED, (
            f"{len(names)} in-progress training jobs start with {prefix!r} ({_shown(names)}), so "
            f"none was stopped; give a longer training_job_prefix, or set stop_all_matches "
            f"true to stop them all"
        )
    if dry_run:
        return WOULD_RUN, f"would stop the training job(s) {_shown(names)}"
    for name in names:
        client.stop_training_job(TrainingJobName=name)
    return DONE, f"stopped the training job(s) {_shown(names)}"


def notify(
    action: Mapping[str, Any],
    document: Mapping[str, Any],
    clients: ClientFactory,
    *,
    dry_run: bool,
) -> tuple[str, str]:
    protocol, endpoint = str(action["name"]), str(action["endpoint"])
    topic = str(action.get("topic_name", DEFAULT_TOPIC))
    if dry_run:
        return WOULD_RUN, f"would send the issue by {protocol} to {endpoint} (SNS topic {topic})"
    client = clients("sns")
    arn = client.create_topic(Name=topic)["TopicArn"]  # idempotent: the existing topic's ARN
    if not _subscribed(client, arn, protocol, endpoint):
        client.subscribe(TopicArn=arn, Protocol=protocol, Endpoint=endpoint)
    subject = f"{document['rule']} rule fired at step {document['issue_step']}"[:100]
    message_id = client.publish(TopicArn=arn, Subject=subject, Message=message_text(document))
    return DONE, (
        f"sent the issue by {protocol} to {endpoint} through SNS topic {arn} (message "
        f"{message_id.get('MessageId', '?')}); a new subscription must be confirmed by its owner"
    )


def _subscribed(client: Any, arn: str, protocol: str, endpoint: str) -> bool:
    pages = client.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=arn)
    return any(
        sub.get("Protocol") == protocol and sub.get("Endpoint") == endpoint
        for page in pages
        for sub in page.get("Subscriptions", ())
    )
