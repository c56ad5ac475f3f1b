#!/usr/bin/env python3
"""Streaming benchmark harness for counterpoint: what `stream` and `astream` cost on top
of `invoke`.

The same graph runs through `app.invoke(x)`, `for c in app.stream(x, stream_mode=mode)`
and `async for c in app.astream(x, stream_mode=mode)` for the modes "events" and "updates"
(every chunk consumed), plus `await app.ainvoke(x)` on the same event loop as the baseline
of the asynchronous path, interleaved repeat by repeat in one process. Every figure is a
median over the repeats with its spread (min..max); each ratio is the median of the
repeats' own ratios to the baseline measured beside them: invoke for stream, ainvoke for
astream. A measurement tool, not a test suite: a missed target is reported as MISS, never
as a failure, and the exit status is 0.

Usage:
    python benchmarks/streaming.py [--quick] [--json out.json] [--only SECTION ...]
                                   [--settle SECONDS]

Sections (see benchmarks/README.md for what each figure means):
    fanout5     1. 5-way fan-out + join of no-op agents (engine.py's section 1 shape)
    chain1000   2. the 1,000-agent no-op chain (engine.py's section 2 shape)
    subgraphs10 3. fan-out to 10 subgraphs: 10 entry agents that are each a compiled
                   3-agent no-op chain, joined by one agent
    fanout_to_subgraph
                4. peers.py's port of LangGraph's bench graph fanout_to_subgraph (10
                   subjects): cp.fan_out over a 3-agent subgraph whose last agent loops
                   through delegations
    chunk_costs 5. where a chunk's cost goes on the 1,000-agent chain: recorded by the
                   engine, made into chunks, taken while the run goes

Methodology as in engine.py: warm up first, time back-to-back runs per repeat with the
garbage collector paused, take the median over repeats, and interleave the candidates
(rotating their order every repeat). Repeats are many and short (61 of about 30 ms each)
so that a slow phase of a shared machine spoils a few of them rather than a whole one.
The asynchronous candidates run their repeat's runs inside one `run_until_complete`, so
the loop's start and stop are not counted per run.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import counterpoint as cp
from engine import (
    CHAIN_LONG,
    FANOUT_WIDTH,
    Results,
    chain_graph,
    fanout_graph,
    fmt,
    fmt_ratio,
    interleaved,
    noop,
    once,
    summary,
)
from engine import print_table as engine_print_table

SUBGRAPHS = 10       # section 3: parallel subgraph agents
SUBGRAPH_CHAIN = 3   # section 3: agents in each subgraph
SUBJECTS = 10        # section 4: subjects of fanout_to_subgraph
TARGET = 1.3         # stream <= 1.3x invoke, astream <= 1.3x ainvoke


# --------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------


def subgraph_fanout(width: int = SUBGRAPHS, depth: int = SUBGRAPH_CHAIN) -> cp.CompiledGraph:
    """`width` entry agents, each a compiled chain of `depth` no-op agents added as an
    agent (a child run per call, its events streamed as "s<i>/a<j>"), joined by one
    no-op agent."""
    g = cp.Graph()
    for i in range(width):
        g.add(f"s{i}", chain_graph(depth)[0])
    return g.add("join", noop, after=[f"s{i}" for i in range(width)]).compile()


def fanout_to_subgraph() -> tuple[cp.CompiledGraph, Any]:
    """peers.py's counterpoint port of LangGraph's fanout_to_subgraph (sync nodes) and
    its input: SUBJECTS subjects of 1,000 random letters, as LangGraph's bench builds it."""
    import peers  # only here: it imports langgraph when installed, which takes a while

    rng = random.Random(0)
    state = {"subjects": [rng.choices("abcdefghijklmnopqrstuvwxyz", k=1000)
                          for _ in range(SUBJECTS)]}
    return peers.cp_fanout_to_subgraph(use_async=False), state


# --------------------------------------------------------------------------------------
# Measuring one shape
# --------------------------------------------------------------------------------------


