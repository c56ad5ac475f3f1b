"""An agent whose calls go to a pool of Ray actors, each holding its own instance."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import ray

from ..._executors import RayActors
from ._calls import calling, class_is_async, is_factory
from ._session import LOST, connect, raise_agent_failure


class _Host:
    """What each actor runs: the agent built (or copied) once, then called."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent() if is_factory(agent) else agent
        self.function = calling(self.agent)[0]

    def ready(self) -> bool:
        return True

    def call(self, argument: Any) -> Any:
        return self.function(argument)


class _AsyncHost(_Host):
    """The host of a coroutine agent. A separate class because one ``async def`` method
    makes Ray run the whole actor on an event loop, which costs a blocking agent's calls
    (and would run them one at a time on that loop)."""

    async def call(self, argument: Any) -> Any:
        return await self.function(argument)


@dataclass
class _Slot:
    """One actor of the pool and the calls it runs now."""

    actor: Any
    running: int = 0
    # Set once the actor has built its agent: until then (a model loading), calls go to
    # actors that are ready, if any has room.
    ready: bool = False


class RayActorAgent:
    """The coroutine agent the engine runs for ``executor=cp.ray_actors(...)``.

    Calls wait in the pool (not in Ray's actor queues) until an actor has room, so an
    actor replaced after a hung call or a crash takes only the calls it was running
    with it. Calls may come from several event loops (the engine's and callers' own).
    """

    def __init__(self, name: str, agent: Any, executor: RayActors) -> None:
        self.name = name
        self.agent = agent
        self.executor = executor
        connect(executor.options.address)
        self._async = class_is_async(agent) if is_factory(agent) else calling(agent)[1]
        # An async call can be cancelled inside its actor; a blocking one cannot, so a
        # cancelled blocking call costs its actor (see _abandon).
        host = _AsyncHost if self._async else _Host
        self._host = ray.remote(max_restarts=0, max_task_retries=0)(host).options(
            max_concurrency=executor.max_concurrency, **executor.options.ray_options())
        self._lock = threading.Lock()
        self._waiting: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[_Slot]]] = deque()
        self._slots = [_Slot(None) for _ in range(executor.num_actors)]
        for slot in self._slots:
            self._spawn(slot)

    def _spawn(self, slot: _Slot) -> None:
        actor = self._host.remote(self.agent)
        slot.actor, slot.ready = actor, False

        def built(_: Any) -> None:
            if slot.actor is actor:
                slot.ready = True

        actor.ready.remote().future().add_done_callback(built)

    async def _acquire(self) -> _Slot:
        limit = self.executor.max_concurrency
        with self._lock:
            slot = min(self._slots, key=lambda s: (s.running >= limit, not s.ready, s.running))
            if slot.running < limit:
                slot.running += 1
                return slot
            loop = asyncio.get_running_loop()
            granted: asyncio.Future[_Slot] = loop.create_future()
            self._waiting.append((loop, granted))
        try:
            return await granted
        except asyncio.CancelledError:
            with self._lock:
                if (loop, granted) in self._waiting:
                    self._waiting.remove((loop, granted))
                    raise
            # Granted a slot, then cancelled before taking it: pass it on. (Cancelled
            # before it was granted: _grant passes it on.)
            if not granted.cancelled():
                self._release(granted.result())
            raise

    def _release(self, slot: _Slot) -> None:
        with self._lock:
            while self._waiting:
                loop, granted = self._waiting.popleft()
                if not loop.is_closed():
                    # Handed over as is: the slot's count already includes this call.
                    loop.call_soon_threadsafe(self._grant, granted, slot)
                    return
            slot.running -= 1

    def _grant(self, granted: asyncio.Future[_Slot], slot: _Slot) -> None:
        if granted.cancelled():  # its waiter left meanwhile: the next one gets the slot
            self._release(slot)
        else:
            granted.set_result(slot)

    def _replace(self, slot: _Slot, actor: Any) -> None:
        """Puts a new actor in ``slot`` if ``actor`` is still there (once per death)."""
        with self._lock:
            if slot.actor is not actor:
                return
            self._spawn(slot)
        ray.kill(actor, no_restart=True)

    async def __call__(self, argument: Any) -> Any:
        slot = await self._acquire()
        actor = slot.actor
        ref = actor.call.remote(argument)
        try:
            return await ref
        except asyncio.CancelledError:
            self._abandon(slot, actor, ref)
            raise
        except Exception as error:  # noqa: BLE001 - sorted into the agent's own or lost
            if isinstance(error, LOST):
                self._replace(slot, actor)
            raise_agent_failure(self.name, error, "actor")
        finally:
            self._release(slot)

    def _abandon(self, slot: _Slot, actor: Any, ref: Any) -> None:
        """A call cancelled (timed out, or its run ended): an async one is cancelled in
        its actor; a blocking one cannot be interrupted, so unless it has finished, its
        actor is replaced rather than left busy with it."""
        if self._async:
            ray.cancel(ref)
            return
        finished, _ = ray.wait([ref], timeout=0)
        if not finished:
            self._replace(slot, actor)

    def __reduce__(self) -> tuple[Any, ...]:
        # The actors are this process's; a copy elsewhere starts its own pool.
        return (RayActorAgent, (self.name, self.agent, self.executor))

    def __repr__(self) -> str:
        return (f"RayActorAgent({self.name!r}, num_actors={self.executor.num_actors}, "
                f"{self.executor.options})")

