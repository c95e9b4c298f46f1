"""The goals table: each goal's target, the figures of a run that bear on it, and a verdict.

A verdict is computed from the run: *does not hold* when a measured figure misses its target,
*not measured* when the case a goal names was not run (``--quick`` has no S=5000) or a section
was left out, *holds* otherwise. Goals over "every trial" judge the trials that were run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bench.trials import TrialSpec

GOAL_CFLOOR = 3.0
"""Replay, per step: at most this many times the C floor's time at 10 classes..."""
GOAL_CFLOOR_MANY_CLASSES = 2.0
"""...and at most this many at 1,000 classes (where the maths, not the reading, dominates)."""
MANY_CLASSES = 1000
GOAL_REPLAY_SPEEDUP = 20.0
"""Replay: at least this many times faster than smdebug's rule loop on every trial..."""
GOAL_REPLAY_SPEEDUP_LARGE = 50.0
"""...and this many at S=5000 W=4."""
LARGE = TrialSpec(5000, 4)
GOAL_PROCESS_SPEEDUP = 20.0
"""Whole processes, replay of S=5000 W=1: smdebug's over the command's wall time."""
PROCESS_CASE = TrialSpec(5000, 1)
GOAL_STARTUP_S = 0.25
"""Exec of the command to its first poll of the trial."""
GOAL_FOLLOW_FLAT = 1.5
GOAL_RSS_MB = 100.0
GOAL_RSS_FLAT = 1.2
GOAL_LATENCY_MARGIN_S = 0.1
GOAL_S3_REQUESTS = 1.1


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def times(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x" if value < 100 else f"{value:,.0f}x"


def verdict(checks: Iterable[bool | None]) -> bool | None:
    """False if any check failed, None if any was not measured (or there were none), else
    True."""
    found = list(checks)
    if False in found:
        return False
    if not found or None in found:
        return None
    return True


def _over(big: dict[str, Any], small: dict[str, Any], name: str) -> float | None:
    """us/step of ``name`` in one case over another."""
    numerator = (big.get(name) or {}).get("us_per_step")
    denominator = (small.get(name) or {}).get("us_per_step")
    return numerator / denominator if numerator and denominator else None


class _Goals:
    def __init__(self, results: dict[str, Any]) -> None:
        self.results = results
        self.summary: dict[str, Any] = results["summary"]
        self.specs = {
            key: TrialSpec(**case["spec"]) for key, case in results.get("local", {}).items()
        }
        self.rows: list[dict[str, str]] = []

    def add(self, goal: str, target: str, measured: list[str], holds: bool | None) -> None:
        verdict_text = "not measured" if holds is None else "holds" if holds else "does not hold"
        self.rows.append(
            {
                "goal": goal,
                "target": target,
                "measured": "; ".join(measured) or "not run",
                "verdict": verdict_text,
            }
        )

    def figure(self, key: str, row: str, field: str) -> Any:
        return self.summary.get(key, {}).get(row, {}).get(field)

    def cfloor(self) -> None:
        measured, checks = [], []
        for key, spec in self.specs.items():
            ours = self.figure(key, "evaluator/replay", "vs_cfloor")
            if ours is None:
                continue
            limit = GOAL_CFLOOR_MANY_CLASSES if spec.classes >= MANY_CLASSES else GOAL_CFLOOR
            python_floor = self.figure(key, "floor/replay", "vs_cfloor")
            measured.append(
                f"{spec.label}: {times(ours)} (the Python floor: {times(python_floor)})"
            )
            checks.append(ours <= limit)
        self.add(
            "Replay vs the C floor",
            f"<= {GOAL_CFLOOR:g}x the C floor's time per step at 10 classes, "
            f"<= {GOAL_CFLOOR_MANY_CLASSES:g}x at {MANY_CLASSES:,} classes",
            measured,
            verdict(checks),
        )

    def smdebug(self) -> None:
        measured, checks = [], []
        for key, spec in self.specs.items():
            ours = self.figure(key, "evaluator/replay", "vs_smdebug")
            if ours is None:
                continue
            measured.append(
                f"{spec.label}: {times(ours)} (the floor: "
                f"{times(self.figure(key, 'smdebug/replay', 'vs_floor'))}, the C floor: "
                f"{times(self.figure(key, 'smdebug/replay', 'vs_cfloor'))})"
            )
            checks.append(ours >= GOAL_REPLAY_SPEEDUP)
        large = self.figure(LARGE.key, "evaluator/replay", "vs_smdebug")
        checks.append(None if large is None else large >= GOAL_REPLAY_SPEEDUP_LARGE)
        self.add(
            "Replay vs smdebug's rule loop",
            f">= {GOAL_REPLAY_SPEEDUP_LARGE:g}x faster at {LARGE.label}, "
            f">= {GOAL_REPLAY_SPEEDUP:g}x on every trial",
            measured + ([] if large is not None else [f"{LARGE.label}: not run"]),
            verdict(checks),
        )

    def whole_process(self) -> None:
        measured = []
        for key, spec in self.specs.items():
            ratio = self.figure(key, "command/replay", "vs_smdebug")
            if ratio is not None:
                measured.append(
                    f"{spec.label}: {times(ratio)} "
                    f"({fmt(self.figure(key, 'command/replay', 'process_s'), 2)} s vs "
                    f"{fmt(self.figure(key, 'smdebug/replay', 'wall_s'), 2)} s)"
                )
        ratio = self.figure(PROCESS_CASE.key, "command/replay", "vs_smdebug")
        self.add(
            "Whole process, replay",
            f"smdebug's whole process >= {GOAL_PROCESS_SPEEDUP:g}x the command's at "
            f"{PROCESS_CASE.label}",
            measured + ([] if ratio is not None else [f"{PROCESS_CASE.label}: not run"]),
            None if ratio is None else ratio >= GOAL_PROCESS_SPEEDUP,
        )

    def startup(self) -> None:
        run = self.results.get("startup")
        medians = (run or {}).get("median", {})
        polled, bound = medians.get("first_poll_s"), medians.get("exit_s")
        measured = []
        if polled is not None:
            measured.append(f"exec to the first poll: {fmt(polled, 3)} s")
        if bound is not None:
            measured.append(f"exec to exit after it (upper bound): {fmt(bound, 3)} s")
        if run:
            measured.append(f"median of {run['runs']} runs")
        holds = None
        if polled is not None:
            holds = polled <= GOAL_STARTUP_S
        elif bound is not None and bound <= GOAL_STARTUP_S:
            holds = True
        self.add(
            "Start-up of the command", f"<= {GOAL_STARTUP_S:g} s to its first poll", measured, holds
        )

    def following(self) -> None:
        summary = self.summary
        flat = {k: s.get("evaluator/follow", {}).get("last_over_first") for k, s in summary.items()}
        theirs = {k: s.get("smdebug/follow", {}).get("last_over_first") for k, s in summary.items()}
        growth = []
        for key, spec in self.specs.items():
            small = TrialSpec(1000, spec.workers, spec.classes, spec.batch).key
            if spec.steps < 5000 or small not in summary:
                continue
            ours_growth, smdebug_growth = (
                _over(summary[key], summary[small], f"{system}/follow")
                for system in ("evaluator", "smdebug")
            )
            growth.append(
                f"us/step at S=5000 over S=1000, W={spec.workers}: ours {times(ours_growth)}, "
                f"smdebug {times(smdebug_growth)}"
            )
        self.add(
            "Following: per-step cost flat in S",
            f"last 10% of steps <= {GOAL_FOLLOW_FLAT:g}x the first 10%",
            [
                f"{self.specs[k].label}: ours {fmt(v, 2)}, smdebug {fmt(theirs.get(k), 2)}"
                for k, v in flat.items()
            ]
            + growth,
            verdict(None if v is None else v <= GOAL_FOLLOW_FLAT for v in flat.values()),
        )

    def rss(self) -> None:
        rss = {
            k: max(
                s.get("evaluator/replay", {}).get("rss_mb") or 0,
                s.get("evaluator/follow", {}).get("rss_mb") or 0,
            )
            for k, s in self.summary.items()
        }
        specs = self.specs
        big = [k for k, spec in specs.items() if spec.steps >= 5000 and spec.workers == 4]
        measured = [
            f"{specs[k].label}: {fmt(v)} MB" for k, v in rss.items() if specs[k].classes == 10
        ]
        flat_pairs = []
        for key, spec in specs.items():
            small = TrialSpec(1000, spec.workers, spec.classes, spec.batch).key
            if spec.steps >= 5000 and small in rss and rss[small]:
                flat_pairs.append(rss[key] / rss[small])
        self.add(
            "Peak RSS (native reader)",
            f"<= {GOAL_RSS_MB:g} MB at S=5000 W=4; S=5000 within {GOAL_RSS_FLAT:g}x of S=1000",
            measured
            + ([f"S=5000/S=1000: {', '.join(times(p) for p in flat_pairs)}"] if flat_pairs else []),
            None
            if not big
            else all(rss[k] <= GOAL_RSS_MB for k in big)
            and all(p <= GOAL_RSS_FLAT for p in flat_pairs),
        )

    def latency(self) -> None:
        lat = [r for r in self.results.get("latency", []) if r["system"] == "evaluator"]
        self.add(
            "A new step in the metrics",
            f"p95 <= poll interval + {GOAL_LATENCY_MARGIN_S * 1000:g} ms",
            [
                f"W={r['workers']}: p95 {fmt(r['p95_ms'])} ms (poll {r['poll_interval_s']:g} s)"
                for r in lat
            ],
            verdict(
                r["p95_ms"] is not None
                and r["p95_ms"] <= (r["poll_interval_s"] + GOAL_LATENCY_MARGIN_S) * 1000
                for r in lat
            ),
        )

    def s3(self) -> None:
        s3 = [
            r
            for r in self.results.get("s3", [])
            if r["reader"] == "evaluator" and r["scenario"].startswith("follow")
        ]
        available = [r for r in s3 if r.get("available")]
        self.add(
            "S3 requests while following",
            f"<= {GOAL_S3_REQUESTS:g} per (step, worker), amortised",
            [
                f"S={r['steps']} W={r['workers']}, a step every {r['writer_interval_s']:g} s: "
                f"{fmt(r['per_step_worker'], 2)}"
                for r in available
            ]
            or (["the evaluator's S3 reader is not available"] if s3 else []),
            verdict(r["per_step_worker"] <= GOAL_S3_REQUESTS for r in available),
        )


def goals(results: dict[str, Any]) -> list[dict[str, str]]:
    """The goals table of a run's results (``summary``, ``startup``, ``latency``, ``s3``)."""
    table = _Goals(results)
    table.cfloor()
    table.smdebug()
    table.whole_process()
    table.startup()
    table.following()
    table.rss()
    table.latency()
    table.s3()
    return table.rows
