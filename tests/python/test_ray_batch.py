"""batch(executor=cp.ray_batch(...)): whole runs sharded over Ray actors that compile the
graph once, against a real local Ray (one start for the module)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import ray
import ray_agents as agents

import counterpoint as cp

HERE = Path(__file__).parent


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(HERE)}})
    yield
    ray.shutdown()


def _app() -> cp.CompiledGraph:
    return (cp.Graph()
            .add("item", agents.batch_item)
            .add("next", lambda x: x + 1, after="item")
            .compile())


def test_results_come_back_in_input_order_with_failures_in_place():
    results = _app().batch(range(40), executor=cp.ray_batch(2, chunk_size=3),
                           return_exceptions=True)
    for index, result in enumerate(results):
        if index % 7 == 3:
            assert isinstance(result, cp.AgentError)
            assert f"item {index} is bad" in str(result)
        else:
            assert result == index * 10 + 1


def test_without_return_exceptions_the_first_failure_is_raised_after_all_ran():
    with pytest.raises(cp.AgentError, match="item 3 is bad"):
        _app().batch(range(20), executor=cp.ray_batch(2))


def test_runs_spread_over_the_actors_which_keep_their_compiled_graph():
    app = cp.Graph().add("where", agents.node_and_pid).compile()
    spec = cp.ray_batch(2, chunk_size=2, max_concurrency=1)
    first = app.batch(range(64), executor=spec)
    pids = {result["pid"] for result in first}
    assert len(pids) == 2 and os.getpid() not in pids
    assert [result["input"] for result in first] == list(range(64))
    # The next batch of the same graph runs on the same actors: no new starts.
    again = app.batch(range(8), executor=spec)
    assert {result["pid"] for result in again} <= pids


def test_a_dead_actors_chunks_run_again_on_a_live_one(tmp_path):
    app = cp.Graph().add("item", agents.die_once_in_batch).compile()
    marker = str(tmp_path / "died")
    results = app.batch([(i, marker) for i in range(12)],
                        executor=cp.ray_batch(2, chunk_size=2))
    assert results == [i * 10 for i in range(12)]
    assert Path(marker).exists()  # an actor did die


def test_an_agent_that_cannot_travel_is_named_before_anything_runs():
    lock = threading.Lock()
    app = (cp.Graph()
           .add("fine", agents.double)
           .add("holds_a_lock", lambda x: (lock, x), after="fine")
           .compile())
    with pytest.raises(cp.GraphError, match=re.escape("agent 'holds_a_lock' cannot be "
                                                      "pickled")):
        app.batch([1, 2], executor=cp.ray_batch(1))
    nested = cp.Graph().add("review", cp.parallel(a=agents.double, b=lambda x: lock)).compile()
    with pytest.raises(cp.GraphError, match=re.escape("agent 'review/b' cannot be pickled")):
        nested.batch([1], executor=cp.ray_batch(1))


def test_a_graph_the_actors_cannot_rebuild_fails_clearly(tmp_path):
    # A module only this process can import: the actors cannot unpickle its agent.
    (tmp_path / "driver_only.py").write_text(textwrap.dedent("""
        def agent(x):
            return x
    """))
    sys.path.insert(0, str(tmp_path))
    try:
        import driver_only

        app = cp.Graph().add("local_only", driver_only.agent).compile()
        with pytest.raises(cp.WorkerLost, match="could not rebuild the graph"):
            app.batch([1, 2], executor=cp.ray_batch(1))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("driver_only", None)


def test_a_progress_bar_counts_runs_and_failures(capfd):
    _app().batch(range(30), executor=cp.ray_batch(2), progress=True, return_exceptions=True)
    err = capfd.readouterr().err
    assert "30/30" in err
    assert "failed=4" in err  # items 3, 10, 17 and 24
    asyncio.run(_app().abatch(range(10), executor=cp.ray_batch(2), progress="on ray",
                              return_exceptions=True))
    err = capfd.readouterr().err
    assert "on ray: 100%" in err and "10/10" in err


def test_abatch_and_the_runnable_batch_take_the_executor():
    app = _app()
    assert asyncio.run(app.abatch([0, 1, 2], executor=cp.ray_batch(1))) == [1, 11, 21]
    if hasattr(app, "with_config"):  # a LangChain Runnable when langchain-core is there
        assert app.batch([0, 1], executor=cp.ray_batch(1)) == [1, 11]


def test_an_empty_batch_runs_nothing():
    assert _app().batch([], executor=cp.ray_batch(2)) == []


def test_durable_runs_on_actors_are_recorded_in_the_shared_store(tmp_path):
    app = (cp.Graph().add("item", agents.batch_item).compile(store=tmp_path / "runs.db"))
    results = app.batch([0, 1, 2], executor=cp.ray_batch(2, chunk_size=1))
    assert results == [0, 10, 20]
    runs = app.store.runs()
    assert len(runs) == 3 and {run.status for run in runs} == {"succeeded"}
