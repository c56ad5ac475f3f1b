"""cp.parallel and cp.fan_out: fan-out / fan-in with merge policies.

Timing thresholds are generous: the CI machine has two noisy cores.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import counterpoint as cp


def sleeper(seconds, value, spans=None, name=None):
    def agent(x):
        start = time.monotonic()
        time.sleep(seconds)
        if spans is not None:
            spans[name] = (start, time.monotonic())
        return value

    return agent


def failing(seconds, message="boom"):
    def agent(x):
        time.sleep(seconds)
        raise ValueError(message)

    return agent


# -- no superstep barrier --------------------------------------------------------------


def test_no_superstep_barrier_in_a_hand_built_graph():
    """A2 depends only on fast A; it must start while slow sibling B is still running."""
    spans = {}

    def span(name, seconds):
        def agent(x):
            start = time.monotonic()
            time.sleep(seconds)
            spans[name] = (start, time.monotonic())
            return name

        return agent

    app = (
        cp.Graph()
        .add("src", lambda x: x)
        .add("A", span("A", 0.02), after="src")
        .add("B", span("B", 0.4), after="src")
        .add("A2", span("A2", 0.02), after="A")
        .add("join", lambda d: sorted(d.values()), after=["A2", "B"])
        .compile()
    )
    assert app.invoke(0) == ["A2", "B"]
    a_end = spans["A"][1]
    a2_start = spans["A2"][0]
    b_start, b_end = spans["B"]
    assert a2_start >= a_end
    assert a2_start < b_end - 0.2, spans  # well before B ended
    assert a2_start - b_start < 0.25, spans


def test_no_superstep_barrier_across_pattern_branches():
    """parallel(left=sequential(A, A2), right=B): A2 starts while B still runs."""
    spans = {}

    def span(name, seconds):
        def agent(x):
            start = time.monotonic()
            time.sleep(seconds)
            spans[name] = (start, time.monotonic())
            return name

        agent.__name__ = name
        return agent

    app = cp.parallel(left=cp.sequential(span("A", 0.02), span("A2", 0.02)),
                      right=span("B", 0.4))
    assert app.invoke(0) == {"left": "A2", "right": "B"}
    assert spans["A"][1] <= spans["A2"][0]
    assert spans["A2"][0] < spans["B"][1] - 0.2, spans
    # ...and A2 had long finished before B did
    assert spans["A2"][1] < spans["B"][1] - 0.2, spans

    # Also when the downstream of the fast branch is a separate agent in an outer graph.
    spans.clear()
    outer = (
        cp.Graph()
        .add("fast", cp.sequential(span("A", 0.02)))
        .add("after_fast", span("A2", 0.02), after="fast")
        .add("slow", cp.sequential(span("B", 0.4)))
        .compile()
    )
    outer.invoke(0)
    assert spans["A2"][0] < spans["B"][1] - 0.2, spans


# -- parallel: all -----------------------------------------------------------------------


def test_every_branch_gets_the_same_input_and_the_result_is_a_dict_by_name():
    seen = {}

    def make(name):
        def agent(x):
            seen[name] = x
            return f"{name}:{x}"

        return agent

    app = cp.parallel(security=make("security"), perf=make("perf"), style=make("style"))
    assert app.invoke("diff") == {
        "security": "security:diff",
        "perf": "perf:diff",
        "style": "style:diff",
    }
    assert seen == {"security": "diff", "perf": "diff", "style": "diff"}


def test_branches_given_as_dict_and_keywords_and_merge_all():
    app = cp.parallel({"a": lambda x: x + 1}, b=lambda x: x * 2, merge="all")
    assert app.invoke(5) == {"a": 6, "b": 10}


def test_a_single_branch_still_gives_a_dict():
    assert cp.parallel(only=lambda x: x + 1).invoke(1) == {"only": 2}


def test_branches_run_concurrently():
    app = cp.parallel({f"b{i}": sleeper(0.25, i) for i in range(4)})
    started = time.monotonic()
    assert app.invoke(None) == {f"b{i}": i for i in range(4)}
    assert time.monotonic() - started < 0.7  # serial would be 1.0 s


def test_async_branches_run_concurrently_under_ainvoke():
    def make(i):
        async def agent(x):
            await asyncio.sleep(0.25)
            return x + i

        return agent

    app = cp.parallel({f"b{i}": make(i) for i in range(4)})
    started = time.monotonic()
    assert asyncio.run(app.ainvoke(10)) == {f"b{i}": 10 + i for i in range(4)}
    assert time.monotonic() - started < 0.7


def test_merge_all_fails_the_run_when_a_branch_fails():
    app = cp.parallel(ok=lambda x: x, bad=failing(0.0, "branch broke"))
    with pytest.raises(cp.AgentError) as info:
        app.invoke(1)
    assert info.value.agent == "bad"
    assert isinstance(info.value.__cause__, ValueError)


# -- first success -------------------------------------------------------------------------


def test_first_success_ignores_a_faster_failure_and_does_not_wait_for_the_slow_branch():
    app = cp.parallel(
        fails=failing(0.05),
        fast=sleeper(0.15, "fast"),
        slow=sleeper(1.5, "slow"),
        merge="first",
    )
    started = time.monotonic()
    merged = app.invoke("q")
    elapsed = time.monotonic() - started
    assert isinstance(merged, cp.Merged)
    assert merged.value == "fast"
    assert merged.policy == "first"
    assert "fast" in merged.resolution
    assert merged.agreeing == ("fast",)
    assert elapsed < 0.9, elapsed  # the slow branch takes 1.5 s

    record = app.run("q")
    assert record.ok
    assert record.output.value == "fast"
    assert record.elapsed < 0.9
    assert record.agents["fails"].status == "failed"
    assert record.agents["fast"].status == "succeeded"
    # The run ended without the slow branch: it is still sleeping, or its result was
    # discarded -- never "succeeded" as part of the run.
    assert record.agents["slow"].status in ("running", "cancelled")


def test_first_success_cancels_the_slow_coroutine():
    state = {}

    async def fast(x):
        await asyncio.sleep(0.05)
        return "fast"

    async def slow(x):
        try:
            await asyncio.sleep(2.0)
            state["slow"] = "finished"
            return "slow"
        except asyncio.CancelledError:
            state["slow"] = "cancelled"
            raise

    app = cp.parallel(fast=fast, slow=slow, merge="first")

    async def main():
        started = time.monotonic()
        merged = await app.ainvoke(1)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.2)  # let the cancellation land
        return merged, elapsed

    merged, elapsed = asyncio.run(main())
    assert merged.value == "fast"
    assert elapsed < 1.0
    assert state == {"slow": "cancelled"}


def test_first_success_when_every_branch_fails_is_an_agent_error():
    app = cp.parallel(a=failing(0.0, "a broke"), b=failing(0.05, "b broke"), merge="first")
    with pytest.raises(cp.AgentError) as info:
        app.invoke(1)
    assert isinstance(info.value.__cause__, ValueError)


# -- majority --------------------------------------------------------------------------------


def test_majority_records_who_agreed_and_who_disagreed():
    app = cp.parallel(a=lambda x: "yes", b=lambda x: "no", c=lambda x: "yes", merge="majority")
    merged = app.invoke(None)
    assert merged.value == "yes"
    assert merged.policy == "majority"
    assert merged.agreeing == ("a", "c")
    assert merged.disagreeing == ("b",)
    assert merged.failed == {}
    assert merged.outputs == {"a": "yes", "b": "no", "c": "yes"}
    assert merged.tally == {"'yes'": 2.0, "'no'": 1.0}
    assert "majority" in merged.resolution and "2" in merged.resolution
    assert not merged.unanimous


def test_unanimous_majority():
    merged = cp.parallel(a=lambda x: 1, b=lambda x: 1, merge="majority").invoke(0)
    assert merged.unanimous
    assert merged.agreeing == ("a", "b")
    assert "tied" not in merged.resolution


@pytest.mark.parametrize("slow_first", [True, False])
def test_majority_tie_is_broken_by_declaration_order_not_by_completion(slow_first):
    """Stated rule: among tied outputs, the earliest-declared branch's output wins."""
    if slow_first:
        # The first-declared branch finishes last.
        app = cp.parallel(a=sleeper(0.2, "x"), b=lambda x: "y", merge="majority")
        winner, loser = "x", "y"
    else:
        app = cp.parallel(b=lambda x: "y", a=sleeper(0.2, "x"), merge="majority")
        winner, loser = "y", "x"
    merged = app.invoke(None)
    assert merged.value == winner
    assert "declaration order" in merged.resolution
    assert "tied" in merged.resolution and repr(loser) in merged.resolution
    assert list(merged.outputs) == (["a", "b"] if slow_first else ["b", "a"])


