"""Compiled graphs travel by pickle: plain graphs with every node option and policy, the
nine patterns (by their declaration), nested graphs, coroutine agents, stores and the
LangChain Runnable come back as equivalent, working graphs; with pickle when agents are
module-level functions, with cloudpickle for lambdas and closures. Breakers and limits
keep their sharing but not their state. check_picklable names what cannot travel."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import pickle_agents as p
import pytest
import spec_agents as a

import counterpoint as cp
from counterpoint._pickling import check_picklable

TESTS = Path(__file__).resolve().parent
DUMPS = {"pickle": pickle.dumps, "cloudpickle": cloudpickle.dumps}
ALLOW = ["spec_agents"]


def round_trip(value: Any, dumps: Callable[[Any], bytes] = pickle.dumps) -> Any:
    return pickle.loads(dumps(value))


@pytest.fixture(params=sorted(DUMPS))
def dumps(request: pytest.FixtureRequest) -> Callable[[Any], bytes]:
    return DUMPS[request.param]


# ---- plain graphs -------------------------------------------------------------------------


def every_option_graph() -> cp.CompiledGraph:
    g = cp.Graph(on_error="continue")
    g.add("start", a.upper, priority=5, dispatch="inline")
    g.add("flaky", p.fail, after="start", timeout=5, fallback=p.recover,
          retry=cp.Retry(max_attempts=2, initial_backoff=0, retry_on=a.is_value_error),
          breaker=cp.CircuitBreaker("pickle-test-every-option", failures=3))
    g.add("gated", p.unsure_upper, after="start", dispatch="thread",
          review=cp.Review(below=0.5, reviewer=a.approve_all),
          limits=[cp.Limit(max_concurrent=2), cp.Limit("pickle-test-api", per_second=100)])
    g.add("joined", a.reply, after=["flaky", "gated"], join="available", on_error="fail")
    g.add("policed", cp.policy(a.exclaim, retry=2, timeout=5), after="joined")
    return g.compile(budget={"tokens": 100}, deadline=30)


def test_graph_with_every_node_option_and_policy_round_trips(dumps: Any) -> None:
    app = every_option_graph()
    back = round_trip(app, dumps)
    assert type(back) is type(app)
    assert back.describe() == app.describe()
    assert back.agents == app.agents
    assert (back._budget, back._deadline, back._on_error) == ({"tokens": 100.0}, 30.0,
                                                              "continue")
    assert back.invoke("hi") == app.invoke("hi")


def test_graph_builder_round_trips(dumps: Any) -> None:
    builder = cp.Graph(on_error="continue").add("up", a.upper).add("ex", a.exclaim, after="up")
    back = round_trip(builder, dumps)
    assert back.compile().describe() == builder.compile().describe()
    assert back.compile().invoke("hi") == "HI!"


def test_graph_of_lambdas_and_closures_round_trips_with_cloudpickle() -> None:
    suffix = "?"
    app = (cp.Graph()
           .add("up", lambda text: text.upper())
           .add("ask", lambda text: text + suffix, after="up", fallback=lambda _: "fallback",
                review=cp.Review(below=0.9, reviewer=lambda request: cp.approve()))
           .compile())
    back = round_trip(app, cloudpickle.dumps)
    assert back.describe() == app.describe()
    assert back.invoke("hi") == app.invoke("hi") == "HI?"


def test_nested_patterns_and_graphs_round_trip(dumps: Any) -> None:
    inner = cp.Graph().add("up", a.upper).add("ex", a.exclaim, after="up").compile()
    app = (cp.Graph()
           .add("classify", a.classify)
           .add("review", cp.parallel(y=a.yes, n=cp.sequential(a.no, inner),
                                      merge=a.first_value), after="classify")
           .add("reply", a.reply, after="review")
           .compile())
    back = round_trip(app, dumps)
    assert back.describe() == app.describe()
    assert back._specs[1].agent._cp_declared[0] == "parallel"
    assert back.invoke("billing") == app.invoke("billing") == "reply(NO!)"


def test_graph_with_coroutine_agents_round_trips(dumps: Any) -> None:
    app = cp.Graph().add("double", p.async_double).add("more", p.add_one, after="double")
    back = round_trip(app.compile(), dumps)
    assert back.uses_event_loop
    assert back.invoke(3) == 7
    assert asyncio.run(back.ainvoke(3)) == 7


def test_graph_with_async_closures_round_trips_with_cloudpickle() -> None:
    step = 10

    async def add_step(value: int) -> int:
        await asyncio.sleep(0)
        return value + step

    back = round_trip(cp.sequential(add_step, add_step), cloudpickle.dumps)
    assert back.uses_event_loop
    assert asyncio.run(back.ainvoke(1)) == 21


def test_check_picklable_returns_the_pickle(dumps: Any) -> None:
    app = cp.sequential(a.upper, a.exclaim)
    assert pickle.loads(check_picklable(app, dumps)).invoke("hi") == "HI!"


# ---- patterns -----------------------------------------------------------------------------

# Module-level agents: these pickle with pickle and with cloudpickle.
PATTERNS = {
    "sequential": (lambda: cp.sequential(a.upper, ("shout", a.exclaim)), "hi"),
    "parallel": (lambda: cp.parallel({"y": a.yes}, n=a.no, y2=a.yes, merge="majority",
                                     key=a.lower, priorities={"n": 5}), "q"),
    "consensus": (lambda: cp.consensus([a.yes, a.no], vote=cp.judge(a.first_value)), "q"),
    "fan_out": (lambda: cp.fan_out(a.upper, over=a.words, merge=a.count_items, max_items=10),
                "a b c"),
    "router": (lambda: cp.router(a.classify, {"billing": a.billing, "address": a.address},
                                 default=a.other, priorities={"address": 10}),
               "billing address"),
    "supervisor": (lambda: cp.supervisor(a.plan, workers={"search": a.search},
                                         synthesizer=a.synthesize), "task"),
    "loop": (lambda: cp.loop(a.draft, a.evaluate, max_iterations=3), "task"),
    "group_chat": (lambda: cp.group_chat({"alice": a.alice, "bob": a.bob}, manager=a.manager,
                                         until=a.done, max_turns=5), "task"),
    "adaptive": (lambda: cp.adaptive(a.unsure, escalate_to=a.big, below=0.5), "q"),
}

# Lambdas and closures: these pickle with cloudpickle only.
FACTOR = 3
LAMBDA_PATTERNS = {
    "sequential": (lambda: cp.sequential(lambda x: x + 1, lambda x: x * FACTOR), 1),
    "parallel": (lambda: cp.parallel(a=lambda x: x % 2, b=lambda x: x % 2 + 2,
                                     merge="majority", key=lambda v: v % 2), 3),
    "consensus": (lambda: cp.consensus([lambda x: "Yes", lambda x: "yes"],
                                       key=lambda s: s.lower()), 0),
    "fan_out": (lambda: cp.fan_out(lambda item: item * FACTOR, over=lambda n: list(range(n)),
                                   merge=lambda outs: sum(outs)), 4),
    "router": (lambda: cp.router(lambda text: text.split(), {"a": lambda t: "A",
                                                             "b": lambda t: "B"}), "a b"),
    "supervisor": (lambda: cp.supervisor(
        lambda task: [{"id": "x", "task": task}, {"id": "y", "task": task, "after": "x"}],
        workers={"echo": lambda brief: brief["task"] * 2},
        synthesizer=lambda state: state["results"]), "ab"),
    "loop": (lambda: cp.loop(lambda s: s["iteration"] * FACTOR,
                             lambda s: s["iteration"] >= 2), "task"),
    "group_chat": (lambda: cp.group_chat({"p": lambda s: f"turn {s['turn']}"},
                                         manager=lambda s: "p" if s["turn"] < 3 else cp.END),
                   "task"),
    "adaptive": (lambda: cp.adaptive(lambda x: cp.Result(x, confidence=0.9),
                                     escalate_to=lambda x: "big", below=0.5), "q"),
}


def test_every_pattern_is_covered() -> None:
    from counterpoint.patterns._common import _builders

    assert set(PATTERNS) == set(LAMBDA_PATTERNS) == set(_builders)


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_every_pattern_round_trips_by_its_declaration(name: str, dumps: Any) -> None:
    build, value = PATTERNS[name]
    app = build()
    back = round_trip(app, dumps)
    assert type(back) is type(app)
    assert back._cp_declared == app._cp_declared
    assert back.describe() == app.describe()
    assert back.invoke(value) == app.invoke(value)


@pytest.mark.parametrize("name", sorted(LAMBDA_PATTERNS))
def test_every_pattern_of_lambdas_round_trips_with_cloudpickle(name: str) -> None:
    build, value = LAMBDA_PATTERNS[name]
    app = build()
    back = round_trip(app, cloudpickle.dumps)
    assert back._cp_declared[0] == name
    assert back.invoke(value) == app.invoke(value)


def test_a_pattern_pickles_its_arguments_not_its_internal_closures() -> None:
    # The loop's controller closures and child graph are local objects pickle cannot
    # store; the pattern's declaration holds only the user's module-level agents.
    app = cp.loop(a.draft, a.evaluate, max_iterations=3)
    data = pickle.dumps(app)
    assert b"after_iteration" not in data
    assert b"rebuild_declared" in data


# ---- stores and LangChain -----------------------------------------------------------------


def test_graph_with_a_sqlite_store_reopens_the_same_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dumps: Any) -> None:
    monkeypatch.chdir(tmp_path)  # a relative path travels as the file's absolute path
    app = cp.sequential(a.upper, a.exclaim)
    durable = (cp.Graph().add("shout", app).compile(
        store=cp.SQLiteStore("runs.db", audit_content=True)))
    back = round_trip(durable, dumps)
    try:
        assert back.store is not durable.store
        assert isinstance(back.store, cp.SQLiteStore)
        assert back.store.path == str(tmp_path / "runs.db")
        assert back.store.audit_content and back.store.codec.format == "json"
        assert back.invoke("hi") == "HI!"
        assert [run.status for run in durable.runs()] == ["succeeded"]  # the same file
    finally:
        back.store.close()
        durable.store.close()


def test_sqlite_store_pickles_with_its_options(tmp_path: Path) -> None:
    store = cp.SQLiteStore(tmp_path / "runs.db", pickle=True)
    back = round_trip(store)
    try:
        assert (back.path, back.codec.format, back.audit_content) == (store.path, "pickle",
                                                                      False)
    finally:
        back.close()
        store.close()


def test_in_memory_store_refuses_to_pickle() -> None:
    store = cp.SQLiteStore(":memory:")
    try:
        with pytest.raises(TypeError, match="exist only in this process"):
            pickle.dumps(store)
    finally:
        store.close()


def test_runnable_graph_comes_back_a_runnable(dumps: Any) -> None:
    runnables = pytest.importorskip("langchain_core.runnables")
    app = cp.sequential(a.upper, a.exclaim)
    app.name = "shouter"  # set after compiling: goes along
    back = round_trip(app, dumps)
    assert type(back) is type(app)
    assert isinstance(back, runnables.Runnable)
    assert back.get_name() == "shouter"
    assert (back | runnables.RunnableLambda(str.lower)).invoke("hi") == "hi!"


# ---- breakers and limits ------------------------------------------------------------------


def test_named_limit_and_breaker_join_the_process_registry(dumps: Any) -> None:
    limit = cp.Limit("pickle-test-shared-api", max_concurrent=2)
    breaker = cp.CircuitBreaker("pickle-test-shared-crm", failures=2)
    assert round_trip(limit, dumps) is limit
    assert round_trip(breaker, dumps) is breaker
    app = cp.Graph().add("billing", a.billing, limits=limit, breaker=breaker).compile()
    policed = round_trip(app, dumps)._specs[0].policed
    assert policed.limits == (limit,)
    assert policed.breaker is breaker


def test_anonymous_limit_shared_by_two_agents_stays_one_limit(dumps: Any) -> None:
    shared = cp.Limit(max_concurrent=1)
    app = (cp.Graph()
           .add("first", p.hold, limits=shared, dispatch="thread")
           .add("second", p.hold, limits=shared, dispatch="thread")
           .compile())
    back = round_trip(app, dumps)
    first, second = (spec.policed.limits[0] for spec in back._specs)
    assert first is second
    assert first is not shared  # a new limit, with the same settings
    p.overlap.reset()
    assert back.invoke(1) == {"first": 1, "second": 1}
    assert p.overlap.most == 1  # the two agents still exclude each other
    assert first.snapshot()["granted"] == 2


def test_breaker_state_does_not_travel() -> None:
    breaker = cp.CircuitBreaker(failures=1, reset_after=60)
    app = cp.Graph().add("flaky", p.fail, breaker=breaker, fallback=p.recover).compile()
    assert app.invoke(0) == "recovered"
    assert breaker.state == "open"
    back = round_trip(app)
    assert back._specs[0].policed.breaker.state == "closed"


@pytest.mark.parametrize("make", [
    lambda: cp.Retry(max_attempts=3, initial_backoff=0, retry_on=a.is_value_error),
    lambda: cp.Review(below=0.5, reviewer=a.approve_as_lead, approvers=("support-leads",)),
    lambda: cp.policy(a.billing, retry=2, timeout=3, fallback=a.other,
                      breaker=cp.CircuitBreaker("pickle-test-policy"),
                      limits=cp.Limit("pickle-test-policy", max_concurrent=3),
                      review=cp.Review(reviewer=a.approve_all)),
    lambda: cp.judge(a.first_value),
], ids=["Retry", "Review", "policy", "judge"])
def test_policy_values_round_trip(make: Callable[[], Any], dumps: Any) -> None:
    value = make()
    assert round_trip(value, dumps) == value


# ---- specs --------------------------------------------------------------------------------

GRAPH_SPEC = {
    "name": "triage",
    "description": "routes tickets",
    "breakers": {"pickle-spec-crm": {"failures": 2}},
    "limits": {"pickle-spec-llm": {"max_concurrent": 2}},
    "on_error": "continue",
    "budget": {"tokens": 50},
    "deadline": 20,
    "agents": {
        "classify": {"use": "spec_agents:classify"},
        "billing": {"use": "spec_agents:billing", "after": "classify", "retry": 2,
                    "breaker": "pickle-spec-crm", "limits": "pickle-spec-llm"},
        "vote": {"pattern": "parallel", "branches": {"y": "spec_agents:yes",
                                                     "n": "spec_agents:no"},
                 "merge": "majority", "after": "classify"},
        "reply": {"use": "spec_agents:reply", "after": ["billing", "vote"],
                  "join": "available"},
    },
}
PATTERN_SPEC = {"name": "voters", "pattern": "consensus",
                "agents": ["spec_agents:yes", "spec_agents:no"], "vote": "quorum",
                "quorum": 1}


@pytest.mark.parametrize("spec", [GRAPH_SPEC, PATTERN_SPEC], ids=["graph", "pattern"])
def test_loaded_graph_writes_the_same_spec_after_a_round_trip(spec: dict[str, Any],
                                                              dumps: Any) -> None:
    app = cp.load(spec, allow=ALLOW)
    back = round_trip(app, dumps)
    assert back.to_spec() == app.to_spec()
    assert back.to_spec()["name"] == spec["name"]
    assert back.invoke("billing") == app.invoke("billing")


# ---- another process ----------------------------------------------------------------------

FRESH_PROCESS = textwrap.dedent("""
    import json, pickle, sys
    app = pickle.loads(open(sys.argv[1], "rb").read())
    breaker = app._specs[0].policed.breaker
    before = breaker.state
    result = app.invoke("hi")
    print(json.dumps({"class": type(app).__name__, "breaker": before, "result": result,
                      "runs": [run.status for run in app.runs()]}))
    app.store.close()
