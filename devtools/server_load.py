"""A load on the metrics server as a hostile or unlucky crowd makes it: slowloris clients,
half-open connections, clients that ask for a response and never read it, and a ``/metrics``
flood, while a probe loop measures how long ``/healthz`` takes to answer.

``python -m devtools.server_load`` starts the server in a process of its own (``serve``), the
flood in another (``flood``: its threads share no GIL with the probe loop, so the probe's
latency is the server's, not the load tool's), holds the rest from this one, and prints the
figures (``--json`` for the fault catalogue, tests/faults/test_server.py). Loopback only;
every socket and child is closed at the end, whatever happened.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

HOST = "127.0.0.1"
PROBE_INTERVAL = 0.02
"""Seconds between two health probes: fifty a second, as dense as a kubelet never is, so a
stall of a tenth of a second shows."""
CLIENT_TIMEOUT = 5.0
"""How long a probe or a scrape waits before it counts as a timeout (a kubelet's default probe
timeout is 1 s; a scrape's 10 s)."""
CONNECT_TIMEOUT = 3.0
"""A connection not accepted within this long counts as refused: a SYN dropped by a full
backlog is retried after 1 s, then 3 s."""
SLOWLORIS_START = b"GET /metrics HTTP/1.1\r\nHost: load\r\n"
"""What a slowloris client sends at once: a request line and a header, never the blank line."""
OPENERS = 4
"""Threads opening each kind of connection at once: a burst, as a port scan or a crowd of
reconnecting clients makes one (each kind's count is divided among them)."""
REPORT_BYTES = 4 * 1024 * 1024
"""The size of the served report page: larger than what loopback's socket buffers hold, so a
client that never reads leaves the server with a response it cannot finish."""


@dataclass
class Figures:
    """What one load run measured."""

    seconds: float = 0.0
    metrics_ok: int = 0
    metrics_timeouts: int = 0
    metrics_errors: int = 0
    metrics_busy: int = 0
    metrics_per_second: float = 0.0
    refused: int = 0
    not_opened_in_time: int = 0
    slowest_connect: float = 0.0
    slow_opened: int = 0
    half_open_opened: int = 0
    never_read_opened: int = 0
    probes: int = 0
    probe_failures: int = 0
    probe_p50: float = 0.0
    probe_p99: float = 0.0
    probe_max: float = 0.0
    server_threads_peak: int = 0
    server_rss_peak_mib: float = 0.0
    server_cpu_seconds: float = 0.0
    probe_errors: list[str] = field(default_factory=list)
    crowd_open_seconds: float = 0.0
    """How long the burst took: from the first connection of the crowd to its last open."""
    crowd_accepted_seconds: float = 0.0
    """When the server held the whole crowd (its descriptors): the end of the burst for it."""
    held_probes: int = 0
    """Probes begun once the server held the whole crowd: the figures below are theirs."""
    held_probe_p99: float = 0.0
    held_probe_max: float = 0.0
    probe_slowest: list[tuple[float, float]] = field(default_factory=list)
    """The five slowest probes: (seconds after the crowd began, seconds taken)."""
    probe_times: list[tuple[float, float]] = field(default_factory=list, repr=False)
    """Every probe (internal: the run's, not printed)."""
    started: float = 0.0
    """When the crowd began (internal: a monotonic time)."""


# -- the server's side ---------------------------------------------------------------------------


def serve(report_bytes: int, head_timeout: float | None, write_timeout: float | None) -> None:
    """Serve a snapshot of a real rule and a large report until stdin closes."""
    import numpy as np  # only the serving child needs the rule

    from container.server import MetricsServer
    from container.snapshot import Progress, SnapshotBox, take_snapshot
    from evaluator.core import ClassImbalanceRule, RuleParameters, WorkerBatch

    rule = ClassImbalanceRule(RuleParameters(samples=0, max_classes=20))
    generator = np.random.default_rng(0)
    for step in range(10):
        batches = [
            WorkerBatch(
                f"worker_{worker}",
                mode,
                {
                    "labels": generator.integers(0, 20, 256, dtype=np.int64),
                    "predictions": generator.integers(0, 20, 256, dtype=np.int64),
                },
            )
            for worker in range(2)
            for mode in ("TRAIN", "EVAL")
        ]
        rule.evaluate_step(step, batches)
    snapshot = take_snapshot(
        rule,
        status="InProgress",
        trial="/trials/load",
        ready=True,
        progress=Progress(last_evaluation_time=time.time()),
    )
    # Not compressible to nothing: a gzip-accepting client still gets megabytes.
    page = "<!DOCTYPE html><title>load</title><pre>" + os.urandom(report_bytes // 2).hex()
    box = SnapshotBox(snapshot)
    if head_timeout is None and write_timeout is None:
        # No limits asked: a measurement of the server from before it had them works too.
        server = MetricsServer(box, HOST, 0, 20, report=lambda: page)
    else:
        from container.server import ServerLimits

        defaults = ServerLimits()
        limits = ServerLimits(
            head_timeout=head_timeout or defaults.head_timeout,
            write_timeout=write_timeout or defaults.write_timeout,
        )
        server = MetricsServer(box, HOST, 0, 20, report=lambda: page, limits=limits)
    server.start()
    try:
        print(server.port, flush=True)
        sys.stdin.read()
    finally:
        server.stop()


# -- the crowd -----------------------------------------------------------------------------------


def get(port: int, path: str) -> int:
    """One GET on a fresh connection; its status (the body read to the end)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=CLIENT_TIMEOUT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def flood(port: int, seconds: float, threads: int) -> dict[str, int]:
    """``threads`` threads asking for ``/metrics`` back to back for ``seconds``."""
    counts = {"ok": 0, "timeouts": 0, "errors": 0, "busy": 0}
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + seconds

    def scrape() -> None:
        while time.monotonic() < deadline:
            try:
                status = get(port, "/metrics")
                outcome = "ok" if status == 200 else "busy" if status == 503 else "errors"
            except TimeoutError:
                outcome = "timeouts"
            except OSError:
                outcome = "errors"
            with lock:
                counts[outcome] += 1

    workers = [threading.Thread(target=scrape, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 2 * CLIENT_TIMEOUT)
    counts["elapsed_ms"] = round(1000 * (time.monotonic() - started))
    return counts


def connect(port: int, receive_buffer: int | None = None) -> socket.socket | None:
    """A connection, or None when it was refused or not accepted within CONNECT_TIMEOUT."""
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    client.settimeout(CONNECT_TIMEOUT)
    try:
        client.connect((HOST, port))
    except OSError:
        client.close()
        return None
    return client


class Crowd:
    """The connections held open through a run; ``close`` closes every one."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.slowloris: list[socket.socket] = []
        self.refused = 0
        self.late = 0
        self.slowest_connect = 0.0
        self.opened = {"half_open": 0, "slow": 0, "never_read": 0}
        self._lock = threading.Lock()

    def open(
        self,
        port: int,
        count: int,
        first: bytes,
        receive_buffer: int | None = None,
        deadline: float = float("inf"),
    ) -> int:
        """Open ``count`` connections that send ``first``, until ``deadline``; how many were
        accepted (those not tried by then count in ``late``)."""
        opened = 0
        for attempt in range(count):
            if time.monotonic() > deadline:
                with self._lock:
                    self.late += count - attempt
                break
            started = time.monotonic()
            client = connect(port, receive_buffer)
            if client is None:
                with self._lock:
                    self.refused += 1
                continue
            with self._lock:
                self.slowest_connect = max(self.slowest_connect, time.monotonic() - started)
                self.sockets.append(client)
                if first == SLOWLORIS_START:
                    self.slowloris.append(client)
            if first:
                with contextlib.suppress(OSError):
                    client.sendall(first)
            opened += 1
        kind = "slow" if first == SLOWLORIS_START else "never_read" if first else "half_open"
        with self._lock:
            self.opened[kind] += opened
        return opened

    def slow(self) -> list[socket.socket]:
        with self._lock:
            return list(self.slowloris)

    def close(self) -> None:
        with self._lock:
            sockets, self.sockets, self.slowloris = self.sockets, [], []
        for client in sockets:
            client.close()


def drip(crowd: Crowd, stop: threading.Event, interval: float) -> None:
    """Slowloris: one more header line on every slow connection each ``interval``, never the
    end of the head."""
    while not stop.wait(interval):
        for client in crowd.slow():
            client.settimeout(0.05)
            with contextlib.suppress(OSError):
                client.send(b"X-a: b\r\n")


def probe_loop(port: int, stop: threading.Event, figures: Figures, latencies: list[float]) -> None:
    while not stop.wait(PROBE_INTERVAL):
        started = time.monotonic()
        try:
            status = get(port, "/healthz")
        except OSError as error:
            figures.probe_failures += 1
            figures.probe_errors.append(f"{type(error).__name__}: {error}")
            continue
        latencies.append(time.monotonic() - started)
        figures.probe_times.append((round(started - figures.started, 3), round(latencies[-1], 4)))
        if status != 200:
            figures.probe_failures += 1
            figures.probe_errors.append(f"status {status}")


def sample_server(pid: int, stop: threading.Event, figures: Figures, crowd: int) -> None:
    """The serving process's peak thread count, resident memory and CPU time, from /proc, and
    when it had accepted the whole ``crowd`` (descriptors open past it)."""
    while not stop.wait(0.05):
        if not figures.crowd_accepted_seconds and figures.started:
            with contextlib.suppress(OSError):
                if len(os.listdir(f"/proc/{pid}/fd")) >= crowd:
                    accepted = time.monotonic() - figures.started
                    figures.crowd_accepted_seconds = round(accepted, 3)
        try:
            with open(f"/proc/{pid}/status") as status:
                lines = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:
            return
        figures.server_threads_peak = max(figures.server_threads_peak, int(lines["Threads"]))
        rss_mib = int(lines["VmRSS"].split()[0]) / 1024
        figures.server_rss_peak_mib = max(figures.server_rss_peak_mib, rss_mib)
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])  # utime + stime
            figures.server_cpu_seconds = round(ticks / os.sysconf("SC_CLK_TCK"), 2)


