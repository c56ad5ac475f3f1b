"""Agents whose work runs elsewhere (a SubmittingAgent: what Ray agents are built on) are
followed from the concurrent.futures.Future that submit() returns: no event loop and no
waiting thread, and a timeout or a run's end cancels the future. A stand-in "service"
settles the futures on one thread of its own, as a remote system would."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest

import counterpoint as cp
from counterpoint._agents import SubmittingAgent


class Service:
    """Settles submitted calls after a delay, all on one thread."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Future, Callable[[], Any]]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self.thread = threading.Thread(target=self._work, name="test-service", daemon=True)
        self.thread.start()

    def call(self, work: Callable[[], Any], delay: float) -> Future:
        future: Future = Future()
        with self._wake:
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), future,
                                       work))
            self._wake.notify()
        return future

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self.thread.join(5)

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and \
                        (not self._due or self._due[0][0] > time.monotonic()):
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                if self._stopped:
                    return
                _, _, future, work = heapq.heappop(self._due)
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while it waited
            try:
                future.set_result(work())
            except BaseException as error:  # noqa: BLE001 - the call's outcome
                future.set_exception(error)


class Remote(SubmittingAgent):
    """``function`` run by the service, ``delay`` seconds after each submit."""

    def __init__(self, service: Service, function: Callable[[Any], Any],
                 delay: float = 0.0) -> None:
        self.service = service
        self.function = function
        self.delay = delay
        self.submitted: list[Future] = []

    def submit(self, argument: Any) -> Future:
        future = self.service.call(lambda: self.function(argument), self.delay)
        self.submitted.append(future)
        return future


class Pending(SubmittingAgent):
    """Work that never finishes on its own: only a cancel settles it."""

    def __init__(self) -> None:
        self.submitted: list[Future] = []

    def submit(self, argument: Any) -> Future:
        future: Future = Future()
        self.submitted.append(future)
        return future


@pytest.fixture
def service():
    running = Service()
    yield running
    running.stop()


def _eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_output_flows_on_and_no_event_loop_is_needed(service):
    remote = Remote(service, lambda x: x * 2, delay=0.01)
    app = (cp.Graph()
           .add("prepare", lambda x: x + 1)
           .add("remote", remote, after="prepare")
           .add("finish", lambda x: x * 10, after="remote")
           .compile())
    assert not app.uses_event_loop
    assert app.invoke(1) == 40
    assert asyncio.run(app.ainvoke(2)) == 60
    record = app.run(3)
    assert record.agents["remote"].output == 8 and record.agents["remote"].status == "succeeded"


def test_a_future_done_before_submit_returns_is_taken_at_once():
    class Done(SubmittingAgent):
        def submit(self, argument: Any) -> Future:
            future: Future = Future()
            future.set_result(argument + 1)
            return future

    app = cp.Graph().add("a", Done()).add("b", Done(), after="a").compile()
    assert app.invoke(1) == 3
    assert app.batch(range(100)) == [x + 2 for x in range(100)]


def test_the_works_exception_comes_back_as_itself(service):
    def fail(x: Any) -> Any:
        raise KeyError(f"no entry {x}")

    app = cp.Graph().add("lookup", Remote(service, fail)).compile()
    with pytest.raises(cp.AgentError, match="lookup") as caught:
        app.invoke(7)
    assert type(caught.value.__cause__) is KeyError
    assert caught.value.__cause__.args == ("no entry 7",)


def test_an_exception_raised_by_submit_fails_the_agent():
    class Refusing(SubmittingAgent):
        def submit(self, argument: Any) -> Future:
            raise ConnectionError("cluster unreachable")

    app = cp.Graph().add("remote", Refusing()).compile()
    with pytest.raises(cp.AgentError) as caught:
        app.invoke(1)
    assert type(caught.value.__cause__) is ConnectionError


