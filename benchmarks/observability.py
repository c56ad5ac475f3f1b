#!/usr/bin/env python3
"""What seeing runs costs: a run's timeline and OpenTelemetry spans (``cp.instrument()``)
per agent, with each off and on.

Usage:
    python benchmarks/observability.py [--quick] [--json out.json] [--only SECTION ...]
                                       [--settle SECONDS]

Every figure is interleaved with its baseline in the same run (see engine.py's
methodology) and printed with the ratio. Needs opentelemetry-sdk
(``pip install ".[test]"`` has it).

Sections:
    timeline   ``app.invoke(x)`` (records no timeline) against ``app.run(x)`` (records
               one: the engine's policy steps and every agent's start and end, taken as
               events into the RunResult), then reading it (``timeline_data()`` and
               ``critical_path()``) and drawing it (``timeline().svg``), on a chain of 20
               no-op agents, the 5-way fan-out + join, and the fan-out with a retry
               policy on each agent (so each records an attempt too); per agent call.
    otel       ``app.invoke(x)`` with tracing off (never instrumented, or after
               ``cp.uninstrument()``: the same path), on with OpenTelemetry's no-op
               provider (counterpoint's own part: observing calls, recording and
               reading the timeline), and on with the SDK (spans to an in-memory
               exporter through a SimpleSpanProcessor), on a chain of 20 no-op agents,
               the 5-way fan-out + join, a chain of 10 coroutine agents, and a batch of
               100 runs of the fan-out; reported per agent call. Also the SDK alone:
               one span with the same attributes started and ended, no counterpoint.
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
from opentelemetry.trace import NoOpTracerProvider, SpanKind, set_span_in_context

import _harness as h
import counterpoint as cp
from _harness import Results
from counterpoint import _tracing
from engine import chain_graph, fanout_graph, interleaved, summary

# Spans kept in memory between clears: enough to make clearing rare, few enough that a
# long run does not grow the process by gigabytes.
_CLEAR_EVERY = 20_000


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    """An SDK provider keeping its spans in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _installed(provider: Any) -> Any:
    """The tracer cp.instrument(provider) installs (left uninstalled)."""
    cp.instrument(provider)
    tracer = _tracing.tracer
    cp.uninstrument()
    return tracer


def _async_chain(length: int) -> cp.CompiledGraph:
    async def step(x: Any) -> Any:
        return x

    g = cp.Graph()
    for i in range(length):
        g.add(f"a{i}", step, after=None if i == 0 else f"a{i - 1}")
    return g.compile()


def _with_policies(width: int = 5) -> cp.CompiledGraph:
    """The 5-way fan-out + join with a retry policy on every agent (none fails)."""
    def noop(x: Any) -> Any:
        return x

    g = cp.Graph().add("src", noop, retry=2)
    for i in range(width):
        g.add(f"w{i}", noop, after="src", retry=2)
    g.add("join", lambda d: d, after=[f"w{i}" for i in range(width)], retry=2)
    return g.compile()


