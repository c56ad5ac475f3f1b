#!/usr/bin/env python3
"""Policy and durability benchmark harness for counterpoint.

What per-agent policies (retry, timeout, circuit breaker, limits) and checkpointing to
a SQLite store cost per invocation, and how close a shared concurrency limit keeps a
batch to its theoretical time. Every figure is printed next to a baseline measured in
the same run and the ratio between the two. A measurement tool, not a test suite: the
exit status is 0 whatever the figures.

Usage:
    python benchmarks/policies.py [--quick] [--json out.json] [--only SECTION ...]
                                  [--settle SECONDS]

Sections (see benchmarks/README.md for what each figure means):
    hotpath     1. cost of each policy on the hot path: a 3-agent no-op chain with the
                   policy on every agent vs the same chain without it
    checkpoint  2. cost of checkpointing every agent to a SQLiteStore: 10-agent chain,
                   1-agent graph, 10-way fan-out + join, with and without a store
    batch       3. batch of 1,000 runs through a shared Limit(max_concurrent=4) of agents
                   sleeping 5 ms vs the theoretical 1,000 x 5 ms / 4

Methodology as in engine.py: warm up first, time many back-to-back invokes per repeat
with the garbage collector paused, take the median over repeats, and interleave each
variant with its baseline (rotating the order every repeat). Store files live in a
temporary directory that is removed at the end.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import _harness as h
import counterpoint as cp
from _harness import DELTA, DispatchProbe, Results

CHAIN = 3            # agents in the hot-path chain (every one carries the policy)
DURABLE_CHAIN = 10   # agents in the checkpointed chain
DURABLE_FANOUT = 10  # entry agents of the checkpointed fan-out (plus one join agent)
BATCH_RUNS = 1000
BATCH_SLEEP = 0.005
BATCH_SLOTS = 4


def noop(x):
    return x


def chain(length: int, store: cp.Store | None = None, **policies: Any) -> cp.CompiledGraph:
    g = cp.Graph()
    for i in range(length):
        g.add(f"a{i}", noop, after=None if i == 0 else f"a{i - 1}", **policies)
    return g.compile(store=store)


def fanout(width: int, store: cp.Store | None = None) -> cp.CompiledGraph:
    g = cp.Graph()
    names = [f"w{i}" for i in range(width)]
    for name in names:
        g.add(name, noop)
    g.add("join", noop, after=names)
    return g.compile(store=store)


# --------------------------------------------------------------------------------------
# 1. Policies on the hot path
# --------------------------------------------------------------------------------------


def policy_variants() -> list[tuple[str, str, dict[str, Any]]]:
    """(key, label, Graph.add policy arguments); one fresh policy object per variant,
    shared by the chain's agents (as a named provider limit would be)."""
    return [
        ("retry", "retry=cp.Retry(3), never retrying", {"retry": cp.Retry(3)}),
        ("timeout", "timeout=10", {"timeout": 10}),
        ("breaker", "breaker=cp.CircuitBreaker() (closed)", {"breaker": cp.CircuitBreaker()}),
        ("limit_concurrent", "limits=cp.Limit(max_concurrent=1000)",
         {"limits": cp.Limit(max_concurrent=1000)}),
        ("limit_rate", "limits=cp.Limit(per_second=1e9)", {"limits": cp.Limit(per_second=1e9)}),
        ("combined", "all of the above together",
         {"retry": cp.Retry(3), "timeout": 10, "breaker": cp.CircuitBreaker(),
          "limits": [cp.Limit(max_concurrent=1000), cp.Limit(per_second=1e9)]}),
    ]


