"""The thread blocked in ``invoke()``, lent to the remote calls its run submits.

A submitting agent's call (a Ray task or actor call) is followed from a callback that
the remote system runs on a thread of its own once the work is done. That is one thread
hand-off more than a caller blocking in the remote system's own wait (``ray.get``), and
on a call of a millisecond it is a tenth of the time. ``invoke()`` has a thread that
does nothing but wait for its run, so it lends it: a call that can be waited for in a
blocking call offers that wait, and the thread waits there, one call at a time. A call
offered while the thread waits for another, or once the run has ended, is followed from
its callback as before, so calls in parallel never wait for each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

# What a call offers: a wait that blocks until the call's outcome is known and returns
# what settles the call with it (None if there is nothing left to settle, or if it gave
# the call back because the thread is no longer lent).
Wait = Callable[[], Callable[[], None] | None]


class LentThread:
    """A thread waiting for a run, taking the waits its run's calls offer it."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._offered: Wait | None = None
        self._busy = False  # taken an offer whose outcome it has not had yet
        self._ended = False
        self._run: Any = None  # the run it waits for, once started

    def lent(self) -> bool:
        """Whether the thread is still lent: its run has not ended. A wait it took for
        a call of another run (one an agent started and left running) hands that call
        back, to be followed from its callback, once this run has ended."""
        return self._run is None or not self._run.done

    def offer(self, wait: Wait) -> bool:
        """Hands over ``wait``. False if the thread is busy with another call or its
        run has ended: the caller then follows its call itself."""
        with self._changed:
            if self._busy or self._ended:
                return False
            self._busy = True
            self._offered = wait
            self._changed.notify()
            return True

    def run_ended(self) -> None:
        with self._changed:
            self._ended = True
            self._changed.notify()

    def serve(self, run: Any) -> None:
        """Waits for the calls offered until ``run`` (a native run handle) has ended.
        A wait already taken is finished even then: the run's end cancels its call, or
        (for a call of another run) the wait sees :meth:`lent` turn false."""
        self._run = run
        told_of_end = False  # asked to be: only when there is nothing to wait for
        while True:
            with self._changed:
                while told_of_end and self._offered is None and not self._ended \
                        and not run.done:
                    self._changed.wait()
                if run.done:
                    self._ended = True  # no offer taken from now on
                wait, self._offered = self._offered, None
                ended = self._ended
            if wait is None:
                if ended:
                    return
                run.when_ended(self.run_ended)  # at once, on this thread, if it has
                told_of_end = True
                continue
            try:
                settle = wait()
            finally:
                with self._changed:
                    self._busy = False
            # Settled once free: the agents the call's output starts can offer theirs.
            if settle is not None:
                settle()


# Set while invoke() starts a run; the run's agent calls copy it with their context.
lent_thread: ContextVar[LentThread | None] = ContextVar("counterpoint_lent_thread",
                                                         default=None)
