"""Fixtures of the live tests: the processes a test starts (always stopped), a real S3 endpoint
on loopback (moto's server behind a counting layer) with test credentials."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import boto3
import pytest

from devtools.s3server import CountingS3Server
from tests.integration.processes import stop_process

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes the test starts; each is killed (if still running) and reaped at the end."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:
            stop_process(process)


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingS3Server]:
    """A loopback S3 endpoint with a bucket ``training``; AWS variables set for it."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    server = CountingS3Server()
    server.start()
    try:
        boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket="training")
        yield server
    finally:
        server.stop()
