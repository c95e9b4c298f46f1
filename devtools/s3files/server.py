"""The endpoint's servers: one in this process or several worker processes, and the counts."""

from __future__ import annotations

import contextlib
import os
import pickle
import selectors
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

from devtools.s3files.handler import _Handler, _Recorder
from devtools.s3files.index import _scan_root, _State

START_TIMEOUT = 60.0
"""Seconds a worker process may take to start serving."""


class _Tally:
    """Counts by (client, kind), in the process that serves."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def record(self, client: str, kind: str) -> None:
        with self._lock:
            self._counts[(client, kind)] += 1

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self._counts)


class _LineLog:
    """A worker process's records: a line per request, appended to its own file by one unbuffered
    write before the request is answered, so that the parent can count what was answered."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def record(self, client: str, kind: str) -> None:
        os.write(self._fd, f"{client}\t{kind}\n".encode())


class _LineReader:
    """The parent's side of the workers' files: the lines appended since the last look, added up."""

    def __init__(self, paths: list[str]) -> None:
        self._paths = paths
        self._offsets = [0] * len(paths)
        self._rests = [b""] * len(paths)
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            for index, path in enumerate(self._paths):
                try:
                    with open(path, "rb") as file:
                        file.seek(self._offsets[index])
                        data = file.read()
                except FileNotFoundError:
                    continue
                self._offsets[index] += len(data)
                lines, _, self._rests[index] = (self._rests[index] + data).rpartition(b"\n")
                for line in lines.split(b"\n") if lines else []:
                    client, _, kind = line.decode("utf-8", "replace").partition("\t")
                    self._counts[(client, kind)] += 1
            return Counter(self._counts)


