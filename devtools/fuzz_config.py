"""Fuzzing the configuration loader for a fixed time: only its typed error, never a hang.

    python -m devtools.fuzz_config --seconds 30 [--seed N] [--out DIR]
    python -m devtools.fuzz_config --replay FILE     (run one reproducer again)

Each input is a whole configuration: a YAML file, a job config (the managed service's JSON),
environment variables and command-line flags, generated from the declared settings (good values,
bad values, values beyond what the platform holds, YAML-special strings, line breaks) and then
mutated (YAML aliases and merge keys, deep nesting, long strings, many keys, byte edits, argument
edits, variables renamed). Each is held to the loader's contract: ``load_settings`` either
returns settings, and then ``--print-config``'s output loads back to the same settings, or raises
``ConfigError`` whose message is of bounded length; anything else (another exception, an input
that takes longer than ``INPUT_SECONDS``, memory beyond ``CHILD_ADDRESS_SPACE``) is a finding.

The inputs run in a child process, so a hang or a crash cannot stop the run: the child writes
each input to a file before running it and a line to its parent after, and the parent kills a
child that stays silent too long and keeps that input as the reproducer. The inputs follow from
``--seed`` alone (the time only says how many run). Exit 0: no finding; 1: a finding, whose
reproducer (JSON) is in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import select
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
INPUT_SECONDS: Final = 10.0
"""Most an input may take (a bounded load takes well under a second; a 256 KiB YAML file, the
largest read, takes a few on a busy machine)."""
CHILD_ADDRESS_SPACE: Final = 2 << 30
"""The child's address space: a bounded load needs a few tens of MiB."""
MAX_MESSAGE: Final = 64 * 1024
"""Longest error message and warnings an input may give: values quoted are shortened and the
unknown names reported one by one are few."""
FINDING_EXIT: Final = 3
"""The child's exit code after it wrote a reproducer of its own finding."""

SETTINGS_HINT: Final = (
    "base_trial",
    "samples",
    "threshold_imbalance",
    "argmax",
    "labels_regex",
    "poll_interval",
    "idle_timeout",
    "max_poll_interval",
    "class_names",
    "metric_labels",
    "actions",
    "modes",
    "start_step",
    "end_step",
    "status_file",
    "shard_count",
    "shard_index",
    "emit_state",
    "metrics_port",
    "read_retries",
    "log_level",
)
"""Settings the generator favours (the others are drawn from the declarations too)."""

ODD_TEXTS: Final = (
    "",
    " ",
    "yes",
    "no",
    "null",
    "~",
    "none",
    "1e3",
    "#",
    ": ",
    "a: b",
    "- x",
    "&a",
    "*a",
    "!!python/object:os.system",
    "!!binary aGk=",
    "%YAML 1.1",
    "a\nb",
    "tab\t",
    "\u2028",
    "\x85",
    "\ufeff",
    "\x7f",
    "\x00",
    "\udcff",
    "é名🚀",
    "nan",
    "inf",
    "-inf",
    "1e300",
    "-0",
    "0x10",
    "9" * 30,
    "2001-12-14",
    "{}",
    "[]",
    '{"name": "stop_file", "path": "p"}',
    '[{"name": "webhook", "url": "http://x", "timeout": 1e300}]',
)
NUMBERS: Final[tuple[Any, ...]] = (
    0,
    1,
    -1,
    0.5,
    1e-300,
    1e300,
    math.nan,
    math.inf,
    -math.inf,
    2**31,
    2**63,
    2**64,
    10**400,
    True,
    False,
    None,
)


@dataclass
class Case:
    """One configuration: files (name -> text, in the case's folder), environment and flags;
    ``{dir}`` in a flag or a variable is the case's folder."""

    files: dict[str, str] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    job_config: str | None = None


class Finding(Exception):
    """The loader broke its contract on an input."""


# -- generating -----------------------------------------------------------------------------------


