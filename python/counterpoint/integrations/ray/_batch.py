"""Whole runs of a batch sharded over Ray actors, each compiling the graph once."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ray
from ray import cloudpickle

from ..._errors import WorkerLost
from ..._executors import RayBatch
from ..._pickling import check_picklable
from ..._progress import Progress
from ._session import LOST, connect

# Chunks each actor holds at once: one running, one queued behind it, so an actor never
# idles while the driver hands it the next.
_CHUNKS_PER_ACTOR = 2
# Runs of a chunk whose actor died go to another actor this many times at most.
_CHUNK_ATTEMPTS = 3


class _BatchWorker:
    """One actor: the graph, compiled once, running chunks of the batch."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph  # unpickling rebuilt and compiled it

    def run(self, inputs: list[Any], max_concurrency: int | None,
            budget: Mapping[str, float] | None, deadline: float | None) -> list[Any]:
        return self.graph.batch(inputs, max_concurrency=max_concurrency,
                                return_exceptions=True, budget=budget, deadline=deadline)


@dataclass
class _Chunk:
    start: int
    inputs: list[Any]
    attempts: int = 0


@dataclass
class _Worker:
    actor: Any
    chunks: set[Any] = field(default_factory=set)  # refs of the chunks it holds


def _chunk_size(spec: RayBatch, total: int) -> int:
    if spec.chunk_size is not None:
        return spec.chunk_size
    return max(1, min(256, -(-total // (spec.num_actors * 8))))


def run_batch(app: Any, inputs: Iterable[Any], spec: RayBatch, return_exceptions: bool,
              budget: Mapping[str, float] | None, deadline: float | None) -> list[Any]:
    """``app.batch(inputs, executor=spec)``: results in input order, each failed run's
    exception in its place, or the first one (in input order) raised at the end."""
    connect(spec.options.address)
    check_picklable(app, cloudpickle.dumps)
    inputs = list(inputs)
    results: list[Any] = [None] * len(inputs)
    if not inputs:
        return results
    size = _chunk_size(spec, len(inputs))
    queue = deque(_Chunk(start, inputs[start:start + size])
                  for start in range(0, len(inputs), size))
    graph = ray.put(app)  # pickled once; every actor unpickles (and compiles) it once
    host = ray.remote(max_restarts=0, max_task_retries=0)(_BatchWorker).options(
        **spec.options.ray_options())
    workers = [_Worker(host.remote(graph)) for _ in range(spec.num_actors)]
    in_flight: dict[Any, tuple[_Chunk, _Worker]] = {}
    progress = Progress(len(inputs), "batch") if spec.progress else None

    def submit(worker: _Worker) -> None:
        while queue and len(worker.chunks) < _CHUNKS_PER_ACTOR:
            chunk = queue.popleft()
            chunk.attempts += 1
            ref = worker.actor.run.remote(chunk.inputs, spec.max_concurrency, budget, deadline)
            worker.chunks.add(ref)
            in_flight[ref] = (chunk, worker)

    try:
        for worker in workers:
            submit(worker)
        while in_flight:
            [ref], _ = ray.wait(list(in_flight), num_returns=1)
            chunk, worker = in_flight.pop(ref)
            worker.chunks.discard(ref)
            try:
                outcomes = ray.get(ref)
            except LOST as error:
                outcomes = _lost(chunk, error, queue)
                _retire(worker, in_flight, queue, host, graph)
            except Exception as error:  # noqa: BLE001 - e.g. an output Ray cannot store
                outcomes = [error] * len(chunk.inputs)
            if outcomes is not None:
                results[chunk.start:chunk.start + len(outcomes)] = outcomes
                if progress is not None:
                    progress.advance(len(outcomes), sum(isinstance(outcome, BaseException)
                                                        for outcome in outcomes))
            submit(worker)
    finally:
        if progress is not None:
            progress.close()
        for worker in workers:
            ray.kill(worker.actor)
    if not return_exceptions:
        for outcome in results:
            if isinstance(outcome, BaseException):
                raise outcome
    return results


def _lost(chunk: _Chunk, error: BaseException, queue: deque[_Chunk]) -> list[Any] | None:
    """A chunk whose actor died: queued again (None), or failed after its last try."""
    if chunk.attempts < _CHUNK_ATTEMPTS:
        queue.appendleft(chunk)
        return None
    lost = WorkerLost("batch", f"the Ray actor running {len(chunk.inputs)} runs of the batch "
                      f"died {chunk.attempts} times ({type(error).__name__})")
    lost.__cause__ = error
    return [lost] * len(chunk.inputs)


def _retire(worker: _Worker, in_flight: dict[Any, tuple[_Chunk, _Worker]],
            queue: deque[_Chunk], host: Any, graph: Any) -> None:
    """Replaces a dead actor; the other chunk it held is queued again at once."""
    for ref in list(worker.chunks):
        chunk, _ = in_flight.pop(ref)
        chunk.attempts -= 1  # not its fault
        queue.appendleft(chunk)
    worker.chunks.clear()
    ray.kill(worker.actor)
    worker.actor = host.remote(graph)

