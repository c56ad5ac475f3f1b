"""Shared plumbing of benchmarks/engine.py, benchmarks/patterns.py and
benchmarks/policies.py.

The timing helpers, the `Results` rows, the background-load meter and the build
information come from `engine.py` unchanged, so all three harnesses measure and report
the same way. This module adds the command-line driver all three use (`--quick`,
`--json`, `--only`, `--settle`; `main`, with hooks for what only engine.py needs), and
what the two newer harnesses share: a table that can print signed differences, a
dispatch probe that also sees agents nested in policies, and iteration calibration.

Not a benchmark itself: run `engine.py`, `patterns.py` or `policies.py`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import counterpoint as cp
import engine
from engine import (  # noqa: F401  (re-exported for patterns.py and policies.py)
    NOISY_CORES,
    CpuMeter,
    Results,
    build_info,
    fmt_ratio,
    interleaved,
    loadavg,
    once,
    per_call,
    summary,
    wait_for_quiet,
)

# Unit of a row whose value is a signed difference of times, in seconds.
DELTA = "delta_s"


def fmt(value: float | None, unit: str) -> str:
    """engine.fmt, plus signed time differences (always in microseconds) and negative
    times."""
    if value is None:
        return "-"
    if unit == DELTA:
        return f"{value * 1e6:+,.2f} us"
    if unit == "s" and value < 0:
        return "-" + engine.fmt(-value, unit)
    return engine.fmt(value, unit)


def print_table(results: Results) -> None:
    """engine.print_table with this module's `fmt` (signed microseconds)."""
    engine.print_table(results, fmt)


def calibrate(fn: Callable[[], Any], seconds: float, minimum: int = 20) -> int:
    """How many back-to-back calls of `fn` take about `seconds` (at least `minimum`)."""
    calls, spent = 0, 0.0
    while spent < min(seconds / 4, 0.05) or calls < 5:
        spent += once(fn)
        calls += 1
    return max(minimum, int(seconds / (spent / calls)))


def warm(fn: Callable[[], Any], calls: int, seconds: float) -> None:
    """Calls `fn` `calls` times, or for `seconds`, whichever ends first (warms caches
    and lets `auto` dispatch move fast agents inline)."""
    deadline = time.perf_counter() + seconds
    for _ in range(calls):
        fn()
        if time.perf_counter() > deadline:
            break


class DispatchProbe:
    """Diagnostics only: records the native handles of the sync agents created inside
    the `with` block, including agents wrapped in policies (which engine.py's probe does
    not see), to report afterwards how many the engine still runs inline. Relies on
    private internals; if they change, it silently reports nothing."""

    def __init__(self) -> None:
        self.handles: list[tuple[str, Any]] = []
        self._patched: list[tuple[Any, Any]] = []

    def __enter__(self) -> DispatchProbe:
        try:
            import counterpoint._agents as agents_module
            import counterpoint._graph as graph_module
        except ImportError:
            return self
        original = agents_module.native_agent

        def capture(name: str, *args: Any, **kwargs: Any) -> Any:
            made = original(name, *args, **kwargs)
            if hasattr(made[0], "runs_inline"):
                self.handles.append((name, made[0]))
            return made

        for module in (agents_module, graph_module):
            if getattr(module, "native_agent", None) is original:
                self._patched.append((module, original))
                module.native_agent = capture
        return self

    def __exit__(self, *exc: object) -> None:
        for module, original in self._patched:
            module.native_agent = original
        self._patched.clear()

    def _called(self) -> list[tuple[str, Any]]:
        # An agent never called (a route not taken, an escalation never needed) has no
        # measurement yet (mean < 0): it says nothing about dispatch, so it is left out.
        return [(name, h) for name, h in self.handles if h.mean_call_seconds >= 0]

    def inline_count(self) -> tuple[int, int] | None:
        """(sync agents running inline, sync agents called at least once) or None if
        unknown."""
        try:
            flags = [bool(h.runs_inline) for _, h in self._called()]
        except Exception:  # noqa: BLE001 - diagnostics must never break a run
            return None
        return (sum(flags), len(flags)) if flags else None

    def moved(self) -> list[str]:
        """Agents that were called but no longer run inline."""
        try:
            return [name for name, h in self._called() if not h.runs_inline]
        except Exception:  # noqa: BLE001
            return []


def note_moved(probe: DispatchProbe, label: str, res: Results) -> None:
    moved = probe.moved()
    if moved:
        res.note(
            f"{label}: {len(moved)} agent(s) ({', '.join(sorted(set(moved)))}) ran on the thread "
            "pool at the end, not inline (`auto` dispatch saw slow calls, e.g. a descheduled "
            "thread); that figure includes thread hops"
        )


