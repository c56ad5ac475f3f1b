"""The agent call in progress, as the agent itself sees it (``cp.current()``), and the
question it may ask a person (``cp.interrupt()``), in durable runs."""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ._native import _core


class InterruptSignal(BaseException):
    """Raised by :func:`interrupt` to stop the agent until a person answers.

    A BaseException, like ``KeyboardInterrupt``: an agent's ``except Exception`` must not
    swallow it. The engine turns it into the agent's "needs input" outcome.

    Attributes:
        question: What the durable run stores for the pending question:
            ``{"ask": <the question>, "answers": [<earlier answers of this call>]}``.
    """

    def __init__(self, question: dict[str, Any]) -> None:
        super().__init__(f"an agent asked a person: {question['ask']!r}")
        self.question = question

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.question,))


_core.set_interrupt_type(InterruptSignal)


@dataclass
class AgentCall:
    """One call of an agent in a durable run (``cp.current()`` inside the agent).

    Attributes:
        run_key: The durable run's key (the same across resumes).
        path: The agent's checkpoint path: its name, ``"<agent>/<child agent>"`` in
            nested graphs and patterns, ``"<agent>#<n>/..."`` in a loop's n-th iteration.
        attempt: Which attempt this is, from 1 for an agent with a retry policy (0
            without one).
    """

    run_key: str
    path: str
    attempt: int
    # Answers a person gave to this agent's earlier questions, in order (resume).
    answers: list[Any] = field(default_factory=list, repr=False)
    asked: int = field(default=0, repr=False)

    @property
    def idempotency_key(self) -> str:
        """A key for side effects: the same for every retry and every resume of this
        agent in this run, different for any other agent or run. Pass it to an API that
        deduplicates requests (a payment, an email) so a repeated call does nothing."""
        return hashlib.sha256(f"{self.run_key}\0{self.path}".encode()).hexdigest()[:32]


_current: ContextVar[AgentCall | None] = ContextVar("counterpoint_agent_call", default=None)


def enter_call(context: Any, call: AgentCall) -> None:
    """Makes ``call`` the current one in the agent call's ``context``."""
    context.run(_current.set, call)


def current() -> AgentCall:
    """The agent call this code runs in (durable runs: graphs compiled with a store).

    Raises:
        RuntimeError: outside an agent of a durable run.
    """
    call = _current.get()
    if call is None:
        raise RuntimeError(
            "cp.current() is known inside the agents of durable runs only; call it from an "
            "agent of a graph compiled with store=... (e.g. compile(store='runs.db'))")
    return call


def interrupt(question: Any) -> Any:
    """Asks a person ``question`` and returns their answer.

    The first time, the agent stops here and its durable run pauses with status
    ``"needs_input"`` (``invoke`` raises :class:`~counterpoint.NeedsInput`, listing every
    pending question with its agent's path). ``app.resume(run_key, {path: answer})``
    then calls the agent again from its start, and this call returns ``answer``. An agent
    may ask several questions: each resume answers the next. Works in sync and
    ``async def`` agents, at any depth of nested graphs and patterns; the question must
    be storable by the run's store.

    Raises:
        RuntimeError: outside an agent of a durable run (one compiled with a store).
    """
    call = _current.get()
    if call is None:
        raise RuntimeError(
            "cp.interrupt() pauses a durable run until a person answers; call it from an "
            "agent of a graph compiled with store=... (e.g. compile(store='runs.db'))")
    asked = call.asked
    call.asked += 1
    if asked < len(call.answers):
        return call.answers[asked]
    raise InterruptSignal({"ask": question, "answers": list(call.answers)})
