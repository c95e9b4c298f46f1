"""The metrics server's bounds on threads, connections, memory and time per client.

A sidecar's port is reachable from the whole pod network: a scraper that hangs, a slowloris
client, a port scan holding thousands of connections or a browser tab that stops reading must
not hold the threads that answer the kubelet's probes, nor make the sidecar's memory grow with
them. Each bound is a named constant with why it has its value, gathered in ``ServerLimits``
(what ``MetricsServer`` takes; the tests shrink the times to keep load cases short). Nothing
here is an operator setting.
"""

from __future__ import annotations

from dataclasses import dataclass

HEAD_TIMEOUT = 10.0
"""Seconds a client has, from its connection, to send a whole request head (request line and
headers). Scrapers, probes, curl and browsers send theirs at once; a slowloris client dripping
a header every few seconds is dropped when this runs out (a per-read socket timeout would let it
drip forever). Connections waiting for a head hold no thread, so this bounds how long they hold
a file descriptor and a few KiB, not the probes."""

WRITE_TIMEOUT = 10.0
"""Seconds a client has to take a whole response, from when it is ready: Prometheus's default
scrape timeout, after which a scraper has given up anyway. A client that never reads (or reads a
byte a second) is dropped then, and its unsent response freed."""

BUILD_TIMEOUT = 10.0
"""Seconds a ``/metrics`` or ``/report`` request has, from when its head is read, to wait for a
worker and be built: Prometheus's default scrape timeout, after which a scraper has given up
anyway. Past it the client is answered 503 with ``Retry-After`` and its connection freed. A
build still running then keeps its worker until it returns (a thread cannot be stopped), is
logged as a warning, and keeps its place in MAX_QUEUED: with every worker held, the queue
fills and further scrapes are answered 503 at once, while the loop answers the probes."""

MAX_HEAD_BYTES = 32 * 1024
"""Largest request head read: real requests are a few hundred bytes (a ``name[]`` filter of a
hundred metric names is ~5 KiB); a larger one is answered 414 or 431 and closed, so a client
cannot make the server buffer without end."""

MAX_CONNECTIONS = 4096
"""Connections held at once. One waiting for its head costs a file descriptor and at most
MAX_HEAD_BYTES, so 4096 of them cost at most 128 MiB (each sending a head just short of the
bound) and a few MiB typically. Past it, the connection that has waited longest for its head
is closed to make room, so a flood of idle connections can never lock out a new probe (so is
one when the process runs out of descriptors). Far above the 1,100 half-open connections a
port scan held in testing, and below the 20,000 descriptors a pod typically has."""

LISTEN_BACKLOG = 4096
"""The kernel's queue of connections not yet accepted (clamped by ``net.core.somaxconn``,
4096 on current kernels; the queue costs nothing until filled). The stdlib's default of 5
refused 2 of a burst of 500 connections and delayed others (a probe among them) by the 1 s SYN
retry; with 1,024, a burst of 1,620 connections from 12 threads still overflowed it once. The
loop accepts as fast as connections arrive, so the queue only has to absorb a burst."""

WORKERS = 4
"""Threads that build ``/metrics`` and ``/report`` responses, fixed whatever the number of
clients. Building is CPU work under the GIL (a scrape takes about a millisecond), so more would
not answer faster on the two cores a sidecar gets; four keep a slow report page from delaying
every scrape behind it."""

MAX_QUEUED = 64
"""Requests for ``/metrics`` or ``/report`` waiting for or being built by a worker. Past it,
the server answers 503 with ``Retry-After`` at once instead of queueing without bound (a
Prometheus server retries at its next scrape). Probes never queue: the loop answers them
itself."""

MAX_UNSENT_BYTES = 64 * 1024 * 1024
"""Bytes of built responses not yet taken by their clients. When a new ``/metrics`` or
``/report`` request finds this much unsent, responses stalled for STALLED_AFTER are dropped to
make room, and if none is, the request is answered 503: clients that never read cannot make
memory follow their number times the size of the report."""

STALLED_AFTER = 1.0
"""Seconds without a byte taken after which an unsent response may be dropped to make room
under MAX_UNSENT_BYTES (a reading client takes bytes every few milliseconds)."""


@dataclass(frozen=True)
class ServerLimits:
    """The bounds one server runs with; the defaults are the constants above."""

    head_timeout: float = HEAD_TIMEOUT
    write_timeout: float = WRITE_TIMEOUT
    build_timeout: float = BUILD_TIMEOUT
    max_head_bytes: int = MAX_HEAD_BYTES
    max_connections: int = MAX_CONNECTIONS
    listen_backlog: int = LISTEN_BACKLOG
    workers: int = WORKERS
    max_queued: int = MAX_QUEUED
    max_unsent_bytes: int = MAX_UNSENT_BYTES
    stalled_after: float = STALLED_AFTER

    def __post_init__(self) -> None:
        for name in ("head_timeout", "write_timeout", "build_timeout", "stalled_after"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"Expected `{name}` to be positive, but got {getattr(self, name)!r}"
                )
        for name in (
            "max_head_bytes",
            "max_connections",
            "listen_backlog",
            "workers",
            "max_queued",
        ):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"Expected `{name}` to be at least 1, but got {getattr(self, name)!r}"
                )
