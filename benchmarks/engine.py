#!/usr/bin/env python3
"""Engine benchmark harness for counterpoint.

Every figure is printed next to a baseline measured in the same run (same process,
same machine state) and the ratio between the two. This is a measurement tool, not a
test suite: it never fails on a missed target, it reports it.

Usage:
    python benchmarks/engine.py [--quick] [--json out.json] [--only SECTION ...]
                                [--settle SECONDS]

Sections (see benchmarks/README.md for what each figure means):
    overhead   1. per-invoke engine overhead: 3-agent chain, 5-way fan-out + join
    chain1000  2. 1,000-agent chain: cost per agent
    sync64     3. 64 sync agents doing time.sleep(0.05) in one fan-out
    async1000  4. 1,000 async agents doing await asyncio.sleep(0.05) in one fan-out
    batch      5. batch of 10,000 runs of the 5-way fan-out: runs/s against a loop of
                  invoke, peak memory, and peak memory for 10,000 and 100,000 inputs
                  with the default in-flight window
    batchwait  6. batch of 10,000 runs whose agents time.sleep(0.010), 256 in flight:
                  throughput against the ideal and against threads and plain asyncio
                  written by hand, pool threads used
    memory     7. bytes per in-flight run: native (engine) side and Python side
    coroutines 8. coroutine agents against plain asyncio: a 5-way fan-out + join awaited
                  with ainvoke vs asyncio.gather, a 100-agent chain vs awaiting in turn

Methodology in short: warm up first, time many iterations per repeat, take the median
(and report the best) over several repeats, and interleave engine and baseline repeats
so that both see the same machine noise. Memory of sections 5 and 7 is measured in a
fresh child process per implementation or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import ctypes
import datetime as _dt
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

try:
    import resource  # POSIX only: the fallback for peak-RSS figures
except ImportError:  # pragma: no cover
    resource = None  # type: ignore[assignment]

import counterpoint as cp

SLEEP = 0.05  # seconds each agent sleeps in sections 3 and 4
FANOUT_WIDTH = 5
CHAIN_LONG = 1000
SYNC_WIDTH = 64
ASYNC_WIDTH = 1000
CORO_CHAIN = 100  # agents in section 8's coroutine chains
BATCH_RUNS = 10_000
# Section 5: peak RSS of a batch with the default in-flight window, for these input counts.
WINDOW_INPUTS = (10_000, 100_000)
# Section 6: a batch whose agents wait.
WAIT_RUNS = 10_000
WAIT_SLEEP = 0.010       # seconds each agent sleeps
WAIT_WIDTH = 5           # src -> WAIT_WIDTH workers -> join
WAIT_CONCURRENCY = 256   # max_concurrency of the batch
WAIT_LEVELS = 3          # agents on the critical path: src, a worker, join
# Section 7: runs held in flight while memory is measured.
MEMORY_RUNS = 2_000

# Published LangGraph figures for the same two shapes, quoted for context only. They are
# NOT measured by this harness (different machine, library and methodology).
LANGGRAPH_PUBLISHED_US = {"chain3": 640.0, "fanout5": 2260.0}

# Other processes using more CPU than this (in cores) during a section flag it as noisy.
NOISY_CORES = 0.2


# --------------------------------------------------------------------------------------
# Agents and their plain-Python equivalents
# --------------------------------------------------------------------------------------


def noop(x):
    return x


def sleeper(x):
    time.sleep(SLEEP)
    return x


async def async_sleeper(x):
    await asyncio.sleep(SLEEP)
    return x


class _DispatchProbe:
    """Diagnostics only: keeps the native handles of the sync agents compiled inside the
    `with` block, to report afterwards how many the engine still runs inline (``auto``
    dispatch moves an agent to the thread pool for good after three slow calls, and a
    descheduled thread can make a no-op call look slow). Relies on private internals;
    if they change, it silently reports nothing."""

    def __init__(self) -> None:
        self.handles: list[Any] = []

    def __enter__(self) -> _DispatchProbe:
        import importlib

        self._module = None
        # Where node specs build their native agents; older builds did it in _graph.
        for name in ("counterpoint._spec", "counterpoint._graph"):
            try:
                graph_module = importlib.import_module(name)
                self._original = graph_module.native_agent
            except (ImportError, AttributeError):
                continue
            self._module = graph_module
            break
        if self._module is None:
            return self

        def capture(*args: Any, **kwargs: Any) -> Any:
            made = self._original(*args, **kwargs)
            self.handles.append(made[0])
            return made

        graph_module.native_agent = capture
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._module is not None:
            self._module.native_agent = self._original

    def inline_count(self) -> tuple[int, int] | None:
        """(agents running inline, sync agents) or None if unknown."""
        try:
            flags = [h.runs_inline for h in self.handles if hasattr(h, "runs_inline")]
        except Exception:  # noqa: BLE001 - diagnostics must never break a run
            return None
        return (sum(flags), len(flags)) if flags else None


def warn_if_moved(inline: tuple[int, int] | None, res: Results) -> None:
    if inline and inline[0] < inline[1]:
        res.note(
            f"{inline[1] - inline[0]} of {inline[1]} no-op agents were moved to the thread "
            "pool for good during this section (`auto` dispatch saw three calls take > 1 ms, "
            "e.g. a descheduled thread); the figures include those thread hops"
        )


def chain_graph(length: int) -> tuple[cp.CompiledGraph, Callable[[Any], Any]]:
    """A chain of `length` no-op agents and the plain loop calling the same functions."""
    g = cp.Graph()
    steps = []
    for i in range(length):
        g.add(f"a{i}", noop, after=None if i == 0 else f"a{i - 1}")
        steps.append(noop)

    def plain(x):
        for step in steps:
            x = step(x)
        return x

    return g.compile(), plain


def fanout_graph(width: int = FANOUT_WIDTH) -> tuple[cp.CompiledGraph, Callable[[Any], Any]]:
    """`width` entry agents that all receive the input, joined by one agent.

    The join agent receives {branch_name: output}; the plain equivalent builds the same
    dict by calling the same functions in the same order.
    """
    g = cp.Graph()
    branches = []
    for i in range(width):
        name = f"w{i}"
        g.add(name, noop)
        branches.append((name, noop))
    g.add("join", noop, after=[name for name, _ in branches])
    join = noop

    def plain(x):
        joined = {}
        for name, fn in branches:
            joined[name] = fn(x)
        return join(joined)

    return g.compile(), plain


def parallel_graph(agent: Any, width: int) -> cp.CompiledGraph:
    """`width` copies of `agent` as independent entry agents (one fan-out, no join)."""
    g = cp.Graph()
    for i in range(width):
        g.add(f"p{i}", agent)
    return g.compile()


# --------------------------------------------------------------------------------------
# Timing helpers
# --------------------------------------------------------------------------------------


def per_call(fn: Callable[[], Any], iterations: int) -> float:
    """Seconds per call of `fn`, over `iterations` back-to-back calls, GC paused."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        return (time.perf_counter() - start) / iterations
    finally:
        if gc_was_enabled:
            gc.enable()


def once(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    candidates: dict[str, tuple[Callable[[], Any], int]], repeats: int
) -> dict[str, list[float]]:
    """Times each candidate `repeats` times, alternating candidates (rotating the order
    each repeat) so that slow phases of a noisy machine hit all of them alike.

    candidates: name -> (callable, iterations per repeat). Returns name -> per-call
    seconds, one sample per repeat.
    """
    names = list(candidates)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn, iterations = candidates[name]
            samples[name].append(per_call(fn, iterations))
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples),
        "best": min(samples),
        "worst": max(samples),
        "samples": list(samples),
    }


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