MODES = ("events", "updates")  # the stream modes measured (streaming's target names both)


def consume(app: cp.CompiledGraph, x: Any, mode: str) -> int:
    """Streams one run, consuming every chunk; returns how many there were."""
    n = 0
    for _ in app.stream(x, stream_mode=mode):
        n += 1
    return n


async def aconsume(app: cp.CompiledGraph, x: Any, mode: str) -> int:
    n = 0
    async for _ in app.astream(x, stream_mode=mode):
        n += 1
    return n


def candidates_for(app: cp.CompiledGraph, x: Any, runs: int,
                   loop: asyncio.AbstractEventLoop) -> dict[str, tuple[Callable[[], Any], int]]:
    """The ways of running `app` (invoke, ainvoke, and stream and astream in each of
    MODES), each doing `runs` runs per call (interleaved() then times one call per
    repeat; the figures are divided by `runs` afterwards)."""

    def invoke() -> None:
        for _ in range(runs):
            app.invoke(x)

    async def ainvoke_runs() -> None:
        for _ in range(runs):
            await app.ainvoke(x)

    def stream(mode: str) -> Callable[[], None]:
        def run() -> None:
            for _ in range(runs):
                for _chunk in app.stream(x, stream_mode=mode):
                    pass
        return run

    def astream(mode: str) -> Callable[[], None]:
        async def astream_runs() -> None:
            for _ in range(runs):
                async for _chunk in app.astream(x, stream_mode=mode):
                    pass
        return lambda: loop.run_until_complete(astream_runs())

    ways: dict[str, tuple[Callable[[], Any], int]] = {
        "invoke": (invoke, 1),
        "ainvoke": (lambda: loop.run_until_complete(ainvoke_runs()), 1),
    }
    for mode in MODES:
        ways[f"stream_{mode}"] = (stream(mode), 1)
        ways[f"astream_{mode}"] = (astream(mode), 1)
    return ways


def bench_shape(res: Results, cfg: dict[str, Any], key: str, label: str,
                app: cp.CompiledGraph, x: Any) -> None:
    loop = asyncio.new_event_loop()
    try:
        expected = app.invoke(x)
        chunks = {mode: consume(app, x, mode) for mode in MODES}
        final = list(app.stream(x, stream_mode="events"))[-1]
        assert final.kind == "end" and final.output == expected, (final, expected)
        for mode in MODES:
            assert loop.run_until_complete(aconsume(app, x, mode)) == chunks[mode]
        # Warm-up: lets `auto` dispatch move the no-op agents inline, and sizes the
        # repeats so that each candidate runs about cfg["repeat_seconds"] of invokes.
        warm = cfg["warmup_seconds"]
        invoke_s = min(once(lambda: app.invoke(x)) for _ in range(5))
        warm_runs = max(3, int(warm / 6 / invoke_s))
        for fn, _ in candidates_for(app, x, warm_runs, loop).values():
            fn()
        invoke_s = min(once(lambda: app.invoke(x)) for _ in range(20))
        runs = max(2, int(cfg["repeat_seconds"] / invoke_s))
        samples = interleaved(candidates_for(app, x, runs, loop), cfg["repeats"])
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    stats = {name: summary([v / runs for v in values]) for name, values in samples.items()}
    # name: (figure, the way it is compared with, target ratio or None, chunks per run)
    rows: dict[str, tuple[str, str | None, float | None, int]] = {
        "invoke": ("app.invoke", None, None, 0),
        "ainvoke": ("await app.ainvoke (info)", "invoke", None, 0),
    }
    for mode in MODES:
        rows[f"stream_{mode}"] = (f"for c in app.stream, mode {mode!r} (every chunk)",
                                  "invoke", TARGET, chunks[mode])
        rows[f"astream_{mode}"] = (f"async for c in app.astream, mode {mode!r} (every chunk)",
                                   "ainvoke", TARGET, chunks[mode])
    ratios: dict[str, list[float]] = {}
    for name, (figure, base, target, per_run) in rows.items():
        s = stats[name]
        details: dict[str, Any] = {"summary": s, "runs_per_repeat": runs}
        if base is not None:
            # The spread of the ratio, repeat by repeat (the ways ran side by side).
            ratios[name] = [v / b for v, b in zip(samples[name], samples[base])]
            details.update(ratio_min=min(ratios[name]), ratio_max=max(ratios[name]))
        if per_run:
            assert base is not None
            details["chunks_per_run"] = per_run
            details["added_per_chunk"] = (s["median"] - stats[base]["median"]) / per_run
            details["ratio_to_invoke"] = s["median"] / stats["invoke"]["median"]
        res.add(
            f"{key}.{name}",
            f"{label}: {figure}",
            s["median"],
            "s",
            baseline=None if base is None else stats[base]["median"],
            baseline_label=base or "",
            # The median of the repeats' own ratios: each repeat ran the two side by
            # side, so a slow phase of the machine scales both and cancels out.
            ratio=None if base is None else statistics.median(ratios[name]),
            target=target,
            target_on="ratio",
            target_label="" if target is None else f"<= {target:g}x {base}",
            details=details,
        )
    line = "; ".join(
        f"{name} {fmt(stats[name]['median'], 's')}"
        + ("" if base is None else
           f" = {statistics.median(ratios[name]):.2f}x {base} "
           f"({min(ratios[name]):.2f}..{max(ratios[name]):.2f}x)")
        for name, (_, base, _, _) in rows.items()
    )
    print(f"    chunks per run {chunks}, {runs} runs per repeat: {line}", flush=True)


