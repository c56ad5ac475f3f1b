"""A compiled graph that is a LangChain Runnable: it composes with ``|`` on either side,
sits inside ``RunnableParallel``, takes ``config`` on every entry point, and reports a
chain run per agent to the callbacks it is given."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks.manager import CallbackManagerForChainRun
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import (
    ensure_config,
    get_callback_manager_for_config,
    get_config_list,
    var_child_runnable_config,
)
from langchain_core.runnables.graph import Graph as DrawableGraph

from ..._graph import CompiledGraph
from ..._progress import progress_label
from ..._streaming import AgentObserver, StreamModes
from ._callbacks import CallbackObserver, stepped
from ._drawing import plan_graph
from ._schemas import input_schema, output_schema

# Config keys that change what agents see; without them and without callbacks a run
# needs no observer and takes the engine's fast path.
_PROPAGATED = ("tags", "metadata", "configurable")


def _max_concurrency(kwargs: dict[str, Any], configs: list[RunnableConfig]) -> Any:
    """``max_concurrency=`` as counterpoint's keyword, else from the (first) config."""
    if "max_concurrency" in kwargs:
        return kwargs.pop("max_concurrency")
    return configs[0].get("max_concurrency") if configs else None


def _handlers(config: RunnableConfig) -> bool:
    """Whether the config's callbacks (a list or a manager) hold any handler."""
    callbacks = config.get("callbacks")
    return bool(callbacks and getattr(callbacks, "handlers", callbacks))


def _needs_observer(config: RunnableConfig) -> bool:
    return _handlers(config) or any(config.get(key) for key in _PROPAGATED)


def _report(run_manager: CallbackManagerForChainRun | None, output: Any = None,
            error: BaseException | None = None) -> None:
    """Ends the graph's chain run, if callbacks listen to it."""
    if run_manager is None:
        return
    if error is not None:
        run_manager.on_chain_error(error)
    else:
        run_manager.on_chain_end(output)


_ambient_config = var_child_runnable_config.get


def _unconfigured(config: RunnableConfig | None) -> bool:
    """Called as a plain counterpoint graph: no config given, none ambient (no LangChain
    run around the call), so there is nothing to honour and no LangChain cost to pay."""
    return config is None and _ambient_config() is None
_plain_invoke = CompiledGraph.invoke
_plain_ainvoke = CompiledGraph.ainvoke


