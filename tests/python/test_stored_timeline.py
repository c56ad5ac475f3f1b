"""timeline_from_store(): a durable run's timeline rebuilt from its store (outcomes) and
audit log (times, retries), for a finished run, a resumed one, one whose process died
before its end entries, and a store that keeps no audit log."""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import Stores
from timeline_runs import durable_app, edges_of

import counterpoint as cp
from counterpoint._audit import AuditEvent
from counterpoint._critical_path import critical_path
from counterpoint._stored_timeline import timeline_from_store


def test_a_finished_run_has_its_agents_times_and_retries(stores: Stores) -> None:
    store = stores.open()
    app = durable_app(store)
    record = app.run("x")
    assert record.status == "succeeded"
    timeline = timeline_from_store(store, record.run_key, edges=edges_of(app))
    assert timeline.run_id == 0 and timeline.run_key == record.run_key
    assert timeline.status == "succeeded"
    assert timeline.elapsed == record.elapsed
    assert timeline.lanes[0].agent == "a"
    assert {lane.agent: lane.status for lane in timeline.lanes} == {
        name: outcome.status for name, outcome in record.agents.items()}
    for name, outcome in record.agents.items():
        lane = timeline.lane(name)
        assert lane.after == tuple(edges_of(app)[name])
        if outcome.started is None:
            assert lane.start is None and lane.end is None and not lane.spans
            continue
        # Durations are the engine's; start times keep the engine's gaps between agents.
        assert lane.duration == pytest.approx(outcome.finished - outcome.started, abs=1e-6)
        assert lane.start - timeline.lane("a").start == pytest.approx(
            outcome.started - record.agents["a"].started, abs=1e-5)
        assert lane.spans[0].start == lane.start and lane.spans[-1].end == lane.end
    flaky = timeline.lane("flaky")
    assert [(s.kind, s.attempt, s.status) for s in flaky.spans] == [
        ("attempt", 1, "failed"), ("backoff", 1, ""), ("attempt", 2, "failed"),
        ("backoff", 2, ""), ("attempt", 3, "succeeded")]
    assert flaky.spans[0].detail == "flaky 1" and flaky.spans[3].detail == "flaky 2"
    for before, after in zip(flaky.spans, flaky.spans[1:]):
        assert before.end == pytest.approx(after.start) and before.end >= before.start
    assert timeline.lane("broken").status == "failed"
    assert timeline.lane("broken").message == "KeyError: 'boom'"
    assert timeline.lane("after_broken").status == "skipped"
    assert timeline.lane("after_broken").message
    # Nested agents are not stored: the lanes are the top-level agents.
    assert all(lane.parent is None for lane in timeline.lanes)
    path = critical_path(timeline)
    assert sum(path.by_cause.values()) == pytest.approx(timeline.elapsed, rel=0.05)
    assert path.agents[-1] == "w"
    store.close()


def test_a_resumed_run_shows_its_latest_session_with_restored_agents(stores: Stores) -> None:
    store = stores.open()
    app = (cp.Graph()
           .add("research", lambda x: f"facts on {x}")
           .add("draft", lambda facts: cp.Result(f"draft of {facts}", confidence=0.2),
                after="research", review=cp.Review(below=0.5))
           .add("publish", lambda d: f"published {cp.value_of(d)}", after="draft")
           .compile(store=store))
    record = app.run("tides")
    assert record.status == "needs_review"
    paused = timeline_from_store(store, record.run_key)
    assert paused.status == "needs_review"
    assert paused.lane("draft").status == "needs_review"
    assert "confidence" in paused.lane("draft").message
    assert paused.lane("publish").status == "skipped"
    assert paused.lane("publish").message == "a predecessor awaits review"
    app.resume(record.run_key, cp.approve())
    resumed = timeline_from_store(store, record.run_key)
    assert resumed.status == "succeeded"
    assert {lane.agent: (lane.restored, lane.status) for lane in resumed.lanes} == {
        "research": (True, "succeeded"), "draft": (True, "succeeded"),
        "publish": (False, "succeeded")}
    assert resumed.lane("research").spans == ()
    assert resumed.lane("publish").start is not None
    store.close()


