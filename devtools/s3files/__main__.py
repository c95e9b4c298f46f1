"""``python -m devtools.s3files ROOT``: serve a folder of buckets until interrupted."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

import devtools.s3files as package
from devtools.s3files.server import StaticS3Server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=(package.__doc__ or "").split("\n\n")[0] or None,
        epilog="Prints the endpoint, serves until interrupted, then prints the counts (stderr).",
    )
    parser.add_argument("root", type=Path, help="the folder of buckets: ROOT/BUCKET/KEY")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before a response")
    parser.add_argument("--processes", type=int, default=1, help="worker processes")
    args = parser.parse_args(argv)
    server = StaticS3Server(
        args.root,
        latency=args.latency,
        processes=args.processes,
        host=args.host,
        port=args.port,
    )
    stopping = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda _number, _frame: stopping.set())
    server.start()
    try:
        print(server.endpoint, flush=True)
        print(f"serving {server.buckets} (objects per bucket)", file=sys.stderr, flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
        print(json.dumps({"requests": server.clients()}), file=sys.stderr)


if __name__ == "__main__":
    main()
