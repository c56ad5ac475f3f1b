"""Fault injection: circuit breakers open, fail fast, probe when half-open, close or
reopen; their state is readable; named breakers are shared."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

import counterpoint as cp


class Down(Exception):
    pass


class Service:
    """A fake downstream service: fails while ``down`` is set, counts calls."""

    def __init__(self, down: bool = True):
        self.down = down
        self.calls = 0
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def __call__(self, x):
        with self.lock:
            self.calls += 1
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        if self.down:
            raise Down(f"service down ({x})")
        return f"ok({x})"


def _name() -> str:
    return f"breaker-{uuid.uuid4().hex[:8]}"


def _app(service, breaker, **kw):
    return cp.Graph().add("call", service, breaker=breaker, **kw).compile()


def test_opens_after_n_failures_then_fails_fast_without_calling_the_agent():
    breaker = cp.CircuitBreaker(_name(), failures=3, window=30, reset_after=30)
    service = Service(down=True)
    app = _app(service, breaker)
    assert breaker.state == "closed"
    for i in range(3):
        with pytest.raises(cp.AgentError) as info:
            app.invoke(i)
        assert isinstance(info.value.__cause__, Down)  # real failures, not fast ones
    assert service.calls == 3
    assert breaker.state == "open"

    for i in range(5):
        started = time.monotonic()
        with pytest.raises(cp.AgentError) as info:
            app.invoke(i)
        assert time.monotonic() - started < 0.5
        assert isinstance(info.value.__cause__, cp.CircuitOpenError)
        assert breaker.name in str(info.value)
        assert "open" in str(info.value)
    assert service.calls == 3  # never called while open

    snap = breaker.snapshot()
    assert snap["state"] == "open"
    assert snap["total_failures"] == 3
    assert snap["rejected"] == 5
    assert 0 < snap["seconds_until_probe"] <= 30


def test_record_marks_fast_failures():
    breaker = cp.CircuitBreaker(failures=1, window=30, reset_after=30)
    service = Service(down=True)
    g = cp.Graph(on_error="continue").add("call", service, breaker=breaker) \
        .add("after", lambda x: x, after="call").add("other", lambda x: "other")
    app = g.compile()
    app.run(1)
    rec = app.run(2)
    assert rec.agents["call"].status == "failed"
    assert "circuit breaker" in rec.agents["call"].error
    assert rec.agents["after"].status == "skipped"
    assert rec.agents["other"].status == "succeeded"
    assert service.calls == 1


def test_failures_outside_the_window_do_not_open_it():
    breaker = cp.CircuitBreaker(_name(), failures=2, window=0.25, reset_after=30)
    service = Service(down=True)
    app = _app(service, breaker)
    with pytest.raises(cp.AgentError):
        app.invoke(1)
    time.sleep(0.45)
    with pytest.raises(cp.AgentError):
        app.invoke(2)
    assert breaker.state == "closed"
    assert breaker.snapshot()["recent_failures"] == 1
    with pytest.raises(cp.AgentError):
        app.invoke(3)
    assert breaker.state == "open"


def test_half_open_probe_success_closes_it():
    breaker = cp.CircuitBreaker(_name(), failures=2, window=30, reset_after=0.3)
    service = Service(down=True)
    app = _app(service, breaker)
    for i in range(2):
        with pytest.raises(cp.AgentError):
            app.invoke(i)
    assert breaker.state == "open"
    time.sleep(0.4)
    snap = breaker.snapshot()
    assert snap["state"] == "half_open"  # the next call will be the probe
    assert breaker.state == "half_open"
    service.down = False
    assert app.invoke("probe") == "ok(probe)"
    assert service.calls == 3
    assert breaker.state == "closed"
    assert app.invoke("after") == "ok(after)"
    assert breaker.snapshot()["total_successes"] == 2


def test_half_open_probe_failure_reopens_it():
    breaker = cp.CircuitBreaker(_name(), failures=2, window=30, reset_after=0.3)
    service = Service(down=True)
    app = _app(service, breaker)
    for i in range(2):
        with pytest.raises(cp.AgentError):
            app.invoke(i)
    time.sleep(0.4)
    with pytest.raises(cp.AgentError) as info:
        app.invoke("probe")
    assert isinstance(info.value.__cause__, Down)  # the probe really ran
    assert service.calls == 3
    assert breaker.state == "open"
    with pytest.raises(cp.AgentError) as info:
        app.invoke("fast")
    assert isinstance(info.value.__cause__, cp.CircuitOpenError)
    assert service.calls == 3
    # and after another reset_after, a new probe
    time.sleep(0.4)
    service.down = False
    assert app.invoke("probe2") == "ok(probe2)"
    assert breaker.state == "closed"


def test_half_open_lets_exactly_one_probe_through():
    breaker = cp.CircuitBreaker(_name(), failures=1, window=30, reset_after=0.2)
    service = Service(down=True)
    app = _app(service, breaker, dispatch="thread")
    with pytest.raises(cp.AgentError):
        app.invoke(0)
    time.sleep(0.3)
    service.down = False
    service.gate = threading.Event()
    service.entered.clear()
    probe = app.start("probe")
    assert service.entered.wait(3)
    # while the probe is in flight, every other call fails fast
    others = [app.run(f"other{i}") for i in range(4)]
    for rec in others:
        assert rec.agents["call"].status == "failed"
        assert isinstance(rec.error.__cause__, cp.CircuitOpenError)
    assert service.calls == 2
    service.gate.set()
    assert probe.result(timeout=5) == "ok(probe)"
    assert breaker.state == "closed"


def test_open_breaker_is_not_retried():
    breaker = cp.CircuitBreaker(_name(), failures=2, window=30, reset_after=30)
    service = Service(down=True)
    app = _app(service, breaker, retry=cp.Retry(max_attempts=5, initial_backoff=0.0))
    with pytest.raises(cp.AgentError) as info:
        app.invoke(1)
    # two real attempts opened it; the third attempt failed fast and retries stopped
    assert service.calls == 2
    assert isinstance(info.value.__cause__, cp.CircuitOpenError)
    assert breaker.state == "open"


def test_open_breaker_falls_back():
    breaker = cp.CircuitBreaker(failures=1, window=30, reset_after=30)
    service = Service(down=True)
    app = _app(service, breaker, fallback=lambda x: f"cached({x})")
    assert app.invoke(1) == "cached(1)"
    assert app.invoke(2) == "cached(2)"
    assert service.calls == 1


def test_named_breaker_is_shared_across_agents_and_graphs():
    name = _name()
    b1 = cp.CircuitBreaker(name, failures=2, window=30, reset_after=30)
    b2 = cp.CircuitBreaker(name, failures=2, window=30, reset_after=30)
    assert b1 is b2
    s1, s2 = Service(down=True), Service(down=False)
    app1 = _app(s1, b1)
    app2 = (
        cp.Graph(on_error="continue")
        .add("x", s2, breaker=cp.CircuitBreaker(name, failures=2, window=30, reset_after=30))
        .add("y", s2, breaker=b1)
        .compile()
    )
    assert app2.invoke(0) == {"x": "ok(0)", "y": "ok(0)"}
    for i in range(2):
        with pytest.raises(cp.AgentError):
            app1.invoke(i)
    assert b2.state == "open"
    rec = app2.run(1)
    assert rec.agents["x"].status == rec.agents["y"].status == "failed"
    assert s2.calls == 2  # only the first run reached it


def test_named_breaker_with_other_settings_is_refused():
    name = _name()
    cp.CircuitBreaker(name, failures=2, window=30, reset_after=30)
    with pytest.raises(cp.GraphError, match="already exists"):
        cp.CircuitBreaker(name, failures=3, window=30, reset_after=30)


def test_anonymous_breakers_are_independent():
    b1 = cp.CircuitBreaker(failures=1, window=30, reset_after=30)
    b2 = cp.CircuitBreaker(failures=1, window=30, reset_after=30)
    assert b1 is not b2 and b1.name != b2.name
    app = _app(Service(down=True), b1)
    with pytest.raises(cp.AgentError):
        app.invoke(1)
    assert b1.state == "open"
    assert b2.state == "closed"


def test_timeouts_count_as_failures():
    breaker = cp.CircuitBreaker(failures=2, window=30, reset_after=30)
    calls = []

    def hang(x):
        calls.append(x)
        time.sleep(0.3)
        return "late"

    app = _app(hang, breaker, timeout=0.05)
    for i in range(2):
        with pytest.raises(cp.AgentError) as info:
            app.invoke(i)
        assert isinstance(info.value.__cause__, cp.AgentTimeout)
    assert breaker.state == "open"
    with pytest.raises(cp.AgentError) as info:
        app.invoke(3)
    assert isinstance(info.value.__cause__, cp.CircuitOpenError)
    time.sleep(0.3)
    assert calls == [0, 1]


def test_cancelled_probe_does_not_wedge_the_breaker_half_open():
    # The probe's run is cancelled while the probe runs; the breaker must let a new
    # probe through afterwards rather than failing fast forever.
    breaker = cp.CircuitBreaker(_name(), failures=1, window=30, reset_after=0.15)
    service = Service(down=True)
    app = _app(service, breaker, dispatch="thread")
    with pytest.raises(cp.AgentError):
        app.invoke(0)
    time.sleep(0.25)
    service.down = False
    service.gate = threading.Event()
    service.entered.clear()
    probe = app.start("probe")
    assert service.entered.wait(3)
    probe.cancel()
    service.gate.set()
    time.sleep(0.2)
    service.gate = None
    deadline = time.monotonic() + 2
    while True:
        rec = app.run("again")
        if rec.status == "succeeded" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert rec.status == "succeeded", (breaker.snapshot(), rec.error)
    assert breaker.state == "closed"


def test_probe_cancelled_while_waiting_for_a_limit_frees_the_breaker():
    # The probe passed the breaker, then queued behind a limit; its run is cancelled
    # there. The breaker must not stay "probe in flight" forever.
    breaker = cp.CircuitBreaker(_name(), failures=1, window=30, reset_after=0.1)
    limit = cp.Limit(max_concurrent=1)
    service = Service(down=True)
    app = _app(service, breaker, limits=limit)
    with pytest.raises(cp.AgentError):
        app.invoke(0)
    assert breaker.state == "open"
    time.sleep(0.2)
    release, holding = threading.Event(), threading.Event()

    def hold(x):
        holding.set()
        release.wait(5)
        return x

    holder = cp.Graph().add("h", hold, limits=limit, dispatch="thread").compile().start(0)
    assert holding.wait(3)
    probe = app.start("probe")  # takes the half-open probe, then waits for the limit
    time.sleep(0.1)
    assert limit.snapshot()["waiting"] == 1
    probe.cancel()
    release.set()
    holder.wait(5)
    service.down = False
    assert app.invoke("next") == "ok(next)"  # a new probe was allowed, and closed it
    assert breaker.state == "closed"
    assert service.calls == 2


def test_repr_and_snapshot_keys():
    breaker = cp.CircuitBreaker(_name(), failures=1, window=1, reset_after=1)
    assert breaker.name in repr(breaker) and "closed" in repr(breaker)
    assert set(breaker.snapshot()) >= {"state", "recent_failures", "total_failures",
                                       "total_successes", "rejected", "seconds_until_probe"}
