"""Why a run took as long as it did: its critical path, and where that time went.

The critical path is the chain of agents that ended the run: the agent that ended last,
the predecessor that ended last before it started, and so on back to the run's start.
Shortening anything off that chain does not shorten the run; shortening the chain does.
Each second of the run's wall time is attributed to one cause along the chain (agent
work, waiting on a limit, retry backoff, waiting for a reviewer, or the engine's own
time between agents), so the causes add up to the elapsed time by construction.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from ._timeline import ATTEMPT, BACKOFF, FALLBACK, QUEUED, REVIEW, AgentLane, Span, Timeline
from ._timeline_lanes import work_spans

# The causes of elapsed time (PathSegment.cause), in reporting order.
AGENT = "agent"        # an attempt or a fallback running
OVERHEAD = "overhead"  # the engine between agents, or a nested graph between its agents
CAUSES = (AGENT, QUEUED, BACKOFF, REVIEW, OVERHEAD)

_CAUSE_OF_KIND = {ATTEMPT: AGENT, FALLBACK: AGENT, QUEUED: QUEUED, BACKOFF: BACKOFF,
                  REVIEW: REVIEW}
# Event times and the run's elapsed come from one clock but are rounded separately: a
# predecessor "ended at or before" a start within this much.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class PathSegment:
    """One stretch of the critical path.

    Attributes:
        agent: The agent on the path then (its path), or None for the engine's time
            between top-level agents (and before the first, after the last).
        cause: ``"agent"`` (an attempt or fallback running), ``"queued"`` (waiting for
            a limit's slot), ``"backoff"`` (waiting to retry), ``"review"`` (waiting for
            a reviewer) or ``"overhead"`` (engine time: between agents, or a nested
            graph's time not spent in its agents).
        start: Seconds from the run's start.
        end: Seconds from the run's start.
    """

    agent: str | None
    cause: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class CriticalPath:
    """A run's critical path and where its elapsed time went.

    Attributes:
        elapsed: The run's wall time in seconds.
        agents: The paths of the agents on the critical path, in time order (an agent
            that runs a nested graph comes before the nested agents on the path).
        segments: The path's stretches, in time order, covering ``[0, elapsed]`` without
            gaps or overlaps.
        by_cause: Seconds per cause (``"agent"``, ``"queued"``, ``"backoff"``,
            ``"review"``, ``"overhead"``); they add up to ``elapsed``.
        speedup: All agent work of the run (the attempts and fallbacks of every agent
            that runs no nested graph) divided by ``elapsed``: how many agents ran at
            once on average. 1.0 is a sequential run.
    """

    elapsed: float
    agents: tuple[str, ...]
    segments: tuple[PathSegment, ...]
    by_cause: dict[str, float]
    speedup: float

    def share(self, cause: str) -> float:
        """The fraction of the elapsed time spent on ``cause`` (0 for an empty run)."""
        if cause not in self.by_cause:
            raise KeyError(f"no cause {cause!r}; the causes are {', '.join(CAUSES)}")
        return self.by_cause[cause] / self.elapsed if self.elapsed > 0 else 0.0

    def __str__(self) -> str:
        chain = " -> ".join(self.agents) or "(no agent)"
        lines = [f"critical path, {self.elapsed:.3f} s: {chain}"]
        for cause in CAUSES:
            lines.append(f"  {cause:<9} {self.by_cause[cause]:9.3f} s  "
                         f"{100 * self.share(cause):5.1f} %")
        lines.append(f"parallel speed-up {self.speedup:.2f}x")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{cause}</td><td style='text-align:right'>{self.by_cause[cause]:.3f}</td>"
            f"<td style='text-align:right'>{100 * self.share(cause):.1f} %</td></tr>"
            for cause in CAUSES)
        chain = html.escape(" \u2192 ".join(self.agents) or "(no agent)")
        return (f"<div><p>Critical path ({self.elapsed:.3f} s): {chain}<br>"
                f"Parallel speed-up {self.speedup:.2f}\u00d7</p>"
                "<table><thead><tr><th>cause</th><th>seconds</th><th>share</th></tr></thead>"
                f"<tbody>{rows}</tbody></table></div>")


def critical_path(timeline: Timeline) -> CriticalPath:
    """The critical path of the run ``timeline`` records, and its elapsed time by cause.

    Walking back from the run's end: the top-level agent that ended last; before it, the
    agent of its ``after`` edges that ended last (when the timeline has no edges for it,
    the agent that ended last at or before its start); and so on. An agent that runs a
    nested graph is expanded: the path runs through its nested agents the same way; of
    its time not spent in them, its own waits (for a limit, before a retry) count as
    such and the rest as overhead.
    """
    if not isinstance(timeline, Timeline):
        raise TypeError(f"critical_path needs a Timeline (a run's timeline data), got "
                        f"{type(timeline).__name__}")
    walk = _Walk(timeline)
    elapsed = max(0.0, timeline.elapsed)
    walk.through(None, 0.0, elapsed)
    segments = _merged(walk.segments)
    by_cause = dict.fromkeys(CAUSES, 0.0)
    for segment in segments:
        by_cause[segment.cause] += segment.duration
    return CriticalPath(elapsed=elapsed, agents=tuple(walk.agents), segments=segments,
                        by_cause=by_cause, speedup=_speedup(timeline, elapsed))


def _speedup(timeline: Timeline, elapsed: float) -> float:
    if elapsed <= 0:
        return 0.0
    parents = {lane.parent for lane in timeline.lanes}
    work = sum(span.duration for lane in timeline.lanes if lane.agent not in parents
               for span in work_spans(lane) if span.kind in (ATTEMPT, FALLBACK))
    return work / elapsed


class _Walk:
    """Builds the path's segments over a window, recursing into nested graphs."""

    def __init__(self, timeline: Timeline) -> None:
        # Each call of an agent is a step of its own: an agent its graph ran again (a
        # loop's iteration) is on the path once per call that the path goes through.
        self.children: dict[str | None, list[AgentLane]] = {}
        for lane in timeline.lanes:
            if lane.start is not None:
                self.children.setdefault(lane.parent, []).extend(_calls(lane))
        self.paths = {lane.agent for lane in timeline.lanes}
        self.segments: list[PathSegment] = []
        self.agents: list[str] = []

    def through(self, parent: str | None, lo: float, hi: float) -> None:
        """Segments covering [lo, hi] through the (started) agents of ``parent``'s graph;
        the gaps
        between them are overhead (``parent``'s, or the engine's at the top level)."""
        chain = self._chain(self._within(parent, lo, hi), lo, hi)
        cursor = lo
        for lane, start, end in chain:
            self._add(parent, OVERHEAD, cursor, start)
            if not self.agents or self.agents[-1] != lane.agent:
                self.agents.append(lane.agent)
            if self._within(lane.agent, start, end):
                self._nested(lane, start, end)
            else:
                self._spans(lane.agent, work_spans(lane), start, end, OVERHEAD)
            cursor = end
        self._add(parent, OVERHEAD, cursor, hi)

    def _within(self, parent: str | None, lo: float, hi: float) -> list[AgentLane]:
        """The calls of ``parent``'s graph's agents made within [lo, hi] (one call of
        ``parent``)."""
        return [call for call in self.children.get(parent, [])
                if call.start is not None and call.start >= lo - _TOLERANCE
                and (call.end is None or call.end <= hi + _TOLERANCE)]

    def _chain(self, lanes: list[AgentLane], lo: float, hi: float
               ) -> list[tuple[AgentLane, float, float]]:
        """The lanes of the path within [lo, hi], earliest first, each with its window
        clipped so that consecutive windows do not overlap."""
        def ended(lane: AgentLane) -> float:
            return min(hi, lane.end if lane.end is not None else hi)

        by_path: dict[str, list[AgentLane]] = {}  # every call of each agent
        for lane in lanes:
            by_path.setdefault(lane.agent, []).append(lane)
        chain: list[tuple[AgentLane, float, float]] = []
        seen: set[int] = set()  # the calls already on the path (an agent may have several)
        limit = hi
        current = _latest(lanes, ended, limit)
        while current is not None:
            seen.add(id(current))
            assert current.start is not None
            start = min(max(lo, current.start), limit)
            chain.append((current, start, max(start, min(ended(current), limit))))
            limit = start
            # Its data edges if the timeline knows them (and knows those agents); else
            # whichever agent ended last before it started.
            known = [call for p in current.after for call in by_path.get(p, ())]
            candidates = known if known or any(p in self.paths for p in current.after) \
                else lanes
            current = _latest([c for c in candidates if id(c) not in seen], ended, limit)
        chain.reverse()
        return chain

    def _nested(self, lane: AgentLane, start: float, end: float) -> None:
        """A lane that runs a nested graph: its agents' path over its window; what they
        leave uncovered is the lane's own waits (queued, backoff, review) where it has
        them, else overhead."""
        before = len(self.segments)
        self.through(lane.agent, start, end)
        nested = self.segments[before:]
        del self.segments[before:]
        own = [span for span in lane.spans if span.kind != ATTEMPT]
        for segment in nested:
            if segment.agent == lane.agent and segment.cause == OVERHEAD:
                self._spans(lane.agent, own, segment.start, segment.end, OVERHEAD)
            else:
                self.segments.append(segment)

    def _spans(self, agent: str, spans: Iterable[Span], lo: float, hi: float,
               gaps: str) -> None:
        """Segments covering [lo, hi] from the spans (clipped to it); time no span covers
        gets the cause ``gaps``."""
        cursor = lo
        for span in sorted(spans, key=lambda s: (s.start, s.end)):
            start, end = max(cursor, span.start), min(hi, span.end)
            if end <= start:
                continue
            self._add(agent, gaps, cursor, start)
            self._add(agent, _CAUSE_OF_KIND.get(span.kind, AGENT), start, end)
            cursor = end
        self._add(agent, gaps, cursor, hi)

    def _add(self, agent: str | None, cause: str, start: float, end: float) -> None:
        if end > start:
            self.segments.append(PathSegment(agent, cause, start, end))


def _calls(lane: AgentLane) -> list[AgentLane]:
    """The lane as one lane per call of its agent (the lane itself if it has one)."""
    if len(lane.calls) < 2:
        return [lane]
    return [replace(lane, start=start, end=end, calls=((start, end),),
                    spans=tuple(span for span in lane.spans
                                if span.start >= start - _TOLERANCE
                                and span.end <= end + _TOLERANCE))
            for start, end in lane.calls]


def _latest(lanes: Iterable[AgentLane], ended: Callable[[AgentLane], float],
            limit: float) -> AgentLane | None:
    """The lane that ended last at or before ``limit`` (the longest of those ending
    together)."""
    best: AgentLane | None = None
    best_key: tuple[float, float] | None = None
    for lane in lanes:
        end = ended(lane)
        if end > limit + _TOLERANCE or lane.start is None:
            continue
        key = (end, -lane.start)
        if best_key is None or key > best_key:
            best, best_key = lane, key
    return best


def _merged(segments: list[PathSegment]) -> tuple[PathSegment, ...]:
    """Adjacent segments of one agent and cause joined into one."""
    out: list[PathSegment] = []
    for segment in segments:
        last = out[-1] if out else None
        if last is not None and last.agent == segment.agent and last.cause == segment.cause:
            out[-1] = PathSegment(last.agent, last.cause, last.start, segment.end)
        else:
            out.append(segment)
    return tuple(out)
