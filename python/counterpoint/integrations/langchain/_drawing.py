"""A compiled graph's plan as a LangChain :class:`~langchain_core.runnables.graph.Graph`,
nested graphs and patterns drawn as subgraphs, as LangGraph's ``get_graph(xray=True)``.

Conventions, those of LangGraph so that LangChain's drawing and LangGraph tooling read it:

- ``__start__`` leads to every entry agent and every sink leads to ``__end__``.
- A node's id is its agent's path joined by ``":"`` (``"review:security"``): LangChain's
  mermaid drawing nests nodes whose ids share a ``":"`` prefix in a subgraph named after
  the prefix's last part. Its name is the path as run events name the agent
  (``"review/security"``).
- A nested graph is drawn in place of its agent: edges into the agent go to the nested
  graph's entries, edges out of it leave from its sinks. A nested graph of one agent is
  that agent, drawn under the id of the agent it replaces; one with no edge between its
  agents is drawn as one node (LangChain's mermaid drawing would drop its agents).

The agents, their edges and nested graphs come from the plan view every picture is
drawn from (``counterpoint._plan_view``, which reads what patterns say of their
plain-function agents through ``counterpoint.patterns._drawing_hooks``); a child graph
that may run again is drawn with a conditional edge from its sinks back to its entries.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Any, cast

from langchain_core.runnables.graph import Graph, Node

from ..._graph import CompiledGraph
from ..._plan_view import Plan, PlanPart, drawn_edges, firsts, lasts, plan_view

START = "__start__"
END = "__end__"
# Stands in for ':' inside an agent's name, since LangChain reads every ':' of a node id
# (and of a node name, for the mermaid label) as a subgraph boundary. Patterns name
# helper agents like "merge:judge"; U+A789 looks like a colon and is not one.
_COLON = "\ua789"


@dataclass
class _Id:
    """A drawn node's id: ``":".join(prefix + [segment])``; a subgraph's parts have its
    id (segment included) as their prefix."""

    prefix: list[str]
    segment: str = ""

    @property
    def id(self) -> str:
        return ":".join([*self.prefix, self.segment])


def plan_graph(graph: CompiledGraph, *, xray: bool | int = True) -> Graph:
    """The agents of ``graph`` and the order they run in, as LangChain draws graphs.

    Example:
        >>> print(plan_graph(app).draw_mermaid())

    Args:
        graph: A compiled graph.
        xray: Draw nested graphs (agents that are compiled graphs, and the child graphs
            patterns run) as subgraphs: ``True`` at every depth, ``False`` never, an int
            that many levels deep.

    Returns:
        A graph with ``__start__``, one node per drawn agent (its ``data`` the agent
        itself, a compiled graph when it is not expanded) and ``__end__``; edges follow
        ``after=``, conditional when the agent before is known to route.

    Raises:
        TypeError: ``xray`` is not a bool or an int.
        ValueError: ``xray`` is a negative int.
    """
    if isinstance(xray, bool):
        depth = None if xray else 0
    elif isinstance(xray, int):
        if xray < 0:
            raise ValueError(f"xray must be a bool or a depth >= 0, got {xray!r}")
        depth = xray
    else:
        raise TypeError(f"xray must be a bool or an int, got {type(xray).__name__}")
    plan = _drawable(plan_view(graph, depth))
    return _draw(plan, _assign_ids(plan))


def _drawable(plan: Plan) -> Plan:
    """``plan`` with the nested graphs LangChain's mermaid drawing would lose drawn as
    their one agent: it drops the agents of a subgraph in which no edge joins two of
    them (agents that all run on the input and each end the run)."""
    parts = []
    for part in plan.parts:
        if part.inner is not None:
            inner = _drawable(part.inner)
            if len(inner.parts) == 1 or any(p.after for p in inner.parts):
                part = replace(part, inner=inner)
            else:
                part = replace(part, inner=None)
        parts.append(part)
    return replace(plan, parts=tuple(parts))


def _escaped(name: str) -> str:
    return name.replace(":", _COLON)


def _assign_ids(top: Plan) -> dict[PlanPart, _Id]:
    """The id of every drawn part, working around limits of LangChain's mermaid drawing
    (which raises, draws stray subgraphs or drops nodes otherwise):

    - A subgraph is drawn only if an edge joins two of its own agents, so a nested graph
      of one agent (such as the graph ``cp.loop`` returns, which delegates to the one
      that iterates) is not a level of its own: that agent is drawn in its place, under
      its id, named by its full path (``"step1/loop/worker"`` has id ``"step1:worker"``).
    - Subgraphs are named by the last part of their prefix, and two with one name raise
      ValueError: a nested graph's id part gets a suffix (``"review_2"``) when another
      subgraph, or a top-level node, already has its name. Names keep the true path.
    - An edge is drawn in the subgraph named by *every* id part its two ends share, not
      only the leading ones: ``"step1:g" -> "step2:g"`` would be drawn in a stray
      subgraph ``g``. Such an edge's target (or source) gets a suffix instead.
    """
    top_level = {START, END,
                 *(_escaped(p.name) for p in top.parts if _innermost(p).inner is None)}
    subgraphs: set[str] = set()
    ids: dict[PlanPart, _Id] = {}
    # Breadth first, so that the shallower of two nested graphs with one name keeps it.
    queue: deque[tuple[Plan, list[str]]] = deque([(top, [])])
    leaves: list[PlanPart] = []
    while queue:
        plan, prefix = queue.popleft()
        siblings = {_escaped(p.name) for p in plan.parts}
        for part in plan.parts:
            base = segment = _escaped(part.name)
            drawn = _innermost(part)
            suffix = 2
            if drawn.inner is None:
                # Only an agent named like the start or end node needs another id.
                while not prefix and segment in (START, END):
                    segment, suffix = f"{base}_{suffix}", suffix + 1
                ids[drawn] = _Id(prefix, segment)
                leaves.append(drawn)
                continue
            while segment in subgraphs or segment in top_level or (
                    segment != base and segment in siblings):
                segment, suffix = f"{base}_{suffix}", suffix + 1
            subgraphs.add(segment)
            siblings.add(segment)
            ids[drawn] = _Id(prefix, segment)
            queue.append((drawn.inner, [*prefix, segment]))
    _separate_edge_subgraphs(top, [ids[leaf] for leaf in leaves], ids, subgraphs)
    return ids


def _drawn(part: PlanPart) -> PlanPart:
    """The part drawn in ``part``'s place: the one agent of a nested graph of one agent
    (which may be a nested graph itself), or ``part``."""
    if part.inner is not None and len(part.inner.parts) == 1:
        return part.inner.parts[0]
    return part


def _innermost(part: PlanPart) -> PlanPart:
    while part is not _drawn(part):
        part = _drawn(part)
    return part


def _separate_edge_subgraphs(top: Plan, leaves: list[_Id], ids: dict[PlanPart, _Id],
                             subgraphs: set[str]) -> None:
    """Renames leaves until every edge's shared id parts are a leading run of both ids
    (see :func:`_assign_ids`). Subgraph id parts are unique, so a stray match always
    involves a leaf's last part; renamed, that part is unique at its depth and the leaf
    is never renamed again."""
    taken = {(len(leaf.prefix), leaf.segment) for leaf in leaves}
    edges = [(ids[edge.source], ids[edge.target]) for edge in drawn_edges(top)]
    changed = True
    while changed:
        changed = False
        for source, target in edges:
            depth = _stray_match(source.id.split(":"), target.id.split(":"))
            if depth is None:
                continue
            leaf = target if depth == len(target.prefix) else source
            base, suffix = leaf.segment, 2
            while (depth, f"{base}_{suffix}") in taken or f"{base}_{suffix}" in subgraphs:
                suffix += 1
            leaf.segment = f"{base}_{suffix}"
            taken.add((depth, leaf.segment))
            changed = True


def _stray_match(source: list[str], target: list[str]) -> int | None:
    """The first position past the ids' leading shared run where they share a part."""
    diverged = False
    for depth, (a, b) in enumerate(zip(source, target)):
        if a != b:
            diverged = True
        elif diverged:
            return depth
    return None


def _draw(top: Plan, ids: dict[PlanPart, _Id]) -> Graph:
    graph = Graph()
    start = graph.add_node(None, START)
    nodes: dict[PlanPart, Node] = {}
    for leaf in top.leaves():
        # Node data is typed as a runnable or a schema; any agent draws (LangChain
        # names a node with a readable id by its name and serializes unknown data).
        node = Node(id=ids[leaf].id, name=_escaped(leaf.path), data=cast(Any, leaf.agent),
                    metadata=None)
        graph.nodes[node.id] = nodes[leaf] = node
    end = graph.add_node(None, END)
    seen: set[tuple[str, str]] = set()

    def connect(source: Node, target: Node, conditional: bool = False) -> None:
        if (source.id, target.id) not in seen:
            seen.add((source.id, target.id))
            graph.add_edge(source, target, conditional=conditional)

    for name in top.entries:
        for first in firsts(top.by_name[name]):
            connect(start, nodes[first])
    for edge in drawn_edges(top):
        connect(nodes[edge.source], nodes[edge.target], edge.conditional)
    for name in top.sinks:
        for last in lasts(top.by_name[name]):
            connect(nodes[last], end)
    return graph
