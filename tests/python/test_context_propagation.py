"""Every agent call runs in a copy of its own run's caller context (contextvars): on pool
threads, inline, and on event loops alike. A run never sees another run's context, and
an agent's changes never leak into its caller or into other agents."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

import counterpoint as cp

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def _read_sync(_: object) -> str:
    return request_id.get()


def _read_blocking(_: object) -> str:
    time.sleep(0.01)  # measured slow: always on a pool thread
    return request_id.get()


async def _read_async(_: object) -> str:
    await asyncio.sleep(0)
    return request_id.get()


AGENTS = {"inline": (_read_sync, "inline"), "thread": (_read_sync, "thread"),
          "blocking": (_read_blocking, "auto"), "coroutine": (_read_async, "auto")}


def _graph(kind: str) -> cp.CompiledGraph:
    agent, dispatch = AGENTS[kind]
    return cp.Graph().add("read", agent, dispatch=dispatch).compile()


def _invoke_as(app: cp.CompiledGraph, value: str) -> str:
    token = request_id.set(value)
    try:
        return app.invoke(None)
    finally:
        request_id.reset(token)


@pytest.mark.parametrize("kind", sorted(AGENTS))
def test_each_run_sees_its_callers_context_not_the_first_runs(kind: str) -> None:
    app = _graph(kind)
    assert _invoke_as(app, "run-a") == "run-a"
    assert _invoke_as(app, "run-b") == "run-b"  # not run A's
    assert app.invoke(None) == "unset"


@pytest.mark.parametrize("kind", sorted(AGENTS))
def test_concurrent_runs_from_different_threads_keep_their_own_context(kind: str) -> None:
    app = _graph(kind)
    results: dict[str, str] = {}

    def caller(value: str) -> None:
        results[value] = _invoke_as(app, value)

    threads = [threading.Thread(target=caller, args=(f"caller-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {f"caller-{i}": f"caller-{i}" for i in range(8)}


@pytest.mark.parametrize("kind", ["coroutine", "blocking", "inline"])
def test_ainvoke_runs_agents_in_the_awaiting_tasks_context(kind: str) -> None:
    app = _graph(kind)

    async def one(value: str) -> str:
        request_id.set(value)
        return await app.ainvoke(None)

    async def main() -> list[str]:
        return await asyncio.gather(*(one(f"task-{i}") for i in range(6)))

    assert asyncio.run(main()) == [f"task-{i}" for i in range(6)]


def test_agents_changes_do_not_leak_into_the_caller_or_siblings() -> None:
    def writer(_: object) -> str:
        request_id.set("changed by an agent")
        return request_id.get()

    async def async_writer(_: object) -> str:
        request_id.set("changed by a coroutine")
        return request_id.get()

    def reader(outputs: dict[str, str]) -> str:
        return request_id.get()

    app = (cp.Graph()
           .add("writer", writer, dispatch="thread")
           .add("async_writer", async_writer)
           .add("reader", reader, after=["writer", "async_writer"])
           .compile())
    assert _invoke_as(app, "caller") == "caller"
    assert request_id.get() == "unset"


def test_nested_graphs_and_batches_inherit_the_callers_context() -> None:
    inner = _graph("coroutine")
    outer = cp.Graph().add("inner", inner).add("sync", _read_blocking, after="inner").compile()
    token = request_id.set("outer-caller")
    try:
        assert outer.invoke(None) == "outer-caller"
        assert outer.batch([None] * 5) == ["outer-caller"] * 5
        assert [e.output for e in outer.stream(None, stream_mode="events") if e.kind == "end"] == ["outer-caller"]
    finally:
        request_id.reset(token)


def test_coroutine_calls_continued_in_one_task_each_keep_their_own_context():
    # The task that ran `first` goes on to run `second` (its successor) itself; `second`
    # must still start from the run's caller context, not from what `first` set.
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen = []

    async def first(x):
        seen.append(var.get())
        var.set("first")
        await asyncio.sleep(0)
        seen.append(var.get())
        return x

    async def second(x):
        seen.append(var.get())
        var.set("second")
        await asyncio.sleep(0)
        seen.append(var.get())
        return x + 1

    app = cp.Graph().add("first", first).add("second", second, after="first").compile()

    async def main():
        var.set("caller")
        result = await app.ainvoke(1)
        return result, var.get()

    assert asyncio.run(main()) == (2, "caller")
    assert seen == ["caller", "first", "caller", "second"]
