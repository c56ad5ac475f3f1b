"""Sequential chains."""

from __future__ import annotations

from typing import Any

from .._errors import GraphError
from .._graph import CompiledGraph, Graph
from ._common import check_agent, unique_names


def sequential(*agents: Any) -> CompiledGraph:
    """Runs agents one after another; each receives the previous one's output.

    Example:
        >>> pipeline = cp.sequential(extract, translate, qa)

    Agents are named after themselves (``__name__`` or ``name``), or ``step1``, ``step2``
    ...; ``run()``/``start().record()`` give the per-step audit trail.
    """
    if len(agents) == 1 and isinstance(agents[0], (list, tuple)):
        agents = tuple(agents[0])
    if not agents:
        raise GraphError("sequential: give at least one agent, e.g. sequential(extract, translate)")
    for index, agent in enumerate(agents):
        check_agent("sequential", f"agent #{index + 1}", agent)
    g = Graph()
    previous = None
    for name, agent in zip(unique_names(agents, "step"), agents):
        g.add(name, agent, after=previous)
        previous = name
    return g.compile()
