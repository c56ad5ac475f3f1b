"""Fault injection: per-agent timeouts (sync agents abandoned, coroutines cancelled) and
run deadlines."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import counterpoint as cp

LATE = "LATE-RESULT-MUST-NOT-APPEAR"


def _contains(value, needle) -> bool:
    if isinstance(value, cp.Result):
        return _contains(value.value, needle)
    if isinstance(value, dict):
        return any(_contains(k, needle) or _contains(v, needle) for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return any(_contains(v, needle) for v in value)
    return value == needle or (isinstance(value, str) and needle in value)


def test_sync_agent_timeout_fails_the_run_with_agent_timeout_cause():
    def hang(x):
        time.sleep(0.8)
        return LATE

    app = cp.Graph().add("slow", hang, timeout=0.1).compile()
    started = time.monotonic()
    with pytest.raises(cp.AgentError) as info:
        app.invoke("x")
    assert time.monotonic() - started < 0.6  # the run did not wait for the abandoned call
    assert info.value.agent == "slow"
    assert isinstance(info.value.__cause__, cp.AgentTimeout)
    assert isinstance(info.value.__cause__, TimeoutError)
    assert "timed out" in str(info.value)


def test_sync_agent_is_abandoned_and_its_late_result_discarded():
    finished = threading.Event()

    def hang(x):
        time.sleep(0.6)
        finished.set()
        return LATE

    seen_by_downstream = []

    def downstream(d):
        seen_by_downstream.append(d)
        return d

    g = (
        cp.Graph(on_error="continue")
        .add("slow", hang, timeout=0.1)
        .add("fast", lambda x: f"fast({x})")
        .add("after_slow", downstream, after="slow")
        .add("end", downstream, after=["slow", "fast"], join="available")
    )
    app = g.compile()
    started = time.monotonic()
    rec = app.run("x")
    elapsed = time.monotonic() - started
    assert elapsed < 0.5
    assert rec.agents["slow"].status == "timed_out"
    assert "timed out after 0.1 s" in rec.agents["slow"].error
    assert rec.agents["after_slow"].status == "skipped"
    assert rec.agents["end"].status == "succeeded"
    assert rec.status == "succeeded"
    assert not _contains(rec.output, LATE)
    # Once the abandoned call returns, nothing changes.
    assert finished.wait(3)
    time.sleep(0.1)
    assert not any(_contains(v, LATE) for v in seen_by_downstream)
    assert rec.agents["slow"].output is None


def test_async_agent_timeout_cancels_the_coroutine():
    events = []

    async def hang(x):
        events.append("started")
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        events.append("finished")
        return LATE

    g = (
        cp.Graph(on_error="continue")
        .add("slow", hang, timeout=0.15)
        .add("other", lambda x: "other")
    )
    rec = g.compile().run("x")
    assert rec.agents["slow"].status == "timed_out"
    assert rec.agents["other"].status == "succeeded"
    assert not _contains(rec.output, LATE)
    deadline = time.monotonic() + 2
    while "cancelled" not in events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert events == ["started", "cancelled"]


def test_async_timeout_with_fallback_continues_the_run():
    cancelled = []

    async def hang(x):
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return LATE

    g = (
        cp.Graph()
        .add("ask", hang, timeout=0.1, fallback=lambda x: f"fallback({x})")
        .add("reply", lambda x: f"reply({x})", after="ask")
    )
    assert g.compile().invoke("q") == "reply(fallback(q))"
    time.sleep(0.1)
    assert cancelled == ["q"]


def test_sync_timeout_with_fallback_downstream_never_sees_late_result():
    release = threading.Event()

    def hang(x):
        release.wait(3)
        return LATE

    received = []
    g = (
        cp.Graph()
        .add("ask", hang, timeout=0.1, fallback=lambda x: "from-fallback")
        .add("use", lambda x: received.append(x) or x, after="ask")
    )
    assert g.compile().invoke("q") == "from-fallback"
    release.set()
    time.sleep(0.1)
    assert received == ["from-fallback"]


def test_timeout_applies_per_attempt():
    calls = []

    def agent(x):
        calls.append(time.monotonic())
        time.sleep(0.3 if len(calls) < 3 else 0.0)
        return len(calls)

    app = cp.Graph().add("a", agent, timeout=0.1,
                         retry=cp.Retry(max_attempts=3, initial_backoff=0.0)).compile()
    assert app.invoke("x") == 3
    assert len(calls) == 3


def test_fast_agent_under_timeout_is_unaffected():
    app = cp.Graph().add("a", lambda x: x * 2, timeout=5).compile()
    started = time.monotonic()
    assert app.invoke(4) == 8
    assert time.monotonic() - started < 0.5


def test_run_deadline_raises_run_timeout_with_finished_outputs():
    def slow(x):
        time.sleep(0.8)
        return LATE

    g = (
        cp.Graph()
        .add("quick", lambda x: "quick-out")
        .add("slow", slow, after="quick")
        .add("never", lambda x: "never", after="slow")
    )
    app = g.compile(deadline=0.2)
    started = time.monotonic()
    with pytest.raises(cp.RunTimeout) as info:
        app.invoke("x")
    assert time.monotonic() - started < 0.6
    assert isinstance(info.value, TimeoutError)
    assert info.value.outputs == {"quick": "quick-out"}


def test_run_deadline_record_accounts_for_every_agent():
    ran = []
    cancelled = []

    def slow(x):
        ran.append("slow")
        time.sleep(0.5)
        return LATE

    async def aslow(x):
        ran.append("aslow")
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append("aslow")
            raise
        return LATE

    g = (
        cp.Graph()
        .add("quick", lambda x: "q")
        .add("slow", slow, after="quick")
        .add("aslow", aslow, after="quick")
        .add("never", lambda d: ran.append("never"), after=["slow", "aslow"])
    )
    app = g.compile()
    run = app.start("x", deadline=0.2)
    rec = run.record()
    assert rec.status == "timed_out"
    assert isinstance(rec.error, cp.RunTimeout)
    assert rec.output is None
    assert rec.agents["quick"].status == "succeeded"
    # agents running at the deadline are cancelled (a coroutine as soon as its loop
    # delivers the cancellation; a sync call once it returns, its result discarded)
    assert rec.agents["aslow"].status in ("running", "cancelled")
    assert rec.agents["slow"].status in ("running", "cancelled")
    assert rec.agents["never"].status == "not_started"
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        rec = run.record()
        if rec.agents["slow"].status == rec.agents["aslow"].status == "cancelled":
            break
        time.sleep(0.02)
    assert rec.agents["aslow"].status == "cancelled"
    assert rec.agents["slow"].status == "cancelled"
    assert rec.agents["slow"].output is None
    assert rec.agents["never"].status == "not_started"
    assert rec.status == "timed_out"
    time.sleep(0.1)
    assert "never" not in ran
    assert cancelled == ["aslow"]


def test_per_call_deadline_overrides_the_compiled_default():
    def slow(x):
        time.sleep(0.3)
        return "done"

    app = cp.Graph().add("slow", slow).compile(deadline=0.1)
    with pytest.raises(cp.RunTimeout):
        app.invoke("x")
    assert app.invoke("x", deadline=5) == "done"


def test_deadline_is_not_hit_by_a_run_that_finishes_in_time():
    app = cp.Graph().add("a", lambda x: x).compile(deadline=0.2)
    assert app.invoke(1) == 1
    time.sleep(0.3)  # the cancelled deadline timer must not touch a finished run
    assert app.run(2).status == "succeeded"


def test_async_deadline_via_ainvoke():
    async def slow(x):
        await asyncio.sleep(2)
        return LATE

    app = cp.Graph().add("slow", slow).compile()

    async def main():
        with pytest.raises(cp.RunTimeout):
            await app.ainvoke("x", deadline=0.1)

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 1.0


def test_timeout_on_a_nested_graph_cancels_the_child_run():
    events = []

    async def inner_slow(x):
        events.append("inner:start")
        try:
            await asyncio.sleep(3)
        except asyncio.CancelledError:
            events.append("inner:cancelled")
            raise
        return x

    inner = (
        cp.Graph()
        .add("slow", inner_slow)
        .add("inner_after", lambda x: events.append("inner_after") or x, after="slow")
        .compile()
    )
    outer = (
        cp.Graph()
        .add("sub", inner, timeout=0.15, fallback=lambda x: "fallback")
        .add("next", lambda x: f"next({x})", after="sub")
        .compile()
    )
    started = time.monotonic()
    assert outer.invoke("x") == "next(fallback)"
    assert time.monotonic() - started < 1.5
    deadline = time.monotonic() + 2
    while "inner:cancelled" not in events and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert events == ["inner:start", "inner:cancelled"]
