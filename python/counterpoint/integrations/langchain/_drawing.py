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

Patterns tell the drawing what their plain-function agents do (conditional out-edges, a
child graph run in the agent's place, run again after it ends) by the conventions of
``counterpoint.patterns._drawing_hooks``; a child graph that may run again is drawn with
a conditional edge from its sinks back to its entries.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.runnables.graph import Graph, Node

from ..._graph import CompiledGraph
from ...patterns._drawing_hooks import child_graph, drawn_agents, routes

START = "__start__"
END = "__end__"
# Stands in for ':' inside an agent's name, since LangChain reads every ':' of a node id
# (and of a node name, for the mermaid label) as a subgraph boundary. Patterns name
# helper agents like "merge:judge"; U+A789 looks like a colon and is not one.
_COLON = "\ua789"


@dataclass(eq=False)
class _Part:
    """One agent of an expanded graph: a drawn node, or the subgraph ``inner``."""

    name: str
    agent: Any
    after: list[str]
    routes: bool
    inner: _Plan | None = None
    # The node's id is ":".join(prefix + [segment]); a subgraph's parts have its id
    # (segment included) as their prefix.
    prefix: list[str] = field(default_factory=list)
    segment: str = ""
    path: str = ""  # the node's name: the agent's path, as run events name it

    @property
    def id(self) -> str:
        return ":".join([*self.prefix, self.segment])


@dataclass(eq=False)
class _Plan:
    """One compiled graph as drawn: its agents in topological order."""

    parts: list[_Part]
    entries: list[str]
    sinks: list[str]
    repeats: bool = False  # the agent that runs it may run it again after it ends


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
    plan = _plan(graph, depth, (graph,))
    _assign_ids(plan)
    return _draw(plan)


def _plan(graph: CompiledGraph, depth: int | None, outer: tuple[CompiledGraph, ...]) -> _Plan:
    """``graph`` as drawn, expanding nested graphs ``depth`` more levels (None: all).

    ``outer`` are the graphs being expanded around this one: an agent attribute could
    name one of them, and expanding it again would never end.
    """
    described = graph.describe()
    parts = []
    for node, agent in drawn_agents(graph):
        part = _Part(node["name"], agent, list(node["after"]), routes(agent))
        child, repeats = child_graph(agent)
        if child is not None and depth != 0 and all(child is not g for g in outer):
            inner = _plan(child, None if depth is None else depth - 1, (*outer, child))
            inner.repeats = repeats
            # LangChain's mermaid drawing drops the agents of a subgraph in which no edge
            # joins two of them, so such a graph (agents that all run on the input and
            # each end the run) is drawn as its one agent.
            if len(inner.parts) == 1 or any(p.after for p in inner.parts):
                part.inner = inner
        parts.append(part)
    return _Plan(parts, list(described["entries"]), list(described["sinks"]))


def _escaped(name: str) -> str:
    return name.replace(":", _COLON)


def _assign_ids(top: _Plan) -> None:
    """Gives every drawn part its id and name, working around limits of LangChain's
    mermaid drawing (which raises, draws stray subgraphs or drops nodes otherwise):

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
    # Breadth first, so that the shallower of two nested graphs with one name keeps it.
    queue: deque[tuple[_Plan, list[str], str]] = deque([(top, [], "")])
    leaves: list[_Part] = []
    while queue:
        plan, prefix, path = queue.popleft()
        siblings = {_escaped(p.name) for p in plan.parts}
        for part in plan.parts:
            base = segment = _escaped(part.name)
            part.path = f"{path}{base}"
            drawn = part
            while drawn is not _drawn(drawn):  # a nested graph of one agent
                inner = _drawn(drawn)
                inner.path = f"{drawn.path}/{_escaped(inner.name)}"
                drawn = inner
            drawn.prefix = prefix
            suffix = 2
            if drawn.inner is None:
                # Only an agent named like the start or end node needs another id.
                while not prefix and segment in (START, END):
                    segment, suffix = f"{base}_{suffix}", suffix + 1
                drawn.segment = segment
                leaves.append(drawn)
                continue
            while segment in subgraphs or segment in top_level or (
                    segment != base and segment in siblings):
                segment, suffix = f"{base}_{suffix}", suffix + 1
            subgraphs.add(segment)
            siblings.add(segment)
            drawn.segment = segment
            queue.append((drawn.inner, [*prefix, segment], f"{drawn.path}/"))
    _separate_edge_subgraphs(top, leaves, subgraphs)


def _drawn(part: _Part) -> _Part:
    """The part drawn in ``part``'s place: the one agent of a nested graph of one agent
    (which may be a nested graph itself), or ``part``."""
    if part.inner is not None and len(part.inner.parts) == 1:
        return part.inner.parts[0]
    return part


def _innermost(part: _Part) -> _Part:
    while part is not _drawn(part):
        part = _drawn(part)
    return part


def _separate_edge_subgraphs(top: _Plan, leaves: list[_Part], subgraphs: set[str]) -> None:
    """Renames leaves until every edge's shared id parts are a leading run of both ids
    (see :func:`_assign_ids`). Subgraph id parts are unique, so a stray match always
    involves a leaf's last part; renamed, that part is unique at its depth and the leaf
    is never renamed again."""
    taken = {(len(leaf.prefix), leaf.segment) for leaf in leaves}
    edges = [(source, target) for source, target, _ in _edges(top)]
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


def _ends(plan: _Plan) -> tuple[dict[str, list[_Part]], dict[str, list[_Part]]]:
    """For each agent of ``plan``, the drawn nodes that edges into it reach (a nested
    graph's entries, at any depth) and those that edges out of it leave from."""
    firsts: dict[str, list[_Part]] = {}
    lasts: dict[str, list[_Part]] = {}
    for part in plan.parts:
        if part.inner is None:
            firsts[part.name] = lasts[part.name] = [part]
        else:
            inner_firsts, inner_lasts = _ends(part.inner)
            firsts[part.name] = [n for e in part.inner.entries for n in inner_firsts[e]]
            lasts[part.name] = [n for s in part.inner.sinks for n in inner_lasts[s]]
    return firsts, lasts


def _edges(plan: _Plan) -> list[tuple[_Part, _Part, bool]]:
    """``(source, target, conditional)`` between the drawn nodes of ``plan``."""
    firsts, lasts = _ends(plan)
    edges: list[tuple[_Part, _Part, bool]] = []
    for part in plan.parts:
        for predecessor in part.after:
            edges.extend((last, first, last.routes)
                         for last in lasts[predecessor] for first in firsts[part.name])
        if part.inner is not None:
            edges.extend(_edges(part.inner))
            if part.inner.repeats:
                edges.extend((last, first, True)
                             for last in lasts[part.name] for first in firsts[part.name])
    return edges


def _draw(top: _Plan) -> Graph:
    graph = Graph()
    start = graph.add_node(None, START)
    firsts, lasts = _ends(top)

    def leaves(plan: _Plan) -> list[_Part]:
        return [leaf for part in plan.parts
                for leaf in ([part] if part.inner is None else leaves(part.inner))]

    nodes: dict[int, Node] = {}
    for leaf in leaves(top):
        # Node data is typed as a runnable or a schema; any agent draws (LangChain
        # names a node with a readable id by its name and serializes unknown data).
        node = Node(id=leaf.id, name=leaf.path, data=cast(Any, leaf.agent), metadata=None)
        graph.nodes[node.id] = nodes[id(leaf)] = node
    end = graph.add_node(None, END)
    seen: set[tuple[str, str]] = set()

    def connect(source: Node, target: Node, conditional: bool = False) -> None:
        if (source.id, target.id) not in seen:
            seen.add((source.id, target.id))
            graph.add_edge(source, target, conditional=conditional)

    for name in top.entries:
        for first in firsts[name]:
            connect(start, nodes[id(first)])
    for source, target, conditional in _edges(top):
        connect(nodes[id(source)], nodes[id(target)], conditional)
    for name in top.sinks:
        for last in lasts[name]:
            connect(nodes[id(last)], end)
    return graph