class Results:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def add(
        self,
        key: str,
        figure: str,
        measured: float,
        unit: str,
        *,
        baseline: float | None = None,
        baseline_label: str = "",
        ratio: float | None = None,
        ratio_label: str = "",
        target: float | None = None,
        target_on: str = "measured",  # "measured" or "ratio"
        target_label: str = "",
        higher_is_better: bool = False,
        details: dict[str, Any] | None = None,
    ) -> None:
        if ratio is None and baseline:
            ratio = measured / baseline
        status = "info"
        over = None
        if target is not None:
            value = measured if target_on == "measured" else ratio
            ok = value >= target if higher_is_better else value <= target
            status = "PASS" if ok else "MISS"
            if not ok:
                over = (value / target - 1.0) if not higher_is_better else (1.0 - value / target)
        self.rows.append(
            {
                "key": key,
                "figure": figure,
                "measured": measured,
                "unit": unit,
                "higher_is_better": higher_is_better,
                "baseline": baseline,
                "baseline_label": baseline_label,
                "ratio": ratio,
                "ratio_label": ratio_label,
                "target": target,
                "target_on": target_on if target is not None else None,
                "target_label": target_label,
                "status": status,
                "miss_by": over,
                "details": details or {},
            }
        )

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"    note: {text}", flush=True)


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        if value < 1e-6:
            return f"{value * 1e9:.0f} ns"
        if value < 1e-3:
            return f"{value * 1e6:.2f} us"
        if value < 1.0:
            return f"{value * 1e3:.1f} ms"
        return f"{value:.2f} s"
    if unit == "runs/s":
        return f"{value:,.0f} runs/s"
    if unit == "MiB":
        return f"{value:,.1f} MiB"
    if unit in ("B", "threads"):
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    if ratio >= 10:
        return f"{ratio:.1f}x"
    return f"{ratio:.2f}x"


def print_table(
    results: Results,
    fmt: Callable[[float, str], str] = fmt,
    *,
    ratio_fmt: Callable[[float | None], str] = fmt_ratio,
    extra: tuple[str, Callable[[dict[str, Any]], str]] | None = None,
) -> None:
    """Prints the results table; `fmt` formats each value with its unit, `ratio_fmt` each
    ratio, and `extra` (header, cell of a row) adds a column after "Measured"."""
    headers = ["Figure", "Measured", "Baseline (same run)", "Ratio", "Target", "Result"]
    if extra is not None:
        headers.insert(2, extra[0])
    rows = []
    noisy = False
    for row in results.rows:
        baseline = "-"
        if row["baseline"] is not None:
            baseline = f"{fmt(row['baseline'], row['unit'])} {row['baseline_label']}".strip()
        ratio = ratio_fmt(row["ratio"])
        if row["ratio_label"]:
            ratio = f"{ratio} {row['ratio_label']}"
        status = row["status"]
        if status == "MISS" and row["miss_by"] is not None:
            status = f"MISS (+{row['miss_by'] * 100:.0f}%)"
        if (row.get("background_cores") or 0.0) > NOISY_CORES:
            status += " *"
            noisy = True
        cells = [row["figure"], fmt(row["measured"], row["unit"]), baseline, ratio,
                 row["target_label"] or "-", status]
        if extra is not None:
            cells.insert(2, extra[1](row))
        rows.append(cells)
    if not rows:
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print()
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if noisy:
        print(f"* measured while other processes kept more than {NOISY_CORES} cores busy: "
              "treat as an upper bound and rerun on a quiet machine")
    print()


# --------------------------------------------------------------------------------------
# 1. Engine overhead per invoke
# --------------------------------------------------------------------------------------


def bench_overhead(res: Results, cfg: dict[str, Any]) -> None:
    print("[1] engine overhead per invoke, no-op sync agents", flush=True)
    probes = [_DispatchProbe(), _DispatchProbe()]
    with probes[0]:
        chain = chain_graph(3)
    with probes[1]:
        fanout = fanout_graph()
    shapes = [
        ("chain3", "3-agent chain", *chain, 10e-6, probes[0]),
        ("fanout5", f"{FANOUT_WIDTH}-way fan-out + join", *fanout, 25e-6, probes[1]),
    ]
    for key, label, app, plain, target, probe in shapes:
        expected = plain(7)
        got = app.invoke(7)
        assert got == expected, (got, expected)
        for _ in range(cfg["warmup_invokes"]):  # also lets `auto` dispatch go inline
            app.invoke(1)
            plain(1)
        n = cfg["invokes"]
        samples = interleaved(
            {
                "invoke": (lambda app=app: app.invoke(1), n),
                # The plain loop is ~100x faster: more iterations for a stable figure.
                "plain": (lambda plain=plain: plain(1), n * 20),
            },
            cfg["repeats"],
        )
        inv, pl = summary(samples["invoke"]), summary(samples["plain"])
        inline = probe.inline_count()
        overhead = inv["median"] - pl["median"]
        overhead_best = inv["best"] - pl["best"]
        res.add(
            f"{key}.invoke",
            f"1. {label}: app.invoke time",
            inv["median"],
            "s",
            baseline=pl["median"],
            baseline_label="plain loop",
            details={"invoke": inv, "plain": pl, "iterations": n, "plain_iterations": n * 20,
                     "agents_inline_after": inline},
        )
        res.add(
            f"{key}.overhead",
            f"1. {label}: overhead (invoke - plain)",
            overhead,
            "s",
            target=target,
            target_label=f"<= {target * 1e6:.0f} us",
            details={"best_case_overhead": overhead_best},
        )
        published = LANGGRAPH_PUBLISHED_US[key]
        print(
            f"    {label}: invoke {fmt(inv['median'], 's')} (best {fmt(inv['best'], 's')}), "
            f"plain {fmt(pl['median'], 's')}, overhead {fmt(overhead, 's')} "
            f"(best-case {fmt(overhead_best, 's')})"
            + (f"; {inline[0]}/{inline[1]} agents still inline" if inline else ""),
            flush=True,
        )
        warn_if_moved(inline, res)
        print(
            f"    context, PUBLISHED LangGraph figure for this shape (not measured here): "
            f"~{published:,.0f} us per invoke",
            flush=True,
        )


# --------------------------------------------------------------------------------------
# 2. 1,000-agent chain
# --------------------------------------------------------------------------------------


def bench_chain1000(res: Results, cfg: dict[str, Any]) -> None:
    print(f"[2] {CHAIN_LONG:,}-agent chain", flush=True)
    probe = _DispatchProbe()
    with probe:
        start = time.perf_counter()
        app, plain = chain_graph(CHAIN_LONG)
        compile_s = time.perf_counter() - start
    first = once(lambda: app.invoke(1))  # every agent's first call goes to the thread pool
    assert app.invoke(3) == plain(3)
    for _ in range(cfg["warmup_long"]):
        app.invoke(1)
    samples = interleaved(
        {
            "invoke": (lambda: app.invoke(1), cfg["long_invokes"]),
            "plain": (lambda: plain(1), cfg["long_invokes"] * 10),
        },
        cfg["repeats"],
    )
    inv, pl = summary(samples["invoke"]), summary(samples["plain"])
    inline = probe.inline_count()
    per_agent = inv["median"] / CHAIN_LONG
    per_call_plain = pl["median"] / CHAIN_LONG
    res.add(
        "chain1000.per_agent",
        f"2. {CHAIN_LONG:,}-agent chain: time per agent",
        per_agent,
        "s",
        baseline=per_call_plain,
        baseline_label="plain call",
        target=2e-6,
        target_label="<= 2 us",
        details={
            "invoke": inv,
            "plain": pl,
            "per_agent_overhead": per_agent - per_call_plain,
            "compile_seconds": compile_s,
            "first_invoke_seconds": first,
            "best_per_agent": inv["best"] / CHAIN_LONG,
            "agents_inline_after": inline,
        },
    )
    print(
        f"    invoke {fmt(inv['median'], 's')} per run = {fmt(per_agent, 's')} per agent "
        f"(overhead {fmt(per_agent - per_call_plain, 's')}); plain loop "
        f"{fmt(pl['median'], 's')}; compile {fmt(compile_s, 's')}; first (cold) invoke "
        f"{fmt(first, 's')}"
        + (f"; {inline[0]}/{inline[1]} agents still inline" if inline else ""),
        flush=True,
    )
    warn_if_moved(inline, res)


# --------------------------------------------------------------------------------------
# 3. 64 blocking sync agents
# --------------------------------------------------------------------------------------


