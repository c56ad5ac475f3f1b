"""Agents the Ray tests send to Ray workers, which import them from here (the tests put
this directory on the workers' PYTHONPATH)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import counterpoint as cp


def where(x):
    return {"pid": os.getpid(), "input": x}


def double(x):
    return 2 * x


async def async_double(x):
    await asyncio.sleep(0.01)
    return 2 * x


def spans(x):
    """Reports when it ran, to check limits."""
    start = time.time()
    time.sleep(0.3)
    return (start, time.time())


def bad_input(x):
    raise ValueError(f"bad input {x!r}")


def flaky(path: str):
    """Fails the first two calls (counted in a file the workers share), then succeeds."""
    marker = Path(path)
    calls = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(calls + 1))
    if calls < 2:
        raise ConnectionError(f"call {calls + 1} failed")
    return f"ok after {calls + 1} calls"


def sleep_then_touch(path: str):
    """Hangs for a while, then leaves a file: the file shows the call was not stopped."""
    time.sleep(4)
    Path(path).write_text("finished")
    return "finished"


def costly(x):
    return cp.Result(x, usage={"tokens": 5.0})


def die_once(path: str):
    """Kills its process the first time (the marker says it did), then answers."""
    marker = Path(path)
    if not marker.exists():
        marker.write_text("died")
        os._exit(1)
    return f"answered by {os.getpid()}"


def burn(milliseconds):
    """Uses the CPU for about this many milliseconds."""
    end = time.thread_time() + milliseconds / 1000  # this thread's CPU, not the process's
    total = 0
    while time.thread_time() < end:
        total += 1
    return milliseconds


class Model:
    """Stands for a model loaded once per actor: counts its loads and calls."""

    loads = 0

    def __init__(self, name: str = "model") -> None:
        Model.loads += 1
        self.name = name
        self.pid = os.getpid()
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        if x == "hang":
            time.sleep(60)
        return {"pid": self.pid, "calls": self.calls, "loads": Model.loads, "name": self.name,
                "input": x}


class AsyncModel:
    def __init__(self) -> None:
        self.pid = os.getpid()

    async def ainvoke(self, x):
        await asyncio.sleep(0.2)
        return {"pid": self.pid, "input": x}


def batch_item(x):
    if x % 7 == 3:
        raise ValueError(f"item {x} is bad")
    return x * 10


def node_and_pid(x):
    import ray

    time.sleep(0.1)  # long enough for every actor of a batch to get some
    return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(), "input": x}


def die_once_in_batch(item):
    """Item 5 kills its actor the first time (the marker says it did)."""
    value, marker = item
    if value == 5 and not Path(marker).exists():
        Path(marker).write_text("died")
        os._exit(1)
    return value * 10


def append_line(item):
    """Leaves a line in a file per call: how a test counts calls across processes."""
    value, path = item
    with open(path, "a") as calls:
        calls.write(f"{value}\n")
    return value


class AsyncNap:
    """Sleeps as long as its input says, in seconds, without holding its actor's loop."""

    async def __call__(self, seconds):
        await asyncio.sleep(seconds)
        return seconds


class Nap:
    """AsyncNap's blocking twin: a timed-out call costs its actor."""

    def __call__(self, seconds):
        time.sleep(seconds)
        return seconds
