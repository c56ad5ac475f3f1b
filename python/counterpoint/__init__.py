"""counterpoint: orchestrate teams of AI agents on a native oneTBB flow-graph engine.

Agents are plain callables, ``async def`` functions or LangChain-style runnables; the
engine schedules them in C++ with the GIL released.
"""

from __future__ import annotations

from importlib.metadata import version as _dist_version
from importlib.util import find_spec as _find_spec
from typing import Any as _Any

from . import _graph_svg, _mermaid, _shutdown  # noqa: F401  (register drawers, exit hook)
from ._agent_call import AgentCall, InterruptSignal, current, interrupt
from ._audit import AuditEntry, AuditVerification
from ._critical_path import CriticalPath, PathSegment
from ._errors import (
    AgentError,
    AgentTimeout,
    BudgetExceeded,
    CircuitOpenError,
    CounterpointError,
    GraphError,
    HandoffError,
    NeedsInput,
    NeedsReview,
    ReviewRefused,
    ReviewRejected,
    RunCancelled,
    RunTimeout,
    SpecError,
    SpecProblem,
    StoreError,
    WorkerLost,
)
from ._events import Event
from ._executors import ray, ray_actors, ray_batch
from ._executors import register_integration as _register_ray_integration
from ._graph import CompiledGraph, Graph, delegate, register_compiled_class, route
from ._native import TBB_VERSION, _core
from ._picture import GraphPicture
from ._policies import (
    Cache,
    CircuitBreaker,
    Decision,
    Limit,
    Retry,
    Review,
    approve,
    policy,
    reject,
)
from ._postgres_store import PostgresStore
from ._results import (
    ChatResult,
    Escalation,
    Failed,
    InputRequest,
    LoopResult,
    Merged,
    Result,
    ReviewRequest,
    confidence_of,
    value_of,
)
from ._run import AgentOutcome, Run, RunResult
from ._sqlite_store import SQLiteStore
from ._store import RunSummary, Store, StoredOutcome, StoredRun
from ._streaming import STREAM_MODES, emit
from ._timeline import AgentLane, Span, Timeline
from ._timeline_picture import TimelinePicture
from ._tracing import set_tracer as _set_tracer
from ._usage import UsageRow, usage
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
from .specs import dump, load
from .specs import schema as spec_schema

# Raised (a RuntimeError) when the engine refuses work: a run started during interpreter
# shutdown, or an inline agent waiting for a run.
EngineError = _core.EngineError
_core.set_result_type(Result)
_core.set_confidence_reader(confidence_of)



def _ray_integration() -> _Any:
    from .integrations import ray

    return ray


# cp.ray(), cp.ray_actors() and cp.ray_batch() import it when a graph first uses them.
_register_ray_integration(_ray_integration)


def instrument(tracer_provider: _Any = None) -> None:
    """Traces every run with OpenTelemetry (GenAI semantic conventions): one
    ``invoke_workflow`` span per run and one ``invoke_agent`` span per agent call, made
    with ``tracer_provider`` (None: the global one). Needs opentelemetry-api
    (``pip install "counterpoint[otel]"``). See
    :func:`counterpoint.integrations.opentelemetry.instrument`.

    Raises:
        ImportError: opentelemetry-api is not installed.
    """
    try:
        from .integrations.opentelemetry import instrument as _instrument
    except ImportError as exc:
        if not (exc.name or "").startswith("opentelemetry"):
            raise
        raise ImportError(
            "cp.instrument() reports spans through OpenTelemetry; install its API: "
            "pip install 'counterpoint[otel]'"
        ) from exc
    _instrument(tracer_provider)


def uninstrument() -> None:
    """Stops tracing the runs that start from now on (see :func:`instrument`); runs in
    flight finish their traces."""
    _set_tracer(None)


def _runnable_graph_class() -> type[CompiledGraph]:
    from .integrations.langchain import RunnableGraph

    return RunnableGraph


# With langchain-core installed, compiled graphs are LangChain runnables; its import
# (a few hundred ms) waits for the first compile(), and nothing of it is imported when it
# is not installed.
if _find_spec("langchain_core") is not None:
    register_compiled_class(_runnable_graph_class)

__version__ = _dist_version("counterpoint")  # the one version source: pyproject.toml

__all__ = [
    "END",
    "STREAM_MODES",
    "TBB_VERSION",
    "AgentCall",
    "AgentError",
    "AgentLane",
    "AgentOutcome",
    "AgentTimeout",
    "AuditEntry",
    "AuditVerification",
    "BudgetExceeded",
    "Cache",
    "ChatResult",
    "CircuitBreaker",
    "CircuitOpenError",
    "CompiledGraph",
    "CounterpointError",
    "CriticalPath",
    "Decision",
    "EngineError",
    "Escalation",
    "Event",
    "Failed",
    "Graph",
    "GraphError",
    "GraphPicture",
    "HandoffError",
    "InputRequest",
    "InterruptSignal",
    "Limit",
    "LoopResult",
    "Merged",
    "NeedsInput",
    "NeedsReview",
    "PathSegment",
    "PlanError",
    "PostgresStore",
    "Result",
    "Retry",
    "Review",
    "ReviewRefused",
    "ReviewRejected",
    "ReviewRequest",
    "Run",
    "RunCancelled",
    "RunResult",
    "RunSummary",
    "RunTimeout",
    "SQLiteStore",
    "Span",
    "SpecError",
    "SpecProblem",
    "Store",
    "StoreError",
    "StoredOutcome",
    "StoredRun",
    "Subtask",
    "Timeline",
    "TimelinePicture",
    "UsageRow",
    "Verdict",
    "WorkerLost",
    "__version__",
    "adaptive",
    "approve",
    "confidence_of",
    "consensus",
    "current",
    "delegate",
    "dump",
    "emit",
    "fan_out",
    "group_chat",
    "instrument",
    "interrupt",
    "judge",
    "load",
    "loop",
    "parallel",
    "policy",
    "ray",
    "ray_actors",
    "ray_batch",
    "reject",
    "route",
    "router",
    "sequential",
    "spec_schema",
    "supervisor",
    "uninstrument",
    "usage",
    "value_of",
]