def test_a_session_without_end_entries_knows_outcomes_but_not_times(stores: Stores) -> None:
    # What a killed process leaves: the run's start and the outcomes written live.
    store = stores.open()
    store.record_start("k", "graph", "input", [AuditEvent("run_started", None, {})])
    store.record_outcomes("k", [cp.StoredOutcome("a", "succeeded", 1),
                                cp.StoredOutcome("b", "failed", message="ValueError: no")],
                          [[AuditEvent("agent_finished", "a", {"status": "succeeded"})],
                           [AuditEvent("agent_failed", "b", {"status": "failed",
                                                             "message": "ValueError: no"})]])
    timeline = timeline_from_store(store, "k")
    assert timeline.status == "running"
    assert [(lane.agent, lane.status, lane.start, lane.end, lane.message)
            for lane in timeline.lanes] == [("a", "succeeded", None, None, ""),
                                            ("b", "failed", None, None, "ValueError: no")]
    assert timeline.elapsed >= 0
    store.close()


class NoAuditStore(cp.Store):
    """A store that keeps outcomes and no audit log."""

    def __init__(self) -> None:
        self.kept: dict[str, dict[str, Any]] = {}

    def begin_run(self, run_key: str, graph: str, input: Any) -> None:
        self.kept[run_key] = {"graph": graph, "input": input, "status": "running",
                              "outcomes": {}, "created": time.time()}

    def save_outcomes(self, run_key, outcomes):
        self.kept[run_key]["outcomes"].update((o.agent, o) for o in outcomes)
        self.kept[run_key]["updated"] = time.time()
        return [None] * len(outcomes)

    def set_status(self, run_key: str, status: str) -> None:
        self.kept[run_key]["status"] = status

    def load_run(self, run_key: str) -> cp.StoredRun:
        run = self.kept[run_key]
        return cp.StoredRun(run_key, run["graph"], run["status"], run["input"],
                            dict(run["outcomes"]), run["created"], run["updated"])

    def runs(self, status=None, *, graph=None):
        return []


def test_a_store_without_an_audit_log_gives_untimed_lanes():
    store = NoAuditStore()
    app = cp.Graph().add("a", lambda x: x).add("b", lambda x: x, after="a").compile(store=store)
    record = app.run(1)
    timeline = timeline_from_store(store, record.run_key)
    assert timeline.status == "succeeded"
    assert {(lane.agent, lane.status, lane.start) for lane in timeline.lanes} == {
        ("a", "succeeded", None), ("b", "succeeded", None)}
    assert timeline.elapsed >= 0
    assert critical_path(timeline).agents == ()


def test_errors(stores: Stores) -> None:
    store = stores.open()
    with pytest.raises(cp.StoreError, match="no run 'missing'"):
        timeline_from_store(store, "missing")
    with pytest.raises(TypeError, match="timeline_from_store needs a counterpoint Store"):
        timeline_from_store(stores.location(), "k")  # type: ignore[arg-type]
    store.close()


def test_lanes_line_up_with_elapsed_however_long_the_start_entry_took(
        stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run_started entry is written before the engine's clock starts; a slow write
    (a loaded disk) must not shift the lanes past the run's end."""
    store = stores.open()
    record_start = store.record_start

    def slow_record_start(*args: Any, **kwargs: Any) -> Any:
        result = record_start(*args, **kwargs)
        time.sleep(0.2)
        return result

    monkeypatch.setattr(store, "record_start", slow_record_start)
    app = durable_app(store)
    record = app.run("x")
    timeline = timeline_from_store(store, record.run_key, edges=edges_of(app))
    assert max(lane.end for lane in timeline.lanes if lane.end is not None) \
        <= timeline.elapsed + 1e-6
    assert timeline.lane("a").start < 0.2
    assert critical_path(timeline).agents[-1] == "w"
    store.close()
