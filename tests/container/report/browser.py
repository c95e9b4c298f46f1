"""A headless Chromium driven over the DevTools protocol, for tests that open a page and look.

The protocol runs over ``--remote-debugging-pipe`` (fd 3 into the browser, fd 4 out of it, each
message JSON ended by a NUL byte) rather than a websocket, so the tests need no library beyond
the standard one and no port that another test could take. Every read and write has a deadline,
and the browser's whole process group is killed on the way out: a test that fails or times out
must not leave a browser behind.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import math
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Message = dict[str, Any]

SETTLE = 0.2
"""Seconds to keep listening after the load event: console messages and exceptions from the
page's last scripts (and failed sub-resources) are reported a little after it."""
CLOSE_GRACE = 5.0
"""Seconds the browser gets to exit after Browser.close before its process group is killed."""
STDERR_TAIL = 2000
"""Characters of the browser's stderr quoted when it dies or a step times out."""
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-sync",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)
"""Quiet, offline, throwaway: nothing the browser does on its own should show up among the
page's requests or slow the start. Scrollbars are hidden so a screenshot's size is the page's."""
ERROR_CONSOLE_TYPES = frozenset({"error", "assert"})


@dataclass(frozen=True)
class PageLoad:
    """What a page did while it loaded: for tests that a report renders cleanly and offline."""

    console: list[str]
    """Every console message as ``"type: text"`` (console API calls, then the browser's own
    log entries, such as failed resource loads, as ``"level: text (url)"``)."""
    errors: list[str]
    """Console errors and failed asserts, uncaught exceptions, error-level log entries and the
    exceptions of ``expressions`` (as ``"name: description"``)."""
    requests: list[str]
    """Every URL the page requested, its own ``file://`` URL first."""
    values: dict[str, Any]
    """Each expression's result by name; None where it threw or was not serialisable."""


MISSING = "chromium is not installed; `make browser-tools` installs it"


def require_chromium() -> None:
    """Skip the calling test module without chromium, except under CI=true, where the browser
    tests must run (``make test`` installs it first)."""
    import pytest

    if chromium_path() is not None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{MISSING}. CI=true: these tests must run", pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)


