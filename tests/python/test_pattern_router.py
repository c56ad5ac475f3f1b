"""cp.router: a classifier picks which route agents run; several run in parallel."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import counterpoint as cp


class Calls:
    """Thread-safe record of which agents were called with what."""

    def __init__(self):
        self._lock = threading.Lock()
        self.log = []

    def agent(self, name, result=None, seconds=0.0):
        def run(x):
            with self._lock:
                self.log.append((name, x))
            if seconds:
                time.sleep(seconds)
            return f"{name}:{x}" if result is None else result

        run.__name__ = name
        return run

    def names(self):
        with self._lock:
            return [name for name, _ in self.log]


def test_single_intent_runs_only_that_route_on_the_original_input():
    calls = Calls()
    app = cp.router(
        lambda text: "billing",
        routes={"billing": calls.agent("billing"), "shipping": calls.agent("shipping")},
    )
    assert app.invoke("charged twice") == {"billing": "billing:charged twice"}
    assert calls.log == [("billing", "charged twice")]


def test_several_intents_run_in_parallel_and_the_result_is_by_route():
    calls = Calls()
    routes = {name: calls.agent(name, seconds=0.25)
              for name in ("billing", "shipping", "promo", "address")}
    app = cp.router(lambda text: ["billing", "shipping", "promo", "address"], routes=routes)
    started = time.monotonic()
    result = app.invoke("q")
    elapsed = time.monotonic() - started
    assert result == {name: f"{name}:q" for name in routes}
    assert elapsed < 0.65, elapsed  # ~max (0.25 s), not the sum (1.0 s)
    assert sorted(calls.names()) == sorted(routes)


def test_routes_not_chosen_are_skipped_and_the_decision_is_recorded():
    calls = Calls()
    app = cp.router(
        lambda text: ["address", "billing"],
        routes={
            "billing": calls.agent("billing"),
            "shipping": calls.agent("shipping"),
            "address": calls.agent("address"),
        },
    )
    record = app.run("q")
    assert record.ok
    assert record.agents["route"].routes == ("address", "billing")
    assert record.agents["shipping"].status == "skipped"
    assert record.agents["billing"].status == "succeeded"
    assert record.agents["classify"].output == ["address", "billing"]
    assert record.output == {"billing": "billing:q", "address": "address:q"}
    assert "shipping" not in calls.names()


def test_unknown_intent_goes_to_default_with_the_original_input():
    calls = Calls()
    app = cp.router(
        lambda text: "weather",
        routes={"billing": calls.agent("billing")},
        default=calls.agent("fallback"),
    )
    assert app.invoke("is it raining") == {"default": "fallback:is it raining"}
    record = app.run("x")
    assert record.agents["route"].routes == ("default",)
    assert record.agents["billing"].status == "skipped"


def test_known_and_unknown_intents_together():
    calls = Calls()
    app = cp.router(
        lambda text: ["weather", "billing", "sports"],
        routes={"billing": calls.agent("billing")},
        default=calls.agent("fallback"),
    )
    assert app.invoke("q") == {"billing": "billing:q", "default": "fallback:q"}
    # Two unknown intents still run the default once.
    assert sorted(calls.names()) == ["billing", "fallback"]


def test_unknown_intent_without_default_is_an_agent_error_naming_the_intent():
    calls = Calls()
    app = cp.router(lambda text: ["billing", "weather"], routes={"billing": calls.agent("billing")})
    with pytest.raises(cp.AgentError) as info:
        app.invoke("q")
    assert "weather" in str(info.value)
    assert "billing" in str(info.value)  # the routes that exist are listed too
    assert info.value.agent == "route"
    assert isinstance(info.value.__cause__, LookupError)
    assert calls.log == []  # not even the known route ran


def test_no_intent_goes_to_default_or_fails_without_one():
    calls = Calls()
    with_default = cp.router(lambda t: [], routes={"a": calls.agent("a")},
                             default=calls.agent("fallback"))
    assert with_default.invoke("q") == {"default": "fallback:q"}

    without = cp.router(lambda t: None, routes={"a": calls.agent("a")})
    with pytest.raises(cp.AgentError, match="no intent"):
        without.invoke("q")


def test_duplicate_intents_run_the_route_once():
    calls = Calls()
    app = cp.router(lambda t: ["a", "a", "a"], routes={"a": calls.agent("a")})
    assert app.invoke("q") == {"a": "a:q"}
    assert calls.names() == ["a"]


@pytest.mark.parametrize(
    "decision",
    [
        {"intents": ["billing", "promo"]},
        {"intent": ["billing", "promo"]},
        ("billing", "promo"),
        {"promo", "billing"},
        cp.Result(["billing", "promo"], confidence=0.9),
        cp.Result({"intents": ["billing", "promo"]}, confidence=0.9),
    ],
    ids=["intents-key", "intent-key", "tuple", "set", "result", "result-of-dict"],
)
def test_classifier_output_forms(decision):
    calls = Calls()
    app = cp.router(lambda t: decision,
                    routes={"billing": calls.agent("billing"), "promo": calls.agent("promo"),
                            "shipping": calls.agent("shipping")})
    assert app.invoke("q") == {"billing": "billing:q", "promo": "promo:q"}
    assert sorted(calls.names()) == ["billing", "promo"]


def test_classifier_may_return_an_object_with_intents():
    class Decision:
        intents = ("promo",)

    calls = Calls()
    app = cp.router(lambda t: Decision(), routes={"promo": calls.agent("promo")})
    assert app.invoke("q") == {"promo": "promo:q"}


@pytest.mark.parametrize("decision", [42, ["billing", 3], {"intents": 7}])
def test_bad_classifier_output_is_an_agent_error(decision):
    app = cp.router(lambda t: decision, routes={"billing": lambda x: x})
    with pytest.raises(cp.AgentError, match="classifier must return") as info:
        app.invoke("q")
    assert isinstance(info.value.__cause__, TypeError)


def test_classifier_failure_is_an_agent_error():
    def classify(text):
        raise RuntimeError("model down")

    app = cp.router(classify, routes={"billing": lambda x: x})
    with pytest.raises(cp.AgentError) as info:
        app.invoke("q")
    assert info.value.agent == "classify"


def test_a_failing_route_fails_the_run():
    def broken(x):
        raise ValueError("route broke")

    app = cp.router(lambda t: ["ok", "bad"], routes={"ok": lambda x: x, "bad": broken})
    with pytest.raises(cp.AgentError) as info:
        app.invoke("q")
    assert info.value.agent == "bad"


def test_async_classifier_and_routes():
    async def classify(text):
        await asyncio.sleep(0.01)
        return text.split()

    def make(name):
        async def route(x):
            await asyncio.sleep(0.2)
            return name

        return route

    app = cp.router(classify, routes={"a": make("A"), "b": make("B"), "c": make("C")})
    assert app.uses_event_loop
    started = time.monotonic()
    assert asyncio.run(app.ainvoke("a c")) == {"a": "A", "c": "C"}
    assert time.monotonic() - started < 0.55
    assert app.invoke("b") == {"b": "B"}


def test_routes_can_be_patterns():
    billing = cp.sequential(lambda x: x.upper(), lambda x: f"[{x}]")
    app = cp.router(lambda t: "billing", routes={"billing": billing})
    assert app.invoke("refund") == {"billing": "[REFUND]"}
    names = [e.agent for e in app.stream("refund", stream_mode="events") if e.kind == "start"]
    assert "billing/step1" in names and "billing/step2" in names


# -- build-time errors -------------------------------------------------------------------


@pytest.mark.parametrize("routes", [{}, None, [], ["billing"], "billing"])
def test_routes_must_be_a_non_empty_dict(routes):
    with pytest.raises(cp.GraphError, match="routes must be a non-empty dict"):
        cp.router(lambda t: t, routes=routes)


@pytest.mark.parametrize("name", ["input", "classify", "route", "join"])
def test_reserved_route_names(name):
    with pytest.raises(cp.GraphError, match=f"'{name}' is reserved"):
        cp.router(lambda t: t, routes={name: lambda x: x})


def test_a_route_named_default_clashes_with_default():
    with pytest.raises(cp.GraphError, match="'default'"):
        cp.router(lambda t: t, routes={"default": lambda x: x}, default=lambda x: x)
    # Without default= the name is free.
    app = cp.router(lambda t: "default", routes={"default": lambda x: x + "!"})
    assert app.invoke("hi") == {"default": "hi!"}


@pytest.mark.parametrize("name", ["", 3])
def test_route_names_must_be_non_empty_strings(name):
    with pytest.raises(cp.GraphError, match="route names"):
        cp.router(lambda t: t, routes={name: lambda x: x})


def test_non_agents_are_refused_naming_the_role():
    with pytest.raises(cp.GraphError, match="route 'billing'"):
        cp.router(lambda t: t, routes={"billing": "billing agent"})
    with pytest.raises(cp.GraphError, match="classify"):
        cp.router("classifier", routes={"billing": lambda x: x})
    with pytest.raises(cp.GraphError, match="default"):
        cp.router(lambda t: t, routes={"billing": lambda x: x}, default=5)


def test_priorities_must_name_routes_and_be_ints():
    with pytest.raises(cp.GraphError, match="'nope'"):
        cp.router(lambda t: t, routes={"a": lambda x: x}, priorities={"nope": 1})
    with pytest.raises(cp.GraphError, match="must be an int"):
        cp.router(lambda t: t, routes={"a": lambda x: x}, priorities={"a": 1.5})
    with pytest.raises(cp.GraphError, match="must be an int"):
        cp.router(lambda t: t, routes={"a": lambda x: x}, priorities={"a": True})
    with pytest.raises(cp.GraphError, match="priorities must be a dict"):
        cp.router(lambda t: t, routes={"a": lambda x: x}, priorities=[("a", 1)])
    # "default" may be prioritised when there is a default route
    cp.router(lambda t: t, routes={"a": lambda x: x}, default=lambda x: x,
              priorities={"default": -1})
    with pytest.raises(cp.GraphError, match="'default'"):
        cp.router(lambda t: t, routes={"a": lambda x: x}, priorities={"default": 1})