def main(
    doc: str,
    sections: dict[str, Callable[[Results, dict[str, Any]], None]],
    config: Callable[[bool], dict[str, Any]],
    argv: list[str] | None = None,
    *,
    quick_help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    run_instead: Callable[[argparse.Namespace], int | None] | None = None,
    table: Callable[[Results], None] = print_table,
    after_table: Callable[[list[str]], None] | None = None,
    json_extra: dict[str, Any] | None = None,
    record_settled: bool = True,
) -> int:
    """The command-line driver of engine.py, patterns.py and policies.py: parses the
    options, prints the run's header, runs the chosen `sections` (name -> function of
    the results and `config(quick)`) measuring the background load of each, prints the
    table and notes, and writes the JSON file if asked.

    Hooks, all optional:
        add_arguments  adds options to the parser (e.g. hidden ones for child processes);
        run_instead    called with the parsed options first: if it returns an exit
                       status, the driver returns it at once and runs no section;
        table          prints the results table (default: this module's print_table);
        after_table    called with the chosen section names right after the table;
        json_extra     more top-level entries of the JSON file, placed after "meta";
        record_settled whether meta records "settled_at" (the load each --settle wait
                       ended at).
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", metavar="PATH", help="also write machine-readable results")
    parser.add_argument("--only", nargs="+", choices=list(sections), metavar="SECTION",
                        help=f"run only these sections: {', '.join(sections)}")
    parser.add_argument("--settle", type=float, default=0.0, metavar="SECONDS",
                        help="before each section wait up to SECONDS for other processes "
                        "to use under 0.15 cores (for shared machines; default: don't wait)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if run_instead is not None:
        status = run_instead(args)
        if status is not None:
            return status

    cfg = config(args.quick)
    chosen = args.only or list(sections)
    meta: dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "counterpoint": cp.__version__,
        "tbb": cp.TBB_VERSION,
        "build": build_info(),
        "quick": args.quick,
        "settle_seconds": args.settle,
        "config": cfg,
        "sections": chosen,
        "loadavg_start": loadavg(),
    }
    print(f"counterpoint {cp.__version__} (oneTBB {cp.TBB_VERSION}), Python {meta['python']}, "
          f"{meta['platform']}, {meta['cpu_count']} CPUs")
    build = meta["build"]
    if "extension_built" in build:
        print(f"engine extension built {build['extension_built']}"
              + (f"; checkout {build['git_head']}"
                 + (" + uncommitted engine changes" if build.get("git_engine_dirty") else "")
                 if "git_head" in build else ""))
    print(f"load average at start: {meta['loadavg_start']}"
          + ("  (busy machine: expect noisy figures)"
             if meta["loadavg_start"] and meta["loadavg_start"][0] > 0.5 else ""))
    print("Baselines are measured in this same run; times are medians over repeats.\n",
          flush=True)

    res = Results()
    started = time.perf_counter()
    meta["background_cores"] = {}
    if record_settled:
        meta["settled_at"] = {}
    for name in chosen:
        if args.settle > 0:
            before = wait_for_quiet(args.settle)
            if record_settled:
                meta["settled_at"][name] = before
            if before is not None:
                print(f"    (settled: other processes at {before:.2f} cores)", flush=True)
        meter = CpuMeter()
        first_row = len(res.rows)
        sections[name](res, cfg)
        other = meter.background_cores()
        meta["background_cores"][name] = other
        for row in res.rows[first_row:]:
            row["section"] = name
            row["background_cores"] = other
        if other is not None:
            print(f"    other processes kept {other:.2f} of {os.cpu_count()} cores busy during "
                  f"this section{'  (noisy!)' if other > NOISY_CORES else ''}", flush=True)
    meta["seconds"] = time.perf_counter() - started
    meta["loadavg_end"] = loadavg()

    table(res)
    if after_table is not None:
        after_table(chosen)
    for text in res.notes:
        print(f"Note: {text}")
    misses = [r for r in res.rows if r["status"] == "MISS"]
    print(f"{sum(r['status'] == 'PASS' for r in res.rows)} PASS, {len(misses)} MISS; "
          f"{meta['seconds']:.0f} s; load average at end: {meta['loadavg_end']}")

    if args.json:
        with open(args.json, "w") as out:
            json.dump({"meta": meta, **(json_extra or {}), "results": res.rows,
                       "notes": res.notes}, out, indent=2, default=repr)
        print(f"wrote {args.json}")
    return 0
