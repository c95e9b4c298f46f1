"""The metrics server's connection loop: one thread owns every socket, a fixed pool builds the
heavy answers.

A thread per connection (the stdlib's ``ThreadingHTTPServer``) lets threads and memory grow
with clients, and a probe waits behind whatever the crowd holds. Here a single thread accepts,
reads request heads without blocking, answers the probes (and every error) itself, hands
``/metrics`` and ``/report`` to ``ServerLimits.workers`` threads through a bounded queue, and
writes every response without blocking. No thread ever waits on a client, so a slowloris client,
a half-open connection or one that never reads costs a file descriptor and its buffers until its
deadline (``limits.py``), and a probe is answered as soon as its head is read, whatever the
crowd. Each response closes its connection (HTTP/1.0, as the stdlib server answered). A request
handed to the workers has a deadline too (``build_timeout``): past it, its client is answered 503
and a build still running is logged, its worker held until it returns.

Imported by ``MetricsServer.start`` only, with the handler.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import selectors
import socket
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from http import HTTPStatus

from container.server.handler import Responder, plain_response
from container.server.limits import ServerLimits

logger = logging.getLogger("container.server")

_RECEIVE_BYTES = 16 * 1024
"""Bytes read from a connection per wake-up: a whole real request head at once."""
_SEND_BYTES = 256 * 1024
"""Bytes offered to a connection per wake-up, so one fast client's large report cannot keep the
loop from the others for long."""
_ACCEPTS_PER_WAKE = 512
"""Connections accepted per wake-up before the loop turns to those it holds. The kernel's
queue is first in, first out, so a probe arriving in a burst waits until the burst ahead of it
is accepted: the loop takes a burst in large rounds, and a probe already accepted still waits
for one round at most."""
_SWEEP_INTERVAL = 0.1
"""How often deadlines are checked: the precision of HEAD_TIMEOUT and WRITE_TIMEOUT."""
_OUT_OF_DESCRIPTORS_WARNING = 60.0
"""Seconds between two warnings of running out of descriptors: at the limit, accepting pauses
and resumes on every sweep, and each pause would repeat it."""
_RESET = struct.pack("ii", 1, 0)
"""SO_LINGER on, for 0 s: closing sends a reset and drops what the kernel still holds to send."""
_BUSY = plain_response(
    HTTPStatus.SERVICE_UNAVAILABLE,
    b"the metrics server is busy; retry shortly\n",
    {"Retry-After": "1"},
)
_URI_TOO_LONG = plain_response(HTTPStatus.REQUEST_URI_TOO_LONG, b"request line too long\n")
_HEAD_TOO_LARGE = plain_response(
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, b"request headers too large\n"
)
_TOO_SLOW = plain_response(
    HTTPStatus.SERVICE_UNAVAILABLE,
    b"building the response took too long; retry shortly\n",
    {"Retry-After": "1"},
)
_INTERNAL_ERROR = plain_response(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n")
_BLANK_LINES = (b"\r\n\r\n", b"\n\n", b"\n\r\n")
_LONGEST_BLANK = max(len(blank) for blank in _BLANK_LINES)


@dataclass(eq=False)
class _Connection:
    """One client's socket and where its request stands."""

    sock: socket.socket
    address: tuple[str, int]
    deadline: float
    head: bytearray = field(default_factory=bytearray)
    unsent: memoryview | None = None
    progressed: float = 0.0
    """When the client last took bytes of its response."""
    abandoned: bool = False
    """Handed to a worker, then answered 503 at its build deadline: what the worker builds (or
    would) is dropped."""


@dataclass(eq=False)
class _Build:
    """What one worker is building, for the loop to warn of one that runs past its bound."""

    started: float
    request_line: bytes
    warned: bool = False


def head_end(buffer: bytes | bytearray, searched: int = 0) -> int:
    """The length of the request head at the start of ``buffer`` (through its blank line), or
    -1 while it is incomplete. Lines may end in CRLF or a bare LF, as http.server accepts.

    ``searched``: the length of ``buffer`` already searched and found incomplete; only what a
    blank line ending past it can start in is searched again, so a head arriving a byte at a
    time is searched once in all, not once per byte."""
    start = max(0, searched - (_LONGEST_BLANK - 1))
    ends = [
        found + len(blank) for blank in _BLANK_LINES if (found := buffer.find(blank, start)) >= 0
    ]
    return min(ends) if ends else -1


