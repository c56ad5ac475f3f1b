"""cp.loop: draft, evaluate, revise until the evaluator passes or max_iterations."""

from __future__ import annotations

import asyncio

import pytest

import counterpoint as cp


class Writer:
    def __init__(self):
        self.briefs = []

    def __call__(self, brief):
        self.briefs.append(dict(brief))
        return f"draft{brief['iteration']}"


def test_feedback_reaches_the_worker_on_the_next_iteration_and_it_stops_when_passed():
    writer = Writer()
    reviews = []

    def evaluator(review):
        reviews.append(dict(review))
        passed = review["iteration"] >= 3
        return cp.Verdict(passed, feedback=f"improve {review['draft']}", score=review["iteration"])

    result = cp.loop(writer, evaluator, max_iterations=5).invoke("write a poem")
    assert isinstance(result, cp.LoopResult)
    assert result.stopped == "passed"
    assert result.iterations == 3
    assert result.value == "draft3"
    assert writer.briefs == [
        {"task": "write a poem", "draft": None, "feedback": None, "iteration": 1},
        {"task": "write a poem", "draft": "draft1", "feedback": "improve draft1", "iteration": 2},
        {"task": "write a poem", "draft": "draft2", "feedback": "improve draft2", "iteration": 3},
    ]
    assert reviews == [
        {"task": "write a poem", "draft": "draft1", "iteration": 1},
        {"task": "write a poem", "draft": "draft2", "iteration": 2},
        {"task": "write a poem", "draft": "draft3", "iteration": 3},
    ]
    assert [draft for draft, _ in result.history] == ["draft1", "draft2", "draft3"]
    assert [v.passed for _, v in result.history] == [False, False, True]
    assert result.history[0][1] == cp.Verdict(False, "improve draft1", 1)


def test_passing_on_the_first_iteration():
    writer = Writer()
    result = cp.loop(writer, lambda r: True).invoke("t")
    assert (result.value, result.iterations, result.stopped) == ("draft1", 1, "passed")
    assert len(writer.briefs) == 1


@pytest.mark.parametrize("limit", [1, 2, 4])
def test_max_iterations_is_always_enforced(limit):
    writer = Writer()
    evaluations = []

    def never_satisfied(review):
        evaluations.append(review["iteration"])
        return {"passed": False, "feedback": "more"}

    result = cp.loop(writer, never_satisfied, max_iterations=limit).invoke("t")
    assert result.stopped == "max_iterations"
    assert result.iterations == limit
    assert result.value == f"draft{limit}"
    assert len(writer.briefs) == limit
    assert evaluations == list(range(1, limit + 1))
    assert len(result.history) == limit


def test_passing_on_the_last_allowed_iteration_counts_as_passed():
    result = cp.loop(Writer(), lambda r: r["iteration"] == 3, max_iterations=3).invoke("t")
    assert (result.iterations, result.stopped) == (3, "passed")


@pytest.mark.parametrize(
    ("make_verdict", "feedback"),
    [
        (lambda passed: passed, None),
        (lambda passed: {"passed": passed, "feedback": "fb"}, "fb"),
        (lambda passed: {"pass": passed, "feedback": "fb"}, "fb"),
        (lambda passed: {"approved": passed, "feedback": "fb"}, "fb"),
        (lambda passed: {"ok": passed, "feedback": "fb"}, "fb"),
        (lambda passed: cp.Verdict(passed, "fb"), "fb"),
        (lambda passed: cp.Result(cp.Verdict(passed, "fb"), confidence=0.9), "fb"),
    ],
    ids=["bool", "passed", "pass", "approved", "ok", "verdict", "result-of-verdict"],
)
def test_verdict_forms(make_verdict, feedback):
    writer = Writer()
    result = cp.loop(writer, lambda r: make_verdict(r["iteration"] == 2)).invoke("t")
    assert (result.iterations, result.stopped) == (2, "passed")
    assert writer.briefs[1]["feedback"] == feedback
    assert all(isinstance(v, cp.Verdict) for _, v in result.history)


