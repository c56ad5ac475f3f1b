"""Run handles and run records: what a run did, agent by agent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ._errors import (
    AgentError,
    AgentTimeout,
    BudgetExceeded,
    CircuitOpenError,
    NeedsReview,
    ReviewRejected,
    RunCancelled,
    RunTimeout,
)


@dataclass(frozen=True)
class ReviewRequest:
    """An agent output that awaits a human decision.

    Attributes:
        agent: The agent whose output needs review.
        output: Its output.
        reason: Why it needs review, e.g. ``"confidence 0.42 < 0.7"``.
        confidence: The confidence it reported, if any.
        run_key: The durable run it belongs to (None for an in-process reviewer call
            outside a durable run).
    """

    agent: str
    output: Any
    reason: str
    confidence: float | None = None
    run_key: str | None = None


_CAUSES = {
    "timeout": AgentTimeout,
    "circuit_open": CircuitOpenError,
    "rejected": ReviewRejected,
}


def failure_exception(details: dict[str, Any], run_key: str | None = None) -> BaseException:
    """The exception ``invoke`` raises for a run that did not succeed."""
    status = details["status"]
    outputs = details["outputs"]
    run_id = details["run_id"]
    if status == "cancelled":
        return RunCancelled(run_id, outputs)
    if status == "timed_out":
        return RunTimeout(run_id, outputs)
    if status == "needs_review":
        pending = [ReviewRequest(agent, output, reason, confidence, run_key)
                   for agent, output, reason, confidence in details["pending"]]
        return NeedsReview(run_key, pending, outputs)
    if details["kind"] == "budget":  # no output, or a nested graph starved by the budget
        return BudgetExceeded(run_id, details["usage"], outputs)
    agent = details["agent"]
    exc = AgentError(agent or "<none>", details["message"], outputs, run_id)
    cause = details["error"]
    if not isinstance(cause, BaseException) and details["kind"] in _CAUSES:
        cause = _CAUSES[details["kind"]](details["message"])
    if isinstance(cause, BaseException):
        exc.__cause__ = cause
    return exc


def unwrap(result: tuple, run_key: str | None = None) -> Any:
    ok, value = result
    if ok:
        return value
    raise failure_exception(value, run_key)


def as_exception(result: tuple, run_key: str | None = None) -> Any:
    ok, value = result
    return value if ok else failure_exception(value, run_key)


@dataclass(frozen=True)
class AgentOutcome:
    """How one agent of a run ended.

    Attributes:
        name: The agent.
        status: ``"succeeded"``, ``"failed"``, ``"timed_out"``, ``"skipped"`` (its join
            could not be satisfied: not routed to, a predecessor it needed failed, or
            the budget was spent), ``"needs_review"``, ``"cancelled"`` (running when the
            run ended; its result was discarded), ``"not_started"`` or ``"running"``
            (still executing: a sync call cannot be interrupted; if its run has ended,
            it becomes ``"cancelled"`` when it returns and its result is discarded).
        output: The agent's output, if it succeeded.
        error: The failure summary, if it failed.
        started: Seconds from the run's start to the agent's start (None if it never ran).
        finished: Seconds from the run's start to the agent's end (None if it has not ended).
        routes: For a router, the successors it chose.
        usage: What the agent reported consuming (``Result(usage=...)``).
        reason: Why it was skipped, or why it awaits review.
        confidence: For ``"needs_review"``: the confidence that triggered the review.
        restored: True if the outcome came from a checkpoint instead of running again.
    """

    name: str
    status: str
    output: Any = None
    error: str = ""
    started: float | None = None
    finished: float | None = None
    routes: tuple[str, ...] = ()
    usage: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    confidence: float | None = None
    restored: bool = False

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


@dataclass(frozen=True)
class RunResult:
    """Everything a finished run produced.

    Attributes:
        run_id: The run.
        status: ``"succeeded"``, ``"failed"``, ``"cancelled"``, ``"timed_out"`` or
            ``"needs_review"``.
        output: The result (as ``invoke`` returns it), or None if the run did not succeed.
        error: The exception ``invoke`` would have raised, or None.
        agents: Each agent's outcome, by name, in topological order.
        elapsed: Wall time of the run in seconds.
        usage: Usage reported by all agents, summed by name.
        budget_exhausted: True if the run stopped starting agents because its budget
            was spent.
        run_key: The durable identifier of the run, for runs of a graph with a store.
        pending_reviews: For ``"needs_review"``: what awaits a decision.
    """

    run_id: int
    status: str
    output: Any
    error: BaseException | None
    agents: dict[str, AgentOutcome] = field(default_factory=dict)
    elapsed: float = 0.0
    usage: dict[str, float] = field(default_factory=dict)
    budget_exhausted: bool = False
    run_key: str | None = None
    pending_reviews: tuple[ReviewRequest, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def raise_for_status(self) -> Any:
        """Returns ``output``, or raises ``error`` if the run did not succeed."""
        if self.error is not None:
            raise self.error
        return self.output


def _outcome(row: dict[str, Any]) -> AgentOutcome:
    status = row["status"]
    reason = row["skip_reason"] if status == "skipped" else ""
    if status == "needs_review":
        reason = row["error"]
    return AgentOutcome(
        name=row["name"],
        status=status,
        output=row["output"],
        error=row["error"] if status in ("failed", "timed_out") else "",
        started=row["started"] if row["started"] >= 0 else None,
        finished=row["finished"] if row["finished"] >= 0 else None,
        routes=tuple(row["routes"]),
        usage=row["usage"],
        reason=reason,
        confidence=row["confidence"] if row["confidence"] >= 0 else None,
        restored=row["restored"],
    )


class Run:
    """A run in flight, started by :meth:`CompiledGraph.start`."""

    def __init__(self, handle: Any, run_key: str | None = None,
                 store: Any = None) -> None:
        self._handle = handle
        self.run_key = run_key
        # A durable run's end is also recorded by the checkpoint writer, in the background;
        # recording it here as well means that once wait() returns, the store agrees.
        self._store = store

    @property
    def id(self) -> int:
        return self._handle.id

    @property
    def status(self) -> str:
        """``"running"``, ``"succeeded"``, ``"failed"``, ``"cancelled"``, ``"timed_out"``
        or ``"needs_review"``."""
        return self._handle.status

    @property
    def done(self) -> bool:
        return self._handle.done

    def wait(self, timeout: float | None = None) -> bool:
        """Waits (GIL released, Ctrl-C cancels the run) until the run ends or
        ``timeout`` seconds pass. Returns True if the run has ended."""
        try:
            ended = self._handle.wait(-1.0 if timeout is None else timeout)
        except KeyboardInterrupt:
            # Ctrl-C cancelled the run (unless it ended just before): stored as
            # "interrupted" (listed for resume), which the checkpoint writer's later
            # "cancelled" does not overwrite.
            if self._store is not None and self._handle.status == "cancelled":
                store, self._store = self._store, None
                try:
                    store.set_status(self.run_key, "interrupted")
                except Exception:  # noqa: BLE001 - the KeyboardInterrupt must go on
                    pass
            raise
        if ended and self._store is not None:
            store, self._store = self._store, None
            store.set_status(self.run_key, self.status)
        return ended

    def cancel(self) -> bool:
        """Ends the run: agents not yet started never start, running agents' results are
        discarded (running coroutines are cancelled). Returns True if this call ended it."""
        return self._handle.cancel()

    def result(self, timeout: float | None = None) -> Any:
        """Waits for the run and returns its output, raising like ``invoke`` does."""
        if not self.wait(timeout):
            raise TimeoutError(f"run {self.id} is still running after {timeout} s")
        return unwrap(self._handle.result(), self.run_key)

    def record(self) -> RunResult:
        """Waits for the run and returns what every agent did."""
        self.wait()
        native = self._handle.result()
        error = None if native[0] else failure_exception(native[1], self.run_key)
        pending = tuple(error.pending) if isinstance(error, NeedsReview) else ()
        return RunResult(
            run_id=self.id,
            status=self.status,
            output=native[1] if native[0] else None,
            error=error,
            agents={row["name"]: _outcome(row) for row in self._handle.outcomes()},
            elapsed=self._handle.elapsed,
            usage=self._handle.usage(),
            budget_exhausted=self._handle.budget_exhausted,
            run_key=self.run_key,
            pending_reviews=pending,
        )

    def trace(self) -> dict[str, Any]:
        """A JSON-ready trace: run status, timing and each agent's status and timing."""
        return json.loads(self._handle.trace_json())

    def __repr__(self) -> str:
        return f"Run(id={self.id}, status={self.status!r})"
