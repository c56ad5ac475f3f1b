"""Fault injection: cancelling a run leaves nothing running and starts nothing new."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import counterpoint as cp


class Log:
    def __init__(self):
        self.lock = threading.Lock()
        self.items: list[str] = []

    def add(self, item: str) -> None:
        with self.lock:
            self.items.append(item)

    def __contains__(self, item: str) -> bool:
        with self.lock:
            return item in self.items


def _wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _graph(log: Log, sync_running: threading.Event, sync_release: threading.Event):
    def root(x):
        log.add("root")
        return "root-out"

    def sync_slow(x):
        log.add("sync:start")
        sync_running.set()
        sync_release.wait(5)
        log.add("sync:end")
        return "sync-out"

    async def async_slow(x):
        log.add("async:start")
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            log.add("async:cancelled")
            raise
        log.add("async:end")
        return "async-out"

    def later(name):
        def agent(x):
            log.add(name)
            return name

        return agent

    return (
        cp.Graph()
        .add("root", root)
        .add("sync_slow", sync_slow, after="root", dispatch="thread")
        .add("async_slow", async_slow, after="root")
        .add("after_sync", later("after_sync"), after="sync_slow")
        .add("after_async", later("after_async"), after="async_slow")
        .add("end", later("end"), after=["after_sync", "after_async"])
    )


def test_cancel_marks_every_agent_and_later_agents_never_start():
    log = Log()
    running, release = threading.Event(), threading.Event()
    app = _graph(log, running, release).compile()
    run = app.start("x")
    assert running.wait(3)
    assert _wait_for(lambda: "async:start" in log)
    assert run.cancel() is True
    assert run.cancel() is False  # already ended
    assert run.status == "cancelled"
    assert run.done

    rec = run.record()
    assert rec.status == "cancelled"
    assert isinstance(rec.error, cp.RunCancelled)
    assert rec.error.outputs == {"root": "root-out"}
    assert rec.output is None
    assert rec.agents["root"].status == "succeeded"
    assert rec.agents["sync_slow"].status in ("running", "cancelled")
    for name in ("after_sync", "after_async", "end"):
        assert rec.agents[name].status == "not_started"

    # the coroutine is cancelled ...
    assert _wait_for(lambda: "async:cancelled" in log)
    # ... and the sync agent finishes on its thread, its result discarded
    release.set()
    assert _wait_for(lambda: "sync:end" in log)
    assert _wait_for(lambda: run.record().agents["sync_slow"].status == "cancelled")
    time.sleep(0.2)
    rec = run.record()
    assert rec.agents["async_slow"].status == "cancelled"
    assert rec.agents["sync_slow"].output is None
    for name in ("after_sync", "after_async", "end"):
        assert rec.agents[name].status == "not_started"
        assert name not in log
    assert "async:end" not in log


def test_result_raises_run_cancelled():
    log = Log()
    running, release = threading.Event(), threading.Event()
    app = _graph(log, running, release).compile()
    run = app.start("x")
    assert running.wait(3)
    run.cancel()
    release.set()
    with pytest.raises(cp.RunCancelled) as info:
        run.result(timeout=5)
    assert info.value.run_id == run.id
    assert "root" in info.value.outputs


def test_cancel_after_the_run_ended_changes_nothing():
    app = cp.Graph().add("a", lambda x: x + 1).compile()
    run = app.start(1)
    assert run.result(timeout=5) == 2
    assert run.cancel() is False
    assert run.status == "succeeded"
    assert run.record().agents["a"].status == "succeeded"


def test_cancelling_one_run_leaves_other_runs_of_the_graph_alone():
    release = threading.Event()
    entered = threading.Semaphore(0)

    def slow(x):
        entered.release()
        release.wait(5)
        return x

    app = cp.Graph().add("a", slow, dispatch="thread").add("b", lambda x: x * 10, after="a").compile()
    runs = [app.start(i) for i in range(3)]
    for _ in range(3):
        assert entered.acquire(timeout=3)
    runs[1].cancel()
    release.set()
    assert runs[0].result(timeout=5) == 0
    assert runs[2].result(timeout=5) == 20
    with pytest.raises(cp.RunCancelled):
        runs[1].result(timeout=5)
    assert runs[1].record().agents["b"].status == "not_started"


def test_cancel_during_retry_backoff_stops_the_retries():
    calls = []

    def flaky(x):
        calls.append(time.monotonic())
        raise ValueError("again")

    app = cp.Graph().add(
        "a", flaky, retry=cp.Retry(max_attempts=5, initial_backoff=0.3, jitter=0.0)
    ).add("b", lambda x: x, after="a").compile()
    run = app.start("x")
    assert _wait_for(lambda: len(calls) == 1)
    run.cancel()
    time.sleep(0.8)  # past when the second (and third) attempt would have run
    assert len(calls) == 1
    rec = run.record()
    assert rec.status == "cancelled"
    assert rec.agents["a"].status == "cancelled"
    assert rec.agents["b"].status == "not_started"


def test_cancel_while_waiting_for_a_limit_never_calls_the_agent():
    limit = cp.Limit(max_concurrent=1)
    release = threading.Event()
    holder_in = threading.Event()
    calls = []

    def holder(x):
        holder_in.set()
        release.wait(5)
        return "held"

    def waiter(x):
        calls.append(x)
        return x

    hold_app = cp.Graph().add("h", holder, limits=limit, dispatch="thread").compile()
    wait_app = cp.Graph().add("w", waiter, limits=limit).compile()
    holding = hold_app.start(0)
    assert holder_in.wait(3)
    waiting = [wait_app.start(i) for i in range(3)]
    time.sleep(0.05)
    assert limit.snapshot()["waiting"] == 3
    for run in waiting:
        run.cancel()
    release.set()
    assert holding.result(timeout=5) == "held"
    time.sleep(0.2)
    assert calls == []
    assert limit.snapshot()["running"] == 0
    for run in waiting:
        assert run.record().agents["w"].status in ("cancelled", "running")
    assert wait_app.invoke("after") == "after"  # the limit is usable again


def test_cancelled_waiters_do_not_delay_later_callers_of_a_rate_limit():
    # Ten runs queue on a 5-per-second limit and are cancelled. A new run should not
    # wait behind them: their place in the queue (and their rate tokens) are freed.
    limit = cp.Limit(per_second=5)
    app = cp.Graph().add("a", lambda x: x, limits=limit).compile()
    assert app.invoke("first") == "first"  # takes the only token
    queued = [app.start(i) for i in range(10)]
    time.sleep(0.05)
    for run in queued:
        run.cancel()
    started = time.monotonic()
    assert app.invoke("new") == "new"
    assert time.monotonic() - started < 1.0, limit.snapshot()


def test_cancel_while_waiting_for_a_second_limit_releases_the_first():
    first = cp.Limit(max_concurrent=1)
    second = cp.Limit(max_concurrent=1)
    release, holding = threading.Event(), threading.Event()

    def hold(x):
        holding.set()
        release.wait(5)
        return x

    holder = cp.Graph().add("h", hold, limits=second, dispatch="thread").compile().start(0)
    assert holding.wait(3)
    both = cp.Graph().add("b", lambda x: x, limits=[first, second]).compile()
    waiting = both.start(1)  # holds `first`, waits for `second`
    time.sleep(0.1)
    assert first.snapshot()["running"] == 1 and second.snapshot()["waiting"] == 1
    waiting.cancel()
    assert _wait_for(lambda: first.snapshot()["running"] == 0, 2), first.snapshot()
    only_first = cp.Graph().add("f", lambda x: x, limits=first).compile()
    t = time.monotonic()
    assert only_first.invoke("free") == "free"
    assert time.monotonic() - t < 0.5
    release.set()
    assert holder.result(timeout=5) == 0
    assert second.snapshot()["running"] == 0 and second.snapshot()["waiting"] == 0


def test_cancel_cancels_a_nested_graph_run():
    log = Log()
    inner_running = threading.Event()

    async def inner_slow(x):
        log.add("inner:start")
        inner_running.set()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            log.add("inner:cancelled")
            raise
        return x

    inner = (
        cp.Graph()
        .add("slow", inner_slow)
        .add("inner_after", lambda x: log.add("inner_after") or x, after="slow")
        .compile()
    )
    outer = (
        cp.Graph()
        .add("sub", inner)
        .add("outer_after", lambda x: log.add("outer_after") or x, after="sub")
        .compile()
    )
    run = outer.start("x")
    assert inner_running.wait(3)
    run.cancel()
    assert _wait_for(lambda: "inner:cancelled" in log)
    time.sleep(0.1)
    assert "inner_after" not in log and "outer_after" not in log
    rec = run.record()
    assert rec.agents["outer_after"].status == "not_started"
    assert rec.agents["sub"].status in ("running", "cancelled")


def test_cancel_many_concurrent_runs_leaves_nothing_running():
    log = Log()
    gate = threading.Event()

    def step(name):
        def agent(x):
            log.add(f"{name}:{x}")
            gate.wait(5)
            return x

        return agent

    async def astep(x):
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            log.add(f"acancel:{x}")
            raise
        return x

    app = (
        cp.Graph()
        .add("s", step("s"), dispatch="thread")
        .add("a", astep)
        .add("next", step("next"), after=["s", "a"])
        .compile()
    )
    runs = [app.start(i) for i in range(40)]
    time.sleep(0.2)
    for run in runs:
        run.cancel()
    gate.set()
    assert all(run.wait(5) for run in runs)
    assert _wait_for(lambda: all(r.record().agents["s"].status != "running" for r in runs), 10)
    assert _wait_for(lambda: len([i for i in log.items if i.startswith("acancel")]) == 40, 5)
    time.sleep(0.2)
    assert not [i for i in log.items if i.startswith("next")]
    for run in runs:
        rec = run.record()
        assert rec.status == "cancelled"
        assert rec.agents["s"].status in ("cancelled", "not_started")
        assert rec.agents["a"].status == "cancelled"
        assert rec.agents["next"].status == "not_started"


def test_no_coroutine_body_starts_after_cancel_returned():
    """cancel() returning True means no agent body starts afterwards, on the loop too."""
    starts: list[float] = []

    async def worker(x):
        starts.append(time.monotonic())
        await asyncio.sleep(0.05)
        return x

    app = cp.parallel(**{f"w{i}": worker for i in range(8)})
    late = 0
    for _ in range(60):
        starts.clear()
        run = app.start(1)
        if run.cancel():
            returned = time.monotonic()
            run.wait()
            time.sleep(0.01)  # let anything still queued on the loop surface
            late += sum(1 for started in starts if started > returned)
    assert late == 0
