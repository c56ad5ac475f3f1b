"""CompiledGraph.batch: independent concurrent runs, results in input order."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

import counterpoint as cp
from counterpoint._graph import DEFAULT_BATCH_WINDOW


def test_results_in_input_order_even_when_runs_finish_out_of_order():
    def agent(x):
        time.sleep(0.05 * ((7 - x) % 4))  # later inputs tend to finish first
        return x * 2

    app = cp.Graph().add("a", agent).add("b", lambda x: x + 1, after="a").compile()
    assert app.batch(list(range(16))) == [i * 2 + 1 for i in range(16)]


def test_async_agents_results_in_order():
    async def agent(x):
        await asyncio.sleep(random.uniform(0, 0.03))
        return -x

    app = cp.Graph().add("a", agent).compile()
    assert app.batch(range(40)) == [-i for i in range(40)]


def test_empty_batch():
    app = cp.Graph().add("a", lambda x: x).compile()
    assert app.batch([]) == []
    assert app.batch([], max_concurrency=2) == []


def test_accepts_any_iterable():
    app = cp.Graph().add("a", lambda x: x + 1).compile()
    assert app.batch(i for i in range(3)) == [1, 2, 3]
    assert app.batch((5,)) == [6]


def test_batch_runs_concurrently():
    def agent(x):
        time.sleep(0.2)
        return x

    app = cp.Graph().add("a", agent).compile()
    started = time.monotonic()
    assert app.batch(range(8)) == list(range(8))
    assert time.monotonic() - started < 0.8  # serial would be 1.6 s


def _failing_app(ran, lock):
    def first(x):
        with lock:
            ran.append(("first", x))
        return x

    def second(x):
        time.sleep(0.05)
        if x == 3:
            raise ValueError(f"bad input {x}")
        with lock:
            ran.append(("second", x))
        return x * 10

    def third(x):
        with lock:
            ran.append(("third", x // 10))  # x is second's output
        return x + 1

    return (
        cp.Graph()
        .add("first", first)
        .add("second", second, after="first")
        .add("third", third, after="second")
        .compile()
    )


def test_return_exceptions_puts_agent_error_in_place():
    ran, lock = [], threading.Lock()
    app = _failing_app(ran, lock)
    results = app.batch(range(6), return_exceptions=True)
    for i, result in enumerate(results):
        if i == 3:
            assert isinstance(result, cp.AgentError)
            assert result.agent == "second"
            assert isinstance(result.__cause__, ValueError)
            assert "bad input 3" in str(result.__cause__)
            assert result.outputs == {"first": 3}
        else:
            assert result == i * 10 + 1
    assert ("third", 3) not in ran


def test_default_raises_after_all_runs_finished():
    ran, lock = [], threading.Lock()
    app = _failing_app(ran, lock)
    with pytest.raises(cp.AgentError) as info:
        app.batch(range(8))
    assert info.value.agent == "second"
    assert isinstance(info.value.__cause__, ValueError)
    # every other run went all the way through
    with lock:
        done = set(ran)
    for i in range(8):
        if i != 3:
            assert ("third", i) in done, f"run {i} did not finish"
    assert ("third", 3) not in done


def test_default_raises_first_failure_in_input_order():
    def agent(x):
        if x in (2, 5):
            time.sleep(0.2 if x == 2 else 0)  # input 5 fails first in time
            raise ValueError(str(x))
        return x

    app = cp.Graph().add("a", agent).compile()
    with pytest.raises(cp.AgentError) as info:
        app.batch(range(7))
    assert str(info.value.__cause__) == "2"


def test_failed_runs_do_not_affect_app_reuse():
    def agent(x):
        if x % 2:
            raise RuntimeError("odd")
        return x

    app = cp.Graph().add("a", agent).compile()
    results = app.batch(range(10), return_exceptions=True)
    assert [r for r in results if not isinstance(r, cp.AgentError)] == [0, 2, 4, 6, 8]
    assert sum(isinstance(r, cp.AgentError) for r in results) == 5
    assert len({r.run_id for r in results if isinstance(r, cp.AgentError)}) == 5
    assert app.batch([0, 2]) == [0, 2]


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_max_concurrency_respected(limit):
    lock = threading.Lock()
    current = 0
    peak = 0

    def enter(x):
        nonlocal current, peak
        with lock:
            current += 1
            peak = max(peak, current)
        time.sleep(0.03)
        return x

    def leave(x):
        nonlocal current
        time.sleep(0.03)
        with lock:
            current -= 1
        return x

    app = cp.Graph().add("enter", enter).add("leave", leave, after="enter").compile()
    assert app.batch(range(12), max_concurrency=limit) == list(range(12))
    assert peak <= limit
    assert current == 0
    if limit > 1:
        assert peak >= 2  # it did run things concurrently


def test_max_concurrency_with_async_agents():
    current = 0
    peak = 0

    async def agent(x):
        nonlocal current, peak
        current += 1  # all on one loop thread: no lock needed
        peak = max(peak, current)
        await asyncio.sleep(0.03)
        current -= 1
        return x

    app = cp.Graph().add("a", agent).compile()
    assert app.batch(range(15), max_concurrency=4) == list(range(15))
    assert 2 <= peak <= 4


def test_max_concurrency_larger_than_batch():
    app = cp.Graph().add("a", lambda x: x).compile()
    assert app.batch(range(3), max_concurrency=100) == [0, 1, 2]


@pytest.mark.parametrize("bad", [0, -1, "x", 1.5, True])
def test_max_concurrency_validation(bad):
    ran = []
    app = cp.Graph().add("a", lambda x: ran.append(x)).compile()
    with pytest.raises(ValueError) as info:
        app.batch([1, 2], max_concurrency=bad)
    assert "max_concurrency" in str(info.value)
    assert ran == []


def test_thousand_run_isolation():
    def tag(x):
        return {"input": x, "trail": [("tag", x)]}

    def double(d):
        return {"input": d["input"], "trail": d["trail"] + [("double", d["input"] * 2)]}

    def square(d):
        return {"input": d["input"], "trail": d["trail"] + [("square", d["input"] ** 2)]}

    def join(d):
        assert d["double"]["input"] == d["square"]["input"]
        return (d["double"]["input"], d["double"]["trail"][-1][1], d["square"]["trail"][-1][1])

    app = (
        cp.Graph()
        .add("tag", tag)
        .add("double", double, after="tag")
        .add("square", square, after="tag")
        .add("join", join, after=["double", "square"])
        .compile()
    )
    n = 1000
    results = app.batch(range(n))
    assert results == [(i, i * 2, i * i) for i in range(n)]


def test_thousand_run_isolation_with_mutable_per_run_input():
    seen_by = {}
    lock = threading.Lock()

    def a(x):
        x["a"] = x["id"]
        return x

    def b(x):
        with lock:
            seen_by.setdefault(x["id"], []).append(("b", x["a"]))
        return x["id"] * 3

    app = cp.Graph().add("a", a).add("b", b, after="a").compile()
    inputs = [{"id": i} for i in range(1000)]
    assert app.batch(inputs) == [i * 3 for i in range(1000)]
    assert all(inp["a"] == inp["id"] for inp in inputs)
    assert seen_by == {i: [("b", i)] for i in range(1000)}


def test_batch_with_multiple_sinks():
    app = (
        cp.Graph()
        .add("x", lambda v: v + 1)
        .add("y", lambda v: v - 1)
        .compile()
    )
    assert app.batch([1, 2]) == [{"x": 2, "y": 0}, {"x": 3, "y": 1}]


def test_batch_called_from_several_threads():
    def agent(x):
        time.sleep(0.01)
        return x

    app = cp.Graph().add("a", agent).compile()
    out = {}

    def worker(k):
        out[k] = app.batch(range(k * 100, k * 100 + 50), max_concurrency=7)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert out == {k: list(range(k * 100, k * 100 + 50)) for k in range(4)}


def test_durable_batch_refills_in_completion_order_not_oldest_first(tmp_path):
    """With a store, a slow run does not hold back the window: the fast runs behind it
    finish while it is still running (the same native batch as without a store)."""
    finished: dict[int, float] = {}

    def work(x):
        time.sleep(1.5 if x == 0 else 0.02)
        finished[x] = time.monotonic()
        return x

    app = cp.Graph().add("work", work, dispatch="thread").compile(store=tmp_path / "runs.db")
    assert app.batch(list(range(11)), max_concurrency=2) == list(range(11))
    before_slow = sum(1 for x in range(1, 11) if finished[x] < finished[0])
    assert before_slow >= 8, finished
    assert {run.status for run in app.runs()} == {"succeeded"}


def test_default_window_bounds_runs_in_flight():
    running = 0
    most = 0
    lock = threading.Lock()

    def work(x):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.001)
        with lock:
            running -= 1
        return x

    app = cp.Graph().add("work", work, dispatch="thread").compile()
    assert app.batch(range(3000)) == list(range(3000))
    assert most <= DEFAULT_BATCH_WINDOW