def bench_timeline(res: Results, cfg: dict[str, Any]) -> None:
    print("[timeline] invoke against run (which records a timeline), reading and drawing it",
          flush=True)
    chain, _ = chain_graph(20)
    fanout, _ = fanout_graph()
    shapes: dict[str, tuple[str, cp.CompiledGraph, int]] = {
        "chain20": ("chain of 20 no-op agents", chain, 20),
        "fanout": ("5-way fan-out + join", fanout, 6),
        "policies": ("5-way fan-out + join, retry policy on each", _with_policies(), 7),
    }
    for key, (label, app, agents) in shapes.items():
        def read(app: cp.CompiledGraph = app) -> Any:
            record = app.run(1)
            return record.timeline_data(), record.critical_path()

        def draw(app: cp.CompiledGraph = app) -> str:
            return app.run(1).timeline().svg

        iterations = cfg["iterations"]
        samples = interleaved({"invoke": (lambda app=app: app.invoke(1), iterations),
                               "run": (lambda app=app: app.run(1), iterations),
                               "read": (read, iterations // 4),
                               "draw": (draw, iterations // 20)}, cfg["repeats"])
        invoke, run, read_s, draw_s = (summary(samples[k]) for k in
                                       ("invoke", "run", "read", "draw"))
        base = invoke["median"] / agents
        res.add(f"invoke_{key}", f"{label}: invoke, per agent", base, "s",
                details={"per_run": invoke})
        res.add(f"run_{key}", f"{label}: run (records the timeline), per agent",
                run["median"] / agents, "s", baseline=base, baseline_label="invoke",
                details={"per_run": run})
        res.add(f"read_{key}", f"{label}: run + timeline_data() + critical_path(), per agent",
                read_s["median"] / agents, "s", baseline=base, baseline_label="invoke",
                details={"per_run": read_s})
        res.add(f"draw_{key}", f"{label}: run + timeline().svg, per agent",
                draw_s["median"] / agents, "s", baseline=base, baseline_label="invoke",
                details={"per_run": draw_s})


def bench_otel(res: Results, cfg: dict[str, Any]) -> None:
    print("[otel] invoke with tracing off and on", flush=True)
    provider, exporter = _provider()
    sdk, noop = _installed(provider), _installed(NoOpTracerProvider())

    def traced(call: Callable[[], Any], agents: int, tracer: Any) -> Callable[[], Any]:
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
        on_call = traced(call, agents, sdk)
        assert on_call() == call()  # the same result, traced or not
        samples = interleaved({"off": (call, iterations),
                               "noop": (traced(call, agents, noop), iterations),
                               "on": (on_call, iterations)}, cfg["repeats"])
        off, own, on = (summary(samples[k]) for k in ("off", "noop", "on"))
        res.add(f"off_{key}", f"{label}, tracing off: per agent", off["median"] / agents, "s",
                details={"per_run": off})
        res.add(f"noop_{key}", f"{label}, no-op provider: per agent", own["median"] / agents,
                "s", baseline=off["median"] / agents, baseline_label="tracing off",
                details={"per_run": own})
        res.add(f"on_{key}", f"{label}, SDK, in memory: per agent", on["median"] / agents, "s",
                baseline=off["median"] / agents, baseline_label="tracing off",
                details={"per_run": on})
        res.add(f"delta_{key}", f"{label}: what tracing adds per agent",
                (on["median"] - off["median"]) / agents, h.DELTA, details={})
    exporter.clear()
    floor = summary(interleaved({"span": (_one_span(provider, exporter),
                                          cfg["iterations"] * 5)}, cfg["repeats"])["span"])
    res.add("sdk_span", "the SDK alone: one span started and ended", floor["median"], "s",
            details={"per_span": floor})
    exporter.clear()


def _one_span(provider: TracerProvider, exporter: InMemorySpanExporter) -> Callable[[], None]:
    """What an agent's span costs in the SDK itself: started under a parent with the
    attributes counterpoint gives it, ended with the ones it adds."""
    tracer = provider.get_tracer("floor")
    parent = set_span_in_context(tracer.start_span("invoke_workflow graph"))
    spans = itertools.count(1)

    def span() -> None:
        if next(spans) % _CLEAR_EVERY == 0:
            exporter.clear()
        started = tracer.start_span(
            "invoke_agent a", parent, SpanKind.INTERNAL,
            {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "a"})
        started.set_attributes({"gen_ai.conversation.id": "1", "counterpoint.attempt": 1,
                                "counterpoint.agent.status": "succeeded"})
        started.end()
    return span


def config(quick: bool) -> dict[str, Any]:
    if quick:
        return {"quick": True, "iterations": 200, "repeats": 5}
    return {"quick": False, "iterations": 1000, "repeats": 9}


def main(argv: list[str] | None = None) -> int:
    return h.main(__doc__, {"timeline": bench_timeline, "otel": bench_otel}, config, argv,
                  quick_help="fewer iterations (about 20 s instead of two minutes)")


if __name__ == "__main__":
    sys.exit(main())
