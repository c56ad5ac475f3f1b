"""Graph builder and compiled graph: the public face of the native engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

from ._agents import native_agent
from ._errors import GraphError
from ._events import Event
from ._loops import bridge_for_running_loop, engine_dispatcher
from ._native import _core
from ._run import Run, RunResult, as_exception, unwrap

# How long one wait for events lasts before Python gets a chance to see Ctrl-C.
_EVENT_SLICE = 0.05
_JOINS = ("all", "any", "available", "settled")
_GRAPH_ERROR_MODES = ("fail", "continue")
_NODE_ERROR_MODES = ("inherit", "fail", "continue")


def _check_max_concurrency(max_concurrency: Any) -> None:
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise ValueError(f"max_concurrency must be a positive int or None, got {max_concurrency!r}")


class Graph:
    """A mutable description of agents and the order they depend on each other.

    Each agent receives what it needs and nothing else: an agent with no predecessors
    receives the run input, an agent with one predecessor receives that agent's output,
    and an agent with several receives ``{predecessor_name: output}``.

    Example:
        >>> g = Graph()
        >>> g.add("classify", classify)
        >>> g.add("billing", billing, after="classify")
        >>> app = g.compile()
        >>> app.invoke("my card was charged twice")
    """

    def __init__(self, *, on_error: str = "fail") -> None:
        """Creates an empty graph.

        Args:
            on_error: What an agent's failure does by default: ``"fail"`` ends the run
                at once (fail fast); ``"continue"`` lets siblings run on and skips only
                the agents that needed the failed one.
        """
        if on_error not in _GRAPH_ERROR_MODES:
            raise GraphError(
                f"on_error={on_error!r} is not one of {', '.join(map(repr, _GRAPH_ERROR_MODES))}"
            )
        self._on_error = on_error
        self._nodes: list[tuple[str, Any, list[str], int, str, str, str]] = []

    def add(
        self,
        name: str,
        agent: Any,
        *,
        after: str | Sequence[str] | None = None,
        priority: int = 0,
        dispatch: str = "auto",
        join: str = "all",
        on_error: str = "inherit",
    ) -> Graph:
        """Adds an agent. Problems are reported by :meth:`compile`, naming the agent.

        Args:
            name: Unique name; also the key of this agent's output in joins and results.
            agent: A function, an ``async def`` function, or an object with an
                ``invoke`` (run on the thread pool) or ``ainvoke`` (run as a coroutine)
                method.
            after: Name or names of the agents whose outputs this one receives.
            priority: When several agents are ready at once, higher ones are scheduled
                first.
            dispatch: For plain callables: ``"auto"`` runs the agent inline on an engine
                thread while it measures fast and on the thread pool otherwise;
                ``"thread"`` always uses the pool; ``"inline"`` always runs inline (only
                for agents that never block).
            join: When an agent with several predecessors runs: ``"all"`` (every one
                succeeded, else it is skipped), ``"any"`` (the first to succeed, as
                ``{name: output}``), ``"available"`` (once all ended, with those that
                succeeded) or ``"settled"`` (once all ended, failures included as
                :class:`Failed`).
            on_error: ``"fail"`` or ``"continue"`` for this agent; ``"inherit"`` takes
                the graph's.

        Returns:
            The graph, so calls can be chained.
        """
        if after is None:
            predecessors: list[str] = []
        elif isinstance(after, str):
            predecessors = [after]
        else:
            predecessors = list(after)
        self._nodes.append((name, agent, predecessors, priority, dispatch, join, on_error))
        return self

    def compile(self) -> CompiledGraph:
        """Validates the graph and wires it into the native engine.

        Raises:
            GraphError: naming the agent and the problem (empty graph, duplicate or
                invalid name, unknown predecessor, cycle, non-callable agent).
        """
        native_nodes = []
        has_async = False
        for name, agent, predecessors, priority, dispatch, join, on_error in self._nodes:
            if not isinstance(name, str):
                raise GraphError(
                    f"agent names must be strings, got {name!r} ({type(name).__name__})"
                )
            for predecessor in predecessors:
                if not isinstance(predecessor, str):
                    raise GraphError(
                        f"agent '{name}': `after` must name agents by string, got "
                        f"{predecessor!r}",
                        name,
                    )
            if isinstance(priority, bool) or not isinstance(priority, int):
                raise GraphError(f"agent '{name}': priority must be an int, got {priority!r}", name)
            if join not in _JOINS:
                raise GraphError(
                    f"agent '{name}': join={join!r} is not one of {', '.join(map(repr, _JOINS))}",
                    name,
                )
            if on_error not in _NODE_ERROR_MODES:
                raise GraphError(
                    f"agent '{name}': on_error={on_error!r} is not one of "
                    f"{', '.join(map(repr, _NODE_ERROR_MODES))}",
                    name,
                )
            handle, is_async = native_agent(name, agent, dispatch)
            has_async = has_async or is_async
            native_nodes.append((name, handle, predecessors, priority, join, on_error))
        try:
            core = _core.CompiledGraph(native_nodes, self._on_error)
        except _core.InvalidGraph as exc:
            message, node = exc.args
            raise GraphError(message, node or None) from None
        return CompiledGraph(core, has_async)


class CompiledGraph:
    """An immutable, validated graph. Thread-safe: any number of runs may share it.

    A compiled graph is also an agent: add it to another graph (or pass it to a pattern)
    and each call becomes a child run, scheduled natively, cancelled with its parent,
    its events streamed as ``"<agent>/<child agent>"``.
    """

    def __init__(self, core: Any, has_async: bool) -> None:
        self._core = core
        self._has_async = has_async

    @property
    def uses_event_loop(self) -> bool:
        """True if some agent (at any depth) is a coroutine."""
        return self._has_async

    @property
    def agents(self) -> list[str]:
        """Agent names in a topological order."""
        return list(self._core.names)

    def describe(self) -> dict[str, Any]:
        """The compiled plan: nodes with their predecessors, entries and sinks."""
        return json.loads(self._core.plan_json())

    def _dispatcher(self) -> Any:
        return engine_dispatcher() if self._has_async else None

    def start(self, input: Any) -> Run:
        """Starts a run and returns its handle at once (wait, cancel, result, record)."""
        return Run(self._core.start(input, self._dispatcher()))

    def run(self, input: Any) -> RunResult:
        """Runs the graph and returns a :class:`RunResult` with every agent's outcome,
        instead of raising when an agent fails."""
        return self.start(input).record()

    def invoke(self, input: Any) -> Any:
        """Runs the graph on ``input`` and returns the sink's output.

        With several sinks the result is ``{sink_name: output}``. The GIL is released
        while the run executes; Ctrl-C cancels the run and raises KeyboardInterrupt.

        Raises:
            AgentError: an agent raised; its exception is ``__cause__``.
        """
        return unwrap(self._core.invoke(input, self._dispatcher()))

    async def ainvoke(self, input: Any) -> Any:
        """Like :meth:`invoke`, awaited; coroutine agents run on the caller's loop.

        Cancelling the awaiting task cancels the run.
        """
        bridge = bridge_for_running_loop()
        run = self._core.start(input, bridge.dispatcher)
        finished = bridge.run_finished(run.id)
        try:
            await finished
        except asyncio.CancelledError:
            run.cancel()
            raise
        finally:
            bridge.forget(run.id)
        return unwrap(run.result())

    def stream(self, input: Any) -> Iterator[Event]:
        """Runs the graph, yielding an :class:`Event` for each agent start, finish and
        error as it happens, then an ``"end"`` event carrying the result.

        Closing the iterator early cancels the run.

        Raises:
            AgentError: after yielding the failing agent's ``"error"`` event.
        """
        run = self._core.start(input, self._dispatcher(), True)
        try:
            more = True
            while more:
                rows, more = run.next_events(_EVENT_SLICE)
                for row in rows:
                    yield Event._from_native(row)
            run.wait()
            result = unwrap(run.result())
            yield Event("end", None, run.id, run.elapsed, result)
        finally:
            run.cancel()

    async def astream(self, input: Any) -> AsyncIterator[Event]:
        """Like :meth:`stream`, for ``async for``; coroutine agents run on the caller's loop."""
        bridge = bridge_for_running_loop()
        run = self._core.start(input, bridge.dispatcher, True)
        ready = bridge.events_ready(run.id)
        try:
            while True:
                ready.clear()
                rows, more = run.next_events(0.0)
                for row in rows:
                    yield Event._from_native(row)
                if not more:
                    break
                if not rows:
                    await ready.wait()
            yield Event("end", None, run.id, run.elapsed, unwrap(run.result()))
        finally:
            run.cancel()
            bridge.forget(run.id)

    def batch(
        self,
        inputs: Iterable[Any],
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Runs the graph once per input, concurrently; results come in input order.

        Runs are independent: one failing does not affect the others.

        Args:
            inputs: One input per run.
            max_concurrency: At most this many runs in flight (default: all).
            return_exceptions: Put each failed run's AgentError in its place instead of
                raising the first one (in input order) after every run has finished.
        """
        _check_max_concurrency(max_concurrency)
        results = self._core.batch(list(inputs), self._dispatcher(), max_concurrency or 0)
        if return_exceptions:
            return [as_exception(result) for result in results]
        return [unwrap(result) for result in results]

    async def abatch(
        self,
        inputs: Iterable[Any],
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Like :meth:`batch`, awaited; coroutine agents run on the caller's loop."""
        _check_max_concurrency(max_concurrency)
        limit = asyncio.Semaphore(max_concurrency) if max_concurrency else None

        async def one(item: Any) -> Any:
            if limit is None:
                return await self.ainvoke(item)
            async with limit:
                return await self.ainvoke(item)

        return await asyncio.gather(*(one(item) for item in inputs),
                                    return_exceptions=return_exceptions)

    def __repr__(self) -> str:
        return f"CompiledGraph(agents={self.agents})"
