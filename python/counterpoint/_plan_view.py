"""A compiled graph's plan as pictures draw it: every agent at every depth, with the
paths run events name it by, its edges and what its node spec says about it.

Nested graphs (agents that are compiled graphs) and the child graphs that patterns run in
an agent's place are expanded in that agent's place, by the conventions of
``counterpoint.patterns._drawing_hooks``. The SVG picture, the Mermaid text, LangChain's
``get_graph()`` and ``counterpoint graph`` all draw from this one view.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

from ._executors import RayActors, RayTasks
from ._graph import CompiledGraph, register_plan_edges
from ._spec import NodeSpec
from .patterns._drawing_hooks import child_graph, drawn_agents, routes


@dataclass(frozen=True, eq=False)
class PlanPart:
    """One agent of a plan.

    Attributes:
        name: The agent's name in its own graph.
        path: Its path as run events name it (``"review/security"``).
        agent: The agent (inside its ``cp.policy`` wrapper, if any).
        after: The names of the agents of its own graph it runs after.
        routes: Its out-edges are conditional: it returns ``cp.route(...)``.
        priority: Its priority in the compiled plan (inherited when not declared).
        declared_priority: The priority given to ``add()``; None when it inherits one.
        join: When it runs, given several predecessors (``"all"``, ``"any"``, ...).
        on_error: What its failure does: ``"fail"`` or ``"continue"``.
        policies: Its policies in short: ``"retry 3"``, ``"timeout 2s"``, ``"limit llm"``,
            ``"breaker api"``, ``"review < 0.7"``, ``"fallback"``, ``"ray"``,
            ``"ray actors 2"``.
        inner: The graph run in its place, expanded; None for an agent drawn as one node.
    """

    name: str
    path: str
    agent: Any
    after: tuple[str, ...]
    routes: bool
    priority: int
    declared_priority: int | None
    join: str
    on_error: str
    policies: tuple[str, ...]
    inner: Plan | None = None

    @property
    def after_paths(self) -> tuple[str, ...]:
        """The paths of the agents it runs after."""
        prefix = self.path[:len(self.path) - len(self.name)]
        return tuple(prefix + name for name in self.after)

    @property
    def repeats(self) -> bool:
        """Its nested graph may run again after it ends (a loop, a chat's turns)."""
        return self.inner is not None and self.inner.repeats

    @property
    def notes(self) -> str:
        """What pictures write under its name: its declared priority and its policies
        (``"priority 2 · retry 3 · timeout 2s"``); "" if it has none."""
        priority = [f"priority {self.declared_priority}"] if self.declared_priority else []
        return " · ".join([*priority, *self.policies])


@dataclass(frozen=True, eq=False)
class Plan:
    """One compiled graph as drawn: its agents in topological order.

    Attributes:
        parts: Its agents, nested graphs expanded in their parts.
        entries: The names of the agents that receive the graph's input.
        sinks: The names of the agents whose outputs make its result.
        repeats: The agent that runs it may run it again after it ends.
    """

    parts: tuple[PlanPart, ...]
    entries: tuple[str, ...]
    sinks: tuple[str, ...]
    repeats: bool = False

    @cached_property
    def by_name(self) -> dict[str, PlanPart]:
        return {part.name: part for part in self.parts}

    def walk(self) -> Iterator[PlanPart]:
        """Every part at every depth, each before the parts of its nested graph."""
        for part in self.parts:
            yield part
            if part.inner is not None:
                yield from part.inner.walk()

    def leaves(self) -> Iterator[PlanPart]:
        """The parts drawn as nodes: those with no nested graph, at every depth."""
        return (part for part in self.walk() if part.inner is None)


class DrawnEdge(NamedTuple):
    """An edge between two drawn nodes (parts with no nested graph)."""

    source: PlanPart
    target: PlanPart
    conditional: bool  # the source routes, or it is a repeat
    repeat: bool  # from a repeating graph's sinks back to its entries
    graph: Plan  # the graph whose edge it is (the repeating one, for a repeat)


def plan_view(graph: CompiledGraph, depth: int | None = None) -> Plan:
    """The plan of ``graph``, nested graphs expanded ``depth`` levels deep (None: all).

    Raises:
        TypeError: ``graph`` is not a compiled graph.
    """
    if not isinstance(graph, CompiledGraph):
        raise TypeError(f"expected a compiled graph (Graph.compile()), got {graph!r}")
    return _plan(graph, "", depth, (graph,), repeats=False)


def _plan(graph: CompiledGraph, prefix: str, depth: int | None,
          outer: tuple[CompiledGraph, ...], *, repeats: bool) -> Plan:
    """``outer`` are the graphs being expanded around this one: an agent attribute could
    name one of them, and expanding it again would never end."""
    described = graph.describe()
    specs: dict[str, NodeSpec] = {spec.name: spec for spec in getattr(graph, "_specs", ())}
    parts = []
    for node, agent in drawn_agents(graph):
        name = node["name"]
        path = prefix + name
        spec = specs.get(name)
        inner = None
        child, child_repeats = child_graph(agent)
        if child is not None and depth != 0 and all(child is not g for g in outer):
            inner = _plan(child, path + "/", None if depth is None else depth - 1,
                          (*outer, child), repeats=child_repeats)
        parts.append(PlanPart(
            name=name, path=path, agent=agent, after=tuple(node["after"]),
            routes=routes(agent), priority=node["priority"],
            declared_priority=None if spec is None else spec.priority,
            join=node["join"], on_error=node["on_error"],
            policies=() if spec is None else policies_of(spec, agent), inner=inner))
    return Plan(tuple(parts), tuple(described["entries"]), tuple(described["sinks"]),
                repeats)


def plan_edges(graph: CompiledGraph) -> dict[str, tuple[str, ...]]:
    """The data edges of ``graph`` at every depth: each agent's path, and the paths of
    the agents it runs after (an agent of a nested graph after agents of that graph;
    the graph's entries after none: the agent that runs the graph starts them).

    Example:
        >>> plan_edges(app)
        {'prepare': (), 'review': ('prepare',), 'review/security': (),
         'review/perf': (), 'review/merge': ('review/security', 'review/perf'), ...}
    """
    return {part.path: part.after_paths for part in plan_view(graph).walk()}


def firsts(part: PlanPart) -> list[PlanPart]:
    """The drawn nodes an edge into ``part`` reaches: ``part``, or the entries of its
    nested graph (at any depth)."""
    if part.inner is None:
        return [part]
    return [first for name in part.inner.entries for first in firsts(part.inner.by_name[name])]


def lasts(part: PlanPart) -> list[PlanPart]:
    """The drawn nodes an edge out of ``part`` leaves from: ``part``, or the sinks of its
    nested graph (at any depth)."""
    if part.inner is None:
        return [part]
    return [last for name in part.inner.sinks for last in lasts(part.inner.by_name[name])]


def drawn_edges(plan: Plan) -> list[DrawnEdge]:
    """The edges between the drawn nodes of ``plan``: for each data edge, from the
    sinks of the agent before to the entries of the agent after; for each repeating
    graph, from its sinks back to its entries."""
    edges: list[DrawnEdge] = []
    for part in plan.parts:
        for name in part.after:
            edges.extend(DrawnEdge(last, first, last.routes, False, plan)
                         for last in lasts(plan.by_name[name]) for first in firsts(part))
        if part.inner is not None:
            edges.extend(drawn_edges(part.inner))
            if part.inner.repeats:
                edges.extend(DrawnEdge(last, first, True, True, part.inner)
                             for last in lasts(part) for first in firsts(part))
    return edges


def policies_of(spec: NodeSpec, agent: Any) -> tuple[str, ...]:
    """The policies of a node in short (see :attr:`PlanPart.policies`)."""
    described = []
    policed = spec.policed
    if policed is not None:
        if policed.retry is not None:
            described.append(f"retry {policed.retry.max_attempts}")
        if policed.timeout is not None:
            described.append(f"timeout {float(policed.timeout):g}s")
        described.extend(_named("limit", limit._shared_name) for limit in policed.limits)
        if policed.breaker is not None:
            described.append(_named("breaker", policed.breaker._shared_name))
        if policed.review is not None:
            described.append(f"review < {policed.review.below:g}")
        if policed.fallback is not None:
            described.append("fallback")
        if policed.cache is not None:
            ttl = policed.cache.ttl
            described.append("cache" if ttl is None else f"cache {float(ttl):g}s")
    # An executor given to add(), or one an agent was wrapped with (cp.ray(...)(agent)).
    executor = spec.executor if spec.executor is not None else getattr(agent, "executor", None)
    if isinstance(executor, RayActors):
        described.append(f"ray actors {executor.num_actors}")
    elif isinstance(executor, RayTasks):
        described.append("ray")
    return tuple(described)


def _named(kind: str, name: str | None) -> str:
    """``"limit llm"``; just ``"limit"`` for an anonymous one (its generated name says
    nothing)."""
    return kind if name is None else f"{kind} {name}"


register_plan_edges(plan_edges)
