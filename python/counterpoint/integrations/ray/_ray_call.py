"""One call of a Ray agent as the engine follows it: a future settled from the call's
object ref, whose ``cancel()`` stops the Ray work."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from functools import partial
from typing import Any

import ray
from ray.exceptions import GetTimeoutError

from ..._errors import WorkerLost
from ..._lent_thread import LentThread, lent_thread
from ._session import LOST, raise_agent_failure

_SHUT_DOWN = "Ray was shut down (ray.shutdown()) while the call ran"

# What starting a call gives: its object ref, and how to stop the Ray work behind it.
Started = tuple[Any, Callable[[], None]]


class RayCall(Future):  # type: ignore[type-arg]
    """The future a Ray agent's ``submit`` returns (see counterpoint's SubmittingAgent).

    It settles with the agent's output or with what the run should see of its failure
    (:func:`raise_agent_failure`); ``cancel()`` stops the Ray work. Most calls are sent
    before their future is made (:meth:`follow`); one that must wait for room (an actor
    pool with every actor busy) is made first and started later (:meth:`start`). The
    one who started it
    hears, exactly once, that the call no longer occupies its Ray worker (``leave``):
    when it settles (with whether the worker was lost) or is cancelled.
    """

    def __init__(self, name: str, where: str) -> None:
        super().__init__()
        self._name = name
        self._where = where  # "worker" or "actor", for WorkerLost's message
        # Guards the steps below against a concurrent cancel(): a call is cancelled
        # before it starts, or after, never half-started.
        self._steps = threading.Lock()
        self._stop: Callable[[], None] | None = None
        self._leave: Callable[[bool], None] | None = None
        self._left = False

    def wait_for_room(self, withdraw: Callable[[], None]) -> None:
        """The call waits to start; ``withdraw`` takes it out of the queue it waits in."""
        with self._steps:
            self._stop = withdraw

    # How often a thread waiting in ray.get for this call looks up to see whether the
    # call was cancelled (a cancel that Ray does not answer, such as one of an actor
    # call already running, would otherwise hold it until the work ends) or the thread
    # is no longer lent (see LentThread.lent).
    _LOOK_UP = 0.01

    def start(self, send: Callable[[], Started],
              leave: Callable[[bool], None] | None = None) -> bool:
        """Sends the Ray work of a call made before it could start (one that waited for
        room) and follows its ref; False, sending nothing, if the call was cancelled
        meanwhile. ``send`` gives the ref and what stops the work."""
        with self._steps:
            if self._left:
                return False
            ref, self._stop = send()
            self._leave = leave
            _in_flight.add(self)  # before a cancel() can take it out
        self._follow(ref)
        return True

    def follow(self, ref: Any, stop: Callable[[], None],
               leave: Callable[[bool], None] | None = None) -> None:
        """Follows Ray work sent before this call was made (so before anyone could
        cancel it): ``stop`` and ``leave`` as for :meth:`start`."""
        with self._steps:
            self._stop, self._leave = stop, leave
            _in_flight.add(self)
        self._follow(ref)

    def _follow(self, ref: Any) -> None:
        """The ref is waited for by the thread that invoked the run, when it is free
        (see counterpoint._lent_thread), else followed from Ray's callback."""
        lender = lent_thread.get()
        if lender is None or not lender.offer(partial(self._wait_here, ref, lender)):
            ref.future().add_done_callback(self._settled_by)

    def cancel(self) -> bool:
        with self._steps:
            if self._left or self.done():
                return False
            self._left = True
            stop, leave = self._stop, self._leave
        _in_flight.discard(self)
        if stop is not None:
            stop()
        if leave is not None:
            leave(False)
        return super().cancel()

    def _lose(self, detail: str) -> None:
        """Fails the call whose ref will never settle (Ray is gone)."""
        with self._steps:
            if self._left:
                return
            self._left = True
            leave = self._leave
        if leave is not None:
            leave(False)  # not lost to the pool: a new actor would start a new Ray
        with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
            self.set_exception(WorkerLost(self._name, detail))

    def _wait_here(self, ref: Any, lender: LentThread) -> Callable[[], None] | None:
        """Waits for the call in ``ray.get`` on ``lender``'s thread; returns what
        settles it (None if it was cancelled meanwhile, or handed back to Ray's
        callback because the thread's own run has ended)."""
        while not self.done():
            if not lender.lent():
                ref.future().add_done_callback(self._settled_by)
                return None
            if not ray.is_initialized():  # shut down: a ray.get would start a new Ray
                return partial(self._lose, _SHUT_DOWN)
            try:
                output = ray.get(ref, timeout=self._LOOK_UP)
            except GetTimeoutError:
                continue
            except (Exception, SystemExit) as error:  # the call's outcome, or Ray leaving
                if not ray.is_initialized():  # Ray shut down under the get
                    return partial(self._lose, _SHUT_DOWN)
                if isinstance(error, SystemExit):
                    raise
                return partial(self._settle, None, error)
            return partial(self._settle, output, None)
        return None

    def _settled_by(self, ref_future: Future) -> None:  # type: ignore[type-arg]
        error = ref_future.exception()
        self._settle(None if error is not None else ref_future.result(), error)

    def _settle(self, output: Any, error: BaseException | None) -> None:
        _in_flight.discard(self)
        with self._steps:
            leave = None if self._left else self._leave
            self._left = True
        if leave is not None:
            leave(error is not None and isinstance(error, LOST))
        try:
            if error is None:
                self.set_result(output)
                return
            try:
                raise_agent_failure(self._name, error, self._where)
            except BaseException as failure:  # noqa: BLE001 - the call's own outcome
                self.set_exception(failure)
        except InvalidStateError:
            pass  # cancelled meanwhile: the run has stopped waiting for it


class _InFlight:
    """The calls whose refs are being followed, watched for Ray shutting down under them:
    ``ray.shutdown()`` drops every ref's callback without calling it, which would leave
    their runs waiting forever. While calls are in flight, a daemon thread checks once a
    second that Ray is still up, and fails them with WorkerLost if it is not."""

    _PERIOD = 1.0

    def __init__(self) -> None:
        self._calls: set[RayCall] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, call: RayCall) -> None:
        with self._changed:
            self._calls.add(call)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, daemon=True,
                                                name="counterpoint-ray-watch")
                self._thread.start()
            elif len(self._calls) == 1:
                self._changed.notify()

    def discard(self, call: RayCall) -> None:
        with self._changed:
            self._calls.discard(call)

    def _watch(self) -> None:
        while True:
            with self._changed:
                while not self._calls:
                    self._changed.wait()  # idle: no wake-ups without calls in flight
            time.sleep(self._PERIOD)
            if ray.is_initialized():
                continue
            with self._changed:
                lost, self._calls = self._calls, set()
            for call in lost:
                call._lose(_SHUT_DOWN)


_in_flight = _InFlight()
