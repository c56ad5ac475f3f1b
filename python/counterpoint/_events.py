"""Events a run reports while it executes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


# slots=True: the engine fills each field through its slot (see set_event_type in
# cpp/bindings/records.cpp) instead of running the frozen dataclass's __init__, which
# cost most of what streaming fast agents did.
@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to one agent of one run.

    Attributes:
        kind: ``"start"``, ``"finish"``, ``"error"``, ``"cancel"``, ``"skip"``,
            ``"review"`` or ``"input"`` (it asked a person a question with
            ``cp.interrupt``: ``output`` is ``{"ask": question, "answers": [the answers
            it got so far]}``) for an agent, and ``"end"`` once, last, for a run that
            succeeded
            (``output`` holds its result). Agents of child runs (nested graphs and
            patterns) are named ``"<parent agent>/<agent>"``.
        agent: Name of the agent (``None`` for ``"end"``).
        run_id: The run it belongs to.
        time: Seconds since the run started.
        output: The agent's output (``"finish"``) or the run's result (``"end"``).
        error: The exception the agent raised (``"error"``).
        message: Summary of the error (``"error"``), why it was skipped (``"skip"``) or
            why it needs review (``"review"``); the routes taken (a router's ``"finish"``).
        priority: The agent's priority.
        attempt: For a run's timeline (``app.run``, ``app.start``): the attempt's number,
            from 1 (``"attempt"``), or the number of the attempt that failed (``"retry"``).
        delay: For ``"retry"``: the seconds of backoff before the next attempt.

    A run that records its timeline also has the steps its agents' policies take:
    ``"queued"`` (waiting for a slot of the limit named in ``message``), ``"attempt"``,
    ``"retry"`` (``error`` and ``message``: the failure), ``"fallback"`` (``message``: the
    failure that led to it) and ``"reviewing"`` (its output waits for a reviewer;
    ``message``: why). Streams do not carry these.
    """

    kind: str
    agent: str | None
    run_id: int
    time: float
    output: Any = None
    error: BaseException | None = field(default=None, repr=False)
    message: str = ""
    priority: int = 0
    attempt: int = 0
    delay: float = 0.0

    def __reduce__(self) -> tuple[Any, ...]:
        # Frozen dataclasses with slots do not unpickle on Python 3.10 by default.
        return (type(self), (self.kind, self.agent, self.run_id, self.time, self.output,
                             self.error, self.message, self.priority, self.attempt,
                             self.delay))
