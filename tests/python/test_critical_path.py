"""critical_path(): the chain of agents that ended the run, and its elapsed time by cause
(agent work, queueing on limits, retry backoff, review waits, engine overhead), on
hand-made timelines (exact values) and on real runs of sleeping agents."""

from __future__ import annotations

import pickle

import pytest
from timeline_runs import (
    BRANCHES,
    SLEEPS,
    attempt,
    edges_of,
    fan_out_join,
    lane,
    nested_run,
    run_timeline,
    timeline,
)

from counterpoint._critical_path import CAUSES, CriticalPath, PathSegment, critical_path
from counterpoint._timeline import Timeline


def _covers(path: CriticalPath) -> None:
    """The segments cover [0, elapsed] in order, without gaps or overlaps, and the
    causes add up to the elapsed time."""
    cursor = 0.0
    for segment in path.segments:
        assert segment.start == pytest.approx(cursor, abs=1e-12)
        assert segment.end > segment.start
        assert segment.cause in CAUSES
        cursor = segment.end
    assert cursor == pytest.approx(path.elapsed, abs=1e-12)
    assert sum(path.by_cause.values()) == pytest.approx(path.elapsed, abs=1e-9)
    assert list(path.by_cause) == list(CAUSES)


def _plain(path: CriticalPath) -> list[tuple[str | None, str, float, float]]:
    return [(s.agent, s.cause, round(s.start, 9), round(s.end, 9)) for s in path.segments]


def _with_waits(known_edges: bool = True) -> Timeline:
    """a, then b (queued on a limit, retried, fell back, reviewed) beside a short c,
    then d; e ends just after a and, without edges, looks like b's predecessor."""
    def after(*names: str) -> tuple[str, ...]:
        return names if known_edges else ()

    return timeline(
        10.0,
        lane("e", 0.0, 2.1, attempt(0.0, 2.1)),
        lane("a", 0.5, 2.0, attempt(0.5, 2.0)),
        lane("b", 2.2, 7.0,
             ("queued", 2.2, 3.0, 0, "", "llm"),
             attempt(3.0, 4.0, 1, "failed", "ValueError: x"),
             ("backoff", 4.0, 4.5, 1, "", "ValueError: x"),
             attempt(4.5, 5.5, 2, "timed_out", "timed out after 1s"),
             ("fallback", 5.5, 6.0, 0, "succeeded"),
             ("review", 6.0, 6.8, 0, "", "confidence 0.4 < 0.5"),
             after=after("a")),
        lane("c", 2.2, 3.0, attempt(2.2, 3.0), after=after("a")),
        lane("d", 7.3, 9.0, attempt(7.3, 9.0), after=after("b", "c")),
    )


def test_each_cause_is_attributed_along_the_path():
    path = critical_path(_with_waits())
    _covers(path)
    assert path.agents == ("a", "b", "d")
    assert _plain(path) == [
        (None, "overhead", 0.0, 0.5),
        ("a", "agent", 0.5, 2.0),
        (None, "overhead", 2.0, 2.2),
        ("b", "queued", 2.2, 3.0),
        ("b", "agent", 3.0, 4.0),
        ("b", "backoff", 4.0, 4.5),
        ("b", "agent", 4.5, 6.0),     # the last attempt, then the fallback
        ("b", "review", 6.0, 6.8),
        ("b", "overhead", 6.8, 7.0),
        (None, "overhead", 7.0, 7.3),
        ("d", "agent", 7.3, 9.0),
        (None, "overhead", 9.0, 10.0),
    ]
    assert path.by_cause == pytest.approx(
        {"agent": 5.7, "queued": 0.8, "backoff": 0.5, "review": 0.8, "overhead": 2.2})
    # Agent work: e 2.1, a 1.5, b 2.5 (two attempts and the fallback), c 0.8, d 1.7.
    assert path.speedup == pytest.approx(8.6 / 10.0)
    assert path.share("queued") == pytest.approx(0.08)


def test_known_edges_choose_the_predecessor_over_an_agent_that_merely_ended_later():
    assert critical_path(_with_waits(known_edges=True)).agents == ("a", "b", "d")


def test_without_edges_the_last_agent_to_end_before_a_start_is_its_predecessor():
    path = critical_path(_with_waits(known_edges=False))
    _covers(path)
    assert path.agents == ("e", "b", "d")
    assert _plain(path)[:3] == [("e", "agent", 0.0, 2.1), (None, "overhead", 2.1, 2.2),
                                ("b", "queued", 2.2, 3.0)]


def test_a_nested_graph_is_expanded_and_its_uncovered_time_is_overhead():
    nested = timeline(
        6.5,
        lane("a", 0.0, 1.0, attempt(0.0, 1.0)),
        lane("n", 1.2, 6.0, ("queued", 1.2, 2.0, 0, "", "slots"), attempt(2.0, 6.0),
             after=["a"]),
        lane("n/x", 2.1, 4.0, attempt(2.1, 4.0)),
        lane("n/z", 2.1, 3.0, attempt(2.1, 3.0)),
        lane("n/y", 4.2, 5.5, attempt(4.2, 5.5), after=["n/x"]),
    )
    path = critical_path(nested)
    _covers(path)
    assert path.agents == ("a", "n", "n/x", "n/y")
    assert _plain(path) == [
        ("a", "agent", 0.0, 1.0),
        (None, "overhead", 1.0, 1.2),
        ("n", "queued", 1.2, 2.0),       # the nested graph's own wait for a limit
        ("n", "overhead", 2.0, 2.1),
        ("n/x", "agent", 2.1, 4.0),
        ("n", "overhead", 4.0, 4.2),
        ("n/y", "agent", 4.2, 5.5),
        ("n", "overhead", 5.5, 6.0),
        (None, "overhead", 6.0, 6.5),
    ]
    assert path.by_cause == pytest.approx(
        {"agent": 4.2, "queued": 0.8, "backoff": 0.0, "review": 0.0, "overhead": 1.5})
    # Only agents that run no nested graph count as work: a, n/x, n/z, n/y.
    assert path.speedup == pytest.approx(5.1 / 6.5)


