"""A run's timeline: the steps of every agent's policies (waits on limits, attempts,
backoffs, fallbacks, reviews) recorded by the engine, at every depth."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time

import pytest

import counterpoint as cp
from counterpoint._timeline import AgentLane, Span, Timeline


def _sleep(seconds: float):
    def agent(x):
        time.sleep(seconds)
        return x
    return agent


class FailsFirst:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, x):
        with self.lock:
            self.calls += 1
            n = self.calls
        if n <= self.failures:
            raise ValueError(f"failure {n}")
        return x


def _kinds(lane: AgentLane) -> list[str]:
    return [span.kind for span in lane.spans]


def test_an_agent_without_policies_has_one_attempt():
    r = cp.Graph().add("a", _sleep(0.01)).add("b", _sleep(0.0), after="a").compile().run(1)
    t = r.timeline_data()
    assert [lane.agent for lane in t.lanes] == ["a", "b"]
    a = t.lane("a")
    assert _kinds(a) == ["attempt"]
    assert a.spans[0].status == "succeeded" and a.spans[0].attempt == 1
    assert a.spans[0].duration >= 0.009
    assert t.lane("b").after == ("a",)
    assert t.lane("b").start >= a.end
    assert r.agents["a"].attempts == 1
    assert t.elapsed == r.elapsed and t.status == "succeeded"


def test_waiting_for_a_limit_is_its_own_span():
    limit = cp.Limit("timeline-llm", max_concurrent=1)
    app = (cp.Graph()
           .add("b", _sleep(0.03), limits=[limit])
           .add("c", _sleep(0.03), limits=[limit])
           .compile())
    t = app.run(1).timeline_data()
    queued = [lane for lane in t.lanes if "queued" in _kinds(lane)]
    assert len(queued) == 1, [(lane.agent, lane.spans) for lane in t.lanes]
    lane = queued[0]
    assert _kinds(lane) == ["queued", "attempt"]
    wait, attempt = lane.spans
    assert wait.detail == "timeline-llm"
    assert wait.duration >= 0.02  # the other agent held the one slot
    assert attempt.start == wait.end
    other = t.lane("c" if lane.agent == "b" else "b")
    assert _kinds(other) == ["attempt"]
    assert attempt.start >= other.end - 0.001


def test_retries_show_each_attempt_and_the_backoff_between():
    flaky = FailsFirst(2)
    app = cp.Graph().add("f", flaky, retry=cp.Retry(3, initial_backoff=0.02, jitter=0.0)).compile()
    r = app.run(1)
    assert r.ok
    lane = r.timeline_data().lane("f")
    assert _kinds(lane) == ["attempt", "backoff", "attempt", "backoff", "attempt"]
    a1, b1, a2, b2, a3 = lane.spans
    assert (a1.attempt, a2.attempt, a3.attempt) == (1, 2, 3)
    assert (a1.status, a2.status, a3.status) == ("failed", "failed", "succeeded")
    assert a1.detail == "ValueError: failure 1"
    assert (b1.attempt, b2.attempt) == (1, 2)
    assert b1.duration >= 0.018 and b2.duration >= 0.038  # 0.02 then 0.04, no jitter
    assert lane.attempts == 3 and r.agents["f"].attempts == 3
    retries = [e for e in r.events if e.kind == "retry"]
    assert [e.attempt for e in retries] == [1, 2]
    assert [round(e.delay, 3) for e in retries] == [0.02, 0.04]
    assert isinstance(retries[0].error, ValueError)


def test_a_timed_out_attempt_and_the_fallback():
    def hangs(x):
        time.sleep(0.3)
        return x

    app = cp.Graph().add("slow", hangs, timeout=0.05, fallback=lambda x: "cached").compile()
    r = app.run(1)
    assert r.output == "cached"
    lane = r.timeline_data().lane("slow")
    assert _kinds(lane) == ["attempt", "fallback"]
    attempt, fallback = lane.spans
    assert attempt.status == "timed_out" and attempt.detail.startswith("timed out after")
    assert fallback.status == "succeeded"
    assert lane.status == "succeeded"


def test_an_agent_that_fails_for_good():
    app = cp.Graph().add("f", FailsFirst(5), retry=cp.Retry(2, initial_backoff=0.0)).compile()
    r = app.run(1)
    assert r.status == "failed"
    lane = r.timeline_data().lane("f")
    assert _kinds(lane) == ["attempt", "backoff", "attempt"]
    assert lane.status == "failed" and lane.spans[-1].status == "failed"
    assert "failure 2" in lane.message


def test_waiting_for_an_in_process_reviewer():
    def reviewer(request):
        time.sleep(0.03)
        return cp.approve()

    app = (cp.Graph()
           .add("a", lambda x: cp.Result(x, confidence=0.2),
                review=cp.Review(below=0.8, reviewer=reviewer))
           .compile())
    lane = app.run(1).timeline_data().lane("a")
    assert _kinds(lane) == ["attempt", "review"]
    attempt, review = lane.spans
    assert attempt.status == "succeeded"
    assert review.detail == "confidence 0.2 < 0.8"
    assert review.duration >= 0.025
    assert lane.status == "succeeded"


def test_skipped_agents_have_a_lane_without_spans():
    app = (cp.Graph()
           .add("route", lambda x: cp.route(x, ["left"]))
           .add("left", lambda x: x, after="route")
           .add("right", lambda x: x, after="route")
           .compile())
    t = app.run(1).timeline_data()
    right = t.lane("right")
    assert right.status == "skipped" and right.spans == () and right.start is None
    assert right.end is not None and right.end >= t.lane("route").end  # when it was skipped
    assert right.message
    assert t.lanes[-1] is right  # never started: last


def test_nested_patterns_have_lanes_under_their_agent():
    inner = cp.parallel(p=_sleep(0.01), q=_sleep(0.01), merge=lambda d: d)
    app = cp.Graph().add("a", lambda x: x).add("n", inner, after="a").compile()
    t = app.run(1).timeline_data()
    assert {lane.agent for lane in t.children("n")} == {"n/p", "n/q", "n/merge"}
    assert t.lane("n/p").parent == "n"
    n = t.lane("n")
    for child in t.children("n"):
        assert n.start <= child.start and child.end <= n.end
    assert [lane.agent for lane in t.children(None)] == ["a", "n"]


def test_coroutine_agents_and_ainvoke_free_runs():
    async def slow(x):
        await asyncio.sleep(0.01)
        return x

    app = cp.Graph().add("s", slow, retry=2).compile()
    lane = app.run(1).timeline_data().lane("s")
    assert _kinds(lane) == ["attempt"] and lane.spans[0].status == "succeeded"


def test_streams_do_not_carry_the_timeline_steps():
    app = cp.Graph().add("f", FailsFirst(1), retry=cp.Retry(2, initial_backoff=0.0)).compile()
    kinds = [e.kind for e in app.stream(1, stream_mode="events")]
    assert kinds == ["start", "finish", "end"]


def test_a_started_run_keeps_its_timeline_until_recorded():
    app = cp.Graph().add("a", _sleep(0.01)).compile()
    run = app.start(1)
    record = run.record()
    assert [e.kind for e in record.events] == ["start", "finish"]
    assert run.record().events == record.events  # taken once, kept


def test_a_resumed_durable_run_marks_restored_agents(tmp_path):
    gate = threading.Event()

    def blocks(x):
        if not gate.is_set():
            raise RuntimeError("not yet")
        return x

    app = (cp.Graph().add("a", lambda x: x).add("b", blocks, after="a")
           .compile(store=tmp_path / "runs.db"))
    first = app.run(1)
    assert first.status == "failed" and first.run_key
    gate.set()
    again = app.start_resumed(first.run_key).record()
    t = again.timeline_data()
    assert t.lane("a").restored and t.lane("a").spans == () and t.lane("a").status == "succeeded"
    assert _kinds(t.lane("b")) == ["attempt"] and t.lane("b").status == "succeeded"
    assert again.agents["a"].attempts == 0 and again.agents["b"].attempts == 1


def test_timeline_types_pickle_and_lookup_errors():
    t = Timeline(run_id=1, status="succeeded", elapsed=1.0, lanes=(
        AgentLane("a", None, "succeeded", 0.0, 1.0, (Span("a", "attempt", 0.0, 1.0, 1, "succeeded"),)),
    ))
    again = pickle.loads(pickle.dumps(t))
    assert again == t and again.lane("a").spans[0].duration == 1.0
    with pytest.raises(KeyError, match="no agent 'b' in run 1; its agents are 'a'"):
        t.lane("b")


def _durable_app(path):
    inner = cp.parallel(p=_sleep(0.01), q=_sleep(0.01), merge=lambda d: d)
    limit = cp.Limit("timeline-stored", max_concurrent=1)
    fails = FailsFirst(1)

    def flaky(x):  # a plain function: the audit log records its retries
        return fails(x)

    return (cp.Graph()
            .add("a", flaky, retry=cp.Retry(2, initial_backoff=0.01))
            .add("b", _sleep(0.01), after="a", limits=[limit])
            .add("c", _sleep(0.01), after="a", limits=[limit])
            .add("n", inner, after=["b", "c"])
            .compile(store=path))


def test_a_stored_run_keeps_its_whole_timeline(tmp_path):
    path = tmp_path / "runs.db"
    r = _durable_app(path).run(1)
    assert r.ok
    # Another compile of the same graph on the same store (as another process would).
    again = _durable_app(path)
    stored = again.timeline(r.run_key).timeline
    assert stored == r.timeline_data()
    kinds = {span.kind for span in stored.spans}
    assert {"attempt", "backoff", "queued"} <= kinds
    assert {lane.agent for lane in stored.children("n")} == {"n/p", "n/q", "n/merge"}
    trace = again.trace(r.run_key, format="perfetto")
    assert {e["ph"] for e in trace["traceEvents"]} >= {"X", "M"}
    assert again.trace(r.run_key, format="json") == r.trace(format="json")


def test_a_stored_run_without_a_kept_timeline_is_rebuilt_from_its_audit_log(tmp_path):
    import sqlite3

    path = tmp_path / "runs.db"
    app = _durable_app(path)
    r = app.run(1)
    with sqlite3.connect(path) as db:  # as if its process had died before keeping it
        db.execute("DELETE FROM timelines")
    rebuilt = app.timeline(r.run_key).timeline
    assert [span.kind for span in rebuilt.lane("a").spans] == ["attempt", "backoff", "attempt"]
    assert rebuilt.status == "succeeded"


def test_stored_timeline_errors(tmp_path):
    plain = cp.Graph().add("a", lambda x: x).compile()
    with pytest.raises(cp.GraphError, match=r"compile\(store=\.\.\.\)"):
        plain.timeline("nope")
    app = _durable_app(tmp_path / "runs.db")
    with pytest.raises(cp.StoreError):
        app.timeline("no-such-run")
    r = app.run(1)
    with pytest.raises(ValueError, match="'json' or 'perfetto'"):
        app.trace(r.run_key, format="svg")
    with pytest.raises(ValueError, match="'json' or 'perfetto'"):
        r.trace(format="chrome")


def test_pruning_a_run_deletes_its_timeline(tmp_path):
    import sqlite3

    path = tmp_path / "runs.db"
    app = _durable_app(path)
    app.run(1)
    assert app._store.prune() == 1
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM timelines").fetchone() == (0,)


def test_timeline_json_round_trips():
    r = cp.Graph().add("f", FailsFirst(1), retry=cp.Retry(2, initial_backoff=0.0)).compile().run(1)
    t = r.timeline_data()
    assert Timeline.from_json(r.trace(format="json")) == t


def test_an_agent_called_again_has_one_lane_over_all_its_calls():
    rounds = {"n": 0}

    def worker(state):
        time.sleep(0.01)
        rounds["n"] += 1
        return state

    app = cp.Graph().add("refine", cp.loop(worker, lambda s: rounds["n"] >= 3,
                                           max_iterations=5)).compile()
    r = app.run(1)
    t = r.timeline_data()
    lane = next(lane for lane in t.lanes if lane.agent.endswith("/worker"))
    attempts = [span for span in lane.spans if span.kind == "attempt"]
    assert len(attempts) == 3 and all(span.attempt == 1 for span in attempts)
    assert lane.start == attempts[0].start and lane.end == attempts[-1].end
    assert lane.status == "succeeded"
    path = r.critical_path()
    assert path.by_cause["agent"] >= 0.025  # the three calls are work, not overhead


def test_agents_running_when_the_run_ends_are_cancelled():
    def slow(x):
        time.sleep(0.3)
        return x

    r = cp.Graph().add("slow", slow).compile().run(1, deadline=0.05)
    assert r.status == "timed_out"
    lane = r.timeline_data().lane("slow")
    assert lane.status == "cancelled" and lane.end == r.elapsed
    assert lane.spans[-1].status == "cancelled"


def test_an_agent_that_says_timed_out_is_not_an_engine_timeout():
    def says(x):
        raise TimeoutError("the service timed out after 30 s")

    r = cp.Graph().add("a", says).compile().run(1)
    lane = r.timeline_data().lane("a")
    assert lane.status == r.agents["a"].status == "failed"


def test_ray_batch_progress_moved_to_the_batch():
    with pytest.raises(cp.GraphError, match=r"progress=True"):
        cp.ray_batch(2, progress=True)
