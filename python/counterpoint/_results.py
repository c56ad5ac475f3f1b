"""Values agents return and patterns produce."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._native import _core

Failed = _core.Failed
"""Stands in for a failed predecessor's output in a ``join="settled"`` agent's input."""


@dataclass(frozen=True)
class Result:
    """An agent's output with what it knows about it.

    Return ``Result(value, confidence=0.62)`` from an agent to let confidence-aware
    patterns (``adaptive``, confidence-weighted merges) act on it. A dict with a
    ``"confidence"`` key, or an object with a ``confidence`` attribute, works too.

    Attributes:
        value: The output itself.
        confidence: How sure the agent is, from 0 to 1 (None: not reported).
        usage: What producing it cost, e.g. ``{"tokens": 812, "cost": 0.004}``.
    """

    value: Any
    confidence: float | None = None
    usage: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if self.confidence is not None:
            if isinstance(self.confidence, bool) or not isinstance(self.confidence, (int, float)):
                raise TypeError(
                    f"Result confidence must be a number from 0 to 1, got {self.confidence!r}"
                )
            if not 0.0 <= self.confidence <= 1.0 or math.isnan(self.confidence):
                raise ValueError(
                    f"Result confidence must be from 0 to 1, got {self.confidence}"
                )


def value_of(output: Any) -> Any:
    """The plain value of an agent's output (unwraps :class:`Result`)."""
    return output.value if isinstance(output, Result) else output


def confidence_of(output: Any) -> float | None:
    """The confidence an agent reported with its output, or None."""
    if isinstance(output, Result):
        return output.confidence
    if isinstance(output, Escalation):
        # The confidence of the answer that was kept, not of the cheap path's.
        return output.confidence if output.path == "cheap" else confidence_of(output.value)
    if isinstance(output, Mapping):
        found = output.get("confidence")
    else:
        found = getattr(output, "confidence", None)
    if isinstance(found, (int, float)) and not isinstance(found, bool):
        return float(found)
    return None


@dataclass(frozen=True)
class Merged:
    """The outcome of merging parallel branches under a stated policy.

    Attributes:
        value: The merged value.
        policy: ``"first"``, ``"majority"``, ``"quorum"``, ``"confidence"`` or ``"judge"``.
        resolution: How the value was chosen, tie-breaks included.
        outputs: Every branch's output that arrived (plain values), by branch name.
        agreeing: Branches whose output equals ``value``.
        disagreeing: Branches whose output differs from ``value``.
        failed: Branches that failed, with their exceptions.
        tally: Votes (or summed confidence) per distinct output, as ``repr`` strings.
    """

    value: Any
    policy: str
    resolution: str
    outputs: dict[str, Any] = field(default_factory=dict)
    agreeing: tuple[str, ...] = ()
    disagreeing: tuple[str, ...] = ()
    failed: dict[str, BaseException] = field(default_factory=dict)
    tally: dict[str, float] = field(default_factory=dict)

    @property
    def unanimous(self) -> bool:
        """True when every branch produced the same output and none failed."""
        return not self.disagreeing and not self.failed

    @property
    def confidence(self) -> float | None:
        """How much of the vote backs ``value`` (0 to 1), so a merge can feed a
        confidence gate: the winner's share of the tally, or of the branches that voted
        (failed ones count against it). None when nothing was voted on."""
        if self.tally:
            # Confidence-weighted tallies are shares of confidence; counted votes also
            # count failed branches as voices that did not back the value.
            dissent = 0 if self.policy == "confidence" else len(self.failed)
            total = sum(self.tally.values()) + dissent
            return self.tally.get(repr(self.value), 0.0) / total if total else None
        voters = len(self.outputs) + len(self.failed)
        return len(self.agreeing) / voters if voters else None


@dataclass(frozen=True)
class LoopResult:
    """The outcome of an evaluation loop.

    Attributes:
        value: The last draft.
        iterations: How many times the worker ran.
        stopped: ``"passed"`` (the evaluator accepted it) or ``"max_iterations"``.
        history: ``(draft, verdict)`` for every iteration, in order.
    """

    value: Any
    iterations: int
    stopped: str
    history: tuple[tuple[Any, Any], ...] = ()


@dataclass(frozen=True)
class ChatResult:
    """The outcome of a group chat.

    Attributes:
        transcript: ``(speaker, message)`` for every turn, in order.
        turns: Number of turns taken.
        stopped: ``"until"`` (the condition held), ``"manager"`` (it ended the chat) or
            ``"max_turns"``.
    """

    transcript: tuple[tuple[str, Any], ...]
    turns: int
    stopped: str

    @property
    def last(self) -> Any:
        return self.transcript[-1][1] if self.transcript else None


@dataclass(frozen=True)
class Escalation:
    """The outcome of adaptive orchestration: which path ran, and why.

    Attributes:
        value: The result of the path that ran.
        path: ``"cheap"`` or ``"escalated"``.
        reason: Why, e.g. ``"confidence 0.42 < 0.7"`` or ``"cheap path failed: ..."``.
        confidence: The cheap path's confidence (None if it failed or reported none).
        cheap_output: The cheap path's output, kept even when it was escalated.
    """

    value: Any
    path: str
    reason: str
    confidence: float | None = None
    cheap_output: Any = None


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


@dataclass(frozen=True)
class InputRequest:
    """A question an agent asked a person with :func:`counterpoint.interrupt`.

    Attributes:
        agent: The asking agent's path (``"<agent>/<child agent>"`` at depth); answer it
            with ``app.resume(run_key, {agent: answer})``.
        question: What the agent passed to ``cp.interrupt``.
        run_key: The durable run it belongs to.
    """

    agent: str
    question: Any
    run_key: str | None = None


@dataclass(frozen=True)
class Verdict:
    """An evaluator's judgement of a draft.

    Evaluators may also return a bool, or a dict with ``"passed"`` (or ``"pass"``) and
    ``"feedback"``.
    """

    passed: bool
    feedback: Any = None
    score: float | None = None


@dataclass(frozen=True)
class Subtask:
    """One piece of a plan.

    Attributes:
        id: Unique name of the subtask.
        task: What the worker is asked to do (any value).
        worker: Name of the worker to run it (optional when there is only one).
        depends_on: Ids of the subtasks whose outputs this one needs.
    """

    id: str
    task: Any = None
    worker: str | None = None
    depends_on: tuple[str, ...] = field(default_factory=tuple)
