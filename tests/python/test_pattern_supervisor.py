"""cp.supervisor: planner -> DAG of workers (maximal parallelism) -> synthesizer."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import counterpoint as cp


def echo_worker(brief):
    deps = ",".join(f"{k}={v}" for k, v in sorted(brief["deps"].items()))
    return f"{brief['task']}({deps})"


def passthrough(state):
    return state


class Spans:
    def __init__(self):
        self.lock = threading.Lock()
        self.spans = {}
        self.briefs = {}

    def worker(self, seconds_by_id):
        def work(brief):
            start = time.monotonic()
            time.sleep(seconds_by_id.get(brief["id"], 0.0))
            with self.lock:
                self.spans[brief["id"]] = (start, time.monotonic())
                self.briefs[brief["id"]] = brief
            return f"out:{brief['id']}"

        return work


def test_plan_runs_as_a_dag_with_maximal_parallelism():
    spans = Spans()

    def planner(task):
        return [
            {"id": "a", "worker": "w", "task": "A"},
            {"id": "b", "worker": "w", "task": "B"},
            {"id": "c", "worker": "w", "task": "C", "depends_on": ["a", "b"]},
            {"id": "d", "worker": "w", "task": "D"},
        ]

    app = cp.supervisor(planner, workers={"w": spans.worker({"a": 0.3, "b": 0.3, "c": 0.1,
                                                             "d": 0.3})},
                        synthesizer=lambda s: s["results"])
    started = time.monotonic()
    results = app.invoke("T")
    elapsed = time.monotonic() - started
    assert results == {k: f"out:{k}" for k in "abcd"}
    s = spans.spans
    # independent subtasks overlap
    first_end = min(s[k][1] for k in "abd")
    assert max(s[k][0] for k in "abd") < first_end, s
    # the dependent one waits for its dependencies only
    assert s["c"][0] >= max(s["a"][1], s["b"][1]), s
    assert elapsed < 0.75, elapsed  # serial: 1.0 s; DAG: ~0.4 s


def test_no_barrier_between_independent_chains():
    """a -> a2 and slow b: a2 starts as soon as a ends, long before b ends."""
    spans = Spans()

    def planner(task):
        return [
            {"id": "a", "task": 1},
            {"id": "a2", "task": 2, "depends_on": "a"},
            {"id": "b", "task": 3},
        ]

    app = cp.supervisor(planner, workers={"only": spans.worker({"a": 0.02, "a2": 0.02,
                                                                "b": 0.4})},
                        synthesizer=lambda s: sorted(s["results"]))
    assert app.invoke(None) == ["a", "a2", "b"]
    s = spans.spans
    assert s["a2"][0] >= s["a"][1]
    assert s["a2"][0] < s["b"][1] - 0.2, s


def test_workers_get_a_clean_context():
    spans = Spans()

    def planner(task):
        return [
            {"id": "research", "worker": "w", "task": "find facts", "secret": "planner-only"},
            {"id": "outline", "worker": "w", "task": "outline"},
            {"id": "draft", "worker": "w", "task": "write", "depends_on": ["research"]},
            {"id": "final", "worker": "w", "task": "polish",
             "depends_on": ["draft", "outline"]},
        ]

    app = cp.supervisor(planner, workers={"w": spans.worker({})},
                        synthesizer=lambda s: "done")
    assert app.invoke({"user": "the whole original request"}) == "done"
    briefs = spans.briefs
    for brief in briefs.values():
        assert set(brief) == {"id", "task", "deps"}
    assert briefs["research"] == {"id": "research", "task": "find facts", "deps": {}}
    assert briefs["outline"]["deps"] == {}
    assert briefs["draft"]["deps"] == {"research": "out:research"}
    assert briefs["final"]["deps"] == {"draft": "out:draft", "outline": "out:outline"}


def test_synthesizer_gets_task_plan_and_results():
    seen = []

    def planner(task):
        return [{"id": "x", "task": task + "-x"}, {"id": "y", "task": "y", "depends_on": ["x"]}]

    def synthesizer(state):
        seen.append(state)
        return state["results"]["y"]

    app = cp.supervisor(planner, workers={"w": echo_worker}, synthesizer=synthesizer)
    assert app.invoke("T") == "y(x=T-x())"
    (state,) = seen
    assert set(state) == {"task", "plan", "results"}
    assert state["task"] == "T"
    assert state["plan"] == [cp.Subtask("x", "T-x"), cp.Subtask("y", "y", None, ("x",))]
    assert all(isinstance(s, cp.Subtask) for s in state["plan"])
    assert state["results"] == {"x": "T-x()", "y": "y(x=T-x())"}


def test_subtasks_go_to_the_named_workers():
    calls = []
    lock = threading.Lock()

    def make(name):
        def work(brief):
            with lock:
                calls.append((name, brief["id"]))
            return name

        return work

    def planner(task):
        return [
            cp.Subtask("s1", "search the web", worker="search"),
            cp.Subtask("s2", "write code", worker="code"),
            cp.Subtask("s3", "search again", worker="search", depends_on=("s2",)),
        ]

    app = cp.supervisor(planner, workers={"search": make("search"), "code": make("code")},
                        synthesizer=lambda s: s["results"])
    assert app.invoke(None) == {"s1": "search", "s2": "code", "s3": "search"}
    assert sorted(calls) == [("code", "s2"), ("search", "s1"), ("search", "s3")]


@pytest.mark.parametrize(
    "plan",
    [
        {"subtasks": [{"id": "a", "task": 1}, {"id": "b", "task": 2, "after": "a"}]},
        [{"name": "a", "input": 1}, {"name": "b", "description": 2, "depends_on": ("a",)}],
        cp.Result([{"id": "a", "task": 1}, {"id": "b", "task": 2, "depends_on": ["a"]}],
                  confidence=0.8),
        (cp.Subtask("a", 1), cp.Subtask("b", 2, depends_on=("a",))),
    ],
    ids=["subtasks-key-and-after", "aliases", "result", "subtask-objects"],
)
def test_plan_forms(plan):
    app = cp.supervisor(lambda t: plan, workers={"w": echo_worker},
                        synthesizer=lambda s: s["results"])
    assert app.invoke(None) == {"a": "1()", "b": "2(a=1())"}


def test_subtasks_without_ids_are_numbered():
    app = cp.supervisor(lambda t: [{"task": "first"}, {"task": "second", "depends_on": ["t1"]}],
                        workers={"w": echo_worker}, synthesizer=lambda s: s["results"])
    assert app.invoke(None) == {"t1": "first()", "t2": "second(t1=first())"}


def test_an_empty_plan_reaches_the_synthesizer_with_no_results():
    calls = []
    app = cp.supervisor(lambda t: [], workers={"w": lambda b: calls.append(b)},
                        synthesizer=lambda s: (s["plan"], s["results"]))
    assert app.invoke("T") == ([], {})
    assert calls == []


def test_planner_sees_the_task_and_stream_shows_worker_names():
    seen = []

    def planner(task):
        seen.append(task)
        return [{"id": "a", "task": 1}, {"id": "b", "task": 2, "depends_on": ["a"]}]

    app = cp.supervisor(planner, workers={"w": echo_worker}, synthesizer=lambda s: "ok")
    events = list(app.stream("the task", stream_mode="events"))
    assert seen == ["the task"]
    started = [e.agent for e in events if e.kind == "start"]
    for name in ("planner", "dispatch", "dispatch/a", "dispatch/b", "synthesizer"):
        assert name in started
    order = [(e.kind, e.agent) for e in events]
    assert order.index(("finish", "dispatch/a")) < order.index(("start", "dispatch/b"))
    assert events[-1].kind == "end" and events[-1].output == "ok"


# -- invalid plans ----------------------------------------------------------------------


INVALID_PLANS = [
    pytest.param(
        [{"id": "a", "worker": "w", "task": 1}, {"id": "b", "worker": "w", "depends_on": ["zz"]}],
        "b", "'zz'", id="unknown-dependency",
    ),
    pytest.param(
        # With a single worker subtasks may omit "worker"; the dependency is still checked.
        [{"id": "a", "task": 1}, {"id": "b", "depends_on": ["zz"]}],
        "b", "'zz'", id="unknown-dependency-single-worker",
    ),
    pytest.param(
        [{"id": "a", "worker": "w", "depends_on": ["b"]},
         {"id": "b", "worker": "w", "depends_on": ["a"]}],
        {"a", "b"}, "cycle", id="cycle",
    ),
    pytest.param(
        [{"id": "a", "worker": "w", "depends_on": ["a"]}],
        "a", "cycle", id="self-dependency",
    ),
    pytest.param(
        [{"id": "a", "worker": "w"}, {"id": "b", "worker": "nobody"}],
        "b", "'nobody'", id="unknown-worker",
    ),
    pytest.param(
        [{"id": "a", "worker": "w"}, {"id": "a", "worker": "w"}],
        "a", "more than once", id="duplicate-id",
    ),
    pytest.param(
        [{"id": "collect", "worker": "w"}],
        "collect", "reserved", id="reserved-id",
    ),
]


def _assert_plan_error(info, subtask, text):
    error = info.value
    assert error.agent == "dispatch"
    cause = error.__cause__
    assert isinstance(cause, cp.PlanError), repr(cause)
    assert isinstance(cause, cp.GraphError)
    if isinstance(subtask, set):
        assert cause.subtask in subtask, cause.subtask
    else:
        assert cause.subtask == subtask, cause.subtask
    assert text in str(cause)
    assert text in str(error)
    # The plan's own vocabulary: no internal node names (the "<id>:brief" nodes).
    assert ":brief" not in str(cause), str(cause)


@pytest.mark.parametrize(("plan", "subtask", "text"), INVALID_PLANS)
def test_invalid_plans_fail_with_a_plan_error_naming_the_subtask(plan, subtask, text):
    calls = []
    workers = {"w": lambda b: calls.append(b)}
    app = cp.supervisor(lambda t: plan, workers=workers,
                        synthesizer=lambda s: calls.append("synth"))
    with pytest.raises(cp.AgentError) as info:
        app.invoke("T")
    _assert_plan_error(info, subtask, text)
    assert calls == []  # no worker and no synthesizer ran


@pytest.mark.parametrize(("plan", "subtask", "text"), INVALID_PLANS)
def test_invalid_plans_show_an_error_event_in_the_stream(plan, subtask, text):
    app = cp.supervisor(lambda t: plan, workers={"w": lambda b: b}, synthesizer=passthrough)
    events = []
    with pytest.raises(cp.AgentError) as info:
        for event in app.stream("T", stream_mode="events"):
            events.append(event)
    _assert_plan_error(info, subtask, text)
    errors = [e for e in events if e.kind == "error"]
    assert [e.agent for e in errors] == ["dispatch"]
    assert isinstance(errors[0].error, cp.PlanError)
    assert text in errors[0].message
    assert all(e.kind != "end" for e in events)


def test_a_long_chain_listed_dependents_first_is_a_valid_plan():
    """Plan validation must not depend on Python's recursion limit: a chain of 1200
    subtasks listed from the last to the first is a valid DAG."""
    count = 1200
    plan = [{"id": f"t{i}", "task": i, "depends_on": [f"t{i - 1}"] if i else []}
            for i in reversed(range(count))]
    app = cp.supervisor(lambda t: plan, workers={"w": lambda brief: brief["task"]},
                        synthesizer=lambda s: (len(s["results"]), s["results"]["t1199"]))
    assert app.invoke(None) == (count, count - 1)


def test_a_dependency_listed_twice_runs_once_or_is_a_plan_error_naming_the_subtask():
    plan = [{"id": "a", "task": 1}, {"id": "b", "task": 2, "depends_on": ["a", "a"]}]
    app = cp.supervisor(lambda t: plan, workers={"w": echo_worker},
                        synthesizer=lambda s: s["results"])
    try:
        assert app.invoke(None) == {"a": "1()", "b": "2(a=1())"}
    except cp.AgentError as error:
        assert isinstance(error.__cause__, cp.PlanError)
        assert error.__cause__.subtask == "b"


def test_missing_worker_with_several_workers_is_a_plan_error():
    app = cp.supervisor(lambda t: [{"id": "a", "task": 1}],
                        workers={"x": lambda b: b, "y": lambda b: b}, synthesizer=passthrough)
    with pytest.raises(cp.AgentError) as info:
        app.invoke(None)
    assert isinstance(info.value.__cause__, cp.PlanError)
    assert info.value.__cause__.subtask == "a"


@pytest.mark.parametrize("plan", ["do everything", 42, {"no": "subtasks"}, None])
def test_a_plan_that_is_not_a_list_is_a_plan_error(plan):
    app = cp.supervisor(lambda t: plan, workers={"w": lambda b: b}, synthesizer=passthrough)
    with pytest.raises(cp.AgentError) as info:
        app.invoke(None)
    assert isinstance(info.value.__cause__, cp.PlanError)
    assert "list of subtasks" in str(info.value.__cause__)


@pytest.mark.parametrize("ident", ["", "a/b", 7])
def test_bad_subtask_ids_are_plan_errors(ident):
    app = cp.supervisor(lambda t: [{"id": ident, "task": 1}], workers={"w": lambda b: b},
                        synthesizer=passthrough)
    with pytest.raises(cp.AgentError) as info:
        app.invoke(None)
    assert isinstance(info.value.__cause__, cp.PlanError)


def test_a_failing_worker_fails_the_run_and_skips_the_synthesizer():
    calls = []

    def work(brief):
        if brief["id"] == "b":
            raise ValueError("worker b broke")
        return brief["id"]

    app = cp.supervisor(lambda t: [{"id": "a"}, {"id": "b"}], workers={"w": work},
                        synthesizer=lambda s: calls.append(s))
    with pytest.raises(cp.AgentError) as info:
        app.invoke(None)
    assert isinstance(info.value.__cause__, ValueError)
    assert "worker b broke" in str(info.value)
    assert calls == []


# -- nesting -----------------------------------------------------------------------------


def test_a_worker_may_itself_be_a_supervisor():
    inner_planner_inputs = []

    def inner_planner(brief):
        inner_planner_inputs.append(brief)
        return [{"id": "x", "task": brief["task"] + ".x"},
                {"id": "y", "task": brief["task"] + ".y", "depends_on": ["x"]}]

    team = cp.supervisor(inner_planner, workers={"dev": echo_worker},
                         synthesizer=lambda s: "+".join(s["results"][k] for k in sorted(s["results"])))

    def outer_planner(task):
        return [
            {"id": "research", "worker": "solo", "task": "r"},
            {"id": "build", "worker": "team", "task": "b", "depends_on": ["research"]},
        ]

    app = cp.supervisor(outer_planner, workers={"solo": echo_worker, "team": team},
                        synthesizer=lambda s: s["results"])
    assert app.invoke("T") == {"research": "r()", "build": "b.x()+b.y(x=b.x())"}
    assert inner_planner_inputs == [{"id": "build", "task": "b", "deps": {"research": "r()"}}]

    starts = [e.agent for e in app.stream("T", stream_mode="events") if e.kind == "start"]
    assert "dispatch/build/dispatch/x" in starts
    assert "dispatch/build/planner" in starts


def test_invalid_plan_of_a_nested_supervisor_fails_the_outer_run():
    team = cp.supervisor(lambda b: [{"id": "x", "depends_on": ["missing"], "worker": "dev"}],
                         workers={"dev": echo_worker}, synthesizer=passthrough)
    app = cp.supervisor(lambda t: [{"id": "build"}], workers={"team": team},
                        synthesizer=passthrough)
    with pytest.raises(cp.AgentError) as info:
        app.invoke(None)
    assert "missing" in str(info.value)
    assert isinstance(info.value.__cause__, cp.PlanError)
    assert info.value.__cause__.subtask == "x"


def test_async_planner_workers_and_synthesizer():
    async def planner(task):
        await asyncio.sleep(0.01)
        return [{"id": f"s{i}", "task": i} for i in range(4)]

    async def worker(brief):
        await asyncio.sleep(0.2)
        return brief["task"] * 10

    async def synthesizer(state):
        return sum(state["results"].values())

    app = cp.supervisor(planner, workers={"w": worker}, synthesizer=synthesizer)
    assert app.uses_event_loop
    started = time.monotonic()
    assert asyncio.run(app.ainvoke(None)) == 60
    assert time.monotonic() - started < 0.6  # four 0.2 s workers at once
    assert app.invoke(None) == 60


# -- build-time errors -------------------------------------------------------------------


@pytest.mark.parametrize("workers", [{}, None, [echo_worker], "w"])
def test_workers_must_be_a_non_empty_dict(workers):
    with pytest.raises(cp.GraphError, match="workers must be a non-empty dict"):
        cp.supervisor(lambda t: [], workers=workers, synthesizer=passthrough)


def test_supervisor_rejects_non_agents_naming_the_role():
    with pytest.raises(cp.GraphError, match="planner"):
        cp.supervisor("plan", workers={"w": echo_worker}, synthesizer=passthrough)
    with pytest.raises(cp.GraphError, match="synthesizer"):
        cp.supervisor(lambda t: [], workers={"w": echo_worker}, synthesizer=None)
    with pytest.raises(cp.GraphError, match="worker 'w'"):
        cp.supervisor(lambda t: [], workers={"w": 3}, synthesizer=passthrough)
    with pytest.raises(cp.GraphError, match="worker names"):
        cp.supervisor(lambda t: [], workers={"": echo_worker}, synthesizer=passthrough)


def test_plan_error_carries_the_subtask():
    error = cp.PlanError("bad plan", "t3")
    assert isinstance(error, cp.GraphError)
    assert error.subtask == "t3"
    assert error.node == "t3"
