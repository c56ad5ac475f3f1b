#!/usr/bin/env python3
"""Scale-out benchmark harness for counterpoint: agents and batches on Ray, against bare
Ray calls and a plain local loop measured in the same run.

Needs Ray: `pip install ".[ray]"`. Starts a local Ray with two CPUs (and, for the
`cluster` section, a simulated three-node cluster of one CPU each on this machine).

Usage:
    python benchmarks/scale_out.py [--quick] [--json out.json] [--only SECTION ...]
                                   [--settle SECONDS]

Sections:
    call     1. per call: a one-agent graph whose agent is a Ray task (cp.ray()) or on a
                Ray actor (cp.ray_actors(1)), invoked, against the same function called
                with a bare `ray.get(f.remote(x))` (or actor method); and awaited with
                `ainvoke` against `await f.remote(x)` on the same loop; target <= 1.1x.
                Info rows: the bare calls followed by `ref.future().result()`, Ray's own
                way to wait without blocking in `ray.get`, which the agents use where no
                invoke() thread waits for them (start, ainvoke, batch)
    batch    2. 1,000 runs (200 with --quick) whose agent uses 20 ms of CPU, sharded
                with cp.ray_batch on 1 and on 2 actors, against a plain loop calling the
                agent in this process (the ideal on one core); target: 2 actors >= 1.8x
                the throughput of 1
    cluster  3. the same batch on a simulated cluster of three one-CPU nodes, on 1, 2
                and 3 actors (this machine has two cores: 3 actors cannot beat 2)

Agents are defined here, in `__main__`, so that Ray sends them by value and the workers
need nothing on their path. The actors of a batch start once (a warm-up batch) and are
kept for the graph's next batches, as in a notebook; their start is reported apart.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import counterpoint as cp
from engine import Results, fmt, fmt_ratio, interleaved, summary
from engine import print_table as engine_print_table

CALL_TARGET = 1.1
SPEEDUP_TARGET = 1.8
BURN_MS = 20


def echo(x: Any) -> Any:
    return x


def burn(milliseconds: int) -> int:
    """Uses this thread's CPU for about `milliseconds` (not wall time, not the process's)."""
    end = time.thread_time() + milliseconds / 1000
    while time.thread_time() < end:
        pass
    return milliseconds


class Echo:
    def __call__(self, x: Any) -> Any:
        return x


def _ray() -> Any:
    import ray

    return ray


def _start_local_ray() -> None:
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)


def bench_call(res: Results, cfg: dict[str, Any]) -> None:
    """Section 1: what a Ray agent costs per call over the bare Ray call it makes."""
    ray = _ray()
    _start_local_ray()
    print("1. per call: Ray task / actor agent vs the bare Ray call", flush=True)
    bare_task = ray.remote(max_retries=0)(echo)
    host = ray.remote(max_restarts=0, max_task_retries=0)(Echo)
    actor = host.remote()
    task_app = cp.Graph().add("echo", echo, executor=cp.ray()).compile()
    actor_app = cp.Graph().add("echo", Echo, executor=cp.ray_actors(1)).compile()
    calls = cfg["calls"]
    loop = asyncio.new_event_loop()

    async def awaited(call: Callable[[], Any]) -> None:
        for _ in range(calls):
            await call()

    def on_loop(call: Callable[[], Any]) -> Callable[[], None]:
        # One loop run per repeat's worth of calls: the loop's start is not per call.
        return lambda: loop.run_until_complete(awaited(call))

    candidates = {
        "bare task": (lambda: ray.get(bare_task.remote(1)), calls),
        "cp.ray() agent": (lambda: task_app.invoke(1), calls),
        "bare actor": (lambda: ray.get(actor.__call__.remote(1)), calls),
        "cp.ray_actors(1) agent": (lambda: actor_app.invoke(1), calls),
        # Ray's own way to follow a ref without a thread blocked in ray.get, the one the
        # agents use where no invoke() thread waits for them.
        "bare task, future": (lambda: bare_task.remote(1).future().result(), calls),
        "bare actor, future": (lambda: actor.__call__.remote(1).future().result(), calls),
        "awaited bare task": (on_loop(lambda: bare_task.remote(1)), 1),
        "awaited cp.ray() agent": (on_loop(lambda: task_app.ainvoke(1)), 1),
        "awaited bare actor": (on_loop(lambda: actor.__call__.remote(1)), 1),
        "awaited cp.ray_actors(1) agent": (on_loop(lambda: actor_app.ainvoke(1)), 1),
    }
    for fn, _ in candidates.values():  # workers and actors up, functions exported
        for _ in range(20):
            fn()
    samples = interleaved(candidates, cfg["repeats"])
    loop.close()
    for name in [name for name in samples if name.startswith("awaited")]:
        samples[name] = [seconds / calls for seconds in samples[name]]
    for key, figure, bare, ours, target in (
            ("task", "invoke of a one-agent graph on a Ray task", "bare task",
             "cp.ray() agent", CALL_TARGET),
            ("actor", "invoke of a one-agent graph on a Ray actor", "bare actor",
             "cp.ray_actors(1) agent", CALL_TARGET),
            ("task_async", "ainvoke of a one-agent graph on a Ray task", "awaited bare task",
             "awaited cp.ray() agent", CALL_TARGET),
            ("actor_async", "ainvoke of a one-agent graph on a Ray actor",
             "awaited bare actor", "awaited cp.ray_actors(1) agent", CALL_TARGET),
            ("task_future", "a bare Ray task followed by ref.future() (info)", "bare task",
             "bare task, future", None),
            ("actor_future", "a bare actor call followed by ref.future() (info)",
             "bare actor", "bare actor, future", None)):
        ratios = [a / b for a, b in zip(samples[ours], samples[bare])]
        res.add(f"call_{key}", f"1. {figure}",
                statistics.median(samples[ours]), "s",
                baseline=statistics.median(samples[bare]), baseline_label=bare,
                ratio=statistics.median(ratios), target=target, target_on="ratio",
                target_label=f"<= {target}x" if target else "",
                details={"summary": summary(samples[ours]), "ratio_min": min(ratios),
                         "ratio_max": max(ratios), "calls_per_repeat": calls})
    ray.kill(actor)


def _batch_throughput(runs: int, actor_counts: list[int],
                      repeats: int, label: str, res: Results, key: str,
                      speedup_of: int | None) -> None:
    inputs = [BURN_MS] * runs
    # Half a CPU each: the pools of every actor count fit on the cluster at once, and only
    # one of them works at a time. One graph per count, as a graph keeps one pool.
    specs = {n: cp.ray_batch(n, max_concurrency=1, num_cpus=0.5) for n in actor_counts}
    apps = {n: cp.Graph().add("burn", burn).compile() for n in actor_counts}
    for n, spec in specs.items():  # start the actors (kept for the next batches)
        started = time.perf_counter()
        apps[n].batch([BURN_MS] * 4 * n, executor=spec)
        res.note(f"{label}: starting {n} actor(s) and compiling the graph in them took "
                 f"{time.perf_counter() - started:.1f} s (once per graph; not in the figures)")
    seconds: dict[int, list[float]] = {n: [] for n in specs}
    local: list[float] = []
    for repeat in range(repeats):
        order = list(specs)[repeat % len(specs):] + list(specs)[:repeat % len(specs)]
        for n in order:
            started = time.perf_counter()
            apps[n].batch(inputs, executor=specs[n])
            seconds[n].append(time.perf_counter() - started)
        started = time.perf_counter()
        for item in inputs:
            burn(item)
        local.append(time.perf_counter() - started)
    ideal = statistics.median(local)
    one = statistics.median(seconds[actor_counts[0]])
    for n in actor_counts:
        took = statistics.median(seconds[n])
        throughput = runs / took
        speedup = one / took
        on_target = speedup_of is not None and n == speedup_of
        res.add(f"{key}_{n}", f"{label}: {runs} runs x {BURN_MS} ms CPU, {n} actor(s)",
                throughput, "runs/s", higher_is_better=True,
                baseline=runs / ideal, baseline_label="plain loop in this process",
                ratio=speedup, ratio_label=f"x the throughput on {actor_counts[0]} actor",
                target=SPEEDUP_TARGET if on_target else None, target_on="ratio",
                target_label=f">= {SPEEDUP_TARGET}x" if on_target else "",
                details={"seconds": seconds[n], "local_seconds": local,
                         "of_ideal": (runs / took) / (runs / ideal) / n})


def bench_batch(res: Results, cfg: dict[str, Any]) -> None:
    """Section 2: throughput of a sharded batch on 1 and 2 actors of a local Ray."""
    _start_local_ray()
    print(f"2. batch of {cfg['runs']} runs x {BURN_MS} ms CPU on 1 and 2 actors", flush=True)
    _batch_throughput(cfg["runs"], [1, 2], cfg["batch_repeats"], "2. batch", res, "batch",
                      speedup_of=2)


def bench_cluster(res: Results, cfg: dict[str, Any]) -> None:
    """Section 3: the same batch on a simulated cluster of three one-CPU nodes."""
    ray = _ray()
    from ray.cluster_utils import Cluster

    print("3. batch on a simulated cluster of three one-CPU nodes", flush=True)
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        _batch_throughput(cfg["runs"], [1, 2, 3], cfg["batch_repeats"], "3. cluster batch",
                          res, "cluster", speedup_of=None)
    finally:
        ray.shutdown()
        cluster.shutdown()


def config(quick: bool) -> dict[str, Any]:
    if quick:
        return dict(quick=True, repeats=5, calls=30, runs=200, batch_repeats=1)
    return dict(quick=False, repeats=9, calls=100, runs=1000, batch_repeats=2)


def print_table(results: Results) -> None:
    """engine.print_table with a spread column (min..max of the ratio over repeats)."""
    def spread(row: dict[str, Any]) -> str:
        d = row["details"]
        if "ratio_min" in d:
            return f"{fmt_ratio(d['ratio_min'])}..{fmt_ratio(d['ratio_max'])}"
        if "of_ideal" in d:
            return f"{d['of_ideal']:.0%} of ideal per actor"
        s = d.get("summary")
        return f"{fmt(s['best'], 's')}..{fmt(s['worst'], 's')}" if s else "-"

    engine_print_table(results, extra=("Spread / efficiency", spread))


def main(argv: list[str] | None = None) -> int:
    import _harness

    sections = {"call": bench_call, "batch": bench_batch, "cluster": bench_cluster}
    return _harness.main(
        __doc__, sections, config, argv,
        quick_help="fewer calls and a 200-run batch (about 1.5 minutes instead of 5)",
        table=print_table,
    )


if __name__ == "__main__":
    sys.exit(main())
