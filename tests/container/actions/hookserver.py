"""A real HTTP server on loopback that records every POST and answers from a script: a status
per request (the last one repeats), or a delay that outlasts the client's timeout."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class HookServer:
    """``answers``: per request, an HTTP status, ``("hang", seconds)`` or ``("redirect",
    url)``; the last repeats."""

    answers: Sequence[int | tuple[str, float | str]] = (200,)
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@contextmanager
def hook_server(*answers: int | tuple[str, float | str]) -> Iterator[HookServer]:
    state = HookServer(answers or (200,))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"null")
            with lock:
                index = len(state.requests)
                state.requests.append(Recorded(self.path, dict(self.headers), body))
                answer = state.answers[min(index, len(state.answers) - 1)]
            if isinstance(answer, tuple) and answer[0] == "redirect":
                self.send_response(302)
                self.send_header("Location", str(answer[1]))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if isinstance(answer, tuple):
                time.sleep(float(answer[1]))
                answer = 200
            try:
                self.send_response(answer)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (its timeout): what the test is about

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
