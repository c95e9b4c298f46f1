"""A real Prometheus server for the tests: started on a free port with a given configuration,
queried through its HTTP API, always stopped."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tests.integration.processes import free_port, terminate_process

T = TypeVar("T")


class PrometheusError(AssertionError):
    """The server exited, or answered a query with an error."""


class Prometheus:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise PrometheusError(f"prometheus exited: {self.log.read_text()}")

    def get(self, path: str, **params: str) -> Any:
        """The ``data`` of an API answer; an error answer raises ``PrometheusError``."""
        self.alive()
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as answer:
                document = json.load(answer)
        except urllib.error.HTTPError as error:
            document = json.load(error)
        if document.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {document}")
        return document["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (scalars come back as one unlabelled sample)."""
        data = self.get("/api/v1/query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def ready(self) -> bool:
        self.alive()
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False


def wait_until(what: str, attempt: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = attempt()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


@contextmanager
def running_prometheus(executable: str, folder: Path, config: str) -> Iterator[Prometheus]:
    """Prometheus with ``config`` as prometheus.yml, its data and log in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "prometheus.yml"
    config_file.write_text(config)
    log = folder / "prometheus.log"
    address = f"127.0.0.1:{free_port()}"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                executable,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address={address}",
                "--log.level=warn",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(process, f"http://{address}", log)
    try:
        wait_until("Prometheus to be ready", server.ready, 20)
        yield server
    finally:
        terminate_process(process)
