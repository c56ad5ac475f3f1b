"""Fault injection: concurrency and rate limits, across runs and shared between agents."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

import counterpoint as cp


def _name() -> str:
    return f"limit-{uuid.uuid4().hex[:8]}"


class Tracker:
    """Measures how many tracked calls run at once, and when each one starts."""

    def __init__(self):
        self.lock = threading.Lock()
        self.current = 0
        self.peak = 0
        self.starts: list[float] = []
        self.calls = 0

    def enter(self):
        with self.lock:
            self.current += 1
            self.calls += 1
            self.peak = max(self.peak, self.current)
            self.starts.append(time.monotonic())

    def exit(self):
        with self.lock:
            self.current -= 1

    def sync_agent(self, seconds: float, result=None):
        def agent(x):
            self.enter()
            try:
                time.sleep(seconds)
            finally:
                self.exit()
            return x if result is None else result

        return agent

    def async_agent(self, seconds: float):
        async def agent(x):
            self.enter()
            try:
                await asyncio.sleep(seconds)
            finally:
                self.exit()
            return x

        return agent


def test_max_concurrent_is_enforced_across_runs():
    tracker = Tracker()
    limit = cp.Limit(_name(), max_concurrent=2)
    app = cp.Graph().add("a", tracker.sync_agent(0.05), limits=limit, dispatch="thread").compile()
    assert app.batch(list(range(12))) == list(range(12))
    assert tracker.calls == 12
    assert tracker.peak == 2  # reached, never exceeded
    snap = limit.snapshot()
    assert snap["max_running_seen"] == 2
    assert snap["running"] == 0 and snap["waiting"] == 0
    assert snap["granted"] == 12


def test_max_concurrent_is_enforced_for_coroutines():
    tracker = Tracker()
    limit = cp.Limit(max_concurrent=3)
    app = cp.Graph().add("a", tracker.async_agent(0.05), limits=limit).compile()
    assert app.batch(list(range(15))) == list(range(15))
    assert tracker.peak == 3


def test_named_limit_is_shared_by_two_agents_of_one_graph():
    tracker = Tracker()
    name = _name()
    g = (
        cp.Graph()
        .add("x", tracker.sync_agent(0.05, "x"), limits=cp.Limit(name, max_concurrent=1),
             dispatch="thread")
        .add("y", tracker.sync_agent(0.05, "y"), limits=cp.Limit(name, max_concurrent=1),
             dispatch="thread")
        .add("z", tracker.sync_agent(0.05, "z"), limits=cp.Limit(name, max_concurrent=1),
             dispatch="thread")
    )
    app = g.compile()
    assert app.batch([1, 2, 3, 4]) == [{"x": "x", "y": "y", "z": "z"}] * 4
    assert tracker.calls == 12
    assert tracker.peak == 1


def test_named_limit_is_shared_across_graphs_sync_and_async():
    tracker = Tracker()
    name = _name()
    limit = cp.Limit(name, max_concurrent=2)
    sync_app = cp.Graph().add("s", tracker.sync_agent(0.04), limits=limit,
                              dispatch="thread").compile()
    async_app = cp.Graph().add("a", tracker.async_agent(0.04),
                               limits=cp.Limit(name, max_concurrent=2)).compile()
    runs = []
    for i in range(8):
        runs.append(sync_app.start(i))
        runs.append(async_app.start(i))
    for run in runs:
        assert run.wait(10)
        assert run.status == "succeeded"
    assert tracker.calls == 16
    assert tracker.peak == 2


def test_per_second_spaces_out_starts():
    tracker = Tracker()
    limit = cp.Limit(per_second=10)  # burst 1: one start every 0.1 s
    app = cp.Graph().add("a", tracker.sync_agent(0.0), limits=limit, dispatch="thread").compile()
    started = time.monotonic()
    app.batch(list(range(6)))
    elapsed = time.monotonic() - started
    starts = sorted(tracker.starts)
    assert elapsed >= 0.45  # 5 intervals of 0.1 s, minus a little clock slack
    # no 0.25 s window holds more than 3 starts (at 10/s it should hold at most ~3)
    for i, t in enumerate(starts):
        assert sum(1 for u in starts[i:] if u - t < 0.25) <= 3, starts


def test_burst_allows_back_to_back_starts_then_applies_the_rate():
    tracker = Tracker()
    limit = cp.Limit(per_second=4, burst=3)
    app = cp.Graph().add("a", tracker.sync_agent(0.0), limits=limit, dispatch="thread").compile()
    t0 = time.monotonic()
    app.batch(list(range(5)))
    starts = sorted(s - t0 for s in tracker.starts)
    assert starts[2] < 0.2  # the burst goes at once
    assert starts[3] >= 0.2  # then one per 0.25 s
    assert starts[4] >= 0.43
    assert starts[4] < 2.0


def test_per_second_is_shared_across_agents():
    tracker = Tracker()
    name = _name()
    g = (
        cp.Graph()
        .add("x", tracker.sync_agent(0.0), limits=cp.Limit(name, per_second=10), dispatch="thread")
        .add("y", tracker.sync_agent(0.0), limits=cp.Limit(name, per_second=10), dispatch="thread")
    )
    started = time.monotonic()
    g.compile().batch([1, 2, 3])
    assert tracker.calls == 6
    assert time.monotonic() - started >= 0.45


def test_max_concurrent_and_per_second_together():
    tracker = Tracker()
    limit = cp.Limit(max_concurrent=2, per_second=20, burst=2)
    app = cp.Graph().add("a", tracker.sync_agent(0.08), limits=limit, dispatch="thread").compile()
    app.batch(list(range(8)))
    assert tracker.peak <= 2
    assert limit.snapshot()["max_running_seen"] <= 2


def test_several_limits_all_apply():
    tracker_x, tracker_all = Tracker(), Tracker()
    shared = cp.Limit(_name(), max_concurrent=2)
    only_x = cp.Limit(max_concurrent=1)

    def x(v):
        tracker_x.enter()
        tracker_all.enter()
        try:
            time.sleep(0.04)
        finally:
            tracker_x.exit()
            tracker_all.exit()
        return v

    g = (
        cp.Graph()
        .add("x", x, limits=[only_x, shared], dispatch="thread")
        .add("y", tracker_all.sync_agent(0.04), limits=shared, dispatch="thread")
    )
    g.compile().batch(list(range(6)))
    assert tracker_x.peak == 1
    assert tracker_all.peak <= 2


def test_waiting_for_a_limit_holds_no_thread():
    # Ten runs wait on a one-at-a-time limit; an unrelated graph still runs at once.
    tracker = Tracker()
    limit = cp.Limit(max_concurrent=1)
    blocked = cp.Graph().add("a", tracker.sync_agent(0.1), limits=limit,
                             dispatch="thread").compile()
    free = cp.Graph().add("b", lambda x: x, dispatch="thread").compile()
    runs = [blocked.start(i) for i in range(10)]
    time.sleep(0.05)
    t = time.monotonic()
    assert free.invoke("free") == "free"
    assert time.monotonic() - t < 0.5
    assert limit.snapshot()["waiting"] >= 5
    for run in runs:
        run.wait(10)
    assert tracker.peak == 1


def test_failures_release_the_limit():
    limit = cp.Limit(max_concurrent=1)

    def boom(x):
        raise ValueError("boom")

    app = cp.Graph().add("a", boom, limits=limit).compile()
    for _ in range(5):
        with pytest.raises(cp.AgentError):
            app.invoke(1)
    assert limit.snapshot()["running"] == 0
    ok = cp.Graph().add("a", lambda x: x, limits=limit).compile()
    assert ok.invoke(1) == 1


def test_retry_backoff_releases_the_limit():
    # While one agent waits to retry, another may use the slot.
    limit = cp.Limit(max_concurrent=1)
    attempts = []

    def flaky(x):
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise ValueError("once")
        return "flaky"

    g = (
        cp.Graph()
        .add("flaky", flaky, limits=limit, retry=cp.Retry(max_attempts=2, initial_backoff=0.6,
                                                          jitter=0.0))
        .add("other", lambda x: time.sleep(0.05) or "other", limits=limit, dispatch="thread")
    )
    rec = g.compile().run("x")
    assert rec.status == "succeeded"
    assert rec.agents["other"].finished < 0.45


def test_async_timeout_releases_the_limit():
    limit = cp.Limit(max_concurrent=1)

    async def hang(x):
        await asyncio.sleep(5)

    app = cp.Graph().add("a", hang, limits=limit, timeout=0.05).compile()
    for _ in range(3):
        with pytest.raises(cp.AgentError):
            app.invoke(1)
    # the slot comes back once the cancelled coroutine has stopped
    deadline = time.monotonic() + 3
    while limit.snapshot()["running"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert limit.snapshot()["running"] == 0


def test_abandoned_sync_call_still_counts_against_max_concurrent():
    # A timed-out sync agent keeps running on its thread (it is abandoned, not
    # stopped). Releasing its slot at the timeout lets further calls start while it
    # still runs, so the resource the limit protects sees more concurrent calls than
    # max_concurrent allows.
    tracker = Tracker()
    limit = cp.Limit(_name(), max_concurrent=1)
    app = cp.Graph(on_error="continue").add(
        "a", tracker.sync_agent(0.3), limits=limit, timeout=0.08, dispatch="thread"
    ).compile()
    runs = [app.start(i) for i in range(3)]
    for run in runs:
        run.wait(10)
    deadline = time.monotonic() + 3
    while tracker.current and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tracker.peak <= 1, f"{tracker.peak} calls ran at once under max_concurrent=1"


def test_cancelled_coroutine_counts_against_max_concurrent_until_it_ends():
    # A coroutine cancelled by its timeout may take a moment to stop (cleanup in an
    # `except CancelledError` block, e.g. closing a connection). Its limit slot should
    # be freed when it has stopped, not when the timeout fired.
    tracker = Tracker()

    async def slow(x):
        tracker.enter()
        try:
            try:
                await asyncio.sleep(2)
            except asyncio.CancelledError:
                await asyncio.sleep(0.2)  # graceful cleanup
                raise
        finally:
            tracker.exit()
        return x

    limit = cp.Limit(max_concurrent=1)
    app = cp.Graph(on_error="continue").add("a", slow, limits=limit, timeout=0.05).compile()
    runs = [app.start(i) for i in range(4)]
    for run in runs:
        run.wait(10)
    deadline = time.monotonic() + 3
    while tracker.current and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [r.record().agents["a"].status for r in runs] == ["timed_out"] * 4
    assert tracker.peak <= 1, f"{tracker.peak} calls ran at once under max_concurrent=1"


def test_limit_snapshot_and_repr():
    limit = cp.Limit(_name(), max_concurrent=3, per_second=5)
    snap = limit.snapshot()
    assert snap == {"running": 0, "waiting": 0, "granted": 0, "max_running_seen": 0}
    assert limit.name in repr(limit)


def test_named_limit_with_other_settings_is_refused():
    name = _name()
    cp.Limit(name, max_concurrent=2)
    assert cp.Limit(name, max_concurrent=2) is cp.Limit(name, max_concurrent=2)
    with pytest.raises(cp.GraphError, match="already exists"):
        cp.Limit(name, max_concurrent=3)
