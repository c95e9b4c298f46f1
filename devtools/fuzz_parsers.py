"""Mutation fuzzing of every Python parser of trial bytes, for a fixed time, deterministic by seed.

    python -m devtools.fuzz_parsers --seconds 30 [--out DIR] [--seed N]
    python -m devtools.fuzz_parsers --replay FILE     (run one reproducer again)

The parsers (``evaluator/trial``): index files (``parsers.parse_index``), collections files
(``parsers.parse_num_workers``), event files through the Python scan
(``parsers.scan_event_file_python``, and the public ``scan_event_file`` with its compiled fast
path now and then), their records (``records.iter_records``, ``record_payload``) and tensors
(``tensors.decode_tensor_at`` on every span the scan finds, ``decode_event_tensors`` on every
record). Each mutant is held to the parsers' contract: it is parsed, or a ``TrialBytesError``
(``problems.py``) says why, and nothing else comes out (no ``RecursionError``, ``MemoryError``,
NumPy's ``ValueError``, ...); no call takes longer than ``PER_INPUT_SECONDS``; a decoded tensor
claims no more elements than its bytes hold, or ``MAX_BROADCAST_ELEMENTS`` for one broadcast
value (a shape of 10^12 elements with one value hung the rule).

Seeds: a trial written by smdebug's own writer (``devtools.fuzz_kernels.write_smdebug_seeds``:
its event and index files, and collections files written as smdebug's hooks write them),
``fuzz_kernels.hand_seeds`` (the event-file forms smdebug does not write), and hand-made index
and collections documents. Event files are mutated by ``fuzz_kernels.Mutator`` (protobuf tree,
records, framing, bytes); JSON documents by replacing, adding and deleting values with hostile
ones (deep nesting, 5000-digit numbers, wrong types, long strings, paths out of the trial), then
now and then by the same byte edits.

The run is a child process under an address-space cap, each input kept in a file first, so a
hang or a crash still leaves its input: the parent writes it as a reproducer. Exit 0: no
finding; exit 1: a finding, whose reproducer (hex) is in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

from devtools.fuzz_kernels import MAX_INPUT, REPO, Mutator, Seed, hand_seeds, write_smdebug_seeds

PER_INPUT_SECONDS: Final = 2.0
"""The longest one input may take through its parser: inputs are at most 4 MiB and a parser is
linear in them (about 0.1 s on this machine for the largest); a claim acted on before it is
checked took tens of seconds."""
ADDRESS_SPACE: Final = 4 << 30
"""The child's address-space cap: a parser that tries to allocate what an input claims (16 TiB
for one string array) fails with MemoryError, a finding, instead of swapping the machine."""
MAX_MESSAGE: Final = 2000
"""The longest error message a parser may give: values it quotes are shortened (a tag or a mode
of megabytes went into the log and the status file whole)."""
FINDING_EXIT: Final = 3
KINDS: Final = ("index", "collections", "event")
WORKER: Final = "worker_0"


class Finding(Exception):
    """A parser broke its contract; the message says how."""


# -- seeds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    kind: str
    data: bytes
    step: int
    verify: bool = False


def smdebug_seeds(trial: Path) -> list[Input]:
    """What smdebug writes into a trial: event files, index files, collections files."""
    from devtools.write_trial import export_collections

    events = [Input("event", seed.data, seed.step) for seed in write_smdebug_seeds(trial)]
    for workers, name in ((1, WORKER), (4, "worker_3"), (2, "algo-1")):
        export_collections(str(trial), name, workers)
    index = [Input("index", p.read_bytes(), 7) for p in sorted(trial.glob("index/*/*.json"))]
    collections = [
        Input("collections", path.read_bytes(), 0)
        for path in sorted(trial.glob("collections/*/*.json"))
    ]
    return events + index + collections


def hand_json_seeds() -> list[Input]:
    """Index and collections documents smdebug's writer does not produce but may be given."""
    meta = {"mode": "EVAL", "mode_step": 3, "event_file_name": "events/x.tfevents"}
    span = {"tensorname": "labels", "start_idx": 0, "length": 40}
    documents = [
        ("index", {"meta": meta, "tensor_payload": [span, {**span, "tensorname": "p"}]}),
        ("index", {"meta": {**meta, "mode": " TRAIN "}, "tensor_payload": None}),
        ("index", {"meta": meta, "tensor_payload": [], "shape_payload": [{"a": 1}]}),
        ("collections", {"_meta": {"num_workers": "8"}, "collections": {}}),
        ("collections", {"collections": {"labels": {"tensor_names": ["labels"]}}}),
    ]
    return [Input(kind, json.dumps(doc).encode(), 7) for kind, doc in documents]