class Generator:
    """Inputs from a seed: every choice is the seeded ``random`` generator's."""

    def __init__(self, seed: int, names: Sequence[str]) -> None:
        self.random = random.Random(seed)
        self.names = list(names)
        self.only_good = False

    def name(self) -> str:
        pick = self.random.random()
        if pick < 0.6:
            return self.random.choice(SETTINGS_HINT)
        if pick < 0.9:
            return self.random.choice(self.names)
        return self.random.choice(["samplez", "rule", "x" * 300, "unknown", "action_json", "10"])

    def scalar(self) -> Any:
        pick = self.random.random()
        if pick < 0.35:
            return self.random.choice(ODD_TEXTS)
        if pick < 0.6:
            return self.random.choice(NUMBERS)
        if pick < 0.75:
            return str(self.random.choice(NUMBERS))
        if pick < 0.8:
            return "x" * self.random.choice([200, 5_000, 140_000])
        return "".join(
            self.random.choice("ab/._-: #\n\"'") for _ in range(self.random.randrange(8))
        )

    def value(self, depth: int = 0) -> Any:
        pick = self.random.random()
        if depth > 2 or pick < 0.7:
            return self.scalar()
        if pick < 0.85:
            return [self.value(depth + 1) for _ in range(self.random.randrange(4))]
        return {str(self.scalar()): self.value(depth + 1) for _ in range(self.random.randrange(3))}

    def settings(self) -> dict[str, Any]:
        if self.only_good or self.random.random() < 0.3:
            return self.good_settings()
        chosen = {self.name(): self.value() for _ in range(self.random.randrange(8))}
        if self.random.random() < 0.8:
            chosen["base_trial"] = "/t"
        return chosen

    def good_settings(self) -> dict[str, Any]:
        """Valid settings holding odd strings, for the ``--print-config`` round trip."""

        def odd() -> str:
            return f"p{self.random.choice(ODD_TEXTS).replace(chr(0), '')}q".replace(",", ";")

        good: dict[str, Any] = {
            "base_trial": odd(),
            "status_file": odd(),
            "training_job": odd(),
            "class_names": [odd() for _ in range(self.random.randrange(1, 4))],
            "metric_labels": {"team": odd(), "run": f" {odd()} "},
            "actions": [{"name": "stop_file", "path": odd()}],
            "poll_interval": self.random.choice([0.001, 1, 2.5, 1e9]),
            "samples": self.random.choice([1, 10, 2**62]),
            "threshold_imbalance": self.random.choice([1.0, 10, 1e300]),
        }
        keep = self.random.sample(list(good), self.random.randrange(1, len(good)))
        return {"base_trial": good["base_trial"], **{name: good[name] for name in keep}}

    def case(self) -> Case:
        case = Case()
        self.only_good = self.random.random() < 0.3  # no mutation: a valid configuration
        layers = [self._yaml, self._job, self._environment, self._flags]
        for layer in self.random.sample(layers, self.random.randrange(1, 5)):
            layer(case)
        if self.random.random() < 0.3:
            case.argv.append("--print-config")
        return case

    def _yaml(self, case: Case) -> None:
        text = render_yaml(self.settings(), self.random)
        if not self.only_good and self.random.random() < 0.4:
            text = self.bomb(text)
        if not self.only_good and self.random.random() < 0.5:
            text = mutate_text(text, self.random)
        case.files["rule.yaml"] = text
        case.argv += ["--config", "{dir}/rule.yaml"]

    def _job(self, case: Case) -> None:
        document: Any = {
            "RuleParameters": self.settings(),
            "Environment": {k.upper(): str(v) for k, v in self.settings().items()},
        }
        if self.random.random() < 0.1:
            document = self.random.choice([[document], "x", {"RuleParameters": [1]}])
        try:
            text = json.dumps(document)
        except ValueError:  # a number JSON will not write
            text = "{}"
        if self.random.random() < 0.2:
            text = '{"RuleParameters": ' + "[" * self.random.choice([40, 5000]) + "}"
        if not self.only_good and self.random.random() < 0.4:
            text = mutate_text(text, self.random)
        case.files["job.json"] = text
        case.job_config = "{dir}/job.json"

    def _environment(self, case: Case) -> None:
        for name, value in self.settings().items():
            spelled = self.random.choice(
                [f"CLASSIMBALANCE_{name.upper()}", name.upper(), name, f"{name.upper()}X"]
            )
            case.environ[spelled] = value if isinstance(value, str) else json_text(value)
        if self.random.random() < 0.05:
            case.environ.update({f"VARIABLE_{i}": "1" for i in range(5_000)})

    def _flags(self, case: Case) -> None:
        for name, value in self.settings().items():
            flag = "--" + name.replace("_", "-")
            text = value if isinstance(value, str) else json_text(value)
            form = self.random.random()
            if form < 0.5:
                case.argv += [flag, text]
            elif form < 0.8:
                case.argv.append(f"{flag}={text}")
            else:
                case.argv.append(flag)
        if self.random.random() < 0.2:
            case.argv += self.random.choice(
                [["--unknown"], ["stray"], ["--mode"] * 3, ["-"] * 1_200, ["--samples=1"] * 50]
            )

    def bomb(self, text: str) -> str:
        """A hostile addition to a YAML document (a second document of its own where needed)."""
        kind = self.random.randrange(6)
        if kind == 0:
            width = self.random.choice([3, 9])
            items = ["&a0 [lol]"]
            items += [f"&a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, 10)]
            return text + f"class_names: [{', '.join(items)}]\n"
        if kind == 1:
            depth = self.random.choice([31, 33, 2_000])
            return text + "metric_labels: " + "[" * depth + "]" * depth + "\n"
        if kind == 2:
            return text + "".join(f"k{i}: {i}\n" for i in range(self.random.choice([30, 1_500])))
        if kind == 3:
            return text + "class_names: &r [*r]\n"
        if kind == 4:
            merges = [f"&m{i} {{<<: [*m{i - 1}, *m{i - 1}], n{i}: 1}}" for i in range(1, 20)]
            return text + f"metric_labels: [&m0 {{a: 1}}, {', '.join(merges)}]\n"
        return text + f"status_file: &s {'y' * 100_000}\nmessage_file: *s\n"


def json_text(value: Any) -> str:
    try:
        return json.dumps(value)
    except ValueError:
        return str(value)


def render_yaml(settings: dict[str, Any], rng: random.Random) -> str:
    """The settings as YAML in a form drawn at random: block, flow, quoted or JSON."""
    lines = []
    for name, value in settings.items():
        form = rng.random()
        if form < 0.5:
            lines.append(f"{name}: {json_text(value)}")
        elif form < 0.8:
            lines.append(f"{name}: {value}")
        else:
            lines.append(f"{name}: '{str(value).replace(chr(39), chr(39) * 2)}'")
    return "\n".join(lines) + "\n"


SPECIAL: Final = ":&*[]{}!|>'\"%@`#,-?\n\t\r\x00\x85\u2028\ufeff\\"


def mutate_text(text: str, rng: random.Random) -> str:
    """A few random edits: characters YAML and JSON give a meaning, deletions, copies, cuts."""
    for _ in range(rng.randrange(1, 6)):
        if not text:
            return rng.choice(SPECIAL)
        at = rng.randrange(len(text))
        edit = rng.randrange(5)
        if edit == 0:
            text = text[:at] + rng.choice(SPECIAL) + text[at:]
        elif edit == 1:
            text = text[:at] + text[at + rng.randrange(1, 20) :]
        elif edit == 2:
            end = min(len(text), at + rng.randrange(1, 200))
            text = text[:end] + text[at:end] * rng.randrange(1, 4) + text[end:]
        elif edit == 3:
            text = text[:at]
        else:
            text = text[:at] + rng.choice(SPECIAL) + text[at + 1 :]
    return text


# -- running one input ----------------------------------------------------------------------------


def _fill(text: str, folder: Path) -> str:
    return text.replace("{dir}", str(folder))


def run_case(case: Case, folder: Path) -> str:
    """Hold the loader to its contract on ``case``; the outcome in a word, or Finding."""
    from container.config import ConfigError, format_settings, load_settings

    for name, text in case.files.items():
        (folder / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    argv = [_fill(argument, folder) for argument in case.argv]
    environ = {key: _fill(value, folder) for key, value in case.environ.items()}
    job = _fill(case.job_config, folder) if case.job_config else None
    start = time.monotonic()
    try:
        loaded = load_settings(argv, environ, job_config_path=job)
    except ConfigError as error:
        said = "\n".join([str(error), *error.warnings])
        if len(said) > MAX_MESSAGE:
            raise Finding(f"a message of {len(said):,} characters: {said[:2000]}") from None
        _in_time(start)
        return "error"
    except Exception as exc:
        raise Finding(f"{type(exc).__name__}: {str(exc)[:2000]}") from exc
    printed = format_settings(loaded)
    (folder / "printed.yaml").write_text(printed, encoding="utf-8")
    try:
        again = load_settings(["--config", str(folder / "printed.yaml")], {}, job_config_path=None)
    except Exception as exc:
        raise Finding(f"--print-config output does not load: {exc}\n{printed}") from exc
    if again.settings != loaded.settings:
        raise Finding(f"--print-config output loads as other settings:\n{printed}")
    _in_time(start)
    return "loaded"


def _in_time(start: float) -> None:
    elapsed = time.monotonic() - start
    if elapsed > INPUT_SECONDS:
        raise Finding(f"took {elapsed:.1f} s, more than {INPUT_SECONDS} s")


# -- the child: inputs in a loop ---------------------------------------------------------------


def _child(seed: int, seconds: float, inflight: Path, out: Path) -> int:
    from container.config import SETTING_NAMES

    warnings.simplefilter("ignore")  # a regex's FutureWarning is no finding

    generator = Generator(seed, SETTING_NAMES)
    deadline = time.monotonic() + seconds
    outcomes: dict[str, int] = {}
    index = 0
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as temporary:
        folder = Path(temporary)
        while time.monotonic() < deadline:
            case = generator.case()
            inflight.write_text(json.dumps(asdict(case)), encoding="utf-8")
            print(f"start {index}", flush=True)
            try:
                outcome = run_case(case, folder)
            except Finding as finding:
                path = write_reproducer(out, seed, index, case, str(finding))
                print(f"finding {index}: {str(finding)[:500]}\nreproducer: {path}", file=sys.stderr)
                return FINDING_EXIT
            finally:
                for item in folder.iterdir():
                    item.unlink()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            print(f"done {index}", flush=True)
            index += 1
    print(f"{index:,} inputs, no finding: {outcomes}", file=sys.stderr)
    return 0


def write_reproducer(out: Path, seed: int, index: int, case: Case, finding: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"config-seed{seed}-input{index}.json"
    document = {"finding": finding, "seed": seed, "index": index, "case": asdict(case)}
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    return path


# -- the parent: watches the child -------------------------------------------------------------


def _cap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE))


def _parent(seed: int, seconds: float, out: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="fuzz-config-run-") as temporary:
        inflight = Path(temporary) / "inflight.json"
        command = [sys.executable, "-m", "devtools.fuzz_config", "--worker", str(inflight)]
        command += ["--seed", str(seed), "--seconds", str(seconds), "--out", str(out)]
        child = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=subprocess.PIPE,
            preexec_fn=_cap_address_space,  # noqa: PLW1509 (one setrlimit call: takes no lock)
        )
        assert child.stdout is not None
        silent_for = _watch(child, child.stdout.fileno())
        if silent_for is None:
            code = child.wait()
            return 0 if code == 0 else _crashed(code, inflight, seed, out)
        child.kill()
        child.wait()
        return _report(inflight, seed, out, f"no answer after {silent_for:.0f} s (a hang)")