class RunnableGraph(CompiledGraph, Runnable[Any, Any]):
    """A :class:`~counterpoint.CompiledGraph` that is also a LangChain ``Runnable``.

    ``compile()`` returns one whenever langchain-core is installed. Every entry point
    takes a ``config`` (a ``RunnableConfig``): its callbacks see one chain run for the
    graph and one per agent call (named by the agent's path), its tags and metadata are
    inherited by them, and Runnable agents (and runnables called inside plain agents)
    receive the agent's child config. ``max_concurrency`` bounds ``batch``/``abatch``.
    Keyword arguments of the engine (``budget=``, ``deadline=``) pass through.
    """

    name: str | None = None

    # ---- describing -----------------------------------------------------------------

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        base = name or self.name or "CompiledGraph"
        return f"{base}{suffix}" if suffix else base

    @property
    def InputType(self) -> Any:
        return Any

    @property
    def OutputType(self) -> Any:
        return Any

    def get_input_schema(self, config: RunnableConfig | None = None) -> Any:
        return input_schema(self, config, name=self.get_name())

    def get_output_schema(self, config: RunnableConfig | None = None) -> Any:
        return output_schema(self, config, name=self.get_name())

    def get_graph(self, config: RunnableConfig | None = None, *,
                  xray: bool | int = True) -> DrawableGraph:
        """Nodes and edges of the compiled plan, nested patterns expanded (``xray``),
        for ``draw_mermaid()``, ``draw_ascii()`` and ``draw_png()``."""
        return plan_graph(self, xray=xray)

    # ---- one run --------------------------------------------------------------------

    def _observed(self, input: Any, config: RunnableConfig | None, *, publish: bool = False,
                  messages: bool = False
                  ) -> tuple[CallbackManagerForChainRun | None, AgentObserver | None]:
        """The graph's chain run (None when no handler listens) and the run's observer
        (None when agents need neither a config nor a channel: the fast path)."""
        config = ensure_config(config)
        if not _needs_observer(config):
            if messages:
                return None, CallbackObserver(config, None, publish=publish, messages=True)
            return None, AgentObserver() if publish else None
        run_manager = None
        if _handlers(config):
            manager = stepped(get_callback_manager_for_config(config))
            run_manager = manager.on_chain_start(
                None, input, run_id=config.pop("run_id", None),
                name=config.get("run_name") or self.get_name(),
            )
        return run_manager, CallbackObserver(config, run_manager, publish=publish,
                                             messages=messages)

    def invoke(self, input: Any, config: RunnableConfig | None = None, *,
               budget: Mapping[str, float] | None = None, deadline: float | None = None,
               **kwargs: Any) -> Any:
        if _unconfigured(config):
            # Called as a plain counterpoint graph: no config to honour, no LangChain
            # cost (ensure_config alone is a few microseconds, most of a small run).
            return _plain_invoke(self, input, budget=budget, deadline=deadline)
        run_manager, observer = self._observed(input, config)
        if observer is None:
            return _plain_invoke(self, input, budget=budget, deadline=deadline)
        try:
            output = self._launch(input, self._dispatcher(), observer=observer, budget=budget,
                                  deadline=deadline).result()
        except BaseException as exc:
            _report(run_manager, error=exc)
            raise
        _report(run_manager, output)
        return output

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, *,
                      budget: Mapping[str, float] | None = None,
                      deadline: float | None = None, **kwargs: Any) -> Any:
        run_manager, observer = (None, None) if _unconfigured(config) \
            else self._observed(input, config)
        try:
            output = await self._ainvoke_observed(input, observer, budget=budget,
                                                  deadline=deadline)
        except BaseException as exc:
            _report(run_manager, error=exc)
            raise
        _report(run_manager, output)
        return output

    # ---- several runs ---------------------------------------------------------------

    def batch(self, inputs: Iterable[Any],
              config: RunnableConfig | list[RunnableConfig] | None = None,
              *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        budget, deadline = kwargs.get("budget"), kwargs.get("deadline")
        if kwargs.get("executor") is not None:
            # The runs happen on Ray actors, which no callback handler here can follow.
            return CompiledGraph.batch(self, inputs, return_exceptions=return_exceptions,
                                       **kwargs)
        label = progress_label(kwargs.get("progress", False))
        if _unconfigured(config):
            return self._batch(inputs, kwargs.get("max_concurrency"), return_exceptions,
                               budget, deadline, progress=label)
        inputs = list(inputs)
        configs = get_config_list(config, len(inputs))
        max_concurrency = _max_concurrency(kwargs, configs)
        opened = [self._observed(item, cfg) for item, cfg in zip(inputs, configs)]
        if all(observer is None for _, observer in opened):
            return self._batch(inputs, max_concurrency, return_exceptions, budget, deadline,
                               progress=label)
        results = self._batch(inputs, max_concurrency, True, budget, deadline,
                              [observer for _, observer in opened], progress=label)
        for (manager, _), result in zip(opened, results):
            if isinstance(result, BaseException):
                _report(manager, error=result)
            else:
                _report(manager, result)
        if not return_exceptions:
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        return results

    async def abatch(self, inputs: Iterable[Any],
                     config: RunnableConfig | list[RunnableConfig] | None = None,
                     *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        if kwargs.get("executor") is not None:
            return await CompiledGraph.abatch(self, inputs, return_exceptions=return_exceptions,
                                              **kwargs)
        label = progress_label(kwargs.pop("progress", False))
        if _unconfigured(config):  # no config: no LangChain cost
            return await self._abatch_each(
                list(inputs), kwargs.pop("max_concurrency", None), return_exceptions,
                lambda _, item: _plain_ainvoke(self, item, **kwargs), label)
        inputs = list(inputs)
        configs = get_config_list(config, len(inputs))
        max_concurrency = _max_concurrency(kwargs, configs)
        return await self._abatch_each(
            inputs, max_concurrency, return_exceptions,
            lambda index, item: self.ainvoke(item, configs[index], **kwargs), label,
        )

    # ---- streaming ------------------------------------------------------------------

    def stream(self, input: Any, config: RunnableConfig | None = None, *,
               stream_mode: str | Sequence[str] = "values", **kwargs: Any) -> Iterator[Any]:
        modes = StreamModes.of(stream_mode)  # checked now, not at the first next()
        if not modes.publishes and _unconfigured(config):
            # As invoke: no config to honour, no LangChain cost per stream or per chunk.
            return self._stream(input, modes, None, kwargs.get("budget"), kwargs.get("deadline"))
        return self._stream_reported(input, config, modes, kwargs)

    def astream(self, input: Any, config: RunnableConfig | None = None, *,
                stream_mode: str | Sequence[str] = "values",
                **kwargs: Any) -> AsyncIterator[Any]:
        modes = StreamModes.of(stream_mode)
        if not modes.publishes and _unconfigured(config):
            return self._astream(input, modes, None, kwargs.get("budget"),
                                 kwargs.get("deadline"))
        return self._astream_reported(input, config, modes, kwargs)

    def _stream_observed(self, input: Any, config: RunnableConfig | None, modes: StreamModes
                         ) -> tuple[CallbackManagerForChainRun | None, AgentObserver | None]:
        return self._observed(input, config, publish="custom" in modes.modes,
                              messages="messages" in modes.modes)

    def _stream_reported(self, input: Any, config: RunnableConfig | None,
                         modes: StreamModes, kwargs: dict[str, Any]) -> Iterator[Any]:
        run_manager, observer = self._stream_observed(input, config, modes)
        chunks = self._stream(input, modes, observer, kwargs.get("budget"),
                              kwargs.get("deadline"))
        last: Any = None
        try:
            for chunk in chunks:
                last = chunk
                yield chunk
        except BaseException as exc:
            _report(run_manager, error=exc)
            raise
        _report(run_manager, last)

    async def _astream_reported(self, input: Any, config: RunnableConfig | None,
                                modes: StreamModes, kwargs: dict[str, Any]
                                ) -> AsyncIterator[Any]:
        run_manager, observer = self._stream_observed(input, config, modes)
        chunks = self._astream(input, modes, observer, kwargs.get("budget"),
                               kwargs.get("deadline"))
        last: Any = None
        try:
            async for chunk in chunks:
                last = chunk
                yield chunk
        except BaseException as exc:
            _report(run_manager, error=exc)
            raise
        _report(run_manager, last)

    def transform(self, input: Iterator[Any], config: RunnableConfig | None = None,
                  **kwargs: Any) -> Iterator[Any]:
        # In an LCEL pipeline the graph runs once its input is complete, and streams its
        # result ("values") to the next step, whatever stream mode its caller asked for.
        kwargs.pop("stream_mode", None)
        yield from super().transform(input, config, **kwargs)

    async def atransform(self, input: AsyncIterator[Any], config: RunnableConfig | None = None,
                         **kwargs: Any) -> AsyncIterator[Any]:
        kwargs.pop("stream_mode", None)
        async for chunk in super().atransform(input, config, **kwargs):
            yield chunk

    def __repr__(self) -> str:
        return CompiledGraph.__repr__(self)

