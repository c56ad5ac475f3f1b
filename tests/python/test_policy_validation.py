"""Bad policy settings fail when the graph is built, with messages that say what to fix;
nothing runs."""

from __future__ import annotations

import math
import time
import uuid

import pytest

import counterpoint as cp

CALLS: list = []


def agent(x):
    CALLS.append(x)
    return x


@pytest.fixture(autouse=True)
def _no_calls():
    CALLS.clear()
    yield
    assert CALLS == [], "an agent ran although its graph was invalid"


def _build(**policy):
    return cp.Graph().add("worker", agent, **policy).compile()


# ---- timeouts ---------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf])
def test_bad_timeout_is_rejected(timeout):
    with pytest.raises(cp.GraphError) as info:
        _build(timeout=timeout)
    message = str(info.value)
    assert "timeout" in message
    assert "worker" in message  # names the agent
    assert info.value.node == "worker"
    assert ("> 0" in message) or ("finite" in message)


@pytest.mark.parametrize("timeout", ["5", True, [1]])
def test_timeout_of_the_wrong_type_is_rejected(timeout):
    with pytest.raises(cp.GraphError, match="timeout"):
        _build(timeout=timeout)


def test_policy_rejects_bad_timeout_too():
    with pytest.raises(cp.GraphError, match=r"timeout must be > 0, got 0"):
        cp.policy(agent, timeout=0)


# ---- retries ----------------------------------------------------------------------


@pytest.mark.parametrize("policy", [{"timeout": -1}, {"retry": "3"}, {"breaker": "open"},
                                    {"limits": [1]}, {"review": 0.5}, {"fallback": 42}])
def test_policy_problems_are_reported_by_compile_not_add(policy):
    graph = cp.Graph().add("worker", agent, **policy)  # records the spec, checks nothing
    with pytest.raises(cp.GraphError) as info:
        graph.compile()
    assert info.value.node == "worker"
    assert "worker" in str(info.value)


def test_policies_given_twice_are_a_graph_error():
    graph = cp.Graph().add("worker", cp.policy(agent, retry=2), retry=3)
    with pytest.raises(cp.GraphError, match="retry= is given both"):
        graph.compile()


@pytest.mark.parametrize(
    ("kwargs", "field", "hint"),
    [
        ({"max_attempts": 0}, "max_attempts", "positive int"),
        ({"max_attempts": -2}, "max_attempts", "positive int"),
        ({"max_attempts": 1.5}, "max_attempts", "positive int"),
        ({"max_attempts": True}, "max_attempts", "positive int"),
        ({"initial_backoff": -0.1}, "initial_backoff", ">= 0"),
        ({"initial_backoff": math.nan}, "initial_backoff", "finite"),
        ({"initial_backoff": math.inf}, "initial_backoff", "finite"),
        ({"multiplier": 0.5}, "multiplier", ">= 1"),
        ({"multiplier": -2}, "multiplier", ">= 1"),
        ({"max_backoff": -1}, "max_backoff", ">= 0"),
        ({"max_backoff": math.inf}, "max_backoff", "finite"),
        ({"jitter": -0.1}, "jitter", "between 0 and 1"),
        ({"jitter": 1.5}, "jitter", "between 0 and 1"),
        ({"retry_on": "ValueError"}, "retry_on", "exception class"),
        ({"retry_on": 42}, "retry_on", "exception class"),
        ({"retry_on": (ValueError, "x")}, "retry_on", "exception class"),
        ({"retry_on": int}, "retry_on", "exception class"),
    ],
)
def test_bad_retry_settings_are_rejected(kwargs, field, hint):
    with pytest.raises(cp.GraphError) as info:
        cp.Retry(**kwargs)
    message = str(info.value)
    assert message.startswith("Retry:")
    assert field in message
    assert hint in message


@pytest.mark.parametrize("retry", [0, -1])
def test_bad_retry_count_is_rejected_at_compile(retry):
    with pytest.raises(cp.GraphError) as info:
        _build(retry=retry)
    assert "max_attempts" in str(info.value)
    assert "worker" in str(info.value)


@pytest.mark.parametrize("retry", [2.0, "3", [3], True])
def test_retry_of_the_wrong_type_is_rejected(retry):
    with pytest.raises(cp.GraphError, match="retry"):
        _build(retry=retry)


def test_huge_retry_count_fails_with_a_message_not_a_binding_error():
    # A "positive int" that does not fit the engine's counter must be refused with a
    # GraphError saying so, not a pybind11 TypeError listing constructor overloads.
    with pytest.raises(cp.GraphError, match="max_attempts"):
        _build(retry=2**40)


def test_zero_backoff_is_allowed():
    retry = cp.Retry(max_attempts=2, initial_backoff=0, max_backoff=0, jitter=0)
    assert retry.initial_backoff == 0


# ---- circuit breakers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"failures": 0}, "failures"),
        ({"failures": -1}, "failures"),
        ({"failures": 2.5}, "failures"),
        ({"window": 0}, "window"),
        ({"window": -1}, "window"),
        ({"window": math.nan}, "window"),
        ({"reset_after": 0}, "reset_after"),
        ({"reset_after": -3}, "reset_after"),
        ({"reset_after": math.inf}, "reset_after"),
    ],
)
def test_bad_breaker_settings_are_rejected(kwargs, field):
    with pytest.raises(cp.GraphError) as info:
        cp.CircuitBreaker(**kwargs)
    assert str(info.value).startswith("CircuitBreaker:")
    assert field in str(info.value)


@pytest.mark.parametrize("name", ["", 5])
def test_bad_breaker_name_is_rejected(name):
    with pytest.raises(cp.GraphError, match="name"):
        cp.CircuitBreaker(name, failures=1)