# -- JSON mutations -----------------------------------------------------------------------------

_PLACEHOLDER: Final = "\x00fuzz{}\x00"
HOSTILE_JSON: Final = (
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"9" * 5000,
    b"-" + b"9" * 4000,
    b'"' + b"9" * 5000 + b'"',
    b"1e400",
    b"NaN",
    b"-Infinity",
    b'"\\ud800"',
    b'"' + b"x" * 200_000 + b'"',
    b'"' + b"../" * 10_000 + b'etc/passwd"',
)
"""Raw JSON values ``json.dumps`` cannot produce (or should not be trusted to)."""
PLAIN_JSON: Final[tuple[Any, ...]] = (
    None, True, False, 0, 1, -1, 2, 7, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 1.5, 1e300,
    "", "TRAIN", "EVAL", " PREDICT", "GLOBAL", "train", "1", "8", "0", "-3", "٣", "1_0", "/abs",
    "..", "events/../../x", "a\\b", "\u0000", "é", [], {}, [1, 2], {"num_workers": 2},
)  # fmt: skip


class JsonMutator:
    """Mutants of JSON documents: a value replaced, added or deleted somewhere in the tree, and
    now and then byte edits on top (``fuzz_kernels.Mutator``'s, over the JSON seeds)."""

    def __init__(self, seeds: Sequence[Input], rng: random.Random) -> None:
        self.rng = rng
        self.seeds = list(seeds)
        self.documents = [_loads(seed.data) for seed in self.seeds]
        self._bytes = Mutator([Seed(s.kind, s.data, s.step, False) for s in seeds], rng)

    def mutant(self) -> Input:
        rng = self.rng
        index = rng.randrange(len(self.seeds))
        seed, document = self.seeds[index], self.documents[index]
        raw: list[bytes] = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            document = self._edit(document, raw)
        text = json.dumps(document)
        for number, value in enumerate(raw):
            text = text.replace(json.dumps(_PLACEHOLDER.format(number)), value.decode())
        data = text.encode()
        if rng.random() < 0.3:
            data = self._bytes._mutate_bytes(data)
        return Input(seed.kind, data[:MAX_INPUT], seed.step)

    def _edit(self, document: Any, raw: list[bytes]) -> Any:
        rng = self.rng
        if rng.random() < 0.35:
            raw.append(rng.choice(HOSTILE_JSON))
            new: Any = _PLACEHOLDER.format(len(raw) - 1)
        else:
            new = rng.choice(PLAIN_JSON)
        paths = list(_json_paths(document))
        path = rng.choice(paths)
        return _json_put(document, path, new, rng.randrange(3))


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return {}


def _json_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _json_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            paths += _json_paths(item, (*prefix, position))
    return paths


def _json_put(value: Any, path: tuple[Any, ...], new: Any, how: int) -> Any:
    """``value`` with ``path`` replaced by ``new`` (how 0), deleted (1), or given a sibling (2)."""
    if not path:
        return new if how != 1 else {}
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if rest:
            copy[head] = _json_put(copy[head], rest, new, how)
        elif how == 1:
            del copy[head]
        elif how == 2:
            copy[f"{head}_"] = new
        else:
            copy[head] = new
        return copy
    items = list(value)
    if rest:
        items[head] = _json_put(items[head], rest, new, how)
    elif how == 1:
        del items[head]
    elif how == 2:
        items.insert(head, new)
    else:
        items[head] = new
    return items


# -- the contract -------------------------------------------------------------------------------


