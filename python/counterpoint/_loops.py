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


async def _run_agent(function: Any, argument: Any, completion: Any) -> None:
    try:
        result = await function(argument)
    except asyncio.CancelledError:
        completion.cancelled()
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure is the agent's result
        # SystemExit / KeyboardInterrupt raised by an agent fail that agent; re-raised here
        # they would stop the event loop every later run depends on.
        completion.fail(exc)
    else:
        completion.succeed(result)


class LoopBridge:
    """Connects one event loop to the engine: starts agent tasks, reports run ends and
    new events. Holds its loop weakly, so a finished ``asyncio.run`` frees both."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self.dispatcher = _core.LoopDispatcher()
        self._tasks: dict[int, set[asyncio.Task]] = {}
        self._finished: dict[int, asyncio.Future] = {}
        self._events: dict[int, asyncio.Event] = {}
        self._cancellable: dict[int, asyncio.Task] = {}
        loop.add_reader(self.dispatcher.fileno(), self._drain)

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

    def _drain(self) -> None:
        loop = self._loop()
        for job in self.dispatcher.take():
            kind = job[0]
            if kind == "start":
                _, function, argument, completion, run_id, invocation_id = job
                try:
                    task = loop.create_task(_run_agent(function, argument, completion))
                except BaseException as exc:  # noqa: BLE001
                    completion.fail(exc)
                    continue
                self._tasks.setdefault(run_id, set()).add(task)
                if invocation_id:
                    self._cancellable[invocation_id] = task
                task.add_done_callback(self._forget_task(run_id, invocation_id))
            elif kind == "cancel":
                task = self._cancellable.pop(job[1], None)
                if task is not None:
                    task.cancel()
            elif kind == "events":
                ready = self._events.get(job[1])
                if ready is not None:
                    ready.set()
            else:
                _, run_id, status = job
                # Coroutines still running when their run ended (cancelled, failed, or
                # the losers of a first-success merge) have nothing left to feed.
                for task in self._tasks.get(run_id, ()):
                    task.cancel()
                finished = self._finished.pop(run_id, None)
                if finished is not None and not finished.done():
                    finished.set_result(status)
                ready = self._events.get(run_id)
                if ready is not None:
                    ready.set()

    def _forget_task(self, run_id: int, invocation_id: int):
        def forget(task: asyncio.Task) -> None:
            self._cancellable.pop(invocation_id, None)
            tasks = self._tasks.get(run_id)
            if tasks is not None:
                tasks.discard(task)
                if not tasks:
                    del self._tasks[run_id]
            if not task.cancelled():
                task.exception()  # retrieved: failures are reported through the run

        return forget


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
            target=self.loop.run_forever, name="counterpoint-event-loop", daemon=True
        )
        self.thread.start()

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
