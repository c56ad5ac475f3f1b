"""A compiled graph that is a LangChain Runnable: it composes with ``|`` on either side,
sits inside ``RunnableParallel``, takes ``config`` on every entry point, and reports a
chain run per agent to the callbacks it is given."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks.manager import CallbackManagerForChainRun
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import (
    ensure_config,
    get_callback_manager_for_config,
    get_config_list,
)
from langchain_core.runnables.graph import Graph as DrawableGraph

from ..._graph import CompiledGraph
from ..._streaming import AgentObserver, StreamModes
from ._callbacks import CallbackObserver
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


def _needs_observer(config: RunnableConfig) -> bool:
    callbacks = config.get("callbacks")
    if callbacks:
        handlers = getattr(callbacks, "handlers", callbacks)
        if handlers:
            return True
    return any(config.get(key) for key in _PROPAGATED)


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
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return Any

    @property
    def OutputType(self) -> Any:  # noqa: N802 - LangChain's name
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

    def _open_run(self, input: Any, config: RunnableConfig | None
                  ) -> tuple[RunnableConfig, CallbackManagerForChainRun | None]:
        config = ensure_config(config)
        if not _needs_observer(config):
            return config, None
        manager = get_callback_manager_for_config(config)
        run_manager = manager.on_chain_start(
            None, input, run_id=config.pop("run_id", None),
            name=config.get("run_name") or self.get_name(),
        )
        return config, run_manager

    def invoke(self, input: Any, config: RunnableConfig | None = None,
               **kwargs: Any) -> Any:
        config, run_manager = self._open_run(input, config)
        if run_manager is None:
            return super().invoke(input, **kwargs)
        observer = CallbackObserver(config, run_manager)
        try:
            output = self._launch(input, self._dispatcher(), observer=observer,
                                  **kwargs).result()
        except BaseException as exc:
            run_manager.on_chain_error(exc)
            raise
        run_manager.on_chain_end(output)
        return output

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None,
                      **kwargs: Any) -> Any:
        config, run_manager = self._open_run(input, config)
        if run_manager is None:
            return await super().ainvoke(input, **kwargs)
        observer = CallbackObserver(config, run_manager)
        try:
            output = await self._ainvoke_observed(input, observer, **kwargs)
        except BaseException as exc:
            run_manager.on_chain_error(exc)
            raise
        run_manager.on_chain_end(output)
        return output

    # ---- several runs ---------------------------------------------------------------

    def batch(self, inputs: Iterable[Any],
              config: RunnableConfig | list[RunnableConfig] | None = None,
              *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        inputs = list(inputs)
        configs = get_config_list(config, len(inputs))
        max_concurrency = _max_concurrency(kwargs, configs)
        if not inputs:
            return super().batch(inputs, max_concurrency=max_concurrency)
        if not any(_needs_observer(ensure_config(c)) for c in configs):
            return super().batch(inputs, max_concurrency=max_concurrency,
                                 return_exceptions=return_exceptions, **kwargs)
        return self._batch_observed(inputs, configs, max_concurrency, return_exceptions,
                                    **kwargs)

    def _batch_observed(self, inputs: list[Any], configs: list[RunnableConfig],
                        max_concurrency: int | None, return_exceptions: bool,
                        **kwargs: Any) -> list[Any]:
        opened = [self._open_run(item, cfg) for item, cfg in zip(inputs, configs)]
        observers = [None if manager is None else CallbackObserver(cfg, manager)
                     for cfg, manager in opened]
        results = self._batch(inputs, max_concurrency, True, kwargs.get("budget"),
                              kwargs.get("deadline"), observers)
        for (_, manager), result in zip(opened, results):
            if manager is not None:
                if isinstance(result, BaseException):
                    manager.on_chain_error(result)
                else:
                    manager.on_chain_end(result)
        if not return_exceptions:
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        return results

    async def abatch(self, inputs: Iterable[Any],
                     config: RunnableConfig | list[RunnableConfig] | None = None,
                     *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        inputs = list(inputs)
        configs = get_config_list(config, len(inputs))
        max_concurrency = _max_concurrency(kwargs, configs)
        return await self._abatch_each(
            inputs, max_concurrency, return_exceptions,
            lambda index, item: self.ainvoke(item, configs[index], **kwargs),
        )

    # ---- streaming ------------------------------------------------------------------

    def stream(self, input: Any, config: RunnableConfig | None = None, *,
               stream_mode: str | Sequence[str] = "values", **kwargs: Any) -> Iterator[Any]:
        modes = StreamModes(stream_mode)  # checked now, not at the first next()
        return self._stream_reporting(input, config, modes, kwargs)

    def astream(self, input: Any, config: RunnableConfig | None = None, *,
                stream_mode: str | Sequence[str] = "values",
                **kwargs: Any) -> AsyncIterator[Any]:
        modes = StreamModes(stream_mode)
        return self._astream_reporting(input, config, modes, kwargs)

    def _stream_observer(self, config: RunnableConfig,
                         run_manager: CallbackManagerForChainRun | None,
                         modes: StreamModes) -> AgentObserver | None:
        messages = "messages" in modes.modes
        if run_manager is None and not messages and not _needs_observer(config):
            return self._observer_for(modes)
        return CallbackObserver(config, run_manager, publish="custom" in modes.modes,
                                messages=messages)

    def _observer_for(self, modes: StreamModes) -> Any:
        if "messages" in modes.modes:
            return CallbackObserver(ensure_config(None), None, publish="custom" in modes.modes,
                                    messages=True)
        return super()._observer_for(modes)

    def _stream_reporting(self, input: Any, config: RunnableConfig | None,
                          modes: StreamModes, kwargs: dict[str, Any]) -> Iterator[Any]:
        config, run_manager = self._open_run(input, config)
        chunks = self._stream(input, modes, self._stream_observer(config, run_manager, modes),
                              **kwargs)
        if run_manager is None:
            yield from chunks
            return
        result: Any = None
        try:
            for chunk in chunks:
                result = chunk
                yield chunk
        except BaseException as exc:
            run_manager.on_chain_error(exc)
            raise
        run_manager.on_chain_end(result)

    async def _astream_reporting(self, input: Any, config: RunnableConfig | None,
                                 modes: StreamModes, kwargs: dict[str, Any]
                                 ) -> AsyncIterator[Any]:
        config, run_manager = self._open_run(input, config)
        chunks = self._astream(input, modes, self._stream_observer(config, run_manager, modes),
                               **kwargs)
        if run_manager is None:
            async for chunk in chunks:
                yield chunk
            return
        result: Any = None
        try:
            async for chunk in chunks:
                result = chunk
                yield chunk
        except BaseException as exc:
            run_manager.on_chain_error(exc)
            raise
        run_manager.on_chain_end(result)

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

