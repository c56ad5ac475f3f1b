#!/usr/bin/env python3
"""Peer benchmark: counterpoint, LangGraph and plain Python/asyncio side by side.

The same shapes run on the three in one process, interleaved repeat by repeat, and
every figure is reported as a median with its spread (min..max over the repeats). A
measurement tool, not a test suite: a missed target is reported as MISS, never as a
failure, and the exit status is 0.

Usage:
    python benchmarks/peers.py [--quick] [--json out.json] [--only SECTION ...]
                               [--settle SECONDS] [--plot [PATH]]

Sections (see benchmarks/README.md for what each figure means):
    overhead            1. per invoke: 3-agent chain, 5-way fan-out + join (no-op agents)
    chain               2. chains of 10, 100 and 1,000 no-op agents: cost per agent
    sync64              3. 64 sync agents doing time.sleep(0.05) in one fan-out
    async1000           4. 1,000 async agents doing await asyncio.sleep(0.05) in one fan-out
    batch               5. batch of 10,000 runs of the 5-way fan-out + join: runs/s
    sequential_1000     6. LangGraph's own bench graph sequential_1000, and its port
    fanout_to_subgraph  7. LangGraph's own bench graph fanout_to_subgraph, and its port

Peers and their configuration (also printed, and recorded in the JSON):
    counterpoint  the defaults: `cp.Graph` compiled without a store, sync agents with
                  dispatch="auto", `invoke` / `ainvoke` / `batch` without options.
    LangGraph     its fastest reasonable configuration: `StateGraph` compiled without a
                  checkpointer, `invoke` / `ainvoke` / `batch` with the defaults, sync
                  nodes for the sync shapes and `async def` nodes for the async ones;
                  fan-out branches declare `input_schema` with only the key they read;
                  the 64 blocking nodes run with config max_concurrency=64 (LangGraph's
                  default thread pool has min(32, cpus + 4) threads; also reported). Its
                  two bench graphs run as its own bench does (`stream` / `astream`,
                  every chunk consumed).
    plain         the same functions called by a Python loop (sync shapes), or awaited
                  with asyncio.gather / in a loop (async shapes), on the same event loop.

LangGraph (and matplotlib, for --plot) are optional: `pip install ".[peers]"`. Without
langgraph the LangGraph rows are skipped with a message.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import importlib.metadata
import inspect
import operator
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

import _harness as h
import counterpoint as cp
from _harness import Results, fmt, fmt_ratio, interleaved, once, summary
from engine import SLEEP, _DispatchProbe, async_sleeper, noop, sleeper, warn_if_moved
from engine import print_table as print_results_table

try:
    from langgraph.graph import END, START, StateGraph

    try:
        from langgraph.types import Send
    except ImportError:  # langgraph < 0.2.x
        from langgraph.constants import Send  # type: ignore[no-redef]
except ImportError:  # the LangGraph rows are skipped
    StateGraph = None  # type: ignore[assignment,misc]

FANOUT_WIDTH = 5
CHAIN_SIZES = (10, 100, 1000)
SYNC_WIDTH = 64
ASYNC_WIDTH = 1000
BATCH_RUNS = 10_000
SECTIONS = ("overhead", "chain", "sync64", "async1000", "batch", "sequential_1000",
            "fanout_to_subgraph")
DEFAULT_PLOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "docs", "performance-per-agent.png")

CP, LG, PLAIN = "counterpoint", "LangGraph", "plain"
PEER_CONFIG = {
    CP: "cp.Graph compiled without a store; sync agents dispatch='auto' (the default); "
        "invoke / ainvoke / batch without options",
    LG: "StateGraph compiled without a checkpointer; invoke / ainvoke / batch with the "
        "defaults; sync nodes for sync shapes, async def nodes for async shapes; fan-out "
        "branches take input_schema={'x'}; 64 blocking nodes: config max_concurrency=64 "
        "(default pool also reported); bench graphs: stream / astream as LangGraph's own "
        "bench (config thread_id + recursion_limit; durability= dropped: no checkpointer)",
    PLAIN: "the same functions called by a Python loop, or awaited (asyncio.gather for "
           "parallel shapes) on the same event loop",
}


def schema_kwargs(fn: Callable[..., Any], **schemas: Any) -> dict[str, Any]:
    """`input_schema=` / `output_schema=` for langgraph >= 0.5; `input=` / `output=`
    (their names before) for older releases."""
    params = inspect.signature(fn).parameters
    return {name if name in params else name.removesuffix("_schema"): value
            for name, value in schemas.items()}


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"counterpoint": cp.__version__}
    for dist in ("langgraph", "langchain-core", "matplotlib"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    return found


# --------------------------------------------------------------------------------------
# Side-by-side results (printed after the table; the figures also are rows of it)
# --------------------------------------------------------------------------------------

# One entry per shape: label, unit, {peer: summary scaled to that unit}. Filled by the
# sections, read by the side-by-side table and the plot.
SIDE: list[dict[str, Any]] = []
# Chain length -> {peer: summary of seconds per agent}, for the plot.
PER_AGENT: dict[int, dict[str, dict[str, Any]]] = {}
OPTIONS: dict[str, Any] = {}


def scaled(s: dict[str, Any], factor: float) -> dict[str, Any]:
    return summary([v * factor for v in s["samples"]])


def as_rate(s: dict[str, Any], runs: int) -> dict[str, Any]:
    """Seconds per batch -> runs per second (best = the highest rate)."""
    rates = summary([runs / v for v in s["samples"]])
    rates["best"], rates["worst"] = rates["worst"], rates["best"]
    return rates


def spread(s: dict[str, Any], unit: str) -> str:
    lo, hi = sorted((s["best"], s["worst"]))
    return f"{fmt(lo, unit)}..{fmt(hi, unit)}"


def report(res: Results, key: str, figure: str, stats: dict[str, dict[str, Any]], *,
           unit: str = "s", baseline: str = PLAIN, baseline_label: str = "plain",
           targets: dict[str, tuple[float, str, str]] | None = None,
           labels: dict[str, str] | None = None, side: bool = True) -> None:
    """Adds one row per peer of `stats` (peer -> summary in `unit`), each compared with
    the `baseline` peer's median, and records the shape for the side-by-side table.
    targets: peer -> (target, "measured" or "ratio", label)."""
    higher = unit == "runs/s"
    base = stats.get(baseline)
    labels = {PLAIN: "plain Python", **(labels or {})}
    # Rows in a fixed order: counterpoint, LangGraph, others, the baseline last.
    order = [CP, LG, *(p for p in stats if p not in (CP, LG, baseline)), baseline]
    stats = {peer: stats[peer] for peer in order if peer in stats}
    for peer, s in stats.items():
        is_base = peer == baseline
        target = (targets or {}).get(peer)
        res.add(
            f"{key}.{peer.lower()}",
            f"{figure}: {labels.get(peer, peer)}",
            s["median"],
            unit,
            baseline=None if is_base or base is None else base["median"],
            baseline_label="" if is_base else baseline_label,
            ratio_label="(speed-up)" if higher and not is_base else "",
            higher_is_better=higher,
            target=target[0] if target else None,
            target_on=target[1] if target else "measured",
            target_label=target[2] if target else "",
            details={"peer": peer, "summary": s, "spread": [s["best"], s["worst"]]},
        )
    if side:
        SIDE.append({"key": key, "shape": figure, "unit": unit, "stats": stats,
                     "baseline": baseline})
    line = "; ".join(f"{peer} {fmt(s['median'], unit)} ({spread(s, unit)})"
                     for peer, s in stats.items())
    print(f"    {figure}: {line}", flush=True)


def ratio_text(ratio: float | None) -> str:
    """engine.fmt_ratio, with two significant digits below 0.01x instead of 0.00x."""
    if ratio is not None and 0 < ratio < 0.01:
        return f"{ratio:.2g}x"
    return fmt_ratio(ratio)


def print_table(results: Results) -> None:
    """engine.print_table with a spread column (min..max over the repeats)."""
    def spread_cell(row: dict[str, Any]) -> str:
        s = row["details"].get("summary")
        return spread(s, row["unit"]) if s else "-"

    print_results_table(results, fmt, ratio_fmt=ratio_text,
                        extra=("Spread (min..max)", spread_cell))


def print_side_by_side(sections: list[str]) -> None:
    """The shapes side by side, as a Markdown table (docs/performance.md publishes it)."""
    if not SIDE:
        return
    print("Side by side (median, min..max over the repeats; lower is better except runs/s):\n")
    print(f"| Shape | {CP} | {LG} | plain Python / asyncio | LangGraph ÷ counterpoint |")
    print("|---|---|---|---|---|")
    for entry in SIDE:
        unit, stats = entry["unit"], entry["stats"]
        cells = []
        for peer in (CP, LG, entry["baseline"]):
            s = stats.get(peer)
            cells.append(f"{fmt(s['median'], unit)} ({spread(s, unit)})" if s else "-")
        ratio = "-"
        if CP in stats and LG in stats:
            r = stats[LG]["median"] / stats[CP]["median"]
            ratio = fmt_ratio(1 / r if unit == "runs/s" else r)
        print(f"| {entry['shape']} | {' | '.join(cells)} | {ratio} |")
    print()
    if OPTIONS.get("plot"):
        plot_per_agent(OPTIONS["plot"])


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


def iterations_for(fn: Callable[[], Any], seconds: float, warm_calls: int = 2) -> int:
    """Calls `fn` `warm_calls` times (warming it) and returns how many back-to-back
    calls take about `seconds` (at least 1). Unlike h.calibrate, fine for 1-s calls."""
    fastest = min(once(fn) for _ in range(max(1, warm_calls)))
    return max(1, int(seconds / max(fastest, 1e-9)))


def measure(candidates: dict[str, Callable[[], Any]], cfg: dict[str, Any], *,
            warm_calls: dict[str, int] | None = None,
            repeats: int | None = None) -> dict[str, dict[str, Any]]:
    """Warms each candidate, sizes its repeats to cfg["repeat_seconds"], then times them
    interleaved (engine.interleaved): peer -> summary of seconds per call."""
    sized = {}
    for name, fn in candidates.items():
        calls = (warm_calls or {}).get(name, 2)
        sized[name] = (fn, iterations_for(fn, cfg["repeat_seconds"], calls))
    samples = interleaved(sized, repeats or cfg["repeats"])
    return {name: summary(samples[name]) for name in candidates}


def on_loop(loop: asyncio.AbstractEventLoop,
            coro: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: loop.run_until_complete(coro())


# --------------------------------------------------------------------------------------
# Agents and the three implementations of each shape
# --------------------------------------------------------------------------------------


class XState(TypedDict):
    x: int


def cp_chain(length: int) -> cp.CompiledGraph:
    g = cp.Graph()
    for i in range(length):
        g.add(f"a{i}", noop, after=None if i == 0 else f"a{i - 1}")
    return g.compile()


def lg_chain(length: int) -> Any:
    """`length` nodes in a row, each passing the value on: node(state) -> {"x": x}."""
    b = StateGraph(XState)
    prev = START
    for i in range(length):
        b.add_node(f"a{i}", lambda state: {"x": noop(state["x"])})
        b.add_edge(prev, f"a{i}")
        prev = f"a{i}"
    b.add_edge(prev, END)
    return b.compile()


def plain_chain(length: int) -> Callable[[Any], Any]:
    steps = [noop] * length

    def plain(x):
        for step in steps:
            x = step(x)
        return x

    return plain


def cp_fanout(width: int, agent: Any = noop, join: bool = True) -> cp.CompiledGraph:
    """`width` entry agents that all receive the input, then (if `join`) one agent
    receiving {name: output}; without a join the result is {name: output} anyway."""
    g = cp.Graph()
    names = [f"w{i}" for i in range(width)]
    for name in names:
        g.add(name, agent)
    if join:
        g.add("join", noop, after=names)
    return g.compile()


def lg_fanout(width: int, agent: Any = noop, join: bool = True) -> Any:
    """START -> `width` nodes, each writing its own key, then (if `join`) a node after
    all of them that builds {name: output}, as counterpoint's join receives it."""
    names = [f"w{i}" for i in range(width)]
    state = TypedDict("FanState", {"x": int, **dict.fromkeys(names, int), "out": dict})  # type: ignore[misc]
    b = StateGraph(state)
    for name in names:
        if asyncio.iscoroutinefunction(agent):
            async def node(s, name=name):
                return {name: await agent(s["x"])}
        else:
            def node(s, name=name):
                return {name: agent(s["x"])}
        b.add_node(name, node, **schema_kwargs(b.add_node, input_schema=XState))
        b.add_edge(START, name)
    if join:
        b.add_node("join", lambda s: {"out": noop({n: s[n] for n in names})})
        b.add_edge(names, "join")
        b.add_edge("join", END)
    return b.compile()