def bench_fanout5(res: Results, cfg: dict[str, Any]) -> None:
    print(f"[1] {FANOUT_WIDTH}-way fan-out + join, no-op agents", flush=True)
    bench_shape(res, cfg, "fanout5", f"1. {FANOUT_WIDTH}-way fan-out + join",
                fanout_graph()[0], 1)


def bench_chain1000(res: Results, cfg: dict[str, Any]) -> None:
    print(f"[2] {CHAIN_LONG:,}-agent chain, no-op agents", flush=True)
    bench_shape(res, cfg, "chain1000", f"2. {CHAIN_LONG:,}-agent chain",
                chain_graph(CHAIN_LONG)[0], 1)


def bench_subgraphs10(res: Results, cfg: dict[str, Any]) -> None:
    print(f"[3] fan-out to {SUBGRAPHS} subgraphs ({SUBGRAPH_CHAIN}-agent chains) + join",
          flush=True)
    bench_shape(res, cfg, "subgraphs10", f"3. fan-out to {SUBGRAPHS} subgraphs",
                subgraph_fanout(), 1)


def bench_fanout_to_subgraph(res: Results, cfg: dict[str, Any]) -> None:
    print(f"[4] peers.py's port of LangGraph's fanout_to_subgraph, {SUBJECTS} subjects",
          flush=True)
    app, state = fanout_to_subgraph()
    bench_shape(res, cfg, "fanout_to_subgraph", f"4. fanout_to_subgraph_{SUBJECTS}x",
                app, state)


