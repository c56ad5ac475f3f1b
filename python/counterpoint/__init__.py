"""counterpoint: orchestrate teams of AI agents on a native oneTBB flow-graph engine.

Agents are plain callables, ``async def`` functions or LangChain-style runnables; the
engine schedules them in C++ with the GIL released.
"""

from __future__ import annotations

from importlib.metadata import version as _dist_version

from . import _shutdown  # noqa: F401  (registers the interpreter-exit hook)
from ._errors import (
    AgentError,
    AgentTimeout,
    BudgetExceeded,
    CircuitOpenError,
    CounterpointError,
    GraphError,
    NeedsReview,
    ReviewRejected,
    RunCancelled,
    RunTimeout,
    StoreError,
)
from ._events import Event
from ._graph import CompiledGraph, Graph, delegate, route
from ._native import TBB_VERSION, _core
from ._results import (
    ChatResult,
    Escalation,
    Failed,
    LoopResult,
    Merged,
    Result,
    confidence_of,
    value_of,
)
from ._policies import CircuitBreaker, Decision, Limit, Retry, Review, approve, policy, reject
from ._results import ReviewRequest
from ._run import AgentOutcome, Run, RunResult
from ._store import RunSummary, SQLiteStore, Store, StoredOutcome, StoredRun
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

# Raised (a RuntimeError) when the engine refuses work: a run started during interpreter
# shutdown, or an inline agent waiting for a run.
EngineError = _core.EngineError
_core.set_result_type(Result)
_core.set_confidence_reader(confidence_of)

__version__ = _dist_version("counterpoint")  # the one version source: pyproject.toml

__all__ = [
    "adaptive",
    "AgentError",
    "AgentOutcome",
    "AgentTimeout",
    "approve",
    "BudgetExceeded",
    "ChatResult",
    "CircuitBreaker",
    "CircuitOpenError",
    "CompiledGraph",
    "confidence_of",
    "consensus",
    "CounterpointError",
    "Decision",
    "delegate",
    "END",
    "EngineError",
    "Escalation",
    "Event",
    "Failed",
    "fan_out",
    "Graph",
    "GraphError",
    "group_chat",
    "judge",
    "Limit",
    "loop",
    "LoopResult",
    "Merged",
    "NeedsReview",
    "parallel",
    "PlanError",
    "policy",
    "reject",
    "Result",
    "Retry",
    "Review",
    "ReviewRejected",
    "ReviewRequest",
    "router",
    "route",
    "Run",
    "RunCancelled",
    "RunResult",
    "RunSummary",
    "RunTimeout",
    "sequential",
    "SQLiteStore",
    "Store",
    "StoredOutcome",
    "StoredRun",
    "StoreError",
    "Subtask",
    "supervisor",
    "TBB_VERSION",
    "value_of",
    "Verdict",
    "__version__",
]