def plain_fanout(width: int) -> Callable[[Any], Any]:
    names = [f"w{i}" for i in range(width)]

    def plain(x):
        joined = {}
        for name in names:
            joined[name] = noop(x)
        return noop(joined)

    return plain


def probed(build: Callable[[], cp.CompiledGraph]) -> tuple[cp.CompiledGraph, _DispatchProbe]:
    """Builds a graph under engine.py's dispatch probe (diagnostics: how many no-op
    agents `auto` dispatch still runs inline at the end)."""
    probe = _DispatchProbe()
    with probe:
        app = build()
    return app, probe


def inline_report(probe: _DispatchProbe, res: Results) -> None:
    inline = probe.inline_count()
    if inline:
        print(f"    counterpoint: {inline[0]}/{inline[1]} agents still inline", flush=True)
    warn_if_moved(inline, res)


def lg_available(res: Results) -> bool:
    if StateGraph is None:
        print("    LangGraph is not installed: its rows are skipped (pip install \".[peers]\")",
              flush=True)
    return StateGraph is not None


# --------------------------------------------------------------------------------------
# 1. Per invoke: 3-agent chain, 5-way fan-out + join
# --------------------------------------------------------------------------------------


def bench_overhead(res: Results, cfg: dict[str, Any]) -> None:
    print("[1] per invoke, no-op sync agents: 3-agent chain, 5-way fan-out + join", flush=True)
    have_lg = lg_available(res)
    shapes = [
        ("chain3", "1. chain-3, per invoke", *probed(lambda: cp_chain(3)),
         lg_chain(3) if have_lg else None, plain_chain(3)),
        ("fanout5", f"1. fan-out-{FANOUT_WIDTH} + join, per invoke",
         *probed(lambda: cp_fanout(FANOUT_WIDTH)),
         lg_fanout(FANOUT_WIDTH) if have_lg else None, plain_fanout(FANOUT_WIDTH)),
    ]
    for key, figure, app, probe, graph, plain in shapes:
        assert app.invoke(7) == plain(7)
        if graph is not None:
            got = graph.invoke({"x": 7})
            assert got.get("out", got["x"]) == plain(7), got
        h.warm(lambda app=app: app.invoke(1), cfg["warmup_invokes"], 5.0)  # `auto` inlines
        candidates = {CP: lambda app=app: app.invoke(1), PLAIN: lambda plain=plain: plain(1)}
        if graph is not None:
            candidates[LG] = lambda graph=graph: graph.invoke({"x": 1})
        stats = measure(candidates, cfg, warm_calls={LG: 20, PLAIN: 100})
        report(res, key, figure, stats)
        inline_report(probe, res)
        if key == "chain3":
            PER_AGENT[3] = {peer: scaled(s, 1 / 3) for peer, s in stats.items()}


