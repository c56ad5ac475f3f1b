"""Patterns nest to any depth: a compiled graph is an agent of any graph or pattern."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import counterpoint as cp


def test_parallel_inside_sequential_inside_a_supervisor_worker():
    review = cp.parallel(upper=lambda s: s.upper(), length=lambda s: len(s))
    worker = cp.sequential(lambda brief: brief["task"], review,
                           lambda d: f"{d['upper']}/{d['length']}")

    def planner(task):
        return [{"id": w, "task": w} for w in task.split()]

    app = cp.supervisor(planner, workers={"w": worker},
                        synthesizer=lambda s: " ".join(s["results"][t.id] for t in s["plan"]))
    assert app.invoke("ab cde") == "AB/2 CDE/3"

    starts = {e.agent for e in app.stream("ab", stream_mode="events") if e.kind == "start"}
    assert {"dispatch/ab", "dispatch/ab/step2", "dispatch/ab/step2/upper",
            "dispatch/ab/step2/length", "dispatch/ab/step2/merge"} <= starts


def test_patterns_as_agents_of_a_hand_built_graph():
    triage = cp.router(lambda t: "refund" if "refund" in t else "other",
                       routes={"refund": lambda t: "R", "other": lambda t: "O"})
    check = cp.consensus([lambda t: len(t) > 3, lambda t: len(t) > 3, lambda t: False])
    app = (
        cp.Graph()
        .add("triage", triage)
        .add("check", check)
        .add("reply", lambda d: (d["triage"], d["check"].value), after=["triage", "check"])
        .compile()
    )
    assert app.invoke("refund please") == ({"refund": "R"}, True)
    assert app.invoke("hi") == ({"other": "O"}, False)


def test_deep_nesting_computes_and_names_events_by_path():
    level3 = cp.parallel(a=lambda x: x + 1, b=lambda x: x + 2, merge=lambda d: d["a"] * d["b"])
    level2 = cp.sequential(lambda x: x * 2, level3)
    level1 = cp.fan_out(level2, over=lambda xs: xs)
    level0 = cp.sequential(level1, sum)
    # x=1: 2 -> (3*4)=12 ; x=2: 4 -> (5*6)=30
    assert level0.invoke([1, 2]) == 42

    events = list(level0.stream([1], stream_mode="events"))
    names = [e.agent for e in events if e.kind == "finish"]
    assert "step1/fan_out/worker[0]/step2/a" in names
    assert "step1/fan_out/worker[0]/step2/merge" in names
    # a child run's events come between its parent agent's start and finish
    order = [(e.kind, e.agent) for e in events]
    parent = "step1/fan_out/worker[0]/step2"
    assert order.index(("start", parent)) < order.index(("finish", parent + "/a"))
    assert order.index(("finish", parent + "/merge")) < order.index(("finish", parent))


def test_the_same_compiled_pattern_used_twice_concurrently():
    calls = []
    lock = threading.Lock()

    def slow(x):
        with lock:
            calls.append(x)
        time.sleep(0.3)
        return x * 10

    shared = cp.sequential(slow, lambda x: x + 1)
    app = cp.parallel(left=shared, right=cp.sequential(lambda x: x + 1, shared))
    started = time.monotonic()
    assert app.invoke(1) == {"left": 11, "right": 21}
    assert time.monotonic() - started < 0.5  # both child runs at once (serial: 0.6 s)
    assert sorted(calls) == [1, 2]


def test_ainvoke_of_nested_patterns_with_async_agents():
    async def think(x):
        await asyncio.sleep(0.3)
        return x + 1

    async def voter(x):
        await asyncio.sleep(0.05)
        return x % 2

    inner = cp.parallel(a=think, b=think, c=think)
    app = cp.sequential(
        inner,
        lambda d: sum(d.values()),
        cp.consensus([voter, voter, lambda x: 0]),
        lambda merged: merged.value,
    )
    assert app.uses_event_loop

    async def main():
        started = time.monotonic()
        results = await asyncio.gather(app.ainvoke(0), app.ainvoke(1))
        return results, time.monotonic() - started

    results, elapsed = asyncio.run(main())
    assert results == [1, 0]  # 3 -> 1 ; 6 -> 0
    assert elapsed < 0.6  # two runs of ~0.35 s each, concurrently (serial: 0.7 s)
    assert app.invoke(0) == 1


def test_astream_of_a_nested_pattern():
    async def step(x):
        await asyncio.sleep(0.01)
        return x + 1

    app = cp.sequential(step, cp.parallel(p=step, q=step))

    async def main():
        return [e async for e in app.astream(0, stream_mode="events")]

    events = asyncio.run(main())
    names = {e.agent for e in events if e.kind == "finish"}
    assert {"step", "step2", "step2/p", "step2/q", "step2/merge"} <= names
    assert events[-1].output == {"p": 2, "q": 2}


def test_a_failure_deep_inside_names_the_path_and_keeps_the_cause():
    def boom(x):
        raise KeyError("deep problem")

    app = cp.sequential(lambda x: x,
                        cp.parallel(a=cp.sequential(lambda x: x, boom), b=lambda x: x))
    with pytest.raises(cp.AgentError) as info:
        app.invoke(1)
    assert info.value.agent == "step2"
    assert isinstance(info.value.__cause__, KeyError)
    assert "boom" in str(info.value) and "deep problem" in str(info.value)
    assert info.value.outputs == {"step1": 1}

    events = []
    with pytest.raises(cp.AgentError):
        for event in app.stream(1, stream_mode="events"):
            events.append(event)
    errors = [e.agent for e in events if e.kind == "error"]
    assert errors[0] == "step2/a/boom"
    assert "step2" in errors


def test_cancel_propagates_into_child_runs():
    log = []
    running = threading.Event()

    def slow(x):
        running.set()
        time.sleep(0.4)
        log.append("slow returned")
        return x

    def inner_later(x):
        log.append("inner_later")
        return x

    def outer_later(x):
        log.append("outer_later")
        return x

    inner = cp.sequential(lambda x: x, slow, inner_later)
    middle = cp.parallel(work=inner)
    app = cp.sequential(middle, outer_later)
    run = app.start(1)
    assert running.wait(5)
    assert run.cancel()
    assert run.status == "cancelled"
    with pytest.raises(cp.RunCancelled):
        run.result(timeout=5)
    time.sleep(0.6)  # slow has returned by now
    assert log == ["slow returned"]  # neither later agent ever started
    record = run.record()
    assert record.status == "cancelled"
    assert record.agents["outer_later"].status == "not_started"


def test_cancel_of_a_supervisor_stops_pending_subtasks():
    log = []
    lock = threading.Lock()
    running = threading.Event()

    def worker(brief):
        with lock:
            log.append(brief["id"])
        running.set()
        time.sleep(0.3)
        return brief["id"]

    plan = [{"id": "first"}, {"id": "second", "depends_on": ["first"]}]
    app = cp.supervisor(lambda t: plan, workers={"w": worker},
                        synthesizer=lambda s: log.append("synth"))
    run = app.start(None)
    assert running.wait(5)
    run.cancel()
    time.sleep(0.5)
    assert log == ["first"]


def test_closing_a_nested_stream_cancels_the_child_run():
    log = []
    running = threading.Event()

    def slow(x):
        running.set()
        time.sleep(0.3)
        log.append("slow")
        return x

    def later(x):
        log.append("later")
        return x

    app = cp.sequential(cp.sequential(slow, later), later)
    gen = app.stream(1, stream_mode="events")
    for event in gen:
        if event.kind == "start" and event.agent == "step1/slow":
            break
    assert running.wait(5)  # slow's body is executing
    gen.close()
    time.sleep(0.5)
    assert log == ["slow"]


def test_cancelling_ainvoke_cancels_nested_coroutines():
    state = {}

    async def slow(x):
        try:
            await asyncio.sleep(2)
            state["slow"] = "finished"
        except asyncio.CancelledError:
            state["slow"] = "cancelled"
            raise
        return x

    app = cp.sequential(lambda x: x, cp.parallel(a=slow, b=slow), lambda d: d)

    async def main():
        task = asyncio.ensure_future(app.ainvoke(1))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.2)

    asyncio.run(main())
    assert state == {"slow": "cancelled"}


def test_batch_over_a_nested_pattern():
    app = cp.sequential(cp.fan_out(lambda x: x * x, over=range), sum)
    assert app.batch([0, 1, 2, 3, 4], max_concurrency=2) == [0, 0, 1, 5, 14]


def test_run_record_of_a_pattern_with_nested_children():
    app = cp.sequential(cp.parallel(a=lambda x: x, b=lambda x: -x), lambda d: d["a"] + d["b"])
    record = app.run(5)
    assert record.ok and record.output == 0
    assert record.agents["step1"].output == {"a": 5, "b": -5}
    assert record.agents["step1"].status == "succeeded"


def test_parent_deadline_cancels_a_nested_slow_agent():
    log = []

    def slow(x):
        time.sleep(0.5)
        log.append("slow")
        return x

    def later(x):
        log.append("later")
        return x

    app = cp.sequential(cp.parallel(work=cp.sequential(slow, later)), later)
    started = time.monotonic()
    with pytest.raises(cp.RunTimeout):
        app.invoke(1, deadline=0.15)
    assert time.monotonic() - started < 0.45
    time.sleep(0.6)
    assert "later" not in log


def test_usage_reported_inside_child_runs_is_counted_in_the_parent_run():
    def spend(tokens):
        def agent(x):
            return cp.Result(x, usage={"tokens": tokens})

        return agent

    inner = cp.parallel(a=spend(3), b=spend(4))
    app = cp.sequential(spend(1), inner, lambda d: cp.Result(0, usage={"tokens": 10}))
    record = app.run(0)
    assert record.ok
    assert record.usage == {"tokens": 18.0}


def test_parent_budget_covers_agents_of_child_runs():
    calls = []
    lock = threading.Lock()

    def spend(name):
        def agent(x):
            with lock:
                calls.append(name)
            return cp.Result(x, usage={"tokens": 10})

        agent.__name__ = name
        return agent

    app = cp.sequential(cp.sequential(spend("a"), spend("b"), spend("c"), spend("d")))
    with pytest.raises(cp.BudgetExceeded):
        app.invoke(0, budget={"tokens": 15})
    assert calls == ["a", "b"]  # the budget was spent after b: c and d never started
