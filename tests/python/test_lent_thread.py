"""invoke() lends its waiting thread to the remote calls of its run (counterpoint's
_lent_thread): a call whose outcome can be waited for in a blocking call, as Ray's
``ray.get``, is waited for there rather than followed from a callback on another thread.
A stand-in does its work on threads of its own and offers its waits as a Ray call does."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any

import pytest

import counterpoint as cp
from counterpoint._agents import SubmittingAgent
from counterpoint._lent_thread import lent_thread


def _settle(future: Future, outcome: dict[str, Any]) -> None:
    try:
        if "error" in outcome:
            future.set_exception(outcome["error"])
        else:
            future.set_result(outcome["output"])
    except InvalidStateError:
        pass  # cancelled meanwhile


class Waitable(SubmittingAgent):
    """``function`` run on a thread of its own after ``delay`` seconds. Its outcome can
    be waited for in a blocking call, which it offers to the thread that invoked the run;
    a call that thread does not take is followed from a thread of its own (as Ray follows
    a ref from its callback thread)."""

    def __init__(self, function: Callable[[Any], Any], delay: float = 0.0) -> None:
        self.function = function
        self.delay = delay
        self.waited_on: list[int] = []  # the threads that waited for calls, in order
        self.followed = 0  # calls no lent thread took
        self.handed_back = 0  # calls a lent thread took, then gave back at its run's end
        self.submitted: list[Future] = []

    def submit(self, argument: Any) -> Future:
        future: Future = Future()
        self.submitted.append(future)
        outcome: dict[str, Any] = {}
        finished = threading.Event()

        def work() -> None:
            time.sleep(self.delay)
            try:
                outcome["output"] = self.function(argument)
            except Exception as error:  # noqa: BLE001 - the call's outcome
                outcome["error"] = error
            finished.set()

        def follow() -> None:
            finished.wait()
            _settle(future, outcome)

        def wait() -> Callable[[], None] | None:
            # Looks up now and then: a cancel, or the lender's run ending, ends the wait.
            while not future.done():
                if not lender.lent():  # handed back: followed on its own from now on
                    self.handed_back += 1
                    threading.Thread(target=follow, daemon=True).start()
                    return None
                if finished.wait(0.01):
                    self.waited_on.append(threading.get_ident())
                    return lambda: _settle(future, outcome)
            return None

        threading.Thread(target=work, daemon=True).start()
        lender = lent_thread.get()
        if lender is None or not lender.offer(wait):
            self.followed += 1
            threading.Thread(target=follow, daemon=True).start()
        return future


def test_invoke_waits_for_each_call_of_a_chain_on_its_own_thread():
    agents = [Waitable(lambda x, n=n: [*x, n]) for n in range(3)]
    app = (cp.Graph()
           .add("a", agents[0])
           .add("b", agents[1], after="a")
           .add("c", agents[2], after="b")
           .compile())
    assert app.submits_calls
    assert app.invoke([]) == [0, 1, 2]
    me = threading.get_ident()
    assert [agent.waited_on for agent in agents] == [[me], [me], [me]]
    assert [agent.followed for agent in agents] == [0, 0, 0]


def test_calls_in_parallel_do_not_wait_for_each_other():
    finished: dict[str, float] = {}

    def note(name: str) -> Callable[[Any], Any]:
        def agent(x: Any) -> Any:
            finished[name] = time.monotonic()
            return x
        return agent

    slow, fast = Waitable(note("slow"), delay=0.6), Waitable(note("fast"))
    app = (cp.Graph()
           .add("slow", slow)
           .add("fast", fast)
           .add("after_fast", note("after_fast"), after="fast")
           .add("join", lambda outputs: sorted(outputs), after=["slow", "after_fast"])
           .compile())
    app.invoke(1)
    # One call was lent the thread, the other followed on its own; whichever was lent,
    # the fast call's successor ran while the slow call was still running.
    assert slow.followed + fast.followed == 1
    assert finished["after_fast"] < finished["slow"] - 0.3


def test_the_outputs_and_errors_are_the_agents_own():
    app = cp.Graph().add("remote", Waitable(lambda x: {"missing": x}["key"])).compile()
    with pytest.raises(cp.AgentError) as caught:
        app.invoke(1)
    assert isinstance(caught.value.__cause__, KeyError)
    assert cp.Graph().add("remote", Waitable(str.upper)).compile().invoke("ab") == "AB"


def test_a_timeout_ends_the_wait_and_cancels_the_call():
    hung = Waitable(lambda x: x, delay=30)
    app = cp.Graph().add("remote", hung, timeout=0.2).compile()
    started = time.monotonic()
    with pytest.raises(cp.AgentError, match="timed out"):
        app.invoke(1)
    assert time.monotonic() - started < 5
    assert hung.submitted[0].cancelled()
    assert hung.waited_on == []


def test_a_failing_sibling_ends_the_run_and_the_wait():
    hung = Waitable(lambda x: x, delay=30)

    def fail(x: Any) -> Any:
        time.sleep(0.1)
        raise ValueError("sibling failed")

    app = cp.Graph().add("remote", hung).add("local", fail).compile()
    started = time.monotonic()
    with pytest.raises(cp.AgentError, match="sibling failed"):
        app.invoke(1)
    assert time.monotonic() - started < 5
    assert hung.submitted[0].cancelled()


def test_retries_are_waited_for_on_the_same_thread():
    attempts: list[int] = []

    def flaky(x: Any) -> Any:
        attempts.append(x)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return x * 2

    remote = Waitable(flaky)
    retry = cp.Retry(max_attempts=3, initial_backoff=0.01, retry_on=ConnectionError)
    app = cp.Graph().add("remote", remote, retry=retry).compile()
    assert app.invoke(21) == 42
    assert len(attempts) == 3
    assert remote.waited_on == [threading.get_ident()] * 3


def test_a_run_left_running_by_an_agent_does_not_hold_the_invoke():
    # An agent starts a run of another graph and leaves it running: that run's calls
    # copy the agent's context, lent thread included. The thread waits for them only
    # while its own run is in flight; then it hands them back and invoke returns.
    background = Waitable(lambda x: x * 2, delay=1.5)
    other = cp.Graph().add("remote", background).compile()
    runs: list[Any] = []

    def fire_and_forget(x: Any) -> Any:
        runs.append(other.start(x))
        time.sleep(0.1)  # the background call is offered (and taken) meanwhile
        return x

    app = (cp.Graph()
           .add("local", fire_and_forget, dispatch="thread")
           .add("remote", Waitable(lambda x: x + 1), after="local")
           .compile())
    started = time.monotonic()
    assert app.invoke(4) == 5
    assert time.monotonic() - started < 1.0
    assert runs[0].result(timeout=10) == 8
    assert background.handed_back == 1 and background.waited_on == []


def test_a_graph_knows_whether_its_agents_submit_calls():
    remote = Waitable(lambda x: x)
    inner = cp.Graph().add("remote", remote).compile()
    assert inner.submits_calls
    assert cp.Graph().add("inner", inner).compile().submits_calls
    assert cp.Graph().add("local", lambda x: x, fallback=remote).compile().submits_calls
    assert not cp.Graph().add("local", lambda x: x).compile().submits_calls
    # A nested graph's calls are waited for by the outer invoke's thread too.
    assert cp.Graph().add("inner", inner).compile().invoke(5) == 5
    assert remote.waited_on[-1] == threading.get_ident()


def test_start_and_ainvoke_follow_the_calls_from_their_callbacks():
    remote = Waitable(lambda x: x + 1)
    app = cp.Graph().add("remote", remote).compile()
    assert app.start(1).result(timeout=10) == 2
    assert asyncio.run(app.ainvoke(2)) == 3
    assert remote.waited_on == [] and remote.followed == 2


def test_an_inline_agent_invoking_such_a_graph_is_refused_not_deadlocked():
    inner = cp.Graph().add("remote", Waitable(lambda x: x)).compile()
    app = cp.Graph().add("a", lambda value: inner.invoke(value), dispatch="inline").compile()
    with pytest.raises(cp.AgentError) as info:
        app.invoke(1)
    assert "dispatch='thread'" in str(info.value)


def test_an_agent_on_the_pool_may_invoke_such_a_graph():
    inner = cp.Graph().add("remote", Waitable(lambda x: x * 3)).compile()
    app = cp.Graph().add("a", lambda value: inner.invoke(value), dispatch="thread").compile()
    assert app.invoke(2) == 6


def test_ctrl_c_while_the_thread_waits_for_a_call_interrupts_the_run():
    code = textwrap.dedent(
        """
        import os, signal, sys, threading, time
        sys.path.insert(0, {tests!r})
        import counterpoint as cp
        from test_lent_thread import Waitable

        hung = Waitable(lambda x: x, delay=60)
        app = cp.Graph().add("remote", hung).compile()
        sent = []
        def fire():
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)
        threading.Timer(0.5, fire).start()
        try:
            app.invoke(1)
            print("RESULT returned", flush=True)
        except KeyboardInterrupt:
            print("RESULT KeyboardInterrupt", flush=True)
            print("LATENCY", time.monotonic() - sent[-1], flush=True)
        deadline = time.monotonic() + 5
        while not hung.submitted[0].cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        print("CANCELLED", hung.submitted[0].cancelled(), flush=True)
        """
    ).format(tests=os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert lines["RESULT"] == "KeyboardInterrupt", proc.stdout + proc.stderr
    assert float(lines["LATENCY"]) < 1.0
    assert lines["CANCELLED"] == "True"
