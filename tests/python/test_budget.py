"""Fault injection: run budgets stop new invocations once spent, and the result says so."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import counterpoint as cp


def spender(name, tokens, calls, **extra):
    def agent(x):
        calls.append(name)
        return cp.Result(f"{name}({cp.value_of(x)})", usage={"tokens": tokens, **extra})

    return agent


def _chain(calls, tokens=60):
    return (
        cp.Graph()
        .add("a", spender("a", tokens, calls))
        .add("b", spender("b", tokens, calls), after="a")
        .add("c", spender("c", tokens, calls), after="b")
        .add("d", spender("d", tokens, calls), after="c")
    )


def test_budget_stops_new_invocations_once_spent():
    calls = []
    app = _chain(calls).compile()
    rec = app.run("x", budget={"tokens": 100})
    assert calls == ["a", "b"]  # b started before the budget was spent; c never did
    assert rec.status == "failed"
    assert rec.budget_exhausted is True
    assert isinstance(rec.error, cp.BudgetExceeded)
    assert rec.error.usage == {"tokens": 120.0}
    assert "budget" in str(rec.error)
    assert rec.usage == {"tokens": 120.0}
    assert rec.agents["a"].status == rec.agents["b"].status == "succeeded"
    assert rec.agents["c"].status == "skipped"
    assert "budget" in rec.agents["c"].reason
    assert rec.agents["c"].started is None


def test_agents_after_a_budget_skip_say_why():
    # d is skipped because c was skipped for the budget: its reason must not claim a
    # routing decision (the graph has no router).
    calls = []
    rec = _chain(calls).compile().run("x", budget={"tokens": 100})
    assert rec.agents["d"].status == "skipped"
    reason = rec.agents["d"].reason
    assert "budget" in reason or "predecessor was skipped" in reason, reason


def _spend_later(x):
    time.sleep(0.05)
    return cp.Result("s", usage={"tokens": 100})


def test_spent_budget_blocks_the_fallback():
    fallback_calls = []

    def fallback(x):
        fallback_calls.append(x)
        return cp.Result("fallback", usage={"tokens": 1000})

    def fails_after_the_spend(x):
        time.sleep(0.15)  # "spend" has spent the budget by now
        raise ValueError("primary failed")

    g = (
        cp.Graph(on_error="continue")
        # spend finishes after primary has started, so primary runs and only its fallback
        # meets the spent budget.
        .add("spend", _spend_later, dispatch="thread")
        .add("primary", fails_after_the_spend, fallback=fallback, dispatch="thread")
    )
    rec = g.compile().run("x", budget={"tokens": 50})
    assert rec.budget_exhausted
    assert fallback_calls == []
    assert rec.agents["primary"].status == "failed"
    assert rec.usage == {"tokens": 100.0}


def test_invoke_raises_budget_exceeded_with_outputs_and_usage():
    calls = []
    app = _chain(calls).compile()
    with pytest.raises(cp.BudgetExceeded) as info:
        app.invoke("x", budget={"tokens": 100})
    err = info.value
    assert err.usage == {"tokens": 120.0}
    assert set(err.outputs) == {"a", "b"}
    assert isinstance(err.run_id, int)
    assert "tokens=120" in str(err)


def test_per_agent_usage_is_in_the_result():
    g = (
        cp.Graph()
        .add("cheap", lambda x: cp.Result("c", usage={"tokens": 10, "cost": 0.001}))
        .add("pricey", lambda x: cp.Result("p", usage={"tokens": 900, "cost": 0.2}))
        .add("free", lambda x: "f")
        .add("sum", lambda d: sorted(d), after=["cheap", "pricey", "free"])
    )
    rec = g.compile().run("x", budget={"tokens": 10_000})
    assert rec.status == "succeeded"
    assert rec.budget_exhausted is False
    assert rec.agents["cheap"].usage == {"tokens": 10.0, "cost": 0.001}
    assert rec.agents["pricey"].usage == {"tokens": 900.0, "cost": 0.2}
    assert rec.agents["free"].usage == {}
    assert rec.usage["tokens"] == 910.0
    assert rec.usage["cost"] == pytest.approx(0.201)


def test_usage_is_reported_without_a_budget():
    calls = []
    rec = _chain(calls, tokens=5).compile().run("x")
    assert rec.status == "succeeded"
    assert rec.usage == {"tokens": 20.0}
    assert rec.budget_exhausted is False


def test_budget_reached_exactly_counts_as_spent():
    calls = []
    rec = _chain(calls, tokens=50).compile().run("x", budget={"tokens": 100})
    assert calls == ["a", "b"]
    assert rec.budget_exhausted


def test_any_budgeted_quantity_spends_the_budget():
    calls = []
    g = (
        cp.Graph()
        .add("a", spender("a", 1, calls, cost=0.6))
        .add("b", spender("b", 1, calls, cost=0.6), after="a")
        .add("c", spender("c", 1, calls, cost=0.6), after="b")
    )
    rec = g.compile().run("x", budget={"tokens": 1000, "cost": 1.0})
    assert calls == ["a", "b"]
    assert rec.budget_exhausted
    assert rec.agents["c"].status == "skipped"


def test_unbudgeted_quantities_do_not_stop_the_run():
    calls = []
    rec = _chain(calls, tokens=1000).compile().run("x", budget={"cost": 1.0})
    assert rec.status == "succeeded"
    assert calls == ["a", "b", "c", "d"]


def test_compiled_default_budget_and_per_call_override():
    calls = []
    app = _chain(calls).compile(budget={"tokens": 100})
    with pytest.raises(cp.BudgetExceeded):
        app.invoke("x")
    calls.clear()
    assert app.invoke("x", budget={"tokens": 10_000}).value == "d(c(b(a(x))))"
    assert calls == ["a", "b", "c", "d"]


def test_budget_is_per_run_not_shared_by_a_batch():
    calls = []
    app = _chain(calls, tokens=10).compile(budget={"tokens": 100})
    results = app.batch(["1", "2", "3", "4", "5"])
    assert [r.value for r in results] == [f"d(c(b(a({i}))))" for i in "12345"]
    assert len(calls) == 20


def test_agents_already_running_finish_when_the_budget_is_spent():
    # Parallel branches that started before the budget was spent still finish and
    # their usage still counts; only new invocations are refused.
    calls = []
    started = threading.Barrier(3, timeout=5)

    def branch(name):
        def agent(x):
            calls.append(name)
            started.wait()
            time.sleep({"p1": 0.3, "p2": 0.02, "p3": 0.08}[name])
            return cp.Result(name, usage={"tokens": 80})

        return agent

    g = (
        cp.Graph()
        .add("p1", branch("p1"), dispatch="thread")
        .add("p2", branch("p2"), dispatch="thread")
        .add("p3", branch("p3"), dispatch="thread")
        .add("after_p1", spender("after_p1", 1, calls), after="p1")
        .add("join", lambda d: d, after=["after_p1", "p2", "p3"], join="available")
    )
    rec = g.compile().run("x", budget={"tokens": 100})
    assert sorted(calls) == ["p1", "p2", "p3"]
    assert rec.usage == {"tokens": 240.0}
    assert rec.budget_exhausted
    for name in ("p1", "p2", "p3"):
        assert rec.agents[name].status == "succeeded"
    assert rec.agents["after_p1"].status == "skipped"
    assert "budget" in rec.agents["after_p1"].reason


def test_spent_budget_stops_further_retry_attempts():
    calls = []
    first_attempt = threading.Event()

    def costly_and_failing(x):
        calls.append(1)
        first_attempt.set()
        raise ValueError("expensive failure")

    def spend(x):
        first_attempt.wait(5)  # spend only once the first attempt has started
        return cp.Result("spent", usage={"tokens": 100})

    g = (
        cp.Graph(on_error="continue")
        .add("spend", spend, dispatch="thread")
        .add("flaky", costly_and_failing, dispatch="thread",
             retry=cp.Retry(max_attempts=5, initial_backoff=0.1, jitter=0.0))
    )
    rec = g.compile().run("x", budget={"tokens": 50})
    assert rec.budget_exhausted
    assert len(calls) == 1
    assert rec.agents["flaky"].status == "failed"
    assert "budget" in rec.agents["flaky"].error


def test_async_agents_report_usage():
    async def agent(x):
        await asyncio.sleep(0)
        return cp.Result(x, usage={"tokens": 70})

    g = cp.Graph().add("a", agent).add("b", agent, after="a").add("c", agent, after="b")
    rec = g.compile().run("x", budget={"tokens": 100})
    assert rec.usage == {"tokens": 140.0}
    assert rec.agents["c"].status == "skipped"
    assert rec.budget_exhausted


def test_failed_agents_usage_is_not_lost():
    # An agent that fails reports no Result, so it has no usage; the run's usage is
    # the successful agents' total, and budget_exhausted stays False under budget.
    def boom(x):
        raise ValueError("no")

    g = (
        cp.Graph(on_error="continue")
        .add("ok", lambda x: cp.Result("ok", usage={"tokens": 5}))
        .add("bad", boom)
    )
    rec = g.compile().run("x", budget={"tokens": 100})
    assert rec.usage == {"tokens": 5.0}
    assert rec.agents["bad"].usage == {}
    assert rec.budget_exhausted is False


def test_budget_exhausted_but_run_finished_still_succeeds():
    # The last agent's usage spends the budget, but nothing else needed to start: the
    # run produced its result and succeeds, and the record still says it is spent.
    calls = []
    rec = (
        cp.Graph().add("only", spender("only", 500, calls)).compile()
        .run("x", budget={"tokens": 100})
    )
    assert rec.status == "succeeded"
    assert rec.output.value == "only(x)"
    assert rec.budget_exhausted is True


def test_nested_graph_usage_counts_against_the_parent_budget():
    calls = []
    child = (
        cp.Graph()
        .add("c1", spender("c1", 80, calls))
        .add("c2", spender("c2", 80, calls), after="c1")
        .compile()
    )
    parent = (
        cp.Graph()
        .add("sub", child)
        .add("after", spender("after", 1, calls), after="sub")
        .compile()
    )
    rec = parent.run("x", budget={"tokens": 100})
    assert rec.usage == {"tokens": 160.0}
    assert rec.budget_exhausted
    assert "after" not in calls
    assert rec.agents["after"].status == "skipped"
