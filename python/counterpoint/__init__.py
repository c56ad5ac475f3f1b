"""counterpoint: orchestrate teams of AI agents on a native oneTBB flow-graph engine.

Agents are plain callables, ``async def`` functions or LangChain-style runnables; the
engine schedules them in C++ with the GIL released.
"""

from __future__ import annotations

from . import _shutdown  # noqa: F401  (registers the interpreter-exit hook)
from ._errors import AgentError, CounterpointError, GraphError, RunCancelled
from ._events import Event
from ._graph import CompiledGraph, Graph
from ._native import TBB_VERSION, _core
from ._results import ChatResult, Escalation, LoopResult, Merged, Result, confidence_of, value_of
from ._run import AgentOutcome, Run, RunResult
from .patterns import (
    END,
    PlanError,
    Subtask,
    Verdict,
    adaptive,
    consensus,
    fan_out,
    group_chat,
    judge,
    loop,
    parallel,
    router,
    sequential,
    supervisor,
)

Failed = _core.Failed

__version__ = "0.1.0"

__all__ = [
    "END",
    "AgentError",
    "AgentOutcome",
    "ChatResult",
    "CompiledGraph",
    "CounterpointError",
    "Escalation",
    "Event",
    "Failed",
    "Graph",
    "GraphError",
    "LoopResult",
    "Merged",
    "PlanError",
    "Result",
    "Run",
    "RunCancelled",
    "RunResult",
    "Subtask",
    "TBB_VERSION",
    "Verdict",
    "__version__",
    "adaptive",
    "confidence_of",
    "consensus",
    "fan_out",
    "group_chat",
    "judge",
    "loop",
    "parallel",
    "router",
    "sequential",
    "supervisor",
    "value_of",
]