def bench_sync64(res: Results, cfg: dict[str, Any]) -> None:
    print(f"[3] {SYNC_WIDTH} sync agents, each time.sleep({SLEEP}) in one fan-out", flush=True)
    app = parallel_graph(sleeper, SYNC_WIDTH)
    cold = once(lambda: app.invoke(1))  # spawns the pool threads
    default_workers = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's default
    inputs = [1] * SYNC_WIDTH
    with concurrent.futures.ThreadPoolExecutor() as pool_default, \
            concurrent.futures.ThreadPoolExecutor(max_workers=SYNC_WIDTH) as pool_wide:
        for pool in (pool_default, pool_wide):
            list(pool.map(sleeper, inputs))  # warm: threads exist, like the engine's pool
        samples = interleaved(
            {
                "engine": (lambda: app.invoke(1), 1),
                "tpe_default": (lambda: list(pool_default.map(sleeper, inputs)), 1),
                "tpe_wide": (lambda: list(pool_wide.map(sleeper, inputs)), 1),
            },
            cfg["sleep_repeats"],
        )
    if cfg["quick"]:
        k = 8
        seq = once(lambda: [sleeper(1) for _ in range(k)]) * (SYNC_WIDTH / k)
        seq_label = f"sequential loop (extrapolated from {k} calls)"
    else:
        seq = once(lambda: [sleeper(1) for _ in range(SYNC_WIDTH)])
        seq_label = "sequential loop (measured once)"
    eng = summary(samples["engine"])
    tpe_d, tpe_w = summary(samples["tpe_default"]), summary(samples["tpe_wide"])
    res.add(
        "sync64.wall",
        f"3. {SYNC_WIDTH} x sleep(50 ms) fan-out: wall vs ideal",
        eng["median"],
        "s",
        baseline=SLEEP,
        baseline_label="ideal",
        target=1.2,
        target_on="ratio",
        target_label="<= 1.2x ideal",
        details={"engine": eng, "cold_first_invoke": cold},
    )
    res.add("sync64.vs_seq", "3.   vs sequential loop", eng["median"], "s",
            baseline=seq, baseline_label=seq_label.split(" (")[0],
            details={"sequential_seconds": seq, "how": seq_label})
    res.add("sync64.vs_tpe_default", f"3.   vs ThreadPoolExecutor() [{default_workers} workers]",
            eng["median"], "s", baseline=tpe_d["median"], baseline_label="TPE.map",
            details={"tpe": tpe_d, "max_workers": default_workers})
    res.add("sync64.vs_tpe_64", f"3.   vs ThreadPoolExecutor(max_workers={SYNC_WIDTH})",
            eng["median"], "s", baseline=tpe_w["median"], baseline_label="TPE.map",
            details={"tpe": tpe_w, "max_workers": SYNC_WIDTH})
    print(
        f"    engine {fmt(eng['median'], 's')} (best {fmt(eng['best'], 's')}, cold first "
        f"run {fmt(cold, 's')}); {seq_label} {fmt(seq, 's')}; TPE default "
        f"[{default_workers}] {fmt(tpe_d['median'], 's')}; TPE[{SYNC_WIDTH}] "
        f"{fmt(tpe_w['median'], 's')}",
        flush=True,
    )


# --------------------------------------------------------------------------------------
# 4. 1,000 async agents
# --------------------------------------------------------------------------------------


def bench_async1000(res: Results, cfg: dict[str, Any]) -> None:
    print(f"[4] {ASYNC_WIDTH:,} async agents, each await asyncio.sleep({SLEEP})", flush=True)
    app = parallel_graph(async_sleeper, ASYNC_WIDTH)
    loop = asyncio.new_event_loop()

    async def timed_ainvoke() -> float:
        start = time.perf_counter()
        await app.ainvoke(1)
        return time.perf_counter() - start

    async def timed_gather() -> float:
        start = time.perf_counter()  # creating the coroutines is part of both sides
        await asyncio.gather(*(async_sleeper(1) for _ in range(ASYNC_WIDTH)))
        return time.perf_counter() - start

    try:
        out = app.invoke(1)
        assert len(out) == ASYNC_WIDTH
        loop.run_until_complete(timed_ainvoke())
        loop.run_until_complete(timed_gather())
        samples: dict[str, list[float]] = {"invoke": [], "ainvoke": [], "gather": []}
        runners = {
            "invoke": lambda: once(lambda: app.invoke(1)),
            "ainvoke": lambda: loop.run_until_complete(timed_ainvoke()),
            "gather": lambda: loop.run_until_complete(timed_gather()),
        }
        names = list(runners)
        for r in range(cfg["sleep_repeats"]):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                samples[name].append(runners[name]())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    inv, ainv, gat = summary(samples["invoke"]), summary(samples["ainvoke"]), summary(
        samples["gather"]
    )
    for key, label, s in (("invoke", "app.invoke", inv), ("ainvoke", "await app.ainvoke", ainv)):
        res.add(
            f"async1000.{key}",
            f"4. {ASYNC_WIDTH:,} x asyncio.sleep(50 ms): {label}",
            s["median"],
            "s",
            baseline=gat["median"],
            baseline_label="asyncio.gather",
            target=1.1,
            target_on="ratio",
            target_label="<= 1.1x gather",
            details={key: s, "gather": gat},
        )
    print(
        f"    invoke {fmt(inv['median'], 's')}, ainvoke {fmt(ainv['median'], 's')}, gather "
        f"{fmt(gat['median'], 's')} (ideal {fmt(SLEEP, 's')})",
        flush=True,
    )


# --------------------------------------------------------------------------------------
# 5. batch of 10,000 fan-out runs (each implementation in a fresh child process)
# --------------------------------------------------------------------------------------