def test_majority_tolerates_and_records_failed_branches():
    app = cp.parallel(
        a=lambda x: "yes",
        broken=failing(0.05, "voter crashed"),
        c=lambda x: "yes",
        d=lambda x: "no",
        merge="majority",
    )
    merged = app.invoke(None)
    assert merged.value == "yes"
    assert set(merged.failed) == {"broken"}
    assert isinstance(merged.failed["broken"], ValueError)
    assert "voter crashed" in str(merged.failed["broken"])
    assert "broken" not in merged.outputs
    assert "broken" not in merged.agreeing + merged.disagreeing
    assert merged.disagreeing == ("d",)
    assert not merged.unanimous


def test_majority_when_every_branch_fails_is_an_agent_error():
    app = cp.parallel(a=failing(0.0), b=failing(0.0), merge="majority")
    with pytest.raises(cp.AgentError) as info:
        app.invoke(None)
    assert "every branch failed" in str(info.value)


def test_majority_compares_unhashable_outputs_by_value():
    app = cp.parallel(
        a=lambda x: {"k": [1, 2]},
        b=lambda x: {"k": [1, 2]},
        c=lambda x: {"k": [3]},
        merge="majority",
    )
    merged = app.invoke(None)
    assert merged.value == {"k": [1, 2]}
    assert merged.agreeing == ("a", "b")