class ConnectionLoop:
    """Serves ``responder`` on ``address`` until ``stop``; ``serve`` is the loop's thread."""

    def __init__(
        self, address: tuple[str, int], responder: Responder, limits: ServerLimits
    ) -> None:
        host = address[0].strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, address[1]))
            listener.listen(limits.listen_backlog)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.server_address: tuple[str, int] = listener.getsockname()[:2]
        self._responder = responder
        self._limits = limits
        self._selector = selectors.DefaultSelector()
        self._waking, self._wake = socket.socketpair()
        self._waking.setblocking(False)
        self._wake.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._selector.register(self._waking, selectors.EVENT_READ, None)
        self._connections: dict[int, _Connection] = {}
        self._reading: OrderedDict[int, _Connection] = OrderedDict()
        """Connections waiting for their head, oldest first: the ones closed to make room."""
        self._writing: dict[int, _Connection] = {}
        """Connections with a response being written, in the order their deadlines fall."""
        self._handed: dict[int, _Connection] = {}
        """Connections whose request a worker is to build, in the order their deadlines fall."""
        self._unsent_bytes = 0
        self._queued = 0
        """Requests handed to the workers that no worker has given back yet (touched by the
        loop only): one answered 503 at its deadline still counts, so workers held by builds
        that never return fill the queue, and past it scrapes are answered 503 at once."""
        self._work: queue.SimpleQueue[tuple[_Connection, bytes] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[_Connection, bytes | None]] = queue.SimpleQueue()
        self._builds: list[_Build | None] = [None] * limits.workers
        """What each worker is building (each writes its own slot), None while it waits."""
        self._stopping = threading.Event()
        self._workers = [
            threading.Thread(
                target=self._work_loop, args=(n,), name=f"metrics-worker-{n}", daemon=True
            )
            for n in range(limits.workers)
        ]
        self._accept_paused_until: float | None = None
        """While out of descriptors: when to watch the listener again (it is not watched
        meanwhile, or select would return at once on every pass, the backlog being readable)."""
        self._out_of_descriptors_warned = -_OUT_OF_DESCRIPTORS_WARNING
        """When running out of descriptors was last warned of."""
        self._next_sweep = 0.0

    # -- the loop's thread ---------------------------------------------------------------------

    def serve(self) -> None:
        """Run until ``stop``; closes every connection and the listener on the way out."""
        for worker in self._workers:
            worker.start()
        self._next_sweep = time.monotonic() + _SWEEP_INTERVAL
        try:
            while not self._stopping.is_set():
                try:
                    self._turn()
                except Exception:  # a bug here must not end the serving of every client
                    logger.warning("the metrics server's loop failed", exc_info=True)
                    self._stopping.wait(_SWEEP_INTERVAL)  # and must not spin if it repeats
        finally:
            self._close_all()

    def _turn(self) -> None:
        """One wake-up: what is ready, the workers' answers, the deadlines when due."""
        for key, events in self._selector.select(_SWEEP_INTERVAL):
            try:
                self._dispatch(key, events)
            except Exception:  # one client's failure closes that client only
                logger.warning("serving a metrics client failed", exc_info=True)
                if (connection := self._connections.get(key.fd)) is not None:
                    self._close(connection)
        self._take_answers()
        now = time.monotonic()
        if now >= self._next_sweep:
            self._sweep(now)
            self._next_sweep = now + _SWEEP_INTERVAL

    def _dispatch(self, key: selectors.SelectorKey, events: int) -> None:
        if key.fileobj is self._listener:
            self._accept()
        elif key.fileobj is self._waking:
            with contextlib.suppress(BlockingIOError):
                self._waking.recv(4096)
        else:
            connection = self._connections.get(key.fd)
            if connection is None:
                return
            if events & selectors.EVENT_WRITE:
                self._write(connection)
            elif events & selectors.EVENT_READ:
                self._read(connection)

    def _accept(self) -> None:
        # Connections accepted in this round are not idle (their heads are not read yet), so
        # never closed for room: out of descriptors, the kernel refuses an accept even with
        # nothing waiting, and closing the one just accepted would reset every new client.
        fresh = 0
        for _ in range(_ACCEPTS_PER_WAKE):
            try:
                sock, address = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: make room from the idle, or wait a moment.
                    idle = len(self._reading) > fresh  # the oldest first, this round's last
                    if not (idle and self._close_oldest_reading()):
                        self._pause_accepting(error)
                        return
                    continue
                logger.debug("accepting a metrics client failed: %s", error)
                return
            full = len(self._connections) >= self._limits.max_connections
            if full and not self._close_oldest_reading():
                sock.close()  # every connection is being answered: this one waits its turn
                continue
            sock.setblocking(False)
            fresh += 1
            connection = _Connection(
                sock, address[:2], time.monotonic() + self._limits.head_timeout
            )
            self._connections[sock.fileno()] = connection
            self._reading[sock.fileno()] = connection
            self._selector.register(sock, selectors.EVENT_READ, None)

    def _pause_accepting(self, error: OSError) -> None:
        """Stop watching the listener until the next sweep: no descriptor to take a connection
        with, and none idle to close for one (every connection is being answered)."""
        now = time.monotonic()
        self._accept_paused_until = now + _SWEEP_INTERVAL
        self._selector.unregister(self._listener)
        if now - self._out_of_descriptors_warned >= _OUT_OF_DESCRIPTORS_WARNING:
            self._out_of_descriptors_warned = now
            logger.warning("metrics server out of file descriptors: %s", error)

    def _read(self, connection: _Connection) -> None:
        try:
            # Never more than one byte past the bound: a head's buffer stays within it.
            room = self._limits.max_head_bytes + 1 - len(connection.head)
            data = connection.sock.recv(min(_RECEIVE_BYTES, room))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(connection)
            return
        if not data:  # the client left (or half-closed) before a whole head
            self._close(connection)
            return
        searched = len(connection.head)
        connection.head += data
        end = head_end(connection.head, searched)
        if end < 0:
            if len(connection.head) > self._limits.max_head_bytes:
                too_long = b"\n" not in connection.head
                self._answer(connection, _URI_TOO_LONG if too_long else _HEAD_TOO_LARGE)
            return
        head = bytes(connection.head[:end])
        if end > self._limits.max_head_bytes:
            self._answer(connection, _HEAD_TOO_LARGE)
        elif (response := self._respond_here(head, connection.address)) is not None:
            self._answer(connection, response)
        elif self._queued >= self._limits.max_queued or not self._room_to_send():
            self._answer(connection, _BUSY)
        else:
            self._hand_over(connection, head)

    def _hand_over(self, connection: _Connection, head: bytes) -> None:
        """Queue ``head`` for a worker to build, its client to be answered by its deadline."""
        descriptor = connection.sock.fileno()
        del self._reading[descriptor]
        self._selector.unregister(connection.sock)  # nothing to watch while it is built
        connection.head = bytearray()
        connection.deadline = time.monotonic() + self._limits.build_timeout
        self._handed[descriptor] = connection
        self._queued += 1
        self._work.put((connection, head))

    def _room_to_send(self) -> bool:
        """Whether unsent responses leave room under max_unsent_bytes, after dropping those
        stalled longest if they do not."""
        if self._unsent_bytes < self._limits.max_unsent_bytes:
            return True
        stalled_since = time.monotonic() - self._limits.stalled_after
        stalled = [c for c in self._writing.values() if c.progressed < stalled_since]
        for connection in sorted(stalled, key=lambda c: c.progressed):
            logger.debug("dropping the stalled metrics client %s for room", connection.address)
            self._close(connection, abort=True)
            if self._unsent_bytes < self._limits.max_unsent_bytes:
                return True
        return False

    def _answer(self, connection: _Connection, response: bytes) -> None:
        """Start writing ``response``; the connection closes once it is sent. A connection
        still reading is watched for writing instead; one back from a worker, again."""
        descriptor = connection.sock.fileno()
        was_reading = self._reading.pop(descriptor, None) is not None
        connection.head = bytearray()
        now = time.monotonic()
        connection.unsent = memoryview(response)
        connection.progressed = now
        connection.deadline = now + self._limits.write_timeout
        self._unsent_bytes += len(response)
        self._writing[descriptor] = connection
        self._write(connection)
        if connection.unsent is None:  # sent at once (and closed), as nearly every one is
            return
        if was_reading:
            self._selector.modify(connection.sock, selectors.EVENT_WRITE, None)
        else:
            self._selector.register(connection.sock, selectors.EVENT_WRITE, None)

    def _write(self, connection: _Connection) -> None:
        unsent = connection.unsent
        if unsent is None:
            return
        try:
            sent = connection.sock.send(unsent[:_SEND_BYTES])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(connection)
            return
        self._unsent_bytes -= sent
        connection.progressed = time.monotonic()
        if sent < len(unsent):
            connection.unsent = unsent[sent:]
            return
        connection.unsent = None
        with contextlib.suppress(OSError):
            connection.sock.shutdown(socket.SHUT_WR)
        self._close(connection)

    def _take_answers(self) -> None:
        while True:
            try:
                connection, response = self._done.get_nowait()
            except queue.Empty:
                return
            self._queued -= 1
            if response is None or connection.abandoned:
                continue  # its client was answered 503 at the deadline
            descriptor = connection.sock.fileno()
            if self._connections.get(descriptor) is connection:
                del self._handed[descriptor]
                self._answer(connection, response)

    def _sweep(self, now: float) -> None:
        """Close connections past their deadline: a head not sent in time, a response not
        taken in time. Both are kept in the order of their deadlines (each is set at
        insertion to now plus a fixed timeout), so a sweep reads only the expired ones."""
        for waiting, why in (
            (self._reading, "sent no whole request in time"),
            (self._writing, "did not take its response in time"),
        ):
            while waiting:
                connection = next(iter(waiting.values()))
                if connection.deadline > now:
                    break
                logger.debug("metrics client %s %s", connection.address, why)
                self._close(connection, abort=waiting is self._writing)
        self._expire_builds(now)
        if self._accept_paused_until is not None and now >= self._accept_paused_until:
            self._accept_paused_until = None
            self._selector.register(self._listener, selectors.EVENT_READ, None)

    def _expire_builds(self, now: float) -> None:
        """Answer 503 to the clients whose request was not built in time (kept in the order of
        their deadlines, as above), and warn, once each, of builds running past the bound."""
        while self._handed:
            connection = next(iter(self._handed.values()))
            if connection.deadline > now:
                break
            del self._handed[connection.sock.fileno()]
            connection.abandoned = True
            logger.debug("metrics client %s: its answer was not built in time", connection.address)
            self._answer(connection, _TOO_SLOW)
        for build in list(self._builds):  # a worker may replace its slot meanwhile
            if build is None or build.warned or now - build.started <= self._limits.build_timeout:
                continue
            build.warned = True
            logger.warning(
                "the metrics server has been building the answer to %r for %.1f s: its client "
                "was answered 503, and its worker is held until the build returns",
                build.request_line.decode("latin-1"),
                now - build.started,
            )

    def _respond_here(self, head: bytes, address: tuple[str, int]) -> bytes | None:
        """The loop's lane: the answer to ``head``, unless a worker is to build it (None)."""
        try:
            return self._responder.respond_unless_built(head, address)
        except Exception:
            logger.warning("metrics request from %s failed", address, exc_info=True)
            return _INTERNAL_ERROR

    def _respond(self, head: bytes, address: tuple[str, int]) -> bytes:
        """A worker's lane: the answer to ``head``, built."""
        try:
            return self._responder.respond(head, address)
        except Exception:
            logger.warning("metrics request from %s failed", address, exc_info=True)
            return _INTERNAL_ERROR

    def _close_oldest_reading(self) -> bool:
        if not self._reading:
            return False
        _, connection = next(iter(self._reading.items()))
        logger.debug("closing the idle metrics client %s to make room", connection.address)
        self._close(connection)
        return True

    def _close(self, connection: _Connection, *, abort: bool = False) -> None:
        """Forget and close ``connection``; ``abort`` resets it, so that the kernel drops the
        part of a response a client would not take instead of holding it for the client."""
        descriptor = connection.sock.fileno()
        if descriptor < 0:  # closed already
            return
        for held in (self._connections, self._reading, self._writing, self._handed):
            if held.get(descriptor) is connection:
                del held[descriptor]
        if connection.unsent is not None:  # counted from _answer until sent
            self._unsent_bytes -= len(connection.unsent)
            connection.unsent = None
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(connection.sock)
        if abort:
            with contextlib.suppress(OSError):
                connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        connection.sock.close()

    def _close_all(self) -> None:
        for connection in list(self._connections.values()):
            self._close(connection)
        for _ in self._workers:
            self._work.put(None)
        self._selector.close()
        self._listener.close()
        self._waking.close()
        self._wake.close()

    # -- the workers' threads --------------------------------------------------------------------

    def _work_loop(self, slot: int) -> None:
        while (item := self._work.get()) is not None:
            connection, head = item
            response = None
            if not connection.abandoned:  # else its client was answered while it waited
                build = _Build(time.monotonic(), head.split(b"\n", 1)[0][:200].rstrip())
                self._builds[slot] = build
                response = self._respond(head, connection.address)
                self._builds[slot] = None
                if build.warned:
                    logger.warning(
                        "the metrics server's build of %r returned after %.1f s",
                        build.request_line.decode("latin-1"),
                        time.monotonic() - build.started,
                    )
            self._done.put((connection, response))
            with contextlib.suppress(OSError):
                self._wake.send(b"\0")

    # -- any thread ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to end; it closes everything within a wake-up."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake.send(b"\0")