class _HTTPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A thread per connection, on a socket bound and listening already."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, listener: socket.socket, state: _State, log: _Recorder) -> None:
        address = listener.getsockname()[:2]
        super().__init__(address, _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.server_address = address
        self.state = state
        self.log = log
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End the kept-alive connections, whose threads would otherwise wait for the client."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


def _worker_main(argv: list[str]) -> None:
    """A worker process (``_WORKER`` runs it): accept on the inherited listening socket until the
    parent ends it or goes away (its end of our stdin closes)."""
    state_path, descriptor, log_path = argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    with open(state_path, "rb") as file:
        state = cast(_State, pickle.load(file))  # the parent's, in its private folder
    listener = socket.socket(fileno=int(descriptor))
    listener.setblocking(False)  # the workers race for each connection: a loser must not block
    server = _HTTPServer(listener, state, _LineLog(log_path))
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    server.serve_forever(poll_interval=1.0)


def _exit_with_parent() -> None:
    sys.stdin.buffer.read()
    os._exit(0)


_WORKER = "import sys; from devtools.s3files.server import _worker_main; _worker_main(sys.argv[1:])"


def _wait_ready(worker: subprocess.Popen[bytes], deadline: float) -> None:
    assert worker.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(worker.stdout, selectors.EVENT_READ)
        if not selector.select(max(0.0, deadline - time.monotonic())):
            raise RuntimeError(f"an s3files worker did not start in {START_TIMEOUT} s")
    if worker.stdout.readline() != b"ready\n":
        raise RuntimeError(f"an s3files worker exited {worker.wait(10)} as it started")
    worker.stdout.close()


class StaticS3Server:
    """A read-only S3 endpoint for the buckets in ``root`` (its subfolders) on ``host`` and a free
    port (or ``port``), counting requests by client and kind.

    ``latency`` seconds are slept before each response; ``processes`` > 1 serves from that many
    worker processes (new interpreters, given the listening socket and the index) on one port,
    else a thread of this process serves. Counts stay available after :meth:`stop`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        latency: float = 0.0,
        processes: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if latency < 0:
            raise ValueError(f"Expected a latency of 0 s or more, but got {latency}")
        if processes < 1:
            raise ValueError(f"Expected 1 process or more, but got {processes}")
        self.root = Path(root)
        self.latency = latency
        self.processes = processes
        self.host = host
        self.port = port
        self.buckets: dict[str, int] = {}
        """Objects per bucket, once started."""
        self._address: tuple[str, int] | None = None
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._workers: list[subprocess.Popen[bytes]] = []
        self._scratch: str | None = None
        self._counter: _Tally | _LineReader | None = None
        self._baseline: Counter[tuple[str, str]] = Counter()
        self._final: Counter[tuple[str, str]] | None = None

    @property
    def endpoint(self) -> str:
        assert self._address is not None, "start() first"
        host, port = self._address
        return f"http://{host}:{port}"

    @property
    def pids(self) -> list[int]:
        """The processes that serve: the workers', or this one's."""
        return [worker.pid for worker in self._workers] or [os.getpid()]

    def start(self) -> None:
        assert self._address is None, "started already"
        buckets = _scan_root(self.root)
        self.buckets = {name: len(bucket.keys) for name, bucket in buckets.items()}
        state = _State(buckets, self.latency)
        listener = socket.create_server((self.host, self.port), backlog=1024)
        self._address = (self.host, int(listener.getsockname()[1]))
        try:
            if self.processes == 1:
                tally = _Tally()
                self._counter = tally
                self._server = _HTTPServer(listener, state, tally)
                self._thread = threading.Thread(
                    target=self._server.serve_forever,
                    kwargs={"poll_interval": 0.05},
                    name="s3files",
                    daemon=True,
                )
                self._thread.start()
            else:
                self._start_workers(listener, state)
        except BaseException:
            listener.close()
            self.stop()
            raise

    def _start_workers(self, listener: socket.socket, state: _State) -> None:
        self._scratch = tempfile.mkdtemp(prefix="s3files-")
        state_path = os.path.join(self._scratch, "state.pickle")
        with open(state_path, "wb") as file:
            pickle.dump(state, file, protocol=pickle.HIGHEST_PROTOCOL)
        paths = [os.path.join(self._scratch, f"worker-{i}.log") for i in range(self.processes)]
        self._counter = _LineReader(paths)
        listener.setblocking(False)
        here = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
        descriptor = listener.fileno()
        for path in paths:
            self._workers.append(
                subprocess.Popen(
                    [sys.executable, "-c", _WORKER, state_path, str(descriptor), path],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                    pass_fds=(descriptor,),
                )
            )
        deadline = time.monotonic() + START_TIMEOUT
        for worker in self._workers:
            _wait_ready(worker, deadline)
        listener.close()  # the workers have theirs; with them gone, connections are refused

    def stop(self) -> None:
        """Stop serving (idempotent): connections are closed, worker processes ended."""
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        for worker in self._workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in self._workers:
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            if worker.stdin is not None:
                worker.stdin.close()
        if self._counter is not None and self._final is None:
            self._final = self._counter.snapshot()
        self._workers = []
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _snapshot(self) -> Counter[tuple[str, str]]:
        if self._final is not None:
            return self._final - self._baseline
        if self._counter is None:
            return Counter()
        return self._counter.snapshot() - self._baseline

    def clear(self) -> None:
        """Forget what was served so far, so that what follows is counted on its own."""
        self._baseline += self._snapshot()

    def counts(self, client: str | None = None) -> dict[str, int]:
        """Requests by kind (LIST, GET, HEAD, or the operation for any other), of one access
        key's requests if given: ``CountingS3Server.counts``."""
        kinds: Counter[str] = Counter()
        for (who, kind), number in self._snapshot().items():
            if client is None or who == client:
                kinds[kind] += number
        return dict(kinds)

    def clients(self) -> dict[str, dict[str, int]]:
        """Requests by access key, then kind."""
        by_client: dict[str, dict[str, int]] = {}
        for (who, kind), number in sorted(self._snapshot().items()):
            by_client.setdefault(who, {})[kind] = number
        return by_client
