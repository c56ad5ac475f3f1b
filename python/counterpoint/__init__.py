"""counterpoint: orchestrate teams of AI agents on a native oneTBB flow-graph engine.

Agents are plain callables, ``async def`` functions or LangChain-style runnables; the
engine schedules them in C++ with the GIL released.
"""

from __future__ import annotations

from . import _shutdown  # noqa: F401  (registers the interpreter-exit hook)
from ._errors import AgentError, CounterpointError, GraphError, RunCancelled
from ._events import Event
from ._graph import CompiledGraph, Graph
from ._native import TBB_VERSION

__version__ = "0.1.0"

__all__ = [
    "AgentError",
    "CompiledGraph",
    "CounterpointError",
    "Event",
    "Graph",
    "GraphError",
    "RunCancelled",
    "TBB_VERSION",
    "__version__",
]
