"""perfetto_trace(): a run as a Chrome trace-event JSON object that ui.perfetto.dev opens,
checked against the trace-event format (required fields per phase, metadata, slices
nesting per track, flows bound to slices, monotonic timestamps, JSON), on hand-made
timelines and on real runs."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from typing import Any

import pytest
from timeline_runs import (
    BRANCHES,
    attempt,
    durable_app,
    edges_of,
    fan_out_join,
    lane,
    nested_run,
    run_timeline,
    timeline,
)

import counterpoint as cp
from counterpoint._critical_path import critical_path
from counterpoint._perfetto import perfetto_trace
from counterpoint._stored_timeline import timeline_from_store
from counterpoint._timeline import Timeline

# Required fields per phase (the trace-event format: "Trace Event Format" document).
_REQUIRED = {
    "X": {"name", "ph", "ts", "dur", "pid", "tid"},
    "M": {"name", "ph", "pid", "tid", "args"},
    "i": {"name", "ph", "ts", "pid", "tid", "s"},
    "s": {"name", "ph", "ts", "pid", "tid", "id"},
    "f": {"name", "ph", "ts", "pid", "tid", "id"},
}
_METADATA = {"process_name": "name", "process_sort_index": "sort_index",
             "thread_name": "name", "thread_sort_index": "sort_index"}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and value == value


def validate(trace: dict[str, Any]) -> dict[str, Any]:
    """Checks ``trace`` against the trace-event format; returns what it found: track
    names by (pid, tid), slices by track, flows by id."""
    text = json.dumps(trace, allow_nan=False)        # serialisable, no NaN or infinity
    assert json.loads(text) == trace
    assert set(trace) == {"traceEvents", "displayTimeUnit", "otherData"}
    assert trace["displayTimeUnit"] in ("ms", "ns")
    assert all(isinstance(v, str) for v in trace["otherData"].values())
    names: dict[tuple[int, int], str] = {}
    processes: set[int] = set()
    slices: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    last_ts: dict[tuple[int, int], float] = {}
    flows: dict[Any, dict[str, dict[str, Any]]] = defaultdict(dict)
    timed = []
    for event in trace["traceEvents"]:
        phase = event["ph"]
        assert phase in _REQUIRED, event
        assert _REQUIRED[phase] <= set(event), event
        assert isinstance(event["name"], str) and event["name"]
        assert type(event["pid"]) is int and type(event["tid"]) is int, event
        track = (event["pid"], event["tid"])
        if phase == "M":
            assert event["name"] in _METADATA, event
            assert _METADATA[event["name"]] in event["args"], event
            if event["name"] == "process_name":
                processes.add(event["pid"])
            elif event["name"] == "thread_name":
                assert track not in names, f"track {track} named twice"
                names[track] = event["args"]["name"]
            continue
        timed.append(event)
        assert _number(event["ts"]) and event["ts"] >= 0, event
        assert event["ts"] >= last_ts.get(track, 0.0), f"ts goes back on {track}: {event}"
        last_ts[track] = event["ts"]
        if phase == "X":
            assert _number(event["dur"]) and event["dur"] >= 0, event
            assert isinstance(event.get("cat", ""), str)
            slices[track].append((event["ts"], event["ts"] + event["dur"]))
        elif phase == "i":
            assert event["s"] in ("g", "p", "t")
        else:
            assert phase not in flows[event["id"]], f"flow {event['id']} has two {phase}"
            flows[event["id"]][phase] = event
    for event in timed:
        assert (event["pid"], event["tid"]) in names, f"unnamed track: {event}"
        assert event["pid"] in processes
    for track, spans in slices.items():
        # Slices on one track nest: each starts after the one before ended, or inside it.
        for (_, e0), (s1, e1) in itertools.pairwise(spans):
            assert s1 >= e0 or e1 <= e0, f"slices overlap on {names[track]}"
    for flow_id, ends in flows.items():
        assert set(ends) == {"s", "f"}, f"flow {flow_id} is not a start and a finish"
        start, finish = ends["s"], ends["f"]
        assert start["ts"] <= finish["ts"]
        assert finish.get("bp") == "e"
        for end in (start, finish):   # each end lies in a slice of its track
            track = (end["pid"], end["tid"])
            assert any(s <= end["ts"] <= e for s, e in slices[track]), end
    return {"names": names, "slices": slices, "flows": flows}


def _events(trace: dict[str, Any], phase: str) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == phase]


def _sample() -> Timeline:
    return timeline(
        4.0,
        lane("plan", 0.0, 1.0, attempt(0.0, 1.0)),
        lane("search", 1.1, 3.0,
             ("queued", 1.1, 1.4, 0, "", "llm"),
             attempt(1.4, 1.8, 1, "failed", "ValueError: rate limited"),
             ("backoff", 1.8, 2.0, 1, "", "ValueError: rate limited"),
             attempt(2.0, 3.0, 2, "succeeded"),
             after=["plan"]),
        lane("review", 1.1, 3.5, attempt(1.1, 3.5), after=["plan"]),
        lane("review/security", 1.2, 3.4, attempt(1.2, 3.4)),
        lane("review/style", 1.3, 2.0, attempt(1.3, 2.0), after=["review/security"]),
        lane("publish", 3.6, 3.9, attempt(3.6, 3.9), after=["search", "review"]),
        lane("notify", None, None, status="skipped", after=["search"],
             message="route not taken"),
    )


def test_the_trace_follows_the_trace_event_format():
    trace = perfetto_trace(_sample())
    found = validate(trace)
    assert list(found["names"].values()) == [
        "plan", "search", "review", "review/security", "review/style", "publish", "notify",
        "critical path"]
    (process,) = [e for e in _events(trace, "M") if e["name"] == "process_name"]
    assert process["args"]["name"] == "counterpoint run 7: succeeded"
    sort = {e["tid"]: e["args"]["sort_index"] for e in _events(trace, "M")
            if e["name"] == "thread_sort_index"}
    assert sorted(sort, key=sort.__getitem__) == sorted(sort)
    assert trace["otherData"] == {"generator": "counterpoint", "run_id": "7", "run_key": "",
                                  "status": "succeeded", "elapsed_seconds": "4.000000"}


def test_one_slice_per_span_in_microseconds_with_its_arguments():
    run = _sample()
    trace = perfetto_trace(run)
    tids = {e["args"]["name"]: e["tid"] for e in _events(trace, "M")
            if e["name"] == "thread_name"}
    search = [e for e in _events(trace, "X") if e["tid"] == tids["search"]]
    assert [(e["name"], e["cat"], e["ts"], e["dur"]) for e in search] == [
        ("queued on llm", "queued", 1_100_000, 300_000),
        ("attempt 1", "attempt", 1_400_000, 400_000),
        ("backoff after attempt 1", "backoff", 1_800_000, 200_000),
        ("attempt 2", "attempt", 2_000_000, 1_000_000),
    ]
    assert search[1]["args"] == {"agent": "search", "attempt": 1, "status": "failed",
                                 "detail": "ValueError: rate limited"}
    agent_slices = [e for e in _events(trace, "X") if e["tid"] != tids["critical path"]]
    assert len(agent_slices) == len(run.spans)


def test_flows_follow_the_data_edges():
    trace = perfetto_trace(_sample())
    flows = validate(trace)["flows"]
    names = {e["tid"]: e["args"]["name"] for e in _events(trace, "M")
             if e["name"] == "thread_name"}
    edges = sorted((names[f["s"]["tid"]], names[f["f"]["tid"]]) for f in flows.values())
    # Every edge but style's (it started before security ended: nothing flowed).
    assert edges == [("plan", "review"), ("plan", "search"), ("review", "publish"),
                     ("search", "publish")]
    plan_to_search = next(f for f in flows.values() if names[f["f"]["tid"]] == "search")
    # From 1 µs before plan's end to 1 µs into search's first slice.
    assert plan_to_search["s"]["ts"] == 999_999
    assert plan_to_search["f"]["ts"] == 1_100_001


def test_skipped_agents_are_instants_and_the_critical_path_a_track():
    run = _sample()
    trace = perfetto_trace(run)
    (skip,) = _events(trace, "i")
    assert skip["name"] == "skipped" and skip["s"] == "t"
    assert skip["args"] == {"agent": "notify", "reason": "route not taken"}
    assert skip["ts"] == 3_000_000     # when its predecessor ended
    tids = {e["args"]["name"]: e["tid"] for e in _events(trace, "M")
            if e["name"] == "thread_name"}
    strip = [e for e in _events(trace, "X") if e["tid"] == tids["critical path"]]
    segments = critical_path(run).segments
    assert [e["args"]["cause"] for e in strip] == [s.cause for s in segments]
    assert sum(e["dur"] for e in strip) == 4_000_000


def test_overlapping_or_restored_spans_still_nest():
    run = timeline(
        2.0,
        lane("old", 0.0, 0.0, restored=True),
        lane("odd", 0.0, 2.0, attempt(0.0, 1.5), ("review", 1.0, 2.0)),   # overlapping
        lane("running", 0.5, None, attempt(0.5, 2.0, 1, "running"), status="running"),
    )
    trace = perfetto_trace(run)
    validate(trace)
    restored = [e for e in _events(trace, "X") if e["cat"] == "restored"]
    assert len(restored) == 1 and restored[0]["dur"] == 0
    odd = [e for e in _events(trace, "X") if e["args"].get("agent") == "odd"
           and e["cat"] in ("attempt", "review")]
    assert [(e["ts"], e["dur"]) for e in odd] == [(0, 1_500_000), (1_500_000, 500_000)]


def test_a_stored_run_without_a_run_id_and_bad_input():
    stored = Timeline(run_id=0, status="succeeded", elapsed=1.0, run_key="abc",
                      lanes=(lane("a", 0.0, 1.0, attempt(0.0, 1.0)),))
    trace = perfetto_trace(stored)
    validate(trace)
    assert {e["pid"] for e in trace["traceEvents"]} == {1}
    assert trace["otherData"]["run_key"] == "abc"
    (process,) = [e for e in _events(trace, "M") if e["name"] == "process_name"]
    assert process["args"]["name"] == "counterpoint run abc: succeeded"
    with pytest.raises(TypeError, match="perfetto_trace needs a Timeline"):
        perfetto_trace("run")  # type: ignore[arg-type]


def test_real_runs():
    app = fan_out_join()
    run = run_timeline(app, "x", edges_of(app))
    trace = perfetto_trace(run)
    found = validate(trace)
    assert sorted(found["names"].values()) == sorted(
        ["a", *BRANCHES, "join", "critical path"])
    assert len(found["flows"]) == 2 * len(BRANCHES)     # a -> each branch -> join
    nested = run_timeline(nested_run(), "x", {"w": ["review", "quick"]})
    found = validate(perfetto_trace(nested))
    assert "review/sec" in found["names"].values()
    assert len(found["flows"]) == 2


def test_a_stored_run(tmp_path):
    store = cp.SQLiteStore(tmp_path / "runs.db")
    app = durable_app(store)
    record = app.run("x")
    trace = perfetto_trace(timeline_from_store(store, record.run_key, edges=edges_of(app)))
    found = validate(trace)
    assert sorted(found["names"].values()) == sorted([*record.agents, "critical path"])
    assert trace["otherData"]["run_key"] == record.run_key
    assert [e["args"]["agent"] for e in _events(trace, "i")] == ["after_broken"]
    retried = [e["name"] for e in _events(trace, "X") if e["args"].get("agent") == "flaky"
               and "cause" not in e["args"]]
    assert retried == ["attempt 1", "backoff after attempt 1", "attempt 2",
                       "backoff after attempt 2", "attempt 3"]
    store.close()
