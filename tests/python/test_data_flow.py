"""What each agent receives and what a run returns."""

from __future__ import annotations

import asyncio
import functools

import pytest

import counterpoint as cp


def test_entry_agent_gets_the_run_input_object_itself():
    seen = []
    payload = {"text": "my card was charged twice"}

    def classify(x):
        seen.append(x)
        return "billing"

    app = cp.Graph().add("classify", classify).compile()
    assert app.invoke(payload) == "billing"
    assert seen == [payload]
    assert seen[0] is payload  # no copy, no conversion


def test_every_entry_agent_gets_the_input():
    seen = {}

    def make(name):
        def agent(x):
            seen[name] = x
            return name

        return agent

    g = cp.Graph()
    for name in ("a", "b", "c"):
        g.add(name, make(name))
    g.add("join", lambda d: d, after=["a", "b", "c"])
    assert g.compile().invoke("in") == {"a": "a", "b": "b", "c": "c"}
    assert seen == {"a": "in", "b": "in", "c": "in"}


def test_chain_passes_each_output_to_the_next():
    g = (
        cp.Graph()
        .add("a", lambda x: [*x, 1])
        .add("b", lambda x: [*x, 2], after="a")
        .add("c", lambda x: [*x, 3], after="b")
    )
    assert g.compile().invoke([0]) == [0, 1, 2, 3]


def test_output_object_identity_is_preserved_along_a_chain():
    marker = object()
    received = []

    def b(x):
        received.append(x)
        return x

    app = cp.Graph().add("a", lambda _: marker).add("b", b, after="a").compile()
    assert app.invoke(None) is marker
    assert received[0] is marker


def test_join_receives_dict_keyed_by_predecessor_names():
    received = []

    def reply(d):
        received.append(d)
        return f"{d['billing']}+{d['shipping']}"

    g = (
        cp.Graph()
        .add("classify", lambda x: x.upper())
        .add("billing", lambda x: f"bill({x})", after="classify")
        .add("shipping", lambda x: f"ship({x})", after="classify")
        .add("reply", reply, after=["billing", "shipping"])
    )
    assert g.compile().invoke("q") == "bill(Q)+ship(Q)"
    assert received == [{"billing": "bill(Q)", "shipping": "ship(Q)"}]
    assert type(received[0]) is dict


def test_join_with_only_one_predecessor_in_a_list_gets_the_value_not_a_dict():
    app = cp.Graph().add("a", lambda x: x * 2).add("b", lambda x: x, after=["a"]).compile()
    assert app.invoke(21) == 42


def test_join_of_entry_and_inner_agent():
    g = (
        cp.Graph()
        .add("a", lambda x: x + 1)
        .add("b", lambda x: x * 10, after="a")
        .add("j", lambda d: (d["a"], d["b"]), after=["a", "b"])
    )
    assert g.compile().invoke(1) == (2, 20)


def test_multiple_sinks_give_dict_by_sink_name():
    g = (
        cp.Graph()
        .add("classify", lambda x: x)
        .add("billing", lambda x: ("billing", x), after="classify")
        .add("shipping", lambda x: ("shipping", x), after="classify")
    )
    assert g.compile().invoke(5) == {"billing": ("billing", 5), "shipping": ("shipping", 5)}


def test_independent_agents_are_all_sinks():
    g = cp.Graph().add("x", lambda v: v + 1).add("y", lambda v: v - 1)
    assert g.compile().invoke(10) == {"x": 11, "y": 9}


def test_none_values_flow_through():
    g = cp.Graph().add("a", lambda x: None).add("b", lambda x: ("got", x), after="a")
    assert g.compile().invoke(None) == ("got", None)


def test_sink_returning_none():
    assert cp.Graph().add("a", lambda x: None).compile().invoke(1) is None


def test_runnable_object_with_invoke():
    class Runnable:
        def __init__(self):
            self.calls = []

        def invoke(self, x):
            self.calls.append(x)
            return f"runnable({x})"

    r = Runnable()
    app = cp.Graph().add("r", r).add("after", lambda x: x + "!", after="r").compile()
    assert app.invoke("hi") == "runnable(hi)!"
    assert r.calls == ["hi"]


def test_runnable_with_its_own_invoke_and_ainvoke_is_awaited():
    class Both:
        def invoke(self, x):  # pragma: no cover - the async path is the real one
            return ("sync", x)

        async def ainvoke(self, x):
            return ("async", x)

    app = cp.Graph().add("b", Both()).compile()
    assert app.invoke(1) == ("async", 1)

def test_object_with_only_ainvoke_runs_as_coroutine():
    class AsyncRunnable:
        async def ainvoke(self, x):
            asyncio.get_running_loop()  # raises if not run as a coroutine on a loop
            await asyncio.sleep(0)
            return ("ainvoke", x)

    app = cp.Graph().add("r", AsyncRunnable()).add("n", lambda v: v[1] + 1, after="r").compile()
    assert app.invoke(1) == 2
    assert asyncio.run(app.ainvoke(2)) == 3


def test_callable_object_with_async_call():
    class AsyncCallable:
        async def __call__(self, x):
            await asyncio.sleep(0)
            return x * 3

    app = cp.Graph().add("c", AsyncCallable()).compile()
    assert app.invoke(2) == 6
    assert asyncio.run(app.ainvoke(3)) == 9


