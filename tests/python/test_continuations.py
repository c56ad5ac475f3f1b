"""Continuations (`then`, as cp.loop and cp.group_chat use them) whose agents are
coroutines, under concurrency and with graphs dropped while runs are in flight: nothing
that crosses threads may borrow, so this must neither crash nor read freed names."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap


def test_many_concurrent_async_loops_survive_their_graphs_being_dropped():
    code = textwrap.dedent(
        """
        import asyncio, gc
        import counterpoint as cp

        async def worker(state):
            await asyncio.sleep(0)
            return (state["draft"] or 0) + 1

        async def evaluator(state):
            await asyncio.sleep(0)
            return state["draft"] >= 4

        for round in range(30):
            app = cp.loop(worker, evaluator, max_iterations=6)
            runs = [app.start(i) for i in range(40)]
            del app
            gc.collect()
            for run in runs:
                result = run.result()
                assert result.value == 4 and result.iterations == 4, result
            events = [e.agent for e in cp.loop(worker, evaluator).stream(0, stream_mode="events") if e.agent]
            assert any(name.startswith("loop/") for name in events), events
        print("ok")
        """
    )
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "ok" in proc.stdout


def test_cancelled_async_loops_leave_no_runs_behind():
    import counterpoint as cp
    from counterpoint._native import _core

    async def worker(state):
        await asyncio.sleep(0.01)
        return 1

    async def evaluator(state):
        return False

    app = cp.loop(worker, evaluator, max_iterations=50)
    runs = [app.start(i) for i in range(20)]
    for run in runs:
        run.cancel()
    for run in runs:
        run.wait()
    del app, runs
    gc.collect()
    deadline = 50
    while _core.stats()["live_runs"] and deadline:
        deadline -= 1
        asyncio.run(asyncio.sleep(0.02))
    assert _core.stats()["live_runs"] == 0
