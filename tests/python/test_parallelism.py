"""Agents that can run at the same time do; invoke does not starve other threads.

Thresholds are deliberately generous: the CI machine has two noisy cores.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import counterpoint as cp

FAN_OUT = 8
SLEEP = 0.2
SERIAL = FAN_OUT * SLEEP  # 1.6 s if the agents ran one after another
LIMIT = SERIAL * 0.5  # 0.8 s


def _sync_fan_out(dispatch: str = "auto") -> cp.CompiledGraph:
    g = cp.Graph().add("src", lambda x: x)

    def make(i):
        def agent(x):
            time.sleep(SLEEP)
            return x + i

        return agent

    for i in range(FAN_OUT):
        g.add(f"w{i}", make(i), after="src", dispatch=dispatch)
    g.add("join", lambda d: sorted(d.values()), after=[f"w{i}" for i in range(FAN_OUT)])
    return g.compile()


def _async_fan_out() -> cp.CompiledGraph:
    g = cp.Graph().add("src", lambda x: x)

    def make(i):
        async def agent(x):
            await asyncio.sleep(SLEEP)
            return x + i

        return agent

    for i in range(FAN_OUT):
        g.add(f"w{i}", make(i), after="src")
    g.add("join", lambda d: sorted(d.values()), after=[f"w{i}" for i in range(FAN_OUT)])
    return g.compile()


@pytest.mark.parametrize("dispatch", ["auto", "thread"])
def test_sync_fan_out_runs_in_parallel(dispatch):
    app = _sync_fan_out(dispatch)
    # Twice: the second run is after "auto" has measured the agents.
    for _ in range(2):
        started = time.monotonic()
        assert app.invoke(100) == [100 + i for i in range(FAN_OUT)]
        assert time.monotonic() - started < LIMIT


def test_sync_fan_out_runs_in_parallel_under_ainvoke():
    app = _sync_fan_out()
    started = time.monotonic()
    assert asyncio.run(app.ainvoke(0)) == list(range(FAN_OUT))
    assert time.monotonic() - started < LIMIT


def test_async_fan_out_runs_concurrently_with_invoke():
    app = _async_fan_out()
    started = time.monotonic()
    assert app.invoke(0) == list(range(FAN_OUT))
    assert time.monotonic() - started < LIMIT


def test_async_fan_out_runs_concurrently_with_ainvoke():
    app = _async_fan_out()

    async def main():
        started = time.monotonic()
        result = await app.ainvoke(0)
        return result, time.monotonic() - started

    result, elapsed = asyncio.run(main())
    assert result == list(range(FAN_OUT))
    assert elapsed < LIMIT


def test_no_superstep_barrier_sync():
    """The fast branch's child starts while the slow sibling is still running."""
    times: dict[str, float] = {}

    def stamp(name, sleep=0.0):
        def agent(x):
            times[name + ".start"] = time.monotonic()
            if sleep:
                time.sleep(sleep)
            times[name + ".end"] = time.monotonic()
            return x

        return agent

    g = (
        cp.Graph()
        .add("src", stamp("src"))
        .add("fast", stamp("fast"), after="src")
        .add("fast_child", stamp("fast_child"), after="fast")
        .add("fast_grandchild", stamp("fast_grandchild"), after="fast_child")
        .add("slow", stamp("slow", 0.6), after="src")
        .add("join", lambda d: d, after=["fast_grandchild", "slow"])
    )
    assert g.compile().invoke(1) == {"fast_grandchild": 1, "slow": 1}
    assert times["fast_child.start"] < times["slow.end"]
    assert times["fast_grandchild.start"] < times["slow.end"]
    # and by a clear margin, not by a hair
    assert times["slow.end"] - times["fast_grandchild.start"] > 0.2


def test_no_superstep_barrier_async():
    times: dict[str, float] = {}

    def stamp(name, sleep=0.0):
        async def agent(x):
            times[name + ".start"] = time.monotonic()
            if sleep:
                await asyncio.sleep(sleep)
            times[name + ".end"] = time.monotonic()
            return x

        return agent

    g = (
        cp.Graph()
        .add("src", stamp("src"))
        .add("fast", stamp("fast"), after="src")
        .add("fast_child", stamp("fast_child"), after="fast")
        .add("slow", stamp("slow", 0.6), after="src")
    )
    app = g.compile()
    assert app.invoke(1) == {"fast_child": 1, "slow": 1}
    assert times["slow.end"] - times["fast_child.start"] > 0.2
    times.clear()
    assert asyncio.run(app.ainvoke(2)) == {"fast_child": 2, "slow": 2}
    assert times["slow.end"] - times["fast_child.start"] > 0.2


def test_other_python_threads_run_while_invoke_waits():
    count = 0
    stop = threading.Event()

    def counter():
        nonlocal count
        while not stop.is_set():
            count += 1
            time.sleep(0.002)

    def agent(x):
        time.sleep(0.3)
        return x

    app = cp.Graph().add("sleepy", agent).compile()
    thread = threading.Thread(target=counter)
    thread.start()
    try:
        time.sleep(0.05)
        before = count
        assert app.invoke(7) == 7
        during = count - before
    finally:
        stop.set()
        thread.join()
    # ~100 increments if the thread ran freely; a GIL held for the whole wait gives ~0.
    assert during >= 15


def test_other_python_threads_run_while_async_invoke_waits():
    count = 0
    stop = threading.Event()

    def counter():
        nonlocal count
        while not stop.is_set():
            count += 1
            time.sleep(0.002)

    async def agent(x):
        await asyncio.sleep(0.3)
        return x

    app = cp.Graph().add("sleepy", agent).compile()
    thread = threading.Thread(target=counter)
    thread.start()
    try:
        time.sleep(0.05)
        before = count
        assert app.invoke(7) == 7
        during = count - before
    finally:
        stop.set()
        thread.join()
    assert during >= 15


def test_cpu_bound_python_thread_progresses_during_invoke():
    """A busy pure-Python thread (no sleeps) is not starved by the waiting invoke."""
    count = 0
    stop = threading.Event()

    def spin():
        nonlocal count
        while not stop.is_set():
            count += 1

    def agent(x):
        time.sleep(0.3)
        return x

    app = cp.Graph().add("sleepy", agent).compile()
    thread = threading.Thread(target=spin)
    thread.start()
    try:
        time.sleep(0.05)
        before = count
        app.invoke(0)
        during = count - before
    finally:
        stop.set()
        thread.join()
    assert during > 1000


def test_concurrent_invokes_from_many_threads_overlap():
    def agent(x):
        time.sleep(0.2)
        return x * 2

    app = cp.Graph().add("a", agent).compile()
    results = [None] * 8

    def call(i):
        results[i] = app.invoke(i)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - started < LIMIT
    assert results == [i * 2 for i in range(8)]