# --------------------------------------------------------------------------------------
# 2. Chains of 10, 100, 1,000 agents: cost per agent
# --------------------------------------------------------------------------------------


def bench_chain(res: Results, cfg: dict[str, Any]) -> None:
    print(f"[2] chains of {', '.join(f'{n:,}' for n in CHAIN_SIZES)} no-op agents: "
          "invoke time / length", flush=True)
    have_lg = lg_available(res)
    for n in CHAIN_SIZES:
        (app, probe), plain = probed(lambda n=n: cp_chain(n)), plain_chain(n)
        start = time.perf_counter()
        graph = lg_chain(n) if have_lg else None
        lg_compile = time.perf_counter() - start
        assert app.invoke(3) == plain(3)
        h.warm(lambda app=app: app.invoke(1), cfg["warmup_invokes"] * 3 // n + 3, 5.0)
        candidates = {CP: lambda app=app: app.invoke(1), PLAIN: lambda plain=plain: plain(1)}
        if graph is not None:
            assert graph.invoke({"x": 3}) == {"x": 3}
            candidates[LG] = lambda graph=graph: graph.invoke({"x": 1})
        stats = measure(candidates, cfg, warm_calls={CP: 3, LG: 2 if n >= 1000 else 5,
                                                     PLAIN: 20})
        per_agent = {peer: scaled(s, 1 / n) for peer, s in stats.items()}
        PER_AGENT[n] = per_agent
        targets = {CP: (2e-6, "measured", "<= 2 us")} if n == 1000 else None
        report(res, f"chain{n}", f"2. {n:,}-chain, per agent", per_agent,
               baseline_label="plain call", targets=targets)
        inline_report(probe, res)
        if graph is not None and n >= 1000:
            print(f"    (LangGraph compiled the {n:,}-chain in {fmt(lg_compile, 's')})",
                  flush=True)


def plot_per_agent(path: str) -> None:
    """Per-agent cost against chain length, log-log, one line per peer."""
    if not PER_AGENT:
        print("plot: no chain figures in this run (sections overhead/chain); no plot written")
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot: matplotlib is not installed (pip install \".[peers]\"); no plot written")
        return
    sizes = sorted(PER_AGENT)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {CP: ("o-", "counterpoint (invoke)"), LG: ("s-", "LangGraph (invoke)"),
              PLAIN: ("^--", "plain Python loop")}
    for peer, (style, label) in styles.items():
        xs = [n for n in sizes if peer in PER_AGENT[n]]
        if not xs:
            continue
        med = [PER_AGENT[n][peer]["median"] * 1e6 for n in xs]
        lo = [m - PER_AGENT[n][peer]["best"] * 1e6 for n, m in zip(xs, med)]
        hi = [PER_AGENT[n][peer]["worst"] * 1e6 - m for n, m in zip(xs, med)]
        ax.errorbar(xs, med, yerr=[lo, hi], fmt=style, capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("agents in the chain")
    ax.set_ylabel("time per agent (µs), median and min..max")
    found = versions()
    ax.set_title("Per-agent cost of a chain of no-op agents\n"
                 f"counterpoint {found['counterpoint']}, LangGraph {found['langgraph']}, "
                 f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: wrote {path}")


# --------------------------------------------------------------------------------------
# 3. 64 blocking agents
# --------------------------------------------------------------------------------------


def bench_sync64(res: Results, cfg: dict[str, Any]) -> None:
    print(f"[3] {SYNC_WIDTH} sync agents, each time.sleep({SLEEP}), in one fan-out", flush=True)
    have_lg = lg_available(res)
    app = cp_fanout(SYNC_WIDTH, sleeper, join=False)
    app.invoke(1)  # starts the pool threads
    inputs = [1] * SYNC_WIDTH
    default_workers = min(32, (os.cpu_count() or 1) + 4)
    with concurrent.futures.ThreadPoolExecutor(max_workers=SYNC_WIDTH) as pool:
        list(pool.map(sleeper, inputs))  # warm: its threads exist, like the engine's pool
        candidates = {CP: (lambda: app.invoke(1), 1),
                      PLAIN: (lambda: list(pool.map(sleeper, inputs)), 1)}
        if have_lg:
            graph = lg_fanout(SYNC_WIDTH, sleeper, join=False)
            wide = {"max_concurrency": SYNC_WIDTH}
            assert len(graph.invoke({"x": 1}, wide)) == SYNC_WIDTH + 1
            candidates[LG] = (lambda: graph.invoke({"x": 1}, wide), 1)
            candidates["LangGraph default"] = (lambda: graph.invoke({"x": 1}), 1)
        samples = interleaved(candidates, cfg["sleep_repeats"])
    stats = {name: summary(samples[name]) for name in candidates}
    main = {peer: stats[peer] for peer in (CP, LG, PLAIN) if peer in stats}
    report(res, "sync64", f"3. {SYNC_WIDTH} x sleep(50 ms) fan-out, wall", main,
           baseline_label=f"TPE({SYNC_WIDTH}).map",
           labels={LG: f"LangGraph [max_concurrency={SYNC_WIDTH}]",
                   PLAIN: f"plain ThreadPoolExecutor({SYNC_WIDTH}).map"},
           targets={CP: (1.2 * SLEEP, "measured", "<= 1.2x ideal (60 ms)")})
    if "LangGraph default" in stats:
        report(res, "sync64.lg_default",
               f"3. {SYNC_WIDTH} x sleep(50 ms) fan-out, wall (info)",
               {"LangGraph default": stats["LangGraph default"], PLAIN: stats[PLAIN]},
               baseline_label=f"TPE({SYNC_WIDTH}).map", side=False,
               labels={"LangGraph default": f"LangGraph default pool [{default_workers}]",
                       PLAIN: f"plain ThreadPoolExecutor({SYNC_WIDTH}).map"})


# --------------------------------------------------------------------------------------
# 4. 1,000 coroutine agents
# --------------------------------------------------------------------------------------


def bench_async1000(res: Results, cfg: dict[str, Any]) -> None:
    print(f"[4] {ASYNC_WIDTH:,} async agents, each await asyncio.sleep({SLEEP}), in one "
          "fan-out, awaited on the caller's event loop", flush=True)
    have_lg = lg_available(res)
    app = cp_fanout(ASYNC_WIDTH, async_sleeper, join=False)
    loop = asyncio.new_event_loop()

    async def gather():  # creating the coroutines is part of every side
        return await asyncio.gather(*(async_sleeper(1) for _ in range(ASYNC_WIDTH)))

    try:
        candidates = {CP: (on_loop(loop, lambda: app.ainvoke(1)), 1),
                      PLAIN: (on_loop(loop, gather), 1)}
        if have_lg:
            graph = lg_fanout(ASYNC_WIDTH, async_sleeper, join=False)
            assert len(loop.run_until_complete(graph.ainvoke({"x": 1}))) == ASYNC_WIDTH + 1
            candidates[LG] = (on_loop(loop, lambda: graph.ainvoke({"x": 1})), 1)
        assert len(loop.run_until_complete(app.ainvoke(1))) == ASYNC_WIDTH
        loop.run_until_complete(gather())
        samples = interleaved(candidates, cfg["sleep_repeats"])
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    stats = {name: summary(samples[name]) for name in (CP, LG, PLAIN) if name in samples}
    report(res, "async1000", f"4. {ASYNC_WIDTH:,} x asyncio.sleep(50 ms), ainvoke wall",
           stats, baseline_label="asyncio.gather",
           labels={PLAIN: "plain asyncio.gather"},
           targets={CP: (1.1, "ratio", "<= 1.1x gather")})


# --------------------------------------------------------------------------------------
# 5. Batch of 10,000 fan-out runs
# --------------------------------------------------------------------------------------


def bench_batch(res: Results, cfg: dict[str, Any]) -> None:
    runs = cfg["batch_runs"]
    print(f"[5] batch of {runs:,} runs of the {FANOUT_WIDTH}-way fan-out + join", flush=True)
    have_lg = lg_available(res)
    app, plain = cp_fanout(FANOUT_WIDTH), plain_fanout(FANOUT_WIDTH)
    inputs = list(range(runs))
    expected = [plain(x) for x in inputs]
    assert app.batch(inputs[:200]) == expected[:200]
    candidates = {CP: (lambda: app.batch(inputs), 1),
                  PLAIN: (lambda: [plain(x) for x in inputs], 1)}
    if have_lg:
        graph = lg_fanout(FANOUT_WIDTH)
        lg_inputs = [{"x": x} for x in inputs]
        assert [s["out"] for s in graph.batch(lg_inputs[:200])] == expected[:200]
        candidates[LG] = (lambda: graph.batch(lg_inputs), 1)
    samples = interleaved(candidates, cfg["batch_repeats"])
    stats = {name: as_rate(summary(samples[name]), runs) for name in (CP, LG, PLAIN)
             if name in samples}
    report(res, "batch", f"5. batch of {runs:,} x fan-out-{FANOUT_WIDTH}, throughput", stats,
           unit="runs/s", baseline_label="plain loop",
           labels={CP: "counterpoint app.batch", LG: "LangGraph graph.batch",
                   PLAIN: "plain sequential loop"})


# --------------------------------------------------------------------------------------
# 6. LangGraph's bench graph sequential_1000, and its port
# --------------------------------------------------------------------------------------

# Ported from the langgraph repository, libs/langgraph/bench/sequential.py
# (create_sequential) as its libs/langgraph/bench/__main__.py runs it ("sequential_1000":
# create_sequential(1000).compile(), input {"messages": []}, every chunk of stream /
# astream consumed). Each of the 1,000 nodes is a no-op on a MessagesState: it returns
# None, i.e. no update. In counterpoint a no-op agent passes the state on unchanged
# (an agent's output is its successor's input), in plain Python the state goes through
# the same 1,000 calls.

SEQ_NODES = 1000


def lg_sequential(number_nodes: int) -> Any:
    from langgraph.graph import MessagesState

    try:  # the node type the bench uses: one sync and one async implementation
        from langgraph._internal._runnable import RunnableCallable
    except ImportError:  # older langgraph
        from langgraph.utils.runnable import RunnableCallable  # type: ignore[no-redef]

    def noop_node(state: MessagesState) -> None:
        pass

    async def anoop_node(state: MessagesState) -> None:
        pass

    builder = StateGraph(MessagesState)
    prev = START
    for i in range(number_nodes):
        builder.add_node(f"node_{i}", RunnableCallable(noop_node, anoop_node))
        builder.add_edge(prev, f"node_{i}")
        prev = f"node_{i}"
    builder.add_edge(prev, END)
    return builder.compile()


def lg_bench_config() -> dict[str, Any]:
    """The config LangGraph's bench passes on every run (a fresh thread_id each time).
    Its `durability="exit"` is left out: without a checkpointer it has no effect (and
    langgraph warns)."""
    return {"configurable": {"thread_id": str(uuid.uuid4())}, "recursion_limit": 1_000_000_000}


def lg_run(graph: Any, state: Any) -> int:
    return len(list(graph.stream(state, lg_bench_config())))


async def lg_arun(graph: Any, state: Any) -> int:
    return len([c async for c in graph.astream(state, lg_bench_config())])


def state_noop(state):
    return state


async def state_anoop(state):
    return state


def bench_sequential_1000(res: Results, cfg: dict[str, Any]) -> None:
    print(f"[6] LangGraph's bench graph sequential_{SEQ_NODES} and its counterpoint port",
          flush=True)
    have_lg = lg_available(res)
    sync_app, probe = probed(lambda: cp_chain_of(state_noop, SEQ_NODES))
    async_app = cp_chain_of(state_anoop, SEQ_NODES)
    graph = lg_sequential(SEQ_NODES) if have_lg else None

    def plain(state):
        for _ in range(SEQ_NODES):
            state = state_noop(state)
        return state

    async def aplain(state):
        for _ in range(SEQ_NODES):
            state = await state_anoop(state)
        return state

    fresh = lambda: {"messages": []}
    assert sync_app.invoke(fresh()) == plain(fresh()) == {"messages": []}
    h.warm(lambda: sync_app.invoke(fresh()), 30, 5.0)
    candidates = {CP: lambda: sync_app.invoke(fresh()), PLAIN: lambda: plain(fresh())}
    if graph is not None:
        assert lg_run(graph, fresh()) == SEQ_NODES  # one (empty) update chunk per node
        candidates[LG] = lambda: lg_run(graph, fresh())
    stats = measure(candidates, cfg, warm_calls={CP: 3, PLAIN: 20})
    report(res, "sequential_1000.sync", f"6. sequential_{SEQ_NODES}, sync, per run", stats,
           labels={CP: "counterpoint invoke", LG: "LangGraph stream"},
           baseline_label="plain loop")
    inline_report(probe, res)

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(async_app.ainvoke(fresh())) == {"messages": []}
        candidates = {CP: on_loop(loop, lambda: async_app.ainvoke(fresh())),
                      PLAIN: on_loop(loop, lambda: aplain(fresh()))}
        if graph is not None:
            candidates[LG] = on_loop(loop, lambda: lg_arun(graph, fresh()))
        stats = measure(candidates, cfg, warm_calls={CP: 5, PLAIN: 20})
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    report(res, "sequential_1000.async", f"6. sequential_{SEQ_NODES}, async, per run", stats,
           labels={CP: "counterpoint ainvoke", LG: "LangGraph astream",
                   PLAIN: "plain await loop"},
           baseline_label="await loop")


def cp_chain_of(agent: Any, length: int) -> cp.CompiledGraph:
    g = cp.Graph()
    for i in range(length):
        g.add(f"node_{i}", agent, after=None if i == 0 else f"node_{i - 1}")
    return g.compile()


# --------------------------------------------------------------------------------------
# 7. LangGraph's bench graph fanout_to_subgraph, and its port
# --------------------------------------------------------------------------------------

# Ported from the langgraph repository, libs/langgraph/bench/fanout_to_subgraph.py
# (fanout_to_subgraph, async nodes; fanout_to_subgraph_sync, sync nodes) as its
# libs/langgraph/bench/__main__.py runs them ("fanout_to_subgraph_10x" / "_100x",
# compiled with checkpointer=None; input {"subjects": [random.choices(ascii_lowercase,
# k=1000) for _ in range(10 or 100)]}, every chunk of stream / astream consumed).
#
# The parent sends each subject to a subgraph (Send); the subgraph runs edit ->
# generate -> bump, and bump loops back to itself until the joke ends with " a" * 10
# (10 bumps: 12 node runs per subject); the parent collects the jokes with operator.add.
# counterpoint port: cp.fan_out over the subjects (the Send), its worker a graph
# edit -> generate -> bump, where the bump node delegates to a one-node graph and the
# loop condition, as the `then` controller of cp.delegate, either ends or delegates
# again (the conditional edge back to bump); the fan-out's reducer concatenates the
# jokes (operator.add). Same node functions, same states, same number of node runs.


class JokeInput(TypedDict):
    subject: str


class JokeOutput(TypedDict):
    jokes: list[str]


class JokeState(JokeInput, JokeOutput):
    pass


class OverallState(TypedDict):
    subjects: list[str]
    jokes: Annotated[list[str], operator.add]


def edit(state):
    return {"subject": f"{state['subject']} - hohoho"}


def generate(state):
    return {"jokes": [f"Joke about {state['subject']}"]}


def bump(state):
    return {"jokes": [state["jokes"][0] + " a"]}


def bumped_enough(state) -> bool:
    return state["jokes"][0].endswith(" a" * 10)


async def aedit(state):
    return edit(state)


async def agenerate(state):
    return generate(state)


async def abump(state):
    return bump(state)


def sends(state) -> list[dict[str, Any]]:
    return [{"subject": s} for s in state["subjects"]]


def collect_jokes(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    jokes: list[str] = []
    for out in outputs:
        jokes = operator.add(jokes, out["jokes"])
    return {"jokes": jokes}


def cp_fanout_to_subgraph(use_async: bool) -> cp.CompiledGraph:
    bump_once = cp.Graph().add("bump", abump if use_async else bump).compile()

    def bump_loop(state):  # the conditional edge: END, or back to bump
        if bumped_enough(state):
            return state
        return cp.delegate(bump_once, state, then=bump_loop)

    def start_bumping(state):
        return cp.delegate(bump_once, state, then=bump_loop)

    joke = (
        cp.Graph()
        .add("edit", aedit if use_async else edit)
        .add("generate", agenerate if use_async else generate, after="edit")
        .add("bump", start_bumping, after="generate", dispatch="inline")
        .compile()
    )
    return cp.fan_out(joke, over=sends, merge=collect_jokes)


def lg_fanout_to_subgraph(use_async: bool) -> Any:
    if use_async:
        async def continue_to_jokes(state: OverallState):
            return [Send("generate_joke", s) for s in sends(state)]

        async def bump_loop(state: JokeOutput):
            return END if bumped_enough(state) else "bump"

        nodes = {"edit": aedit, "generate": agenerate, "bump": abump}
    else:
        def continue_to_jokes(state: OverallState):  # type: ignore[misc]
            return [Send("generate_joke", s) for s in sends(state)]

        def bump_loop(state: JokeOutput):  # type: ignore[misc]
            return END if bumped_enough(state) else "bump"

        nodes = {"edit": edit, "generate": generate, "bump": bump}

    subgraph = StateGraph(JokeState, **schema_kwargs(StateGraph, input_schema=JokeInput,
                                                     output_schema=JokeOutput))
    for name, fn in nodes.items():
        subgraph.add_node(name, fn)
    subgraph.set_entry_point("edit")
    subgraph.add_edge("edit", "generate")
    subgraph.add_edge("generate", "bump")
    subgraph.add_conditional_edges("bump", bump_loop)
    subgraph.set_finish_point("generate")

    builder = StateGraph(OverallState)
    builder.add_node("generate_joke", subgraph.compile())
    builder.add_conditional_edges(START, continue_to_jokes)
    builder.add_edge("generate_joke", END)
    return builder.compile(checkpointer=None)


def plain_joke(subject) -> dict[str, Any]:
    out = generate(edit({"subject": subject}))
    while True:
        out = bump(out)
        if bumped_enough(out):
            return out


async def aplain_joke(subject) -> dict[str, Any]:
    out = await agenerate(await aedit({"subject": subject}))
    while True:
        out = await abump(out)
        if bumped_enough(out):
            return out


def plain_fanout_to_subgraph(state) -> dict[str, Any]:
    return collect_jokes([plain_joke(s) for s in state["subjects"]])


async def aplain_fanout_to_subgraph(state) -> dict[str, Any]:
    return collect_jokes(await asyncio.gather(*(aplain_joke(s) for s in state["subjects"])))


def bench_fanout_to_subgraph(res: Results, cfg: dict[str, Any]) -> None:
    print("[7] LangGraph's bench graph fanout_to_subgraph and its counterpoint port",
          flush=True)
    have_lg = lg_available(res)
    rng = random.Random(0)
    for count in cfg["fanout_subjects"]:
        state = {"subjects": [rng.choices("abcdefghijklmnopqrstuvwxyz", k=1000)
                              for _ in range(count)]}
        expected = plain_fanout_to_subgraph(state)
        assert len(expected["jokes"]) == count
        name = f"fanout_to_subgraph_{count}x"

        app = cp_fanout_to_subgraph(use_async=False)
        assert app.invoke(state) == expected
        h.warm(lambda app=app, state=state: app.invoke(state), 20, 3.0)
        candidates = {CP: lambda app=app, state=state: app.invoke(state),
                      PLAIN: lambda state=state: plain_fanout_to_subgraph(state)}
        if have_lg:
            graph = lg_fanout_to_subgraph(use_async=False)
            final = graph.invoke(state)
            assert final["jokes"] == expected["jokes"], "the port differs from the original"
            assert lg_run(graph, state) == count  # one update per subgraph run
            candidates[LG] = lambda graph=graph, state=state: lg_run(graph, state)
        stats = measure(candidates, cfg, warm_calls={CP: 3, LG: 2, PLAIN: 5})
        report(res, f"{name}.sync", f"7. {name}, sync, per run", stats,
               labels={CP: "counterpoint invoke", LG: "LangGraph stream"},
               baseline_label="plain loop")

        aapp = cp_fanout_to_subgraph(use_async=True)
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(aapp.ainvoke(state)) == expected
            candidates = {CP: on_loop(loop, lambda aapp=aapp, state=state: aapp.ainvoke(state)),
                          PLAIN: on_loop(loop, lambda state=state: aplain_fanout_to_subgraph(state))}
            if have_lg:
                agraph = lg_fanout_to_subgraph(use_async=True)
                final = loop.run_until_complete(agraph.ainvoke(state))
                assert final["jokes"] == expected["jokes"], "the port differs from the original"
                candidates[LG] = on_loop(loop, lambda agraph=agraph, state=state: lg_arun(agraph, state))
            stats = measure(candidates, cfg, warm_calls={CP: 5, LG: 2, PLAIN: 5})
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        report(res, f"{name}.async", f"7. {name}, async, per run", stats,
               labels={CP: "counterpoint ainvoke", LG: "LangGraph astream",
                       PLAIN: "plain asyncio.gather"},
               baseline_label="asyncio.gather")


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def config(quick: bool) -> dict[str, Any]:
    if quick:
        return dict(quick=True, warmup_invokes=500, repeats=3, repeat_seconds=0.05,
                    sleep_repeats=3, batch_runs=1_000, batch_repeats=2,
                    fanout_subjects=[10])
    return dict(quick=False, warmup_invokes=3000, repeats=7, repeat_seconds=0.2,
                sleep_repeats=7, batch_runs=BATCH_RUNS, batch_repeats=3,
                fanout_subjects=[10, 100])


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plot", nargs="?", const=DEFAULT_PLOT, metavar="PATH",
                        help="write a log-log plot of per-agent cost against chain length "
                        "(needs matplotlib; default path: docs/performance-per-agent.png)")


def _start(args: argparse.Namespace) -> None:
    """Records the options and prints the peers' versions and configurations."""
    OPTIONS["plot"] = args.plot
    found = versions()
    print("Peers, each in its fastest reasonable configuration:")
    for peer, text in PEER_CONFIG.items():
        version = {CP: f" {found['counterpoint']}", LG: (
            f" {found['langgraph']} (langchain-core {found['langchain-core']})"
            if StateGraph is not None else " NOT INSTALLED: rows skipped")}.get(peer, "")
        print(f"  {peer}{version}: {text}")
    print(f"  (counterpoint imported from {os.path.dirname(cp.__file__)})")
    if StateGraph is None:
        print("LangGraph is not installed (pip install \".[peers]\"): only counterpoint and "
              "plain Python are measured.")
    if args.quick:
        print("--quick: fewer repeats, batch of 1,000 runs, fanout_to_subgraph 10x only")
    print()
    return None


def main(argv: list[str] | None = None) -> int:
    sections = {"overhead": bench_overhead, "chain": bench_chain, "sync64": bench_sync64,
                "async1000": bench_async1000, "batch": bench_batch,
                "sequential_1000": bench_sequential_1000,
                "fanout_to_subgraph": bench_fanout_to_subgraph}
    return h.main(
        __doc__, sections, config, argv,
        quick_help="fewer repeats, a batch of 1,000 runs, fanout_to_subgraph 10x only "
        "(under a minute instead of about 5)",
        add_arguments=_add_arguments,
        run_instead=_start,
        table=print_table,
        after_table=print_side_by_side,
        json_extra={"peers": {"versions": versions(), "configuration": PEER_CONFIG},
                    "per_agent_seconds": PER_AGENT},  # filled in by the run
    )


if __name__ == "__main__":
    sys.exit(main())