def test_a_predecessor_that_ended_after_the_start_fed_nothing():
    # join="any": w started when p ended; q ended later and is not on the path.
    path = critical_path(timeline(
        4.0,
        lane("p", 0.0, 1.0, attempt(0.0, 1.0)),
        lane("q", 0.0, 3.0, attempt(0.0, 3.0)),
        lane("w", 1.1, 4.0, attempt(1.1, 4.0), after=["p", "q"]),
    ))
    _covers(path)
    assert path.agents == ("p", "w")


def test_a_running_agent_ends_the_path_at_the_timeline_end():
    path = critical_path(timeline(
        5.0,
        lane("done", 0.0, 1.0, attempt(0.0, 1.0)),
        lane("r", 1.0, None, attempt(1.0, 5.0, 1, "running"), status="running",
             after=["done"]),
        status="running",
    ))
    _covers(path)
    assert path.agents == ("done", "r")
    assert path.by_cause["agent"] == pytest.approx(5.0)


def test_times_past_the_elapsed_time_are_clipped():
    path = critical_path(timeline(2.0, lane("a", 0.1, 2.0000001, attempt(0.1, 2.0000001))))
    _covers(path)
    assert path.segments[-1].end == 2.0


def test_skipped_restored_and_spanless_agents():
    path = critical_path(timeline(
        3.0,
        lane("old", 0.0, 0.0, restored=True),
        # No recorded stretches: one attempt over its whole time.
        lane("plain", 0.0, 2.0, after=["old"]),
        lane("skipped", None, None, status="skipped", after=["plain"],
             message="a predecessor failed"),
    ))
    _covers(path)
    # The restored agent is on the path and takes none of its time.
    assert path.agents == ("old", "plain")
    assert path.by_cause["agent"] == pytest.approx(2.0)
    assert path.speedup == pytest.approx(2.0 / 3.0)


def test_an_empty_run():
    path = critical_path(timeline(1.5))
    assert path.agents == ()
    assert _plain(path) == [(None, "overhead", 0.0, 1.5)]
    assert path.speedup == 0.0
    instant = critical_path(timeline(0.0))
    assert instant.segments == ()
    assert instant.by_cause == dict.fromkeys(CAUSES, 0.0)
    assert instant.share("agent") == 0.0


def test_text_html_and_errors():
    path = critical_path(_with_waits())
    text = str(path)
    assert text.splitlines()[0] == "critical path, 10.000 s: a -> b -> d"
    assert "backoff       0.500 s    5.0 %" in text
    assert text.endswith("parallel speed-up 0.86x")
    page = path._repr_html_()
    assert "<table>" in page and "a \u2192 b \u2192 d" in page
    assert "<td>overhead</td><td style='text-align:right'>2.200</td>" in page
    escaped = critical_path(timeline(1.0, lane("<x&y>", 0.0, 1.0)))._repr_html_()
    assert "&lt;x&amp;y&gt;" in escaped and "<x&y>" not in escaped
    with pytest.raises(KeyError, match="no cause 'waiting'; the causes are agent"):
        path.share("waiting")
    with pytest.raises(TypeError, match="critical_path needs a Timeline"):
        critical_path({"lanes": []})  # type: ignore[arg-type]


def test_critical_path_pickles():
    path = critical_path(_with_waits())
    assert pickle.loads(pickle.dumps(path)) == path
    assert isinstance(path.segments[0], PathSegment)


@pytest.mark.parametrize("with_edges", [True, False], ids=["edges", "no-edges"])
def test_a_real_fan_out_and_join(with_edges):
    app = fan_out_join()
    run = run_timeline(app, "x", edges_of(app) if with_edges else None)
    path = critical_path(run)
    _covers(path)
    assert sum(path.by_cause.values()) == pytest.approx(run.elapsed, rel=0.05)
    # The branch on the path is the one that ended last, whichever that was.
    branches = [run.lane(name) for name in BRANCHES]
    last = max(branches, key=lambda branch: branch.end or 0.0).agent
    assert path.agents == ("a", last, "join")
    # Sleeps are lower bounds of the agents' times.
    assert path.by_cause["agent"] >= SLEEPS["a"] + SLEEPS[last] + SLEEPS["join"]
    assert path.by_cause["queued"] == path.by_cause["backoff"] == path.by_cause["review"] == 0
    assert path.speedup * run.elapsed >= sum(SLEEPS.values())
    work = sum(span.duration for span in run.spans if span.kind == "attempt")
    assert path.speedup == pytest.approx(work / run.elapsed)


def test_a_real_run_with_a_nested_pattern():
    app = nested_run()
    run = run_timeline(app, "x", edges_of(app))
    path = critical_path(run)
    _covers(path)
    assert path.agents[0] == "a" and path.agents[-1] == "w"
    # The pattern's slow branch is on the path, inside its parent; the quick one is not.
    assert path.agents.index("review") < path.agents.index("review/sec")
    assert "review/style" not in path.agents and "quick" not in path.agents
    inside = [s for s in path.segments if s.agent is not None and s.agent.startswith("review")]
    assert inside[0].start == pytest.approx(run.lane("review").start)
    assert inside[-1].end == pytest.approx(run.lane("review").end)
