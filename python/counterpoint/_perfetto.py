"""A run's timeline as a Chrome trace (the trace-event JSON format), to open in
ui.perfetto.dev or chrome://tracing.

The run is one process; each agent is one thread track named by its path (a nested
graph's agents on their own tracks, right after the agent that runs them), holding one
slice per stretch of its time. Flow arrows follow the data edges, from the end of a
predecessor's last slice to the start of its successor's first; a skipped agent is an
instant event on its track. A last track shows the critical path's time by cause.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._critical_path import critical_path
from ._timeline import ATTEMPT, BACKOFF, QUEUED, AgentLane, Span, Timeline
from ._timeline_lanes import lane_rows, never_started_at, work_spans

# Flow ends sit this far (µs) inside their slices, so viewers bind them to those slices
# rather than to whatever starts or ends at the same instant.
_INSIDE_US = 1


def perfetto_trace(timeline: Timeline) -> dict[str, Any]:
    """The run as a Chrome trace-event JSON object (``json.dump`` it to a file and open
    the file in ui.perfetto.dev).

    Times are whole microseconds from the run's start (whole, so that a slice ends
    exactly where the next one starts in every viewer). Slices (``"ph": "X"``) have the span's
    kind as category and ``attempt``, ``status`` and ``detail`` as arguments.
    """
    if not isinstance(timeline, Timeline):
        raise TypeError(f"perfetto_trace needs a Timeline (a run's timeline data), got "
                        f"{type(timeline).__name__}")
    pid = timeline.run_id if timeline.run_id > 0 else 1
    rows = lane_rows(timeline)
    tids = {lane.agent: index + 1 for index, (lane, _) in enumerate(rows)}
    lanes = {lane.agent: lane for lane, _ in rows}
    title = f"counterpoint run {timeline.run_id}"
    if timeline.run_key:   # a stored run (run id 0) is known by its key alone
        title = f"counterpoint run {timeline.run_key}" if timeline.run_id == 0 else \
            f"{title} ({timeline.run_key})"
    metadata: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
         "args": {"name": f"{title}: {timeline.status}"}},
        {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0,
         "args": {"sort_index": 0}},
    ]
    timed: list[dict[str, Any]] = []
    slices: dict[str, list[dict[str, Any]]] = {}
    for lane, _ in rows:
        tid = tids[lane.agent]
        metadata += _thread(pid, tid, lane.agent)
        slices[lane.agent] = _slices(pid, tid, lane)
        timed += slices[lane.agent]
        if lane.start is None and lane.status == "skipped":
            timed.append(_skipped(pid, tid, lane, lanes))
    path_tid = len(rows) + 1
    metadata += _thread(pid, path_tid, "critical path")
    timed += _path_slices(pid, path_tid, timeline)
    timed += _flows(pid, rows, tids, slices)
    timed.sort(key=lambda event: event["ts"])
    return {
        "traceEvents": metadata + timed,
        "displayTimeUnit": "ms",
        "otherData": {
            "generator": "counterpoint",
            "run_id": str(timeline.run_id),
            "run_key": timeline.run_key or "",
            "status": timeline.status,
            "elapsed_seconds": f"{timeline.elapsed:.6f}",
        },
    }


def _us(seconds: float) -> int:
    return round(max(0.0, seconds) * 1_000_000)


def _thread(pid: int, tid: int, name: str) -> list[dict[str, Any]]:
    return [{"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}},
            {"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid,
             "args": {"sort_index": tid}}]


def _slice_name(span: Span) -> str:
    if span.kind == ATTEMPT:
        return f"attempt {span.attempt}" if span.attempt else ATTEMPT
    if span.kind == BACKOFF:
        return f"backoff after attempt {span.attempt}"
    if span.kind == QUEUED and span.detail:
        return f"queued on {span.detail}"
    return span.kind


def _slices(pid: int, tid: int, lane: AgentLane) -> list[dict[str, Any]]:
    """The lane's slices, in time order, none overlapping the one before (a track's
    slices must nest, and an agent's stretches follow one another)."""
    spans: Iterable[Span] = work_spans(lane)
    if lane.restored and not lane.spans and lane.start is not None:
        end = lane.end if lane.end is not None else lane.start
        spans = (Span(lane.agent, "restored", lane.start, end, 0, lane.status,
                      "restored from a checkpoint"),)
    events = []
    cursor = 0
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        start = max(_us(span.start), cursor)
        end = max(_us(span.end), start)
        events.append({"ph": "X", "name": _slice_name(span), "cat": span.kind, "pid": pid,
                       "tid": tid, "ts": start, "dur": end - start,
                       "args": {"agent": lane.agent, "attempt": span.attempt,
                                "status": span.status, "detail": span.detail}})
        cursor = end
    return events


def _skipped(pid: int, tid: int, lane: AgentLane, lanes: dict[str, AgentLane]
             ) -> dict[str, Any]:
    return {"ph": "i", "s": "t", "name": "skipped", "cat": "skip", "pid": pid, "tid": tid,
            "ts": _us(never_started_at(lane, lanes)),
            "args": {"agent": lane.agent, "reason": lane.message}}


def _path_slices(pid: int, tid: int, timeline: Timeline) -> list[dict[str, Any]]:
    return [{"ph": "X", "name": f"{segment.cause}: {segment.agent or 'engine'}",
             "cat": f"critical_path,{segment.cause}", "pid": pid, "tid": tid,
             "ts": _us(segment.start), "dur": _us(segment.end) - _us(segment.start),
             "args": {"agent": segment.agent or "", "cause": segment.cause}}
            for segment in critical_path(timeline).segments]


def _flows(pid: int, rows: list[tuple[AgentLane, int]], tids: dict[str, int],
           slices: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A flow arrow along each data edge whose predecessor ended before its successor
    started (with ``join="any"`` a late predecessor fed nothing)."""
    events: list[dict[str, Any]] = []
    for lane, _ in rows:
        first = slices[lane.agent][0] if slices[lane.agent] else None
        if first is None:
            continue
        for path in lane.after:
            before = slices.get(path)
            if not before:
                continue
            last = before[-1]
            end = last["ts"] + last["dur"]
            if end > first["ts"]:
                continue
            flow = len(events) // 2 + 1
            events.append({"ph": "s", "id": flow, "name": "data", "cat": "flow", "pid": pid,
                           "tid": tids[path], "ts": end - _inside(last["dur"])})
            events.append({"ph": "f", "bp": "e", "id": flow, "name": "data", "cat": "flow",
                           "pid": pid, "tid": tids[lane.agent],
                           "ts": first["ts"] + _inside(first["dur"])})
    return events


def _inside(duration: int) -> int:
    """How far inside a slice of ``duration`` µs a flow's end goes (none if it is too
    short to have an inside)."""
    return _INSIDE_US if duration > 2 * _INSIDE_US else 0


def timeline_trace(timeline: Timeline, format: str) -> dict[str, Any]:
    """``timeline`` as a JSON-ready trace: ``"json"`` (its lanes and spans as plain data)
    or ``"perfetto"`` (:func:`perfetto_trace`)."""
    if format == "perfetto":
        return perfetto_trace(timeline)
    if format == "json":
        return timeline.to_json()
    raise ValueError(f"trace format must be 'json' or 'perfetto', got {format!r}")
