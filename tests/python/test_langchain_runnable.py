"""A compiled graph is a LangChain Runnable: LCEL composition on both sides, config on
every entry point, batch limits, streaming, and the Runnable wrappers."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

pytest.importorskip("langchain_core")

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableLambda,
    RunnableParallel,
)

import counterpoint as cp


def _upper(text):
    return text.upper()


def _review_app():
    return cp.parallel(
        security=lambda diff: f"security ok: {diff}",
        style=lambda diff: f"style ok: {diff}",
        merge=lambda outputs: " | ".join(outputs[k] for k in sorted(outputs)),
    )


def test_a_compiled_graph_is_a_runnable():
    app = cp.Graph().add("up", _upper).compile()
    assert isinstance(app, Runnable)
    assert isinstance(app, cp.CompiledGraph)
    assert app.invoke("x") == "X"
    assert app.invoke("x", {"tags": ["t"]}) == "X"


def test_lcel_composition_on_both_sides():
    prompt = ChatPromptTemplate.from_template("Review: {diff}")
    app = cp.Graph().add("text", lambda value: value.to_string()).add(
        "up", _upper, after="text").compile()
    chain = prompt | app | StrOutputParser()
    assert chain.invoke({"diff": "a+b"}) == "HUMAN: REVIEW: A+B"
    assert list(chain.stream({"diff": "a"})) == ["HUMAN: REVIEW: A"]
    assert asyncio.run(chain.ainvoke({"diff": "c"})) == "HUMAN: REVIEW: C"
    assert chain.batch([{"diff": "1"}, {"diff": "2"}]) == ["HUMAN: REVIEW: 1",
                                                         "HUMAN: REVIEW: 2"]


def test_inside_runnable_parallel_and_with_plain_functions():
    app = _review_app()
    both = RunnableParallel(review=app, length=RunnableLambda(len))
    out = both.invoke("diff")
    assert out == {"review": "security ok: diff | style ok: diff", "length": 4}
    piped = RunnableLambda(lambda s: s.strip()) | app | (lambda merged: merged.lower())
    assert piped.invoke("  D ") == "security ok: d | style ok: d"


def test_runnable_wrappers():
    calls = []

    def flaky(x):
        calls.append(x)
        if len(calls) < 2:
            raise ValueError("first call fails")
        return x * 2

    app = cp.Graph().add("flaky", flaky).compile()
    retried = app.with_retry(stop_after_attempt=3, wait_exponential_jitter=False)
    assert retried.invoke(4) == 8
    assert len(calls) == 2

    broken = cp.Graph().add("boom", lambda x: 1 / 0).compile()
    assert broken.with_fallbacks([RunnableLambda(lambda x: "fallback")]).invoke(1) == "fallback"

    seen = []

    def tagged(x):
        from langchain_core.runnables.config import ensure_config
        seen.append(ensure_config().get("tags"))
        return x

    configured = cp.Graph().add("tagged", tagged).compile().with_config(tags=["outer"])
    assert configured.invoke(1) == 1
    assert "outer" in seen[0]

    bound = cp.Graph().add("d", lambda x: x).compile().bind(deadline=5)
    assert bound.invoke(3) == 3


def test_every_entry_point_accepts_config():
    app = cp.Graph().add("up", _upper).compile()
    config: RunnableConfig = {"tags": ["a"], "metadata": {"k": 1}, "run_name": "r"}
    assert app.invoke("x", config) == "X"
    assert asyncio.run(app.ainvoke("x", config)) == "X"
    assert app.batch(["x", "y"], config) == ["X", "Y"]
    assert asyncio.run(app.abatch(["x", "y"], [config, config])) == ["X", "Y"]
    assert list(app.stream("x", config)) == ["X"]

    async def collect():
        return [chunk async for chunk in app.astream("x", config)]

    assert asyncio.run(collect()) == ["X"]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_batch_honours_max_concurrency(asynchronous):
    active = 0
    peak = 0
    lock = threading.Lock()

    def slow(x):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        return x

    app = cp.Graph().add("slow", slow, dispatch="thread").compile()
    inputs = list(range(12))
    if asynchronous:
        out = asyncio.run(app.abatch(inputs, {"max_concurrency": 3}))
    else:
        out = app.batch(inputs, {"max_concurrency": 3})
    assert out == inputs
    assert 1 <= peak <= 3


def test_batch_return_exceptions_keeps_order():
    def maybe(x):
        if x == 1:
            raise ValueError("one")
        return x

    app = cp.Graph().add("maybe", maybe).compile()
    out = app.batch([0, 1, 2], return_exceptions=True)
    assert out[0] == 0 and out[2] == 2
    assert isinstance(out[1], cp.AgentError)
    with pytest.raises(cp.AgentError):
        app.batch([0, 1, 2])


def test_async_runnable_agents_run_on_the_callers_loop():
    threads = {}

    async def on_loop(x):
        threads["agent"] = threading.get_ident()
        await asyncio.sleep(0)
        return x + 1

    app = cp.Graph().add("a", RunnableLambda(on_loop)).compile()

    async def main():
        threads["caller"] = threading.get_ident()
        return await app.ainvoke(1, {"tags": ["x"]})

    assert asyncio.run(main()) == 2
    assert threads["agent"] == threads["caller"]


def test_stream_modes_validated():
    app = cp.Graph().add("up", _upper).compile()
    with pytest.raises(ValueError, match="unknown stream_mode 'nope'"):
        app.stream("x", stream_mode="nope")
    with pytest.raises(ValueError, match="non-empty list"):
        app.stream("x", stream_mode=[])


def test_schemas_and_names():
    app = cp.Graph().add("up", _upper).compile()
    assert app.get_name() == "CompiledGraph"
    assert app.with_config(run_name="review").invoke("a") == "A"
    assert app.get_input_schema() is not None
    assert app.get_output_schema() is not None
