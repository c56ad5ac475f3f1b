"""Fault injection: fallbacks, fail-fast vs continue, and every agent accounted for."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import counterpoint as cp

FINAL = {"succeeded", "failed", "timed_out", "skipped", "needs_review", "cancelled", "not_started"}


class Boom(Exception):
    pass


def boom(x):
    raise Boom(f"boom({x})")


def _accounted(rec: cp.RunResult, app: cp.CompiledGraph, *, still_running=()) -> None:
    """Every agent of the graph has an outcome; only abandoned sync calls (named in
    ``still_running``) may still be on a thread when the run has ended."""
    assert list(rec.agents) == app.agents
    for name, outcome in rec.agents.items():
        assert outcome.name == name
        allowed = FINAL | {"running"} if name in still_running else FINAL
        assert outcome.status in allowed, (name, outcome.status)


# ---- fallback ---------------------------------------------------------------------


def test_fallback_runs_with_the_same_input_after_the_failure():
    seen = []

    def fallback(x):
        seen.append(x)
        return f"fallback({x})"

    g = cp.Graph().add("a", boom, fallback=fallback).add("b", lambda x: f"b({x})", after="a")
    rec = g.compile().run({"q": 1})
    assert rec.status == "succeeded"
    assert seen == [{"q": 1}]
    assert rec.agents["a"].status == "succeeded"
    assert rec.output == "b(fallback({'q': 1}))"


def test_fallback_runs_only_after_all_retries():
    calls = []

    def flaky(x):
        calls.append("primary")
        raise Boom("no")

    def fallback(x):
        calls.append("fallback")
        return "fb"

    app = cp.Graph().add("a", flaky, retry=cp.Retry(max_attempts=3, initial_backoff=0.0),
                         fallback=fallback).compile()
    assert app.invoke("x") == "fb"
    assert calls == ["primary", "primary", "primary", "fallback"]


def test_fallback_is_not_used_when_the_agent_succeeds():
    used = []
    app = cp.Graph().add("a", lambda x: "primary", fallback=lambda x: used.append(x)).compile()
    assert app.invoke("x") == "primary"
    assert used == []


def test_failing_fallback_fails_the_agent_with_the_fallbacks_error():
    class FallbackBoom(Exception):
        pass

    def bad_fallback(x):
        raise FallbackBoom("fallback broke too")

    app = cp.Graph().add("a", boom, fallback=bad_fallback).compile()
    with pytest.raises(cp.AgentError) as info:
        app.invoke("x")
    assert info.value.agent == "a"
    assert isinstance(info.value.__cause__, FallbackBoom)


def test_async_fallback_for_a_sync_agent():
    async def fallback(x):
        await asyncio.sleep(0)
        return f"async-fb({x})"

    app = cp.Graph().add("a", boom, fallback=fallback).compile()
    assert app.invoke("x") == "async-fb(x)"


def test_policy_wrapped_agent_works_in_a_graph():
    wrapped = cp.policy(boom, fallback=lambda x: f"fb({x})")
    app = cp.Graph().add("a", wrapped).add("b", lambda x: f"next({x})", after="a").compile()
    assert app.invoke("x") == "next(fb(x))"


def test_policy_wrapped_agent_works_in_sequential():
    # cp.policy(...) "wraps an agent for use in any pattern"
    wrapped = cp.policy(boom, fallback=lambda x: f"fb({x})")
    app = cp.sequential(wrapped, lambda x: f"next({x})")
    assert app.invoke("x") == "next(fb(x))"


def test_policy_wrapped_agent_works_in_parallel():
    wrapped = cp.policy(boom, fallback=lambda x: f"fb({x})")
    app = cp.parallel(a=wrapped, b=lambda x: f"b({x})")
    assert app.invoke("x") == {"a": "fb(x)", "b": "b(x)"}


# ---- fail fast ----------------------------------------------------------------------


def test_fail_fast_ends_the_run_at_once_and_nothing_downstream_starts():
    started = []
    sibling_running = threading.Event()
    sibling_release = threading.Event()

    def slow_sibling(x):
        started.append("slow_sibling")
        sibling_running.set()
        sibling_release.wait(3)
        return "late"

    def bad(x):
        sibling_running.wait(3)  # fail while the sibling is surely running
        raise Boom(f"boom({x})")

    def track(name):
        def agent(x):
            started.append(name)
            return name

        return agent

    g = (
        cp.Graph()  # on_error="fail" is the default
        .add("root", track("root"))
        .add("bad", bad, after="root", dispatch="thread")
        .add("slow_sibling", slow_sibling, after="root", dispatch="thread")
        .add("after_bad", track("after_bad"), after="bad")
        .add("after_sibling", track("after_sibling"), after="slow_sibling")
        .add("end", track("end"), after=["after_bad", "after_sibling"])
    )
    app = g.compile()
    t = time.monotonic()
    rec = app.run("x")
    assert time.monotonic() - t < 1.5  # did not wait for the slow sibling
    assert rec.status == "failed"
    assert isinstance(rec.error, cp.AgentError) and rec.error.agent == "bad"
    assert isinstance(rec.error.__cause__, Boom)
    assert rec.error.outputs == {"root": "root"}
    _accounted(rec, app, still_running={"slow_sibling"})
    assert rec.agents["root"].status == "succeeded"
    assert rec.agents["bad"].status == "failed"
    assert "boom(root)" in rec.agents["bad"].error
    assert rec.agents["slow_sibling"].status in ("running", "cancelled")
    for name in ("after_bad", "after_sibling", "end"):
        assert rec.agents[name].status == "not_started"
    sibling_release.set()
    time.sleep(0.3)
    assert started == ["root", "slow_sibling"]  # nothing downstream ever started


def test_fail_fast_marks_the_abandoned_sibling_cancelled_once_it_returns():
    release = threading.Event()
    returned = threading.Event()

    def slow(x):
        release.wait(3)
        returned.set()
        return "late"

    running = threading.Event()

    def slow_started(x):
        running.set()
        return slow(x)

    def bad(x):
        running.wait(3)
        boom(x)

    g = cp.Graph().add("bad", bad, dispatch="thread").add("slow", slow_started, dispatch="thread")
    app = g.compile()
    run = app.start("x")
    rec = run.record()
    assert rec.status == "failed"
    assert rec.agents["slow"].status == "running"
    release.set()
    assert returned.wait(3)
    time.sleep(0.1)
    rec = run.record()
    assert rec.agents["slow"].status == "cancelled"
    assert rec.agents["slow"].output is None
    assert rec.agents["bad"].status == "failed"


# ---- continue ---------------------------------------------------------------------


def _continue_graph(record):
    def track(name):
        def agent(x):
            record.append(name)
            return f"{name}({x})"

        return agent

    return (
        cp.Graph(on_error="continue")
        .add("root", track("root"))
        .add("bad", boom, after="root")
        .add("good", track("good"), after="root")
        .add("child_of_bad", track("child_of_bad"), after="bad")
        .add("grandchild_of_bad", track("grandchild_of_bad"), after="child_of_bad")
        .add("child_of_good", track("child_of_good"), after="good")
        .add("needs_both", track("needs_both"), after=["bad", "good"])
        .add("settled", lambda d: sorted(d), after=["bad", "good"], join="settled")
        .add("available", lambda d: sorted(d), after=["bad", "good"], join="available")
    )


def test_continue_runs_siblings_and_skips_only_dependents():
    record = []
    app = _continue_graph(record).compile()
    rec = app.run("x")
    _accounted(rec, app)
    status = {name: o.status for name, o in rec.agents.items()}
    assert status == {
        "root": "succeeded",
        "bad": "failed",
        "good": "succeeded",
        "child_of_bad": "skipped",
        "grandchild_of_bad": "skipped",
        "child_of_good": "succeeded",
        "needs_both": "skipped",
        "settled": "succeeded",
        "available": "succeeded",
    }
    assert rec.agents["settled"].output == ["bad", "good"]
    assert rec.agents["available"].output == ["good"]
    assert sorted(record) == ["child_of_good", "good", "root"]
    assert rec.agents["child_of_bad"].reason == "a predecessor failed"
    assert rec.agents["needs_both"].reason == "a predecessor failed"
    assert rec.agents["child_of_bad"].started is None
    assert rec.agents["bad"].error and "boom" in rec.agents["bad"].error


def test_transitively_skipped_agents_say_why():
    # grandchild_of_bad is skipped because its predecessor was skipped because 'bad'
    # failed. The graph has no router, so "not routed to" would be wrong.
    app = _continue_graph([]).compile()
    rec = app.run("x")
    assert rec.agents["grandchild_of_bad"].status == "skipped"
    assert rec.agents["grandchild_of_bad"].reason != "not routed to"
    assert "predecessor" in rec.agents["grandchild_of_bad"].reason


def test_continue_run_status_follows_its_sinks():
    app = _continue_graph([]).compile()
    rec = app.run("x")
    # some sinks succeeded (child_of_good, settled, available), so the run succeeds
    assert rec.status == "succeeded"
    assert rec.error is None
    assert set(rec.output) == {"child_of_good", "settled", "available"}

    only_bad = cp.Graph(on_error="continue").add("bad", boom).add("after", lambda x: x, after="bad")
    app2 = only_bad.compile()
    rec2 = app2.run("x")
    assert rec2.status == "failed"
    assert isinstance(rec2.error, cp.AgentError)
    assert rec2.error.agent == "bad"
    assert isinstance(rec2.error.__cause__, Boom)
    assert rec2.agents["after"].status == "skipped"
    with pytest.raises(cp.AgentError):
        app2.invoke("x")


def test_several_sinks_keep_the_dict_shape_when_only_one_succeeds():
    # "With several sinks the result is {sink_name: output}": a caller of a multi-sink
    # graph must be able to tell which sink produced the value, even if others failed.
    g = (
        cp.Graph(on_error="continue")
        .add("ok", lambda x: "ok-out")
        .add("bad", boom)
    )
    rec = g.compile().run("x")
    assert rec.status == "succeeded"
    assert rec.output == {"ok": "ok-out"}


def test_node_on_error_overrides_the_graph_default():
    slow_done = []

    def slow(x):
        time.sleep(0.2)
        slow_done.append(1)
        return "slow"

    g = (
        cp.Graph(on_error="fail")
        .add("tolerated", boom, on_error="continue")
        .add("slow", slow)
        .add("after_tolerated", lambda x: x, after="tolerated")
    )
    rec = g.compile().run("x")
    assert rec.status == "succeeded"
    assert rec.agents["tolerated"].status == "failed"
    assert rec.agents["after_tolerated"].status == "skipped"
    assert rec.output == {"slow": "slow"}  # several sinks: a dict, whichever succeeded

    g2 = (
        cp.Graph(on_error="continue")
        .add("fatal", boom, on_error="fail")
        .add("slow", slow)
    )
    rec2 = g2.compile().run("x")
    assert rec2.status == "failed"
    assert rec2.error.agent == "fatal"


def test_first_failure_is_reported_when_several_agents_fail_under_continue():
    def late_boom(x):
        time.sleep(0.15)
        raise Boom("second")

    g = cp.Graph(on_error="continue").add("first", boom).add("second", late_boom)
    rec = g.compile().run("x")
    assert rec.status == "failed"
    assert rec.error.agent == "first"
    assert rec.agents["second"].status == "failed"


def test_every_agent_accounted_for_in_a_wide_graph_with_mixed_faults():
    async def aboom(x):
        await asyncio.sleep(0)
        raise Boom("async")

    def hang(x):
        time.sleep(0.4)
        return "late"

    g = cp.Graph(on_error="continue").add("root", lambda x: x)
    kinds = {
        "ok": lambda x: "ok",
        "sync_boom": boom,
        "async_boom": aboom,
        "timeout": cp.policy(hang, timeout=0.05),
        "fallback": cp.policy(boom, fallback=lambda x: "fb"),
        "retried": cp.policy(boom, retry=cp.Retry(max_attempts=2, initial_backoff=0.0)),
    }
    for kind, agent in kinds.items():
        g.add(kind, agent, after="root")
        g.add(f"{kind}_child", lambda x: x, after=kind)
    g.add("join_all", lambda d: d, after=list(kinds))
    g.add("join_settled", lambda d: sorted(d), after=list(kinds), join="settled")
    app = g.compile()
    rec = app.run("x")
    _accounted(rec, app)
    s = {n: o.status for n, o in rec.agents.items()}
    assert s["ok"] == s["fallback"] == s["ok_child"] == s["fallback_child"] == "succeeded"
    assert s["sync_boom"] == s["async_boom"] == s["retried"] == "failed"
    assert s["timeout"] == "timed_out"
    for kind in ("sync_boom", "async_boom", "retried", "timeout"):
        assert s[f"{kind}_child"] == "skipped"
    assert s["join_all"] == "skipped"
    assert s["join_settled"] == "succeeded"
    assert rec.agents["join_settled"].output == sorted(kinds)
    assert "2 attempts" in rec.agents["retried"].error
