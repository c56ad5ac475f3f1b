"""Exceptions raised by counterpoint.

Every one of them pickles with its message and its fields, so it crosses process
boundaries (multiprocessing, distributed backends) intact.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any, NamedTuple


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """Recreates a pickled counterpoint exception without calling its ``__init__``.

    The constructors take structured fields and format a message from them; pickle's
    default (``cls(*exc.args)``) would pass the formatted message where the fields go.
    """
    exc = cls.__new__(cls, *args)
    exc.args = args
    cause = state.pop("__cause__", None)
    exc.__dict__.update(state)
    if cause is not None:
        exc.__cause__ = cause
    return exc


def _picklable(value: Any) -> Any:
    """``value`` if it pickles; else the same shape with what does not pickle replaced:
    an exception by a ``RuntimeError`` with its type name and message, anything else by
    a description. An unpicklable agent output or cause then costs the receiver that one
    value, not the whole exception."""
    try:
        # A round trip: an exception whose __init__ takes other arguments than its args
        # pickles fine and fails only when unpickled, in the receiving process.
        pickle.loads(pickle.dumps(value))
        return value
    except Exception:  # noqa: BLE001 - any pickling failure means "send a stand-in"
        pass
    if isinstance(value, BaseException):
        return RuntimeError(f"{type(value).__name__}: {value}")
    if isinstance(value, dict):
        return {key: _picklable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_picklable(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_picklable(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            return dataclasses.replace(value, **{
                f.name: _picklable(getattr(value, f.name))
                for f in dataclasses.fields(value) if f.init})
        except Exception:  # noqa: BLE001 - a dataclass that rejects the stand-ins
            pass
    return f"<unpicklable {type(value).__name__}: {value!r:.200}>"


class CounterpointError(Exception):
    """Base class of every error counterpoint raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        state = dict(self.__dict__)
        # Python does not pickle __cause__; for an AgentError it is the agent's own
        # exception, which the receiving process needs as much as the fields.
        if self.__cause__ is not None:
            state["__cause__"] = self.__cause__
        return (_rebuild, (type(self), self.args, _picklable(state)))


class GraphError(CounterpointError, ValueError):
    """The graph cannot run. Raised by ``Graph.compile()`` before anything executes.

    Attributes:
        node: Name of the offending agent, or ``None`` when the problem is the graph as
            a whole (for example an empty graph).
    """

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node


class HandoffError(CounterpointError, ValueError):
    """An agent's input or output does not match its annotated type (a typed handoff).

    Raised inside the agent's call, so it fails the agent like any exception (retries and
    ``on_error`` apply) and is the ``__cause__`` of the run's :class:`AgentError`.

    Attributes:
        agent: The agent whose edge was checked.
        direction: ``"input"`` (what the run handed it) or ``"output"`` (what it returned).
        field: Path of the offending field (``"score"``, ``"citations[0].url"``), or
            ``None`` when the value as a whole is of the wrong type.
        value: The offending value (``None`` for a missing field).
    """

    def __init__(self, agent: str, direction: str, detail: str, field: str | None = None,
                 value: Any = None) -> None:
        verb = "received an invalid input" if direction == "input" \
            else "returned an invalid output"
        super().__init__(f"agent '{agent}' {verb}: {detail}")
        self.agent = agent
        self.direction = direction
        self.field = field
        self.value = value


class AgentError(CounterpointError):
    """An agent raised; the run stopped. The agent's exception is ``__cause__``.

    Attributes:
        agent: Name of the agent that failed.
        outputs: Outputs of the agents that finished before the run stopped, by name.
        run_id: Identifier of the failed run.
    """

    def __init__(self, agent: str, message: str, outputs: dict[str, Any], run_id: int) -> None:
        super().__init__(f"agent '{agent}' failed: {message}")
        self.agent = agent
        self.outputs = outputs
        self.run_id = run_id


class RunCancelled(CounterpointError):
    """The run was cancelled before it finished (by its caller or by interpreter exit).

    Attributes:
        outputs: Outputs of the agents that finished before the cancellation, by name.
        run_id: Identifier of the cancelled run.
    """

    def __init__(self, run_id: int, outputs: dict[str, Any]) -> None:
        super().__init__(f"run {run_id} was cancelled before it finished")
        self.outputs = outputs
        self.run_id = run_id


class AgentTimeout(CounterpointError, TimeoutError):
    """An agent did not finish within its timeout (the ``__cause__`` of its AgentError)."""


class CircuitOpenError(CounterpointError):
    """An agent's circuit breaker was open, so the call failed fast."""


class ReviewRejected(CounterpointError):
    """A human reviewer rejected an agent's output."""


class ReviewRefused(CounterpointError, PermissionError):
    """A review decision came from someone the review gate does not allow to decide.

    Raised by ``app.resume(run_key, decision)`` before anything is written (the run
    stays ``"needs_review"``), and the error of an agent whose in-process reviewer
    returned such a decision.

    Attributes:
        agent: The agent whose output awaits the decision.
        by: Who decided (None if the decision did not say).
        role: The role the decision was made in (None if it did not say).
        approvers: The roles the gate allows to decide.
    """

    def __init__(self, agent: str, by: str | None, role: str | None,
                 approvers: tuple[str, ...]) -> None:
        allowed = ", ".join(repr(a) for a in approvers)
        if by is None:
            problem = "the decision does not say who made it"
        elif role is None:
            problem = f"the decision by {by!r} names no role"
        else:
            problem = f"role {role!r} (of {by!r}) may not decide it"
        super().__init__(
            f"review of agent '{agent}' refused: {problem}; the gate allows {allowed}. "
            f"Decide with cp.approve(by='<reviewer>', role='{approvers[0]}') (or cp.reject(...) "
            "likewise) by someone in one of those roles"
        )
        self.agent = agent
        self.by = by
        self.role = role
        self.approvers = tuple(approvers)


