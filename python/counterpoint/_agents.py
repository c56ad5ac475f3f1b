"""Turns what users pass as agents into native engine agents."""

from __future__ import annotations

import inspect
from typing import Any

from ._errors import GraphError
from ._native import _core

_DISPATCH = {
    "auto": _core.Dispatch.AUTO,
    "inline": _core.Dispatch.INLINE,
    "thread": _core.Dispatch.THREAD,
}


def _is_coroutine_function(obj: Any) -> bool:
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(type(obj), "__call__", None)
    return call is not None and not inspect.isroutine(obj) and inspect.iscoroutinefunction(call)


def native_agent(name: str, agent: Any, dispatch: str) -> tuple[Any, bool]:
    """Returns ``(native_agent, is_async)`` for a callable, coroutine function or runnable.

    A compiled graph runs as a native child run. Objects with an ``invoke`` method
    (LangChain-style runnables) run ``invoke`` on the thread pool; objects with only
    ``ainvoke`` run it as a coroutine.
    """
    if dispatch not in _DISPATCH:
        raise GraphError(
            f"agent '{name}': dispatch={dispatch!r} is not one of "
            f"{', '.join(repr(d) for d in _DISPATCH)}",
            name,
        )
    from ._policies import Policed

    if isinstance(agent, Policed):
        return agent._native(name, native_agent, dispatch)
    native_graph = getattr(agent, "_core", None)
    if isinstance(native_graph, _core.CompiledGraph):
        return _core.SubgraphAgent(native_graph), agent.uses_event_loop
    if not inspect.isclass(agent):
        invoke = getattr(agent, "invoke", None)
        if callable(invoke):
            return _core.SyncAgent(invoke, _DISPATCH[dispatch]), False
        ainvoke = getattr(agent, "ainvoke", None)
        if callable(ainvoke) and _is_coroutine_function(ainvoke):
            return _core.AsyncAgent(ainvoke), True
    if _is_coroutine_function(agent):
        return _core.AsyncAgent(agent), True
    if callable(agent):
        return _core.SyncAgent(agent, _DISPATCH[dispatch]), False
    raise GraphError(
        f"agent '{name}': a {type(agent).__name__} is not callable; pass a function, an "
        "`async def` function, or an object with an invoke() or ainvoke() method",
        name,
    )


def uses_event_loop(agent: Any) -> bool:
    """True if running ``agent`` needs an event loop (a coroutine at any depth)."""
    from ._policies import Policed

    if agent is None:
        return False
    if isinstance(agent, Policed):
        return uses_event_loop(agent.agent) or uses_event_loop(agent.fallback)
    native_graph = getattr(agent, "_core", None)
    if isinstance(native_graph, _core.CompiledGraph):
        return bool(agent.uses_event_loop)
    if not inspect.isclass(agent):
        if callable(getattr(agent, "invoke", None)):
            return False
        ainvoke = getattr(agent, "ainvoke", None)
        if callable(ainvoke) and _is_coroutine_function(ainvoke):
            return True
    return _is_coroutine_function(agent)
