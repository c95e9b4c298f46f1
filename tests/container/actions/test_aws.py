"""The AWS actions against moto's server on 127.0.0.1: SNS for e-mail and SMS, SageMaker's
ListTrainingJobs for stoptraining. moto 5 has no StopTrainingJob, so the stop requests go to
a client under botocore's ``Stubber``, which validates each request against botocore's own
SageMaker service model (and fails the test on any request it was not told to expect)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.sagemaker.models import sagemaker_backends
from moto.sns.models import sns_backends

from container.actions import DONE, FAILED, WOULD_RUN
from container.actions.aws import in_progress_jobs, notify, stop_training
from tests.container.actions.test_webhook import DOCUMENT

REGION = "us-east-1"


@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].training_jobs.clear()
        sns_backends[DEFAULT_ACCOUNT_ID][REGION].reset()


def client_factory(endpoint: str) -> Callable[[str], Any]:
    return lambda service: boto3.client(service, region_name=REGION, endpoint_url=endpoint)


def create_jobs(endpoint: str, *names: str, in_progress: bool = True) -> None:
    client = client_factory(endpoint)("sagemaker")
    for name in names:
        client.create_training_job(
            TrainingJobName=name,
            AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
            RoleArn=f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/r",
            OutputDataConfig={"S3OutputPath": "s3://b/out"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 60},
        )
        if in_progress:  # moto creates jobs Completed; a running job is InProgress
            jobs = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].training_jobs
            jobs[name].training_job_status = "InProgress"


class StoppingClient:
    """moto's SageMaker for listing; ``stop_training_job`` through a stubbed real client."""

    def __init__(self, endpoint: str, expected: list[str]) -> None:
        self.listing = client_factory(endpoint)("sagemaker")
        self.stopper = boto3.client("sagemaker", region_name=REGION)
        self.stubber = Stubber(self.stopper)
        for name in expected:
            self.stubber.add_response("stop_training_job", {}, {"TrainingJobName": name})
        self.stubber.activate()

    def get_paginator(self, name: str) -> Any:
        return self.listing.get_paginator(name)

    def stop_training_job(self, **request: Any) -> Any:
        return self.stopper.stop_training_job(**request)


def test_the_in_progress_jobs_starting_with_the_prefix_are_listed_over_every_page(
    moto_endpoint: str,
) -> None:
    names = [f"resnet-{i:03d}" for i in range(120)]  # moto pages by 100
    create_jobs(moto_endpoint, *names)
    create_jobs(moto_endpoint, "old-resnet-1")  # contains the prefix, does not start with it
    create_jobs(moto_endpoint, "resnet-done", in_progress=False)
    client = client_factory(moto_endpoint)("sagemaker")
    assert in_progress_jobs(client, "resnet-") == names


def test_the_one_matching_job_is_stopped(moto_endpoint: str) -> None:
    create_jobs(moto_endpoint, "bert-2026-12-01", "gpt-2026-12-01")
    client = StoppingClient(moto_endpoint, ["bert-2026-12-01"])
    outcome, detail = stop_training(
        {"name": "stoptraining", "training_job_prefix": "bert-"},
        lambda service: client,
        dry_run=False,
    )
    assert (outcome, detail) == (DONE, "stopped the training job(s) bert-2026-12-01")
    client.stubber.assert_no_pending_responses()


def test_several_matches_stop_none_unless_allowed(moto_endpoint: str) -> None:
    create_jobs(moto_endpoint, "bert-a", "bert-b")
    refuse = StoppingClient(moto_endpoint, [])
    outcome, detail = stop_training(
        {"name": "stoptraining", "training_job_prefix": "bert-"},
        lambda service: refuse,
        dry_run=False,
    )
    assert outcome == FAILED
    assert detail.startswith(
        "2 in-progress training jobs start with 'bert-' (bert-a, bert-b), so none was stopped"
    )
    allowed = StoppingClient(moto_endpoint, ["bert-a", "bert-b"])
    outcome, detail = stop_training(
        {"name": "stoptraining", "training_job_prefix": "bert-", "stop_all_matches": True},
        lambda service: allowed,
        dry_run=False,
    )
    assert (outcome, detail) == (DONE, "stopped the training job(s) bert-a, bert-b")
    allowed.stubber.assert_no_pending_responses()


def test_no_match_fails_loudly_and_a_dry_run_stops_nothing(moto_endpoint: str) -> None:
    factory = client_factory(moto_endpoint)
    outcome, detail = stop_training(
        {"name": "stoptraining", "training_job_prefix": "nothing-"}, factory, dry_run=False
    )
    assert outcome == FAILED
    assert detail.startswith("no in-progress training job's name starts with 'nothing-'")
    create_jobs(moto_endpoint, "bert-a")
    outcome, detail = stop_training(
        {"name": "stoptraining", "training_job_prefix": "bert-"}, factory, dry_run=True
    )
    assert (outcome, detail) == (WOULD_RUN, "would stop the training job(s) bert-a")


@pytest.mark.parametrize(
    ("protocol", "endpoint"), [("email", "ml@example.com"), ("sms", "+15555550100")]
)
def test_the_issue_is_published_to_an_sns_topic_the_endpoint_subscribes_to(
    moto_endpoint: str, protocol: str, endpoint: str
) -> None:
    factory = client_factory(moto_endpoint)
    action = {"name": protocol, "endpoint": endpoint}
    for _ in range(2):  # a second issue reuses the topic and the subscription
        outcome, detail = notify(action, DOCUMENT, factory, dry_run=False)
        assert outcome == DONE, detail
    sns = factory("sns")
    [topic] = sns.list_topics()["Topics"]
    assert topic["TopicArn"].endswith(":SMDebugRules")
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic["TopicArn"])["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [(protocol, endpoint)]
    backend = sns_backends[DEFAULT_ACCOUNT_ID][REGION]
    sent = backend.topics[topic["TopicArn"]].sent_notifications
    assert len(sent) == 2
    _, message, subject, *_ = sent[0]
    assert subject == "ClassImbalance rule fired at step 12"
    assert "class 3 is mostly mistaken for 0 (80%)" in message
    assert DOCUMENT["findings"][0]["message"] in message