def test_callable_object_with_sync_call():
    class Callable:
        def __call__(self, x):
            return x - 1

    assert cp.Graph().add("c", Callable()).compile().invoke(5) == 4


def test_functools_partial_of_sync_function():
    def scale(factor, x):
        return factor * x

    app = cp.Graph().add("p", functools.partial(scale, 4)).compile()
    assert app.invoke(5) == 20


def test_functools_partial_of_async_function():
    async def scale(factor, x):
        await asyncio.sleep(0)
        return factor * x

    app = cp.Graph().add("p", functools.partial(scale, 4)).compile()
    assert app.invoke(5) == 20
    assert asyncio.run(app.ainvoke(6)) == 24


def test_lambdas_and_builtins():
    app = cp.Graph().add("l", lambda s: s.split()).add("n", len, after="l").compile()
    assert app.invoke("a b c") == 3


def test_bound_methods():
    class Service:
        def __init__(self):
            self.prefix = "svc:"

        def handle(self, x):
            return self.prefix + x

        async def ahandle(self, x):
            return self.prefix.upper() + x

    s = Service()
    app = cp.Graph().add("h", s.handle).add("a", s.ahandle, after="h").compile()
    assert app.invoke("x") == "SVC:svc:x"


def test_mixed_sync_and_async_agents():
    async def a(x):
        await asyncio.sleep(0.01)
        return x + 1

    def b(x):
        return x * 2

    async def c(d):
        return d["a"] + d["b"]

    g = cp.Graph().add("a", a).add("b", b, after="a").add("c", c, after=["a", "b"])
    app = g.compile()
    assert app.invoke(1) == 2 + 4
    assert asyncio.run(app.ainvoke(1)) == 6


@pytest.mark.parametrize("dispatch", ["auto", "thread", "inline"])
def test_dispatch_modes_give_same_results(dispatch):
    g = (
        cp.Graph()
        .add("a", lambda x: x + 1, dispatch=dispatch)
        .add("b", lambda x: x * 2, after="a", dispatch=dispatch)
        .add("c", lambda x: x * 3, after="a", dispatch=dispatch)
        .add("d", lambda d: d["b"] + d["c"], after=["b", "c"], dispatch=dispatch)
    )
    app = g.compile()
    for i in range(50):  # "auto" switches to inline once agents measure fast
        assert app.invoke(i) == (i + 1) * 5


def test_app_is_reusable_and_runs_do_not_share_state():
    app = cp.Graph().add("a", lambda x: [x]).add("b", lambda x: [*x, len(x)], after="a").compile()
    assert [app.invoke(i) for i in range(5)] == [[i, 1] for i in range(5)]


def test_agents_in_topological_order():
    g = (
        cp.Graph()
        .add("reply", lambda d: d, after=["billing", "shipping"])
        .add("shipping", lambda x: x, after="classify")
        .add("billing", lambda x: x, after="classify")
        .add("classify", lambda x: x)
    )
    app = g.compile()
    agents = app.agents
    assert sorted(agents) == ["billing", "classify", "reply", "shipping"]
    assert agents.index("classify") < agents.index("billing") < agents.index("reply")
    assert agents.index("classify") < agents.index("shipping") < agents.index("reply")
    # a copy: mutating it does not change the app
    agents.append("x")
    assert "x" not in app.agents


def test_describe_reports_nodes_entries_sinks():
    g = (
        cp.Graph()
        .add("classify", lambda x: x)
        .add("billing", lambda x: x, after="classify", priority=3)
        .add("shipping", lambda x: x, after="classify")
        .add("reply", lambda d: d, after=["billing", "shipping"], priority=-1)
        .add("audit", lambda x: x, after="classify")
    )
    plan = g.compile().describe()
    assert plan["entries"] == ["classify"]
    assert sorted(plan["sinks"]) == ["audit", "reply"]
    nodes = {node["name"]: node for node in plan["nodes"]}
    assert set(nodes) == {"classify", "billing", "shipping", "reply", "audit"}
    assert nodes["classify"]["after"] == []
    assert nodes["billing"]["after"] == ["classify"]
    assert nodes["billing"]["priority"] == 3
    assert sorted(nodes["reply"]["after"]) == ["billing", "shipping"]
    assert nodes["reply"]["priority"] == -1
    assert nodes["shipping"]["priority"] == 0


def test_repr_mentions_agents():
    app = cp.Graph().add("only", lambda x: x).compile()
    assert "only" in repr(app)


def test_unicode_names():
    g = cp.Graph().add("clasificación", lambda x: x + 1).add("返信", lambda x: x * 2, after="clasificación")
    app = g.compile()
    assert app.invoke(1) == 4
    assert app.agents == ["clasificación", "返信"]
    g2 = cp.Graph().add("α", lambda x: 1).add("β", lambda x: 2).add("γ", lambda d: d, after=["α", "β"])
    assert g2.compile().invoke(0) == {"α": 1, "β": 2}


def test_wide_fan_out_and_join():
    g = cp.Graph().add("src", lambda x: x)
    for i in range(64):
        g.add(f"w{i}", (lambda k: lambda x: x + k)(i), after="src")
    g.add("join", lambda d: d, after=[f"w{i}" for i in range(64)])
    result = g.compile().invoke(1000)
    assert result == {f"w{i}": 1000 + i for i in range(64)}
