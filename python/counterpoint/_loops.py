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

# How long the events that follow an event may take to join it in one batch, in stream()
# and astream(): each batch costs the reader a wake-up and the agents a hand-over of the
# GIL, so the events of fast agents come far cheaper together, and a person watching a
# stream sees no delay.
EVENT_GATHER = 0.001


async def _run_agents(call: Any, bridge: LoopBridge) -> None:
    """One agent task: runs ``call``, then, while the outcome unlocked another call of the
    same run, that one too, in the same task (each in its own context). A chain of
    coroutine agents thus costs no task and no loop iteration per agent."""
    run_id = call.run_id
    continued = False
    try:
        while call is not None:
            try:
                # None if the run ended (cancel() returned True) between the hand-off and
                # this step: then the body must not start at all (the call is cancelled).
                # A continued call's coroutine is stepped in its own context; calling a
                # coroutine function runs none of its body (coroutine agents are `async
                # def` functions or methods), so only the steps need that context.
                awaitable = call.begin(continued)
                if awaitable is None:
                    return
                result = await awaitable
            except asyncio.CancelledError:
                call.cancelled()
                raise
            except BaseException as exc:  # noqa: BLE001 - every failure is the agent's result
                # SystemExit / KeyboardInterrupt raised by an agent fail that agent;
                # re-raised here they would stop the event loop every later run needs.
                call.fail(exc)
            else:
                call.succeed(result)
            finally:
                # A continued call has no invocation id (drain and continuation see to it).
                if not continued and call.invocation_id:
                    bridge.forget_cancellable(call.invocation_id)
            # The engine tells coroutine successors on this thread (FlowGraph::forward),
            # so the work this outcome unlocked, or its run's end, is queued by now: take
            # it in this step instead of after a trip through the selector.
            call = bridge.drain(continue_run=run_id)
            continued = True
    except BaseException:
        # Leaving early (cancelled, or the engine refused an outcome): what the last
        # outcome queued was announced to no one (see AsyncCall::succeed), so take it.
        bridge.drain()
        raise
    finally:
        # Here rather than in a done callback: one callback less per task. A task
        # cancelled before its first step never gets here; its run's end forgets it.
        bridge.task_done(run_id)


class LoopBridge:
    """Connects one event loop to the engine: starts agent tasks, reports run ends and
    new events. Holds its loop weakly, so a finished ``asyncio.run`` frees both."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self.dispatcher = _core.LoopDispatcher(EVENT_GATHER)
        # The agent tasks of each run, to cancel those left when it ends.
        self._tasks: dict[int, set[asyncio.Task]] = {}
        self._finished: dict[int, asyncio.Future] = {}
        self._events: dict[int, asyncio.Event] = {}
        self._cancellable: dict[int, asyncio.Task] = {}
        loop.add_reader(self.dispatcher.fileno(), self.drain)

    def run_finished(self, run_id: int) -> asyncio.Future:
        """A future resolved (with None) when the run ends (loop thread only)."""
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

    def forget_cancellable(self, invocation_id: int) -> None:
        self._cancellable.pop(invocation_id, None)

    def task_done(self, run_id: int) -> None:
        """The current agent task of ``run_id`` is finishing: stop tracking it."""
        tasks = self._tasks.get(run_id)
        if tasks is not None:
            # With its loop: asked without one, current_task() looks up the running loop,
            # which costs CPython 3.11 a getpid() system call each time.
            tasks.discard(asyncio.current_task(self._loop()))  # type: ignore[arg-type]
            if not tasks:
                del self._tasks[run_id]

    def drain(self, continue_run: int = 0) -> Any:
        """Starts the queued coroutine agents, cancels timed-out ones, and reports new
        events and run ends (the loop's reader callback, and the tail of agent tasks).

        With ``continue_run`` (from an agent task of that run), returns the first queued
        call of that run that no timeout may cancel on its own, for the calling task to
        run itself instead of starting a task for it; None if there is none.
        """
        if continue_run:
            # In a chain the queue holds one call of this run and nothing else, which
            # continuation() hands over alone, without take()'s batch of lists.
            call = self.dispatcher.continuation(continue_run)
            if call is not None:
                return call
        work = self.dispatcher.take()
        if work is None:
            return None
        loop = self._loop()
        if loop is None:
            return None
        continued = None
        for call in work.calls:
            if continued is None and call.run_id == continue_run and not call.invocation_id:
                # A timeout cancels its call's task, so only calls without one continue
                # in a task that may go on to other calls. This task is already tracked
                # as one of the run's.
                continued = call
                continue
            try:
                # Each task runs in a copy of its own run's caller context (contextvars),
                # never in whatever context this callback has.
                task = loop.create_task(_run_agents(call, self), context=call.context)
            except BaseException as exc:  # noqa: BLE001
                call.fail(exc)
                continue
            tasks = self._tasks.get(call.run_id)
            if tasks is None:
                self._tasks[call.run_id] = {task}
            else:
                tasks.add(task)
            if call.invocation_id:
                self._cancellable[call.invocation_id] = task
        if work.cancels:
            for invocation_id in work.cancels:
                task = self._cancellable.pop(invocation_id, None)
                if task is not None:
                    task.cancel()
        if work.events:
            for run_id in work.events:
                ready = self._events.get(run_id)
                if ready is not None:
                    ready.set()
        for run_id in work.ended:
            # Coroutines still running when their run ended (cancelled, failed, or the
            # losers of a first-success merge) have nothing left to feed.
            leftovers = self._tasks.pop(run_id, None)
            if leftovers:
                current = asyncio.current_task(loop)  # a task ending its own run ends anyway
                for task in leftovers:
                    if task is not current:
                        task.cancel()
            finished = self._finished.pop(run_id, None)
            if finished is not None and not finished.done():
                finished.set_result(None)
            ready = self._events.get(run_id)
            if ready is not None:
                ready.set()
        return continued


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
