"""The sidecar on an S3 trial: the stand-in job uploads steps to a real S3 endpoint on loopback
(moto's server) while the evaluator follows ``s3://`` in its own process."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from devtools.s3server import CountingS3Server
from tests.integration.processes import (
    free_port,
    prefix_sums,
    read_truth,
    scrape,
    start_evaluator,
    start_writer,
    stop_process,
)

pytestmark = pytest.mark.slow


def test_following_an_s3_trial_tracks_the_true_counts(
    tmp_path: Path, s3_endpoint: CountingS3Server
) -> None:
    uri = "s3://training/job-1/debug-output"
    truth_file, status_file, port = tmp_path / "truth.jsonl", tmp_path / "s", free_port()
    started: list[subprocess.Popen[bytes]] = []
    try:
        evaluator = start_evaluator(
            uri, status_file, port, "--s3-endpoint-url", s3_endpoint.endpoint, "--samples", "300"
        )
        started.append(evaluator)
        time.sleep(1.0)  # the evaluator starts before the job writes anything
        writer = start_writer(
            tmp_path / "staging",
            truth_file,
            steps=30,
            interval=0.1,
            workers=2,
            s3_uri=uri,
            s3_endpoint_url=s3_endpoint.endpoint,
        )
        started.append(writer)
        scrapes = []
        deadline = time.monotonic() + 90
        while evaluator.poll() is None and time.monotonic() < deadline:
            if (sample := scrape(port)) is not None:
                scrapes.append(sample)
            time.sleep(0.1)
        assert writer.wait(30) == 0
        assert evaluator.wait(30) == 1, "IssuesFound: classes are 20:1 imbalanced"
    finally:
        for process in started:
            stop_process(process)
    truth = read_truth(truth_file)
    document = json.loads(status_file.read_text())
    assert document["terminal"] is True
    assert document["ended_by"] == "end_of_training"
    assert document["steps_evaluated"] == 30
    expected = [sum(e["samples"][c] for e in truth) for c in range(5)]
    assert [document["classes"][str(c)]["samples"] for c in range(5)] == expected
    totals = [sample.samples_total for sample in scrapes]
    assert totals == sorted(totals)
    assert len(set(totals)) > 3, "metrics moved as steps landed"
    sums = prefix_sums(truth)
    for sample in scrapes:
        assert sample.class_samples == {
            str(c): n for c, n in enumerate(sums[sample.samples_total]) if n > 0
        }, "metrics always show whole steps and the true per-class counts"
    event_gets = [
        seen
        for seen in s3_endpoint.requests
        if seen.op == "GetObject" and seen.key.endswith(".tfevents")
    ]
    assert len(event_gets) == 30 * 2, "one GET per (step, worker)"
    index_gets = [
        seen for seen in s3_endpoint.requests if seen.op == "GetObject" and "/index/" in seen.key
    ]
    assert index_gets == [], "index files are listed, never fetched"