def _watch(child: subprocess.Popen[bytes], stream: int) -> float | None:
    """Read the child's lines until it ends (None) or stays silent beyond the bound (seconds)."""
    pending = b""
    last = time.monotonic()
    limit = 2 * INPUT_SECONDS + 30  # start-up included
    while True:
        ready, _, _ = select.select([stream], [], [], 1.0)
        if ready:
            chunk = os.read(stream, 65536)
            if not chunk:
                return None
            pending += chunk
            if b"\n" in pending:
                pending = pending.rsplit(b"\n", 1)[1]
                last = time.monotonic()
        elif child.poll() is not None:
            return None
        if time.monotonic() - last > limit:
            return time.monotonic() - last


def _crashed(code: int, inflight: Path, seed: int, out: Path) -> int:
    if code == FINDING_EXIT:
        return 1
    return _report(inflight, seed, out, f"the child ended with code {code} (a crash)")


def _report(inflight: Path, seed: int, out: Path, finding: str) -> int:
    case = Case(**json.loads(inflight.read_text(encoding="utf-8")))
    path = write_reproducer(out, seed, -1, case, finding)
    print(f"finding: {finding}\nreproducer: {path}", file=sys.stderr)
    return 1


def replay(path: Path) -> int:
    document = json.loads(path.read_text(encoding="utf-8"))
    case = Case(**document["case"])
    with tempfile.TemporaryDirectory(prefix="fuzz-config-replay-") as temporary:
        try:
            outcome = run_case(case, Path(temporary))
        except Finding as finding:
            print(f"finding: {finding}", file=sys.stderr)
            return 1
    print(f"no finding ({outcome})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.fuzz_config", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to run")
    parser.add_argument("--seed", type=int, default=0, help="the inputs follow from it alone")
    parser.add_argument("--out", type=Path, default=Path("fuzz-findings"), help="reproducers")
    parser.add_argument("--replay", type=Path, help="run one reproducer again")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replay is not None:
        return replay(args.replay)
    if args.worker is not None:
        return _child(args.seed, args.seconds, args.worker, args.out)
    return _parent(args.seed, args.seconds, args.out)


if __name__ == "__main__":
    sys.exit(main())
