"""cp.sequential: agents one after another, each receiving the previous one's output."""

from __future__ import annotations

import asyncio
import time

import pytest

import counterpoint as cp


def extract(text):
    return text.strip()


def translate(text):
    return text.upper()


def qa(text):
    return f"<{text}>"


def test_each_agent_receives_the_previous_output_and_the_last_one_is_the_result():
    seen = []

    def a(x):
        seen.append(("a", x))
        return x + 1

    def b(x):
        seen.append(("b", x))
        return x * 10

    def c(x):
        seen.append(("c", x))
        return f"={x}"

    app = cp.sequential(a, b, c)
    assert isinstance(app, cp.CompiledGraph)
    assert app.invoke(1) == "=20"
    assert seen == [("a", 1), ("b", 2), ("c", 20)]


def test_agents_run_strictly_one_after_another():
    spans = {}

    def make(name):
        def agent(x):
            start = time.monotonic()
            time.sleep(0.05)
            spans[name] = (start, time.monotonic())
            return x

        agent.__name__ = name
        return agent

    cp.sequential(make("one"), make("two"), make("three")).invoke(0)
    assert spans["one"][1] <= spans["two"][0]
    assert spans["two"][1] <= spans["three"][0]


def test_a_list_of_agents_is_accepted():
    assert cp.sequential([extract, translate, qa]).invoke("  hi ") == "<HI>"
    assert cp.sequential((extract, translate)).invoke(" x ") == "X"


def test_a_single_agent_is_a_one_step_chain():
    app = cp.sequential(translate)
    assert app.agents == ["translate"]
    assert app.invoke("a") == "A"


def test_steps_are_named_after_the_agents_with_a_stepN_fallback():
    app = cp.sequential(extract, lambda x: x, translate, lambda x: x)
    assert app.agents == ["extract", "step2", "translate", "step4"]


def test_duplicate_agent_names_get_suffixes():
    app = cp.sequential(translate, translate, translate)
    assert app.agents == ["translate", "translate_2", "translate_3"]
    assert app.invoke("a") == "A"


def test_named_runnables_keep_their_name():
    class Runner:
        name = "runner"

        def invoke(self, x):
            return x * 10

    class AsyncOnly:
        async def ainvoke(self, x):
            return x + 5

    app = cp.sequential(Runner(), AsyncOnly())
    assert app.agents == ["runner", "step2"]
    assert app.invoke(1) == 15


def test_a_name_agent_pair_names_the_step():
    inner = cp.sequential(extract, translate)
    app = cp.sequential(("clean", inner), qa, ("final", lambda x: x + "!"))
    assert app.agents == ["clean", "qa", "final"]
    assert app.invoke(" x ") == "<X>!"
    starts = [e.agent for e in app.stream(" x ", stream_mode="events") if e.kind == "start"]
    assert starts == ["clean", "clean/extract", "clean/translate", "qa", "final"]


@pytest.mark.parametrize(
    "step",
    [("", translate), (3, translate), ("a", translate, qa), ("solo",)],
    ids=["empty-name", "int-name", "triple", "single"],
)
def test_bad_named_steps_are_graph_errors(step):
    with pytest.raises(cp.GraphError, match="sequential"):
        cp.sequential(extract, step)


def test_a_named_step_must_hold_an_agent():
    with pytest.raises(cp.GraphError, match="agent #2"):
        cp.sequential(extract, ("check", "not an agent"))


def test_step_names_must_be_unique():
    with pytest.raises(cp.GraphError, match="unique"):
        cp.sequential(("a", extract), ("a", translate))
    with pytest.raises(cp.GraphError, match="unique"):
        cp.sequential(translate, ("translate", extract))


def test_run_gives_the_per_step_audit_trail():
    app = cp.sequential(extract, translate, qa)
    result = app.run("  hi ")
    assert result.ok
    assert result.output == "<HI>"
    assert list(result.agents) == ["extract", "translate", "qa"]
    assert [o.output for o in result.agents.values()] == ["hi", "HI", "<HI>"]
    assert all(o.status == "succeeded" for o in result.agents.values())
    starts = [o.started for o in result.agents.values()]
    assert starts == sorted(starts)


def test_a_failure_stops_the_chain():
    calls = []

    def ok(x):
        calls.append("ok")
        return x

    def broken(x):
        raise ValueError("bad step")

    def never(x):
        calls.append("never")
        return x

    app = cp.sequential(ok, broken, never)
    with pytest.raises(cp.AgentError) as info:
        app.invoke(1)
    assert info.value.agent == "broken"
    assert isinstance(info.value.__cause__, ValueError)
    assert "bad step" in str(info.value)
    assert info.value.outputs == {"ok": 1}
    assert calls == ["ok"]

    record = app.run(1)
    assert record.status == "failed"
    assert record.agents["never"].status in ("skipped", "not_started")


def test_results_with_confidence_are_passed_on_and_usage_is_summed():
    app = cp.sequential(
        lambda x: cp.Result(x + 1, confidence=0.5, usage={"tokens": 3}),
        lambda r: cp.Result(r.value * 2, usage={"tokens": 4}),
    )
    record = app.run(1)
    assert record.output == cp.Result(4, usage={"tokens": 4})
    assert record.usage == {"tokens": 7.0}


def test_async_agents_with_ainvoke_and_invoke():
    async def a(x):
        await asyncio.sleep(0.01)
        return x + 1

    def b(x):
        return x * 3

    async def c(x):
        return x - 1

    app = cp.sequential(a, b, c)
    assert app.uses_event_loop
    assert asyncio.run(app.ainvoke(1)) == 5
    assert app.invoke(1) == 5


def test_stream_shows_the_steps_in_order():
    app = cp.sequential(extract, translate, qa)
    events = list(app.stream(" q ", stream_mode="events"))
    assert [(e.kind, e.agent) for e in events] == [
        ("start", "extract"),
        ("finish", "extract"),
        ("start", "translate"),
        ("finish", "translate"),
        ("start", "qa"),
        ("finish", "qa"),
        ("end", None),
    ]
    assert events[-1].output == "<Q>"


def test_batch_runs_the_chain_per_input():
    app = cp.sequential(extract, translate)
    assert app.batch([" a", "b ", " c "]) == ["A", "B", "C"]


def test_compiled_graphs_are_steps():
    inner = cp.sequential(extract, translate)
    app = cp.sequential(inner, qa)
    assert app.agents == ["step1", "qa"]
    assert app.invoke(" x ") == "<X>"


# -- build-time errors ---------------------------------------------------------------


def test_no_agents_is_a_graph_error():
    with pytest.raises(cp.GraphError, match="at least one agent"):
        cp.sequential()
    with pytest.raises(cp.GraphError, match="at least one agent"):
        cp.sequential([])


@pytest.mark.parametrize("bad", [1, "text", None, {"a": 1}, [extract]])
def test_non_agents_are_graph_errors_naming_the_position(bad):
    with pytest.raises(cp.GraphError, match=r"agent #2") as info:
        cp.sequential(extract, bad)
    assert "sequential" in str(info.value)
