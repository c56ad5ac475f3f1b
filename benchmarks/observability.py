#!/usr/bin/env python3
"""What seeing runs costs: OpenTelemetry spans (``cp.instrument()``) per agent, with
tracing off and on.

Usage:
    python benchmarks/observability.py [--quick] [--json out.json] [--only SECTION ...]
                                       [--settle SECONDS]

Every figure is interleaved with its baseline in the same run (see engine.py's
methodology) and printed with the ratio. Needs opentelemetry-sdk
(``pip install ".[test]"`` has it).

Sections:
    otel       ``app.invoke(x)`` with tracing off (never instrumented, or after
               ``cp.uninstrument()``: the same path) and on (spans to an in-memory
               exporter through a SimpleSpanProcessor), on a chain of 20 no-op agents,
               the 5-way fan-out + join, a chain of 10 coroutine agents, and a batch of
               100 runs of the fan-out; reported per agent call.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import _harness as h
import counterpoint as cp
from _harness import Results
from counterpoint import _tracing
from engine import chain_graph, fanout_graph, interleaved, summary

# Spans kept in memory between clears: enough to make clearing rare, few enough that a
# long run does not grow the process by gigabytes.
_CLEAR_EVERY = 20_000


def _tracer() -> tuple[Any, InMemorySpanExporter]:
    """The tracer cp.instrument() installs, with its spans kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cp.instrument(provider)
    tracer = _tracing.tracer
    cp.uninstrument()
    return tracer, exporter


def _async_chain(length: int) -> cp.CompiledGraph:
    async def step(x: Any) -> Any:
        return x

    g = cp.Graph()
    for i in range(length):
        g.add(f"a{i}", step, after=None if i == 0 else f"a{i - 1}")
    return g.compile()


def bench_otel(res: Results, cfg: dict[str, Any]) -> None:
    print("[otel] invoke with tracing off and on", flush=True)
    tracer, exporter = _tracer()

    def traced(call: Callable[[], Any], agents: int) -> Callable[[], Any]:
        calls = itertools.count(1)
        clear_every = max(1, _CLEAR_EVERY // agents)  # about a span per agent call

        def run() -> Any:
            _tracing.set_tracer(tracer)
            try:
                return call()
            finally:
                _tracing.set_tracer(None)
                if next(calls) % clear_every == 0:
                    exporter.clear()
        return run

    chain, _ = chain_graph(20)
    fanout, _ = fanout_graph()
    coroutines = _async_chain(10)
    batch_inputs = list(range(100))
    shapes: dict[str, tuple[str, Callable[[], Any], int, int]] = {
        # key: (label, one call, agent calls per call, iterations)
        "chain20": ("chain of 20 no-op agents", lambda: chain.invoke(1), 20,
                    cfg["iterations"]),
        "fanout": ("5-way fan-out + join", lambda: fanout.invoke(1), 6, cfg["iterations"]),
        "async10": ("chain of 10 coroutine agents (ainvoke)",
                    lambda: asyncio.run(coroutines.ainvoke(1)), 10, cfg["iterations"] // 4),
        "batch100": ("batch of 100 fan-out runs", lambda: fanout.batch(batch_inputs), 600,
                     max(cfg["iterations"] // 50, 4)),
    }
    for key, (label, call, agents, iterations) in shapes.items():
        on_call = traced(call, agents)
        assert on_call() == call()  # the same result, traced or not
        samples = interleaved({"off": (call, iterations), "on": (on_call, iterations)},
                              cfg["repeats"])
        off, on = summary(samples["off"]), summary(samples["on"])
        res.add(f"off_{key}", f"{label}, tracing off: per agent", off["median"] / agents, "s",
                details={"per_run": off})
        res.add(f"on_{key}", f"{label}, tracing on: per agent", on["median"] / agents, "s",
                baseline=off["median"] / agents, baseline_label="tracing off",
                details={"per_run": on})
        res.add(f"delta_{key}", f"{label}: what tracing adds per agent",
                (on["median"] - off["median"]) / agents, h.DELTA, details={})
    exporter.clear()


def config(quick: bool) -> dict[str, Any]:
    if quick:
        return {"quick": True, "iterations": 200, "repeats": 5}
    return {"quick": False, "iterations": 1000, "repeats": 9}


def main(argv: list[str] | None = None) -> int:
    return h.main(__doc__, {"otel": bench_otel}, config, argv,
                  quick_help="fewer iterations (about 15 s instead of a minute)")


if __name__ == "__main__":
    sys.exit(main())
