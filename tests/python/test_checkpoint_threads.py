"""Checkpoint writer threads never accumulate: one per live store, stopped by
``store.close()`` and when the store is garbage-collected (a notebook cell re-run)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest

import counterpoint as cp


def _checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "counterpoint-checkpoints"]


def _native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _settle(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _graph() -> cp.Graph:
    return cp.Graph().add("a", lambda x: x + 1).add("b", lambda x: x * 2, after="a")


def _engine_pool_threads() -> int:
    return cp._core.stats()["pool_threads"]


def test_twenty_compiles_with_a_store_path_leave_no_threads_behind(stores):
    # What re-running a notebook cell does: compile with the same path, run, repeat.
    path = stores.location()
    _graph().compile(store=path).invoke(0)  # warm the engine up first
    gc.collect()
    assert _settle(lambda: len(_checkpoint_threads()) == 0)
    native_before, pool_before = _native_threads(), _engine_pool_threads()
    for i in range(20):
        app = _graph().compile(store=path)
        assert app.invoke(i) == (i + 1) * 2
    del app
    gc.collect()
    assert _settle(lambda: len(_checkpoint_threads()) == 0), _checkpoint_threads()
    # Native threads too: all but the engine's elastic pool (which earlier tests' agents
    # may still be growing or shrinking) are back to where they were. Under load a
    # retiring writer thread can take a moment to be gone from /proc.
    assert _settle(lambda: _native_threads() - native_before
                   <= max(0, _engine_pool_threads() - pool_before)), (
        _native_threads(), native_before, _engine_pool_threads(), pool_before)


def test_a_store_whose_agent_failed_to_store_its_output_is_freed(stores):
    """The failed agent's StoreError (its traceback holds the store) is released once the
    run is dropped, not kept until some later run: the store and its writer go."""
    store = stores.open()
    app = cp.Graph().add("a", lambda x: object()).compile(store=store)  # not storable
    with pytest.raises(cp.AgentError) as caught:
        app.invoke(1)
    assert isinstance(caught.value.__cause__, cp.StoreError)
    alive = weakref.ref(store)
    del app, store, caught
    for _ in range(3):  # the release queued off the GIL runs on this thread's next steps
        gc.collect()
        time.sleep(0.01)
    assert _settle(lambda: gc.collect() >= 0 and alive() is None)
    assert _settle(lambda: len(_checkpoint_threads()) == 0), _checkpoint_threads()


def test_a_failed_agents_locals_are_freed_with_its_run():
    freed = []

    class Held:
        def __del__(self):
            freed.append(True)

    def boom(x):
        held = Held()  # noqa: F841 - kept alive by the traceback's frame
        raise ValueError("boom")

    app = cp.Graph().add("a", boom).compile()
    with pytest.raises(cp.AgentError):
        app.invoke(1)
    assert _settle(lambda: gc.collect() >= 0 and freed == [True])


def test_a_live_store_has_one_writer_however_many_graphs_use_it(stores):
    store = stores.open()
    apps = [_graph().compile(store=store) for _ in range(20)]
    for i, app in enumerate(apps):
        assert app.invoke(i) == (i + 1) * 2
    assert len(_checkpoint_threads()) == 1
    store.close()
    # close() waits for the writer: no sleep needed.
    assert _checkpoint_threads() == []


def test_close_stops_the_writer_and_later_use_is_a_store_error(stores):
    store = stores.open()
    app = _graph().compile(store=store)
    assert app.invoke(1) == 4
    assert len(_checkpoint_threads()) == 1
    store.close()
    assert _checkpoint_threads() == []
    store.close()  # idempotent
    try:
        app.invoke(2)
    except cp.StoreError as exc:
        assert "closed" in str(exc)
    else:
        raise AssertionError("a closed store accepted a run")
    assert _checkpoint_threads() == []


def test_closing_a_store_with_a_run_in_flight_fails_the_run_not_the_process(stores):
    store = stores.open()
    release = threading.Event()

    def slow(x):
        release.wait(10)
        return x

    app = cp.Graph().add("slow", slow, dispatch="thread").compile(store=store)
    run = app.start(1)
    store.close()
    release.set()
    # The outcome cannot be written, so the agent fails; the wait that would record
    # the run's end says why it could not.
    with pytest.raises(cp.StoreError, match="closed"):
        run.wait(10)
    assert run.done and run.status == "failed"
    record = run.record()
    assert "closed" in record.agents["slow"].error
    assert _checkpoint_threads() == []


def test_a_custom_store_that_calls_super_close_stops_its_writer(stores):
    class Wrapped(cp.Store):
        def __init__(self, inner):
            self.inner = inner

        def begin_run(self, run_key, graph, input):
            self.inner.begin_run(run_key, graph, input)

        def save_outcomes(self, run_key, outcomes):
            return self.inner.save_outcomes(run_key, outcomes)

        def set_status(self, run_key, status):
            self.inner.set_status(run_key, status)

        def load_run(self, run_key):
            return self.inner.load_run(run_key)

        def runs(self, status=None, *, graph=None):
            return self.inner.runs(status, graph=graph)

        def close(self):
            super().close()
            self.inner.close()

    store = Wrapped(stores.open())
    assert _graph().compile(store=store).invoke(1) == 4
    assert len(_checkpoint_threads()) == 1
    store.close()
    assert _checkpoint_threads() == []


def test_exit_after_many_compiles_is_clean(stores):
    # Writers retired by garbage collection are still waited for at exit: a writer
    # thread inside the native hook while the interpreter finalizes would abort.
    code = textwrap.dedent(
        f"""
        import counterpoint as cp
        for i in range(20):
            app = cp.Graph().add("a", lambda x: x).compile(store={stores.location()!r})
            app.invoke(i)
        print("done", flush=True)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    assert proc.stderr == ""


def test_a_store_collected_anywhere_never_deadlocks(stores):
    # A collected store's finalizer runs wherever a garbage collection starts: say, on
    # the thread being started for another store's writer, while the thread starting it
    # holds the module's locks and waits. So the finalizer must take none of them.
    code = textwrap.dedent(
        f"""
        import gc, threading
        import counterpoint as cp
        from counterpoint import _durable

        location = {stores.location()!r}
        store = (cp.PostgresStore if location.startswith("postgres") else cp.SQLiteStore)(
            location)
        store.self = store        # a cycle: only the collector frees it
        app = cp.Graph().add("a", lambda x: x + 1).compile(store=store)
        assert app.invoke(1) == 2
        del app, store
        with _durable._writers_lock, _durable._audited_lock:
            collector = threading.Thread(target=gc.collect)
            collector.start()
            collector.join(20)
            assert not collector.is_alive(), "the store's finalizer waits for a lock"
        app = cp.Graph().add("a", lambda x: x + 1).compile(store={stores.location()!r})
        assert app.invoke(2) == 3
        print("done", flush=True)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"


def test_the_end_of_a_run_is_in_its_audit_log_when_the_run_returns(stores):
    # Whoever sees a durable run's end first writes its end entries: often the
    # checkpoint writer's thread. The waiter returns only once they are written.
    app = cp.Graph().add("a", lambda x: x).compile(store=stores.location())
    for i in range(100):
        record = app.run(i)
        assert app.store.audit(record.run_key)[-1].kind == "run_finished", i