def bench_hotpath(res: Results, cfg: dict[str, Any]) -> None:
    print(f"[1] policies on the hot path: {CHAIN}-agent no-op chain, the policy on every agent, "
          "vs the same chain without", flush=True)
    variants = policy_variants()
    probes = {"none": DispatchProbe(), "control": DispatchProbe()}
    with probes["none"]:
        apps = {"none": chain(CHAIN)}
    with probes["control"]:
        # A/A control: a second, identical chain without policy. Its difference from the
        # baseline is the noise floor of this section.
        apps["control"] = chain(CHAIN)
    for key, _, policies in variants:
        probes[key] = DispatchProbe()
        with probes[key]:
            apps[key] = chain(CHAIN, **policies)
    candidates = {}
    for key, app in apps.items():
        assert app.invoke(7) == 7
        fn = lambda app=app: app.invoke(1)
        h.warm(fn, cfg["warmup_invokes"], cfg["warmup_seconds"])
        candidates[key] = (fn, h.calibrate(fn, cfg["repeat_seconds"]))
    # One baseline, interleaved with every variant: each repeat times them all in turn.
    samples = h.interleaved(candidates, cfg["repeats"])
    base = h.summary(samples["none"])
    print(f"    no policy: {h.fmt(base['median'], 's')} per invoke "
          f"(best {h.fmt(base['best'], 's')})", flush=True)
    h.note_moved(probes["none"], "chain without policy", res)
    h.note_moved(probes["control"], "control chain", res)
    control = h.summary(samples["control"])
    res.add("hotpath.control.invoke", "1. control: identical chain, no policy", control["median"],
            "s", baseline=base["median"], baseline_label="no policy",
            details={"control": control, "without": base})
    res.add("hotpath.control.added", "1.   difference per agent call (noise floor)",
            (control["median"] - base["median"]) / CHAIN, DELTA)
    print(f"    control (identical chain, no policy): {h.fmt(control['median'], 's')}; "
          f"difference {h.fmt((control['median'] - base['median']) / CHAIN, DELTA)} per agent "
          "call is the noise floor", flush=True)
    for key, label, _ in variants:
        s = h.summary(samples[key])
        added = (s["median"] - base["median"]) / CHAIN
        details = {"with": s, "without": base, "added_per_invoke": s["median"] - base["median"],
                   "best_case_added_per_call": (s["best"] - base["best"]) / CHAIN,
                   "agents_inline_after": probes[key].inline_count()}
        res.add(f"hotpath.{key}.invoke", f"1. {label}", s["median"], "s",
                baseline=base["median"], baseline_label="no policy", details=details)
        res.add(f"hotpath.{key}.added", "1.   added per policed agent call", added, DELTA,
                details={"best_case": details["best_case_added_per_call"]})
        print(f"    {label:<42} {h.fmt(s['median'], 's'):>9} per invoke "
              f"({h.fmt_ratio(s['median'] / base['median'])}): "
              f"{h.fmt(added, DELTA)} per agent call "
              f"(best case {h.fmt(details['best_case_added_per_call'], DELTA)})", flush=True)
        h.note_moved(probes[key], label, res)


# --------------------------------------------------------------------------------------
# 2. Checkpoints to a SQLite store
# --------------------------------------------------------------------------------------


class NullStore(cp.Store):
    """A store that keeps nothing: with it, the checkpoint path costs only the hand-off to
    the writer thread and back (no SQLite). For reference; never use it for real runs."""

    def begin_run(self, run_key: str, graph: str, input: Any) -> None:
        pass

    def save_outcomes(self, run_key: str, outcomes: list[Any]) -> list[Exception | None]:
        return [None] * len(outcomes)

    def set_status(self, run_key: str, status: str) -> None:
        pass

    def load_run(self, run_key: str) -> Any:
        raise cp.StoreError("NullStore keeps no runs")

    def runs(self, status: str | None = None) -> list[Any]:
        return []


def count_transactions(store: cp.SQLiteStore, app: cp.CompiledGraph, runs: int) -> dict[str, float]:
    """Untimed: how many outcome transactions (record_outcomes: the outcomes and their
    audit entries) `runs` invokes take, and how many outcomes each one writes (wraps the
    store instance's method)."""
    calls: list[int] = []
    original = store.record_outcomes

    def counting(run_key: str, outcomes: list[Any], events: Any) -> Any:
        calls.append(len(outcomes))
        return original(run_key, outcomes, events)

    store.record_outcomes = counting  # type: ignore[method-assign]
    try:
        for _ in range(runs):
            app.invoke(1)
    finally:
        del store.record_outcomes
    return {"transactions_per_run": len(calls) / runs,
            "outcomes_per_transaction": sum(calls) / max(1, len(calls)),
            "largest_transaction": max(calls, default=0)}