def _rss_kib() -> tuple[int | None, int | None]:
    """(current RSS, peak RSS) of this process in KiB, from /proc when available."""
    try:
        with open("/proc/self/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    except (OSError, KeyError, ValueError):
        return None, None


def _reset_peak_rss() -> bool:
    """Resets the kernel's peak-RSS counter (VmHWM); Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def batch_child(impl: str, runs: int, repeats: int) -> dict[str, Any]:
    """Runs in a fresh interpreter: times `repeats` batches and measures the memory of
    the first one (peak RSS delta) and of an extra, untimed one (tracemalloc peak)."""
    app, plain = fanout_graph()
    inputs = list(range(runs))
    default_workers = min(32, (os.cpu_count() or 1) + 4)
    pool = None
    if impl == "engine":
        run = lambda: app.batch(inputs)
    elif impl == "engine_mc64":
        run = lambda: app.batch(inputs, max_concurrency=64)
    elif impl == "tpe":
        pool = concurrent.futures.ThreadPoolExecutor()
        run = lambda: list(pool.map(plain, inputs))
    elif impl == "sequential":
        run = lambda: [plain(x) for x in inputs]
    else:
        raise SystemExit(f"unknown batch implementation {impl!r}")

    # Warm-up on a small batch only (pool threads exist, `auto` dispatch has gone inline)
    # so that the first full batch below still grows the heap: its peak RSS is measured.
    small = inputs[:200]
    if impl in ("engine", "engine_mc64"):
        warm = app.batch(small)
    elif impl == "tpe":
        warm = list(pool.map(plain, small))
    else:
        warm = [plain(x) for x in small]
    assert warm == [plain(x) for x in small]
    del warm
    gc.collect()

    times = []
    rss_before, _ = _rss_kib()
    reset = _reset_peak_rss()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if resource else 0
    start = time.perf_counter()
    out = run()
    times.append(time.perf_counter() - start)
    _, peak = _rss_kib()
    assert len(out) == runs and out[-1] == plain(inputs[-1])
    if (not reset or peak is None) and resource is not None:
        # Fall back to ru_maxrss (KiB on Linux): in a fresh process the first full batch
        # is the peak so far.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss_before = rss_before if rss_before is not None else maxrss_before
    rss_delta_kib = peak - rss_before
    del out
    gc.collect()
    for _ in range(repeats - 1):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
        del out
        gc.collect()

    tracemalloc.start()
    out = run()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del out
    if pool is not None:
        pool.shutdown()
    return {
        "impl": impl,
        "runs": runs,
        "seconds": times,
        "rss_before_kib": rss_before,
        "rss_peak_delta_kib": rss_delta_kib,
        "rss_method": "VmHWM reset via /proc/self/clear_refs" if reset else "ru_maxrss",
        "tracemalloc_peak_bytes": traced_peak,
        "tpe_workers": default_workers if impl == "tpe" else None,
    }


def _child(options: list[str]) -> dict[str, Any]:
    """Runs this script in a fresh interpreter with hidden `options` and returns the JSON
    line it prints last."""
    cmd = [sys.executable, os.path.abspath(__file__), *options]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"child process {options!r} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_child(impl: str, runs: int, repeats: int) -> dict[str, Any]:
    return _child(["--_batch-child", impl, "--_runs", str(runs), "--_repeats", str(repeats)])


def first_branch(joined):
    """A no-op join that passes on its first branch's output (the run's input object)."""
    return joined["w0"]


def window_child(runs: int, window: int) -> dict[str, Any]:
    """Runs in a fresh interpreter: peak RSS growth of one `batch` of `runs` no-op
    fan-out runs with at most `window` in flight (0: the default window).

    The join returns its first branch's output, which is the input object itself, so the
    outputs cost the caller nothing but their list: what grows with the number of inputs
    is the batch's own bookkeeping, not the results' contents.
    """
    g = cp.Graph()
    names = [f"w{i}" for i in range(FANOUT_WIDTH)]
    for name in names:
        g.add(name, noop)
    g.add("join", first_branch, after=names)
    app = g.compile()
    inputs = list(range(runs))
    # Warm on a small batch only (threads started, `auto` dispatch inline), so that the
    # measured batch still has to grow the heap.
    warm = app.batch(inputs[:200])
    assert warm == inputs[:200]
    del warm
    gc.collect()
    rss_before, _ = _rss_kib()
    reset = _reset_peak_rss()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if resource else 0
    start = time.perf_counter()
    out = app.batch(inputs, max_concurrency=window or None)
    seconds = time.perf_counter() - start
    _, peak = _rss_kib()
    if (not reset or peak is None) and resource is not None:
        # ru_maxrss (KiB on Linux), as batch_child does: in a fresh process this batch is
        # the peak so far.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss_before = rss_before if rss_before is not None else maxrss_before
    assert out == inputs
    return {
        "runs": runs,
        "window": window or _default_window(),
        "seconds": seconds,
        "rss_before_kib": rss_before,
        "rss_peak_delta_kib": (peak or 0) - (rss_before or 0),
        "rss_method": "VmHWM reset via /proc/self/clear_refs" if reset else "ru_maxrss",
    }


def _default_window() -> int:
    try:
        from counterpoint._graph import DEFAULT_BATCH_WINDOW
    except ImportError:  # an engine without a default window: every run in flight
        return 0
    return int(DEFAULT_BATCH_WINDOW)


def _batch_vs_invoke_loop(res: Results, cfg: dict[str, Any]) -> None:
    """`app.batch(inputs)` against a plain loop of `app.invoke` over the same inputs, in
    this process, repeats interleaved."""
    app, plain = fanout_graph()
    inputs = list(range(BATCH_RUNS))
    expected = [plain(x) for x in inputs]
    assert app.batch(inputs) == expected
    assert [app.invoke(x) for x in inputs] == expected
    del expected
    samples = interleaved(
        {
            "batch": (lambda: app.batch(inputs), 1),
            "loop": (lambda: [app.invoke(x) for x in inputs], 1),
        },
        cfg["loop_repeats"],
    )
    bat, loop = summary(samples["batch"]), summary(samples["loop"])
    rate, loop_rate = BATCH_RUNS / bat["median"], BATCH_RUNS / loop["median"]
    res.add("batch.rate_vs_invoke_loop",
            "5.   throughput vs loop of app.invoke (interleaved, same process)",
            rate, "runs/s", baseline=loop_rate, baseline_label="invoke loop",
            ratio_label="(speed-up)", target=1.0, target_on="ratio",
            target_label=">= 1.0x of the loop", higher_is_better=True,
            details={"batch": bat, "invoke_loop": loop, "inputs": BATCH_RUNS})
    print(f"    in one process, interleaved: batch {fmt(bat['median'], 's')} "
          f"({rate:,.0f} runs/s), loop of app.invoke {fmt(loop['median'], 's')} "
          f"({loop_rate:,.0f} runs/s): {rate / loop_rate:.2f}x", flush=True)


def _batch_window_memory(res: Results, cfg: dict[str, Any]) -> None:
    """Peak RSS growth of a batch with the default window, for 10,000 and 100,000
    inputs, next to 100,000 inputs all in flight; one fresh process per figure."""
    small, large = WINDOW_INPUTS
    configs = [("window", small, 0), ("window", large, 0), ("all", large, large)]
    per_config: dict[tuple[str, int], list[dict[str, Any]]] = {
        (kind, runs): [] for kind, runs, _ in configs}
    for _ in range(cfg["batch_children"]):
        for kind, runs, window in configs:
            per_config[(kind, runs)].append(
                _child(["--_window-child", str(window), "--_runs", str(runs)]))

    def mib(kind: str, runs: int) -> float:
        return statistics.median(
            c["rss_peak_delta_kib"] for c in per_config[(kind, runs)]) / 1024

    window = per_config[("window", small)][0]["window"]
    w_small, w_large, everything = mib("window", small), mib("window", large), mib("all", large)
    # Two points, two unknowns: a part that grows with the inputs and one that does not
    # (bounded by the window).
    per_input = (w_large - w_small) * 2**20 / (large - small)
    fixed = w_small - per_input * small / 2**20
    label = f"window {window:,}" if window else "no window"
    res.add("batch.window_rss_small", f"5.   {label}: peak RSS, {small:,} inputs",
            w_small, "MiB", details={
                "bytes_per_input": w_small * 2**20 / small,
                "children": per_config[("window", small)]})
    res.add("batch.window_rss_large", f"5.   {label}: peak RSS, {large:,} inputs",
            w_large, "MiB", baseline=w_small, baseline_label=f"{small:,} inputs",
            target=0.9 * large / small, target_on="ratio",
            target_label=f"< {0.9 * large / small:.0f}x ({large // small}x: unbounded)",
            details={"bytes_per_input": w_large * 2**20 / large,
                     "bytes_per_extra_input": per_input,
                     "part_not_growing_with_inputs_MiB": fixed,
                     "children": per_config[("window", large)]})
    res.add("batch.window_rss_vs_all", f"5.   {large:,} inputs: peak RSS vs all in flight (info)",
            w_large, "MiB", baseline=everything,
            baseline_label=f"max_concurrency={large:,}",
            details={"all_in_flight_bytes_per_input": everything * 2**20 / large,
                     "children": per_config[("all", large)]})
    print(f"    {label}: peak RSS +{w_small:.1f} MiB for {small:,} inputs "
          f"({w_small * 2**20 / small:,.0f} B each), +{w_large:.1f} MiB for {large:,} "
          f"({w_large * 2**20 / large:,.0f} B each): {w_large / w_small:.1f}x; "
          f"{per_input:,.0f} B per extra input, {fixed:.1f} MiB not growing with them; "
          f"all {large:,} in flight: +{everything:.1f} MiB "
          f"({everything * 2**20 / large:,.0f} B each)", flush=True)


def bench_batch(res: Results, cfg: dict[str, Any]) -> None:
    runs = BATCH_RUNS
    print(f"[5] batch of {runs:,} runs of the {FANOUT_WIDTH}-way fan-out + join "
          "(one fresh process per implementation)", flush=True)
    impls = ("engine", "engine_mc64", "tpe", "sequential")
    # Child processes take turns (engine, ..., sequential, engine, ...) so that a burst of
    # background load is shared out rather than landing on one implementation.
    per_impl: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
    for _ in range(cfg["batch_children"]):
        for impl in impls:
            per_impl[impl].append(run_child(impl, runs, cfg["batch_repeats"]))
    data = {}
    for impl in impls:
        children = per_impl[impl]
        d = dict(children[0])
        # Times: every repeat of every child. Memory: median over the children, each
        # measured on the first full batch of a fresh process.
        d["seconds"] = [t for c in children for t in c["seconds"]]
        d["rss_peak_delta_kib"] = statistics.median(c["rss_peak_delta_kib"] for c in children)
        d["tracemalloc_peak_bytes"] = statistics.median(
            c["tracemalloc_peak_bytes"] for c in children)
        d["children"] = children
        data[impl] = d
        med = statistics.median(d["seconds"])
        each = ", ".join(f"{c['rss_peak_delta_kib'] / 1024:.1f}" for c in children)
        print(
            f"    {impl:<18} {fmt(med, 's')} per batch = {runs / med:,.0f} runs/s; peak RSS "
            f"+{d['rss_peak_delta_kib'] / 1024:.1f} MiB "
            f"(per process: {each}); "
            f"tracemalloc peak {d['tracemalloc_peak_bytes'] / 2**20:.1f} MiB",
            flush=True,
        )

    def rate(impl: str) -> float:
        return runs / statistics.median(data[impl]["seconds"])

    def rss(impl: str) -> float:
        return data[impl]["rss_peak_delta_kib"] / 1024

    def traced(impl: str) -> float:
        return data[impl]["tracemalloc_peak_bytes"] / 2**20

    workers = data["tpe"]["tpe_workers"]
    tpe_label = f"TPE.map [{workers}]"
    res.add("batch.rate_vs_tpe", f"5. batch {runs:,} x fan-out: throughput",
            rate("engine"), "runs/s", baseline=rate("tpe"), baseline_label=tpe_label,
            ratio_label="(speed-up)", higher_is_better=True,
            details={"engine": data["engine"], "tpe": data["tpe"]})
    res.add("batch.rate_vs_seq", "5.   throughput vs plain sequential loop",
            rate("engine"), "runs/s", baseline=rate("sequential"), baseline_label="sequential",
            ratio_label="(speed-up)", higher_is_better=True,
            details={"sequential": data["sequential"]})
    _batch_vs_invoke_loop(res, cfg)
    res.add("batch.rss", "5.   peak RSS delta", rss("engine"), "MiB",
            baseline=rss("tpe"), baseline_label=tpe_label,
            details={"method": data["engine"]["rss_method"]})
    res.add("batch.rss_vs_seq", "5.   peak RSS delta vs sequential", rss("engine"), "MiB",
            baseline=rss("sequential"), baseline_label="sequential")
    res.add("batch.tracemalloc", "5.   tracemalloc peak (Python heap)", traced("engine"), "MiB",
            baseline=traced("tpe"), baseline_label=tpe_label,
            details={"sequential_MiB": traced("sequential")})
    res.add("batch.tracemalloc_vs_seq", "5.   tracemalloc peak vs sequential", traced("engine"),
            "MiB", baseline=traced("sequential"), baseline_label="sequential")
    res.add("batch_mc64.rate", "5.   max_concurrency=64: throughput (info)",
            rate("engine_mc64"), "runs/s", baseline=rate("tpe"), baseline_label=tpe_label,
            ratio_label="(speed-up)", higher_is_better=True,
            details={"engine_mc64": data["engine_mc64"]})
    res.add("batch_mc64.rss", "5.   max_concurrency=64: peak RSS delta (info)",
            rss("engine_mc64"), "MiB", baseline=rss("tpe"), baseline_label=tpe_label)
    _batch_window_memory(res, cfg)


# --------------------------------------------------------------------------------------
# 6. batch of runs whose agents wait (time.sleep), 256 in flight
# --------------------------------------------------------------------------------------


def wait_sleeper(x):
    time.sleep(WAIT_SLEEP)
    return x


async def wait_async_sleeper(x):
    await asyncio.sleep(WAIT_SLEEP)
    return x


def wait_graph(agent: Any) -> cp.CompiledGraph:
    """src -> WAIT_WIDTH workers -> join, every agent `agent`; the join returns the
    {worker: output} dict it receives."""
    g = cp.Graph()
    g.add("src", agent)
    names = [f"w{i}" for i in range(WAIT_WIDTH)]
    for name in names:
        g.add(name, agent, after="src")
    g.add("join", agent, after=names)
    return g.compile()


class PlainWaitBatch:
    """The same batch written by hand with threads: WAIT_CONCURRENCY threads run whole
    runs (so at most that many are in flight, as with max_concurrency), and each run's
    workers go to a second pool big enough that no worker ever waits for a thread."""

    def __init__(self) -> None:
        self.runs = concurrent.futures.ThreadPoolExecutor(max_workers=WAIT_CONCURRENCY)
        self.workers = concurrent.futures.ThreadPoolExecutor(
            max_workers=WAIT_CONCURRENCY * WAIT_WIDTH)

    def one(self, x: Any) -> Any:
        x = wait_sleeper(x)
        futures = [self.workers.submit(wait_sleeper, x) for _ in range(WAIT_WIDTH)]
        return wait_sleeper({f"w{i}": f.result() for i, f in enumerate(futures)})

    def __call__(self, inputs: list[Any]) -> list[Any]:
        return list(self.runs.map(self.one, inputs))

    def close(self) -> None:
        self.runs.shutdown()
        self.workers.shutdown()


def plain_async_wait_batch(inputs: list[Any]) -> list[Any]:
    """The same batch with coroutines in plain asyncio: a semaphore lets WAIT_CONCURRENCY
    runs in at once, each awaiting its source, gathering its workers, then its join."""

    async def one(x: Any, gate: asyncio.Semaphore) -> Any:
        async with gate:
            x = await wait_async_sleeper(x)
            outs = await asyncio.gather(*(wait_async_sleeper(x) for _ in range(WAIT_WIDTH)))
            return await wait_async_sleeper({f"w{i}": o for i, o in enumerate(outs)})

    async def all_runs() -> list[Any]:
        gate = asyncio.Semaphore(WAIT_CONCURRENCY)
        return await asyncio.gather(*(one(x, gate) for x in inputs))

    return asyncio.run(all_runs())


def _pool_threads() -> int | None:
    """Threads of the engine's pool for blocking agents (idle ones included: they exit
    after 10 s idle, so right after a batch this is the most it needed at once)."""
    try:
        return int(cp._core.stats()["pool_threads"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def bench_batchwait(res: Results, cfg: dict[str, Any]) -> None:
    runs = cfg["wait_runs"]
    agents = WAIT_WIDTH + 2
    critical = WAIT_LEVELS * WAIT_SLEEP
    ideal = WAIT_CONCURRENCY / critical
    print(f"[6] batch of {runs:,} runs of src -> {WAIT_WIDTH} workers -> join, every agent "
          f"time.sleep({WAIT_SLEEP}), max_concurrency={WAIT_CONCURRENCY}", flush=True)
    inputs = list(range(runs))
    app = wait_graph(wait_sleeper)
    app_async = wait_graph(wait_async_sleeper)
    plain = PlainWaitBatch()
    expected = {f"w{i}": 7 for i in range(WAIT_WIDTH)}
    # Warm-up: pool threads started (the engine's and the executors'), agents measured
    # as blocking by `auto` dispatch.
    warm = inputs[: 2 * WAIT_CONCURRENCY]
    for fn in (app.batch, app_async.batch):
        assert fn([7], max_concurrency=WAIT_CONCURRENCY) == [expected]
        fn(warm, max_concurrency=WAIT_CONCURRENCY)
    assert plain([7]) == [expected]
    plain(warm)
    assert plain_async_wait_batch([7]) == [expected]
    slept = statistics.median(once(lambda: time.sleep(WAIT_SLEEP)) for _ in range(20))

    candidates: dict[str, Callable[[], Any]] = {
        "engine": lambda: app.batch(inputs, max_concurrency=WAIT_CONCURRENCY),
        "threads": lambda: plain(inputs),
        "engine_async": lambda: app_async.batch(inputs, max_concurrency=WAIT_CONCURRENCY),
        "asyncio": lambda: plain_async_wait_batch(inputs),
    }
    wall: dict[str, list[float]] = {name: [] for name in candidates}
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    threads_seen: list[int] = []
    names = list(candidates)
    for r in range(cfg["wait_repeats"]):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            cpu_start = time.process_time()
            wall[name].append(once(candidates[name]))
            cpu[name].append(time.process_time() - cpu_start)
            if name == "engine":
                seen = _pool_threads()
                if seen is not None:
                    threads_seen.append(seen)
    plain.close()

    def rate(name: str) -> float:
        return runs / statistics.median(wall[name])

    def cpu_per_agent(name: str) -> float:
        return statistics.median(cpu[name]) / (runs * agents)

    cores = os.cpu_count() or 1
    cpu_ceiling = cores / (statistics.median(cpu["engine"]) / runs)
    pool = max(threads_seen) if threads_seen else None
    steady = WAIT_CONCURRENCY * agents / WAIT_LEVELS
    lockstep = WAIT_CONCURRENCY * WAIT_WIDTH
    details = {
        "runs": runs, "max_concurrency": WAIT_CONCURRENCY, "sleep": WAIT_SLEEP,
        "critical_path_seconds": critical, "measured_sleep_seconds": slept,
        "ideal_with_measured_sleep": WAIT_CONCURRENCY / (WAIT_LEVELS * slept),
        "wall": {name: summary(v) for name, v in wall.items()},
        "cpu_seconds": {name: summary(v) for name, v in cpu.items()},
        "cpu_bound_ceiling_runs_per_s": cpu_ceiling, "cores": cores,
    }
    res.add("batchwait.rate",
            f"6. batch {runs:,} x sleep(10 ms) src->{WAIT_WIDTH}->join, {WAIT_CONCURRENCY} in flight",
            rate("engine"), "runs/s", baseline=ideal,
            baseline_label=f"ideal {WAIT_CONCURRENCY}/{critical * 1e3:.0f} ms",
            target=0.9, target_on="ratio", target_label=">= 0.9x ideal",
            higher_is_better=True, details=details)
    res.add("batchwait.vs_threads", "6.   vs the same by hand with threads (info)",
            rate("engine"), "runs/s", baseline=rate("threads"),
            baseline_label="2 ThreadPoolExecutors", ratio_label="(speed-up)",
            higher_is_better=True)
    res.add("batchwait.cpu_per_agent", "6.   CPU per agent call (info)",
            cpu_per_agent("engine"), "s", baseline=cpu_per_agent("threads"),
            baseline_label="by hand with threads",
            details={"async_agents": cpu_per_agent("engine_async")})
    res.add("batchwait.async", "6.   same with async agents (asyncio.sleep) (info)",
            rate("engine_async"), "runs/s", baseline=ideal,
            baseline_label=f"ideal {WAIT_CONCURRENCY}/{critical * 1e3:.0f} ms",
            higher_is_better=True)
    res.add("batchwait.asyncio", "6.   the same in plain asyncio (semaphore + gather) (info)",
            rate("asyncio"), "runs/s", baseline=ideal,
            baseline_label=f"ideal {WAIT_CONCURRENCY}/{critical * 1e3:.0f} ms",
            higher_is_better=True, details={"engine_async_speed_up": rate("engine_async")
                                            / rate("asyncio")})
    if pool is not None:
        res.add("batchwait.pool_threads", "6.   engine pool threads after the batch (info)",
                float(pool), "threads", baseline=steady,
                baseline_label=f"{WAIT_CONCURRENCY} runs x {agents}/{WAIT_LEVELS} agents",
                details={"samples": threads_seen, "lockstep_worst_case": lockstep})
    print(
        f"    engine {rate('engine'):,.0f} runs/s = {rate('engine') / ideal:.2f}x ideal "
        f"({ideal:,.0f}; {WAIT_CONCURRENCY / (WAIT_LEVELS * slept):,.0f} with the measured "
        f"sleep of {fmt(slept, 's')}); by hand with threads {rate('threads'):,.0f} runs/s; "
        f"async agents {rate('engine_async'):,.0f} runs/s; the same in plain asyncio "
        f"{rate('asyncio'):,.0f} runs/s\n"
        f"    CPU per agent call: engine {fmt(cpu_per_agent('engine'), 's')}, threads "
        f"{fmt(cpu_per_agent('threads'), 's')}, async {fmt(cpu_per_agent('engine_async'), 's')}; "
        f"the {cores} cores allow at most {cpu_ceiling:,.0f} runs/s at the engine's CPU per run\n"
        f"    pool threads after the batch: {pool} (steady state needs ~{steady:,.0f}: "
        f"{WAIT_CONCURRENCY} runs x {agents} sleeping agents / {WAIT_LEVELS} levels; "
        f"{lockstep:,} if every run were in its fan-out at once)",
        flush=True,
    )
    if rate("engine") < 0.9 * ideal and cpu_ceiling < ideal:
        res.note(
            f"6: the ideal {ideal:,.0f} runs/s means {ideal * agents:,.0f} agent calls/s; at "
            f"the measured {fmt(cpu_per_agent('engine'), 's')} of CPU per call the "
            f"{cores} cores of this machine allow at most {cpu_ceiling:,.0f} runs/s, so the "
            "figure is CPU-bound here (compare the by-hand threads baseline)")


# --------------------------------------------------------------------------------------
# 7. bytes per in-flight run (each configuration in a fresh child process)
# --------------------------------------------------------------------------------------
#
# Method. N runs are held in flight: the graph's first agent is a coroutine awaiting an
# asyncio.Event, so a waiting run holds no thread (runs started with `app.start`, their
# coroutines parked on the engine's event loop). Two passes of N runs:
#
#   A, untraced: glibc's malloc statistics (mallinfo2: uordblks + hblkhd, every arena)
#      before and while the N runs wait. This counts every malloc'd byte: the engine's
#      C++ state, the bindings' native objects, and the Python objects of more than 512
#      bytes. It does not count CPython's small objects: pymalloc serves those (<= 512
#      bytes) from 1 MiB arenas it maps with mmap, not malloc. (It does not count what
#      oneTBB allocates through libtbbmalloc either; a parked run has no oneTBB task.)
#   B, traced: tracemalloc's delta over the same N runs = every Python allocation, small
#      or large (requested sizes). The large ones (> 512 bytes, the only ones pymalloc
#      passes on to malloc) are summed from snapshots.
#
# Python side = B's tracemalloc delta. Native (engine) side = A's malloc delta minus B's
# large Python blocks. The passes run apart, each in a fresh process warmed the same way:
# A is untraced because tracemalloc keeps its own table of traces in malloc'd memory (tens
# of bytes per Python block), which would land on the engine's side; and each pass
# leaves tables grown (dicts and sets of tasks, hash tables of runs) that a second pass
# in the same process would not grow again. Malloc figures count chunks (8-byte header,
# 16-byte rounding), tracemalloc requested sizes; chunks freed but cached per thread
# (tcache) still count as in use (a few KiB, spread over N). The RSS growth of pass A is
# a coarser check of the total. Growth of tables that hold every run (the engine's
# registry of runs, the loop's task sets) counts, amortized, as part of a run's cost.


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _malloc_in_use() -> int | None:
    """Bytes glibc malloc has handed out and not had back, over every arena: chunks in
    the heaps (uordblks) plus chunks mapped on their own (hblkhd). None without glibc
    2.33 or later."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _Mallinfo2
    info = mallinfo2()
    return int(info.uordblks + info.hblkhd)