def test_submit_must_return_a_future_and_the_error_names_the_agent():
    class Wrong(SubmittingAgent):
        def submit(self, argument: Any) -> Any:
            return argument

    app = cp.Graph().add("remote", Wrong()).compile()
    with pytest.raises(cp.AgentError) as caught:
        app.invoke(1)
    cause = caught.value.__cause__
    assert isinstance(cause, TypeError)
    assert "agent 'remote'" in str(cause) and "concurrent.futures.Future" in str(cause)
    assert "got int" in str(cause)


def test_a_future_refusing_the_done_callback_fails_the_agent_and_is_cancelled():
    class Refusing(Future):
        def add_done_callback(self, fn: Any) -> None:
            raise RuntimeError("callbacks are not supported")

    submitted: list[Future] = []

    class Odd(SubmittingAgent):
        def submit(self, argument: Any) -> Future:
            submitted.append(Refusing())
            return submitted[-1]

    app = cp.Graph().add("remote", Odd()).compile()
    with pytest.raises(cp.AgentError, match="callbacks are not supported"):
        app.invoke(1)
    assert submitted[0].cancelled()


def test_retries_submit_again(service):
    calls = itertools.count(1)

    def flaky(x: Any) -> Any:
        attempt = next(calls)
        if attempt < 3:
            raise ConnectionError(f"attempt {attempt}")
        return f"ok on attempt {attempt}"

    remote = Remote(service, flaky)
    app = cp.Graph().add("remote", remote, retry=cp.Retry(
        max_attempts=3, initial_backoff=0.01, retry_on=ConnectionError)).compile()
    assert app.invoke(1) == "ok on attempt 3"
    assert len(remote.submitted) == 3


def test_a_timeout_cancels_the_future():
    pending = Pending()
    app = cp.Graph().add("remote", pending, timeout=0.2).compile()
    started = time.monotonic()
    with pytest.raises(cp.AgentError, match="timed out"):
        app.invoke(1)
    assert time.monotonic() - started < 3
    assert len(pending.submitted) == 1
    assert _eventually(pending.submitted[0].cancelled), "the timed-out work was not cancelled"


def test_a_timeout_with_retries_cancels_every_attempt():
    pending = Pending()
    app = cp.Graph().add("remote", pending, timeout=0.1, retry=cp.Retry(
        max_attempts=3, initial_backoff=0.01, retry_on=cp.AgentTimeout)).compile()
    with pytest.raises(cp.AgentError, match="timed out"):
        app.invoke(1)
    assert len(pending.submitted) == 3
    assert _eventually(lambda: all(future.cancelled() for future in pending.submitted))


def test_cancelling_the_run_cancels_the_future():
    pending = Pending()
    app = cp.Graph().add("remote", pending).add("after", lambda x: x, after="remote").compile()
    run = app.start(1)
    assert _eventually(lambda: len(pending.submitted) == 1)
    assert run.cancel() is True
    assert _eventually(pending.submitted[0].cancelled), "the cancelled run's work went on"
    with pytest.raises(cp.RunCancelled):
        run.result(timeout=5)
    record = run.record()
    assert record.agents["remote"].status == "cancelled"
    assert record.agents["after"].status == "not_started"


def test_work_that_cannot_be_cancelled_does_not_hold_the_runs_end():
    class Running(Pending):
        def submit(self, argument: Any) -> Future:
            future = super().submit(argument)
            future.set_running_or_notify_cancel()  # cancel() now refuses, as for work
            return future                           # already running in a pool

    running = Running()
    app = cp.Graph().add("remote", running).compile()
    run = app.start(1)
    assert _eventually(lambda: len(running.submitted) == 1)
    started = time.monotonic()
    assert run.cancel()
    with pytest.raises(cp.RunCancelled):
        run.result(timeout=5)
    assert time.monotonic() - started < 3
    running.submitted[0].set_result("late")  # settles after the run: nothing to deliver
    timed = cp.Graph().add("remote", running, timeout=0.1).compile()
    with pytest.raises(cp.AgentError, match="timed out"):
        timed.invoke(2)
    running.submitted[1].set_result("late")