@contextlib.contextmanager
def child(command: list[str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        yield process
    finally:
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def module_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "devtools.server_load", *arguments]


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def run(arguments: argparse.Namespace) -> Figures:
    """The whole crowd at once against a fresh server; the figures."""
    serve_command = module_command("serve", "--report-bytes", str(arguments.report_bytes))
    if arguments.head_timeout is not None:
        serve_command += ["--head-timeout", str(arguments.head_timeout)]
    if arguments.write_timeout is not None:
        serve_command += ["--write-timeout", str(arguments.write_timeout)]
    figures = Figures(seconds=arguments.seconds)
    latencies: list[float] = []
    crowd = Crowd()
    stop = threading.Event()
    with child(serve_command) as server:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        helpers = [
            threading.Thread(
                target=sample_server,
                args=(server.pid, stop, figures, arguments.half_open + arguments.slow),
                daemon=True,
            ),
            threading.Thread(target=probe_loop, args=(port, stop, figures, latencies), daemon=True),
        ]
        for helper in helpers:
            helper.start()
        try:
            flood_command = module_command("flood", "--port", str(port))
            flood_command += ["--seconds", str(arguments.seconds)]
            flood_command += ["--threads", str(arguments.flood_threads)]
            with child(flood_command) as flooder:
                figures.started = time.monotonic()
                deadline = figures.started + arguments.seconds
                openers = [
                    threading.Thread(
                        target=crowd.open,
                        args=(port, count // OPENERS, first, buffer, deadline),
                    )
                    for count, first, buffer in (
                        (arguments.half_open, b"", None),
                        (arguments.slow, SLOWLORIS_START, None),
                        (arguments.never_read, b"GET /report HTTP/1.0\r\n\r\n", 4096),
                    )
                    for _ in range(OPENERS)
                ]
                for opener in openers:
                    opener.start()
                dripper = threading.Thread(target=drip, args=(crowd, stop, 1.0), daemon=True)
                dripper.start()
                helpers.append(dripper)
                for opener in openers:
                    opener.join()
                figures.crowd_open_seconds = round(time.monotonic() - figures.started, 3)
                assert flooder.stdout is not None
                counts = json.loads(flooder.stdout.read() or "{}")
        finally:
            stop.set()
            for helper in helpers:
                helper.join(2 * CLIENT_TIMEOUT)
            crowd.close()
    figures.metrics_ok = counts.get("ok", 0)
    figures.metrics_timeouts = counts.get("timeouts", 0)
    figures.metrics_errors = counts.get("errors", 0)
    figures.metrics_busy = counts.get("busy", 0)
    elapsed = counts.get("elapsed_ms", 0) / 1000
    figures.metrics_per_second = round(figures.metrics_ok / max(elapsed, 1e-9), 1)
    figures.refused = crowd.refused
    figures.not_opened_in_time = crowd.late
    figures.slowest_connect = round(crowd.slowest_connect, 4)
    figures.half_open_opened = crowd.opened["half_open"]
    figures.slow_opened = crowd.opened["slow"]
    figures.never_read_opened = crowd.opened["never_read"]
    figures.probes = len(latencies) + figures.probe_failures
    if latencies:
        figures.probe_p50 = round(statistics.median(latencies), 4)
        figures.probe_p99 = round(percentile(latencies, 0.99), 4)
        figures.probe_max = round(max(latencies), 4)
    figures.probe_errors = figures.probe_errors[:10]
    figures.probe_slowest = sorted(figures.probe_times, key=lambda probe: -probe[1])[:5]
    burst_end = figures.crowd_accepted_seconds or float("inf")
    held = [took for at, took in figures.probe_times if at > burst_end]
    figures.held_probes = len(held)
    figures.held_probe_p99 = round(percentile(held, 0.99), 4)
    figures.held_probe_max = round(max(held, default=0.0), 4)
    figures.probe_times = []
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", default="run", choices=["run", "serve", "flood"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--slow", type=int, default=500, help="slowloris connections")
    parser.add_argument("--half-open", type=int, default=1100, help="connections sending nothing")
    parser.add_argument("--never-read", type=int, default=20, help="/report, never read")
    parser.add_argument("--flood-threads", type=int, default=8)
    parser.add_argument("--report-bytes", type=int, default=REPORT_BYTES)
    parser.add_argument("--head-timeout", type=float, default=None)
    parser.add_argument("--write-timeout", type=float, default=None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args(argv)
    if arguments.role == "serve":
        serve(arguments.report_bytes, arguments.head_timeout, arguments.write_timeout)
    elif arguments.role == "flood":
        print(json.dumps(flood(arguments.port, arguments.seconds, arguments.threads)), flush=True)
    else:
        figures = asdict(run(arguments))
        for internal in ("probe_times", "started"):
            del figures[internal]
        if arguments.json:
            print(json.dumps(figures))
        else:
            for name, value in figures.items():
                print(f"{name:>22}: {value}")


if __name__ == "__main__":
    main()
