"""The generated section of BENCHMARKS.md, rendered from a run's results (``bench.run``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.goals import fmt, times
from bench.trials import TrialSpec

MAIN_ROWS = (
    "cfloor/replay",
    "floor/replay",
    "evaluator/replay",
    "smdebug/replay",
    "evaluator/follow",
    "smdebug/follow",
)
"""The main table's rows per trial, in order; ``command/replay`` has a table of its own."""
LABELS = {"cfloor": "C floor", "floor": "floor", "evaluator": "evaluator", "smdebug": "smdebug"}


def _counts(ok: bool | None) -> str:
    return "exact" if ok else "**differ**"


def _head(results: dict[str, Any]) -> list[str]:
    meta = results["meta"]
    m, v = meta["machine"], meta["versions"]
    uncommitted = v["ours_uncommitted"]
    lines = [
        f"Run {meta['started']} ({meta['mode']}, {meta['duration_min']:.1f} min): "
        f"`{meta['command']}`",
        "",
        f"- Machine: {m['nproc']} cores ({m['cpu']}), {m['memory']}, Linux {m['kernel']}; "
        f"load average {m['loadavg_start']} at the start, {m.get('loadavg_end')} at the end "
        "(shared: other work ran at the same time).",
        f"- Versions: Python {v['python']}, numpy {v['numpy']}, smdebug {v['smdebug']} "
        f"(protobuf {v['protobuf']}), boto3 {v['boto3']}, moto {v['moto']}, pyinstrument "
        f"{v['pyinstrument']}, gcc {v.get('gcc') or 'missing'} (the C floor, -O2); ours at "
        f"{v['ours_head']}"
        + (f" with uncommitted changes in {', '.join(uncommitted)}" if uncommitted else " (clean)")
        + f" (code digest {v['ours_code_digest']})"
        + (
            f"; **the code changed during the run** (digest at the end "
            f"{v['ours_code_digest_end']}), so rounds may mix versions."
            if v.get("ours_code_digest_end")
            else "."
        ),
        f"- Rounds: {meta['repeat']} per case "
        f"(smdebug following at S=5000: {meta['slow_repeat']}); "
        "figures are medians over rounds, ratios medians of per-round ratios.",
    ]
    if meta.get("cfloor_problem"):
        lines.append(f"- **The C floor was not measured**: {meta['cfloor_problem']}")
    return [*lines, ""]


