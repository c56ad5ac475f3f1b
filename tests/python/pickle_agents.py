"""Importable agents for the pickle tests (test_graph_pickle.py), besides those of
spec_agents.py: pickle stores a module-level function by its name, so graphs of these
pickle with plain pickle."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import counterpoint as cp


class Overlap:
    """Counts the calls of ``hold`` running at once, whichever agent makes them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0
        self.most = 0

    def reset(self) -> None:
        with self._lock:
            self.running = self.most = 0

    def __enter__(self) -> None:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self.running -= 1


overlap = Overlap()


def hold(value: Any) -> Any:
    """Holds its call for a moment, long enough for another call to overlap it."""
    with overlap:
        time.sleep(0.05)
    return value


async def async_double(value: int) -> int:
    await asyncio.sleep(0)
    return value * 2


def add_one(value: int) -> int:
    return value + 1


def fail(_: Any) -> Any:
    raise ValueError("the service is down")


def recover(_: Any) -> str:
    return "recovered"


def unsure_upper(text: str) -> cp.Result:
    return cp.Result(text.upper(), confidence=0.2)


class Locked:
    """An agent holding a lock: a module-level class, but its instances do not pickle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, value: Any) -> Any:
        with self._lock:
            return value
