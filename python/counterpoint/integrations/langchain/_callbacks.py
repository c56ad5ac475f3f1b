"""LangChain callbacks at every depth: one chain run per agent call, nested under the
graph's run (and under the agent that delegated to a nested graph), and the agent's body
run with LangChain's child config set, so runnables it calls nest under it; plus the
handler that turns chat model chunks into ``"messages"`` stream events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, CallbackManager
from langchain_core.callbacks.manager import CallbackManagerForChainRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import patch_config, var_child_runnable_config
from langchain_core.tracers._streaming import _StreamingCallbackHandler
from langchain_core.tracers.event_stream import _AstreamEventsCallbackHandler

from ..._streaming import EVENT_KIND, AgentObserver

try:  # sets LangSmith's tracing parent too, for @traceable code inside agents
    from langchain_core.runnables.config import _set_config_context as _enter_config
except ImportError:  # pragma: no cover - older langchain-core
    _enter_config = var_child_runnable_config.set


class MessagesHandler(BaseCallbackHandler, _StreamingCallbackHandler):
    """Publishes the chunks chat models stream inside one agent call as ``"message"``
    events of its run. Being a streaming handler makes a chat model called with
    ``invoke`` stream too (LangChain checks for one), as LangGraph's does."""

    run_inline = True  # keep chunks in order, on the thread that produced them

    def __init__(self, channel: Any, path: str) -> None:
        self._channel = channel
        self._path = path
        self._runs: dict[UUID, dict[str, Any]] = {}  # chat model run -> its metadata

    def _publish(self, run_id: UUID, message: BaseMessage) -> None:
        meta = self._runs.get(run_id)
        if meta is None:
            return
        meta["streamed"] = True
        self._channel.publish(EVENT_KIND.message, (message, meta["metadata"]), self._path)

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID,
                            parent_run_id: UUID | None = None, tags: list[str] | None = None,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._runs[run_id] = {
            "streamed": False,
            "metadata": {**(metadata or {}), "agent": self._path, "tags": list(tags or []),
                         "langchain_run_id": run_id, "name": kwargs.get("name")},
        }

    def on_llm_new_token(self, token: str, *, chunk: Any = None, run_id: UUID,
                         **kwargs: Any) -> None:
        if isinstance(chunk, ChatGenerationChunk):  # chat models; plain LLMs stream text
            self._publish(run_id, chunk.message)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        meta = self._runs.get(run_id)
        if meta is not None and not meta["streamed"]:
            # A model that did not stream: its whole message is the one chunk.
            for generations in response.generations:
                for generation in generations:
                    message = getattr(generation, "message", None)
                    if isinstance(message, BaseMessage):
                        self._publish(run_id, message)
        self._runs.pop(run_id, None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._runs.pop(run_id, None)

    def tap_output_aiter(self, run_id: UUID, output: AsyncIterator[Any]) -> AsyncIterator[Any]:
        return output

    def tap_output_iter(self, run_id: UUID, output: Iterator[Any]) -> Iterator[Any]:
        return output


class _Stepped(BaseCallbackHandler):
    """``astream_events``' handler, for the graph's run and the agent runs the observer
    opens from engine threads. Its callbacks are coroutines that never wait (they queue
    the event for the reader's loop), so each is run to its end right here. LangChain's
    sync path would start an event loop in a worker thread for every callback, blocking
    the caller meanwhile: ~1 ms per agent."""

    run_inline = True

    def __init__(self, handler: _AstreamEventsCallbackHandler) -> None:
        self._handler = handler
        self.raise_error = handler.raise_error

    @property
    def ignore_chain(self) -> bool:
        return bool(self._handler.ignore_chain)

    def on_chain_start(self, *args: Any, **kwargs: Any) -> None:
        _run_now(self._handler.on_chain_start(*args, **kwargs))

    def on_chain_end(self, *args: Any, **kwargs: Any) -> None:
        _run_now(self._handler.on_chain_end(*args, **kwargs))

    def on_chain_error(self, *args: Any, **kwargs: Any) -> None:
        _run_now(self._handler.on_chain_error(*args, **kwargs))


def _run_now(coroutine: Any) -> None:
    try:
        while coroutine.send(None) is None:  # a bare yield (sleep(0)): go on
            pass
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("an astream_events callback waited on a future; its event was lost")


def stepped(callbacks: CallbackManager) -> CallbackManager:
    """``callbacks``, calling astream_events' handler directly (see _Stepped). Only its
    own calls change: what it passes to children keeps the real handlers."""
    if not any(isinstance(h, _AstreamEventsCallbackHandler) for h in callbacks.handlers):
        return callbacks
    direct = callbacks.copy()
    direct.handlers = [_Stepped(h) if isinstance(h, _AstreamEventsCallbackHandler) else h
                       for h in direct.handlers]
    return direct


class CallbackObserver(AgentObserver):
    """Opens a LangChain chain run for every agent call of a run, at any depth.

    An agent's run is a child of the run of the agent that delegated to its graph (a
    nested pattern, a graph added as an agent), else of the graph's own run; each
    attempt of a retried agent is a run of its own, with ``counterpoint_attempt`` in
    its metadata. The agent's body runs with LangChain's child config (callbacks, tags,
    metadata, configurable) set, so Runnable agents and runnables called inside plain
    functions nest under it. Concurrent runs have their own observers and never share
    a run tree.
    """

    def __init__(self, config: RunnableConfig, run_manager: CallbackManagerForChainRun | None,
                 *, publish: bool = False, messages: bool = False) -> None:
        super().__init__(publish=publish or messages)
        self._config = config
        self._root = run_manager
        self._messages = messages
        # Agent calls in flight by path, to find a nested agent's parent. A list: the
        # same path can be in flight twice (a retry that overlaps a timed-out attempt).
        self._open: dict[str, list[CallbackManagerForChainRun]] = {}
        self._attempts: dict[str, int] = {}
        self._base: CallbackManager | None = None
        # With no handler to tell, agents only need the config (tags, metadata,
        # configurable) passed on: the same child config for all of them.
        self._shared: RunnableConfig | None = None
        if run_manager is None and not messages:
            self._shared = {key: value for key, value in config.items()
                            if key not in ("run_name", "run_id")}  # type: ignore[assignment]

    def _parent_callbacks(self, path: str) -> CallbackManager:
        cut = path.rfind("/")
        while cut > 0:
            runs = self._open.get(path[:cut])
            if runs:
                return runs[-1].get_child()
            cut = path.rfind("/", 0, cut)
        if self._root is not None:
            return self._root.get_child()
        if self._base is None:  # configured once: configure() is tens of microseconds
            self._base = CallbackManager.configure(
                self._config.get("callbacks"), None, False,
                self._config.get("tags"), None, self._config.get("metadata"), None,
            )
        return self._base.copy()

    def agent_started(self, call: Any) -> None:
        super().agent_started(call)
        if self._shared is not None:  # nothing to report: every agent gets one config
            call.context.run(var_child_runnable_config.set, self._shared)
            return
        path = call.path
        callbacks = self._parent_callbacks(path)
        if self._messages:
            # The innermost agent owns the tokens: drop the handler a delegating agent
            # (a nested graph) passed down, or each chunk would be published twice.
            for handler in list(callbacks.handlers):
                if isinstance(handler, MessagesHandler):
                    callbacks.remove_handler(handler)
            callbacks.add_handler(MessagesHandler(call.channel, path), inherit=True)
        if self._root is None:  # streaming messages only: no runs to open
            child = callbacks
        else:
            attempt = self._attempts.get(path, 0) + 1
            self._attempts[path] = attempt
            # A fresh manager (get_child, configure): this metadata is this run's only.
            callbacks.add_metadata(
                {"counterpoint_agent": path, "counterpoint_attempt": attempt}, inherit=False)
            agent_run = stepped(callbacks).on_chain_start(None, call.input,
                                                           run_id=uuid.uuid4(), name=path)
            call.state = agent_run
            self._open.setdefault(path, []).append(agent_run)
            child = agent_run.get_child()
        config = patch_config(self._config, callbacks=child)
        call.context.run(_enter_config, config)

    def agent_ended(self, call: Any) -> None:
        agent_run = call.state
        if not isinstance(agent_run, CallbackManagerForChainRun):
            return
        runs = self._open.get(call.path)
        if runs:
            runs.remove(agent_run)
            if not runs:
                del self._open[call.path]
        if call.status.name == "succeeded":
            agent_run.on_chain_end(call.output)
        else:
            error = call.error if isinstance(call.error, BaseException) else \
                _AgentEnded(call.status.name, call.message)
            agent_run.on_chain_error(error)


class _AgentEnded(Exception):
    """How an agent call that raised nothing itself ended (timed out, cancelled, held
    for review), as its chain run's error."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}" if message else status)
        self.status = status