def chromium_path() -> str | None:
    """Debian names the binary ``chromium``, Ubuntu's and older packages ``chromium-browser``."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _Pipe:
    """The browser's end of the protocol: commands with replies, and the events in between.

    Every event seen is kept in ``events`` in arrival order, so a test can ask after the fact
    whether something happened, even if it happened before the reply that it followed from.
    """

    def __init__(self, to_browser: int, from_browser: int, stderr: Path) -> None:
        self._out, self._in, self._stderr = to_browser, from_browser, stderr
        os.set_blocking(self._out, False)
        self._buffer = bytearray()
        self._next_id = 0
        self.events: list[Message] = []

    def send(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        session: str | None = None,
        deadline: float,
    ) -> Message:
        """Send a command and return its result; an error reply raises, naming the method."""
        self._next_id += 1
        message: Message = {"id": self._next_id, "method": method, "params": dict(params or {})}
        if session is not None:
            message["sessionId"] = session
        self._write(json.dumps(message).encode() + b"\0", deadline, method)
        while True:
            reply = self._read(deadline, f"the reply to {method}")
            if reply.get("id") != message["id"]:
                continue
            if "error" in reply:
                raise RuntimeError(f"{method} failed: {reply['error']}")
            result: Message = reply.get("result", {})
            return result

    def wait_for(self, found: Callable[[list[Message]], bool], deadline: float, what: str) -> None:
        """Read until ``found(events)`` holds; TimeoutError (saying ``what``) at the deadline."""
        while not found(self.events):
            self._read(deadline, what)

    def listen(self, seconds: float) -> None:
        """Collect the events of the next ``seconds``; their end is not a failure."""
        with contextlib.suppress(TimeoutError):
            self.wait_for(lambda _: False, time.monotonic() + seconds, "nothing")

    def stderr_tail(self) -> str:
        try:
            text = self._stderr.read_text(errors="replace")
        except OSError:
            return ""
        return text[-STDERR_TAIL:]

    def _write(self, data: bytes, deadline: float, method: str) -> None:
        view = memoryview(data)
        while view:
            self._wait(self._out, deadline, f"the browser to take {method}", writing=True)
            try:
                view = view[os.write(self._out, view) :]
            except BrokenPipeError as exc:
                raise self._gone() from exc

    def _read(self, deadline: float, what: str) -> Message:
        """The next message; events are also kept in ``events``."""
        while b"\0" not in self._buffer:
            self._wait(self._in, deadline, what, writing=False)
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise self._gone()
            self._buffer += chunk
        end = self._buffer.index(b"\0")
        message: Message = json.loads(self._buffer[:end])
        del self._buffer[: end + 1]
        if "method" in message:
            self.events.append(message)
        return message

    @staticmethod
    def _wait(fd: int, deadline: float, what: str, *, writing: bool) -> None:
        remaining = deadline - time.monotonic()
        ready = (
            select.select([], [fd], [], max(remaining, 0))[1]
            if writing
            else select.select([fd], [], [], max(remaining, 0))[0]
        )
        if not ready:
            raise TimeoutError(f"waited for {what}")

    def _gone(self) -> RuntimeError:
        return RuntimeError(f"chromium closed the DevTools pipe; its stderr:\n{self.stderr_tail()}")


@contextlib.contextmanager
def _browser(binary: str, width: int, height: int) -> Iterator[_Pipe]:
    """A browser with a fresh profile; closed, killed if need be, and its profile removed after.

    The profile is fresh so that no cache, cookie or earlier session changes what a page does.
    """
    home = Path(tempfile.mkdtemp(prefix="test-chromium-"))
    stderr_path = home / "stderr.log"
    to_read, to_browser = os.pipe()
    from_browser, to_write = os.pipe()

    def onto_3_and_4() -> None:
        # Copied high first: a plain dup2 onto 3 could overwrite the other end if it sits there.
        read_end = fcntl.fcntl(to_read, fcntl.F_DUPFD, 10)
        write_end = fcntl.fcntl(to_write, fcntl.F_DUPFD, 10)
        os.dup2(read_end, 3)
        os.dup2(write_end, 4)

    command = [
        binary,
        *FLAGS,
        f"--user-data-dir={home / 'profile'}",
        f"--window-size={width},{height}",
    ]
    process: subprocess.Popen[bytes] | None = None
    try:
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                close_fds=False,  # the pipes are not inheritable, and 3 and 4 are set up above
                preexec_fn=onto_3_and_4,  # noqa: PLW1509 - the only way to place fds 3 and 4
                start_new_session=True,  # its own process group, all killed on the way out
            )
        os.close(to_read)
        os.close(to_write)
        to_read = to_write = -1
        pipe = _Pipe(to_browser, from_browser, stderr_path)
        try:
            yield pipe
        finally:
            with contextlib.suppress(RuntimeError, TimeoutError, OSError):
                pipe.send("Browser.close", deadline=time.monotonic() + CLOSE_GRACE)
    finally:
        if process is not None:
            _end(process)
        for fd in (to_read, to_write, to_browser, from_browser):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(home, ignore_errors=True)


def _end(process: subprocess.Popen[bytes]) -> None:
    """Wait a moment for the browser to exit, then kill its process group: the renderer, GPU and
    crash-handler children must go with it even when the browser itself has already exited."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(CLOSE_GRACE)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def load_page(
    path: Path,
    *,
    expressions: Mapping[str, str] = {},
    screenshot: Path | None = None,
    width: int = 1280,
    height: int = 900,
    full_page: bool = True,
    timeout: float = 30.0,
) -> PageLoad:
    """Open ``path`` in a fresh headless Chromium, wait for it to load and settle, and report what
    it logged, threw and requested; optionally evaluate ``expressions`` in it and write a PNG.

    ``timeout`` covers the whole visit; running out raises AssertionError naming the page.
    """
    binary = chromium_path()
    if binary is None:
        raise RuntimeError("chromium is not installed (make browser-tools installs it)")
    url = path.resolve().as_uri()
    deadline = time.monotonic() + timeout
    with _browser(binary, width, height) as pipe:
        try:
            values, evaluation_errors = _visit(
                pipe,
                url,
                expressions=expressions,
                screenshot=screenshot,
                view=(width, height, full_page),
                deadline=deadline,
            )
        except TimeoutError as exc:
            raise AssertionError(
                f"{url} did not finish loading within {timeout} s ({exc});"
                f" chromium's stderr:\n{pipe.stderr_tail()}"
            ) from None
        events = list(pipe.events)
    console, errors, requests = _observed(events)
    return PageLoad(console, errors + evaluation_errors, requests, values)


