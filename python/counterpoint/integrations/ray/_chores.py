"""A thread for work that waits on Ray, kept off the thread calls settle on.

Ray runs the done callbacks of object refs on a thread of its own, which it also needs
to answer blocking requests such as ``ray.kill``: a callback that makes one waits for
itself. An actor pool's upkeep after a call (replacing a dead actor, starting the next
waiting call) therefore runs here, in order, on one daemon thread started when first
needed.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

_log = logging.getLogger("counterpoint.ray")
_chores: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_starting = threading.Lock()
_thread: threading.Thread | None = None


def run_chore(chore: Callable[[], None]) -> None:
    """Runs ``chore`` soon, on the chores thread."""
    global _thread
    _chores.put(chore)
    if _thread is None:
        with _starting:
            if _thread is None:
                _thread = threading.Thread(target=_work, name="counterpoint-ray-chores",
                                           daemon=True)
                _thread.start()


def _work() -> None:
    while True:
        chore = _chores.get()
        try:
            chore()
        except Exception:  # noqa: BLE001 - one failed chore must not stop the others
            _log.exception("counterpoint: a Ray actor pool's upkeep failed")
