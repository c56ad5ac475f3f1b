"""Run handles and run records: what a run did, agent by agent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ._errors import AgentError, RunCancelled


def raise_failure(details: tuple) -> None:
    """Raises the AgentError / RunCancelled described by a native failure tuple."""
    if details[0] == "failed":
        _, agent, error, message, outputs, run_id = details
        if agent is None:
            raise AgentError("<none>", message, outputs, run_id)
        exc = AgentError(agent, message, outputs, run_id)
        if isinstance(error, BaseException):
            raise exc from error
        raise exc
    _, run_id, outputs = details
    raise RunCancelled(run_id, outputs)


def unwrap(result: tuple) -> Any:
    ok, value = result
    if ok:
        return value
    raise_failure(value)


def as_exception(result: tuple) -> Any:
    ok, value = result
    if ok:
        return value
    try:
        raise_failure(value)
    except (AgentError, RunCancelled) as exc:
        return exc


@dataclass(frozen=True)
class AgentOutcome:
    """How one agent of a run ended.

    Attributes:
        name: The agent.
        status: ``"succeeded"``, ``"failed"``, ``"skipped"`` (its join could not be
            satisfied: not routed to, or a predecessor it needed failed), ``"cancelled"``
            (running when the run ended; its result was discarded), ``"not_started"``
            or ``"running"``.
        output: The agent's output, if it succeeded.
        error: The failure summary, if it failed.
        started: Seconds from the run's start to the agent's start (None if it never ran).
        finished: Seconds from the run's start to the agent's end (None if it has not ended).
        routes: For a router, the successors it chose.
    """

    name: str
    status: str
    output: Any = None
    error: str = ""
    started: float | None = None
    finished: float | None = None
    routes: tuple[str, ...] = ()

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
        status: ``"succeeded"``, ``"failed"`` or ``"cancelled"``.
        output: The result (as ``invoke`` returns it), or None if the run did not succeed.
        error: The AgentError or RunCancelled ``invoke`` would have raised, or None.
        agents: Each agent's outcome, by name, in topological order.
        elapsed: Wall time of the run in seconds.
    """

    run_id: int
    status: str
    output: Any
    error: BaseException | None
    agents: dict[str, AgentOutcome] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def raise_for_status(self) -> Any:
        """Returns ``output``, or raises ``error`` if the run did not succeed."""
        if self.error is not None:
            raise self.error
        return self.output


def _outcome(row: tuple) -> AgentOutcome:
    name, status, output, error, started, finished, routes = row
    return AgentOutcome(
        name,
        status,
        output,
        error,
        started if started >= 0 else None,
        finished if finished >= 0 else None,
        tuple(routes),
    )


class Run:
    """A run in flight, started by :meth:`CompiledGraph.start`."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    @property
    def id(self) -> int:
        return self._handle.id

    @property
    def status(self) -> str:
        """``"running"``, ``"succeeded"``, ``"failed"`` or ``"cancelled"``."""
        return self._handle.status

    @property
    def done(self) -> bool:
        return self._handle.done

    def wait(self, timeout: float | None = None) -> bool:
        """Waits (GIL released, Ctrl-C cancels the run) until the run ends or
        ``timeout`` seconds pass. Returns True if the run has ended."""
        return self._handle.wait(-1.0 if timeout is None else timeout)

    def cancel(self) -> bool:
        """Ends the run: agents not yet started never start, running agents' results are
        discarded (running coroutines are cancelled). Returns True if this call ended it."""
        return self._handle.cancel()

    def result(self, timeout: float | None = None) -> Any:
        """Waits for the run and returns its output, raising like ``invoke`` does."""
        if not self.wait(timeout):
            raise TimeoutError(f"run {self.id} is still running after {timeout} s")
        return unwrap(self._handle.result())

    def record(self) -> RunResult:
        """Waits for the run and returns what every agent did."""
        self.wait()
        native = self._handle.result()
        return RunResult(
            run_id=self.id,
            status=self.status,
            output=native[1] if native[0] else None,
            error=None if native[0] else as_exception(native),
            agents={row[0]: _outcome(row) for row in self._handle.outcomes()},
            elapsed=self._handle.elapsed,
        )

    def trace(self) -> dict[str, Any]:
        """A JSON-ready trace: run status, timing and each agent's status and timing."""
        return json.loads(self._handle.trace_json())

    def __repr__(self) -> str:
        return f"Run(id={self.id}, status={self.status!r})"
