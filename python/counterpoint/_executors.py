"""Where an agent's calls run when not in this process: descriptions of Ray executors.

The engine always stays local (it schedules in microseconds); an executor sends only the
agent's call to the cluster and hands the engine a coroutine agent that awaits the
remote result, so every policy (retry, timeout, limits, breaker, budget, review) and
every checkpoint works as for a local agent. This module imports nothing of Ray: the
descriptions are plain values (they go in specs and pickles), and the code that talks
to Ray, in ``counterpoint.integrations.ray``, is imported at compile time by graphs that
use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from importlib.util import find_spec
from typing import Any

from ._errors import GraphError
from ._policies import _count

RAY_INSTALL_HINT = 'pip install "counterpoint[ray]"'


def _resource(owner: str, name: str, value: Any, *, whole: bool = False) -> Any:
    """A resource amount (None: Ray's default); raises GraphError naming it otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value < 0 or (whole and int(value) != value):
        kind = "a whole number" if whole else "a number"
        raise GraphError(f"{owner}: {name} must be {kind} >= 0 or None, got {value!r}")
    return value


def _address(owner: str, value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise GraphError(
            f"{owner}: address must be a Ray cluster address such as 'auto' or "
            f"'ray://head:10001', or None to use the Ray this process is connected to "
            f"(or a new local one), got {value!r}")
    return value


def _resources(owner: str, value: Any) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise GraphError(f"{owner}: resources must be a dict of custom resource name -> "
                         f"amount, got {value!r}")
    for key, amount in value.items():
        _resource(owner, f"resources[{key!r}]", amount)
    return dict(value)


@dataclass(frozen=True)
class RayOptions:
    """What every Ray worker of an executor reserves, and which cluster it runs on."""

    num_cpus: float | None = None
    num_gpus: float | None = None
    memory: int | None = None  # bytes
    resources: dict[str, float] | None = None
    address: str | None = None

    def check(self, owner: str) -> None:
        _resource(owner, "num_cpus", self.num_cpus)
        _resource(owner, "num_gpus", self.num_gpus)
        _resource(owner, "memory", self.memory, whole=True)
        _resources(owner, self.resources)
        _address(owner, self.address)

    def ray_options(self) -> dict[str, Any]:
        """The options given (the others are Ray's defaults), as ``.options()`` takes them."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "address" and getattr(self, f.name) is not None}


class Executor:
    """Runs an agent's calls somewhere else; see :func:`ray` and :func:`ray_actors`."""

    options: RayOptions

    def bind(self, name: str, agent: Any) -> Any:
        """The agent the engine runs in place of ``agent`` (node ``name``): a
        SubmittingAgent, which starts each call remotely and returns its future."""
        raise NotImplementedError

    def __call__(self, agent: Any) -> Any:
        """``agent`` as an agent that runs this way anywhere an agent goes (a pattern's
        member, a fallback): ``cp.parallel(a=cp.ray(num_cpus=1)(embed), b=local)``."""
        return self.bind(_agent_name(agent), agent)


def _agent_name(agent: Any) -> str:
    name = getattr(agent, "__name__", None) or getattr(agent, "name", None)
    return name if isinstance(name, str) and name else type(agent).__name__


# Imports counterpoint.integrations.ray, which sits above this module: the package
# registers it (as it registers the LangChain graph class with _graph).
_load_integration: Callable[[], Any] | None = None


def register_integration(load: Callable[[], Any]) -> None:
    global _load_integration
    _load_integration = load


def _integration() -> Any:
    """counterpoint.integrations.ray, or a GraphError saying how to install Ray."""
    if find_spec("ray") is None:
        raise GraphError(f"running agents on Ray needs Ray: {RAY_INSTALL_HINT}")
    assert _load_integration is not None, "counterpoint registers its Ray integration"
    return _load_integration()


@dataclass(frozen=True)
class RayTasks(Executor):
    """Each call of the agent is one Ray task (see :func:`ray`)."""

    options: RayOptions = field(default_factory=RayOptions)

    def bind(self, name: str, agent: Any) -> Any:
        return _integration().RayTaskAgent(name, agent, self)


@dataclass(frozen=True)
class RayActors(Executor):
    """The agent's calls go to a pool of Ray actors (see :func:`ray_actors`)."""

    num_actors: int = 1
    max_concurrency: int = 1
    options: RayOptions = field(default_factory=RayOptions)

    def bind(self, name: str, agent: Any) -> Any:
        return _integration().RayActorAgent(name, agent, self)


@dataclass(frozen=True)
class RayBatch:
    """Shards a batch's runs over Ray actors (see :func:`ray_batch`)."""

    num_actors: int = 2
    chunk_size: int | None = None
    max_concurrency: int | None = None
    options: RayOptions = field(default_factory=RayOptions)


def ray(*, num_cpus: float | None = None, num_gpus: float | None = None,
        memory: int | None = None, resources: dict[str, float] | None = None,
        address: str | None = None) -> RayTasks:
    """Runs each call of an agent as a Ray task: ``g.add("embed", embed,
    executor=cp.ray(num_cpus=1))``.

    The engine awaits the task without holding a thread. Timeouts and cancellation
    cancel the task (its worker process is stopped); Ray's own retries are off, so the
    agent's :class:`Retry` decides, as for a local agent. An exception the agent raises
    on the cluster reaches the run as itself. The agent (a function, ``async def``
    function, runnable or compiled graph) travels to the cluster by cloudpickle, once.

    Args:
        num_cpus, num_gpus, memory, resources: What each task reserves on its node
            (Ray's defaults when None: one CPU).
        address: The cluster to connect to (``"auto"``, ``"ray://head:10001"``). None
            uses the Ray this process is already connected to, or starts a local one.
            Either way ``compile()`` connects, once per process.
    """
    options = RayOptions(num_cpus, num_gpus, memory, resources, address)
    options.check("cp.ray")
    return RayTasks(options)


def ray_actors(num_actors: int = 1, *, max_concurrency: int = 1,
               num_cpus: float | None = None, num_gpus: float | None = None,
               memory: int | None = None, resources: dict[str, float] | None = None,
               address: str | None = None) -> RayActors:
    """Runs an agent's calls on a pool of Ray actors, for agents that hold a model or a
    connection: ``g.add("judge", LocalModel, executor=cp.ray_actors(2, num_gpus=1))``.

    A class (or a ``functools.partial`` of one) is instantiated once in each actor and
    its instance called (or its ``invoke``/``ainvoke``); any other agent is copied to
    each actor. Each call goes to the live actor with the fewest calls in flight. An
    actor that dies fails the calls it was running with :class:`WorkerLost`, naming the
    agent, and is replaced; a :class:`Retry` then lands on a live actor. A call that
    times out is cancelled; a synchronous call that cannot be interrupted gets its actor
    replaced, so a hung call never holds the pool.

    Args:
        num_actors: Actors in the pool.
        max_concurrency: Calls each actor runs at once (``async def`` agents can take
            many; a model usually one).
        num_cpus, num_gpus, memory, resources: What each actor reserves for its lifetime.
        address: As for :func:`ray`.
    """
    owner = "cp.ray_actors"
    _count(owner, "num_actors", num_actors)
    _count(owner, "max_concurrency", max_concurrency)
    options = RayOptions(num_cpus, num_gpus, memory, resources, address)
    options.check(owner)
    return RayActors(num_actors, max_concurrency, options)


def ray_batch(num_actors: int = 2, *, chunk_size: int | None = None,
              max_concurrency: int | None = None,
              num_cpus: float | None = 1, num_gpus: float | None = None,
              memory: int | None = None, resources: dict[str, float] | None = None,
              address: str | None = None, progress: Any = None) -> RayBatch:
    """Shards whole runs of a batch over Ray actors: ``app.batch(docs,
    executor=cp.ray_batch(8))``.

    Each actor receives the graph once (by cloudpickle; an agent that cannot travel is
    named in the error) and compiles it; inputs go out in chunks, a few per actor at a
    time so that memory stays bounded, and results come back in input order, a failed
    run's exception in its place with ``return_exceptions=True``. A chunk whose actor
    died runs again on a live one. ``batch(progress=True)`` counts the runs as their
    chunks come back.

    Args:
        num_actors: Actors, each running its chunks with the local engine.
        chunk_size: Inputs per chunk (default: so that each actor gets about eight
            chunks, at most 256 inputs each).
        max_concurrency: Runs in flight inside each actor (``batch``'s own default when
            None).
        num_cpus, num_gpus, memory, resources: What each actor reserves.
        address: As for :func:`ray`.
    """
    owner = "cp.ray_batch"
    if progress is not None:
        raise GraphError("cp.ray_batch(progress=...) moved to the batch itself: "
                         "app.batch(inputs, executor=cp.ray_batch(...), progress=True)")
    _count(owner, "num_actors", num_actors)
    if chunk_size is not None:
        _count(owner, "chunk_size", chunk_size)
    if max_concurrency is not None:
        _count(owner, "max_concurrency", max_concurrency)
    options = RayOptions(num_cpus, num_gpus, memory, resources, address)
    options.check(owner)
    return RayBatch(num_actors, chunk_size, max_concurrency, options)


def _batch_spec(executor: Any, max_concurrency: int | None) -> RayBatch:
    if not isinstance(executor, RayBatch):
        raise GraphError(f"batch(executor=...) takes cp.ray_batch(...), got {executor!r} "
                         "(cp.ray() and cp.ray_actors() go on agents: Graph.add(executor=))")
    if max_concurrency is None:
        return executor
    return replace(executor, max_concurrency=max_concurrency)


def run_batch_on(executor: Any, app: Any, inputs: Any, max_concurrency: int | None,
                 return_exceptions: bool, budget: Any, deadline: Any,
                 progress: str | None) -> list[Any]:
    """``app.batch(inputs, executor=executor)``; ``max_concurrency`` (checked by the
    caller), if given, is the runs in flight in each actor; ``progress``, if given,
    the description of a progress bar."""
    spec = _batch_spec(executor, max_concurrency)
    results: list[Any] = _integration().run_batch(app, inputs, spec, return_exceptions,
                                                  budget, deadline, progress)
    return results


def connect(executor: Any) -> None:
    """Connects this process to Ray as a ``cp.ray_batch`` executor says (once), on this
    thread: Ray keeps per-thread state from its initialization, so not on a short-lived
    one."""
    _integration().connect(_batch_spec(executor, None).options.address)
