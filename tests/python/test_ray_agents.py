"""Agents on Ray (executor=cp.ray(...) / cp.ray_actors(...)) behave like local agents
under every policy, against a real local Ray (one start for the module)."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import ray
import ray_agents as agents

import counterpoint as cp

HERE = Path(__file__).parent


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # The workers import the test agents from here (ray_agents.py).
    # address="local": a Ray of this module's own, even if another runs on the machine.
    ray.init(address="local", num_cpus=2, resources={"io": 4}, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(HERE)}})
    yield
    ray.shutdown()


def test_a_task_agent_runs_in_a_ray_worker_between_local_agents():
    app = (cp.Graph()
           .add("prepare", lambda x: x + 1)
           .add("remote", agents.where, after="prepare", executor=cp.ray(num_cpus=1))
           .add("finish", lambda r: (r["pid"], r["input"] * 10), after="remote")
           .compile())
    pid, value = app.invoke(1)
    assert value == 20
    assert pid != os.getpid()
    assert not app.uses_event_loop  # followed from its object ref: no loop, no thread


def test_coroutine_and_runnable_agents_run_as_tasks():
    from langchain_core.runnables import RunnableLambda

    app = (cp.Graph()
           .add("coroutine", agents.async_double, executor=cp.ray())
           .add("runnable", RunnableLambda(agents.double), after="coroutine",
                executor=cp.ray())
           .compile())
    assert app.invoke(3) == 12
    assert asyncio.run(app.ainvoke(4)) == 16


def test_a_chain_of_ray_agents_runs_however_the_run_is_waited_for():
    # Each call is sent from wherever its predecessor's call settled: invoke()'s own
    # thread (which waits in ray.get), or Ray's callback thread (start, ainvoke, batch).
    app = (cp.Graph()
           .add("task", agents.double, executor=cp.ray())
           .add("actor", agents.Nap, after="task", executor=cp.ray_actors(1))
           .add("again", agents.double, after="actor", executor=cp.ray())
           .compile())
    assert app.submits_calls
    assert app.invoke(0.01) == 0.04
    assert app.start(0.02).result(timeout=60) == 0.08
    assert asyncio.run(app.ainvoke(0.03)) == 0.12
    assert app.batch([0.01, 0.02, 0.03]) == [0.04, 0.08, 0.12]


def test_a_ray_call_of_a_run_left_running_does_not_hold_the_invoke():
    # The background run's call copies the agent's context, and with it the outer
    # invoke's lent thread; the thread gives the call back when its own run ends.
    background = cp.Graph().add("nap", agents.Nap, executor=cp.ray_actors(1)).compile()
    runs = []

    def fire_and_forget(x):
        runs.append(background.start(x))
        time.sleep(0.2)
        return x

    app = (cp.Graph()
           .add("local", fire_and_forget, dispatch="thread")
           .add("remote", agents.double, after="local", executor=cp.ray())
           .compile())
    started = time.monotonic()
    assert app.invoke(2.0) == 4.0
    assert time.monotonic() - started < 1.8
    assert runs[0].result(timeout=60) == 2.0


def test_a_ray_agent_goes_anywhere_an_agent_goes():
    remote_double = cp.ray(num_cpus=1)(agents.double)
    app = cp.parallel(a=remote_double, b=agents.double, merge=lambda r: r["a"] + r["b"])
    assert app.invoke(5) == 20


def test_the_agents_own_exception_comes_back_as_itself():
    app = cp.Graph().add("strict", agents.bad_input, executor=cp.ray()).compile()
    with pytest.raises(cp.AgentError) as caught:
        app.invoke(7)
    cause = caught.value.__cause__
    assert type(cause) is ValueError and str(cause) == "bad input 7"
    assert any("raised by agent 'strict' on Ray" in note for note in cause.__notes__)


def test_retries_are_counterpoints_and_match_the_exception_type(tmp_path):
    marker = tmp_path / "calls"
    app = (cp.Graph()
           .add("flaky", agents.flaky, executor=cp.ray(),
                retry=cp.Retry(max_attempts=3, initial_backoff=0.01, retry_on=ConnectionError))
           .compile())
    record = app.run(str(marker))
    assert record.output == "ok after 3 calls"
    assert marker.read_text() == "3"  # Ray retried nothing on its own

    marker.unlink()
    narrow = (cp.Graph()
              .add("flaky", agents.flaky, executor=cp.ray(),
                   retry=cp.Retry(max_attempts=3, initial_backoff=0.01, retry_on=KeyError))
              .compile())
    with pytest.raises(cp.AgentError, match="call 1 failed"):
        narrow.invoke(str(marker))
    assert marker.read_text() == "1"


def test_a_timeout_cancels_the_hanging_task(tmp_path):
    touched = tmp_path / "touched"
    app = cp.Graph().add("hang", agents.sleep_then_touch, executor=cp.ray(),
                         timeout=1).compile()
    started = time.monotonic()
    with pytest.raises(cp.AgentError) as caught:
        app.invoke(str(touched))
    assert isinstance(caught.value.__cause__, cp.AgentTimeout) or "timed out" in str(caught.value)
    assert time.monotonic() - started < 4
    time.sleep(5)  # past the moment the task would have finished
    assert not touched.exists(), "the timed-out Ray task kept running"


def test_cancelling_a_run_cancels_its_ray_task(tmp_path):
    touched = tmp_path / "touched"
    app = cp.Graph().add("hang", agents.sleep_then_touch, executor=cp.ray()).compile()
    run = app.start(str(touched))
    time.sleep(1.0)
    assert run.cancel()
    time.sleep(5)
    assert not touched.exists(), "the cancelled run's Ray task kept running"


def test_a_limit_holds_across_runs_of_ray_agents():
    one_at_a_time = cp.Limit(max_concurrent=1)
    app = cp.Graph().add("remote", agents.spans, executor=cp.ray(),
                         limits=one_at_a_time).compile()
    spans = sorted(app.batch(range(4)))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.01, spans  # never two at once, though Ray has two CPUs
    assert one_at_a_time.snapshot()["max_running_seen"] == 1


def test_a_circuit_breaker_stops_calling_the_cluster():
    breaker = cp.CircuitBreaker(failures=2, window=60, reset_after=60)
    app = cp.Graph().add("strict", agents.bad_input, executor=cp.ray(),
                         breaker=breaker).compile()
    for _ in range(2):
        with pytest.raises(cp.AgentError, match="bad input"):
            app.invoke(1)
    started = time.monotonic()
    with pytest.raises(cp.AgentError) as caught:
        app.invoke(1)
    assert isinstance(caught.value.__cause__, cp.CircuitOpenError) or \
        "circuit" in str(caught.value).lower()
    assert time.monotonic() - started < 0.5  # failed fast: no Ray call
    assert breaker.state == "open"


def test_usage_reported_on_the_cluster_counts_against_the_budget():
    app = (cp.Graph()
           .add("first", agents.costly, executor=cp.ray())
           .add("second", agents.costly, after="first", executor=cp.ray())
           .compile(budget={"tokens": 5}))
    record = app.run(1)
    assert record.agents["first"].usage == {"tokens": 5.0}
    assert record.agents["second"].status == "skipped"


def test_retries_of_a_ray_agent_reach_the_audit_log(tmp_path):
    app = (cp.Graph()
           .add("flaky", agents.flaky, executor=cp.ray(),
                retry=cp.Retry(max_attempts=3, initial_backoff=0.01))
           .compile(store=tmp_path / "runs.db"))
    record = app.run(str(tmp_path / "calls"))
    assert record.output == "ok after 3 calls"
    retried = [entry for entry in app.store.audit(record.run_key)
               if entry.kind == "agent_retried"]
    assert [entry.data["attempt"] for entry in retried] == [2, 3]
    assert "call 1 failed" in retried[0].data["message"]


def test_durable_runs_checkpoint_ray_agents(tmp_path):
    app = (cp.Graph()
           .add("remote", agents.double, executor=cp.ray())
           .add("local", lambda x: x + 1, after="remote")
           .compile(store=tmp_path / "runs.db"))
    record = app.run(4)
    assert record.output == 9
    stored = app.store.load_run(record.run_key)
    assert stored.outcomes["remote"].output == 8


# ---- actor pools --------------------------------------------------------------------------


def test_an_actor_pool_builds_a_class_once_per_actor_and_spreads_calls():
    app = cp.Graph().add("judge", agents.Model, executor=cp.ray_actors(2)).compile()
    results = app.batch([f"q{i}" for i in range(8)])
    pids = {result["pid"] for result in results}
    assert len(pids) == 2 and os.getpid() not in pids
    assert all(result["loads"] == 1 for result in results)  # one instance per actor
    assert sum(1 for result in results if result["calls"] == 1) == 2
    assert sorted(result["input"] for result in results) == [f"q{i}" for i in range(8)]


def test_a_partial_of_a_class_is_built_with_its_arguments():
    import functools

    app = cp.Graph().add("judge", functools.partial(agents.Model, "big"),
                         executor=cp.ray_actors(1)).compile()
    assert app.invoke("q")["name"] == "big"


def test_async_actors_run_many_calls_at_once():
    app = cp.Graph().add("judge", agents.AsyncModel,
                         executor=cp.ray_actors(1, max_concurrency=8)).compile()
    app.invoke("warm up")  # the actor starts
    started = time.monotonic()
    results = app.batch(range(8))
    assert len({result["pid"] for result in results}) == 1
    assert time.monotonic() - started < 1.5  # 8 calls of 0.2 s overlapped


def test_a_killed_actor_fails_the_attempt_by_name_and_a_retry_lands_on_a_live_one(tmp_path):
    pool = cp.ray_actors(1)
    without_retry = cp.Graph().add("judge", agents.die_once, executor=pool).compile()
    with pytest.raises(cp.AgentError) as caught:
        without_retry.invoke(str(tmp_path / "first"))
    lost = caught.value.__cause__
    assert isinstance(lost, cp.WorkerLost) and lost.agent == "judge"
    assert "agent 'judge'" in str(lost) and "died" in str(lost)
    # The pool replaced the actor: the next call is answered.
    assert without_retry.invoke(str(tmp_path / "first")).startswith("answered by")

    with_retry = cp.Graph().add("judge", agents.die_once, executor=pool,
                                retry=cp.Retry(max_attempts=2, initial_backoff=0)).compile()
    record = with_retry.run(str(tmp_path / "second"))
    assert record.output.startswith("answered by")


def test_a_timed_out_blocking_call_does_not_hold_the_pool():
    # The timeout covers the wait for an actor too: generous enough for one to start.
    app = cp.Graph().add("judge", agents.Model, executor=cp.ray_actors(1),
                         timeout=20).compile()
    first = app.invoke("q")
    hung = cp.Graph().add("judge", agents.Model, executor=cp.ray_actors(1),
                          timeout=8).compile()
    hung.invoke("warm up")
    with pytest.raises(cp.AgentError, match="timed out"):
        hung.invoke("hang")
    started = time.monotonic()
    again = hung.invoke("q")  # a new actor, not the one busy for 60 s
    assert again["calls"] == 1 and again["pid"] != first["pid"]
    assert time.monotonic() - started < 20


def test_calls_beyond_the_pools_room_wait_their_turn():
    app = cp.Graph().add("judge", agents.spans, executor=cp.ray_actors(1)).compile()
    spans = sorted(app.batch(range(5), max_concurrency=5))
    assert len(spans) == 5
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.01, spans  # one actor, one call at a time: none overlap


def test_a_call_cancelled_while_it_waits_for_an_actor_never_runs(tmp_path):
    app = cp.Graph().add("slow", agents.sleep_then_touch, executor=cp.ray_actors(1)).compile()
    busy = app.start(str(tmp_path / "first"))
    time.sleep(1.0)  # the actor has the first call
    waiting = app.start(str(tmp_path / "second"))
    time.sleep(0.2)
    assert waiting.cancel()
    assert busy.result(timeout=30) == "finished"
    time.sleep(5)  # past the moment the second call would have finished
    assert not (tmp_path / "second").exists(), "the cancelled waiting call ran"
    assert app.invoke(str(tmp_path / "third")) == "finished"  # the pool still serves


@pytest.mark.parametrize("napper", [agents.AsyncNap, agents.Nap])
def test_a_pool_under_timeouts_and_cancels_keeps_its_count(napper):
    pool = cp.ray_actors(2, max_concurrency=3)(napper)
    # Both actors up first: the timeout covers the wait for an actor's start too.
    cp.Graph().add("nap", pool).compile().batch([0.3] * 6, max_concurrency=6)
    app = cp.Graph().add("nap", pool, timeout=1.0).compile()
    naps = [2.0 if i % 10 == 9 else 0.05 for i in range(30)]  # three time out
    runs = [app.start(seconds) for seconds in naps]
    for run in runs[::7]:
        run.cancel()
    ended = {"succeeded": 0, "failed": 0, "cancelled": 0}
    for run in runs:
        assert run.wait(timeout=30), "a run of the pool did not end"
        ended[run.record().status] += 1
    assert ended["succeeded"] >= 15 and ended["failed"] >= 3 and ended["cancelled"] >= 1, ended
    # Every call left its actor's count, whichever way it ended; none waits any more.
    deadline = time.monotonic() + 10
    while any(slot.running for slot in pool._slots) or pool._waiting:
        assert time.monotonic() < deadline, [slot.running for slot in pool._slots]
        time.sleep(0.05)
    assert app.batch([0.01] * 12, max_concurrency=12) == [0.01] * 12


def test_a_call_ray_refuses_frees_its_place_in_the_pool():
    import threading

    app = cp.Graph().add("judge", agents.Model, executor=cp.ray_actors(1)).compile()
    for _ in range(3):  # one place in the pool: a leaked one would leave the next waiting
        refused = app.start(threading.Lock())  # cannot be pickled to the actor
        assert refused.wait(timeout=30)
        assert refused.record().status == "failed"
        answered = app.start("q")
        assert answered.wait(timeout=30), "the refused call kept its place in the pool"
        assert answered.result()["input"] == "q"


# ---- misuse -------------------------------------------------------------------------------


def test_misuse_is_reported_when_the_graph_is_built():
    with pytest.raises(cp.GraphError, match=re.escape("cp.ray_actors")):
        cp.Graph().add("judge", agents.Model, executor=cp.ray()).compile()
    with pytest.raises(cp.GraphError, match=re.escape("num_actors must be a positive int")):
        cp.ray_actors(0)
    with pytest.raises(cp.GraphError, match=re.escape("num_gpus must be a number >= 0")):
        cp.ray(num_gpus=-1)
    with pytest.raises(cp.GraphError, match=re.escape("address must be a Ray cluster address")):
        cp.ray(address=5)
    with pytest.raises(cp.GraphError, match=re.escape("agent 'a': executor must be cp.ray")):
        cp.Graph().add("a", agents.double, executor="ray").compile()
    with pytest.raises(cp.GraphError, match=re.escape("dispatch='thread' is for agents run in this")):
        cp.Graph().add("a", agents.double, executor=cp.ray(), dispatch="thread").compile()
    with pytest.raises(cp.GraphError, match=re.escape("takes cp.ray_batch")):
        cp.Graph().add("a", agents.double).compile().batch([1], executor=cp.ray())


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch):
    from counterpoint import _executors

    monkeypatch.setattr(_executors, "find_spec", lambda name: None)
    with pytest.raises(cp.GraphError, match=r'pip install "counterpoint\[ray\]"'):
        cp.Graph().add("a", agents.double, executor=cp.ray()).compile()


def test_executors_round_trip_through_specs():
    app = (cp.Graph()
           .add("embed", agents.double, executor=cp.ray(num_cpus=0.5, resources={"io": 1}))
           .add("judge", agents.Model, after="embed",
                executor=cp.ray_actors(2, max_concurrency=3))
           .add("plain", agents.double, after="embed", executor=cp.ray())
           .compile())
    spec = app.to_spec()
    assert spec["agents"]["embed"]["executor"] == {"ray": {"num_cpus": 0.5,
                                                           "resources": {"io": 1}}}
    assert spec["agents"]["judge"]["executor"] == {"ray_actors": {"num_actors": 2,
                                                                  "max_concurrency": 3}}
    assert spec["agents"]["plain"]["executor"] == "ray"
    loaded = cp.load(spec, allow=["ray_agents"])
    assert loaded.to_spec() == spec
    assert loaded.invoke(2)["judge"]["input"] == 4


def _run_script(code: str, timeout: float) -> str:
    """Runs ``code`` in a fresh interpreter (what could hang, or must start without Ray);
    its stripped output, once it exited cleanly."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def test_ray_shutting_down_under_a_call_fails_it_instead_of_hanging():
    # ray.shutdown() drops the callbacks of every ref in flight: the run must still end.
    code = textwrap.dedent("""
        import threading, time
        import ray
        import counterpoint as cp

        def slow(x):
            time.sleep(30)
            return x

        class Slow:
            def __call__(self, x):
                time.sleep(30)
                return x

        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        task = cp.Graph().add("slow", slow, executor=cp.ray()).compile()
        actor = cp.Graph().add("slow", Slow, executor=cp.ray_actors(1)).compile()
        runs = [task.start(1), actor.start(1)]
        # An invoke waits for its call in ray.get on its own thread (see _lent_thread).
        invoked = []
        def invoke():
            try:
                task.invoke(2)
            except BaseException as error:
                invoked.append(error)
        invoking = threading.Thread(target=invoke)
        invoking.start()
        time.sleep(3)
        ray.shutdown()
        invoking.join(15)
        assert not invoking.is_alive(), "invoke still waits although Ray was shut down"
        assert len(invoked) == 1, "invoke returned although Ray was shut down under it"
        outcomes = []
        for run in runs:
            try:
                run.result(timeout=15)
            except cp.AgentError as error:
                outcomes.append(error)
            else:
                raise AssertionError("a run finished although Ray was shut down under it")
        for error in outcomes + invoked:
            # Lost either way: its actor or worker may die (and say so) before Ray
            # drops the ref's callback.
            assert isinstance(error, cp.AgentError), repr(error)
            assert isinstance(error.__cause__, cp.WorkerLost), repr(error.__cause__)
        # Nothing of counterpoint's starts a new Ray behind the user's back (a ray.get
        # after ray.shutdown() would, through Ray's auto-init).
        time.sleep(0.5)
        assert not ray.is_initialized(), "Ray was started again after ray.shutdown()"
        print("ok")
    """)
    assert _run_script(code, timeout=120).endswith("ok")


