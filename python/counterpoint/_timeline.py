"""What each agent of a run did over time, rebuilt from the run's events.

A run that records its timeline (``app.run``, ``app.start``) keeps, besides each agent's
start and end, the stretches in between that the engine's policies create: waiting for a
slot of a :class:`Limit`, each attempt, the backoff before a retry, a fallback, and the
wait for an in-process reviewer. :class:`Timeline` is that record, agent by agent; the
pictures, the critical path and the Perfetto export are made from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from ._events import Event

# The stretches of an agent's time (Span.kind).
QUEUED = "queued"      # waiting for a slot of the limit named in Span.detail
ATTEMPT = "attempt"    # running attempt Span.attempt
BACKOFF = "backoff"    # waiting to retry after attempt Span.attempt failed
FALLBACK = "fallback"  # running the agent's fallback
REVIEW = "review"      # its output waiting for an in-process reviewer's decision

# How an agent ended (AgentLane.status) or how one attempt ended (Span.status).
_ENDED_BY_KIND = {
    "finish": "succeeded",
    "error": "failed",
    "cancel": "cancelled",
    "review": "needs_review",
    "input": "needs_input",
}


@dataclass(frozen=True, slots=True)
class Span:
    """One stretch of one agent's time in a run.

    Attributes:
        agent: The agent's path (``"review/security"`` for an agent of a nested graph).
        kind: ``"queued"``, ``"attempt"``, ``"backoff"``, ``"fallback"`` or ``"review"``.
        start: Seconds from the run's start.
        end: Seconds from the run's start (the run's end for a stretch still open then).
        attempt: The attempt's number, from 1 (``"attempt"``), or the number of the
            attempt that failed (``"backoff"``); 0 otherwise.
        status: How an ``"attempt"`` or ``"fallback"`` ended: ``"succeeded"``,
            ``"failed"``, ``"timed_out"``, ``"cancelled"``, ``"needs_review"``,
            ``"needs_input"`` or ``"running"`` (still running when the timeline was
            taken); "" otherwise.
        detail: The limit's name (``"queued"``); the failure (a failed ``"attempt"``,
            ``"backoff"``, ``"fallback"``); why the output is reviewed (``"review"``).
    """

    agent: str
    kind: str
    start: float
    end: float
    attempt: int = 0
    status: str = ""
    detail: str = ""

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class AgentLane:
    """One agent's whole part in a run.

    Attributes:
        agent: The agent's path.
        parent: The path of the agent whose nested graph (a pattern, or a graph added as
            an agent) this agent ran in; None at the top level.
        status: ``"succeeded"``, ``"failed"``, ``"timed_out"``, ``"cancelled"``,
            ``"skipped"``, ``"needs_review"``, ``"needs_input"`` or ``"running"``.
        start: Seconds from the run's start to the agent's start (None if it never
            started: skipped).
        end: Seconds from the run's start to its end, or to when it was skipped (None
            while it runs).
        spans: Its stretches, in time order. An agent without policies has one attempt.
        after: The paths of the agents it runs after (its data edges), when the graph's
            plan was known to the timeline.
        message: The failure, why it was skipped, or why it awaits review.
        restored: Its outcome came from a checkpoint (a resumed durable run).
        priority: Its priority.
        calls: ``(start, end)`` of each call of the agent, in order: one, unless its
            graph ran it again (each iteration of a loop, a nested graph retried); the
            lane spans them all.
    """

    agent: str
    parent: str | None
    status: str
    start: float | None
    end: float | None
    spans: tuple[Span, ...] = ()
    after: tuple[str, ...] = ()
    message: str = ""
    restored: bool = False
    priority: int = 0
    calls: tuple[tuple[float, float], ...] = ()

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return self.end - self.start

    @property
    def attempts(self) -> int:
        return sum(1 for span in self.spans if span.kind == ATTEMPT)


@dataclass(frozen=True)
class Timeline:
    """Every agent of one run over time.

    Attributes:
        run_id: The run.
        status: The run's status (``"succeeded"``, ``"failed"``, ...).
        elapsed: Wall time of the run in seconds.
        lanes: One per agent that started or was skipped, at every depth, in the order
            they started (a nested graph's agents after the agent that runs it); agents
            that never started come last.
        run_key: The durable run's key, if it has one.
    """

    run_id: int
    status: str
    elapsed: float
    lanes: tuple[AgentLane, ...] = ()
    run_key: str | None = None
    _by_path: dict[str, AgentLane] = field(default_factory=dict, init=False, repr=False,
                                           compare=False)

    def __post_init__(self) -> None:
        self._by_path.update((lane.agent, lane) for lane in self.lanes)

    def lane(self, agent: str) -> AgentLane:
        """The lane of the agent at path ``agent``; KeyError naming the known paths if
        no agent of the run has it."""
        try:
            return self._by_path[agent]
        except KeyError:
            known = ", ".join(repr(p) for p in self._by_path) or "none"
            raise KeyError(
                f"no agent {agent!r} in run {self.run_id}; its agents are {known}") from None

    @property
    def spans(self) -> tuple[Span, ...]:
        """Every span of every lane, by start time."""
        return tuple(sorted((s for lane in self.lanes for s in lane.spans),
                            key=lambda s: (s.start, s.end)))

    def to_json(self) -> dict[str, Any]:
        """The timeline as plain JSON-ready data (times in seconds from the run's start)."""
        return {"run_id": self.run_id, "run_key": self.run_key, "status": self.status,
                "elapsed": self.elapsed, "lanes": [_lane_json(lane) for lane in self.lanes]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Timeline:
        """The timeline :meth:`to_json` made (e.g. kept in a run's store)."""
        lanes = []
        for lane in data["lanes"]:
            fields = dict(lane)
            fields["spans"] = tuple(Span(**span) for span in fields.get("spans", ()))
            fields["after"] = tuple(fields.get("after", ()))
            fields["calls"] = tuple(tuple(call) for call in fields.get("calls", ()))
            lanes.append(AgentLane(**fields))
        return cls(run_id=data["run_id"], status=data["status"], elapsed=data["elapsed"],
                   lanes=tuple(lanes), run_key=data.get("run_key"))

    def children(self, agent: str | None) -> tuple[AgentLane, ...]:
        """The lanes whose parent is ``agent`` (None: the top level)."""
        return tuple(lane for lane in self.lanes if lane.parent == agent)

    @classmethod
    def from_events(cls, events: Iterable[Event], *, run_id: int, status: str,
                    elapsed: float, edges: Mapping[str, Sequence[str]] | None = None,
                    run_key: str | None = None) -> Timeline:
        """Rebuilds the timeline from a run's events (every kind, in recorded order).

        Args:
            events: The run's events, as a run that records its timeline keeps them.
            run_id, status, elapsed, run_key: The run's.
            edges: ``{agent path: paths of the agents it runs after}``, at every depth,
                if known (the graph's plan); lanes get them as ``after``.
        """
        builders: dict[str, _LaneBuilder] = {}
        for event in events:
            if event.agent is None:
                continue
            builder = builders.get(event.agent)
            if builder is None:
                builder = builders[event.agent] = _LaneBuilder(event.agent, event.priority)
            builder.add(event)
        known = edges or {}
        run_over = status != "running"
        lanes = [builder.build(elapsed, tuple(known.get(path, ())), run_over)
                 for path, builder in builders.items()]
        # Started lanes by their start (stable: a parent's start comes before its
        # children's), then the ones that never started.
        lanes.sort(key=lambda lane: (lane.start is None, lane.start or 0.0))
        return cls(run_id=run_id, status=status, elapsed=elapsed, lanes=tuple(lanes),
                   run_key=run_key)


def parent_of(path: str) -> str | None:
    """``"review/security"`` -> ``"review"``; a top-level agent has none."""
    cut = path.rfind("/")
    return None if cut < 0 else path[:cut]


def _failure_status(event: Event) -> str:
    """How the failure an "error" or "retry" event reports ended the attempt: the engine's
    own timeout has no exception (an agent's own error always has one) and says so."""
    if event.error is None and "timed out after" in event.message:
        return "timed_out"
    return "failed"


class _LaneBuilder:
    """Folds one agent's events into its lane: each event opens the stretch that lasts
    until the agent's next event."""

    def __init__(self, agent: str, priority: int) -> None:
        self.agent = agent
        self.priority = priority
        self.start: float | None = None
        self.end: float | None = None
        self.status = "running"
        self.message = ""
        self.restored = False
        self.spans: list[Span] = []
        # The open stretch: (kind, start, attempt, detail); `implicit` marks the attempt
        # opened by the start itself, replaced if the policies report their own.
        self.open: tuple[str, float, int, str] | None = None
        self.implicit = False
        self.attempts = 0
        self.calls: list[tuple[float, float]] = []
        self.call_start: float | None = None  # of the call in progress

    def _close(self, at: float, status: str = "", detail: str | None = None) -> None:
        if self.open is None:
            return
        kind, start, attempt, open_detail = self.open
        has_status = kind in (ATTEMPT, FALLBACK)
        self.spans.append(Span(self.agent, kind, start, max(at, start), attempt,
                               status if has_status else "",
                               open_detail if detail is None else detail))
        self.open = None
        self.implicit = False

    def _open(self, kind: str, at: float, attempt: int = 0, detail: str = "") -> None:
        self.open = (kind, at, attempt, detail)

    def add(self, event: Event) -> None:
        kind, at = event.kind, event.time
        if kind == "start":
            if self.start is None:
                self.start = at
            else:
                # Called again (an iteration of a loop, a retried nested graph): a new call
                # whose attempts count from 1; the lane spans all of its calls.
                self._close(at, "cancelled")
                self._end_call(at)
                self.end, self.status, self.message = None, "running", ""
            self.call_start = at
            if event.message == "restored":
                self.restored = True
                return
            self._open(ATTEMPT, at, 1)
            self.implicit = True
            self.attempts = 1
        elif kind == "queued":
            self._drop_implicit()
            self._close(at)
            self._open(QUEUED, at, detail=event.message)
        elif kind == "attempt":
            self._drop_implicit()
            self._close(at)
            self.attempts = event.attempt or self.attempts + 1
            self._open(ATTEMPT, at, self.attempts)
        elif kind == "retry":
            self._close(at, _failure_status(event), event.message)
            self._open(BACKOFF, at, event.attempt or self.attempts, event.message)
        elif kind == "fallback":
            self._close(at, _failure_status(event), event.message)
            self._open(FALLBACK, at)
        elif kind == "reviewing":
            self._close(at, "succeeded")
            self._open(REVIEW, at, detail=event.message)
        elif kind in _ENDED_BY_KIND:
            status = _ENDED_BY_KIND[kind]
            if kind == "error":
                status = _failure_status(event)
            self.end = at
            self.status = status
            self._end_call(at)
            if kind != "finish":
                self.message = event.message
            if self.restored:
                self.status = "succeeded"
                return
            self._close(at, status, event.message if kind == "error" else None)
        elif kind == "skip":
            self.status = "skipped"
            self.message = event.message
            self.end = at

    def _end_call(self, at: float) -> None:
        if self.call_start is not None:
            self.calls.append((self.call_start, max(at, self.call_start)))
            self.call_start = None

    def _drop_implicit(self) -> None:
        if self.implicit:
            self.open = None
            self.implicit = False
            self.attempts = 0

    def build(self, elapsed: float, after: tuple[str, ...], run_over: bool) -> AgentLane:
        if run_over and self.status == "running" and self.start is not None:
            # Still running when its run ended (cancelled, out of time, another agent's
            # failure): the engine records no end for it, and discards its result.
            self.status, self.end = "cancelled", elapsed
        if self.open is not None:
            self._close(elapsed, "cancelled" if run_over else "running")
        self._end_call(elapsed)
        return AgentLane(agent=self.agent, parent=parent_of(self.agent), status=self.status,
                         start=self.start, end=self.end, spans=tuple(self.spans), after=after,
                         message=self.message, restored=self.restored, priority=self.priority,
                         calls=tuple(self.calls))


# Field names, read once: dataclasses.asdict deep-copies every value, which made keeping
# a durable run's timeline cost more than its agents (60 us a lane).
_SPAN_FIELDS = tuple(f.name for f in fields(Span))
_LANE_FIELDS = tuple(f.name for f in fields(AgentLane) if f.name != "spans")


def _lane_json(lane: AgentLane) -> dict[str, Any]:
    data = {name: getattr(lane, name) for name in _LANE_FIELDS}
    data["spans"] = tuple({name: getattr(span, name) for name in _SPAN_FIELDS}
                          for span in lane.spans)
    return data