def bench_checkpoint(res: Results, cfg: dict[str, Any]) -> None:
    print("[2] checkpoints: every agent's outcome written to a SQLiteStore (WAL) before the "
          "run sees it", flush=True)
    tmp = tempfile.mkdtemp(prefix="counterpoint-bench-")
    stores: list[cp.SQLiteStore] = []

    def store(name: str) -> cp.SQLiteStore:
        made = cp.SQLiteStore(os.path.join(tmp, f"{name}.db"))
        stores.append(made)
        return made

    try:
        apps = {
            "chain10": chain(DURABLE_CHAIN),
            "chain10_store": chain(DURABLE_CHAIN, store("chain10")),
            "chain10_null": chain(DURABLE_CHAIN, NullStore()),
            "chain1": chain(1),
            "chain1_store": chain(1, store("chain1")),
            "fanout10": fanout(DURABLE_FANOUT),
            "fanout10_store": fanout(DURABLE_FANOUT, store("fanout10")),
        }
        candidates = {}
        for key, app in apps.items():
            out = app.invoke(7)
            assert out == (7 if "chain" in key else {f"w{i}": 7 for i in range(DURABLE_FANOUT)})
            fn = lambda app=app: app.invoke(1)
            h.warm(fn, cfg["durable_warmup_invokes"], cfg["warmup_seconds"])
            candidates[key] = (fn, h.calibrate(fn, cfg["durable_repeat_seconds"], minimum=10))
        # The store alone, called directly with no engine: one 1-outcome transaction, and
        # what a run adds at its start and end (begin_run + set_status).
        direct = store("direct")
        direct.begin_run("direct", "bench", 1)
        outcome = [cp.StoredOutcome("a0", "succeeded", 1)]
        keys = iter(range(10**9))
        candidates["direct_save"] = (
            lambda: direct.save_outcomes("direct", outcome),
            h.calibrate(lambda: direct.save_outcomes("direct", outcome), cfg["repeat_seconds"]))

        def begin_and_end() -> None:
            key = f"r{next(keys)}"
            direct.begin_run(key, "bench", 1)
            direct.set_status(key, "succeeded")

        candidates["direct_run"] = (begin_and_end,
                                    h.calibrate(begin_and_end, cfg["repeat_seconds"]))
        samples = h.interleaved(candidates, cfg["repeats"])
        batching = {
            "chain10": count_transactions(apps["chain10_store"].store, apps["chain10_store"],
                                          cfg["count_runs"]),
            "fanout10": count_transactions(apps["fanout10_store"].store, apps["fanout10_store"],
                                           cfg["count_runs"]),
        }
        sizes = {name: os.path.getsize(os.path.join(tmp, f"{name}.db"))
                 for name in ("chain10", "chain1", "fanout10")}
    finally:
        # Stop the checkpoint writer threads (private helper, also used at interpreter
        # exit) so that no write is in flight, then close the stores and remove the files.
        try:
            from counterpoint._durable import stop_writers

            stop_writers()
        except ImportError:
            time.sleep(1.0)
        for made in stores:
            made.close()
        shutil.rmtree(tmp, ignore_errors=True)
    m = {key: h.summary(values) for key, values in samples.items()}
    med = {key: s["median"] for key, s in m.items()}
    fan_agents = DURABLE_FANOUT + 1
    added_chain = (med["chain10_store"] - med["chain10"]) / DURABLE_CHAIN
    added_one = med["chain1_store"] - med["chain1"]
    marginal = ((med["chain10_store"] - med["chain10"]) - added_one) / (DURABLE_CHAIN - 1)
    fixed = added_one - marginal
    added_fan = (med["fanout10_store"] - med["fanout10"]) / fan_agents

    res.add("checkpoint.chain10.invoke", f"2. {DURABLE_CHAIN}-agent chain, store=SQLiteStore",
            med["chain10_store"], "s", baseline=med["chain10"], baseline_label="no store",
            details={"with": m["chain10_store"], "without": m["chain10"],
                     "transactions": batching["chain10"], "db_bytes_after": sizes["chain10"]})
    res.add("checkpoint.chain10.added", "2.   added per agent (run start/end included)",
            added_chain, DELTA,
            details={"best_case": (m["chain10_store"]["best"] - m["chain10"]["best"])
                     / DURABLE_CHAIN})
    added_null = (med["chain10_null"] - med["chain10"]) / DURABLE_CHAIN
    res.add("checkpoint.chain10_null.added",
            "2.   of which hand-off alone (a store that writes nothing)", added_null, DELTA,
            details={"with_null_store": m["chain10_null"]})
    res.add("checkpoint.chain1.invoke", "2. 1-agent graph, store=SQLiteStore",
            med["chain1_store"], "s", baseline=med["chain1"], baseline_label="no store",
            details={"with": m["chain1_store"], "without": m["chain1"]})
    res.add("checkpoint.marginal", "2.   per extra agent in a chain (from 1 vs 10)",
            marginal, DELTA)
    res.add("checkpoint.fixed", "2.   per run: begin_run, set_status, start() path",
            fixed, DELTA)
    res.add("checkpoint.direct_save",
            "2.   for reference: save_outcomes(1 outcome) called directly",
            med["direct_save"], "s", details={"direct_save": m["direct_save"]})
    res.add("checkpoint.direct_run", "2.   for reference: begin_run + set_status called directly",
            med["direct_run"], "s", details={"direct_run": m["direct_run"]})
    res.add("checkpoint.fanout10.invoke",
            f"2. {DURABLE_FANOUT}-way fan-out + join, store=SQLiteStore",
            med["fanout10_store"], "s", baseline=med["fanout10"], baseline_label="no store",
            details={"with": m["fanout10_store"], "without": m["fanout10"],
                     "transactions": batching["fanout10"], "db_bytes_after": sizes["fanout10"]})
    res.add("checkpoint.fanout10.added", f"2.   added per agent ({fan_agents} agents)",
            added_fan, DELTA,
            details={"best_case": (m["fanout10_store"]["best"] - m["fanout10"]["best"])
                     / fan_agents})
    for key, label in (("chain10", f"{DURABLE_CHAIN}-agent chain"),
                       ("fanout10", f"{DURABLE_FANOUT}-way fan-out + join")):
        t = batching[key]
        print(f"    {label}: {h.fmt(med[key + '_store'], 's')} with store vs "
              f"{h.fmt(med[key], 's')} without; {t['transactions_per_run']:.1f} transactions "
              f"per run, {t['outcomes_per_transaction']:.2f} outcomes per transaction "
              f"(largest {t['largest_transaction']})", flush=True)
    print(f"    per agent added: chain {h.fmt(added_chain, DELTA)}, fan-out "
          f"{h.fmt(added_fan, DELTA)}; 1-agent graph {h.fmt(med['chain1_store'], 's')} vs "
          f"{h.fmt(med['chain1'], 's')} -> per run {h.fmt(fixed, DELTA)} + per chained agent "
          f"{h.fmt(marginal, DELTA)}", flush=True)
    print(f"    with a store that writes nothing (hand-off to the writer thread and back "
          f"only): {h.fmt(med['chain10_null'], 's')} per chain run = "
          f"{h.fmt(added_null, DELTA)} per agent", flush=True)
    print(f"    the store alone, called directly: one 1-outcome transaction "
          f"{h.fmt(med['direct_save'], 's')}, begin_run + set_status "
          f"{h.fmt(med['direct_run'], 's')}", flush=True)