def test_huge_breaker_threshold_fails_with_a_message():
    with pytest.raises(cp.GraphError, match="failures"):
        cp.CircuitBreaker(failures=2**40)


def test_breaker_of_the_wrong_type_is_rejected():
    with pytest.raises(cp.GraphError, match="CircuitBreaker"):
        _build(breaker="open")


# ---- limits -------------------------------------------------------------------------


def test_limit_needs_something_to_limit():
    with pytest.raises(cp.GraphError, match="max_concurrent, per_second"):
        cp.Limit()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": -1}, "max_concurrent"),
        ({"max_concurrent": 1.5}, "max_concurrent"),
        ({"per_second": 0}, "per_second"),
        ({"per_second": -2}, "per_second"),
        ({"per_second": math.inf}, "per_second"),
        ({"per_second": math.nan}, "per_second"),
        ({"per_second": 1, "burst": 0}, "burst"),
        ({"per_second": 1, "burst": -1}, "burst"),
    ],
)
def test_bad_limit_settings_are_rejected(kwargs, field):
    with pytest.raises(cp.GraphError) as info:
        cp.Limit(**kwargs)
    assert str(info.value).startswith("Limit:")
    assert field in str(info.value)


def test_huge_max_concurrent_fails_with_a_message():
    with pytest.raises(cp.GraphError, match="max_concurrent"):
        cp.Limit(max_concurrent=2**40)


@pytest.mark.parametrize("limits", [1, "abc", [None], ["x"]])
def test_limits_of_the_wrong_type_are_rejected(limits):
    with pytest.raises(cp.GraphError, match=r"cp\.Limit"):
        _build(limits=limits)


def test_named_limit_settings_conflict_names_the_existing_settings():
    name = f"limit-{uuid.uuid4().hex[:8]}"
    cp.Limit(name, per_second=3)
    with pytest.raises(cp.GraphError) as info:
        cp.Limit(name, per_second=4)
    assert name in str(info.value) and "already exists" in str(info.value)


# ---- review -----------------------------------------------------------------------


@pytest.mark.parametrize("below", [0, -0.1, 1.01, 7, math.nan])
def test_bad_review_threshold_is_rejected(below):
    with pytest.raises(cp.GraphError, match="below"):
        cp.Review(below=below)


def test_review_reviewer_must_be_callable():
    with pytest.raises(cp.GraphError, match="reviewer"):
        cp.Review(below=0.5, reviewer="alice")


def test_review_of_the_wrong_type_is_rejected():
    with pytest.raises(cp.GraphError, match=r"cp\.Review"):
        _build(review=0.5)


# ---- fallback -----------------------------------------------------------------------


def test_fallback_must_be_an_agent():
    with pytest.raises(cp.GraphError, match="fallback"):
        _build(fallback=42)


# ---- budgets and deadlines --------------------------------------------------------------


@pytest.mark.parametrize(
    "budget",
    [{}, {"tokens": 0}, {"tokens": -5}, {"tokens": math.inf}, {"tokens": math.nan},
     {"tokens": "100"}, {"tokens": True}, {7: 10}, [("tokens", 10)], 100],
)
def test_bad_budget_is_rejected_at_compile(budget):
    with pytest.raises(cp.GraphError) as info:
        cp.Graph().add("worker", agent).compile(budget=budget)
    assert "budget" in str(info.value)
    assert "tokens" in str(info.value) or "positive" in str(info.value) or "dict" in str(info.value)


@pytest.mark.parametrize("budget", [{}, {"tokens": 0}, {"tokens": -1}])
def test_bad_budget_is_rejected_per_call_before_anything_runs(budget):
    app = cp.Graph().add("worker", agent).compile()
    with pytest.raises(ValueError, match="budget"):
        app.invoke(1, budget=budget)
    with pytest.raises(ValueError, match="budget"):
        app.start(1, budget=budget)
    with pytest.raises(ValueError, match="budget"):
        app.batch([1, 2], budget=budget)


@pytest.mark.parametrize("deadline", [0, -1, math.inf, math.nan, "5", True])
def test_bad_deadline_is_rejected_at_compile(deadline):
    with pytest.raises(cp.GraphError, match="deadline must be a positive number of seconds"):
        cp.Graph().add("worker", agent).compile(deadline=deadline)


@pytest.mark.parametrize("deadline", [0, -0.5])
def test_bad_deadline_is_rejected_per_call(deadline):
    app = cp.Graph().add("worker", agent).compile()
    with pytest.raises(ValueError, match="deadline"):
        app.invoke(1, deadline=deadline)
    with pytest.raises(ValueError, match="deadline"):
        app.run(1, deadline=deadline)


def test_bad_graph_on_error_is_rejected():
    with pytest.raises(cp.GraphError, match="on_error"):
        cp.Graph(on_error="ignore")
    with pytest.raises(cp.GraphError, match="on_error"):
        cp.Graph().add("worker", agent, on_error="retry").compile()


# ---- accepted values behave as given --------------------------------------------------


@pytest.mark.parametrize("seconds", [1e10, 1e12])
def test_a_very_long_timeout_does_not_fire_at_once(seconds):
    # A finite timeout is accepted; a huge one ("practically never") must not overflow
    # the timer and time the agent out immediately.
    app = cp.Graph().add("worker", lambda x: time.sleep(0.02) or x, timeout=seconds).compile()
    assert app.invoke("x") == "x"


@pytest.mark.parametrize("seconds", [1e10, 1e12])
def test_a_very_long_deadline_does_not_fire_at_once(seconds):
    app = cp.Graph().add("worker", lambda x: time.sleep(0.02) or x).compile()
    assert app.invoke("x", deadline=seconds) == "x"