class Checker:
    """The parsers, and the contract each call is held to."""

    def __init__(self) -> None:
        from evaluator.trial import parsers, problems, records, tensors

        self.counts: Counter[str] = Counter()
        self._parsers = parsers
        self._records = records
        self._tensors = tensors
        self._typed = problems.TrialBytesError
        self._broadcast = tensors.MAX_BROADCAST_ELEMENTS
        """Taken once: the decoder's bound as released, which a change of it must not lift."""
        self._calls = 0

    def check(self, item: Input) -> None:
        """Run ``item`` through its parsers; raise Finding if any breaks the contract."""
        outcome = self._timed(f"{item.kind} parser", lambda: self._run(item))
        self.counts[f"{item.kind}_{outcome}"] += 1

    def _run(self, item: Input) -> str:
        if item.kind == "index":
            return self._typed_call(
                lambda: self._parsers.parse_index(item.data, item.step, WORKER), "parse_index"
            )
        if item.kind == "collections":
            return self._typed_call(
                lambda: self._parsers.parse_num_workers(item.data), "parse_num_workers"
            )
        return self._event(item)

    def _event(self, item: Input) -> str:
        parsers, records = self._parsers, self._records
        self._calls += 1
        scan = parsers.scan_event_file if self._calls % 8 == 0 else parsers.scan_event_file_python
        found: list[Any] = []
        outcome = self._typed_call(
            lambda: found.append(scan(item.data, item.step, verify_payload=item.verify)),
            scan.__name__,
        )
        described = found[0] if found else None
        for span in described[2] if described else ():
            self._typed_call(partial(self._decode_span, item, span), "decode_tensor_at")
            self._typed_call(partial(self._record, item, span), "record_payload")
        payloads: list[Any] = []
        self._typed_call(
            lambda: payloads.extend(records.iter_records(item.data, verify_payload=item.verify)),
            "iter_records",
        )
        for _offset, payload in payloads:
            self._typed_call(partial(self._decode_all, payload), "decode_event_tensors")
        return "refused" if outcome == "refused" else "empty" if described is None else "parsed"

    def _decode_span(self, item: Input, span: Any) -> None:
        start, stop = span.tensor_start, span.tensor_stop
        array = self._tensors.decode_tensor_at(item.data, start, stop, span.name)
        self._check_size(array, stop - start)

    def _record(self, item: Input, span: Any) -> None:
        self._records.record_payload(item.data, span.start, span.length, verify_payload=item.verify)

    def _decode_all(self, payload: memoryview) -> None:
        for _tag, array in self._tensors.decode_event_tensors(payload):
            self._check_size(array, len(payload))

    def _check_size(self, array: Any, held: int) -> None:
        """A decoded tensor holds no more elements than its bytes, or one broadcast value's."""
        bound = max(held, self._broadcast)
        if array.size > bound:
            raise Finding(
                f"a tensor of {held} bytes decoded to shape {array.shape} ({array.size:,} "
                f"elements), more than the {bound:,} its bytes can hold"
            )
        self.counts["tensors_decoded"] += 1

    def _typed_call(self, call: Callable[[], object], name: str) -> str:
        try:
            call()
        except self._typed as error:
            if len(str(error)) > MAX_MESSAGE:
                raise Finding(
                    f"{name} said {len(str(error)):,} characters: {error!s:.300}"
                ) from None
            return "refused"
        except Finding:
            raise
        except Exception as error:  # anything untyped is the finding this run looks for
            raise Finding(
                f"{name} raised an untyped {type(error).__name__}: {error!s:.500}"
            ) from error
        return "parsed"

    @staticmethod
    def _timed(what: str, call: Callable[[], str]) -> str:
        start = time.monotonic()
        outcome = call()
        elapsed = time.monotonic() - start
        if elapsed > PER_INPUT_SECONDS:
            raise Finding(f"the {what} took {elapsed:.1f} s, more than {PER_INPUT_SECONDS} s")
        return outcome


# -- reproducers and the run ---------------------------------------------------------------------


def write_reproducer(out: Path, what: str, item: Input) -> Path:
    """An input as text: a header and the bytes in hex, 32 to a line."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"parsers-{item.kind}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.hex"
    lines = [
        f"# {what}",
        f"# replay: python -m devtools.fuzz_parsers --replay {path}",
        f"kind {item.kind}",
        f"step {item.step}",
        f"verify_payload {int(item.verify)}",
        *(item.data[i : i + 32].hex() for i in range(0, len(item.data), 32)),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_reproducer(path: Path) -> Input:
    fields: dict[str, str] = {}
    chunks: list[bytes] = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.split()[0] in {"kind", "step", "verify_payload"}:
            key, value = line.split(maxsplit=1)
            fields[key] = value
        else:
            chunks.append(bytes.fromhex(line))
    return Input(
        fields.get("kind", "event"),
        b"".join(chunks),
        int(fields.get("step", "0")),
        fields.get("verify_payload") == "1",
    )


class Inflight:
    """The input being run, kept in a file first: a hang or a crash leaves it for the parent."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def hold(self, item: Input) -> None:
        if self.path is not None:
            head = f"{item.kind} {item.step} {int(item.verify)}\n".encode()
            self.path.write_bytes(head + item.data)

    @staticmethod
    def read(path: Path) -> Input | None:
        raw = path.read_bytes()
        head, _, data = raw.partition(b"\n")
        parts = head.decode(errors="replace").split()
        if len(parts) != 3:
            return None
        return Input(parts[0], data, int(parts[1]), parts[2] == "1")


