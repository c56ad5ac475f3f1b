"""Priorities: when several agents or events are ready together, higher ones go first.

Event delivery order is deterministic once events are ready together (the stream's
consumer is made to fall behind, so they pile up); the order in which the scheduler
*starts* ready agents depends on thread timing, so it is checked statistically.
"""

from __future__ import annotations

import collections
import threading
import time

import pytest

import counterpoint as cp

PAUSE = 0.6  # how long the consumer falls behind; every agent below ends well before


def lagging_stream(app, value):
    """Consumes app.stream(value, stream_mode="events"), pausing after the first event so that everything
    after it is ready together when the consumer looks again."""
    events = []
    for event in app.stream(value, stream_mode="events"):
        if not events:
            time.sleep(PAUSE)
        events.append(event)
    return events


def sleeper(seconds, value):
    def agent(x):
        time.sleep(seconds)
        return value

    return agent


def finish_order(events, names):
    return [e.agent for e in events if e.kind == "finish" and e.agent in names]


# -- event delivery ----------------------------------------------------------------------


def test_events_ready_together_are_streamed_highest_priority_first():
    # In time: low finishes first, then mid, then high.
    app = cp.parallel(
        low=sleeper(0.05, "low"),
        mid=sleeper(0.12, "mid"),
        high=sleeper(0.2, "high"),
        priorities={"low": -5, "mid": 5, "high": 10},
    )
    events = lagging_stream(app, None)
    finishes = {e.agent: e for e in events if e.kind == "finish"}
    assert finishes["low"].time < finishes["mid"].time < finishes["high"].time
    assert finish_order(events, {"low", "mid", "high"}) == ["high", "mid", "low"]
    # The merge declares no priority, so it inherits the highest of its branches'.
    assert {e.agent: e.priority for e in events if e.agent} == {
        "low": -5, "mid": 5, "high": 10, "merge": 10,
    }
    assert events[-1].kind == "end"
    assert events[-1].output == {"low": "low", "mid": "mid", "high": "high"}


def test_without_priorities_events_keep_the_order_they_happened_in():
    app = cp.parallel(a=sleeper(0.15, "a"), b=sleeper(0.02, "b"), c=sleeper(0.08, "c"))
    events = lagging_stream(app, None)
    assert finish_order(events, {"a", "b", "c"}) == ["b", "c", "a"]


CUSTOMER_INTENTS = ["billing", "shipping", "promo", "address"]
CUSTOMER_PRIORITIES = {"address": 10, "billing": 0, "shipping": 2, "promo": 1}


def customer_router(seconds):
    routes = {name: sleeper(seconds[name], f"{name} handled") for name in CUSTOMER_INTENTS}
    return cp.router(lambda message: CUSTOMER_INTENTS, routes=routes,
                     priorities=CUSTOMER_PRIORITIES)


def test_customer_router_streams_the_address_change_before_billing():
    """The seeds' example: a message with four intents; the address change matters most
    and billing is slow. Address's result is streamed before billing's."""
    app = customer_router({"billing": 0.3, "shipping": 0.05, "promo": 0.05, "address": 0.05})
    events = list(app.stream("I moved, was double charged, where is my parcel? any promo?", stream_mode="events"))
    order = finish_order(events, set(CUSTOMER_INTENTS))
    assert order.index("address") < order.index("billing")
    address = next(e for e in events if e.kind == "finish" and e.agent == "address")
    assert address.priority == 10
    assert address.output == "address handled"
    assert events[-1].output == {name: f"{name} handled" for name in CUSTOMER_INTENTS}


def test_customer_router_streams_address_first_even_when_billing_finished_first():
    """Same example, but the results are ready together: priority decides the order."""
    app = customer_router({"billing": 0.02, "shipping": 0.06, "promo": 0.1, "address": 0.15})
    events = lagging_stream(app, "message")
    finishes = {e.agent: e for e in events if e.kind == "finish"}
    assert finishes["billing"].time < finishes["address"].time
    assert finish_order(events, set(CUSTOMER_INTENTS)) == ["address", "shipping", "promo",
                                                           "billing"]


def test_priority_does_not_reorder_events_against_causality():
    """Priorities order events that are ready together; they must not make a route
    appear to start before the router decided to run it, or before the classifier ran."""
    app = customer_router({"billing": 0.02, "shipping": 0.02, "promo": 0.02, "address": 0.02})
    events = lagging_stream(app, "message")
    order = [(e.kind, e.agent) for e in events]
    shown = ", ".join(f"{kind} {agent}" for kind, agent in order)
    assert order.index(("finish", "classify")) < order.index(("start", "route")), shown
    for route in CUSTOMER_INTENTS:
        assert order.index(("finish", "route")) < order.index(("start", route)), shown
        assert order.index(("finish", route)) < order.index(("start", "join")), shown


