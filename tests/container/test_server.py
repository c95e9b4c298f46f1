"""The metrics server on a real socket: endpoints, snapshot swaps, clean stops, promtool and a
real Prometheus scraping it."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import CollectorRegistry

from container.server import MetricsBindError, MetricsServer
from container.snapshot import Snapshot, SnapshotBox
from tests.container.test_metrics import batch, evaluated, rich_snapshot, snap
from tests.integration.processes import terminate_process

if TYPE_CHECKING:
    from container.server.handler import Responder

HOST = "127.0.0.1"
T = TypeVar("T")


# -- helpers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    body: bytes


def request(
    port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> Response:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return Response(response.status, response.msg, response.read())
    finally:
        connection.close()


def not_ready() -> Snapshot:
    return snap(evaluated([]), ready=False)


def ratio_snapshot(counts: tuple[int, int]) -> Snapshot:
    """A snapshot whose imbalance ratio is counts[0] / counts[1], from a real rule."""
    labels = [0] * counts[0] + [1] * counts[1]
    return snap(evaluated([[batch(labels, labels)]]), last_evaluation_time=time.time())


def required_tool(name: str) -> str:
    """The tool's path; skips when it is missing, except in CI, where that is a failure."""
    path = shutil.which(name)
    if path is not None:
        return path
    reason = (
        f"{name} is not installed; `make prometheus-tools` installs it "
        f"(as root: apt-get install -y --no-install-recommends prometheus)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}. CI=true: this test must run", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_for(what: str, attempt: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = attempt()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def box() -> SnapshotBox:
    return SnapshotBox(not_ready())


@pytest.fixture
def server(box: SnapshotBox) -> Iterator[MetricsServer]:
    server = MetricsServer(box, HOST, 0, max_class_series=3)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- endpoints ----------------------------------------------------------------------------------


def test_metrics_are_served_as_prometheus_text(server: MetricsServer, box: SnapshotBox) -> None:
    box.publish(rich_snapshot())
    response = request(server.port, "/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in parse_text(response.body.decode())}
    assert families["classimbalance_samples"].samples[0].value == 14
    assert families["classimbalance_status"].type == "gauge", "a state set, in the 0.0.4 format"
    assert "process_resident_memory_bytes" in families


def test_openmetrics_is_negotiated(server: MetricsServer, box: SnapshotBox) -> None:
    box.publish(rich_snapshot())
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    response = request(server.port, "/metrics", {"Accept": accept})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.body.endswith(b"# EOF\n")
    families = {f.name: f for f in parse_openmetrics(response.body.decode())}
    assert families["classimbalance_status"].type == "stateset"


def test_metrics_are_gzipped_when_the_client_accepts_it(server: MetricsServer) -> None:
    response = request(server.port, "/metrics", {"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert b"classimbalance_samples_total 0.0" in gzip.decompress(response.body)


def test_metrics_can_be_restricted_by_name(server: MetricsServer) -> None:
    response = request(server.port, "/metrics?name[]=classimbalance_samples_required")
    names = {f.name for f in parse_text(response.body.decode())}
    assert names == {"classimbalance_samples_required"}


def test_healthz_answers_200_while_alive(server: MetricsServer) -> None:
    response = request(server.port, "/healthz")
    assert (response.status, response.body) == (200, b"ok\n")
    head = request(server.port, "/healthz", method="HEAD")
    assert (head.status, head.body) == (200, b"")


def test_readyz_is_503_with_a_reason_until_a_ready_snapshot_is_published(
    server: MetricsServer, box: SnapshotBox
) -> None:
    response = request(server.port, "/readyz")
    assert response.status == 503
    assert (
        response.body == b"not ready: not yet attached to the trial /trials/run-1 and evaluating\n"
    )
    box.publish(rich_snapshot())
    assert (request(server.port, "/readyz").status, request(server.port, "/readyz").body) == (
        200,
        b"ready\n",
    )
    box.publish(snap(evaluated([]), status="Stopped", ready=False))
    response = request(server.port, "/readyz")
    assert (response.status, response.body) == (
        503,
        b"not ready: the evaluation has ended (Stopped)\n",
    )


@pytest.mark.parametrize("path", ["/", "/metric", "/metrics/", "/metrics/x", "/healthz/x", "/x"])
def test_other_paths_are_404(server: MetricsServer, path: str) -> None:
    assert request(server.port, path).status == 404


def test_a_published_snapshot_shows_on_the_next_scrape(
    server: MetricsServer, box: SnapshotBox
) -> None:
    def ratio() -> float:
        families = {f.name: f for f in parse_text(request(server.port, "/metrics").body.decode())}
        return families["classimbalance_imbalance_ratio"].samples[0].value

    box.publish(ratio_snapshot((10, 3)))
    assert ratio() == 10 / 3
    box.publish(ratio_snapshot((10, 4)))
    assert ratio() == 2.5


def test_a_failing_collector_gives_500_and_health_still_answers(box: SnapshotBox) -> None:
    class Broken:
        def collect(self) -> list[Metric]:
            raise RuntimeError("boom")

    registry = CollectorRegistry()
    registry.register(Broken())
    with MetricsServer(box, HOST, 0, 3, registry=registry) as server:
        assert request(server.port, "/metrics").status == 500
        assert request(server.port, "/healthz").status == 200


# -- lifecycle ----------------------------------------------------------------------------------


def test_stop_is_prompt_idempotent_and_frees_the_port(box: SnapshotBox) -> None:
    server = MetricsServer(box, HOST, 0, 3)
    assert server.port == 0, "the requested port until started"
    server.start()
    idle = socket.create_connection((HOST, server.port))  # a client that never sends anything
    try:
        port = server.port
        assert port != 0
        assert request(port, "/healthz").status == 200
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.0
        server.stop()
        with pytest.raises(ConnectionRefusedError):
            request(port, "/healthz")
    finally:
        idle.close()
        server.stop()
    with MetricsServer(box, HOST, port, 3) as again:
        assert again.port == port
        assert request(port, "/healthz").status == 200


def test_a_port_in_use_is_a_clear_error(server: MetricsServer, box: SnapshotBox) -> None:
    second = MetricsServer(box, HOST, server.port, 3)
    with pytest.raises(MetricsBindError) as raised:
        second.start()
    message = str(raised.value)
    assert f"{HOST}:{server.port}" in message
    assert "metrics_port" in message
    assert isinstance(raised.value, OSError), "callers that catch OSError still do"
    second.stop()  # nothing started: a no-op
    assert request(server.port, "/healthz").status == 200, "the first server is unaffected"


def test_starting_twice_is_refused(server: MetricsServer) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        server.start()


def test_an_impossible_port_is_refused(box: SnapshotBox) -> None:
    with pytest.raises(ValueError, match="metrics_port"):
        MetricsServer(box, HOST, 70_000, 3)


# -- real Prometheus tools ----------------------------------------------------------------------


def test_promtool_finds_no_problem_in_the_scraped_metrics(
    server: MetricsServer, box: SnapshotBox
) -> None:
    promtool = required_tool("promtool")
    box.publish(rich_snapshot())
    scraped = request(server.port, "/metrics").body
    assert b'class="other"' in scraped, "every kind of series is linted"
    result = subprocess.run(
        [promtool, "check", "metrics"], input=scraped, capture_output=True, timeout=30, check=False
    )
    problems = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, problems
    assert problems == ""


@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_live_snapshot(
    server: MetricsServer, box: SnapshotBox, tmp_path: Path
) -> None:
    prometheus = required_tool("prometheus")
    box.publish(ratio_snapshot((10, 3)))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: classimbalance\n"
        "    static_configs:\n"
        f"      - targets: ['{HOST}:{server.port}']\n"
    )
    api = f"http://{HOST}:{free_port()}"
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address={api.removeprefix('http://')}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def alive() -> None:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited: {log_path.read_text()}")

        def ready() -> bool | None:
            alive()
            try:
                with urllib.request.urlopen(f"{api}/-/ready", timeout=2) as response:
                    return response.status == 200 or None
            except OSError:
                return None

        def query(expression: str) -> float | None:
            alive()
            url = f"{api}/api/v1/query?query={urllib.parse.quote(expression)}"
            with urllib.request.urlopen(url, timeout=5) as response:
                result = json.load(response)["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        wait_for("Prometheus to be ready", ready, 15)
        ratio = wait_for(
            "the first scrape", lambda: query("classimbalance_imbalance_ratio"), timeout=25
        )
        assert ratio == 10 / 3
        assert query('classimbalance_status{classimbalance_status="InProgress"}') == 1
        assert query('up{job="classimbalance"}') == 1

        box.publish(ratio_snapshot((10, 4)))
        wait_for(
            "the new snapshot in Prometheus",
            lambda: query("classimbalance_imbalance_ratio == 2.5"),
            timeout=10,
        )
    finally:
        terminate_process(process)


# -- the live report ----------------------------------------------------------------------------


def test_the_report_is_served_as_html_and_gzipped_when_accepted(box: SnapshotBox) -> None:
    page = "<!DOCTYPE html><title>report</title>" + "x" * 5000
    with MetricsServer(box, HOST, 0, 3, report=lambda: page) as server:
        plain = request(server.port, "/report")
        assert plain.status == 200
        assert plain.headers["Content-Type"] == "text/html; charset=utf-8"
        assert plain.headers["Cache-Control"] == "no-store"
        assert plain.body.decode() == page
        packed = request(server.port, "/report", {"Accept-Encoding": "gzip"})
        assert packed.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(packed.body).decode() == page
        assert request(server.port, "/report", method="HEAD").body == b""


def test_the_report_turned_off_is_404_with_the_setting(server: MetricsServer) -> None:
    response = request(server.port, "/report")
    assert response.status == 404
    assert b"html_report" in response.body


def test_a_report_that_fails_to_render_is_500_and_health_still_answers(box: SnapshotBox) -> None:
    def broken() -> str:
        raise RuntimeError("boom")

    with MetricsServer(box, HOST, 0, 3, report=broken) as server:
        assert request(server.port, "/report").status == 500
        assert request(server.port, "/healthz").status == 200


# -- the connection loop's parts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("buffer", "end"),
    [
        (b"GET / HTTP/1.0\r\n\r\n", 18),
        (b"GET / HTTP/1.0\r\nHost: x\r\n\r\nbody", 27),
        (b"GET / HTTP/1.0\n\n", 16),
        (b"GET / HTTP/1.0\nHost: x\n\r\n", 25),
        (b"GET / HTTP/1.0\r\nHost: x\r\n", -1),
        (b"GET / HTT", -1),
        (b"", -1),
    ],
)
def test_a_head_ends_at_its_blank_line(buffer: bytes, end: int) -> None:
    from container.server.loop import head_end

    assert head_end(buffer) == end


@pytest.mark.parametrize(
    ("buffer", "searched", "end"),
    [
        (b"GET / HTTP/1.0\r\n\r\n", 15, 18),
        (b"GET / HTTP/1.0\r\n\r\n", 17, 18),
        (b"GET / HTTP/1.0\n\n", 15, 16),
        (b"GET / HTTP/1.0\nHost: x\n\r\n", 23, 25),
        (b"GET / HTTP/1.0\r\nHost: x\r\n", 20, -1),
    ],
)
def test_a_head_is_searched_only_where_its_end_can_be_new(
    buffer: bytes, searched: int, end: int
) -> None:
    """A blank line that ends past what was searched is found, however far back it began."""
    from container.server.loop import head_end

    assert head_end(buffer, searched) == end


def test_a_head_sent_a_byte_at_a_time_is_searched_once(
    server: MetricsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each byte of its own segment: the loop searches what came since the last search (and
    the few bytes a blank line can straddle), not the whole buffer again, which for a 32 KiB
    head dripped a byte at a time was half a billion bytes searched."""
    from container.server import loop

    searched: list[int] = []
    real_head_end = loop.head_end

    def counting(buffer: bytes | bytearray, already: int = 0) -> int:
        searched.append(len(buffer) - max(0, already - 3))
        return real_head_end(buffer, already)

    monkeypatch.setattr(loop, "head_end", counting)
    head = b"GET /healthz HTTP/1.0\r\nX-a: " + b"b" * 6000 + b"\r\n\r\n"
    with socket.create_connection((HOST, server.port), timeout=5) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for offset, byte in enumerate(head):
            client.sendall(bytes([byte]))
            if offset % 20 == 0:
                time.sleep(0.001)  # the loop reads apart what a busy machine would coalesce
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 200 "), answer[:100]
    assert len(searched) > 20, f"the bytes arrived apart: read {len(searched)} times"
    assert sum(searched) < 5 * len(head), f"{sum(searched)} bytes searched for {len(head)}"


def _responder(built: list[str]) -> Responder:
    """A Responder whose /report page and /metrics collector record that they were built."""
    from container.server.handler import Responder

    class Recording:
        def collect(self) -> list[Metric]:
            built.append("/metrics")
            return []

    registry = CollectorRegistry()
    registry.register(Recording())

    def page() -> str:
        built.append("/report")
        return "<p>report</p>"

    return Responder(SnapshotBox(not_ready()), registry, page)


ODD_SPELLINGS = [
    b"GET //metrics HTTP/1.0\r\n\r\n",
    b"GET ///report?x=1 HTTP/1.0\r\n\r\n",
    b"GET\x85/report HTTP/1.0\r\n\r\n",
    b"GET\xa0/metrics HTTP/1.0\r\n\r\n",
    b"HEAD\x1c/report\x1fHTTP/1.0\r\n\r\n",
    b"\x85GET /metrics\x1d\r\n\r\n",
    b"GET /metrics\r\n\r\n",
]
"""Requests http.server routes to /metrics or /report that a split on ASCII whitespace and a
``urlsplit`` of our own did not: it splits a latin-1 str (\\x85, \\xa0, \\x1c-\\x1f are
whitespace) and folds a leading ``//`` (3.11.7 and later)."""


@pytest.mark.parametrize(
    ("head", "built"),
    [
        (b"GET /metrics HTTP/1.1\r\n\r\n", True),
        (b"HEAD /metrics?name[]=x HTTP/1.1\r\n\r\n", True),
        (b"GET /report HTTP/1.0\r\n\r\n", True),
        (b"GET /healthz HTTP/1.1\r\n\r\n", False),
        (b"GET /readyz HTTP/1.1\r\n\r\n", False),
        (b"POST /metrics HTTP/1.1\r\n\r\n", False),
        (b"GET /metricsx HTTP/1.1\r\n\r\n", False),
        (b"GET http://pod:9410/metrics HTTP/1.1\r\n\r\n", True),
        (b"\r\n\r\n", False),
        *((head, True) for head in ODD_SPELLINGS),
    ],
)
def test_only_metrics_and_the_report_wait_for_a_worker(head: bytes, built: bool) -> None:
    """The loop's lane answers what builds nothing, and hands over (None) what the handler
    routes to a built answer, as the handler's own parse routes it."""
    recorded: list[str] = []
    responder = _responder(recorded)
    answered = responder.respond_unless_built(head, ("test", 0))
    assert (answered is None) is built
    assert recorded == [], "nothing built on the loop's lane"
    if built:
        responder.respond(head, ("test", 0))
        assert recorded or b"name[]" in head, "the worker's lane builds it"


_SPACES = [chr(c).encode("latin-1") for c in range(256) if chr(c).isspace() and c != 10]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=80),
        st.tuples(
            st.sampled_from([b"GET", b"HEAD", b"POST", b"get", b""]),
            st.sampled_from(_SPACES),
            st.sampled_from([b"/", b"//", b"///", b"http://h/", b"http://h//", b""]),
            st.sampled_from([b"metrics", b"report", b"healthz", b"readyz", b"x"]),
            st.sampled_from([b"", b"?name[]=a", b"#f", b"/"]),
            st.sampled_from(_SPACES),
            st.sampled_from([b"HTTP/1.0", b"HTTP/1.1", b"HTTP/0.9", b"HTTP/2.0", b""]),
        ).map(b"".join),
    ),
    st.sampled_from([b"\r\n\r\n", b"\n\n", b"\r\nHost: x\r\n\r\n"]),
)
def test_no_head_has_anything_built_on_the_loop_lane(start: bytes, blank: bytes) -> None:
    recorded: list[str] = []
    responder = _responder(recorded)
    responder.respond_unless_built(start + blank, ("test", 0))
    assert recorded == []


@pytest.mark.parametrize("head", ODD_SPELLINGS)
def test_no_spelling_of_metrics_or_the_report_is_built_on_the_loops_thread(
    box: SnapshotBox, head: bytes
) -> None:
    """The loop's thread answers every probe; a page built on it would hold them all."""
    built_on: list[str] = []

    class Recording:
        def collect(self) -> list[Metric]:
            built_on.append(threading.current_thread().name)
            return []

    def page() -> str:
        built_on.append(threading.current_thread().name)
        return "<p>report</p>"

    registry = CollectorRegistry()
    registry.register(Recording())
    with (
        MetricsServer(box, HOST, 0, 3, registry=registry, report=page) as server,
        socket.create_connection((HOST, server.port), timeout=5) as client,
    ):
        client.sendall(head)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    assert b"<p>report</p>" in answer or b"# TYPE" in answer or b"HEAD" in head, answer[:200]
    assert built_on, "it was built"
    assert all(name.startswith("metrics-worker-") for name in built_on), built_on


def test_limits_that_cannot_work_are_refused() -> None:
    from container.server import ServerLimits

    with pytest.raises(ValueError, match="head_timeout"):
        ServerLimits(head_timeout=0)
    with pytest.raises(ValueError, match="workers"):
        ServerLimits(workers=0)


def test_a_flood_of_scrapes_reuses_one_build_until_the_snapshot_changes(
    server: MetricsServer, box: SnapshotBox
) -> None:
    """Scrapes within SCRAPE_REUSE_SECONDS of a build, of the same snapshot, get the same bytes
    (the process metrics in them included); a new snapshot is built at once."""
    box.publish(ratio_snapshot((10, 3)))
    first = request(server.port, "/metrics").body
    assert all(request(server.port, "/metrics").body == first for _ in range(5))
    gzipped = request(server.port, "/metrics", {"Accept-Encoding": "gzip"})

    def evaluation_lines(body: bytes) -> list[bytes]:
        return [line for line in body.splitlines() if b"classimbalance" in line]

    assert evaluation_lines(gzip.decompress(gzipped.body)) == evaluation_lines(first), (
        "a variant of its own (built apart, so its process metrics may differ)"
    )
    box.publish(ratio_snapshot((10, 4)))
    assert request(server.port, "/metrics").body != first


def test_other_methods_are_501_and_answered_at_once(server: MetricsServer) -> None:
    assert request(server.port, "/metrics", method="POST").status == 501
    assert request(server.port, "/healthz", method="DELETE").status == 501