class RunTimeout(CounterpointError, TimeoutError):
    """The run's deadline passed before it finished.

    Attributes:
        outputs: Outputs of the agents that finished in time, by name.
        run_id: Identifier of the run.
    """

    def __init__(self, run_id: int, outputs: dict[str, Any]) -> None:
        super().__init__(f"run {run_id} passed its deadline before it finished")
        self.outputs = outputs
        self.run_id = run_id


class BudgetExceeded(CounterpointError):
    """The run spent its budget before producing a result.

    Attributes:
        usage: What the run's agents reported consuming, summed by name.
        outputs: Outputs of the agents that finished, by name.
        run_id: Identifier of the run.
    """

    def __init__(self, run_id: int, usage: dict[str, float], outputs: dict[str, Any]) -> None:
        spent = ", ".join(f"{name}={amount:g}" for name, amount in usage.items()) or "nothing"
        super().__init__(f"run {run_id} spent its budget ({spent}) before producing a result")
        self.usage = usage
        self.outputs = outputs
        self.run_id = run_id


class NeedsReview(CounterpointError):
    """The run paused: some agents' outputs await a human decision.

    Resume it with ``app.resume(run_key, decision)``, from this process or another.

    Attributes:
        run_key: The durable identifier of the paused run.
        pending: One :class:`~counterpoint.ReviewRequest` per agent awaiting review.
        outputs: Outputs of the agents that finished, by name.
    """

    def __init__(self, run_key: str | None, pending: list[Any], outputs: dict[str, Any]) -> None:
        what = ", ".join(f"'{p.agent}' ({p.reason})" for p in pending)
        super().__init__(f"run {run_key} needs review: {what}")
        self.run_key = run_key
        self.pending = pending
        self.outputs = outputs


class NeedsInput(CounterpointError):
    """The run paused: some agents asked a person a question (``cp.interrupt``).

    Resume it with ``app.resume(run_key, {agent_path: answer, ...})``, from this process
    or another; questions not answered yet keep waiting.

    Attributes:
        run_key: The durable identifier of the paused run.
        pending: One :class:`~counterpoint.InputRequest` per question awaiting an answer.
        reviews: One :class:`~counterpoint.ReviewRequest` per output also awaiting a
            review decision (decide them in the same ``resume``).
        outputs: Outputs of the agents that finished, by name.
    """

    def __init__(self, run_key: str | None, pending: list[Any], reviews: list[Any],
                 outputs: dict[str, Any]) -> None:
        what = ", ".join(f"'{p.agent}' ({p.question!r})" for p in pending)
        super().__init__(f"run {run_key} needs input: {what}")
        self.run_key = run_key
        self.pending = pending
        self.reviews = reviews
        self.outputs = outputs


class StoreError(CounterpointError):
    """A run store cannot be used, or a value cannot be written to or read from it.

    The message names the store's file (or the store), the cause and the fix; the
    underlying exception, if any (e.g. ``sqlite3.OperationalError``), is ``__cause__``.
    """


class WorkerLost(CounterpointError):
    """The process running an agent's call on a cluster (a Ray worker or actor) died, or
    its node did: the call's attempt failed. The agent's :class:`Retry` runs it again
    (on a live actor, for an actor pool). Also the runs of a batch whose Ray actors kept
    dying, or could not start.

    Attributes:
        agent: The agent whose call was lost (None: runs of a batch).
    """

    def __init__(self, agent: str | None, detail: str) -> None:
        super().__init__(detail if agent is None else f"agent '{agent}': {detail}")
        self.agent = agent


class SpecProblem(NamedTuple):
    """One problem of a spec: where it is (``path``), what is wrong and how to fix it."""

    path: str
    problem: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{where}{self.problem}" + (f"; {self.hint}" if self.hint else "")


class SpecError(GraphError):
    """A graph spec (JSON, YAML or a dict) cannot be loaded, or a graph cannot be written
    as one. Raised before anything the spec names is imported when the spec itself is
    wrong.

    The message reads ``"<file>: <path.inside.spec>: <what is wrong>; <how to fix it>"``,
    followed by the other problems found, one per line.

    Attributes:
        source: The file (or the name given for a dict, e.g. ``"<spec>"``).
        path: Where in the spec, e.g. ``"agents.billing.retry.max_attempts"`` (empty for
            the spec as a whole, or a syntax error located by ``line``).
        problem: What is wrong.
        hint: How to fix it (may be empty).
        problems: Every problem found, the first one included, as :class:`SpecProblem`
            ``(path, problem, hint)`` tuples.
        line, column: For a syntax error, where in the file (1-based), else None.
    """

    def __init__(self, source: str, path: str, problem: str, hint: str = "", *,
                 problems: tuple[SpecProblem, ...] = (), line: int | None = None,
                 column: int | None = None) -> None:
        first = SpecProblem(path, problem, hint)
        problems = problems or (first,)
        where = source if line is None else f"{source}:{line}" + (
            f":{column}" if column is not None else "")
        message = f"{where}: {first}"
        if len(problems) > 1:
            message += f"\n{len(problems) - 1} more problem(s) in {source}:" + "".join(
                f"\n  {other}" for other in problems[1:])
        super().__init__(message, None)
        self.source = source
        self.path = path
        self.problem = problem
        self.hint = hint
        self.problems = problems
        self.line = line
        self.column = column