def bench_chunk_costs(res: Results, cfg: dict[str, Any]) -> None:
    """Where a streamed chunk's cost goes, on the 1,000-agent chain: a run that records
    a mode's events but is read only at its end (the engine's recording, against the same
    run recording nothing), the same run with its chunks then made and dropped (the
    caller's making), and the stream itself (taking them while the run goes). Reaches
    into the private `_core` module for the first two, which no public call separates."""
    from counterpoint._native import _core
    from counterpoint._streaming import StreamModes

    print(f"[5] where a chunk's cost goes, {CHAIN_LONG:,}-agent chain", flush=True)
    app = chain_graph(CHAIN_LONG)[0]
    budget, deadline = app._settings(None, None)

    def recorded(mode: str | None, take: bool) -> Callable[[], None]:
        kinds = _core.EventKinds([]) if mode is None else StreamModes.of(mode).recorded
        form = None if mode is None else StreamModes.of(mode).form

        def run() -> None:
            handle = _core.start(app._native, 1, None, budget, deadline, kinds)
            handle.wait()
            if take:
                for _chunk in handle.next_events(0.0, 0.0, form):
                    pass
        return run

    def stream(mode: str) -> Callable[[], None]:
        def run() -> None:
            for _chunk in app.stream(1, stream_mode=mode):
                pass
        return run

    # "started": started and waited for as the recording runs are (a start, then a wait:
    # a hand-over of the GIL more than invoke), recording nothing.
    ways: dict[str, tuple[Callable[[], Any], int]] = {
        "invoke": (lambda: app.invoke(1), 1), "started": (recorded(None, take=False), 1)}
    for mode in MODES:
        ways[f"{mode}_recorded"] = (recorded(mode, take=False), 1)
        ways[f"{mode}_made"] = (recorded(mode, take=True), 1)
        ways[f"{mode}_streamed"] = (stream(mode), 1)
    for fn, _ in ways.values():
        for _ in range(max(3, int(cfg["warmup_seconds"] / 0.01))):
            fn()
    samples = interleaved(ways, cfg["repeats"] * 5)
    median = {name: statistics.median(values) for name, values in samples.items()}
    chunks = {"events": 2 * CHAIN_LONG + 1, "updates": CHAIN_LONG}
    steps = (("recorded", "started", "recording them in the engine (the agents' thread)"),
             ("made", "recorded", "making and dropping the chunks (the caller's thread)"),
             ("streamed", "made", "taking them while the run goes"))
    for mode in MODES:
        parts = []
        for step, before, label in steps:
            added = median[f"{mode}_{step}"] - median[before if before == "started"
                                                     else f"{mode}_{before}"]
            per_chunk = added / chunks[mode]
            parts.append(f"{step} +{fmt(added, 's')} ({fmt(per_chunk, 's')} a chunk)")
            res.add(f"chunk_costs.{mode}.{step}", f"5. {mode}: {label}, per chunk",
                    per_chunk, "s", details={"added_per_run": added})
        print(f"    {mode} ({chunks[mode]} chunks; invoke {fmt(median['invoke'], 's')}, "
              f"started {fmt(median['started'], 's')}): "
              + "; ".join(parts), flush=True)


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def config(quick: bool) -> dict[str, Any]:
    # Many short repeats rather than a few long ones: on a shared machine a slow phase
    # then spoils a few repeats, which the median leaves out, instead of a whole one.
    if quick:
        return dict(quick=True, repeats=15, repeat_seconds=0.02, warmup_seconds=0.5)
    return dict(quick=False, repeats=61, repeat_seconds=0.03, warmup_seconds=2.0)


def print_table(results: Results) -> None:
    """engine.print_table with a spread column (min..max of the ratio over repeats)."""
    def spread(row: dict[str, Any]) -> str:
        d = row["details"]
        if row["baseline"] is None or "ratio_min" not in d:
            s = d.get("summary")
            return f"{fmt(s['best'], 's')}..{fmt(s['worst'], 's')}" if s else "-"
        return f"{fmt_ratio(d['ratio_min'])}..{fmt_ratio(d['ratio_max'])}"

    engine_print_table(results, extra=("Spread (min..max)", spread))


def main(argv: list[str] | None = None) -> int:
    # The driver shared with the other harnesses (see _harness.py).
    import _harness

    sections = {"fanout5": bench_fanout5, "chain1000": bench_chain1000,
                "subgraphs10": bench_subgraphs10, "fanout_to_subgraph": bench_fanout_to_subgraph,
                "chunk_costs": bench_chunk_costs}
    return _harness.main(
        __doc__, sections, config, argv,
        quick_help="fewer and shorter repeats (about 15 s instead of about 2 minutes)",
        table=print_table,
    )


if __name__ == "__main__":
    sys.exit(main())