# --------------------------------------------------------------------------------------
# 3. batch through a shared concurrency limit
# --------------------------------------------------------------------------------------


def sleeper(x):
    time.sleep(BATCH_SLEEP)
    return x


def bench_batch(res: Results, cfg: dict[str, Any]) -> None:
    ideal = BATCH_RUNS * BATCH_SLEEP / BATCH_SLOTS
    print(f"[3] batch of {BATCH_RUNS:,} runs, one agent sleeping {BATCH_SLEEP * 1e3:.0f} ms behind "
          f"a shared Limit(max_concurrent={BATCH_SLOTS}); theoretical {ideal:.2f} s", flush=True)
    limit = cp.Limit(max_concurrent=BATCH_SLOTS)
    g = cp.Graph()
    g.add("call", sleeper, limits=limit)
    app = g.compile()
    inputs = list(range(BATCH_RUNS))
    assert app.batch(inputs[:2 * BATCH_SLOTS]) == inputs[:2 * BATCH_SLOTS]  # warm the pool
    sleep_actual = h.once(lambda: [sleeper(0) for _ in range(40)]) / 40
    with concurrent.futures.ThreadPoolExecutor(max_workers=BATCH_SLOTS) as pool:
        list(pool.map(sleeper, inputs[:2 * BATCH_SLOTS]))  # warm: threads exist

        def engine_batch() -> None:
            out = app.batch(inputs)
            assert out[-1] == inputs[-1]

        samples = h.interleaved(
            {"engine": (engine_batch, 1),
             "tpe": (lambda: list(pool.map(sleeper, inputs)), 1)},
            cfg["batch_repeats"],
        )
    snap = limit.snapshot()
    eng, tpe = h.summary(samples["engine"]), h.summary(samples["tpe"])
    rounds = BATCH_RUNS / BATCH_SLOTS
    details = {"engine": eng, "limit_snapshot": snap, "sleep_actual_seconds": sleep_actual,
               "ideal_with_actual_sleep": rounds * sleep_actual,
               "added_per_slot_handoff": (eng["median"] - rounds * sleep_actual) / rounds}
    res.add("batch.wall", f"3. batch {BATCH_RUNS:,} x sleep(5 ms), Limit({BATCH_SLOTS})",
            eng["median"], "s", baseline=ideal,
            baseline_label=f"theoretical {BATCH_RUNS}x5ms/{BATCH_SLOTS}", details=details)
    res.add("batch.vs_tpe", f"3.   vs ThreadPoolExecutor({BATCH_SLOTS}).map", eng["median"], "s",
            baseline=tpe["median"], baseline_label="measured", details={"tpe": tpe})
    res.add("batch.vs_sleep", "3.   vs theoretical with the measured sleep", eng["median"], "s",
            baseline=rounds * sleep_actual,
            baseline_label=f"{rounds:.0f} x {h.fmt(sleep_actual, 's')}")
    print(f"    engine {h.fmt(eng['median'], 's')} (best {h.fmt(eng['best'], 's')}, worst "
          f"{h.fmt(eng['worst'], 's')}); TPE({BATCH_SLOTS}) {h.fmt(tpe['median'], 's')}; "
          f"theoretical {h.fmt(ideal, 's')}; time.sleep(5 ms) really takes "
          f"{h.fmt(sleep_actual, 's')}; limit: most running at once {snap['max_running_seen']}, "
          f"granted {snap['granted']}", flush=True)
    if snap["max_running_seen"] > BATCH_SLOTS:
        res.note(f"the limit let {snap['max_running_seen']} calls run at once "
                 f"(max_concurrent={BATCH_SLOTS})")


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def config(quick: bool) -> dict[str, Any]:
    if quick:
        return {"quick": True, "warmup_invokes": 300, "warmup_seconds": 0.3, "repeats": 5,
                "repeat_seconds": 0.02, "durable_warmup_invokes": 50,
                "durable_repeat_seconds": 0.05, "count_runs": 20, "batch_repeats": 2}
    return {"quick": False, "warmup_invokes": 3000, "warmup_seconds": 1.0, "repeats": 9,
            "repeat_seconds": 0.06, "durable_warmup_invokes": 300,
            "durable_repeat_seconds": 0.15, "count_runs": 100, "batch_repeats": 5}


def main(argv: list[str] | None = None) -> int:
    return h.main(__doc__, {"hotpath": bench_hotpath, "checkpoint": bench_checkpoint,
                            "batch": bench_batch}, config, argv,
                  quick_help="fewer repeats (about 10 s instead of about 35 s)")


if __name__ == "__main__":
    sys.exit(main())