def _visit(
    pipe: _Pipe,
    url: str,
    *,
    expressions: Mapping[str, str],
    screenshot: Path | None,
    view: tuple[int, int, bool],
    deadline: float,
) -> tuple[dict[str, Any], list[str]]:
    """Open a tab, load the page, let it settle, evaluate, photograph: the values and the
    expressions' errors (everything else the page did is in ``pipe.events``)."""
    width, height, full_page = view
    target = pipe.send("Target.createTarget", {"url": "about:blank"}, deadline=deadline)
    attached = pipe.send(
        "Target.attachToTarget",
        {"targetId": target["targetId"], "flatten": True},
        deadline=deadline,
    )
    session = attached["sessionId"]

    def send(method: str, params: Mapping[str, Any] | None = None) -> Message:
        return pipe.send(method, params, session=session, deadline=deadline)

    for domain in ("Page", "Runtime", "Network", "Log"):
        send(f"{domain}.enable")
    send(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    navigated = send("Page.navigate", {"url": url})
    if "errorText" in navigated:
        raise AssertionError(f"{url} could not be opened: {navigated['errorText']}")
    pipe.wait_for(
        lambda events: _loaded(events, session, navigated.get("loaderId")),
        deadline,
        "Page.loadEventFired",
    )
    pipe.listen(min(SETTLE, max(deadline - time.monotonic(), 0)))
    values: dict[str, Any] = {}
    errors: list[str] = []
    for name, expression in expressions.items():
        evaluated = send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in evaluated:
            values[name] = None
            errors.append(f"{name}: {_exception_text(evaluated['exceptionDetails'])}")
        else:
            values[name] = _value(evaluated["result"])
    if screenshot is not None:
        params: Message = {"format": "png"}
        if full_page:
            size = send("Page.getLayoutMetrics")["cssContentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": math.ceil(size["width"]),
                "height": math.ceil(size["height"]),
                "scale": 1,
            }
        png = base64.b64decode(send("Page.captureScreenshot", params)["data"])
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(png)
    return values, errors


def _loaded(events: list[Message], session: str, loader: str | None) -> bool:
    """Whether the navigated document (not the tab's first about:blank) has fired its load event:
    a load event after the main frame's navigation to that loader."""
    navigated = False
    for event in events:
        if event.get("sessionId") != session:
            continue
        if event["method"] == "Page.frameNavigated":
            frame = event["params"]["frame"]
            if "parentId" not in frame and (loader is None or frame.get("loaderId") == loader):
                navigated = True
        elif event["method"] == "Page.loadEventFired" and navigated:
            return True
    return False


def _observed(events: list[Message]) -> tuple[list[str], list[str], list[str]]:
    """The console messages, errors and requested URLs among the events, in arrival order."""
    console: list[str] = []
    logged: list[str] = []
    errors: list[str] = []
    requests: list[str] = []
    for event in events:
        params = event.get("params", {})
        if event["method"] == "Runtime.consoleAPICalled":
            text = " ".join(_remote_text(arg) for arg in params.get("args", []))
            console.append(f"{params['type']}: {text}")
            if params["type"] in ERROR_CONSOLE_TYPES:
                errors.append(console[-1])
        elif event["method"] == "Log.entryAdded":
            entry = params["entry"]
            where = f" ({entry['url']})" if entry.get("url") else ""
            logged.append(f"{entry['level']}: {entry['text']}{where}")
            if entry["level"] == "error":
                errors.append(logged[-1])
        elif event["method"] == "Runtime.exceptionThrown":
            errors.append(_exception_text(params["exceptionDetails"]))
        elif event["method"] == "Network.requestWillBeSent":
            requests.append(params["request"]["url"])
    return console + logged, errors, requests


def _exception_text(details: Message) -> str:
    """Chrome's console line for an exception: ``Uncaught Error: boom`` and its stack."""
    thrown = details.get("exception")
    if thrown is None:
        return str(details.get("text", "exception"))
    return f"{details.get('text', 'Uncaught')} {_remote_text(thrown)}".strip()


def _remote_text(obj: Message) -> str:
    """A JavaScript value as the console would print it."""
    if "value" in obj:
        value = obj["value"]
        return value if isinstance(value, str) else json.dumps(value)
    return str(obj.get("unserializableValue") or obj.get("description") or obj.get("type", ""))


def _value(obj: Message) -> Any:
    """A returned value; NaN, infinities, -0 and BigInts come as strings and are turned back."""
    if "value" in obj:
        return obj["value"]
    special = obj.get("unserializableValue")
    if special is None:
        return None
    if special.endswith("n"):
        return int(special[:-1])
    return float(special)


def main() -> None:
    """``python -m tests.container.report.browser PAGE PNG [WIDTH HEIGHT]``: a viewport's
    screenshot of a page (the README's ``docs/report.png`` is ``make demo``'s report at
    1100 x 1150)."""
    import sys

    page, png, *size = sys.argv[1:]
    width, height = (int(v) for v in size) if size else (1100, 1150)
    load = load_page(Path(page), screenshot=Path(png), width=width, height=height, full_page=False)
    if load.errors:
        raise SystemExit(f"the page logged errors: {load.errors}")


if __name__ == "__main__":
    main()
