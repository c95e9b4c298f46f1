"""The browser harness itself: it must see what a page logs, throws and requests, photograph it
at the size asked for, and leave no browser behind, or the report tests built on it prove nothing.
"""

from __future__ import annotations

import socket
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.report.browser import load_page, require_chromium

require_chromium()

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TABLE = "<table>" + "<tr><td>a</td><td>b</td><td>c</td></tr>" * 2 + "</table>"


def _page(directory: Path, body: str, name: str = "page.html") -> Path:
    path = directory / name
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>t</title></head>"
        f"<body>{body}</body></html>",
        encoding="utf-8",
    )
    return path


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which the PNG format puts first."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _browsers_using(directory: Path) -> list[str]:
    """Command lines of live processes that mention ``directory`` (the harness's profile)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in cmdline:
            found.append(cmdline)
    return found


@pytest.fixture
def profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the harness's throwaway profiles go, so a test can check they and their browser
    are gone."""
    directory = tmp_path / "profiles"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A URL whose server takes the connection and never answers, so the page never loads."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/never.png"


def test_a_clean_page_loads_without_errors_and_is_photographed(
    tmp_path: Path, profiles: Path
) -> None:
    page = _page(tmp_path, f"<h1>Report</h1>{TABLE}")
    shot = tmp_path / "page.png"
    loaded = load_page(
        page,
        expressions={
            "cells": "document.querySelectorAll('td').length",
            "title": "document.title",
            "later": "new Promise(resolve => setTimeout(() => resolve([1, 'two']), 10))",
        },
        screenshot=shot,
        width=800,
        height=600,
    )
    assert loaded.errors == []
    assert loaded.console == []
    assert loaded.requests == [page.resolve().as_uri()]
    assert loaded.values == {"cells": 6, "title": "t", "later": [1, "two"]}
    assert _png_size(shot) == (800, 600)
    assert list(profiles.iterdir()) == []
    assert _browsers_using(profiles) == []


def test_a_full_page_screenshot_holds_the_whole_page_and_a_viewport_one_the_window(
    tmp_path: Path,
) -> None:
    page = _page(tmp_path, "<div style='height: 2000px'>tall</div>")
    full, window = tmp_path / "full.png", tmp_path / "window.png"
    load_page(page, screenshot=full, width=640, height=480)
    load_page(page, screenshot=window, width=640, height=480, full_page=False)
    width, height = _png_size(full)
    assert width == 640
    assert height >= 2000
    assert _png_size(window) == (640, 480)


def test_console_errors_and_uncaught_exceptions_are_errors(tmp_path: Path) -> None:
    page = _page(
        tmp_path,
        "<script>console.log('fine'); console.error('x')</script>"
        "<script>throw new Error('boom')</script>"
        "<script>console.assert(1 === 2, 'sums')</script>",
    )
    loaded = load_page(page, expressions={"thrown": "undefinedFunction()", "ok": "1 + 1"})
    assert loaded.console == ["log: fine", "error: x", "assert: sums"]
    assert "error: x" in loaded.errors
    assert "assert: sums" in loaded.errors
    assert any(error.startswith("Uncaught Error: boom") for error in loaded.errors)
    assert any(
        error.startswith("thrown: Uncaught ReferenceError: undefinedFunction")
        for error in loaded.errors
    )
    assert loaded.values == {"thrown": None, "ok": 2}
    assert len(loaded.errors) == 4


def test_network_requests_are_seen(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/x.png"
    loaded = load_page(_page(tmp_path, f"<img src='{url}' alt='remote'>"))
    assert url in loaded.requests
    # Chromium refuses port 9 itself (net::ERR_UNSAFE_PORT) and logs the failure as an error.
    assert any(url in error for error in loaded.errors)


def test_a_page_that_never_loads_times_out_naming_it_and_leaves_no_browser(
    tmp_path: Path, profiles: Path, silent_server: str
) -> None:
    page = _page(tmp_path, f"<img src='{silent_server}' alt='never'>", name="stuck.html")
    with pytest.raises(AssertionError, match=r"stuck\.html did not finish loading within 2"):
        load_page(page, timeout=2)
    assert list(profiles.iterdir()) == []
    assert _browsers_using(profiles) == []