def test_priorities_of_nested_pattern_agents_are_reported_on_their_events():
    inner = cp.parallel(urgent=lambda x: x, later=lambda x: x, priorities={"urgent": 7})
    app = cp.sequential(inner)
    events = list(app.stream(1, stream_mode="events"))
    by_name = {e.agent: e.priority for e in events if e.agent}
    assert by_name["step1/urgent"] == 7
    assert by_name["step1/later"] == 0


# -- start order -------------------------------------------------------------------------


def _start_order_trials(build, trials=40):
    """Runs a graph whose agents log their start ``trials`` times; returns the counts of
    which agent started first (after two warm-up runs so that "auto" agents have been
    measured)."""
    order = []
    lock = threading.Lock()

    def make(name):
        def agent(x):
            with lock:
                order.append(name)
            deadline = time.perf_counter() + 0.002  # a little CPU work, never blocks
            while time.perf_counter() < deadline:
                pass
            return name

        return agent

    app = build(make)
    firsts = collections.Counter()
    for trial in range(trials + 2):
        with lock:
            order.clear()
        app.invoke(None)
        if trial >= 2:
            firsts[order[0]] += 1
    return firsts


def _assert_mostly_first(firsts, name, trials=40):
    # By chance each of four agents would be first a quarter of the time; with priority
    # scheduling the highest one is first almost always. Generous bound against noise.
    assert firsts[name] >= 0.4 * trials, firsts
    assert firsts.most_common(1)[0][0] == name, firsts


def test_inline_agents_of_higher_priority_start_first_when_ready_together():
    def build(make):
        g = cp.Graph().add("src", lambda x: x, dispatch="inline")
        for name, priority in [("low", 0), ("mid", 5), ("high", 10), ("lower", -3)]:
            g.add(name, make(name), after="src", priority=priority, dispatch="inline")
        return g.compile()

    _assert_mostly_first(_start_order_trials(build), "high")


def test_parallel_branch_of_higher_priority_starts_first():
    def build(make):
        return cp.parallel({n: make(n) for n in ("a", "b", "c", "d")},
                           priorities={"a": 0, "b": 5, "c": 10, "d": 1})

    _assert_mostly_first(_start_order_trials(build), "c")


def test_router_route_of_higher_priority_starts_first():
    def build(make):
        return cp.router(lambda x: CUSTOMER_INTENTS,
                         routes={n: make(n) for n in CUSTOMER_INTENTS},
                         priorities=CUSTOMER_PRIORITIES)

    _assert_mostly_first(_start_order_trials(build), "address")


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priorities", "message"),
    [
        ({"nope": 1}, "'nope'"),
        ({"a": 1.5}, "must be an int"),
        ({"a": "high"}, "must be an int"),
        ({"a": False}, "must be an int"),
        ([("a", 1)], "priorities must be a dict"),
    ],
)
def test_parallel_priorities_validation(priorities, message):
    with pytest.raises(cp.GraphError, match=message):
        cp.parallel(a=lambda x: x, b=lambda x: x, priorities=priorities)


def test_graph_priority_must_be_an_int():
    with pytest.raises(cp.GraphError, match="priority must be an int"):
        cp.Graph().add("a", lambda x: x, priority="high").compile()


def test_downstream_of_an_urgent_branch_inherits_its_priority():
    g = (
        cp.Graph()
        .add("urgent", lambda x: x, priority=10)
        .add("relaxed", lambda x: x, priority=-3)
        .add("notify", lambda x: x, after="urgent")
        .add("archive", lambda x: x, after="relaxed")
        .add("explicit", lambda x: x, after="urgent", priority=2)
    )
    nodes = {n["name"]: n["priority"] for n in g.compile().describe()["nodes"]}
    assert nodes == {"urgent": 10, "relaxed": -3, "notify": 10, "archive": 0, "explicit": 2}


def test_an_explicit_zero_priority_is_kept_not_inherited():
    g = (
        cp.Graph()
        .add("urgent", lambda x: x, priority=10)
        .add("explicit_zero", lambda x: x, after="urgent", priority=0)
        .add("unset", lambda x: x, after="urgent")
    )
    nodes = {n["name"]: n["priority"] for n in g.compile().describe()["nodes"]}
    assert nodes == {"urgent": 10, "explicit_zero": 0, "unset": 10}
