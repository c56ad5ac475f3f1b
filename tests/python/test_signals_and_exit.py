"""Ctrl-C and interpreter exit with runs in flight. Each scenario runs in a fresh
interpreter (signals and finalization cannot be exercised safely in-process)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

PRELUDE = textwrap.dedent(
    """
    import asyncio, os, signal, sys, threading, time
    import counterpoint as cp

    _sent = []

    def interrupt_after(seconds):
        def fire():
            _sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)
        threading.Timer(seconds, fire).start()

    def latency():
        return time.monotonic() - _sent[-1]
    """
)


def _run(code: str, timeout: float, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    full_env = dict(os.environ, **env)
    full_env.pop("PYTHONPATH", None)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    return proc, time.monotonic() - started


def _assert_clean_exit(proc: subprocess.CompletedProcess) -> None:
    detail = f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, detail
    for crash in ("Fatal Python error", "Segmentation fault", "core dumped", "FATAL", "terminate called"):
        assert crash not in proc.stderr, detail


def _value(proc: subprocess.CompletedProcess, key: str) -> str:
    for line in proc.stdout.splitlines():
        if line.startswith(key + " "):
            return line[len(key) + 1 :]
    raise AssertionError(
        f"{key!r} not printed; rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )


# --------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_during_invoke_raises_promptly_and_stops_the_run():
    code = """
    started = []
    first_done = threading.Event()

    def slow(x):
        time.sleep(5)
        first_done.set()
        return x

    def second(x):
        started.append("second")
        return x

    app = cp.Graph().add("slow", slow).add("second", second, after="slow").compile()
    interrupt_after(0.3)
    try:
        app.invoke(1)
        print("RESULT returned", flush=True)
    except KeyboardInterrupt:
        print("RESULT KeyboardInterrupt", flush=True)
        print("LATENCY", latency(), flush=True)
    first_done.wait(10)   # the blocking agent cannot be interrupted; let it return
    time.sleep(0.3)       # a wrongly scheduled successor would start now
    print("SECOND_STARTED", bool(started), flush=True)
    """
    proc, _ = _run(code, timeout=60)
    _assert_clean_exit(proc)
    assert _value(proc, "RESULT") == "KeyboardInterrupt"
    assert float(_value(proc, "LATENCY")) < 1.0
    assert _value(proc, "SECOND_STARTED") == "False"


def test_ctrl_c_during_invoke_of_async_agent_cancels_the_coroutine():
    code = """
    log = []

    async def slow(x):
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
        log.append("slow.end")
        return x

    def second(x):
        log.append("second")
        return x

    app = cp.Graph().add("slow", slow).add("second", second, after="slow").compile()
    interrupt_after(0.3)
    try:
        app.invoke(1)
        print("RESULT returned", flush=True)
    except KeyboardInterrupt:
        print("RESULT KeyboardInterrupt", flush=True)
        print("LATENCY", latency(), flush=True)
    time.sleep(0.5)
    print("LOG", ",".join(log), flush=True)
    """
    proc, _ = _run(code, timeout=60)
    _assert_clean_exit(proc)
    assert _value(proc, "RESULT") == "KeyboardInterrupt"
    assert float(_value(proc, "LATENCY")) < 1.0
    assert _value(proc, "LOG") == "cancelled"


def test_ctrl_c_during_stream():
    code = """
    log = []

    def slow(x):
        time.sleep(1.5)
        log.append("slow.end")
        return x

    app = (
        cp.Graph()
        .add("slow", slow)
        .add("second", lambda x: log.append("second"), after="slow")
        .compile()
    )
    interrupt_after(0.3)
    try:
        for event in app.stream(1, stream_mode="events"):
            pass
        print("RESULT returned", flush=True)
    except KeyboardInterrupt:
        print("RESULT KeyboardInterrupt", flush=True)
        print("LATENCY", latency(), flush=True)
    time.sleep(1.7)
    print("LOG", ",".join(log), flush=True)
    """
    proc, _ = _run(code, timeout=60)
    _assert_clean_exit(proc)
    assert _value(proc, "RESULT") == "KeyboardInterrupt"
    assert float(_value(proc, "LATENCY")) < 1.0
    assert _value(proc, "LOG") == "slow.end"


def test_ctrl_c_during_asyncio_run_ainvoke():
    code = """
    log = []

    async def slow(x):
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
        return x

    app = (
        cp.Graph()
        .add("slow", slow)
        .add("second", lambda x: log.append("second"), after="slow")
        .compile()
    )
    interrupt_after(0.3)
    try:
        asyncio.run(app.ainvoke(1))
        print("RESULT returned", flush=True)
    except KeyboardInterrupt:
        print("RESULT KeyboardInterrupt", flush=True)
        print("LATENCY", latency(), flush=True)
    time.sleep(0.3)
    print("LOG", ",".join(log), flush=True)
    """
    proc, _ = _run(code, timeout=60)
    _assert_clean_exit(proc)
    assert _value(proc, "RESULT") == "KeyboardInterrupt"
    assert float(_value(proc, "LATENCY")) < 1.0
    assert _value(proc, "LOG") == "cancelled"


def test_ctrl_c_during_batch_raises_promptly_and_stops_every_run():
    code = """
    lock = threading.Lock()
    slow_done, second_started = [], []

    def slow(x):
        time.sleep(1.5)
        with lock:
            slow_done.append(x)
        return x

    def second(x):
        with lock:
            second_started.append(x)
        return x

    app = cp.Graph().add("slow", slow).add("second", second, after="slow").compile()
    interrupt_after(0.3)
    try:
        app.batch(range(6), max_concurrency=3)
        print("RESULT returned", flush=True)
    except KeyboardInterrupt:
        print("RESULT KeyboardInterrupt", flush=True)
        print("LATENCY", latency(), flush=True)
    time.sleep(2.0)  # the three started agents return; nothing may follow them
    print("SLOW_DONE", sorted(slow_done), flush=True)
    print("SECOND_STARTED", sorted(second_started), flush=True)
    """
    proc, _ = _run(code, timeout=60)
    _assert_clean_exit(proc)
    assert _value(proc, "RESULT") == "KeyboardInterrupt"
    assert float(_value(proc, "LATENCY")) < 1.0
    # only the first max_concurrency runs ever started; none continued past "slow"
    assert _value(proc, "SLOW_DONE") == "[0, 1, 2]"
    assert _value(proc, "SECOND_STARTED") == "[]"


def test_ctrl_c_then_app_still_usable():
    code = """
    def slow(x):
        time.sleep(0.8)
        return x * 2

    app = cp.Graph().add("slow", slow).compile()
    interrupt_after(0.2)
    try:
        app.invoke(1)
    except KeyboardInterrupt:
        print("INTERRUPTED yes", flush=True)
    print("AGAIN", app.invoke(21), flush=True)
    """
    proc, _ = _run(code, timeout=60)
    _assert_clean_exit(proc)
    assert _value(proc, "INTERRUPTED") == "yes"
    assert _value(proc, "AGAIN") == "42"


# ------------------------------------------------------------------ interpreter exit


def test_exit_with_runs_in_flight_in_daemon_threads():
    code = """
    def slow(x):
        time.sleep(30)
        return x

    async def aslow(x):
        await asyncio.sleep(30)
        return x

    def after(x):
        print("AFTER_RAN", flush=True)

    sync_app = cp.Graph().add("slow", slow).add("after", after, after="slow").compile()
    async_app = cp.Graph().add("aslow", aslow).add("after", after, after="aslow").compile()

    def run(call):
        try:
            call()
        except cp.RunCancelled:
            pass

    calls = [
        lambda: sync_app.invoke(1),
        lambda: async_app.invoke(1),
        lambda: sync_app.batch([1, 2, 3]),
        lambda: async_app.batch([1, 2]),
        lambda: list(sync_app.stream(1, stream_mode="events")),
        lambda: asyncio.run(async_app.ainvoke(1)),
    ]
    for call in calls:
        threading.Thread(target=run, args=(call,), daemon=True).start()
    time.sleep(0.5)
    print("EXITING", flush=True)
    """
    proc, elapsed = _run(code, timeout=60)
    _assert_clean_exit(proc)
    assert "EXITING" in proc.stdout
    assert "AFTER_RAN" not in proc.stdout
    assert elapsed < 15


def test_exit_with_uncaught_cancellations_in_daemon_threads_still_exits_zero():
    code = """
    def slow(x):
        time.sleep(30)
        return x

    async def aslow(x):
        await asyncio.sleep(30)
        return x

    sync_app = cp.Graph().add("slow", slow).compile()
    async_app = cp.Graph().add("aslow", aslow).compile()
    for call in (lambda: sync_app.invoke(1), lambda: async_app.invoke(1),
                 lambda: sync_app.batch([1, 2])):
        threading.Thread(target=call, daemon=True).start()
    time.sleep(0.5)
    print("EXITING", flush=True)
    """
    proc, elapsed = _run(code, timeout=60)
    _assert_clean_exit(proc)
    assert elapsed < 15


def test_exit_while_ainvoke_pending_after_wait_for_timeout():
    code = """
    def slow(x):
        time.sleep(30)
        return x

    async def aslow(x):
        await asyncio.sleep(30)
        return x

    def after(x):
        print("AFTER_RAN", flush=True)

    sync_app = cp.Graph().add("slow", slow).add("after", after, after="slow").compile()
    async_app = cp.Graph().add("aslow", aslow).add("after", after, after="aslow").compile()

    async def main():
        pending = asyncio.gather(sync_app.ainvoke(1), async_app.ainvoke(2))
        try:
            await asyncio.wait_for(pending, timeout=0.3)
        except asyncio.TimeoutError:
            print("TIMED_OUT yes", flush=True)

    asyncio.run(main())
    print("EXITING", flush=True)
    """
    proc, elapsed = _run(code, timeout=60)
    _assert_clean_exit(proc)
    assert _value(proc, "TIMED_OUT") == "yes"
    assert "AFTER_RAN" not in proc.stdout
    assert elapsed < 15


def test_exit_with_unawaited_ainvoke_task_in_flight():
    """asyncio.run returns while a fire-and-forget ainvoke task is still pending."""
    code = """
    async def aslow(x):
        await asyncio.sleep(30)
        return x

    app = cp.Graph().add("aslow", aslow).compile()

    async def main():
        asyncio.get_running_loop().create_task(app.ainvoke(1))
        await asyncio.sleep(0.2)

    asyncio.run(main())
    print("EXITING", flush=True)
    """
    proc, elapsed = _run(code, timeout=60)
    _assert_clean_exit(proc)
    assert elapsed < 15


@pytest.mark.parametrize("dispatch", ["thread", "inline"])
def test_exit_while_an_agent_is_running_python_code(dispatch):
    """An agent still executing Python (CPU-bound, holding/competing for the GIL) when
    the interpreter finalizes must not crash the process."""
    code = f"""
    def busy(x):
        end = time.monotonic() + 30
        while time.monotonic() < end:
            pass
        return x

    app = cp.Graph().add("busy", busy, dispatch={dispatch!r}).compile()

    def run():
        try:
            app.invoke(1)
        except cp.RunCancelled:
            pass

    threading.Thread(target=run, daemon=True).start()
    time.sleep(0.5)
    print("EXITING", flush=True)
    """
    proc, elapsed = _run(code, timeout=60, COUNTERPOINT_EXIT_DRAIN_SECONDS="0.5")
    _assert_clean_exit(proc)
    assert elapsed < 15


def test_exit_while_async_agent_runs_python_code():
    code = """
    async def busy(x):
        end = time.monotonic() + 30
        while time.monotonic() < end:
            pass
        return x

    app = cp.Graph().add("busy", busy).compile()

    def run():
        try:
            app.invoke(1)
        except cp.RunCancelled:
            pass

    threading.Thread(target=run, daemon=True).start()
    time.sleep(0.5)
    print("EXITING", flush=True)
    """
    proc, elapsed = _run(code, timeout=60, COUNTERPOINT_EXIT_DRAIN_SECONDS="0.5")
    _assert_clean_exit(proc)
    assert elapsed < 15


def test_exit_after_normal_use_is_quick_and_clean():
    code = """
    async def a(x):
        return x + 1

    app = cp.Graph().add("a", a).add("b", lambda x: x * 2, after="a").compile()
    assert app.invoke(1) == 4
    assert app.batch([1, 2]) == [4, 6]
    assert asyncio.run(app.ainvoke(1)) == 4
    print("DONE yes", flush=True)
    """
    proc, elapsed = _run(code, timeout=60)
    _assert_clean_exit(proc)
    assert _value(proc, "DONE") == "yes"
    assert proc.stderr == ""
    assert elapsed < 10
