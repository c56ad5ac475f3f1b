"""asyncio integration: ainvoke/abatch/astream on the caller's loop, invoke on the
engine's own loop, cancellation."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import weakref

import pytest

import counterpoint as cp


def test_ainvoke_inside_asyncio_run():
    async def a(x):
        await asyncio.sleep(0.01)
        return x + 1

    app = cp.Graph().add("a", a).add("b", lambda x: x * 2, after="a").compile()

    async def main():
        return await app.ainvoke(1)

    assert asyncio.run(main()) == 4


def test_coroutines_run_on_callers_loop_for_ainvoke():
    seen = {}

    async def agent(x):
        seen["loop"] = asyncio.get_running_loop()
        seen["thread"] = threading.get_ident()
        return x

    app = cp.Graph().add("agent", agent).compile()

    async def main():
        result = await app.ainvoke("x")
        return result, asyncio.get_running_loop(), threading.get_ident()

    result, caller_loop, caller_thread = asyncio.run(main())
    assert result == "x"
    assert seen["loop"] is caller_loop
    assert seen["thread"] == caller_thread


def test_coroutines_run_on_another_threads_loop_for_invoke():
    seen = {}

    async def agent(x):
        seen["loop"] = asyncio.get_running_loop()
        seen["thread"] = threading.get_ident()
        return x

    app = cp.Graph().add("agent", agent).compile()
    assert app.invoke(3) == 3
    assert seen["loop"] is not None
    assert seen["thread"] != threading.get_ident()
    first_loop = seen["loop"]
    # The engine's loop is reused across invokes.
    assert app.invoke(4) == 4
    assert seen["loop"] is first_loop


def test_invoke_from_sync_code_inside_a_running_loop_jupyter_style():
    """Jupyter runs cells inside a running loop; a sync helper calling invoke() there
    must not deadlock or raise 'event loop is already running'."""
    seen = {}

    async def agent(x):
        seen["loop"] = asyncio.get_running_loop()
        await asyncio.sleep(0.01)
        return x * 2

    app = cp.Graph().add("agent", agent).add("after", lambda x: x + 1, after="agent").compile()

    def sync_cell():
        return app.invoke(20)

    async def main():
        result = sync_cell()
        return result, asyncio.get_running_loop()

    result, caller_loop = asyncio.run(main())
    assert result == 41
    assert seen["loop"] is not caller_loop  # the blocked caller loop could not have run it


def test_stream_from_inside_a_running_loop():
    async def agent(x):
        await asyncio.sleep(0.01)
        return x

    app = cp.Graph().add("agent", agent).compile()

    async def main():
        return [e.kind for e in app.stream(1, stream_mode="events")]

    assert asyncio.run(main())[-1] == "end"


def test_cancelling_ainvoke_task_cancels_the_run():
    log = []

    async def slow(x):
        log.append("slow.start")
        try:
            await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            log.append("slow.cancelled")
            raise
        log.append("slow.end")
        return x

    def later(x):
        log.append("later")
        return x

    app = cp.Graph().add("slow", slow).add("later", later, after="slow").compile()

    async def main():
        task = asyncio.create_task(app.ainvoke(1))
        await asyncio.sleep(0.1)
        assert log == ["slow.start"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.7)  # past the point where slow would have finished

    asyncio.run(main())
    assert "later" not in log
    assert "slow.end" not in log
    assert "slow.cancelled" in log


def test_cancelling_ainvoke_cancels_a_coroutine_continued_in_its_predecessors_task():
    # `slow` runs in the task that ran `quick` (its predecessor); cancelling the run must
    # cancel it there, and nothing after it may start.
    log = []

    async def quick(x):
        log.append("quick")
        return x

    async def slow(x):
        log.append("slow.start")
        try:
            await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            log.append("slow.cancelled")
            raise
        log.append("slow.end")
        return x

    async def last(x):
        log.append("last")
        return x

    app = cp.Graph().add("quick", quick).add("slow", slow, after="quick") \
        .add("last", last, after="slow").compile()

    async def main():
        task = asyncio.create_task(app.ainvoke(1))
        await asyncio.sleep(0.1)
        assert log == ["quick", "slow.start"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.7)
        assert await app.ainvoke(2) == 2  # the loop and the bridge still work

    asyncio.run(main())
    assert log[:3] == ["quick", "slow.start", "slow.cancelled"]
    assert "slow.end" not in log[:4] and log.count("last") == 1


def test_cancelling_ainvoke_with_sync_agent_stops_the_run():
    log = []
    slow_returned = threading.Event()

    def slow(x):
        log.append("slow.start")
        time.sleep(0.8)
        log.append("slow.end")
        slow_returned.set()
        return x

    def later(x):
        log.append("later")
        return x

    app = cp.Graph().add("slow", slow).add("later", later, after="slow").compile()

    async def main():
        task = asyncio.create_task(app.ainvoke(1))
        await asyncio.sleep(0.1)
        task.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        # cancellation does not wait for the blocking agent (0.7 s left) to return
        return time.monotonic() - started

    assert asyncio.run(main()) < 0.4
    assert slow_returned.wait(5)  # the thread could not be interrupted...
    time.sleep(0.2)
    assert "later" not in log  # ...but the run stopped there


def test_wait_for_timeout_on_ainvoke():
    log = []

    async def slow(x):
        await asyncio.sleep(2)
        log.append("slow.end")

    app = cp.Graph().add("slow", slow).add("later", lambda x: log.append("later"), after="slow").compile()

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(app.ainvoke(1), timeout=0.1)

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 1.5
    assert log == []


def test_many_concurrent_ainvokes_on_one_loop():
    async def agent(x):
        await asyncio.sleep(0.05)
        return x * x

    app = cp.Graph().add("a", agent).add("b", lambda x: -x, after="a").compile()

    async def main():
        return await asyncio.gather(*(app.ainvoke(i) for i in range(200)))

    started = time.monotonic()
    assert asyncio.run(main()) == [-(i * i) for i in range(200)]
    assert time.monotonic() - started < 5


def test_ainvoke_error_is_agent_error():
    async def bad(x):
        raise RuntimeError("nope")

    app = cp.Graph().add("bad", bad).compile()

    async def main():
        with pytest.raises(cp.AgentError) as info:
            await app.ainvoke(1)
        return info.value

    err = asyncio.run(main())
    assert err.agent == "bad"
    assert isinstance(err.__cause__, RuntimeError)


def test_abatch_results_in_order():
    async def agent(x):
        await asyncio.sleep(0.01 * (5 - x % 5))
        return x * 10

    app = cp.Graph().add("a", agent).compile()

    async def main():
        return await app.abatch(range(20))

    assert asyncio.run(main()) == [i * 10 for i in range(20)]


def test_abatch_return_exceptions():
    async def agent(x):
        if x == 2:
            raise ValueError("two")
        return x

    app = cp.Graph().add("a", agent).compile()

    async def main():
        return await app.abatch([0, 1, 2, 3], return_exceptions=True)

    results = asyncio.run(main())
    assert results[:2] == [0, 1]
    assert results[3] == 3
    assert isinstance(results[2], cp.AgentError)
    assert isinstance(results[2].__cause__, ValueError)

    async def main_raises():
        with pytest.raises(cp.AgentError):
            await app.abatch([0, 2])

    asyncio.run(main_raises())


def test_abatch_runs_concurrently():
    async def agent(x):
        await asyncio.sleep(0.2)
        return x

    app = cp.Graph().add("a", agent).compile()

    async def main():
        started = time.monotonic()
        result = await app.abatch(range(10))
        return result, time.monotonic() - started

    result, elapsed = asyncio.run(main())
    assert result == list(range(10))
    assert elapsed < 1.0


def test_abatch_max_concurrency():
    current = 0
    peak = 0

    async def agent(x):
        nonlocal current, peak
        current += 1
        peak = max(peak, current)
        await asyncio.sleep(0.03)
        current -= 1
        return x

    app = cp.Graph().add("a", agent).compile()

    async def main():
        return await app.abatch(range(12), max_concurrency=3)

    assert asyncio.run(main()) == list(range(12))
    assert 2 <= peak <= 3


@pytest.mark.parametrize("bad", [0, -1, "x"])
def test_abatch_max_concurrency_validation(bad):
    ran = []
    app = cp.Graph().add("a", lambda x: ran.append(x)).compile()

    async def main():
        with pytest.raises(ValueError):
            await app.abatch([1, 2], max_concurrency=bad)

    asyncio.run(main())
    assert ran == []


def test_astream_yields_events():
    async def a(x):
        await asyncio.sleep(0.01)
        return x + 1

    app = cp.Graph().add("a", a).add("b", lambda x: x * 2, after="a").compile()

    async def main():
        return [event async for event in app.astream(1, stream_mode="events")]

    events = asyncio.run(main())
    kinds = [(e.kind, e.agent) for e in events]
    assert kinds.index(("start", "a")) < kinds.index(("finish", "a"))
    assert kinds.index(("finish", "a")) < kinds.index(("start", "b"))
    assert kinds.index(("start", "b")) < kinds.index(("finish", "b"))
    assert events[-1].kind == "end"
    assert events[-1].output == 4
    assert sum(e.kind == "end" for e in events) == 1
    assert len({e.run_id for e in events}) == 1
    finish_a = next(e for e in events if e.kind == "finish" and e.agent == "a")
    assert finish_a.output == 2


def test_astream_error_then_raises():
    async def bad(x):
        raise KeyError("k")

    app = cp.Graph().add("bad", bad).compile()

    async def main():
        events = []
        with pytest.raises(cp.AgentError):
            async for event in app.astream(1, stream_mode="events"):
                events.append(event)
        return events

    events = asyncio.run(main())
    assert [e.kind for e in events if e.agent == "bad"][-1] == "error"


def test_astream_aclose_early_cancels_run():
    log = []

    async def slow(x):
        await asyncio.sleep(0.4)
        log.append("slow.end")
        return x

    app = (
        cp.Graph()
        .add("first", lambda x: x)
        .add("slow", slow, after="first")
        .add("later", lambda x: log.append("later"), after="slow")
        .compile()
    )

    async def main():
        stream = app.astream(1, stream_mode="events")
        async for event in stream:
            if event.kind == "start" and event.agent == "slow":
                break
        await stream.aclose()
        await asyncio.sleep(0.6)

    asyncio.run(main())
    assert "later" not in log


def _slow_graph(log):
    async def slow(x):
        await asyncio.sleep(0.4)
        log.append("slow.end")
        return x

    return (
        cp.Graph()
        .add("first", lambda x: x)
        .add("slow", slow, after="first")
        .add("later", lambda x: log.append("later"), after="slow")
        .compile()
    )


def test_astream_dropped_early_cancels_run_at_once():
    log = []
    app = _slow_graph(log)

    async def main():
        stream = app.astream(1, stream_mode="events")
        async for event in stream:
            if event.kind == "start" and event.agent == "slow":
                break
        del stream  # no aclose(): dropping the iterator ends the run, as closing does
        await asyncio.sleep(0.6)

    asyncio.run(main())
    assert log == []


def test_astream_consumer_cancelled_while_waiting_cancels_run():
    log = []
    app = _slow_graph(log)
    seen = []

    async def consume():
        async for event in app.astream(1, stream_mode="events"):
            seen.append((event.kind, event.agent))

    async def main():
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.1)  # the consumer now waits for "slow"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.6)

    asyncio.run(main())
    assert ("start", "slow") in seen
    assert log == []


def test_astream_starts_nothing_until_iterated_and_aclose_before_is_harmless():
    ran = []
    app = cp.Graph().add("a", lambda x: ran.append(x)).compile()

    async def main():
        stream = app.astream(1, stream_mode="updates")
        await asyncio.sleep(0.05)
        assert ran == []
        assert await stream.aclose() is None
        assert [c async for c in stream] == []  # closed: it ends at once

    asyncio.run(main())
    assert ran == []


def test_astream_needs_async_for():
    app = cp.Graph().add("a", lambda x: x).compile()
    with pytest.raises(TypeError, match="not iterable"):
        for _ in app.astream(1, stream_mode="events"):
            pass


def test_astream_hands_over_none_chunks():
    async def agent(x):
        cp.emit(None)
        cp.emit(x)
        return x

    app = cp.Graph().add("a", agent).compile()

    async def main():
        return [c async for c in app.astream(3, stream_mode="custom")]

    assert asyncio.run(main()) == [None, 3]


def test_ainvoke_from_several_threads_each_with_its_own_loop():
    seen = []

    async def agent(x):
        seen.append((x, threading.get_ident()))
        await asyncio.sleep(0.05)
        return x

    app = cp.Graph().add("a", agent).compile()
    results = {}

    def worker(i):
        results[i] = asyncio.run(app.ainvoke(i))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {i: i for i in range(4)}
    assert len({tid for _, tid in seen}) == 4


def test_repeated_asyncio_run_does_not_leak_loops_or_file_descriptors():
    """A script or server calling asyncio.run(app.ainvoke(...)) repeatedly must not
    accumulate event loops or file descriptors (the per-loop engine bridge must go away
    with its loop)."""

    async def agent(x):
        return x

    app = cp.Graph().add("a", agent).compile()
    asyncio.run(app.ainvoke(0))  # warm-up

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    gc.collect()
    before = open_fds()
    loops = []

    async def main(i):
        loops.append(weakref.ref(asyncio.get_running_loop()))
        return await app.ainvoke(i)

    for i in range(50):
        assert asyncio.run(main(i)) == i
    gc.collect()
    after = open_fds()
    assert after - before < 10, f"{after - before} file descriptors leaked over 50 runs"
    alive = sum(ref() is not None for ref in loops)
    assert alive <= 1, f"{alive} of 50 closed event loops are still referenced"


def test_same_app_invoke_and_ainvoke_interleaved():
    async def agent(x):
        await asyncio.sleep(0.01)
        return x + 1

    app = cp.Graph().add("a", agent).compile()

    async def main():
        loop = asyncio.get_running_loop()
        # a blocking invoke from a worker thread while the loop serves ainvoke
        blocking = loop.run_in_executor(None, app.invoke, 100)
        results = await asyncio.gather(app.ainvoke(1), app.ainvoke(2), blocking)
        return results

    assert asyncio.run(main()) == [2, 3, 101]


def test_coroutine_successors_start_without_leaving_the_loop_thread():
    # Every agent of a coroutine fan-out runs on the caller's loop, inside a task, and the
    # whole run stays on that thread: asyncio.timeout (which needs the current task)
    # works in each agent, and each sees its own input.
    seen = []

    async def step(x):
        async with asyncio.timeout(5):
            await asyncio.sleep(0)
        seen.append((threading.get_ident(), asyncio.current_task()))
        return x + 1

    async def total(parts):
        seen.append((threading.get_ident(), asyncio.current_task()))
        return sum(parts.values())

    g = cp.Graph().add("src", step)
    for i in range(5):
        g.add(f"w{i}", step, after="src")
    app = g.add("join", total, after=[f"w{i}" for i in range(5)]).compile()

    async def main():
        return [await app.ainvoke(i) for i in range(20)], threading.get_ident()

    results, loop_thread = asyncio.run(main())
    assert results == [5 * (i + 2) for i in range(20)]
    assert {thread for thread, _ in seen} == {loop_thread}
    assert all(task is not None for _, task in seen)
    # A task that finishes an agent goes on with one call its outcome unlocked (src with
    # w0, the last worker with join); the other workers get tasks of their own.
    assert len({id(task) for _, task in seen[:7]}) == 5


def test_long_coroutine_chains_succeed_and_skip_past_a_failure():
    # Successors are told on the resolving thread with a bounded nesting depth: a long
    # chain neither overflows the stack when it runs nor when a failure skips all of it.
    async def inc(x):
        return x + 1

    async def boom(x):
        raise ValueError("boom")

    length = 3000
    chain = cp.Graph()
    failing = cp.Graph(on_error="continue").add("head", boom)
    for i in range(length):
        chain.add(f"a{i}", inc, after=f"a{i - 1}" if i else None)
        failing.add(f"a{i}", inc, after=f"a{i - 1}" if i else "head")
    app, skipping = chain.compile(), failing.compile()

    async def main():
        value = await app.ainvoke(0)
        with pytest.raises(cp.AgentError):
            await skipping.ainvoke(0)
        return value

    assert asyncio.run(main()) == length
    assert app.invoke(0) == length
    result = skipping.run(0)
    assert result.status == "failed"
    assert result.agents[f"a{length - 1}"].status == "skipped"