def _large_traced() -> int:
    """Bytes of the traced Python blocks larger than 512 bytes (those pymalloc passes on
    to malloc)."""
    snapshot = tracemalloc.take_snapshot()
    total = sum(trace.size for trace in snapshot.traces if trace.size > 512)
    del snapshot
    return total


_GATE: dict[str, Any] = {"started": 0}


async def gate(x):
    """Parks its run until the benchmark sets the event."""
    _GATE["loop"] = asyncio.get_running_loop()
    _GATE["started"] += 1
    await _GATE["event"].wait()
    return x


# Runs are started as invoke, ainvoke and batch start them (recording no events), except
# "fanout5_timeline": started with app.start(), whose handle keeps the run's timeline
# (its events recorded as it goes), so that its queue of events counts too.
MEMORY_SHAPES = {
    "one": "1-agent graph",
    "fanout5": f"gate -> {FANOUT_WIDTH} -> join (7 agents)",
    "fanout5_timeline": f"gate -> {FANOUT_WIDTH} -> join, app.start() (timeline)",
}


def memory_graph(shape: str) -> cp.CompiledGraph:
    g = cp.Graph()
    g.add("gate", gate)
    if shape.startswith("fanout5"):
        names = [f"w{i}" for i in range(FANOUT_WIDTH)]
        for name in names:
            g.add(name, noop, after="gate")
        g.add("join", noop, after=names)
    return g.compile()


