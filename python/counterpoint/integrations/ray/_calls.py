"""How an agent is called where it runs on the cluster: the same rules as the local
engine applies (see counterpoint._agents.native_agent)."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any

from ..._agents import _is_coroutine_function, _native_graph, entry_point


def is_factory(agent: Any) -> bool:
    """A class, or a ``functools.partial`` of one: built once where it runs."""
    return inspect.isclass(agent) or (isinstance(agent, functools.partial)
                                      and inspect.isclass(agent.func))


def calling(agent: Any) -> tuple[Callable[[Any], Any], bool]:
    """``(call, is_async)``: how to call an agent (not a factory) with its input."""
    if _native_graph(agent) is not None:
        return agent.invoke, False
    return entry_point(agent)


def class_is_async(factory: Any) -> bool:
    """Whether instances of an agent class are called as coroutines, from the class."""
    cls = factory.func if isinstance(factory, functools.partial) else factory
    ainvoke = getattr(cls, "ainvoke", None)
    if ainvoke is not None and _is_coroutine_function(ainvoke) and \
            getattr(ainvoke, "__qualname__", "") != "Runnable.ainvoke":
        return True
    if callable(getattr(cls, "invoke", None)):
        return False
    return _is_coroutine_function(getattr(cls, "__call__", None))  # noqa: B004


def blocking(agent: Any) -> Callable[[Any], Any]:
    """A plain function calling ``agent``: what a Ray task runs (a coroutine agent gets
    an event loop of its own per call)."""
    call, is_async = calling(agent)
    if not is_async:
        return call

    def run_coroutine(argument: Any) -> Any:
        return asyncio.run(call(argument))

    return run_coroutine
