"""The public building blocks patterns are made of: route() and delegate(). A custom
pattern built from them behaves like the shipped ones (native child runs, nested event
names, an event loop when a delegated graph needs one)."""

from __future__ import annotations

import asyncio

import pytest

import counterpoint as cp


def test_route_delivers_only_to_the_named_successors():
    app = (cp.Graph()
           .add("triage", lambda x: cp.route(x, ["small"] if x < 10 else ["large"]))
           .add("small", lambda x: f"small {x}", after="triage")
           .add("large", lambda x: f"large {x}", after="triage")
           .compile())
    assert app.invoke(3) == {"small": "small 3"}
    record = app.run(30)
    assert record.agents["small"].status == "skipped"
    assert record.output == {"large": "large 30"}


def test_delegate_runs_a_child_graph_and_then_continues():
    double = cp.Graph().add("double", lambda x: 2 * x).compile()

    def until_big(x):
        return x if x >= 100 else cp.delegate(double, x, then=until_big)

    app = cp.Graph().add("grow", lambda x: cp.delegate(double, x, then=until_big)).compile()
    assert app.invoke(3) == 192
    names = {e.agent for e in app.stream(3, stream_mode="events") if e.kind == "finish"}
    assert "grow/double" in names


def test_delegating_agent_declares_the_event_loop_its_child_needs():
    async def slow_double(x):
        await asyncio.sleep(0)
        return 2 * x

    child = cp.Graph().add("double", slow_double).compile()

    def start(x):
        return cp.delegate(child, x)

    start.uses_event_loop = child.uses_event_loop
    app = cp.Graph().add("start", start).compile()
    assert app.uses_event_loop
    assert app.invoke(21) == 42


def test_route_to_an_unknown_successor_fails_the_agent():
    app = (cp.Graph().add("r", lambda x: cp.route(x, ["nowhere"]))
           .add("a", lambda x: x, after="r").compile())
    with pytest.raises(cp.AgentError, match="nowhere"):
        app.invoke(1)
