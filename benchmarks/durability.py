#!/usr/bin/env python3
"""Durability benchmark harness for counterpoint: SQLite and PostgreSQL stores.

What checkpointing every agent's outcome costs, per agent, with no store, a SQLiteStore
and a PostgresStore measured in the same run, for a chain (one outcome per transaction)
and a fan-out (outcomes batched); and how long resuming a run with 1,000 stored outcomes
takes (everything restored, nothing run again). A measurement tool, not a test suite:
the exit status is 0 whatever the figures.

Usage:
    python benchmarks/durability.py [--quick] [--postgres DSN] [--json out.json]
                                    [--only SECTION ...] [--settle SECONDS]

PostgreSQL: --postgres DSN, or $COUNTERPOINT_TEST_POSTGRES (scripts/postgres.sh start
sets it); the harness makes a scratch database there and drops it at the end. Without
one, the PostgreSQL rows are left out.

Sections (see benchmarks/README.md for what each figure means):
    checkpoint  1. a 20-agent chain and a 10-way fan-out + join of no-op agents, with no
                   store, SQLiteStore and PostgresStore: time per run and added per agent;
                   and each store's transaction for one agent, called directly
    resume      2. resume of a 1,000-agent fan-out + join whose 1,001 outcomes are all
                   stored: the whole resume() call, and load_run() alone

PostgresStore is measured twice: with the server's default synchronous_commit=on (each
commit waits for the server's disk flush) and with synchronous_commit=off set in the
DSN (options=-c synchronous_commit=off: a commit survives the client process being
killed, and a server crash may lose the last fraction of a second of commits, about
the guarantee SQLiteStore's WAL with synchronous=NORMAL gives).

Methodology as in engine.py: warm up first, time many back-to-back invokes per repeat
with the garbage collector paused, take the median over repeats, and interleave each
variant with its baseline (rotating the order every repeat). SQLite files live in a
temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import _harness as h
import counterpoint as cp
from _harness import DELTA, Results

CHAIN = 20        # agents in the checkpointed chain
FANOUT = 10       # entry agents of the checkpointed fan-out (plus one join agent)
RESUMED = 1000    # entry agents of the resumed fan-out (plus one join agent)

_postgres_dsn = os.environ.get("COUNTERPOINT_TEST_POSTGRES", "")


def noop(x: Any) -> Any:
    return x


def chain(length: int, store: cp.Store | None) -> cp.CompiledGraph:
    g = cp.Graph()
    for i in range(length):
        g.add(f"a{i}", noop, after=None if i == 0 else f"a{i - 1}")
    return g.compile(store=store)


def fanout(width: int, store: cp.Store | None) -> cp.CompiledGraph:
    g = cp.Graph()
    names = [f"w{i}" for i in range(width)]
    for name in names:
        g.add(name, noop)
    g.add("join", lambda found: len(found), after=names)
    return g.compile(store=store)


@contextmanager
def scratch_stores() -> Iterator[Callable[[str, str], cp.Store]]:
    """make(backend, name) -> a new empty store (a key of LABELS); all are closed
    and deleted afterwards (files, scratch databases)."""
    tmp = tempfile.mkdtemp(prefix="counterpoint-bench-")
    made: list[cp.Store] = []
    databases: list[str] = []

    def admin() -> Any:
        import psycopg
        return psycopg.connect(_postgres_dsn, autocommit=True)

    def make(backend: str, name: str) -> cp.Store:
        store: cp.Store
        if backend == "sqlite":
            store = cp.SQLiteStore(os.path.join(tmp, f"{name}.db"))
        else:
            database = f"cp_bench_{uuid.uuid4().hex[:12]}"
            with admin() as db:
                db.execute(f"CREATE DATABASE {database}")
            databases.append(database)
            dsn = _postgres_dsn.rsplit("/", 1)[0] + "/" + database
            if backend == "postgres_async":
                dsn += "?options=-c%20synchronous_commit%3Doff"
            store = cp.PostgresStore(dsn)
        made.append(store)
        return store

    try:
        yield make
    finally:
        # Stop the checkpoint writer threads (private helper, also used at interpreter
        # exit) so that no write is in flight, then close the stores and delete them.
        try:
            from counterpoint._durable import stop_writers

            stop_writers()
        except ImportError:
            time.sleep(1.0)
        for store in made:
            store.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if databases:
            with admin() as db:
                for database in databases:
                    db.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def backends() -> list[str]:
    return list(LABELS) if _postgres_dsn else ["sqlite"]


LABELS = {"sqlite": "SQLiteStore", "postgres": "PostgresStore",
          "postgres_async": "PostgresStore, synchronous_commit=off"}


# --------------------------------------------------------------------------------------
# 1. Checkpoint cost per agent
# --------------------------------------------------------------------------------------


def direct_write(store: cp.Store) -> Callable[[], Any]:
    """One chained agent's checkpoint, as the writer thread makes it: its outcome and its
    audit entry in one transaction (private helper of the writer, for the entry)."""
    from counterpoint._durable import outcome_events

    key = uuid.uuid4().hex
    store.begin_run(key, "bench", 1)
    outcomes = [cp.StoredOutcome("a0", "succeeded", 1)]
    events = [outcome_events(outcomes[0], None)]
    return lambda: store.record_outcomes(key, outcomes, events)


def bench_checkpoint(res: Results, cfg: dict[str, Any]) -> None:
    print(f"[1] checkpoints: every outcome written before the run sees it; {CHAIN}-agent "
          f"chain and {FANOUT}-way fan-out + join, no store vs "
          f"{' vs '.join(LABELS[b] for b in backends())}", flush=True)
    shapes = {"chain": (chain, CHAIN, CHAIN), "fanout": (fanout, FANOUT, FANOUT + 1)}
    with scratch_stores() as make:
        candidates = {}
        for shape, (build, size, _agents) in shapes.items():
            variants: dict[str, cp.Store | None] = {"none": None}
            for backend in backends():
                variants[backend] = make(backend, f"{shape}-{backend}")
            for variant, store in variants.items():
                app = build(size, store)
                app.invoke(1)
                fn = lambda app=app: app.invoke(1)
                h.warm(fn, cfg["warmup_invokes"], cfg["warmup_seconds"])
                candidates[f"{shape}.{variant}"] = (
                    fn, h.calibrate(fn, cfg["repeat_seconds"], minimum=cfg["minimum_calls"]))
        for backend in backends():
            # The store alone, called directly with no engine and no thread hand-off: the
            # transaction of one chained agent (its outcome and its audit entry).
            fn = direct_write(make(backend, f"direct-{backend}"))
            candidates[f"direct.{backend}"] = (
                fn, h.calibrate(fn, cfg["repeat_seconds"], minimum=cfg["minimum_calls"]))
        samples = h.interleaved(candidates, cfg["repeats"])
    m = {key: h.summary(values) for key, values in samples.items()}
    med = {key: s["median"] for key, s in m.items()}
    for shape, (_build, size, agents) in shapes.items():
        title = f"{size}-agent chain" if shape == "chain" else f"{size}-way fan-out + join"
        res.add(f"checkpoint.{shape}.none", f"1. {title}, no store", med[f"{shape}.none"], "s",
                details={"run": m[f"{shape}.none"]})
        for backend in backends():
            key = f"{shape}.{backend}"
            added = (med[key] - med[f"{shape}.none"]) / agents
            res.add(f"checkpoint.{key}", f"1. {title}, store={LABELS[backend]}", med[key], "s",
                    baseline=med[f"{shape}.none"], baseline_label="no store",
                    details={"with": m[key], "without": m[f"{shape}.none"]})
            res.add(f"checkpoint.{key}.added", f"1.   added per agent ({agents} agents, "
                    "run start and end included)", added, DELTA,
                    details={"best_case": (m[key]["best"] - m[f"{shape}.none"]["best"])
                             / agents})
            print(f"    {title}: {LABELS[backend]} {h.fmt(med[key], 's')} per run vs "
                  f"{h.fmt(med[f'{shape}.none'], 's')} without = {h.fmt(added, DELTA)} per "
                  "agent", flush=True)
    for backend in backends():
        key = f"direct.{backend}"
        res.add(f"checkpoint.{key}", f"1. for reference: one outcome transaction called "
                f"directly, {LABELS[backend]}", med[key], "s", details={"direct": m[key]})
        print(f"    {LABELS[backend]} alone (record_outcomes of 1 outcome, no engine): "
              f"{h.fmt(med[key], 's')}", flush=True)


# --------------------------------------------------------------------------------------
# 2. Resume of a run with 1,000 stored outcomes
# --------------------------------------------------------------------------------------


def bench_resume(res: Results, cfg: dict[str, Any]) -> None:
    print(f"[2] resume of a {RESUMED}-way fan-out + join with all {RESUMED + 1} outcomes "
          "stored (everything restored, nothing runs)", flush=True)
    with scratch_stores() as make:
        candidates = {}
        for backend in backends():
            store = make(backend, f"resume-{backend}")
            app = fanout(RESUMED, store)
            key = app.run(1).run_key
            assert len(store.load_run(key).outcomes) == RESUMED + 1
            assert app.resume(key) == RESUMED
            candidates[f"resume.{backend}"] = (lambda app=app, key=key: app.resume(key), 1)
            candidates[f"load.{backend}"] = (lambda store=store, key=key: store.load_run(key), 1)
        samples = h.interleaved(candidates, cfg["resume_repeats"])
    m = {key: h.summary(values) for key, values in samples.items()}
    for backend in backends():
        resume, load = m[f"resume.{backend}"], m[f"load.{backend}"]
        res.add(f"resume.{backend}", f"2. resume(), {RESUMED + 1} outcomes restored, "
                f"{LABELS[backend]}", resume["median"], "s", details={"resume": resume})
        res.add(f"resume.{backend}.load", "2.   of which load_run() alone", load["median"], "s",
                details={"load_run": load})
        print(f"    {LABELS[backend]}: resume() {h.fmt(resume['median'], 's')}, load_run() "
              f"{h.fmt(load['median'], 's')}", flush=True)


# --------------------------------------------------------------------------------------


def config(quick: bool) -> dict[str, Any]:
    if quick:
        return {"quick": True, "warmup_invokes": 30, "warmup_seconds": 0.3, "repeats": 5,
                "repeat_seconds": 0.1, "minimum_calls": 5, "resume_repeats": 3,
                "postgres": bool(_postgres_dsn)}
    return {"quick": False, "warmup_invokes": 200, "warmup_seconds": 1.0, "repeats": 9,
            "repeat_seconds": 0.3, "minimum_calls": 10, "resume_repeats": 7,
            "postgres": bool(_postgres_dsn)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--postgres", metavar="DSN",
                        help="PostgreSQL server to measure PostgresStore on (default: "
                        "$COUNTERPOINT_TEST_POSTGRES); a scratch database is made there")


def use_postgres(args: argparse.Namespace) -> None:
    global _postgres_dsn
    if args.postgres:
        _postgres_dsn = args.postgres
    if not _postgres_dsn:
        print("no PostgreSQL server (--postgres DSN or $COUNTERPOINT_TEST_POSTGRES): "
              "measuring SQLite only\n", flush=True)


def main(argv: list[str] | None = None) -> int:
    return h.main(__doc__, {"checkpoint": bench_checkpoint, "resume": bench_resume}, config,
                  argv, quick_help="fewer repeats (about 30 s instead of about 2 min)",
                  add_arguments=add_arguments, run_instead=use_postgres)


if __name__ == "__main__":
    sys.exit(main())