def test_majority_unwraps_results():
    app = cp.parallel(
        a=lambda x: cp.Result("yes", confidence=0.1),
        b=lambda x: "yes",
        c=lambda x: cp.Result("no", confidence=0.9),
        merge="majority",
    )
    merged = app.invoke(None)
    assert merged.value == "yes"
    assert merged.outputs == {"a": "yes", "b": "yes", "c": "no"}


# -- quorum ----------------------------------------------------------------------------------


def _voters(*answers):
    return {f"v{i}": (lambda x, a=a: a) for i, a in enumerate(answers)}


def test_quorum_reached_with_a_count():
    merged = cp.parallel(_voters("y", "y", "n"), merge="quorum", quorum=2).invoke(None)
    assert merged.value == "y"
    assert merged.policy == "quorum"
    assert merged.agreeing == ("v0", "v1")
    assert merged.disagreeing == ("v2",)


def test_quorum_not_reached_with_a_count():
    merged = cp.parallel(_voters("y", "y", "n"), merge="quorum", quorum=3).invoke(None)
    assert merged.value is None
    assert merged.policy == "quorum"
    assert "no quorum" in merged.resolution
    assert merged.agreeing == ()
    assert set(merged.disagreeing) == {"v0", "v1", "v2"}
    assert merged.outputs == {"v0": "y", "v1": "y", "v2": "n"}


def test_quorum_as_a_fraction():
    assert cp.parallel(_voters("y", "y", "n", "n"), merge="quorum",
                       quorum=0.5).invoke(None).value == "y"
    assert cp.parallel(_voters("y", "y", "n", "n"), merge="quorum",
                       quorum=0.6).invoke(None).value is None


