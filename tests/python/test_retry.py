"""Fault injection: retries with exponential backoff, jitter, caps and filters."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import counterpoint as cp


class Transient(Exception):
    pass


class Permanent(Exception):
    pass


class Flaky:
    """Fails the first ``failures`` calls with ``exc``, then returns ``value``.

    Records the monotonic time of every call so tests can measure the backoff."""

    def __init__(self, failures: int, exc: type[BaseException] = Transient, value: object = "ok"):
        self.failures = failures
        self.exc = exc
        self.value = value
        self.calls: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, x):
        with self._lock:
            self.calls.append(time.monotonic())
            n = len(self.calls)
        if n <= self.failures:
            raise self.exc(f"failure {n}")
        return self.value

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.calls, self.calls[1:])]


def test_retries_until_the_agent_succeeds():
    flaky = Flaky(2)
    app = cp.Graph().add("a", flaky, retry=cp.Retry(max_attempts=3, initial_backoff=0.01)).compile()
    assert app.invoke("x") == "ok"
    assert len(flaky.calls) == 3


def test_int_retry_is_the_number_of_attempts():
    flaky = Flaky(10)
    app = cp.Graph().add("a", flaky, retry=2).compile()
    with pytest.raises(cp.AgentError):
        app.invoke("x")
    assert len(flaky.calls) == 2


def test_exhausted_retries_fail_with_the_last_original_exception():
    raised = []

    def agent(x):
        exc = Transient(f"attempt {len(raised) + 1}")
        raised.append(exc)
        raise exc

    app = cp.Graph().add("a", agent, retry=cp.Retry(max_attempts=3, initial_backoff=0.01)).compile()
    with pytest.raises(cp.AgentError) as info:
        app.invoke("x")
    assert len(raised) == 3
    assert info.value.agent == "a"
    assert info.value.__cause__ is raised[-1]
    assert "3 attempts" in str(info.value)
    assert "attempt 3" in str(info.value)


def test_retried_agent_receives_the_same_input_every_attempt():
    seen = []

    def agent(x):
        seen.append(x)
        if len(seen) < 3:
            raise Transient("again")
        return x

    app = cp.Graph().add("a", agent, retry=cp.Retry(max_attempts=3, initial_backoff=0.0)).compile()
    assert app.invoke({"k": [1, 2]}) == {"k": [1, 2]}
    assert seen == [{"k": [1, 2]}] * 3


def test_backoff_grows_exponentially_and_never_fires_early():
    flaky = Flaky(3)
    retry = cp.Retry(max_attempts=4, initial_backoff=0.06, multiplier=3.0, max_backoff=10.0,
                     jitter=0.0)
    app = cp.Graph().add("a", flaky, retry=retry).compile()
    assert app.invoke("x") == "ok"
    gaps = flaky.gaps()
    assert len(gaps) == 3
    for gap, expected in zip(gaps, (0.06, 0.18, 0.54)):
        assert gap >= expected * 0.9, gaps
        assert gap <= expected + 0.5, gaps


@pytest.mark.parametrize("jitter", [0.5, 1.0])
def test_delay_never_exceeds_max_backoff_even_with_jitter(jitter):
    # Uncapped, the delays would be 0.05, 0.5, 5, 50 s (+-jitter): the run would take
    # seconds to minutes. Capped at 0.15 s, every gap stays small.
    flaky = Flaky(4)
    retry = cp.Retry(max_attempts=5, initial_backoff=0.05, multiplier=10.0, max_backoff=0.15,
                     jitter=jitter)
    app = cp.Graph().add("a", flaky, retry=retry).compile()
    started = time.monotonic()
    assert app.invoke("x") == "ok"
    elapsed = time.monotonic() - started
    gaps = flaky.gaps()
    assert len(gaps) == 4
    assert max(gaps) < 0.15 + 0.6, gaps  # generous scheduling slack, far below 2.5 s
    assert elapsed < 2.0


def test_jitter_varies_the_delay_within_its_bounds():
    # Many attempts at a fixed base of 0.08 s with +-100 % jitter: delays spread over
    # [0, 0.08] (capped) rather than all being equal.
    flaky = Flaky(12)
    retry = cp.Retry(max_attempts=13, initial_backoff=0.08, multiplier=1.0, max_backoff=0.08,
                     jitter=1.0)
    app = cp.Graph().add("a", flaky, retry=retry).compile()
    assert app.invoke("x") == "ok"
    gaps = flaky.gaps()
    assert max(gaps) < 0.08 + 0.5, gaps
    assert min(gaps) < 0.075, gaps  # with 12 draws, at least one is well below the base


def test_retry_on_class_does_not_retry_other_exceptions():
    flaky = Flaky(5, exc=Permanent)
    app = cp.Graph().add(
        "a", flaky, retry=cp.Retry(max_attempts=5, initial_backoff=0.01, retry_on=Transient)
    ).compile()
    with pytest.raises(cp.AgentError) as info:
        app.invoke("x")
    assert len(flaky.calls) == 1
    assert isinstance(info.value.__cause__, Permanent)


def test_retry_on_class_retries_matching_exceptions_and_subclasses():
    class Sub(Transient):
        pass

    flaky = Flaky(2, exc=Sub)
    app = cp.Graph().add(
        "a", flaky, retry=cp.Retry(max_attempts=3, initial_backoff=0.01, retry_on=Transient)
    ).compile()
    assert app.invoke("x") == "ok"
    assert len(flaky.calls) == 3


def test_retry_on_tuple_of_classes():
    errors = iter([KeyError("k"), ValueError("v"), Permanent("p")])

    calls = []

    def agent(x):
        calls.append(1)
        raise next(errors)

    app = cp.Graph().add(
        "a", agent, retry=cp.Retry(max_attempts=5, initial_backoff=0.0,
                                   retry_on=(KeyError, ValueError))
    ).compile()
    with pytest.raises(cp.AgentError) as info:
        app.invoke("x")
    assert len(calls) == 3  # KeyError retried, ValueError retried, Permanent not
    assert isinstance(info.value.__cause__, Permanent)


def test_retry_on_predicate_sees_the_exception():
    seen = []

    def transient_only(exc):
        seen.append(exc)
        return "transient" in str(exc)

    messages = iter(["transient glitch", "transient again", "fatal"])
    calls = []

    def agent(x):
        calls.append(1)
        raise RuntimeError(next(messages))

    app = cp.Graph().add(
        "a", agent, retry=cp.Retry(max_attempts=10, initial_backoff=0.0, retry_on=transient_only)
    ).compile()
    with pytest.raises(cp.AgentError, match="fatal"):
        app.invoke("x")
    assert len(calls) == 3
    assert [str(e) for e in seen] == ["transient glitch", "transient again", "fatal"]


def test_a_predicate_that_raises_stops_retrying():
    def broken(exc):
        raise ZeroDivisionError("bug in predicate")

    flaky = Flaky(5)
    app = cp.Graph().add(
        "a", flaky, retry=cp.Retry(max_attempts=5, initial_backoff=0.0, retry_on=broken)
    ).compile()
    with pytest.raises(cp.AgentError):
        app.invoke("x")
    assert len(flaky.calls) == 1


def test_timeouts_are_retried_as_agent_timeout():
    calls = []

    def agent(x):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.6)  # first attempt hangs past its timeout
            return "late"
        return "fresh"

    app = cp.Graph().add(
        "a", agent, timeout=0.15,
        retry=cp.Retry(max_attempts=2, initial_backoff=0.0, retry_on=TimeoutError),
    ).compile()
    assert app.invoke("x") == "fresh"
    assert len(calls) == 2


def test_timeouts_are_not_retried_when_retry_on_excludes_them():
    calls = []

    def agent(x):
        calls.append(1)
        time.sleep(0.5)
        return "late"

    app = cp.Graph().add(
        "a", agent, timeout=0.1,
        retry=cp.Retry(max_attempts=3, initial_backoff=0.0, retry_on=ValueError),
    ).compile()
    with pytest.raises(cp.AgentError) as info:
        app.invoke("x")
    assert isinstance(info.value.__cause__, cp.AgentTimeout)
    time.sleep(0.6)
    assert len(calls) == 1


def test_async_agent_is_retried():
    calls = []

    async def agent(x):
        calls.append(1)
        await asyncio.sleep(0)
        if len(calls) < 3:
            raise Transient("again")
        return x * 2

    app = cp.Graph().add("a", agent, retry=cp.Retry(max_attempts=3, initial_backoff=0.01)).compile()
    assert app.invoke(21) == 42
    assert len(calls) == 3


def test_retries_never_hold_back_siblings():
    # A retrying agent waits 1.5 s before its second attempt; its siblings (and their
    # successors) finish long before that.
    flaky = Flaky(1)
    g = (
        cp.Graph()
        .add("flaky", flaky, retry=cp.Retry(max_attempts=2, initial_backoff=1.2, jitter=0.0))
        .add("sib1", lambda x: time.sleep(0.02) or "s1")
        .add("sib2", lambda x: "s2", after="sib1")
        .add("sib3", lambda x: "s3", after="sib2")
        .add("end", lambda d: sorted(d), after=["flaky", "sib3"])
    )
    rec = g.compile().run("x")
    assert rec.status == "succeeded", rec.error
    assert rec.agents["sib3"].finished < 0.6, rec.agents
    assert rec.agents["flaky"].finished >= 1.1
    assert rec.agents["flaky"].finished - rec.agents["sib3"].finished > 0.5


def test_many_agents_in_backoff_hold_no_threads():
    # Eight agents wait in backoff at once; if each held a pool thread while waiting, a
    # 2-core machine's pool would be exhausted and the sibling would wait for them.
    flakies = [Flaky(1) for _ in range(8)]
    g = cp.Graph()
    for i, flaky in enumerate(flakies):
        g.add(f"f{i}", flaky, dispatch="thread",
              retry=cp.Retry(max_attempts=2, initial_backoff=1.2, jitter=0.0))
    sibling_done = []
    g.add("sibling", lambda x: sibling_done.append(time.monotonic()) or "s", dispatch="thread")
    started = time.monotonic()
    rec = g.compile().run("x")
    assert rec.status == "succeeded"
    assert sibling_done[0] - started < 0.8
    assert all(len(f.calls) == 2 for f in flakies)


def test_one_runs_retries_do_not_hold_back_another_run():
    flaky = Flaky(1)
    slow_app = cp.Graph().add(
        "a", flaky, retry=cp.Retry(max_attempts=2, initial_backoff=1.2, jitter=0.0)
    ).compile()
    fast_app = cp.Graph().add("a", lambda x: x + 1).compile()
    slow = slow_app.start(0)
    time.sleep(0.05)
    t = time.monotonic()
    assert fast_app.invoke(1) == 2
    assert time.monotonic() - t < 0.6
    assert not slow.done
    assert slow.result(timeout=10) == "ok"