@pytest.mark.parametrize("bad", ["yes", None, 1, 0.5, {"score": 1.0}, ["passed"]])
def test_a_bad_verdict_type_is_an_agent_error(bad):
    writer = Writer()
    app = cp.loop(writer, lambda r: bad)
    with pytest.raises(cp.AgentError, match="evaluator must return") as info:
        app.invoke("t")
    assert isinstance(info.value.__cause__, TypeError)
    assert len(writer.briefs) == 1  # no second iteration


def test_a_failing_worker_stops_the_loop():
    evaluations = []

    def worker(brief):
        if brief["iteration"] == 2:
            raise RuntimeError("writer's block")
        return "draft"

    app = cp.loop(worker, lambda r: evaluations.append(r) or False, max_iterations=5)
    with pytest.raises(cp.AgentError) as info:
        app.invoke("t")
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "writer's block" in str(info.value)
    assert len(evaluations) == 1


def test_a_failing_evaluator_stops_the_loop():
    def evaluator(review):
        raise ValueError("cannot judge")

    with pytest.raises(cp.AgentError) as info:
        cp.loop(Writer(), evaluator).invoke("t")
    assert isinstance(info.value.__cause__, ValueError)


def test_stream_shows_each_iteration():
    app = cp.loop(Writer(), lambda r: r["iteration"] == 3, max_iterations=5)
    events = list(app.stream("t", stream_mode="events"))
    worker_starts = [e for e in events if e.kind == "start" and e.agent == "loop/worker"]
    evaluator_finishes = [e for e in events if e.kind == "finish" and e.agent == "loop/evaluator"]
    assert len(worker_starts) == 3
    assert [e.output for e in evaluator_finishes] == [False, False, True]
    finishes = [e.output for e in events if e.kind == "finish" and e.agent == "loop/worker"]
    assert finishes == ["draft1", "draft2", "draft3"]
    assert events[-1].kind == "end"
    assert events[-1].output.stopped == "passed"


def test_async_worker_and_evaluator():
    async def worker(brief):
        await asyncio.sleep(0.01)
        return (brief["draft"] or "") + "x"

    async def evaluator(review):
        await asyncio.sleep(0.01)
        return cp.Verdict(len(review["draft"]) >= 3, feedback="longer")

    app = cp.loop(worker, evaluator, max_iterations=10)
    assert app.uses_event_loop
    result = asyncio.run(app.ainvoke("t"))
    assert (result.value, result.iterations, result.stopped) == ("xxx", 3, "passed")
    assert app.invoke("t").value == "xxx"


def test_worker_and_evaluator_may_be_patterns():
    worker = cp.sequential(lambda b: (b["draft"] or 0) + 1, lambda n: n * 1)
    evaluator = cp.parallel(big=lambda r: r["draft"] >= 2, small=lambda r: r["draft"] >= 1,
                            merge=lambda votes: all(votes.values()))
    result = cp.loop(worker, evaluator, max_iterations=5).invoke("t")
    assert (result.value, result.iterations, result.stopped) == (2, 2, "passed")


def test_loop_runs_can_share_the_compiled_graph():
    app = cp.loop(lambda b: b["task"] * b["iteration"], lambda r: r["iteration"] == r["task"],
                  max_iterations=10)
    results = app.batch([1, 2, 3, 4])
    assert [(r.value, r.iterations) for r in results] == [(1, 1), (4, 2), (9, 3), (16, 4)]


# -- build-time errors -------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, -1, True, 2.0, "3", None])
def test_max_iterations_must_be_a_positive_int(limit):
    with pytest.raises(cp.GraphError, match="max_iterations must be a positive int"):
        cp.loop(Writer(), lambda r: True, max_iterations=limit)


def test_loop_rejects_non_agents():
    with pytest.raises(cp.GraphError, match="worker"):
        cp.loop("writer", lambda r: True)
    with pytest.raises(cp.GraphError, match="evaluator"):
        cp.loop(Writer(), None)
