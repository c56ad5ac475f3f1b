"""Runs coroutine agents on asyncio event loops.

``invoke`` (a blocking call) runs coroutines on one engine-owned loop in a daemon
thread; ``ainvoke`` runs them on the caller's own running loop (Jupyter's included).
Either way the native engine queues invocations and wakes the loop through a file
descriptor, so no engine thread needs the GIL to hand work over.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

from ._native import _core


async def _run_agent(call: Any, bridge: LoopBridge) -> None:
    try:
        # The run may have ended (cancel() returned True) between the hand-off and this
        # task's first step: then the body must not start at all.
        if call.run_ended:
            call.cancelled()
            return
        try:
            result = await call.function(call.argument)
        except asyncio.CancelledError:
            call.cancelled()
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure is the agent's result
            # SystemExit / KeyboardInterrupt raised by an agent fail that agent; re-raised
            # here they would stop the event loop every later run depends on.
            call.fail(exc)
        else:
            call.succeed(result)
    finally:
        # Here rather than in a done callback: one callback less per agent call. A task
        # cancelled before its first step never gets here; its run's end forgets it.
        bridge.task_done(call)
    # The engine tells coroutine successors on this thread (FlowGraph::forward), so the
    # work this outcome unlocked, or its run's end, is queued by now: take it in this
    # step instead of after a trip through the selector.
    if bridge.dispatcher.has_work():
        bridge.drain()


class LoopBridge:
    """Connects one event loop to the engine: starts agent tasks, reports run ends and
    new events. Holds its loop weakly, so a finished ``asyncio.run`` frees both."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self.dispatcher = _core.LoopDispatcher()
        # The agent tasks of each run, to cancel those left when it ends.
        self._tasks: dict[int, dict[int, asyncio.Task]] = {}
        self._finished: dict[int, asyncio.Future] = {}
        self._events: dict[int, asyncio.Event] = {}
        self._cancellable: dict[int, asyncio.Task] = {}
        loop.add_reader(self.dispatcher.fileno(), self.drain)

    def run_finished(self, run_id: int) -> asyncio.Future:
        """A future resolved with the run's status when it ends (loop thread only)."""
        future = asyncio.get_running_loop().create_future()
        self._finished[run_id] = future
        return future

    def events_ready(self, run_id: int) -> asyncio.Event:
        """An event set whenever the run records events (loop thread only)."""
        return self._events.setdefault(run_id, asyncio.Event())

    def forget(self, run_id: int) -> None:
        self._finished.pop(run_id, None)
        self._events.pop(run_id, None)

    def close(self) -> None:
        loop = self._loop()
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self.dispatcher.fileno())
        self.dispatcher.close()

    def task_done(self, call: Any) -> None:
        """An agent task is finishing: stop tracking it."""
        if call.invocation_id:
            self._cancellable.pop(call.invocation_id, None)
        tasks = self._tasks.get(call.run_id)
        if tasks is not None:
            tasks.pop(id(call), None)
            if not tasks:
                del self._tasks[call.run_id]

    def drain(self) -> None:
        """Starts the queued coroutine agents, cancels timed-out ones, and reports new
        events and run ends (the loop's reader callback, and the tail of agent tasks)."""
        loop = self._loop()
        if loop is None:
            return
        work = self.dispatcher.take()
        for call in work.calls:
            try:
                # Each task runs in a copy of its own run's caller context (contextvars),
                # never in whatever context this callback happens to have.
                task = loop.create_task(_run_agent(call, self), context=call.context)
            except BaseException as exc:  # noqa: BLE001
                call.fail(exc)
                continue
            tasks = self._tasks.get(call.run_id)
            if tasks is None:
                tasks = self._tasks[call.run_id] = {}
            tasks[id(call)] = task
            if call.invocation_id:
                self._cancellable[call.invocation_id] = task
        for invocation_id in work.cancels:
            task = self._cancellable.pop(invocation_id, None)
            if task is not None:
                task.cancel()
        for run_id in work.events:
            ready = self._events.get(run_id)
            if ready is not None:
                ready.set()
        for end in work.ended:
            # Coroutines still running when their run ended (cancelled, failed, or the
            # losers of a first-success merge) have nothing left to feed.
            for task in self._tasks.pop(end.run_id, {}).values():
                task.cancel()
            finished = self._finished.pop(end.run_id, None)
            if finished is not None and not finished.done():
                finished.set_result(end.status)
            ready = self._events.get(end.run_id)
            if ready is not None:
                ready.set()


_bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopBridge] = (
    weakref.WeakKeyDictionary()
)
_bridges_lock = threading.Lock()


def bridge_for_running_loop() -> LoopBridge:
    """The bridge of the loop running in this thread, created on first use."""
    loop = asyncio.get_running_loop()
    bridge = _bridges.get(loop)
    if bridge is None:
        bridge = LoopBridge(loop)
        _bridges[loop] = bridge
    return bridge


class _EngineLoop:
    """The event loop that runs coroutine agents for blocking ``invoke``/``batch`` calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.bridge = LoopBridge(self.loop)
        self.thread = threading.Thread(
            target=self._serve, name="counterpoint-event-loop", daemon=True
        )
        self.thread.start()

    def _serve(self) -> None:
        # Every coroutine agent of every blocking run depends on this loop, so a wait for
        # a run here (a coroutine agent calling invoke) fails at once instead of hanging.
        _core.mark_engine_loop_thread()
        self.loop.run_forever()

    def stop(self, timeout: float) -> None:
        self.loop.call_soon_threadsafe(self.bridge.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)


_engine_loop: _EngineLoop | None = None


def engine_dispatcher() -> Any:
    global _engine_loop
    if _engine_loop is None:
        with _bridges_lock:
            if _engine_loop is None:
                _engine_loop = _EngineLoop()
    return _engine_loop.bridge.dispatcher


def stop_engine_loop(timeout: float) -> None:
    global _engine_loop
    if _engine_loop is not None:
        _engine_loop.stop(timeout)
        _engine_loop = None
