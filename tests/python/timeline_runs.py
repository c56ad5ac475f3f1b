"""Timelines for the tests of the timeline's views (critical path, picture, Perfetto
trace): hand-made lanes, and real runs of agents that sleep, rebuilt from their events."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import counterpoint as cp
from counterpoint._timeline import AgentLane, Span, Timeline, parent_of

BRANCHES = ("b1", "b2", "b3", "b4")
# Seconds each agent of fan_out_join() sleeps.
SLEEPS = {"a": 0.05, "b1": 0.10, "b2": 0.15, "b3": 0.20, "b4": 0.25, "join": 0.05}


def lane(agent: str, start: float | None, end: float | None, *spans: tuple[Any, ...],
         status: str = "succeeded", after: Sequence[str] = (), message: str = "",
         restored: bool = False) -> AgentLane:
    """A lane; each span is ``(kind, start, end)`` plus optional attempt, status, detail."""
    return AgentLane(agent=agent, parent=parent_of(agent), status=status, start=start,
                     end=end, spans=tuple(Span(agent, *span) for span in spans),
                     after=tuple(after), message=message, restored=restored)


def attempt(start: float, end: float, number: int = 1, status: str = "succeeded",
            detail: str = "") -> tuple[Any, ...]:
    return ("attempt", start, end, number, status, detail)


def timeline(elapsed: float, *lanes: AgentLane, status: str = "succeeded") -> Timeline:
    return Timeline(run_id=7, status=status, elapsed=elapsed, lanes=lanes)


def sleeper(seconds: float) -> Callable[[Any], Any]:
    def agent(x: Any) -> Any:
        time.sleep(seconds)
        return x

    return agent


def fan_out_join() -> cp.CompiledGraph:
    """a, then b1..b4 in parallel, then join: a sequential chain of 0.35 s at least
    (a, b4, join) under 0.8 s of agent work."""
    graph = cp.Graph().add("a", sleeper(SLEEPS["a"]))
    for name in BRANCHES:
        graph.add(name, sleeper(SLEEPS[name]), after="a")
    return graph.add("join", sleeper(SLEEPS["join"]), after=list(BRANCHES)).compile()


def nested_run() -> cp.CompiledGraph:
    """a, then a parallel pattern ``review`` (sec sleeps longer than style) beside a
    plain agent, then w."""
    return (cp.Graph()
            .add("a", sleeper(0.05))
            .add("review", cp.parallel(sec=sleeper(0.2), style=sleeper(0.05)), after="a")
            .add("quick", sleeper(0.02), after="a")
            .add("w", sleeper(0.03), after=["review", "quick"])
            .compile())


def edges_of(app: cp.CompiledGraph) -> dict[str, list[str]]:
    """The top-level data edges of a compiled graph's plan."""
    return {node["name"]: list(node["after"]) for node in app.describe()["nodes"]}


def run_timeline(app: cp.CompiledGraph, value: Any,
                 edges: Mapping[str, Sequence[str]] | None = None) -> Timeline:
    """Runs ``app`` and rebuilds its timeline from its events; elapsed is the ``end``
    event's time (the last event's, for a run that failed)."""
    events: list[cp.Event] = []
    status = "succeeded"
    try:
        for event in app.stream(value, stream_mode="events"):
            events.append(event)
    except cp.AgentError:
        status = "failed"
    last = events[-1]
    assert status == "failed" or last.kind == "end"
    return Timeline.from_events(events, run_id=last.run_id, status=status,
                                elapsed=last.time, edges=edges)


def flaky(failures: int) -> Callable[[Any], Any]:
    """An agent that fails its first ``failures`` calls, sleeping a little in each (a
    plain function: the audit log records the retries of functions)."""
    calls = [0]

    def agent(x: Any) -> Any:
        calls[0] += 1
        time.sleep(0.02)
        if calls[0] <= failures:
            raise ValueError(f"flaky {calls[0]}")
        return x

    return agent


def _boom(x: Any) -> Any:
    raise KeyError("boom")


def durable_app(store: Any) -> cp.CompiledGraph:
    """A durable graph: a, then a nested pattern, an agent retried twice, and one that
    fails (the run goes on) whose successor is skipped; then w."""
    return (cp.Graph()
            .add("a", sleeper(0.03))
            .add("review", cp.parallel(sec=sleeper(0.06), style=sleeper(0.02)), after="a")
            .add("flaky", cp.policy(flaky(2), retry=cp.Retry(max_attempts=3,
                                                              initial_backoff=0.02)),
                 after="a")
            .add("broken", _boom, after="a", on_error="continue")
            .add("after_broken", sleeper(0.01), after="broken")
            .add("w", sleeper(0.01), after=["review", "flaky"])
            .compile(store=store))