def test_a_failing_sibling_ends_the_run_and_cancels_the_future(service):
    pending = Pending()

    def fail(x: Any) -> Any:
        raise ValueError("sibling failed")

    app = (cp.Graph()
           .add("remote", pending)
           .add("local", Remote(service, fail, delay=0.05))
           .compile())
    with pytest.raises(cp.AgentError, match="sibling failed"):
        app.invoke(1)
    assert _eventually(lambda: bool(pending.submitted) and pending.submitted[0].cancelled())


def test_a_future_cancelled_by_the_remote_side_cancels_the_run():
    pending = Pending()
    app = cp.Graph().add("remote", pending).compile()
    run = app.start(1)
    assert _eventually(lambda: len(pending.submitted) == 1)
    pending.submitted[0].cancel()  # as a remote system might, on its own
    with pytest.raises(cp.RunCancelled):  # as for a coroutine agent cancelled on its own
        run.result(timeout=10)
    assert run.record().agents["remote"].status == "cancelled"


def test_many_calls_in_flight_hold_no_thread_each(service):
    remote = Remote(service, lambda x: x + 1, delay=0.2)
    app = cp.Graph().add("remote", remote).compile()
    app.invoke(0)  # the engine's threads are up
    threads_before = threading.active_count()
    seen: list[int] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            seen.append(threading.active_count())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        outputs = app.batch(range(500), max_concurrency=500)
    finally:
        watching.set()
        watcher.join()
    elapsed = time.monotonic() - started
    assert outputs == [x + 1 for x in range(500)]
    # 500 calls of 0.2 s overlapped; one at a time they would take 100 s.
    assert elapsed < 20, elapsed
    assert max(seen) <= threads_before + 4, (threads_before, max(seen))


def test_durable_runs_checkpoint_submitted_agents(service, tmp_path):
    remote = Remote(service, lambda x: x * 3)
    app = (cp.Graph()
           .add("remote", remote)
           .add("local", lambda x: x + 1, after="remote")
           .compile(store=tmp_path / "runs.db"))
    record = app.run(2)
    assert record.output == 7
    assert app.store.load_run(record.run_key).outcomes["remote"].output == 6


@dataclass
class Answer:
    text: str


def test_typed_handoffs_still_check_a_submitted_agents_output(service):
    class Typed(Remote):
        async def __call__(self, argument: Any) -> Answer:  # what the graph checks
            return await super().__call__(argument)

    bad = cp.Graph().add("remote", Typed(service, lambda x: {"text": x})).compile()
    with pytest.raises(cp.AgentError, match="agent 'remote' returned an invalid output"):
        bad.invoke("hello")
    good = cp.Graph().add("remote", Typed(service, Answer)).compile()
    assert good.invoke("hello") == Answer("hello")


def test_tracing_and_events_see_a_submitted_call_end(service):
    otel = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    exporter = InMemorySpanExporter()
    provider = otel.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def fail(x: Any) -> Any:
        raise KeyError(x)

    good = cp.Graph().add("remote", Remote(service, lambda x: x + 1, delay=0.05)).compile()
    bad = cp.Graph().add("remote", Remote(service, fail)).compile()
    hung = cp.Graph().add("remote", Pending(), timeout=0.1).compile()
    cp.instrument(provider)
    try:
        assert good.invoke(1) == 2
        with pytest.raises(cp.AgentError):
            bad.invoke(1)
        assert hung.run(1).status == "failed"
    finally:
        cp.uninstrument()
        provider.shutdown()
    calls = sorted((span for span in exporter.get_finished_spans()
                    if span.name == "invoke_agent remote"), key=lambda span: span.start_time)
    assert [span.attributes["counterpoint.agent.status"] for span in calls] == \
        ["succeeded", "failed", "timed_out"]
    assert calls[0].end_time - calls[0].start_time >= 0.04e9  # ended when the work did
    assert calls[1].status.status_code is StatusCode.ERROR
    assert calls[1].attributes["error.type"] == "KeyError"

    events = [(event.kind, event.agent) for event in good.stream(1, stream_mode="events")]
    assert ("start", "remote") in events and ("finish", "remote") in events
