"""An agent that raises stops its run with an AgentError carrying what users need."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
import traceback

import pytest

import counterpoint as cp


class Boom(Exception):
    pass


def _failing_graph(raiser, record):
    """classify -> (billing: raises, shipping: ok) -> reply; billing also has a child."""

    def track(name, fn=lambda x: x):
        def agent(x):
            record.append(name)
            return fn(x)

        return agent

    g = (
        cp.Graph()
        .add("classify", track("classify", lambda x: f"c({x})"))
        .add("billing", raiser, after="classify")
        .add("billing_child", track("billing_child"), after="billing")
        .add("shipping", track("shipping", lambda x: f"s({x})"), after="classify")
        .add("reply", track("reply"), after=["billing_child", "shipping"])
    )
    return g.compile()


def test_agent_error_names_agent_and_chains_the_same_exception_object():
    raised = []
    record = []

    def billing(x):
        exc = Boom("card declined")
        raised.append(exc)
        raise exc

    app = _failing_graph(billing, record)
    with pytest.raises(cp.AgentError) as info:
        app.invoke("q")
    err = info.value
    assert isinstance(err, cp.CounterpointError)
    assert err.agent == "billing"
    assert err.__cause__ is raised[0]
    assert isinstance(err.__cause__, Boom)
    assert "billing" in str(err)
    assert "card declined" in str(err)
    assert "Boom" in str(err)
    assert isinstance(err.run_id, int)


def test_outputs_of_finished_agents_and_downstream_never_starts():
    record = []

    def billing(x):
        time.sleep(0.3)  # shipping (instant) has long finished when this raises
        raise Boom("no")

    def shipping(x):
        record.append("shipping")
        return f"s({x})"

    g = (
        cp.Graph()
        .add("classify", lambda x: f"c({x})")
        .add("billing", billing, after="classify")
        .add("billing_child", lambda x: record.append("billing_child"), after="billing")
        .add("shipping", shipping, after="classify")
        .add("reply", lambda d: record.append("reply"), after=["billing_child", "shipping"])
    )
    app = g.compile()
    with pytest.raises(cp.AgentError) as info:
        app.invoke("q")
    err = info.value
    assert err.agent == "billing"
    assert err.outputs == {"classify": "c(q)", "shipping": "s(c(q))"}
    assert "billing" not in err.outputs
    time.sleep(0.1)  # a late start would have shown up by now
    assert "billing_child" not in record
    assert "reply" not in record


def test_downstream_of_failed_entry_never_starts():
    started = []

    def first(x):
        raise Boom("first")

    g = (
        cp.Graph()
        .add("first", first)
        .add("second", lambda x: started.append("second"), after="first")
        .add("third", lambda x: started.append("third"), after="second")
    )
    with pytest.raises(cp.AgentError) as info:
        g.compile().invoke(1)
    assert info.value.agent == "first"
    assert info.value.outputs == {}
    time.sleep(0.1)
    assert started == []


def test_traceback_preserved_on_cause():
    def deep_helper():
        raise Boom("deep")

    def agent(x):
        deep_helper()

    app = cp.Graph().add("agent", agent).compile()
    with pytest.raises(cp.AgentError) as info:
        app.invoke(1)
    cause = info.value.__cause__
    assert cause.__traceback__ is not None
    frames = [frame.name for frame in traceback.extract_tb(cause.__traceback__)]
    assert "agent" in frames
    assert "deep_helper" in frames
    rendered = "".join(traceback.format_exception(info.value))
    assert "deep_helper" in rendered
    assert "direct cause" in rendered


def test_async_agent_raising():
    raised = []

    async def fetch(x):
        await asyncio.sleep(0.01)
        exc = Boom("timeout talking to LLM")
        raised.append(exc)
        raise exc

    started = []
    g = (
        cp.Graph()
        .add("prep", lambda x: x + 1)
        .add("fetch", fetch, after="prep")
        .add("post", lambda x: started.append(x), after="fetch")
    )
    app = g.compile()
    for run in (app.invoke, lambda x: asyncio.run(app.ainvoke(x))):
        raised.clear()
        with pytest.raises(cp.AgentError) as info:
            run(1)
        err = info.value
        assert err.agent == "fetch"
        assert err.__cause__ is raised[0]
        assert err.__cause__.__traceback__ is not None
        assert "fetch" in [f.name for f in traceback.extract_tb(err.__cause__.__traceback__)]
        assert err.outputs == {"prep": 2}
    time.sleep(0.05)
    assert started == []


def test_runnable_invoke_raising():
    class Runnable:
        def invoke(self, x):
            raise KeyError("missing")

    with pytest.raises(cp.AgentError) as info:
        cp.Graph().add("r", Runnable()).compile().invoke(1)
    assert info.value.agent == "r"
    assert isinstance(info.value.__cause__, KeyError)


@pytest.mark.parametrize("dispatch", ["auto", "thread", "inline"])
def test_errors_in_every_dispatch_mode(dispatch):
    calls = 0

    def agent(x):
        nonlocal calls
        calls += 1
        if x < 0:
            raise ValueError(f"negative: {x}")
        return x

    app = cp.Graph().add("a", agent, dispatch=dispatch).compile()
    for i in range(20):  # warm "auto" up to inline
        assert app.invoke(i) == i
    with pytest.raises(cp.AgentError) as info:
        app.invoke(-3)
    assert isinstance(info.value.__cause__, ValueError)
    assert "negative: -3" in str(info.value)
    assert info.value.__cause__.__traceback__ is not None
    assert app.invoke(5) == 5  # the app still works


def test_sync_function_returning_coroutine_gives_clear_type_error_cause():
    async def real(x):
        return x

    def forgot_async(x):
        return real(x)  # a coroutine, never awaited

    app = cp.Graph().add("forgot_async", forgot_async).compile()
    with pytest.raises(cp.AgentError) as info:
        app.invoke(1)
    err = info.value
    assert err.agent == "forgot_async"
    assert "async def" in str(err)
    assert isinstance(err.__cause__, TypeError)
    assert "async def" in str(err.__cause__)


def test_sync_function_returning_coroutine_does_not_warn_never_awaited():
    # filterwarnings=error turns a "coroutine ... was never awaited" RuntimeWarning
    # into a failure (or an unraisable-exception warning at gc).
    import gc

    async def real(x):
        return x

    app = cp.Graph().add("f", lambda x: real(x)).compile()
    with pytest.raises(cp.AgentError):
        app.invoke(1)
    gc.collect()


def test_run_ids_differ_between_runs():
    def agent(x):
        raise Boom(str(x))

    app = cp.Graph().add("a", agent).compile()
    ids = set()
    for i in range(3):
        with pytest.raises(cp.AgentError) as info:
            app.invoke(i)
        ids.add(info.value.run_id)
    assert len(ids) == 3


def test_base_exception_subclasses_in_agents_surface():
    class Fatal(BaseException):
        pass

    def agent(x):
        raise Fatal("stop")

    with pytest.raises((cp.AgentError, Fatal)) as info:
        cp.Graph().add("a", agent).compile().invoke(1)
    err = info.value
    if isinstance(err, cp.AgentError):
        assert isinstance(err.__cause__, Fatal)


def test_exception_with_unprintable_str_still_reports():
    class Weird(Exception):
        def __str__(self):
            return ""

    def agent(x):
        raise Weird()

    with pytest.raises(cp.AgentError) as info:
        cp.Graph().add("a", agent).compile().invoke(1)
    assert info.value.agent == "a"
    assert "Weird" in str(info.value)


def test_stream_yields_error_event_then_raises():
    raised = []

    def bad(x):
        exc = Boom("stream boom")
        raised.append(exc)
        raise exc

    started = []
    g = (
        cp.Graph()
        .add("ok", lambda x: x)
        .add("bad", bad, after="ok")
        .add("never", lambda x: started.append(x), after="bad")
    )
    events = []
    with pytest.raises(cp.AgentError) as info:
        for event in g.compile().stream(1, stream_mode="events"):
            events.append(event)
    assert info.value.agent == "bad"
    assert info.value.__cause__ is raised[0]
    errors = [e for e in events if e.kind == "error"]
    assert len(errors) == 1
    assert errors[0].agent == "bad"
    assert errors[0].error is raised[0]
    assert "stream boom" in errors[0].message
    assert errors[0].run_id == info.value.run_id
    assert not any(e.kind == "end" for e in events)
    assert not any(e.agent == "never" for e in events)
    # the error event comes after bad's start
    kinds = [(e.kind, e.agent) for e in events]
    assert kinds.index(("start", "bad")) < kinds.index(("error", "bad"))
    assert started == []


def test_failure_in_one_parallel_branch_cancels_slow_siblings_descendants():
    started = []

    def slow(x):
        time.sleep(0.3)
        return x

    def fail(x):
        raise Boom("fast failure")

    g = (
        cp.Graph()
        .add("src", lambda x: x)
        .add("slow", slow, after="src")
        .add("slow_child", lambda x: started.append("slow_child"), after="slow")
        .add("fail", fail, after="src")
    )
    t0 = time.monotonic()
    with pytest.raises(cp.AgentError) as info:
        g.compile().invoke(1)
    assert info.value.agent == "fail"
    time.sleep(0.5)
    assert started == []
    assert time.monotonic() - t0 < 5


def test_async_agent_raising_system_exit_does_not_break_later_invokes():
    """SystemExit/KeyboardInterrupt raised by a coroutine agent under invoke() must not
    take down the engine's event loop: later runs with async agents must still finish.
    Run in a subprocess: a dead engine loop would hang every later test."""
    code = textwrap.dedent(
        """
        import sys, threading
        import counterpoint as cp

        async def exits(x):
            sys.exit(3)

        async def ok(x):
            return x + 1

        try:
            cp.Graph().add("exits", exits).compile().invoke(1)
            print("FIRST: no error")
        except cp.AgentError as e:
            print("FIRST:", type(e.__cause__).__name__)
        except BaseException as e:
            print("FIRST raised", type(e).__name__)

        app = cp.Graph().add("ok", ok).compile()
        result = []
        t = threading.Thread(target=lambda: result.append(app.invoke(41)), daemon=True)
        t.start()
        t.join(3)
        print("SECOND:", result, flush=True)
        """
    )
    env = dict(os.environ, COUNTERPOINT_EXIT_DRAIN_SECONDS="0.5")
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert "FIRST: SystemExit" in proc.stdout, proc.stdout + proc.stderr
    assert "SECOND: [42]" in proc.stdout, proc.stdout + proc.stderr


def test_inline_agent_waiting_for_a_run_is_refused_not_deadlocked():
    # An inline agent runs on an engine worker: waiting there for another run could leave
    # the engine without workers, so it gets a clear error instead.
    inner = cp.Graph().add("x", lambda value: value).compile()
    app = cp.Graph().add("a", lambda value: inner.invoke(value), dispatch="inline").compile()
    with pytest.raises(cp.AgentError) as info:
        app.invoke(1)
    assert "dispatch='thread'" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