def test_quorum_fraction_counts_failed_branches_and_records_them():
    branches = _voters("y", "y")
    branches["broken"] = failing(0.0)
    # 2 of 3 branches agree: enough for 0.6 (1.8 votes), not for 0.7 (2.1 votes).
    reached = cp.parallel(branches, merge="quorum", quorum=0.6).invoke(None)
    assert reached.value == "y"
    assert set(reached.failed) == {"broken"}
    missed = cp.parallel(branches, merge="quorum", quorum=0.7).invoke(None)
    assert missed.value is None
    assert set(missed.failed) == {"broken"}


# -- confidence-weighted ---------------------------------------------------------------------


def test_confidence_weighted_one_sure_branch_beats_two_unsure_ones():
    app = cp.parallel(
        a=lambda x: cp.Result("p", confidence=0.9),
        b=lambda x: cp.Result("q", confidence=0.4),
        c=lambda x: cp.Result("q", confidence=0.3),
        merge="confidence",
    )
    merged = app.invoke(None)
    assert merged.value == "p"
    assert merged.policy == "confidence"
    assert merged.agreeing == ("a",)
    assert merged.disagreeing == ("b", "c")
    assert merged.tally["'p'"] == pytest.approx(0.9)
    assert merged.tally["'q'"] == pytest.approx(0.7)
    assert merged.outputs == {"a": "p", "b": "q", "c": "q"}


def test_confidence_weighted_sums_agreeing_confidences():
    app = cp.parallel(
        a=lambda x: cp.Result("p", confidence=0.9),
        b=lambda x: cp.Result("q", confidence=0.5),
        c=lambda x: cp.Result("q", confidence=0.5),
        merge="confidence",
    )
    merged = app.invoke(None)
    assert merged.value == "q"
    assert merged.agreeing == ("b", "c")


def test_confidence_weighted_gives_no_weight_to_outputs_without_confidence():
    app = cp.parallel(
        plain1=lambda x: "p",
        plain2=lambda x: "p",
        sure=lambda x: cp.Result("q", confidence=0.2),
        merge="confidence",
    )
    assert app.invoke(None).value == "q"


def test_confidence_weighted_records_failures():
    app = cp.parallel(
        a=lambda x: cp.Result("p", confidence=0.6),
        broken=failing(0.0),
        merge="confidence",
    )
    merged = app.invoke(None)
    assert merged.value == "p"
    assert set(merged.failed) == {"broken"}


# -- judge -------------------------------------------------------------------------------------


def test_judge_picks_from_the_successful_branches():
    seen = []

    def longest(outputs):
        seen.append(dict(outputs))
        return max(outputs.values(), key=len)

    app = cp.parallel(
        a=lambda x: "short",
        b=lambda x: cp.Result("the longest", confidence=0.5),
        c=lambda x: "medium!",
        broken=failing(0.0),
        merge=cp.judge(longest),
    )
    merged = app.invoke(None)
    assert merged.value == "the longest"
    assert merged.policy == "judge"
    assert "longest" in merged.resolution
    assert merged.agreeing == ("b",)
    assert merged.disagreeing == ("a", "c")
    assert set(merged.failed) == {"broken"}
    assert seen == [{"a": "short", "b": "the longest", "c": "medium!"}]


def test_judge_may_return_a_value_no_branch_produced():
    app = cp.parallel(a=lambda x: 1, b=lambda x: 2, merge=cp.judge(lambda o: sum(o.values())))
    merged = app.invoke(None)
    assert merged.value == 3
    assert merged.agreeing == ()
    assert merged.disagreeing == ("a", "b")


def test_async_judge_is_awaited():
    """An LLM-as-judge is naturally an ``async def``: its answer must be awaited (or the
    judge refused when the pattern is built) -- never a coroutine object as the value."""

    async def pick_largest(outputs):
        await asyncio.sleep(0.01)
        return max(outputs.values())

    try:
        app = cp.parallel(a=lambda x: 1, b=lambda x: 2, merge=cp.judge(pick_largest))
    except cp.GraphError:
        return
    merged = app.invoke(None)
    value = merged.value
    if asyncio.iscoroutine(value):
        value.close()  # keep the "never awaited" warning out of the report
    assert value == 2, value


