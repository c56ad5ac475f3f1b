"""Ray agents and batches on a simulated cluster of three nodes on this machine
(ray.cluster_utils.Cluster, one CPU each), and a durable run resumed after its driver
was SIGKILLed without re-running its finished Ray agent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import ray
import ray_agents as agents
from ray.cluster_utils import Cluster

import counterpoint as cp

HERE = Path(__file__).parent
ENV = {"env_vars": {"PYTHONPATH": str(HERE)}}


@pytest.fixture(scope="module")
def cluster():
    nodes = Cluster(initialize_head=True,
                    head_node_args={"num_cpus": 1, "include_dashboard": False})
    workers = [nodes.add_node(num_cpus=1) for _ in range(2)]
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, runtime_env=ENV, log_to_driver=False)
    yield nodes, workers
    ray.shutdown()
    nodes.shutdown()


def test_ray_agents_run_on_every_node(cluster):
    app = cp.Graph().add("where", agents.node_and_pid, executor=cp.ray(num_cpus=1)).compile()
    results = app.batch(range(12))
    assert len({result["node"] for result in results}) == 3
    assert [result["input"] for result in results] == list(range(12))


def test_a_batch_shards_over_actors_on_every_node(cluster):
    app = cp.Graph().add("where", agents.node_and_pid).compile()
    spec = cp.ray_batch(3, chunk_size=2, max_concurrency=1)
    nodes: set[str] = set()
    # One CPU per node and per actor: the three actors are on the three nodes. Chunks go
    # only to actors that have started, which on a loaded machine can take a batch or two.
    for _ in range(5):
        results = app.batch(range(60), executor=spec)
        assert [result["input"] for result in results] == list(range(60))
        nodes |= {result["node"] for result in results}
        if len(nodes) == 3:
            break
    assert len(nodes) == 3


def test_a_batch_survives_losing_a_node(cluster):
    nodes, workers = cluster
    app = cp.Graph().add("where", agents.node_and_pid).compile()
    spec = cp.ray_batch(3, chunk_size=2, max_concurrency=1)
    app.batch(range(6), executor=spec)  # the actors are up
    outcome: dict[str, object] = {}

    def run() -> None:
        outcome["results"] = app.batch(range(60), executor=spec, return_exceptions=True)

    batch = threading.Thread(target=run)
    batch.start()
    time.sleep(1.5)
    nodes.remove_node(workers[1])  # its actor dies with its chunks
    batch.join(120)
    assert not batch.is_alive()
    results = outcome["results"]
    assert [result["input"] for result in results] == list(range(60))  # none lost
    workers[1] = nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()


DRIVER = textwrap.dedent(
    """
    import json, sys, time
    import ray
    import counterpoint as cp
    import ray_agents as agents

    address, store, calls, mode, tests = sys.argv[1:6]
    ray.init(address=address, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": tests}})

    def wait_or_finish(item):
        if mode == "first":
            time.sleep(120)  # killed meanwhile
        return f"done with {item}"

    app = (cp.Graph()
           .add("remote", agents.append_line, executor=cp.ray())
           .add("local", wait_or_finish, after="remote")
           .compile(store=store))
    if mode == "first":
        run = app.start((7, calls))
        print(run.run_key, flush=True)
        run.wait()
    else:
        [key] = [summary.run_key for summary in app.runs("running")]
        record = app.start_resumed(key).record()
        print(json.dumps({"status": record.status, "output": record.output,
                          "restored": sorted(n for n, o in record.agents.items()
                                             if o.restored)}))
    """
)


def test_resume_after_the_driver_is_killed_does_not_rerun_finished_ray_agents(cluster,
                                                                                tmp_path):
    nodes, _ = cluster
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    store, calls = tmp_path / "runs.db", tmp_path / "calls"
    command = [sys.executable, str(driver), nodes.address, str(store), str(calls)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])}
    first = subprocess.Popen([*command, "first", str(HERE)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 90
        # The Ray agent's outcome is checkpointed before "local" starts.
        while not (calls.exists() and calls.read_text()):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
        first.stdout.close()
        first.stderr.close()
    assert first.returncode == -signal.SIGKILL
    second = subprocess.run([*command, "resume", str(HERE)], capture_output=True, text=True,
                            timeout=120, env=env)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout.strip().splitlines()[-1])
    assert result == {"status": "succeeded", "output": "done with 7", "restored": ["remote"]}
    assert calls.read_text().splitlines() == ["7"]  # the Ray agent ran once