def _start_plain(app: cp.CompiledGraph) -> Any:
    """A run started as invoke and batch start theirs (no events recorded), through the
    private `_core`, since the public app.start() records the run's timeline."""
    from counterpoint._native import _core

    budget, deadline = app._settings(None, None)
    return _core.start(app._native, 1, app._dispatcher(), budget, deadline,
                       _core.EventKinds([]))


def _hold(app: cp.CompiledGraph, runs: int, timeline: bool) -> list[Any]:
    """Starts `runs` runs and returns their handles once every one waits in its gate."""
    _GATE["event"] = asyncio.Event()
    _GATE["started"] = 0
    # One shared input (a cached small int): the input is the caller's data, not a cost
    # of the run.
    handles = [app.start(1) if timeline else _start_plain(app) for _ in range(runs)]
    deadline = time.monotonic() + 120
    while _GATE["started"] < runs:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {_GATE['started']} of {runs} runs reached their gate")
        time.sleep(0.005)
    time.sleep(0.05)  # the loop thread parks the last gate and goes idle
    gc.collect()
    return handles


def _release(handles: list[Any]) -> None:
    _GATE["loop"].call_soon_threadsafe(_GATE["event"].set)
    for handle in handles:
        handle.wait()
    assert all(getattr(handle.status, "name", handle.status) == "succeeded"
               for handle in handles)