def test_judge_may_be_a_pattern():
    choose = cp.sequential(lambda outputs: max(outputs.values()), lambda best: best * 10)
    merged = cp.parallel(a=lambda x: 1, b=lambda x: 2, merge=cp.judge(choose)).invoke(None)
    assert merged.value == 20
    assert merged.policy == "judge"


def test_judge_on_fan_out():
    app = cp.fan_out(lambda x: x * x, over=lambda x: x, merge=cp.judge(lambda o: min(o.values())))
    merged = app.invoke([3, 1, 2])
    assert merged.value == 1
    assert merged.agreeing == ("worker[1]",)


def test_a_failing_judge_fails_the_run():
    def bad_judge(outputs):
        raise RuntimeError("judge gave up")

    app = cp.parallel(a=lambda x: 1, merge=cp.judge(bad_judge))
    with pytest.raises(cp.AgentError) as info:
        app.invoke(None)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_judge_needs_a_callable():
    with pytest.raises(cp.GraphError, match="judge needs a callable"):
        cp.judge("pick the best")


# -- custom reducer --------------------------------------------------------------------------


def test_reducer_receives_outputs_by_name_and_its_return_is_the_result():
    seen = []

    def synthesize(outputs):
        seen.append(outputs)
        return " + ".join(f"{k}={v}" for k, v in sorted(outputs.items()))

    app = cp.parallel(sec=lambda x: "ok", perf=lambda x: "slow", merge=synthesize)
    assert app.invoke(None) == "perf=slow + sec=ok"
    assert seen == [{"sec": "ok", "perf": "slow"}]
    assert "merge" in app.agents


def test_reducer_with_one_branch_still_receives_a_dict():
    app = cp.parallel(only=lambda x: x * 2, merge=lambda outputs: outputs)
    assert app.invoke(4) == {"only": 8}


def test_async_reducer():
    async def reduce(outputs):
        await asyncio.sleep(0.01)
        return sum(outputs.values())

    app = cp.parallel(a=lambda x: 1, b=lambda x: 2, merge=reduce)
    assert app.uses_event_loop
    assert app.invoke(None) == 3
    assert asyncio.run(app.ainvoke(None)) == 3


def test_reducer_needs_every_branch():
    calls = []
    app = cp.parallel(a=lambda x: 1, broken=failing(0.0),
                      merge=lambda outputs: calls.append(outputs))
    with pytest.raises(cp.AgentError) as info:
        app.invoke(None)
    assert info.value.agent == "broken"
    assert calls == []


# -- fan_out ---------------------------------------------------------------------------------


def test_fan_out_runs_the_worker_per_item_and_keeps_item_order():
    def work(item):
        time.sleep(0.3 - 0.1 * item)  # later items finish first
        return item * 10

    app = cp.fan_out(work, over=lambda plan: plan["items"])
    assert app.invoke({"items": [0, 1, 2]}) == [0, 10, 20]


def test_fan_out_runs_items_concurrently():
    app = cp.fan_out(sleeper(0.25, "done"), over=lambda x: x)
    started = time.monotonic()
    assert app.invoke(list(range(5))) == ["done"] * 5
    assert time.monotonic() - started < 0.8  # serial would be 1.25 s


def test_fan_out_worker_receives_the_item_alone():
    seen = []
    lock = threading.Lock()

    def work(item):
        with lock:
            seen.append(item)
        return item

    cp.fan_out(work, over=lambda x: x["todo"]).invoke({"todo": ["a", "b"], "secret": 1})
    assert sorted(seen) == ["a", "b"]


