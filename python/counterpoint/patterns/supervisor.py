"""Hierarchical manager-worker orchestration: planner -> dispatcher -> workers -> synthesizer."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from .._agents import uses_event_loop
from .._errors import GraphError
from .._graph import CompiledGraph, Graph, delegate
from .._results import Subtask, value_of
from ._common import check_agent, check_agent_map, declared, identity


class PlanError(GraphError):
    """A planner's plan cannot run: unknown worker or dependency, duplicate id, cycle.

    Attributes:
        subtask: The id of the offending subtask (also in ``node``).
    """

    def __init__(self, message: str, subtask: str | None = None) -> None:
        super().__init__(message, subtask)
        self.subtask = subtask


def _field(item: Any, *names: str) -> Any:
    for name in names:
        if isinstance(item, Mapping):
            if name in item:
                return item[name]
        elif hasattr(item, name):
            return getattr(item, name)
    return None


def parse_plan(plan: Any, workers: Mapping[str, Any]) -> list[Subtask]:
    """Normalises a planner's output into subtasks and validates it."""
    plan = value_of(plan)
    if isinstance(plan, Mapping) and "subtasks" in plan:
        plan = plan["subtasks"]
    if isinstance(plan, (str, bytes, Mapping)) or not hasattr(plan, "__iter__"):
        raise PlanError(
            "the planner must return a list of subtasks (or {'subtasks': [...]}), got "
            f"{type(plan).__name__}"
        )
    subtasks: list[Subtask] = []
    for index, item in enumerate(plan):
        if isinstance(item, Subtask):
            subtasks.append(item)
            continue
        ident = _field(item, "id", "name")
        ident = f"t{index + 1}" if ident is None else ident
        if not isinstance(ident, str) or not ident or "/" in ident:
            raise PlanError(f"subtask #{index + 1}: id must be a non-empty string without '/', "
                            f"got {ident!r}")
        depends = _field(item, "depends_on", "after") or ()
        if isinstance(depends, str):
            depends = (depends,)
        depends = tuple(dict.fromkeys(depends))  # a dependency listed twice is one dependency
        subtasks.append(Subtask(ident, _field(item, "task", "input", "description"),
                                _field(item, "worker", "agent"), tuple(depends)))
    ids = [s.id for s in subtasks]
    for subtask in subtasks:
        if ids.count(subtask.id) > 1:
            raise PlanError(f"subtask {subtask.id!r} appears more than once; ids must be unique",
                            subtask.id)
        if subtask.id in ("collect", "plan") or subtask.id.endswith(":brief"):
            raise PlanError(f"subtask id {subtask.id!r} is reserved; rename it", subtask.id)
        worker = subtask.worker
        if not (worker is None and len(workers) == 1) and worker not in workers:
            raise PlanError(
                f"subtask {subtask.id!r} asks for worker {worker!r}; workers are {sorted(workers)}",
                subtask.id,
            )
        for dependency in subtask.depends_on:
            if dependency == subtask.id:
                raise PlanError(
                    f"subtask {subtask.id!r} depends on itself, a dependency cycle "
                    f"({subtask.id} -> {subtask.id})",
                    subtask.id,
                )
            if dependency not in ids:
                raise PlanError(
                    f"subtask {subtask.id!r} depends on {dependency!r}, which is not in the plan",
                    subtask.id,
                )
    _check_acyclic(subtasks)
    return subtasks


def _check_acyclic(subtasks: list[Subtask]) -> None:
    """Kahn's algorithm (iterative: plans may be long chains); on a cycle, names one."""
    depends = {s.id: s.depends_on for s in subtasks}
    dependents: dict[str, list[str]] = {s.id: [] for s in subtasks}
    missing = {s.id: len(s.depends_on) for s in subtasks}
    for subtask in subtasks:
        for dependency in subtask.depends_on:
            dependents[dependency].append(subtask.id)
    ready = [ident for ident, count in missing.items() if count == 0]
    while ready:
        for dependent in dependents[ready.pop()]:
            missing[dependent] -= 1
            if missing[dependent] == 0:
                ready.append(dependent)
    stuck = [s.id for s in subtasks if missing[s.id] > 0]
    if not stuck:
        return
    # Walk dependencies among the stuck subtasks until one repeats: that loop is a cycle.
    path, seen, current = [], {}, stuck[0]
    while current not in seen:
        seen[current] = len(path)
        path.append(current)
        current = next(d for d in depends[current] if missing[d] > 0)
    cycle = [*path[seen[current]:], current]
    raise PlanError(
        f"subtask {current!r} is part of a dependency cycle ({' -> '.join(cycle)})", current
    )