def memory_child(shape: str, runs: int, traced: bool) -> dict[str, Any]:
    """Runs in a fresh interpreter: what `runs` runs of `shape` cost while in flight;
    pass A (malloc and RSS, untraced) or pass B (`traced`: Python allocations)."""
    app = memory_graph(shape)
    timeline = shape.endswith("_timeline")
    # Warm-up: the engine's event loop thread, its bridge, the runtime's threads.
    for _ in range(2):
        _release(_hold(app, 50, timeline))
    gc.collect()
    out: dict[str, Any] = {"shape": shape, "runs": runs, "pass": "traced" if traced else "malloc"}
    if not traced:
        rss0, _ = _rss_kib()
        malloc0 = _malloc_in_use()
        handles = _hold(app, runs, timeline)
        malloc1 = _malloc_in_use()
        rss1, _ = _rss_kib()
        _release(handles)
        if malloc0 is not None and malloc1 is not None:
            out["malloc_bytes_per_run"] = (malloc1 - malloc0) / runs
        if rss0 is not None and rss1 is not None:
            out["rss_bytes_per_run"] = (rss1 - rss0) * 1024 / runs
        return out
    tracemalloc.start()
    gc.collect()
    large0 = _large_traced()
    traced0 = tracemalloc.get_traced_memory()[0]
    handles = _hold(app, runs, timeline)
    traced1 = tracemalloc.get_traced_memory()[0]
    large1 = _large_traced()
    _release(handles)
    tracemalloc.stop()
    out["python_bytes_per_run"] = (traced1 - traced0) / runs
    out["python_large_bytes_per_run"] = (large1 - large0) / runs
    return out


def _memory_pair(shape: str, runs: int) -> dict[str, Any]:
    """Passes A and B, each in its own fresh process (so that each starts from the same
    state: a pass leaves containers grown that the next one would not grow again), and
    the figures derived from the two."""
    base = ["--_memory-child", shape, "--_runs", str(runs)]
    malloc_pass = _child(base)
    traced_pass = _child([*base, "--_traced"])
    out = {**malloc_pass, **traced_pass, "pass": "both"}
    if "malloc_bytes_per_run" in malloc_pass:
        out["native_bytes_per_run"] = (malloc_pass["malloc_bytes_per_run"]
                                       - traced_pass["python_large_bytes_per_run"])
    return out


def bench_memory(res: Results, cfg: dict[str, Any]) -> None:
    runs = cfg["memory_runs"]
    print(f"[7] bytes per in-flight run: {runs:,} runs parked in a coroutine agent "
          "(per shape and repeat, two fresh processes: a malloc pass and a traced pass)",
          flush=True)
    per_shape: dict[str, list[dict[str, Any]]] = {shape: [] for shape in MEMORY_SHAPES}
    for _ in range(cfg["memory_children"]):
        for shape in MEMORY_SHAPES:
            per_shape[shape].append(_memory_pair(shape, runs))

    def med(shape: str, key: str) -> float | None:
        values = [c[key] for c in per_shape[shape] if c.get(key) is not None]
        return statistics.median(values) if values else None

    native_by_shape: dict[str, float] = {}
    for shape, label in MEMORY_SHAPES.items():
        native, python = med(shape, "native_bytes_per_run"), med(shape, "python_bytes_per_run")
        rss = med(shape, "rss_bytes_per_run")
        details = {"children": per_shape[shape]}
        if native is not None:
            native_by_shape[shape] = native
            timeline = shape.endswith("_timeline")
            res.add(f"memory.{shape}.native",
                    f"7. {label}: engine (native) bytes per run{' (info)' if timeline else ''}",
                    native, "B", target=None if timeline else 1024.0,
                    target_label="-" if timeline else "<= 1 KB", details=details)
        if python is not None:
            res.add(f"memory.{shape}.python", f"7.   {label}: Python bytes per run (info)",
                    python, "B",
                    details={"of_which_large_blocks": med(shape, "python_large_bytes_per_run")})
        if rss is not None:
            res.add(f"memory.{shape}.rss", f"7.   {label}: RSS growth per run (info)", rss, "B",
                    baseline=(native or 0.0) + (python or 0.0), baseline_label="engine + Python")
        print(f"    {label}: engine {native if native is None else f'{native:,.0f}'} B, "
              f"Python {python:,.0f} B, RSS {rss if rss is None else f'{rss:,.0f}'} B per run",
              flush=True)
    if not native_by_shape:
        res.note("7: glibc's mallinfo2 is not available here, so the engine's side of the "
                 "memory per run was not measured (Python side and RSS only)")
    elif "one" in native_by_shape and "fanout5" in native_by_shape:
        per_node = (native_by_shape["fanout5"] - native_by_shape["one"]) / (FANOUT_WIDTH + 1)
        print(f"    each agent more in the graph: {per_node:,.0f} B per run", flush=True)

# --------------------------------------------------------------------------------------
# 8. coroutine agents against plain asyncio
# --------------------------------------------------------------------------------------


async def async_noop(x):
    return x


async def async_join(parts):
    return len(parts)


async def async_step(x):
    await asyncio.sleep(0)  # a coroutine agent that yields to the loop once, as real ones do
    return x