@dataclass
class Run:
    executions: int = 0
    seconds: float = 0.0
    finding: Path | None = None


def fuzz(
    checker: Checker, seeds: Sequence[Input], *, seconds: float, rng: random.Random, out: Path,
    inflight: Inflight,
) -> Run:  # fmt: skip
    """Every seed, then mutants, until ``seconds`` have passed or a finding."""
    run = Run()

    def one(item: Input) -> bool:
        inflight.hold(item)
        try:
            checker.check(item)
        except Finding as finding:
            run.finding = write_reproducer(out, str(finding), item)
            return False
        return True

    start = time.monotonic()
    if not all(one(seed) for seed in seeds):
        return run
    events = [Seed(s.kind, s.data, s.step, False) for s in seeds if s.kind == "event"]
    event_mutator = Mutator(events, rng)
    json_mutator = JsonMutator([s for s in seeds if s.kind != "event"], rng)
    deadline = start + seconds
    while time.monotonic() < deadline:
        run.executions += 1
        if run.executions % 3 == 0:
            item = json_mutator.mutant()
        else:
            data, step, verify = event_mutator.mutant()
            item = Input("event", data, step, verify)
        if len(item.data) <= MAX_INPUT and not one(item):
            break
    run.seconds = time.monotonic() - start
    return run


def child(args: argparse.Namespace) -> int:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="fuzz-parsers-") as folder:
        seeds = smdebug_seeds(Path(folder) / "trial")
    seeds += [Input("event", seed.data, seed.step) for seed in hand_seeds()]
    seeds += hand_json_seeds()
    checker = Checker()
    inflight = Inflight(Path(args.inflight) if args.inflight else None)
    run = fuzz(checker, seeds, seconds=args.seconds, rng=rng, out=Path(args.out), inflight=inflight)
    rate = run.executions / run.seconds if run.seconds else 0.0
    counts = ", ".join(f"{key} {value:,}" for key, value in sorted(checker.counts.items()))
    print(
        f"fuzz_parsers: {run.executions:,} mutants in {run.seconds:.1f} s ({rate:,.0f}/s), "
        f"seed {args.seed}, {len(seeds)} seeds\n  {counts}",
        flush=True,
    )
    if run.finding is not None:
        print(f"fuzz_parsers: FINDING (seed {args.seed}): {run.finding}", file=sys.stderr)
        print(run.finding.read_text().splitlines()[0], file=sys.stderr)
        return FINDING_EXIT
    print("fuzz_parsers: no finding")
    return 0


def supervise(args: argparse.Namespace, argv: Sequence[str]) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    inflight = out / f"inflight-{os.getpid()}.bin"
    command = [sys.executable, "-m", "devtools.fuzz_parsers", *argv]
    command += ["--child", "--inflight", str(inflight), "--seed", str(args.seed)]
    try:  # writing the seed trial takes a few seconds; far longer is a hang
        code = subprocess.run(command, cwd=REPO, check=False, timeout=args.seconds + 120).returncode
        how = f"exit {code}"
    except subprocess.TimeoutExpired:
        code, how = -1, f"it hung (killed after {args.seconds + 120:.0f} s)"
    if code == 0:
        inflight.unlink(missing_ok=True)
        return 0
    held = Inflight.read(inflight) if inflight.exists() else None
    inflight.unlink(missing_ok=True)
    if code != FINDING_EXIT:
        said = "before it ran any input"
        if held is not None:
            said = f"the input it was running: {write_reproducer(out, how, held)}"
        print(f"fuzz_parsers: FINDING: the run died ({how}); {said}", file=sys.stderr)
    return 1


def replay(path: Path) -> int:
    item = read_reproducer(path)
    print(f"{item.kind}: {len(item.data)} bytes, step {item.step}, verify {item.verify}")
    try:
        Checker().check(item)
    except Finding as finding:
        print(f"FINDING: {finding}")
        return 1
    print("no finding")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m devtools.fuzz_parsers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to fuzz")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "fuzz-parsers"),
                        help="where reproducers go")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="the random seed (default 0)")
    parser.add_argument("--replay", help="run one reproducer file again")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inflight", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replay:
        return replay(Path(args.replay))
    return child(args) if args.child else supervise(args, argv)


if __name__ == "__main__":
    sys.exit(main())
