"""Sequential chains."""

from __future__ import annotations

from typing import Any

from .._errors import GraphError
from .._graph import CompiledGraph, Graph
from ._common import check_agent, declared, unique_names


def _is_named(item: Any) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and bool(item[0])


@declared("sequential")
def sequential(*agents: Any) -> CompiledGraph:
    """Runs agents one after another; each receives the previous one's output.

    Example:
        >>> pipeline = cp.sequential(extract, translate, qa)

    Agents are named after themselves (``__name__`` or ``name``), or ``step1``, ``step2``
    ...; pass a ``(name, agent)`` pair to name a step yourself (useful for compiled
    graphs). ``run()``/``start().record()`` give the per-step audit trail.
    """
    if len(agents) == 1 and isinstance(agents[0], (list, tuple)) and not _is_named(agents[0]):
        agents = tuple(agents[0])
    if not agents:
        raise GraphError("sequential: give at least one agent, e.g. sequential(extract, translate)")
    for item in agents:
        if isinstance(item, tuple) and not _is_named(item):
            raise GraphError(f"sequential: a named step must be a (name, agent) pair, got {item!r}")
    steps = [item[1] if isinstance(item, tuple) else item for item in agents]
    for index, agent in enumerate(steps):
        check_agent("sequential", f"agent #{index + 1}", agent)
    names = unique_names(steps, "step")
    names = [item[0] if isinstance(item, tuple) else name for item, name in zip(agents, names)]
    if len(set(names)) != len(names):
        raise GraphError(f"sequential: step names must be unique, got {names}")
    g = Graph()
    previous = None
    for name, agent in zip(names, steps):
        g.add(name, agent, after=previous)
        previous = name
    return g.compile()