class _Dispatch:
    """Runs a validated plan as a child graph with one worker node per subtask.

    Child graphs depend only on the plan's shape (ids, workers, dependencies), not on the
    tasks, so runs whose plans share a shape reuse one compiled graph, and its workers
    keep their measured dispatch.
    """

    _CACHE_SIZE = 128

    def __init__(self, workers: Mapping[str, Any]) -> None:
        self.workers = dict(workers)
        self.only_worker = next(iter(self.workers)) if len(self.workers) == 1 else None
        self._graphs: dict[tuple, CompiledGraph] = {}
        self._lock = threading.Lock()

    def __call__(self, planned: Any) -> Any:
        subtasks = parse_plan(planned, self.workers)
        shape = tuple((s.id, s.worker or self.only_worker, s.depends_on) for s in subtasks)
        with self._lock:
            child = self._graphs.pop(shape, None)
            if child is None:
                child = self._build(subtasks)
            self._graphs[shape] = child  # most recently used last
            if len(self._graphs) > self._CACHE_SIZE:
                del self._graphs[next(iter(self._graphs))]
        return delegate(child, tuple(subtasks))

    def _build(self, subtasks: list[Subtask]) -> CompiledGraph:
        g = Graph()
        g.add("plan", identity, dispatch="inline")
        for subtask in subtasks:
            deps = list(subtask.depends_on)
            g.add(f"{subtask.id}:brief", _brief(subtask.id, deps), after=["plan", *deps],
                  dispatch="inline")
            g.add(subtask.id, self.workers[subtask.worker or self.only_worker],
                  after=f"{subtask.id}:brief")
        ids = [s.id for s in subtasks]

        def collect(outputs: Any) -> dict[str, Any]:
            if not ids:
                return {"plan": list(outputs), "results": {}}
            plan = outputs.pop("plan")
            return {"plan": list(plan), "results": outputs}

        g.add("collect", collect, after=["plan", *ids], dispatch="inline")
        try:
            return g.compile()
        except GraphError as exc:
            # Name the subtask, not the node that carries its brief.
            subtask = exc.node.removesuffix(":brief") if exc.node else None
            message = str(exc).replace(":brief'", "'").replace(":brief ", " ")
            raise PlanError(f"the plan cannot run: {message}", subtask) from None


def _brief(ident: str, deps: list[str]):
    """What a worker sees: its own subtask and the outputs it depends on, nothing else."""
    def brief(inputs: Any) -> dict[str, Any]:
        plan = inputs["plan"] if deps else inputs
        task = next(s.task for s in plan if s.id == ident)
        return {"id": ident, "task": task, "deps": {dep: inputs[dep] for dep in deps}}

    return brief


@declared("supervisor")
def supervisor(planner: Any, *, workers: Mapping[str, Any], synthesizer: Any) -> CompiledGraph:
    """A planner splits the task into subtasks with dependencies; workers run them as a
    DAG with maximal parallelism; a synthesizer merges the results.

    The planner returns a list of subtasks (dicts or :class:`Subtask`): ``id``,
    ``worker``, ``task`` and ``depends_on``. An invalid plan fails the run with a
    :class:`PlanError` naming the subtask. Each worker receives only
    ``{"id", "task", "deps": {dependency_id: output}}``; the synthesizer receives
    ``{"task": input, "plan": [Subtask...], "results": {id: output}}``. Workers may be
    supervisors themselves (tiers of coordinators).
    """
    check_agent("supervisor", "planner", planner)
    check_agent("supervisor", "synthesizer", synthesizer)
    check_agent_map("supervisor", "workers", "worker", workers)
    dispatch = _Dispatch(workers)
    dispatch.uses_event_loop = any(uses_event_loop(w) for w in workers.values())

    def brief(state: dict[str, Any]) -> dict[str, Any]:
        return {"task": state["input"], "plan": state["dispatch"]["plan"],
                "results": state["dispatch"]["results"]}

    g = Graph()
    g.add("input", identity, dispatch="inline")
    g.add("planner", planner)
    g.add("dispatch", dispatch, after="planner", dispatch="inline")
    g.add("brief", brief, after=["input", "dispatch"], dispatch="inline")
    g.add("synthesizer", synthesizer, after="brief")
    return g.compile()