def test_fan_out_sizes_itself_per_run():
    app = cp.fan_out(lambda x: x + 1, over=lambda x: x)
    assert app.invoke([1]) == [2]
    assert app.invoke([1, 2, 3, 4, 5, 6, 7]) == [2, 3, 4, 5, 6, 7, 8]
    assert app.invoke([]) == []
    assert app.batch([[1], [1, 2], []]) == [[2], [2, 3], []]


def test_fan_out_reducer_receives_the_list():
    seen = []

    def total(outputs):
        seen.append(outputs)
        return sum(outputs)

    app = cp.fan_out(lambda x: x * 2, over=lambda x: x, merge=total)
    assert app.invoke([1, 2, 3]) == 12
    assert app.invoke([]) == 0
    assert seen == [[2, 4, 6], []]


def test_fan_out_with_a_vote_policy():
    app = cp.fan_out(lambda x: x % 2, over=lambda x: x, merge="majority")
    merged = app.invoke([1, 3, 4])
    assert isinstance(merged, cp.Merged)
    assert merged.value == 1
    assert merged.agreeing == ("worker[0]", "worker[1]")
    assert merged.disagreeing == ("worker[2]",)


def test_fan_out_vote_policy_records_failed_workers():
    def work(item):
        if item == "bad":
            raise ValueError("bad item")
        return "ok"

    merged = cp.fan_out(work, over=lambda x: x, merge="majority").invoke(["a", "bad", "b"])
    assert merged.value == "ok"
    assert set(merged.failed) == {"worker[1]"}


def test_fan_out_first():
    def work(item):
        time.sleep(item)
        return item

    app = cp.fan_out(work, over=lambda x: x, merge="first")
    started = time.monotonic()
    merged = app.invoke([1.5, 0.05, 1.5])
    assert merged.value == 0.05
    assert time.monotonic() - started < 1.0


def test_fan_out_worker_failure_fails_the_run_without_a_vote_policy():
    def work(item):
        if item == 2:
            raise KeyError("two")
        return item

    with pytest.raises(cp.AgentError) as info:
        cp.fan_out(work, over=lambda x: x).invoke([1, 2, 3])
    assert isinstance(info.value.__cause__, KeyError)


def test_fan_out_max_items_is_enforced_at_run_time():
    app = cp.fan_out(lambda x: x, over=lambda x: x, max_items=3)
    assert app.invoke([1, 2, 3]) == [1, 2, 3]
    with pytest.raises(cp.AgentError, match="max_items=3"):
        app.invoke([1, 2, 3, 4])


@pytest.mark.parametrize("bad", ["abc", {"a": 1}, 42, None])
def test_fan_out_over_must_return_a_list(bad):
    app = cp.fan_out(lambda x: x, over=lambda x: bad)
    with pytest.raises(cp.AgentError, match="over\\(\\) must return a list") as info:
        app.invoke(None)
    assert isinstance(info.value.__cause__, TypeError)


def test_fan_out_over_may_return_any_iterable():
    app = cp.fan_out(lambda x: x * 2, over=lambda n: range(n))
    assert app.invoke(3) == [0, 2, 4]
    assert cp.fan_out(lambda x: x, over=lambda t: t).invoke((5, 6)) == [5, 6]


def test_fan_out_stream_shows_the_workers():
    app = cp.fan_out(lambda x: x, over=lambda x: x)
    names = {e.agent for e in app.stream([1, 2], stream_mode="events") if e.kind == "start"}
    assert {"fan_out", "fan_out/worker[0]", "fan_out/worker[1]"} <= names


def test_fan_out_with_async_worker():
    async def work(item):
        await asyncio.sleep(0.2)
        return item + 1

    app = cp.fan_out(work, over=lambda x: x)
    assert app.uses_event_loop
    started = time.monotonic()
    assert asyncio.run(app.ainvoke([1, 2, 3, 4])) == [2, 3, 4, 5]
    assert time.monotonic() - started < 0.6
    assert app.invoke([1]) == [2]