def bench_coroutines(res: Results, cfg: dict[str, Any]) -> None:
    print("[8] coroutine agents against plain asyncio", flush=True)
    g = cp.Graph().add("src", async_noop)
    for i in range(FANOUT_WIDTH):
        g.add(f"w{i}", async_noop, after="src")
    fan = g.add("join", async_join, after=[f"w{i}" for i in range(FANOUT_WIDTH)]).compile()

    async def fan_plain(x):
        value = await async_noop(x)
        parts = await asyncio.gather(*(async_noop(value) for _ in range(FANOUT_WIDTH)))
        return await async_join(dict(enumerate(parts)))

    def chain_of(agent: Any) -> tuple[cp.CompiledGraph, Callable[[Any], Any]]:
        c = cp.Graph()
        for i in range(CORO_CHAIN):
            c.add(f"a{i}", agent, after=None if i == 0 else f"a{i - 1}")

        async def plain(x):
            for _ in range(CORO_CHAIN):
                x = await agent(x)
            return x

        return c.compile(), plain

    step_chain, step_plain = chain_of(async_step)
    noop_chain, noop_plain = chain_of(async_noop)
    shapes = {  # name: (engine coroutine function, plain one, calls per repeat)
        "fanout": (fan.ainvoke, fan_plain, cfg["invokes"] // 4),
        "chain_step": (step_chain.ainvoke, step_plain, cfg["long_invokes"] * 2),
        "chain_noop": (noop_chain.ainvoke, noop_plain, cfg["long_invokes"] * 2),
    }
    loop = asyncio.new_event_loop()

    async def per_call(fn: Callable[[Any], Any], calls: int) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            await fn(1)
        return (time.perf_counter() - start) / calls

    samples: dict[str, dict[str, list[float]]] = {}
    try:
        for name, (engine_fn, plain_fn, calls) in shapes.items():
            assert loop.run_until_complete(engine_fn(1)) == loop.run_until_complete(plain_fn(1))
            loop.run_until_complete(per_call(engine_fn, calls))  # warm-up
            loop.run_until_complete(per_call(plain_fn, calls))
            samples[name] = timed = {"engine": [], "plain": []}
            for r in range(cfg["repeats"]):
                order = [("engine", engine_fn), ("plain", plain_fn)]
                for side, fn in order if r % 2 == 0 else order[::-1]:
                    timed[side].append(loop.run_until_complete(per_call(fn, calls)))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    rows = {
        "fanout": ("8. coroutine fan-out-5 + join: await ainvoke", "asyncio.gather", 2.0),
        "chain_step": (f"8. {CORO_CHAIN}-agent coroutine chain (each sleep(0))",
                       "awaited in turn", 2.0),
        "chain_noop": (f"8. {CORO_CHAIN}-agent chain of no-op coroutines (info)",
                       "awaited in turn", None),
    }
    for name, (figure, baseline_label, target) in rows.items():
        engine_s, plain_s = summary(samples[name]["engine"]), summary(samples[name]["plain"])
        # The spread of the ratio, repeat by repeat (engine and plain ran side by side).
        ratios = [e / p for e, p in zip(samples[name]["engine"], samples[name]["plain"])]
        res.add(
            f"coroutines.{name}",
            figure,
            engine_s["median"],
            "s",
            baseline=plain_s["median"],
            baseline_label=baseline_label,
            target=target,
            target_on="ratio",
            target_label="" if target is None else f"<= {target:g}x {baseline_label}",
            details={"engine": engine_s, "plain": plain_s,
                     "ratio_min": min(ratios), "ratio_max": max(ratios)},
        )
        print(
            f"    {name}: engine {fmt(engine_s['median'], 's')}, {baseline_label} "
            f"{fmt(plain_s['median'], 's')}, ratio {engine_s['median'] / plain_s['median']:.2f}x "
            f"(per repeat {min(ratios):.2f}..{max(ratios):.2f}x)",
            flush=True,
        )


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def config(quick: bool) -> dict[str, Any]:
    if quick:
        return dict(quick=True, warmup_invokes=500, invokes=2000, repeats=5, warmup_long=5,
                    long_invokes=20, sleep_repeats=3, batch_repeats=2, batch_children=1,
                    loop_repeats=3, wait_runs=2_000, wait_repeats=1,
                    memory_runs=MEMORY_RUNS, memory_children=1)
    return dict(quick=False, warmup_invokes=3000, invokes=10000, repeats=9, warmup_long=30,
                long_invokes=100, sleep_repeats=9, batch_repeats=3, batch_children=3,
                loop_repeats=7, wait_runs=WAIT_RUNS, wait_repeats=3,
                memory_runs=MEMORY_RUNS, memory_children=3)


class CpuMeter:
    """How busy the rest of the machine was while a section ran.

    Reads the system-wide busy CPU time from /proc/stat and subtracts this process's
    (and its children's) own CPU time: what is left is other processes competing for the
    cores, in average cores busy. Returns None where /proc/stat is unavailable.
    """

    def __init__(self) -> None:
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal ...
        busy = sum(fields[:3]) + sum(fields[5:8])
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        return busy / os.sysconf("SC_CLK_TCK"), own, time.perf_counter()

    def background_cores(self) -> float | None:
        end = self._snapshot()
        if self._start is None or end is None or end[2] <= self._start[2]:
            return None
        other = (end[0] - self._start[0]) - (end[1] - self._start[1])
        return max(0.0, other / (end[2] - self._start[2]))


def wait_for_quiet(max_seconds: float, threshold: float = 0.15, window: float = 2.0) -> float | None:
    """Waits (up to max_seconds) until other processes use under `threshold` cores over a
    `window`-second sample. Returns the last sampled background load (None: unknown)."""
    deadline = time.monotonic() + max_seconds
    while True:
        meter = CpuMeter()
        time.sleep(window)
        other = meter.background_cores()
        if other is None or other < threshold or time.monotonic() >= deadline:
            return other


def build_info() -> dict[str, Any]:
    """Which engine build is being measured: the extension file, its build time, and the
    git state of the checkout next to this script (if any)."""
    info: dict[str, Any] = {"package": os.path.dirname(cp.__file__)}
    try:
        from counterpoint import _core

        info["extension"] = _core.__file__
        info["extension_built"] = _dt.datetime.fromtimestamp(
            os.path.getmtime(_core.__file__)).astimezone().isoformat(timespec="seconds")
    except (ImportError, AttributeError, OSError):
        pass
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "cpp",
                                "python"], capture_output=True, text=True, timeout=10)
        if head.returncode == 0:
            info["git_head"] = head.stdout.strip()
            info["git_engine_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def loadavg() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def _add_child_arguments(parser: argparse.ArgumentParser) -> None:
    """The hidden options of the child processes of sections 5 and 7 (see _child)."""
    parser.add_argument("--_batch-child", dest="batch_child", help=argparse.SUPPRESS)
    parser.add_argument("--_window-child", dest="window_child", type=int, default=None,
                        help=argparse.SUPPRESS)
    parser.add_argument("--_memory-child", dest="memory_child", help=argparse.SUPPRESS)
    parser.add_argument("--_traced", dest="traced", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_runs", dest="runs", type=int, default=BATCH_RUNS,
                        help=argparse.SUPPRESS)
    parser.add_argument("--_repeats", dest="child_repeats", type=int, default=3,
                        help=argparse.SUPPRESS)


def _run_batch_child(args: argparse.Namespace) -> int | None:
    """In a child process, measures what it was started for and prints the figures as
    one JSON line instead of running the harness."""
    if args.batch_child:
        print(json.dumps(batch_child(args.batch_child, args.runs, args.child_repeats)))
    elif args.window_child is not None:
        print(json.dumps(window_child(args.runs, args.window_child)))
    elif args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.runs, args.traced)))
    else:
        return None
    return 0


def _print_published_context(sections: list[str]) -> None:
    if "overhead" in sections:
        print("Context, PUBLISHED LangGraph figures (not measured here; different machine,\n"
              f"library and method): 3-agent chain ~{LANGGRAPH_PUBLISHED_US['chain3']:,.0f} us "
              f"per invoke, 5-way fan-out ~{LANGGRAPH_PUBLISHED_US['fanout5']:,.0f} us "
              "per invoke.")


def main(argv: list[str] | None = None) -> int:
    # The driver shared with patterns.py and policies.py. Imported here, not at the top:
    # _harness imports this module's helpers, which must be defined by then.
    import _harness

    sections = {"overhead": bench_overhead, "chain1000": bench_chain1000,
                "sync64": bench_sync64, "async1000": bench_async1000, "batch": bench_batch,
                "batchwait": bench_batchwait, "memory": bench_memory,
                "coroutines": bench_coroutines}
    return _harness.main(
        __doc__, sections, config, argv,
        quick_help="fewer iterations and repeats (about 10 s instead of ~1 min)",
        add_arguments=_add_child_arguments,
        run_instead=_run_batch_child,
        table=print_table,  # this module's table and number formats
        after_table=_print_published_context,
        json_extra={"published_context": {
            "langgraph_us_per_invoke": LANGGRAPH_PUBLISHED_US,
            "note": "published figures, not measured by this harness",
        }},
        record_settled=False,
    )


if __name__ == "__main__":
    # _harness imports this file as `engine`: let it find this running module instead of
    # executing a second copy of it.
    sys.modules.setdefault("engine", sys.modules[__name__])
    sys.exit(main())
