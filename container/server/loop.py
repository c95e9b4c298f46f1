"""The metrics server's connection loop: one thread owns every socket, a fixed pool builds the
heavy answers.

A thread per connection (the stdlib's ``ThreadingHTTPServer``) lets threads and memory grow
with clients, and a probe waits behind whatever the crowd holds. Here a single thread accepts,
reads request heads without blocking, answers the probes (and every error) itself, hands
``/metrics`` and ``/report`` to ``ServerLimits.workers`` threads through a bounded queue, and
writes every response without blocking. No thread ever waits on a client, so a slowloris client,
a half-open connection or one that never reads costs a file descriptor and its buffers until its
deadline (``limits.py``), and a probe is answered as soon as its head is read, whatever the
crowd. Each response closes its connection (HTTP/1.0, as the stdlib server answered).

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


def head_end(buffer: bytes | bytearray) -> int:
    """The length of the request head at the start of ``buffer`` (through its blank line), or
    -1 while it is incomplete. Lines may end in CRLF or a bare LF, as http.server accepts."""
    ends = [
        found + len(blank)
        for blank in (b"\r\n\r\n", b"\n\n", b"\n\r\n")
        if (found := buffer.find(blank)) >= 0
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
        self._unsent_bytes = 0
        self._queued = 0
        """Requests handed to the workers and not yet answered (touched by the loop only)."""
        self._work: queue.SimpleQueue[tuple[_Connection, bytes] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[_Connection, bytes]] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._workers = [
            threading.Thread(target=self._work_loop, name=f"metrics-worker-{n}", daemon=True)
            for n in range(limits.workers)
        ]
        self._accept_paused_until = 0.0
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
        if time.monotonic() < self._accept_paused_until:
            return
        for _ in range(_ACCEPTS_PER_WAKE):
            try:
                sock, address = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: make room from the idle, or wait a moment.
                    if not self._close_oldest_reading():
                        self._accept_paused_until = time.monotonic() + _SWEEP_INTERVAL
                        logger.warning("metrics server out of file descriptors: %s", error)
                        return
                    continue
                logger.debug("accepting a metrics client failed: %s", error)
                return
            full = len(self._connections) >= self._limits.max_connections
            if full and not self._close_oldest_reading():
                sock.close()  # every connection is being answered: this one waits its turn
                continue
            sock.setblocking(False)
            connection = _Connection(
                sock, address[:2], time.monotonic() + self._limits.head_timeout
            )
            self._connections[sock.fileno()] = connection
            self._reading[sock.fileno()] = connection
            self._selector.register(sock, selectors.EVENT_READ, None)

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
        connection.head += data
        end = head_end(connection.head)
        if end < 0:
            if len(connection.head) > self._limits.max_head_bytes:
                too_long = b"\n" not in connection.head
                self._answer(connection, _URI_TOO_LONG if too_long else _HEAD_TOO_LARGE)
            return
        head = bytes(connection.head[:end])
        if end > self._limits.max_head_bytes:
            self._answer(connection, _HEAD_TOO_LARGE)
        elif not self._responder.needs_worker(head):
            self._answer(connection, self._respond(head, connection.address))
        elif self._queued >= self._limits.max_queued or not self._room_to_send():
            self._answer(connection, _BUSY)
        else:
            self._reading.pop(connection.sock.fileno())
            self._selector.unregister(connection.sock)  # nothing to watch while it is built
            connection.head = bytearray()
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
            if self._connections.get(connection.sock.fileno()) is connection:
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

    def _respond(self, head: bytes, address: tuple[str, int]) -> bytes:
        try:
            return self._responder.respond(head, address)
        except Exception:
            logger.warning("metrics request from %s failed", address, exc_info=True)
            return plain_response(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n")

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
        for held in (self._connections, self._reading, self._writing):
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

    def _work_loop(self) -> None:
        while (item := self._work.get()) is not None:
            connection, head = item
            self._done.put((connection, self._respond(head, connection.address)))
            with contextlib.suppress(OSError):
                self._wake.send(b"\0")

    # -- any thread ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to end; it closes everything within a wake-up."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake.send(b"\0")
