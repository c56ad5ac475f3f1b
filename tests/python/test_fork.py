"""Forking stored runs: a new run that reuses the outcomes of everything not downstream of
the agents named to run again, with overrides and new inputs."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

import counterpoint as cp
from counterpoint._fork import fork_outcomes


def _diamond(calls: Counter, store, *, prompt: str = "v1", broken: set[str] | None = None):
    """a -> b, a -> c, (b, c) -> d, c -> e; each agent counts its calls in ``calls``."""

    def step(name):
        def agent(x):
            calls[name] += 1
            if broken is not None and name in broken:
                raise RuntimeError(f"{name} is broken")
            return f"{name}[{prompt if name == 'b' else ''}]({x})"

        agent.__name__ = name
        return agent

    g = cp.Graph(on_error="continue")
    g.add("a", step("a"))
    g.add("b", step("b"), after="a")
    g.add("c", step("c"), after="a")
    g.add("d", step("d"), after=["b", "c"])
    g.add("e", step("e"), after="c")
    return g.compile(store=store)


@pytest.fixture
def stored(tmp_path):
    """A finished run of the diamond graph: (store path, its run key, its result)."""
    path = tmp_path / "runs.db"
    calls: Counter = Counter()
    app = _diamond(calls, path)
    result = app.run("x")
    assert result.ok and set(calls) == {"a", "b", "c", "d", "e"}
    app.store.close()
    return path, result.run_key, result


def test_fork_reruns_the_named_agent_and_everything_downstream_only(stored):
    path, key, source = stored
    calls: Counter = Counter()
    app = _diamond(calls, path, prompt="v2")
    result = app.start_fork(key, rerun=["b"]).record()
    assert result.ok
    assert calls == Counter({"b": 1, "d": 1})
    assert {name for name, outcome in result.agents.items() if outcome.restored} == \
        {"a", "c", "e"}
    assert result.agents["b"].output == f"b[v2]({source.agents['a'].output})"
    assert result.output["d"].startswith("d[]({'b': 'b[v2]")
    assert result.output["e"] == source.output["e"]
    # A new run with its own row, linked to the source; the source is unchanged.
    assert result.run_key != key
    assert app.store.load_run(key).outcomes["b"].output == source.agents["b"].output
    started = app.store.audit(result.run_key)[0]
    assert started.kind == "run_started" and started.data["forked_from"] == key
    assert started.data["rerun"] == ["b"]
    assert {summary.run_key for summary in app.runs("succeeded")} == {key, result.run_key}


def test_fork_keeps_what_it_reuses_in_its_own_run(stored):
    path, key, _ = stored
    calls: Counter = Counter()
    app = _diamond(calls, path)
    forked = app.start_fork(key, rerun="c").record()
    assert calls == Counter({"c": 1, "d": 1, "e": 1})
    outcomes = app.store.load_run(forked.run_key).outcomes
    assert set(outcomes) == {"a", "b", "c", "d", "e"}
    # ...so a fork of the fork, or its resume, restores them from it.
    calls.clear()
    again = app.start_fork(forked.run_key, rerun=["e"]).record()
    assert calls == Counter({"e": 1}) and again.ok
    assert app.store.audit(again.run_key)[0].data["forked_from"] == forked.run_key
    entries = [e for e in app.store.audit(forked.run_key) if e.kind == "agent_finished"
               and e.data.get("forked_from") == key]
    assert {e.agent for e in entries} == {"a", "b"}
    assert app.store.verify_audit(forked.run_key).ok


def test_fork_without_changes_reruns_nothing(stored):
    path, key, source = stored
    calls: Counter = Counter()
    app = _diamond(calls, path)
    assert app.fork(key) == source.output
    assert not calls


def test_overrides_set_outputs_and_rerun_what_is_downstream(stored):
    path, key, source = stored
    calls: Counter = Counter()
    app = _diamond(calls, path)
    result = app.start_fork(key, overrides={"c": "C!"}).record()
    assert calls == Counter({"d": 1, "e": 1})
    c = result.agents["c"]
    assert c.restored and c.output == "C!"
    assert result.output == {"d": f"d[]({{'b': '{source.agents['b'].output}', 'c': 'C!'}})",
                             "e": "e[](C!)"}
    finished = [e for e in app.store.audit(result.run_key)
                if e.kind == "agent_finished" and e.agent == "c"]
    assert finished[0].data["override"] is True


def test_an_override_can_choose_a_routers_successors(tmp_path):
    calls: Counter = Counter()

    def triage(text):
        calls["triage"] += 1
        return cp.route(text, to=["billing"])

    def handler(name):
        def handle(text):
            calls[name] += 1
            return f"{name}: {text}"

        return handle

    g = cp.Graph()
    g.add("triage", triage)
    g.add("billing", handler("billing"), after="triage")
    g.add("support", handler("support"), after="triage")
    app = g.compile(store=tmp_path / "runs.db")
    key = app.run("card charged twice").run_key
    calls.clear()
    forked = app.start_fork(key, overrides={"triage": cp.route("login fails", to=["support"])})
    result = forked.record()
    assert calls == Counter({"support": 1})
    assert result.output == {"support": "support: login fails"}
    assert result.agents["billing"].status == "skipped"


def test_a_new_input_reruns_the_entry_agents_unless_overridden(stored):
    path, key, source = stored
    calls: Counter = Counter()
    app = _diamond(calls, path)
    assert app.fork(key, inputs="y")["e"] == "e[](c[](a[](y)))"
    assert calls == Counter({"a": 1, "b": 1, "c": 1, "d": 1, "e": 1})
    assert app.store.load_run(app.runs()[0].run_key).input == "y"
    calls.clear()
    app.fork(key, inputs="y", overrides={"a": source.agents["a"].output})
    assert calls == Counter({"b": 1, "c": 1, "d": 1, "e": 1})


def test_only_succeeded_outcomes_are_reused(tmp_path):
    calls: Counter = Counter()
    path = tmp_path / "runs.db"
    failed = _diamond(calls, path, broken={"c"}).run("x")
    assert failed.agents["c"].status == "failed" and failed.agents["e"].status == "skipped"
    calls.clear()
    result = _diamond(calls, path).start_fork(failed.run_key).record()
    assert result.ok
    assert calls == Counter({"c": 1, "d": 1, "e": 1})


def test_restored_usage_counts_toward_the_fork(tmp_path):
    def spend(x):
        return cp.Result(x, usage={"tokens": 10})

    g = cp.Graph().add("a", spend).add("b", spend, after="a")
    app = g.compile(store=tmp_path / "runs.db")
    key = app.run(1).run_key
    result = app.start_fork(key, rerun=["b"]).record()
    assert result.agents["a"].restored and result.agents["a"].usage == {"tokens": 10}
    assert result.usage == {"tokens": 20}


def test_async_agents_fork(tmp_path):
    calls: Counter = Counter()

    async def a(x):
        calls["a"] += 1
        return x + 1

    async def b(x):
        calls["b"] += 1
        return x * 10

    app = cp.Graph().add("a", a).add("b", b, after="a").compile(store=tmp_path / "r.db")
    key = app.run(1).run_key
    calls.clear()
    assert app.fork(key, rerun=["b"]) == 20
    assert calls == Counter({"b": 1})


def test_a_fork_reuses_the_finished_agents_inside_a_pattern(tmp_path):
    calls: Counter = Counter()
    broken = {"style"}
    sec_done = threading.Event()

    def step(name):
        def agent(x):
            calls[name] += 1
            if name in broken:
                # Fails once its sibling has finished: failing first would cancel the
                # sibling before it starts, and there would be nothing to reuse.
                sec_done.wait(10)
                raise RuntimeError(f"{name} is broken")
            if name == "sec":
                sec_done.set()
            return f"{name}({x})"

        return agent

    def build():
        review = cp.parallel(sec=step("sec"), style=step("style"))
        g = cp.Graph().add("prep", step("prep")).add("review", review, after="prep")
        return g.add("report", step("report"), after="review").compile(
            store=tmp_path / "runs.db")

    app = build()
    failed = app.run("x")
    assert failed.status == "failed" and calls == Counter({"prep": 1, "sec": 1, "style": 1})
    broken.clear()
    calls.clear()
    fixed = app.start_fork(failed.run_key).record()
    # Only the failed member runs again inside the pattern; its finished sibling is reused.
    assert fixed.ok and calls == Counter({"style": 1, "report": 1})
    calls.clear()
    app.fork(fixed.run_key, rerun=["review"])  # the pattern's agents are not reused
    assert calls == Counter({"sec": 1, "style": 1, "report": 1})


def test_nested_outcomes_go_with_their_top_level_agent():
    def outcome(agent, status="succeeded"):
        return cp.StoredOutcome(agent, status, f"out of {agent}")

    outcomes = [outcome("prep"), outcome("review"), outcome("review/security"),
                outcome("review/style"), outcome("report"), outcome("audit/check"),
                outcome("audit", "failed")]
    stored = cp.StoredRun("k", "fp", "succeeded", "in", {o.agent: o for o in outcomes}, 0, 0)
    after = {"prep": [], "review": ["prep"], "audit": ["prep"], "report": ["review"]}
    reused, overridden = fork_outcomes(stored, after, ["review"], {}, False)
    assert [o.agent for o in reused] == ["prep", "audit/check"]
    assert overridden == []
    reused, overridden = fork_outcomes(stored, after, [], {"prep": "P"}, False)
    assert reused == []
    assert [(o.agent, o.output) for o in overridden] == [("prep", "P")]


# ---- errors ----------------------------------------------------------------------------


def test_unknown_agents_are_refused_listing_the_known_ones(stored):
    path, key, _ = stored
    app = _diamond(Counter(), path)
    with pytest.raises(ValueError, match=r"rerun names .*'draft'.*its agents are 'a', 'b'"):
        app.fork(key, rerun=["draft"])
    with pytest.raises(ValueError, match=r"overrides names .*'zz'"):
        app.fork(key, overrides={"zz": 1})
    with pytest.raises(ValueError, match="both rerun and given an override"):
        app.fork(key, rerun=["b"], overrides={"b": 1})
    with pytest.raises(ValueError, match="overrides must be a dict"):
        app.fork(key, overrides=[("b", 1)])
    with pytest.raises(ValueError, match="rerun must be an agent name or a list"):
        app.fork(key, rerun=5)
    assert len(app.runs()) == 1  # nothing was recorded


def test_unknown_run_and_other_graphs_are_refused(stored, tmp_path):
    path, key, _ = stored
    app = _diamond(Counter(), path)
    with pytest.raises(cp.StoreError, match="no run 'nope'"):
        app.fork("nope")
    other = cp.Graph().add("a", lambda x: x).compile(store=path)
    with pytest.raises(cp.StoreError, match=r"different graph.*fork it with the graph"):
        other.fork(key)


def test_a_graph_without_a_store_has_no_runs_to_fork():
    app = cp.Graph().add("a", lambda x: x).compile()
    with pytest.raises(cp.GraphError, match=r"no store.*compile\(store=\.\.\.\)"):
        app.fork("k")


def test_an_override_the_store_cannot_encode_fails_the_fork(stored):
    path, key, _ = stored
    app = _diamond(Counter(), path)
    with pytest.raises(cp.StoreError, match="cannot be stored as json"):
        app.fork(key, overrides={"b": object()})
    assert len(app.runs("failed")) == 1
