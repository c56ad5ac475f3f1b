"""Graph.compile() rejects invalid graphs with a GraphError naming the node, before
anything runs."""

from __future__ import annotations

import pytest

import counterpoint as cp


def _ok(x):
    return x


class _SideEffect:
    """An agent that records every call, to prove nothing ran."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return x


def _compile_error(graph: cp.Graph) -> cp.GraphError:
    with pytest.raises(cp.GraphError) as info:
        graph.compile()
    return info.value


def test_graph_error_is_a_value_error_and_counterpoint_error():
    assert issubclass(cp.GraphError, ValueError)
    assert issubclass(cp.GraphError, cp.CounterpointError)


def test_unknown_predecessor_names_the_node_and_the_missing_name():
    effect = _SideEffect()
    g = cp.Graph().add("classify", effect).add("billing", _ok, after="clasify")
    err = _compile_error(g)
    assert err.node == "billing"
    message = str(err)
    assert "billing" in message
    assert "clasify" in message  # the missing name, so the typo is visible
    assert "after" in message  # says where to fix it
    assert effect.calls == 0


def test_unknown_predecessor_in_a_list():
    g = cp.Graph().add("a", _ok).add("b", _ok).add("join", _ok, after=["a", "b", "c"])
    err = _compile_error(g)
    assert err.node == "join"
    assert "'c'" in str(err)


def test_duplicate_name():
    effect = _SideEffect()
    g = cp.Graph().add("reply", effect).add("reply", _ok)
    err = _compile_error(g)
    assert err.node == "reply"
    assert "reply" in str(err)
    assert "unique" in str(err)
    assert effect.calls == 0


def test_duplicate_predecessor():
    g = cp.Graph().add("a", _ok).add("b", _ok, after=["a", "a"])
    err = _compile_error(g)
    assert err.node == "b"
    assert "'a'" in str(err)


def test_cycle_names_a_node_of_the_cycle_and_the_path():
    effect = _SideEffect()
    g = (
        cp.Graph()
        .add("entry", effect)
        .add("a", _ok, after=["entry", "c"])
        .add("b", _ok, after="a")
        .add("c", _ok, after="b")
    )
    err = _compile_error(g)
    assert err.node in {"a", "b", "c"}
    message = str(err)
    assert "cycle" in message
    for name in ("a", "b", "c"):
        assert f"'{name}'" in message or f" {name} " in message or f"({name}" in message
    assert "entry" not in message.split("cycle", 1)[1]  # not part of the cycle
    assert "acyclic" in message  # says what to fix
    assert effect.calls == 0


def test_self_loop():
    g = cp.Graph().add("a", _ok, after="a")
    err = _compile_error(g)
    assert err.node == "a"
    assert "itself" in str(err)


@pytest.mark.parametrize("agent", [5, "not a function", None, [_ok]])
def test_non_callable_agent(agent):
    effect = _SideEffect()
    g = cp.Graph().add("first", effect).add("broken", agent, after="first")
    err = _compile_error(g)
    assert err.node == "broken"
    message = str(err)
    assert "broken" in message
    assert "callable" in message
    assert "async def" in message or "invoke" in message  # says what to pass instead
    assert effect.calls == 0


def test_empty_graph():
    err = _compile_error(cp.Graph())
    assert err.node is None
    assert "no agents" in str(err)
    assert "add" in str(err)


@pytest.mark.parametrize("name", [3, None, ("a",), b"bytes"])
def test_non_str_name(name):
    effect = _SideEffect()
    g = cp.Graph().add("ok", effect).add(name, _ok)
    err = _compile_error(g)
    assert "string" in str(err)
    assert repr(name) in str(err)
    assert effect.calls == 0


def test_empty_name():
    g = cp.Graph().add("", _ok)
    err = _compile_error(g)
    assert "empty" in str(err)


def test_non_str_predecessor():
    g = cp.Graph().add("a", _ok).add("b", _ok, after=["a", 7])
    err = _compile_error(g)
    assert err.node == "b"
    assert "7" in str(err)


@pytest.mark.parametrize("dispatch", ["bogus", "THREAD", None, 1])
def test_bad_dispatch(dispatch):
    effect = _SideEffect()
    g = cp.Graph().add("first", effect).add("reply", _ok, after="first", dispatch=dispatch)
    err = _compile_error(g)
    assert err.node == "reply"
    message = str(err)
    assert repr(dispatch) in message
    for valid in ("auto", "thread", "inline"):
        assert valid in message  # lists the accepted values
    assert effect.calls == 0


@pytest.mark.parametrize("priority", ["high", 1.5, True])
def test_non_int_priority(priority):
    effect = _SideEffect()
    g = cp.Graph().add("first", effect).add("reply", _ok, after="first", priority=priority)
    err = _compile_error(g)
    assert err.node == "reply"
    assert "priority" in str(err)
    assert "int" in str(err)
    assert effect.calls == 0


@pytest.mark.parametrize("priority", [2**31, -(2**31) - 1, 2**64])
def test_out_of_range_priority_is_a_graph_error(priority):
    # A Python int the engine cannot represent must be reported like any other bad
    # priority: a GraphError naming the agent, not a pybind11 cast RuntimeError.
    g = cp.Graph().add("reply", _ok, priority=priority)
    err = _compile_error(g)
    assert err.node == "reply"
    assert "priority" in str(err)


@pytest.mark.parametrize("priority", [-5, 0, 7, 2**31 - 1, -(2**31)])
def test_valid_priorities_compile_and_are_described(priority):
    app = cp.Graph().add("a", _ok, priority=priority).compile()
    assert app.describe()["nodes"][0]["priority"] == priority
    assert app.invoke(3) == 3


@pytest.mark.parametrize("dispatch", ["auto", "thread", "inline"])
def test_valid_dispatch_values(dispatch):
    app = cp.Graph().add("a", lambda x: x + 1, dispatch=dispatch).compile()
    assert app.invoke(1) == 2


def test_bad_after_type_is_reported_as_graph_error_naming_the_node():
    # Graph.add documents: "Problems are reported by compile(), naming the agent."
    with pytest.raises(cp.GraphError) as info:
        cp.Graph().add("a", _ok).add("b", _ok, after=5).compile()
    assert info.value.node == "b"


def test_first_problem_wins_and_graph_is_reusable_after_fix():
    g = cp.Graph().add("a", _ok).add("b", _ok, after="missing")
    _compile_error(g)
    # A failed compile leaves nothing behind: a fixed graph compiles and runs.
    fixed = cp.Graph().add("a", lambda x: x + 1).add("b", lambda x: x * 10, after="a")
    assert fixed.compile().invoke(1) == 20


def test_add_returns_graph_for_chaining():
    g = cp.Graph()
    assert g.add("a", _ok) is g


def test_compiling_twice_gives_independent_apps():
    g = cp.Graph().add("a", lambda x: x + 1)
    first = g.compile()
    g.add("b", lambda x: x * 2, after="a")
    second = g.compile()
    assert first.invoke(1) == 2
    assert second.invoke(1) == 4
    assert first.agents == ["a"]
    assert second.agents == ["a", "b"]


@pytest.mark.parametrize("name", ["a/b", "/", "outer/inner/leaf"])
def test_names_with_a_slash_are_refused_as_it_separates_nested_agents(name):
    with pytest.raises(cp.GraphError) as info:
        cp.Graph().add(name, _ok).compile()
    assert info.value.node == name
    assert "/" in str(info.value)
