"""How a compiled graph's agents are drawn: what each one is, and the conventions by
which patterns tell drawings what their plain-function agents do.

Patterns set two attributes where they build such a function (read with ``getattr``):

- ``_cp_routes = True``: the agent returns ``cp.route(...)``, so its out-edges are
  conditional (``cp.router``, ``cp.adaptive``, ``cp.group_chat``).
- ``_cp_child_graph = compiled_graph``: the agent's result is always a run of that graph
  (``cp.delegate``), drawn as a subgraph in place of the agent; with
  ``_cp_child_repeats = True`` the agent may run it again after it ends (``cp.loop``,
  ``cp.group_chat``).

A pattern whose child graph is built per run (``cp.supervisor``'s plan, ``cp.fan_out``'s
items) is drawn as the one agent that builds it. The plan view every drawing is made
from reads these (``counterpoint._plan_view``): ``app.draw()``, ``app.to_mermaid()``,
LangChain's ``get_graph()`` and ``counterpoint graph``.
"""

from __future__ import annotations

from typing import Any

from .._graph import CompiledGraph
from .._policies import Policed


def drawn_agents(graph: CompiledGraph) -> list[tuple[dict[str, Any], Any]]:
    """Each node of ``graph.describe()`` in topological order, with the agent that runs
    there (inside its ``cp.policy`` wrapper, if any; None for a graph that was not built
    by ``Graph.compile()``)."""
    agents = {spec.name: spec.agent for spec in getattr(graph, "_specs", ())}
    drawn = []
    for node in graph.describe()["nodes"]:
        agent = agents.get(node["name"])
        drawn.append((node, agent.agent if isinstance(agent, Policed) else agent))
    return drawn


def routes(agent: Any) -> bool:
    """Whether the agent's out-edges are conditional (it returns ``cp.route(...)``)."""
    return getattr(agent, "_cp_routes", False) is True


def child_graph(agent: Any) -> tuple[CompiledGraph | None, bool]:
    """The graph drawn in place of ``agent`` (itself, if it is a compiled graph), and
    whether the agent may run it again after it ends."""
    if isinstance(agent, CompiledGraph):
        return agent, False
    child = getattr(agent, "_cp_child_graph", None)
    if isinstance(child, CompiledGraph):
        return child, getattr(agent, "_cp_child_repeats", False) is True
    return None, False