def _local(results: dict[str, Any]) -> list[str]:
    lines = [
        "| trial | mode | system | steps/s | us/step | smdebug / ours | / floor | / C floor "
        "| peak RSS MB | first 10% us/step | last 10% us/step | last / first | counts |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for key, rows in results["summary"].items():
        spec = TrialSpec(**results["local"][key]["spec"])
        for name in MAIN_ROWS:
            row = rows.get(name)
            if row is None:
                continue
            system, mode = name.split("/")
            floor = system not in {"evaluator", "smdebug"}
            lines.append(
                f"| {spec.label} | {mode} | {LABELS[system]} | {fmt(row['steps_per_s'], 0)} | "
                f"{fmt(row['us_per_step'])} | "
                f"{times(row.get('vs_smdebug')) if system == 'evaluator' else ''} | "
                f"{'' if floor else times(row.get('vs_floor'))} | "
                f"{'' if system == 'cfloor' else times(row.get('vs_cfloor'))} | "
                f"{fmt(row['rss_mb'])} | {fmt(row['first10_us'])} | "
                f"{fmt(row['last10_us'])} | {fmt(row['last_over_first'], 2)} | "
                f"{_counts(row['counts_ok'])} |"
            )
    return [*lines, ""]


def _whole_process(results: dict[str, Any]) -> list[str]:
    lines = [
        "Whole processes, replay (wall time from exec to exit; the command: `classimbalance-rule"
        " --trial T --once --argmax true --metrics-enabled false --status-file F`; smdebug: "
        "`python -m bench.smdebug_loop --trial T --mode replay`). *loop* is the same system's "
        "in-process figure above (busy_s: opening the trial to the verdict):",
        "",
        "| trial | command s | evaluator loop s | smdebug process s | smdebug loop s "
        "| smdebug / command | counts |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    found = False
    for key, rows in results["summary"].items():
        command = rows.get("command/replay")
        if command is None:
            continue
        found = True
        spec = TrialSpec(**results["local"][key]["spec"])
        ours = rows.get("evaluator/replay") or {}
        theirs = rows.get("smdebug/replay") or {}
        lines.append(
            f"| {spec.label} | {fmt(command['process_s'], 2)} | {fmt(ours.get('busy_s'), 2)} | "
            f"{fmt(theirs.get('wall_s'), 2)} | {fmt(theirs.get('busy_s'), 2)} | "
            f"{times(command.get('vs_smdebug'))} | {_counts(command['counts_ok'])} |"
        )
    return [*lines, ""] if found else []


def _startup(results: dict[str, Any]) -> list[str]:
    run = results.get("startup")
    if not run:
        return []
    what = {
        "first_poll_s": "the first poll of the trial (its first open of `index/`, by inotify)",
        "exit_s": "the exit right after that poll (an upper bound on the start-up)",
        "imports_s": 'for comparison: `python -c "import container.cli"` (its imports), exit',
        "python_s": "for comparison: `python -c pass` (the interpreter alone), exit",
    }
    lines = [
        f"Start-up: `classimbalance-rule --once` on an empty trial (a folder with an empty "
        f"`index/`), {run['runs']} runs (exit code {', '.join(map(str, run['exit_codes']))}: no "
        "steps):",
        "",
        "| from exec to | median s | min s | max s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, text in what.items():
        lines.append(
            f"| {text} | {fmt(run['median'][name], 3)} | {fmt(run['min'][name], 3)} | "
            f"{fmt(run['max'][name], 3)} |"
        )
    return [*lines, ""]


def _latency(results: dict[str, Any]) -> list[str]:
    if not results.get("latency"):
        return []
    lines = [
        "Notice latency (a step's last index file in place -> reflected):",
        "",
        "| reader | W | writer: a step every | poll interval | steps | p50 ms | p95 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results["latency"]:
        what = "evaluator (metrics)" if r["system"] == "evaluator" else "smdebug (rule loop)"
        lines.append(
            f"| {what} | {r['workers']} | {r['writer_interval_s']:g} s | "
            f"{r['poll_interval_s']:g} s | {r['reflected']} | {fmt(r['p50_ms'])} | "
            f"{fmt(r['p95_ms'])} | {fmt(r['max_ms'])} |"
        )
    return [*lines, ""]


def _s3(results: dict[str, Any]) -> list[str]:
    if not results.get("s3"):
        return []
    lines = [
        "S3 requests counted at the endpoint (reader's requests only):",
        "",
        "| reader | scenario | S | W | LIST | GET | HEAD | other | per (step, worker) | counts |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results["s3"]:
        if not r.get("available", True):
            lines.append(
                f"| {r['reader']} | {r['scenario']} | {r['steps']} | {r['workers']} | "
                "not available | | | | | |"
            )
            continue
        lines.append(
            f"| {r['reader']} | {r['scenario']} | {r['steps']} | {r['workers']} | "
            f"{r['list']} | {r['get']} | {r['head']} | {r['other']} | "
            f"{fmt(r['per_step_worker'], 2)} | {_counts(r.get('counts_ok'))} |"
        )
    return [*lines, ""]


def _goals(results: dict[str, Any]) -> list[str]:
    if not results.get("goals"):
        return []
    lines = ["Goals:", "", "| goal | target | measured | verdict |", "| --- | --- | --- | --- |"]
    for g in results["goals"]:
        lines.append(f"| {g['goal']} | {g['target']} | {g['measured']} | {g['verdict']} |")
    return [*lines, ""]


def _profiles(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for profile in results.get("profile") or []:
        lines += [
            f"Profile: the evaluator, {profile['mode']} of `{Path(profile['trial']).name}`, "
            f"under pyinstrument ({profile['profiled_s']} s profiled, "
            f"{fmt(profile['us_per_step_profiled'])} us/step with the profiler; tree in "
            f"`{profile['tree_file']}`).",
            "",
            "| self time | function | | inclusive | function (project code) |",
            "| ---: | --- | --- | ---: | --- |",
        ]
        for own, inclusive in zip(profile["self"], profile["inclusive"], strict=False):
            lines.append(
                f"| {own['share'] * 100:.1f}% | `{own['function']}` | | "
                f"{inclusive['share'] * 100:.1f}% | `{inclusive['function']}` |"
            )
        lines.append("")
    return lines


def render(results: dict[str, Any]) -> str:
    """The generated section: the run, its tables, the goals, the profiles."""
    lines = _head(results)
    if results.get("summary"):
        lines += _local(results) + _whole_process(results)
    for part in (_startup, _latency, _s3, _goals, _profiles):
        lines += part(results)
    return "\n".join(lines)
