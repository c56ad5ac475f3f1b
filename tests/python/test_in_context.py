"""_core.InContext: an awaitable stepped with each step in a given contextvars context,
as an agent task runs the next coroutine call of its run (counterpoint/_loops.py)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from typing import Any

import pytest

from counterpoint._native import _core

who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="caller")


def context_with(value: str) -> contextvars.Context:
    context = contextvars.copy_context()
    context.run(who.set, value)
    return context


async def seen_across_steps(log: list[str]) -> tuple[str, str]:
    log.append(who.get())
    await asyncio.sleep(0)  # a step of its own: the context must hold again after it
    log.append(who.get())
    who.set("changed inside")
    await asyncio.sleep(0)
    return (who.get(), "a tuple stays one value")


def test_every_step_runs_in_the_given_context_and_none_leaks_out() -> None:
    log: list[str] = []
    context = context_with("agent")

    async def main() -> Any:
        result = await _core.InContext(context, seen_across_steps(log))
        return result, who.get()

    result, after = asyncio.run(main())
    assert log == ["agent", "agent"]
    assert result == ("changed inside", "a tuple stays one value")
    assert after == "caller"  # the awaiting task's own context is untouched
    assert context[who] == "changed inside"  # the set landed in the given context


def test_an_error_comes_out_as_itself_and_the_context_is_left() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise KeyError("boom")

    async def main() -> str:
        with pytest.raises(KeyError, match="boom"):
            await _core.InContext(context_with("agent"), fails())
        return who.get()

    assert asyncio.run(main()) == "caller"


def test_cancelling_the_task_throws_into_the_awaitable_inside_the_context() -> None:
    seen: list[str] = []

    async def waits() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append(who.get())
            raise

    async def main() -> None:
        task = asyncio.ensure_future(_core.InContext(context_with("agent"), waits()))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen == ["agent"]


def test_an_awaitable_that_is_not_a_coroutine_is_stepped_through_its_await() -> None:
    async def main() -> Any:
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, 42)
        return await _core.InContext(context_with("agent"), future)

    assert asyncio.run(main()) == 42


def test_iterator_protocol_send_throw_and_close() -> None:
    async def two_steps() -> str:
        await asyncio.sleep(0)
        return who.get()

    stepper = _core.InContext(context_with("agent"), two_steps())
    assert stepper.__await__() is stepper
    assert next(stepper) is None  # asyncio.sleep(0) yields None
    with pytest.raises(StopIteration) as stop:
        stepper.send(None)
    assert stop.value.value == "agent"

    closing = _core.InContext(context_with("agent"), two_steps())
    next(closing)
    closing.close()
    thrown = _core.InContext(context_with("agent"), two_steps())
    next(thrown)
    with pytest.raises(ValueError, match="into it"):
        thrown.throw(ValueError("into it"))


def test_misuse_is_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match="Context"):
        _core.InContext("not a context", object())
    with pytest.raises(TypeError, match="needs an awaitable, got int"):
        _core.InContext(contextvars.copy_context(), 3)
    with pytest.raises(TypeError, match="keywords"):
        _core.InContext(context=contextvars.copy_context(), awaitable=None)


def test_a_cycle_through_the_context_is_collected() -> None:
    class Holder:
        pass

    async def parked() -> None:
        await asyncio.sleep(0)

    holder = Holder()
    context = contextvars.copy_context()
    coroutine = parked()
    stepper = _core.InContext(context, coroutine)
    holder.stepper = stepper  # type: ignore[attr-defined]
    context.run(who.set, holder)  # type: ignore[arg-type]  # context -> holder -> stepper -> context
    gone = weakref.ref(holder)
    coroutine.close()
    del holder, stepper, context, coroutine
    gc.collect()
    assert gone() is None