def test_an_actor_pool_outlives_a_ray_shutdown_and_init():
    # As in a notebook: ray.shutdown(), ray.init(), and the compiled graph is used again.
    code = textwrap.dedent("""
        import ray
        import counterpoint as cp

        class Echo:
            def __call__(self, x):
                return x

        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        pool = cp.ray_actors(1)
        app = cp.Graph().add("echo", Echo, executor=pool).compile()
        retried = cp.Graph().add("echo", Echo, executor=pool,
                                 retry=cp.Retry(max_attempts=2, initial_backoff=0)).compile()
        assert app.invoke(1) == 1 and retried.invoke(1) == 1
        ray.shutdown()
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        run = app.start(2)
        assert run.wait(timeout=30)
        error = run.record().error
        assert isinstance(error.__cause__, cp.WorkerLost), repr(error)
        assert "belonged to a Ray that was shut down" in str(error.__cause__)
        assert app.invoke(3) == 3  # on a new actor
        assert retried.invoke(4) == 4  # its retry lands on the new actor
        print("ok")
    """)
    assert _run_script(code, timeout=180).endswith("ok")


def test_counterpoint_imports_nothing_of_ray_until_a_graph_uses_it():
    code = textwrap.dedent("""
        import sys
        import counterpoint as cp
        cp.ray(num_cpus=1), cp.ray_actors(2), cp.ray_batch(2)
        assert cp.Graph().add("a", lambda x: x + 1).compile().invoke(1) == 2
        assert not any(name == "ray" or name.startswith("ray.") for name in sys.modules)
        print("ok")
    """)
    assert _run_script(code, timeout=60) == "ok"