@pytest.mark.parametrize("policy", ["all", "majority", "first", "confidence"])
def test_fan_out_policy_result_type_does_not_depend_on_the_item_count(policy):
    """With a policy the result is that policy's kind of value ({"worker[i]": output}
    for "all", a Merged for the votes) -- an empty list of items must not turn it into a
    bare list; it either gives the policy's empty value or fails the run."""
    app = cp.fan_out(lambda x: cp.Result(x, confidence=0.5), over=lambda x: x, merge=policy)
    non_empty = app.invoke([1])
    if policy == "all":
        assert isinstance(non_empty, dict)
    else:
        assert isinstance(non_empty, cp.Merged)
    try:
        empty = app.invoke([])
    except cp.AgentError:
        return
    assert type(empty) is type(non_empty), empty


# -- build-time errors ---------------------------------------------------------------------


def test_parallel_needs_branches():
    with pytest.raises(cp.GraphError, match="at least one branch"):
        cp.parallel()
    with pytest.raises(cp.GraphError, match="at least one branch"):
        cp.parallel({})


def test_parallel_rejects_non_agents_naming_the_branch():
    with pytest.raises(cp.GraphError, match="branch 'b'"):
        cp.parallel(a=lambda x: x, b=42)


def test_parallel_rejects_a_branch_given_twice():
    with pytest.raises(cp.GraphError, match="given twice"):
        cp.parallel({"a": lambda x: x}, a=lambda x: x)


@pytest.mark.parametrize("name", ["", 3, None])
def test_parallel_rejects_bad_branch_names(name):
    with pytest.raises(cp.GraphError, match="branch names"):
        cp.parallel({name: lambda x: x})


@pytest.mark.parametrize("merge", ["avg", "best", 3, "FIRST"])
def test_unknown_merge_policy(merge):
    with pytest.raises(cp.GraphError, match="not a policy") as info:
        cp.parallel(a=lambda x: x, merge=merge)
    # The message lists the policies to choose from.
    for policy in ("'all'", "'first'", "'majority'", "'quorum'", "'confidence'", "judge"):
        assert policy in str(info.value)


def test_quorum_policy_needs_a_value():
    with pytest.raises(cp.GraphError, match="needs quorum="):
        cp.parallel(a=lambda x: x, merge="quorum")


@pytest.mark.parametrize("quorum", [0, -1, True, "2"])
def test_quorum_value_must_be_positive_number(quorum):
    with pytest.raises(cp.GraphError, match="quorum"):
        cp.parallel(a=lambda x: x, merge="quorum", quorum=quorum)


def test_quorum_value_without_the_quorum_policy():
    with pytest.raises(cp.GraphError, match="only used with the 'quorum' policy"):
        cp.parallel(a=lambda x: x, merge="majority", quorum=2)


def test_parallel_branch_named_like_the_merge_node_is_reported_as_reserved():
    """The merge node is called "merge"; a branch of that name should be refused with a
    message saying the name is reserved, not "used by more than one agent"."""
    with pytest.raises(cp.GraphError, match="reserved"):
        cp.parallel({"merge": lambda x: x, "b": lambda x: x})


def test_fan_out_build_errors():
    with pytest.raises(cp.GraphError, match="worker"):
        cp.fan_out("not an agent", over=lambda x: x)
    with pytest.raises(cp.GraphError, match="over="):
        cp.fan_out(lambda x: x, over=[1, 2])
    with pytest.raises(cp.GraphError, match="quorum"):
        cp.fan_out(lambda x: x, over=lambda x: x, merge="quorum")
    with pytest.raises(cp.GraphError, match="not a policy"):
        cp.fan_out(lambda x: x, over=lambda x: x, merge="avg")


@pytest.mark.parametrize("max_items", [0, -3, True, 2.5, "4"])
def test_fan_out_max_items_must_be_a_positive_int(max_items):
    with pytest.raises(cp.GraphError, match="max_items must be a positive int"):
        cp.fan_out(lambda x: x, over=lambda x: x, max_items=max_items)
