"""Whole runs of a batch sharded over Ray actors, each compiling the graph once."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
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
# Seconds a batch waits for the first of its actors to start (a cold cluster takes a few).
_START_TIMEOUT = 120.0


class _BatchWorker:
    """One actor: the graph, compiled once, running chunks of the batch."""

    def __init__(self, pickled_graph: bytes) -> None:
        self.graph = cloudpickle.loads(pickled_graph)  # rebuilt and compiled, once

    def ready(self) -> bool:
        return True

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
    started: Any  # the ref of its ready() call: set once it has compiled the graph
    ready: bool = False
    chunks: set[Any] = field(default_factory=set)  # refs of the chunks it holds


class _Pool:
    """The actors one graph's batches run on, kept between batches (a notebook re-runs
    a batch without paying for actor starts and compiles again) until the graph is
    garbage-collected or batched with other actors, when Ray stops them."""

    def __init__(self, pickled: bytes, spec: RayBatch) -> None:
        self.graph = ray.put(pickled)  # sent once to each node that runs an actor
        self.host = ray.remote(max_restarts=0, max_task_retries=0)(_BatchWorker).options(
            **spec.options.ray_options())
        self.workers = [self._start() for _ in range(spec.num_actors)]
        self.busy = threading.Lock()  # one batch at a time; another gets its own pool

    def _start(self) -> _Worker:
        actor = self.host.remote(self.graph)
        return _Worker(actor, actor.ready.remote())

    def replace(self, worker: _Worker) -> None:
        ray.kill(worker.actor)
        fresh = self._start()
        worker.actor, worker.started, worker.ready = fresh.actor, fresh.started, False

    def close(self) -> None:
        for worker in self.workers:
            ray.kill(worker.actor)


# By graph: the pool its last batch ran on, and what its actors are (how many, what they
# reserve, where). One per graph, as idle actors hold the cluster's resources.
_pools: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], _Pool]] = \
    weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()


@contextlib.contextmanager
def _pool_for(app: Any, spec: RayBatch) -> Iterator[_Pool]:
    key = (spec.num_actors, spec.options)
    retired: _Pool | None = None
    with _pools_lock:
        kept_key, pool = _pools.get(app, (None, None))
        if pool is not None and kept_key != key:
            retired, pool = pool, None
            del _pools[app]
        if pool is not None and not pool.busy.acquire(blocking=False):
            pool = None  # another batch of this graph is running on it
    if retired is not None:
        with retired.busy:
            retired.close()
    if pool is None:
        pool = _Pool(check_picklable(app, cloudpickle.dumps), spec)
        pool.busy.acquire()
        with _pools_lock:
            _pools.setdefault(app, (key, pool))
    kept = True
    try:
        yield pool
    except BaseException:
        # Interrupted: its actors may still be busy with chunks nobody waits for.
        kept = False
        raise
    finally:
        pool.busy.release()
        with _pools_lock:
            registered = _pools.get(app, (None, None))[1] is pool
            if registered and not kept:
                del _pools[app]
        if not (kept and registered):
            pool.close()


def _chunk_size(spec: RayBatch, total: int) -> int:
    if spec.chunk_size is not None:
        return spec.chunk_size
    return max(1, min(256, -(-total // (spec.num_actors * 8))))


def run_batch(app: Any, inputs: Iterable[Any], spec: RayBatch, return_exceptions: bool,
              budget: Mapping[str, float] | None, deadline: float | None,
              progress: str | None) -> list[Any]:
    """``app.batch(inputs, executor=spec)``: results in input order, each failed run's
    exception in its place, or the first one (in input order) raised at the end; a
    progress bar described by ``progress`` if given."""
    connect(spec.options.address)
    inputs = list(inputs)
    if not inputs:
        check_picklable(app, cloudpickle.dumps)
        return []
    with _pool_for(app, spec) as pool:
        results = _Sharding(pool, spec, inputs, budget, deadline, progress).run()
    if not return_exceptions:
        for outcome in results:
            if isinstance(outcome, BaseException):
                raise outcome
    return results


class _Sharding:
    """One batch on a pool: chunks go to actors that have started, two at a time each,
    so an actor that cannot start (the cluster lacks what it reserves) holds none."""

    def __init__(self, pool: _Pool, spec: RayBatch, inputs: list[Any],
                 budget: Mapping[str, float] | None, deadline: float | None,
                 progress: str | None) -> None:
        self.pool, self.spec, self.budget, self.deadline = pool, spec, budget, deadline
        self.results: list[Any] = [None] * len(inputs)
        size = _chunk_size(spec, len(inputs))
        self.queue = deque(_Chunk(start, inputs[start:start + size])
                           for start in range(0, len(inputs), size))
        self.in_flight: dict[Any, tuple[_Chunk, _Worker]] = {}
        self.progress = None if progress is None else Progress(len(inputs), progress)

    def run(self) -> list[Any]:
        try:
            for worker in self.pool.workers:
                self._submit(worker)
            while self.in_flight or self.queue:
                starting = {w.started: w for w in self.pool.workers if not w.ready}
                ready, _ = ray.wait([*self.in_flight, *starting], num_returns=1,
                                    timeout=None if self.in_flight else _START_TIMEOUT)
                if not ready:
                    raise WorkerLost(None, self._no_actor_started())
                [ref] = ready
                if ref in starting:
                    self._started(starting[ref], ref)
                else:
                    self._finished(ref)
        finally:
            if self.progress is not None:
                self.progress.close()
        return self.results

    def _submit(self, worker: _Worker) -> None:
        while worker.ready and self.queue and len(worker.chunks) < _CHUNKS_PER_ACTOR:
            chunk = self.queue.popleft()
            chunk.attempts += 1
            ref = worker.actor.run.remote(chunk.inputs, self.spec.max_concurrency,
                                          self.budget, self.deadline)
            worker.chunks.add(ref)
            self.in_flight[ref] = (chunk, worker)

    def _started(self, worker: _Worker, ref: Any) -> None:
        try:
            ray.get(ref)
        except Exception as error:
            raise WorkerLost(None, "a Ray actor of the batch could not rebuild the graph "
                             f"({type(error).__name__}: {error})") from error
        worker.ready = True
        self._submit(worker)

    def _finished(self, ref: Any) -> None:
        chunk, worker = self.in_flight.pop(ref)
        worker.chunks.discard(ref)
        try:
            outcomes = ray.get(ref)
        except LOST as error:
            outcomes = self._lost(chunk, error)
            self._requeue(worker)
            self.pool.replace(worker)
        except Exception as error:  # noqa: BLE001 - e.g. an output Ray cannot store
            outcomes = [error] * len(chunk.inputs)
        if outcomes is not None:
            self.results[chunk.start:chunk.start + len(outcomes)] = outcomes
            if self.progress is not None:
                self.progress.advance(len(outcomes), sum(
                    isinstance(outcome, BaseException) for outcome in outcomes))
        self._submit(worker)

    def _lost(self, chunk: _Chunk, error: BaseException) -> list[Any] | None:
        """A chunk whose actor died: queued again (None), or failed after its last try."""
        if chunk.attempts < _CHUNK_ATTEMPTS:
            self.queue.appendleft(chunk)
            return None
        lost = WorkerLost(None, f"the Ray actors running {len(chunk.inputs)} runs of the "
                          f"batch died {chunk.attempts} times ({type(error).__name__})")
        lost.__cause__ = error
        return [lost] * len(chunk.inputs)

    def _requeue(self, worker: _Worker) -> None:
        """The other chunk a dead actor held goes back to the queue at once."""
        for ref in list(worker.chunks):
            chunk, _ = self.in_flight.pop(ref)
            chunk.attempts -= 1  # not its fault
            self.queue.appendleft(chunk)
        worker.chunks.clear()

    def _no_actor_started(self) -> str:
        options = self.spec.options.ray_options() or {"num_cpus": 1}
        wanted = ", ".join(f"{name}={value}" for name, value in options.items())
        return (f"no Ray actor of the batch started within {_START_TIMEOUT:g} s: the cluster "
                f"may lack what each reserves ({wanted}), perhaps held by other actors; "
                "ask for less (cp.ray_batch(num_cpus=...)) or free the cluster")
