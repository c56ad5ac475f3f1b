"""An agent whose calls go to a pool of Ray actors, each holding its own instance."""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from concurrent.futures import InvalidStateError
from dataclasses import dataclass
from typing import Any

import ray

from ..._agents import SubmittingAgent
from ..._errors import WorkerLost
from ..._executors import RayActors
from ._calls import calling, class_is_async, is_factory
from ._chores import run_chore
from ._ray_call import RayCall, Started
from ._session import connect


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


def _connection() -> tuple[str, str]:
    """Which Ray this process is connected to, and as which job: a pool's actors live as
    long as both (a new local Ray numbers its jobs from 1 again, hence the session)."""
    context = ray.get_runtime_context()
    session = getattr(context, "get_session_name", lambda: "")()
    return session, context.get_job_id()


class RayActorAgent(SubmittingAgent):
    """The agent the engine runs for ``executor=cp.ray_actors(...)``.

    Calls wait in the pool (not in Ray's actor queues) until an actor has room, so an
    actor replaced after a hung call or a crash takes only the calls it was running
    with it. Calls are submitted from any thread (engine workers, Ray's callbacks).
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
        self._waiting: deque[tuple[RayCall, Any]] = deque()  # calls with no room yet
        self._ray: tuple[str, str] | None = None  # the Ray the actors were started on
        self._slots = [_Slot(None) for _ in range(executor.num_actors)]
        for slot in self._slots:
            self._spawn(slot)

    def _spawn(self, slot: _Slot) -> None:
        actor = self._host.remote(self.agent)
        slot.actor, slot.ready = actor, False
        self._ray = _connection()

        def built(_: Any) -> None:
            if slot.actor is actor:
                slot.ready = True

        actor.ready.remote().future().add_done_callback(built)

    def submit(self, argument: Any) -> RayCall:
        with self._lock:
            slot = min(self._slots, key=lambda s: (not self._has_room(s), not s.ready,
                                                   s.running))
            if self._has_room(slot):
                slot.running += 1
                actor = slot.actor
            else:
                call = RayCall(self.name, "actor")
                call.wait_for_room(lambda: self._withdraw(call))
                self._waiting.append((call, argument))
                return call
        # Sent first, the call is on its way while the rest is set up: nobody else
        # knows of it yet, so nothing can have cancelled it.
        ref = self._send(slot, actor, argument)
        call = RayCall(self.name, "actor")
        call.follow(ref, lambda: self._abandon(slot, actor, ref),
                    lambda lost: self._leave(slot, actor, lost))
        return call

    def _has_room(self, slot: _Slot) -> bool:
        """With the lock: ``slot`` has a live actor that may take one more call."""
        return slot.actor is not None and slot.running < self.executor.max_concurrency

    def _start(self, slot: _Slot, call: RayCall, argument: Any) -> bool:
        """Runs ``call``, which waited for room, on ``slot``'s actor, whose count
        already includes it; False if the call was cancelled while it waited."""
        actor = slot.actor

        def send() -> Started:
            ref = self._send(slot, actor, argument)
            return ref, lambda: self._abandon(slot, actor, ref)

        return call.start(send, leave=lambda lost: self._leave(slot, actor, lost))

    def _send(self, slot: _Slot, actor: Any, argument: Any) -> Any:
        """Sends one call to ``actor`` (``slot``'s, whose count includes the call);
        its object ref."""
        try:
            return actor.call.remote(argument)
        except Exception as refused:
            # Ray refused the call (its argument does not pickle, or the actor is gone):
            # its place is freed. An actor of a Ray shut down since (ray.shutdown() and
            # ray.init() in a notebook) is replaced, and the call lost, as if it had died.
            stale = self._from_an_earlier_ray()
            self._leave(slot, actor, stale)
            if stale:
                raise WorkerLost(self.name, "its actor belonged to a Ray that was shut "
                                 "down; the pool starts a new one") from refused
            raise

    def _from_an_earlier_ray(self) -> bool:
        try:
            return _connection() != self._ray
        except Exception:  # noqa: BLE001 - no Ray to ask: not the pool's either
            return True

    def _withdraw(self, call: RayCall) -> None:
        with self._lock:
            for entry in self._waiting:
                if entry[0] is call:
                    self._waiting.remove(entry)
                    return

    def _leave(self, slot: _Slot, actor: Any, lost: bool) -> None:
        """A call left ``actor`` (told on the thread it settled on: often Ray's own)."""
        with self._lock:
            slot.running -= 1
            replace = lost and self._retire(slot, actor)
            if not replace and not self._waiting:
                return
        # Replacing an actor and starting waiting calls may wait on Ray, which must not
        # happen on Ray's callback thread (see _chores).
        run_chore(lambda: self._renew(slot, actor if replace else None))

    def _retire(self, slot: _Slot, actor: Any) -> bool:
        """With the lock: ``actor`` takes no more calls. True for the first to say so,
        who has it replaced (see _renew)."""
        if slot.actor is not actor:
            return False
        slot.actor = None
        return True

    def _renew(self, slot: _Slot, dead: Any) -> None:
        """Replaces the ``dead`` actor of ``slot``, if any, then starts the waiting calls
        its room allows."""
        if dead is not None:
            with self._lock:
                self._spawn(slot)
            with contextlib.suppress(Exception):  # gone already (a Ray shut down since)
                ray.kill(dead, no_restart=True)
        while True:
            with self._lock:
                if not self._waiting or not self._has_room(slot):
                    return
                call, argument = self._waiting.popleft()
                slot.running += 1
            try:
                started = self._start(slot, call, argument)
            except Exception as refused:  # noqa: BLE001 - the call's outcome; freed already
                with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
                    call.set_exception(refused)
                continue
            if not started:  # cancelled while it waited
                with self._lock:
                    slot.running -= 1

    def _abandon(self, slot: _Slot, actor: Any, ref: Any) -> None:
        """A call cancelled (timed out, or its run ended): an async one is cancelled in
        its actor; a blocking one cannot be interrupted, so unless it has finished, its
        actor is replaced rather than left busy with it."""
        if self._async:
            ray.cancel(ref)
            return
        finished, _ = ray.wait([ref], timeout=0)
        if finished:
            return
        with self._lock:
            replace = self._retire(slot, actor)
        if replace:
            run_chore(lambda: self._renew(slot, actor))

    def __reduce__(self) -> tuple[Any, ...]:
        # The actors are this process's; a copy elsewhere starts its own pool.
        return (RayActorAgent, (self.name, self.agent, self.executor))

    def __repr__(self) -> str:
        return (f"RayActorAgent({self.name!r}, num_actors={self.executor.num_actors}, "
                f"{self.executor.options})")

