"""Agents and graphs of the durable-at-every-depth tests (test_durable_depth.py), in a
module so that processes killed mid-run and the processes that resume their runs build
the same graph.

Every user agent appends ``[path, attempt]`` to the file named by ``DEPTH_LOG`` when it
starts (its checkpoint path, from ``cp.current()``), so a test can tell which agents a
process called.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from typing import Any

import counterpoint as cp


def _called() -> None:
    call = cp.current()
    with open(os.environ["DEPTH_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps([call.path, call.attempt]) + "\n")


def _work() -> None:
    time.sleep(random.uniform(0.002, 0.02))


# ---- a supervisor inside a graph, and a fan_out inside a loop -----------------------


def planner(task: int) -> list[dict[str, Any]]:
    _called()
    _work()
    return [{"id": f"t{i}", "worker": "double", "task": task + i,
             "depends_on": [f"t{i - 1}"] if i % 2 else []} for i in range(6)]


def double(brief: dict[str, Any]) -> int:
    _called()
    _work()
    return 2 * brief["task"] + sum(brief["deps"].values())


def synthesize(done: dict[str, Any]) -> int:
    _called()
    return sum(done["results"].values())


def spread(state: dict[str, Any]) -> list[int]:
    return [10 * state["iteration"] + i for i in range(4)]


async def square(item: int) -> int:
    _called()
    await asyncio.sleep(random.uniform(0.002, 0.02))
    return item * item


def good_enough(review: dict[str, Any]) -> bool:
    _called()
    _work()
    return review["iteration"] >= 3


def combine(inputs: dict[str, Any]) -> dict[str, Any]:
    _called()
    return {"plan": inputs["plan"], "drafts": inputs["drafts"].value}


def nested_graph() -> cp.Graph:
    g = cp.Graph()
    g.add("plan", cp.supervisor(planner, workers={"double": double}, synthesizer=synthesize))
    g.add("drafts", cp.loop(cp.fan_out(square, over=spread), good_enough, max_iterations=5))
    g.add("combine", combine, after=["plan", "drafts"])
    return g


def expected(task: int) -> dict[str, Any]:
    """What ``nested_graph`` computes for ``task``, worked out in plain Python."""
    results = {}
    for i in range(6):
        results[i] = 2 * (task + i) + (results[i - 1] if i % 2 else 0)
    return {"plan": sum(results.values()), "drafts": [(30 + i) ** 2 for i in range(4)]}


# ---- questions for a person in parallel ---------------------------------------------


async def ask(item: int) -> tuple[int, Any]:
    _called()
    answer = cp.interrupt(f"question {item}")
    return item, answer


def asking_graph(width: int) -> cp.Graph:
    return cp.Graph().add("ask", cp.fan_out(ask, over=lambda n: list(range(n)),
                                            max_items=width))
