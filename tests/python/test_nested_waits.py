"""A nested wait never deadlocks: agents that wait for other runs either work, or fail
at once with EngineError naming the fix, and the engine always recovers. Each scenario
runs in a fresh interpreter with a timeout, since the failure being guarded against is a
hang."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def _run(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env)
    detail = f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, detail
    return proc


def test_coroutine_agent_calling_invoke_fails_at_once_and_loop_keeps_working() -> None:
    proc = _run(
        """
        import asyncio, time
        import counterpoint as cp

        async def leaf(x):
            await asyncio.sleep(0)
            return x + 1

        inner = cp.Graph().add("leaf", leaf).compile()

        async def outer_agent(x):
            return inner.invoke(x)      # blocks the engine's event loop: refused

        outer = cp.Graph().add("outer", outer_agent).compile()
        started = time.monotonic()
        try:
            outer.invoke(1)
        except cp.AgentError as exc:
            assert isinstance(exc.__cause__, cp.EngineError), repr(exc.__cause__)
            assert "ainvoke" in str(exc.__cause__)
            print("refused in", round(time.monotonic() - started, 3))
        # Every coroutine agent of the process still works afterwards.
        assert inner.invoke(1) == 2
        assert outer.batch([1, 2], return_exceptions=True)[0].__class__ is cp.AgentError

        async def awaiting_agent(x):
            return await inner.ainvoke(x)  # the documented way works

        assert cp.Graph().add("a", awaiting_agent).compile().invoke(5) == 6
        print("ok")
        """
    )
    assert "ok" in proc.stdout


def test_coroutine_agent_invoking_sync_graph_under_ainvoke_does_not_hang() -> None:
    proc = _run(
        """
        import asyncio
        import counterpoint as cp

        inner = cp.Graph().add("double", lambda x: 2 * x).compile()

        async def outer_agent(x):
            return inner.invoke(x)  # on the caller's own loop: allowed, never a deadlock

        outer = cp.Graph().add("outer", outer_agent).compile()
        assert asyncio.run(outer.ainvoke(4)) == 8
        print("ok")
        """
    )
    assert "ok" in proc.stdout


def test_fan_out_of_agents_that_invoke_another_graph_completes() -> None:
    proc = _run(
        """
        import time
        import counterpoint as cp

        def slow(x):
            time.sleep(0.001)
            return x

        sub = cp.Graph().add("work", slow, dispatch="thread").compile()
        app = cp.fan_out(lambda i: sub.invoke(i), over=lambda n: range(n))
        started = time.monotonic()
        assert app.invoke(1500) == list(range(1500))
        print("fan-out done in", round(time.monotonic() - started, 2))
        assert app.invoke(10) == list(range(10))   # and the engine recovered
        print("ok")
        """,
        timeout=120.0,
    )
    assert "ok" in proc.stdout


def test_deep_recursive_invoke_completes_or_fails_clearly_and_recovers() -> None:
    proc = _run(
        """
        import counterpoint as cp

        holder = {}

        def recurse(n):
            return n if n == 0 else holder["app"].invoke(n - 1)

        holder["app"] = cp.Graph().add("r", recurse, dispatch="thread").compile()
        try:
            print("result", holder["app"].invoke(1100))
        except cp.AgentError as exc:
            chain = exc
            while isinstance(chain, cp.AgentError):
                chain = chain.__cause__
            assert isinstance(chain, cp.EngineError), repr(chain)
            print("refused", chain)
        assert holder["app"].invoke(3) == 0   # the pool recovered
        print("ok")
        """,
        timeout=120.0,
    )
    assert "ok" in proc.stdout
