"""Exceptions raised by counterpoint."""

from __future__ import annotations

from typing import Any


class CounterpointError(Exception):
    """Base class of every error counterpoint raises."""


class GraphError(CounterpointError, ValueError):
    """The graph cannot run. Raised by ``Graph.compile()`` before anything executes.

    Attributes:
        node: Name of the offending agent, or ``None`` when the problem is the graph as
            a whole (for example an empty graph).
    """

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node


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
