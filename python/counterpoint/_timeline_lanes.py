"""How the views of a timeline (critical path, picture, Perfetto trace) read its lanes:
the order they are shown in, the work a lane without recorded stretches stands for, and
where an agent that never started belongs in time."""

from __future__ import annotations

from ._timeline import ATTEMPT, AgentLane, Span, Timeline


def lane_rows(timeline: Timeline) -> list[tuple[AgentLane, int]]:
    """The timeline's lanes with their nesting depth, each followed by the lanes of its
    nested graph; lanes whose parent is not in the timeline come last, at depth 0."""
    nested: dict[str | None, list[AgentLane]] = {}
    for lane in timeline.lanes:
        nested.setdefault(lane.parent, []).append(lane)
    rows: list[tuple[AgentLane, int]] = []
    placed: set[str] = set()

    def visit(parent: str | None, depth: int) -> None:
        for lane in nested.get(parent, []):
            if lane.agent not in placed:
                placed.add(lane.agent)
                rows.append((lane, depth))
                visit(lane.agent, depth + 1)

    visit(None, 0)
    for lane in timeline.lanes:
        if lane.agent not in placed:
            placed.add(lane.agent)
            rows.append((lane, 0))
            visit(lane.agent, 1)
    return rows


def work_spans(lane: AgentLane) -> tuple[Span, ...]:
    """The lane's spans; a lane that ran but records none (built by hand, or from a
    store that keeps no attempts) counts as one attempt over its whole time."""
    if lane.spans or lane.restored or lane.start is None:
        return lane.spans
    end = lane.end if lane.end is not None else lane.start
    return (Span(lane.agent, ATTEMPT, lane.start, end, 1, lane.status),)


def never_started_at(lane: AgentLane, lanes: dict[str, AgentLane]) -> float:
    """Where an agent that never started (skipped) belongs in time: when it was skipped,
    if the timeline recorded it; else when its last predecessor ended, else when its
    nested graph started, else the run's start.

    Args:
        lane: The agent's lane.
        lanes: The run's lanes by path.
    """
    if lane.end is not None:
        return lane.end
    ends: list[float] = []
    for path in lane.after:
        before = lanes.get(path)
        if before is not None and before.end is not None:
            ends.append(before.end)
    if ends:
        return max(ends)
    parent = lanes.get(lane.parent) if lane.parent is not None else None
    if parent is not None and parent.start is not None:
        return parent.start
    return 0.0