""")


def test_graph_unpickled_in_a_fresh_process_runs_there(tmp_path: Path) -> None:
    breaker = cp.CircuitBreaker("pickle-test-fresh-process", failures=1, reset_after=60)
    app = (cp.Graph()
           .add("flaky", p.fail, breaker=breaker, fallback=p.recover)
           .add("shout", a.upper, after="flaky")
           .compile(store=tmp_path / "runs.db"))
    try:
        assert app.invoke("hi") == "RECOVERED"
        assert breaker.state == "open"
        (tmp_path / "graph.pickle").write_bytes(pickle.dumps(app))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]))
        proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS,
                               str(tmp_path / "graph.pickle")],
                              capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        assert got == {"class": type(app).__name__, "breaker": "closed",
                       "result": "RECOVERED", "runs": ["succeeded", "succeeded"]}
    finally:
        app.store.close()


# ---- what cannot travel -------------------------------------------------------------------

HOLD_RESOURCES_OUT = ("keep locks, connections and clients out of it: open them inside the "
                      "call, or keep them in an actor")
LOCK = "(TypeError: cannot pickle '_thread.lock' object)"


def locked_agent() -> Callable[[Any], Any]:
    lock = threading.Lock()

    def guarded(value: Any) -> Any:
        with lock:
            return value

    return guarded


def assert_refused(app: cp.CompiledGraph, dumps: Callable[[Any], bytes], message: str,
                   node: str | None) -> None:
    with pytest.raises(cp.GraphError) as caught:
        check_picklable(app, dumps)
    assert str(caught.value) == message
    assert caught.value.node == node
    assert caught.value.__cause__ is not None


def test_agent_holding_a_lock_is_named() -> None:
    app = cp.Graph().add("prep", a.upper).add("guarded", locked_agent(), after="prep").compile()
    assert_refused(app, cloudpickle.dumps,
                   f"agent 'guarded' cannot be pickled {LOCK}: {HOLD_RESOURCES_OUT}", "guarded")


def test_agent_holding_a_lock_in_a_nested_pattern_is_named_by_its_path() -> None:
    review = cp.parallel(style=a.upper, security=locked_agent())
    app = cp.Graph().add("prep", a.upper).add("review", review, after="prep").compile()
    assert_refused(app, cloudpickle.dumps,
                   f"agent 'review/security' cannot be pickled {LOCK}: {HOLD_RESOURCES_OUT}",
                   "review/security")
    deeper = cp.Graph().add("checks", cp.sequential(("review", review))).compile()
    assert_refused(deeper, cloudpickle.dumps,
                   f"agent 'checks/review/security' cannot be pickled {LOCK}: "
                   f"{HOLD_RESOURCES_OUT}", "checks/review/security")


def test_pattern_at_the_top_names_its_member() -> None:
    app = cp.consensus([a.yes, locked_agent()])
    assert_refused(app, cloudpickle.dumps,
                   f"agent 'guarded' cannot be pickled {LOCK}: {HOLD_RESOURCES_OUT}", "guarded")


@pytest.mark.parametrize("role", ["fallback", "reviewer"])
def test_policy_function_holding_a_lock_is_named_with_its_agent(role: str) -> None:
    options: dict[str, Any] = {"fallback": locked_agent()} if role == "fallback" else {
        "review": cp.Review(reviewer=locked_agent())}
    app = cp.Graph().add("draft", a.upper, **options).compile()
    assert_refused(app, cloudpickle.dumps,
                   f"the {role} of agent 'draft' cannot be pickled {LOCK}: {HOLD_RESOURCES_OUT}",
                   "draft")


def test_object_holding_a_lock_is_named_with_pickle() -> None:
    app = cp.Graph().add("prep", a.upper).add("guarded", p.Locked(), after="prep").compile()
    assert_refused(app, pickle.dumps,
                   f"agent 'guarded' cannot be pickled {LOCK}: {HOLD_RESOURCES_OUT}", "guarded")


def test_lambda_is_named_with_pickle_and_the_fix_says_where_to_define_it() -> None:
    app = cp.Graph().add("prep", a.upper).add("tidy", lambda text: text, after="prep").compile()
    # (A local object fails with an AttributeError or a PicklingError, by Python version.)
    with pytest.raises(cp.GraphError, match=r"^agent 'tidy' cannot be pickled \((Pickling|"
                       r"Attribute)Error: .*\): define it at module level, where pickle finds it by name, or "
                       r"pickle the graph with cloudpickle$"):
        check_picklable(app, pickle.dumps)


def test_in_memory_store_is_named() -> None:
    app = cp.sequential(a.upper)
    durable = cp.Graph().add("shout", app).compile(store=":memory:")
    try:
        with pytest.raises(cp.GraphError, match=r"^the store of the graph cannot be pickled "
                           r"\(TypeError: SQLiteStore\(':memory:'\) cannot be pickled: .*file "
                           r"path to share it with other processes\)$"):
            check_picklable(durable, pickle.dumps)
    finally:
        durable.store.close()
