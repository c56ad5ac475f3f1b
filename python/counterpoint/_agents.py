"""Turns what users pass as agents into native engine agents."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from concurrent.futures import Future
from types import FunctionType
from typing import Any

from ._errors import GraphError
from ._native import _core

DISPATCH = {mode.name: mode for mode in _core.Dispatch}


def _is_coroutine_function(obj: Any) -> bool:
    if inspect.iscoroutinefunction(obj):
        return True
    # The class's __call__, not callable(obj): is *calling* it a coroutine function?
    call = getattr(type(obj), "__call__", None)  # noqa: B004
    return call is not None and not inspect.isroutine(obj) and inspect.iscoroutinefunction(call)


class SubmittingAgent:
    """An agent whose calls run elsewhere (a Ray task or actor, see
    counterpoint.integrations.ray). :meth:`submit` starts one call and returns a
    ``concurrent.futures.Future``; the engine resolves the agent from that future's done
    callback, so neither a thread nor an event loop waits for the work. The future's
    ``cancel()`` (a timeout, the run's end) must stop the work.

    Wrapped in something that calls it (typed handoff checks, a cache), the agent runs
    as the coroutine :meth:`__call__`, which awaits the same future.
    """

    def submit(self, argument: Any) -> Future[Any]:
        raise NotImplementedError

    async def __call__(self, argument: Any) -> Any:
        # Cancelling this await cancels the future: asyncio.wrap_future chains cancels.
        return await asyncio.wrap_future(self.submit(argument))


def _native_graph(agent: Any) -> Any:
    """The engine graph behind a compiled graph, or None for any other agent."""
    native = getattr(agent, "_native", None)
    return native if isinstance(native, _core.CompiledGraph) else None


def _async_path_is_real(agent: Any) -> bool:
    """True when an object with both ``invoke`` and ``ainvoke`` should be awaited.

    LangChain's base ``Runnable.ainvoke`` only runs ``invoke`` in an executor, so the
    sync path is as good and runs on the engine's own pool; a ``RunnableLambda`` built on
    a coroutine function has ``afunc`` and no ``func`` (its ``invoke`` raises). Any other
    ``ainvoke`` written by the object's own class is a real async path.
    """
    ainvoke = getattr(agent, "ainvoke", None)
    if not callable(ainvoke) or not _is_coroutine_function(ainvoke):
        return False
    if getattr(agent, "afunc", None) is not None:
        return getattr(agent, "func", None) is None
    if hasattr(agent, "afunc") or hasattr(agent, "func"):
        return False  # a RunnableLambda on a plain function: its sync path is the real one
    owner = getattr(type(agent).ainvoke, "__qualname__", "")
    return owner != "Runnable.ainvoke"


def _declares_loop(agent: Any) -> bool:
    """A sync agent that delegates to graphs with coroutine agents says so with a
    ``uses_event_loop = True`` attribute, so runs get an event loop."""
    return getattr(agent, "uses_event_loop", False) is True


def check_agent(owner: str, role: str, agent: Any) -> None:
    """Rejects non-agents when a graph or pattern is built, naming the role to fix."""
    if _native_graph(agent) is not None or getattr(agent, "_is_agent_spec", False):
        return
    if callable(agent):
        return
    if not inspect.isclass(agent) and (
        callable(getattr(agent, "invoke", None)) or callable(getattr(agent, "ainvoke", None))
    ):
        return
    raise GraphError(
        f"{owner}: {role} must be a function, an `async def` function, a compiled graph "
        f"or an object with invoke()/ainvoke(), got {type(agent).__name__}"
    )


# Wraps the callable that runs (and whether it is a coroutine function) to check what
# goes in and comes out: typed handoffs (see _handoffs.checked).
Checked = Callable[[Callable[[Any], Any], bool], Callable[[Any], Any]]


def entry_point(agent: Any) -> tuple[Any, bool]:
    """``(call, is_async)``: what the engine calls for an agent that is not a compiled
    graph, and whether it is a coroutine function. A runnable's ``ainvoke`` when it is a
    real async path (see :func:`_async_path_is_real`), else its ``invoke``, else its
    ``ainvoke``; the agent itself otherwise."""
    if type(agent) is FunctionType:  # the common case, without probing for methods
        return agent, inspect.iscoroutinefunction(agent)
    if not inspect.isclass(agent):
        if _async_path_is_real(agent):
            return agent.ainvoke, True
        invoke = getattr(agent, "invoke", None)
        if callable(invoke):
            return invoke, False
        ainvoke = getattr(agent, "ainvoke", None)
        if callable(ainvoke) and _is_coroutine_function(ainvoke):
            return ainvoke, True
    return agent, _is_coroutine_function(agent)


def native_agent(name: str, agent: Any, dispatch: _core.Dispatch,
                 checked: Checked | None = None) -> tuple[Any, bool]:
    """Returns ``(native_agent, is_async)`` for a callable, coroutine function or runnable.

    A compiled graph runs as a native child run. Objects with an ``invoke`` method
    (LangChain-style runnables) run ``invoke`` on the thread pool, unless their
    ``ainvoke`` is a real async path (see :func:`_async_path_is_real`), which then runs
    as a coroutine, as do objects with only ``ainvoke``. With ``checked``, the callable
    chosen runs inside what it returns.
    """
    def sync(call: Any) -> tuple[Any, bool]:
        call = call if checked is None else checked(call, False)
        return _core.SyncAgent(call, dispatch), _declares_loop(agent)

    def coroutine(call: Any) -> tuple[Any, bool]:
        return _core.AsyncAgent(call if checked is None else checked(call, True)), True

    if type(agent) is not FunctionType:  # the common case needs no probing for a graph
        graph = _native_graph(agent)
        if graph is not None:
            return _core.SubgraphAgent(graph), bool(agent.uses_event_loop)
        if isinstance(agent, SubmittingAgent) and checked is None:
            return _core.FutureAgent(agent.submit), False  # no event loop needed
    call, is_async = entry_point(agent)
    if is_async:
        return coroutine(call)
    if callable(call):
        return sync(call)
    raise GraphError(
        f"agent '{name}': a {type(agent).__name__} is not callable; pass a function, an "
        "`async def` function, or an object with an invoke() or ainvoke() method",
        name,
    )


def submits_calls(agent: Any) -> bool:
    """True if running ``agent`` submits calls that run elsewhere (a submitting agent,
    or a compiled graph with one at any depth)."""
    return isinstance(agent, SubmittingAgent) or getattr(agent, "submits_calls", None) is True


def uses_event_loop(agent: Any) -> bool:
    """True if running ``agent`` needs an event loop (a coroutine at any depth)."""
    if agent is None:
        return False
    declared = getattr(agent, "uses_event_loop", None)
    if isinstance(declared, bool):  # compiled graphs and agents with policies say so
        return declared
    if not inspect.isclass(agent):
        if _async_path_is_real(agent):
            return True
        if callable(getattr(agent, "invoke", None)):
            return False
        ainvoke = getattr(agent, "ainvoke", None)
        if callable(ainvoke) and _is_coroutine_function(ainvoke):
            return True
    return _is_coroutine_function(agent)
