"""Fault injection: durable runs on a SQLite store: checkpoints, SIGKILL and resume,
JSON vs pickle, refusing corrupt and foreign files, and graph-shape checks."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

import counterpoint as cp


class Custom:
    """A value JSON cannot store; pickle can (module-level, so it is importable)."""

    def __init__(self, payload):
        self.payload = payload

    def __eq__(self, other):
        return isinstance(other, Custom) and other.payload == self.payload

    def __hash__(self):
        return hash(("Custom", repr(self.payload)))


def _digest(path) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _chain(log=None):
    def step(name):
        def agent(x):
            if log is not None:
                log.append(name)
            return {"by": name, "from": x}

        return agent

    return (
        cp.Graph()
        .add("a", step("a"))
        .add("b", step("b"), after="a")
        .add("c", step("c"), after="b")
    )


# ---- checkpoints --------------------------------------------------------------------


def test_each_finished_output_is_persisted(stores):
    app = _chain().compile(store=stores.location())
    rec = app.run({"q": 1})
    assert rec.status == "succeeded"
    assert rec.run_key
    store = stores.open()
    try:
        stored = store.load_run(rec.run_key)
    finally:
        store.close()
    assert stored.status == "succeeded"
    assert stored.input == {"q": 1}
    assert set(stored.outcomes) == {"a", "b", "c"}
    assert all(o.status == "succeeded" for o in stored.outcomes.values())
    assert stored.outcomes["a"].output == {"by": "a", "from": {"q": 1}}
    assert stored.outcomes["c"].output == rec.output


def test_each_output_is_written_before_the_next_agent_sees_it(stores):
    path = stores.location()
    seen = {}

    def check_predecessor(name, pred):
        def agent(x):
            with stores.connect() as db:
                rows = dict(db.execute(
                    "SELECT agent, status FROM outcomes WHERE agent = ?", (pred,)).fetchall())
            seen[name] = rows.get(pred)
            return name

        return agent

    g = (
        cp.Graph()
        .add("a", lambda x: "a")
        .add("b", check_predecessor("b", "a"), after="a")
        .add("c", check_predecessor("c", "b"), after="b")
    )
    assert g.compile(store=path).invoke("x") == "c"
    assert seen == {"b": "succeeded", "c": "succeeded"}


def test_failures_and_statuses_are_persisted(stores):
    def boom(x):
        raise ValueError("kaput")

    g = (
        cp.Graph(on_error="continue")
        .add("ok", lambda x: "fine")
        .add("bad", boom)
        .add("after_bad", lambda x: x, after="bad")
    )
    app = g.compile(store=stores.location())
    rec = app.run("x")
    stored = app.store.load_run(rec.run_key)
    assert stored.status == rec.status == "succeeded"
    assert stored.outcomes["ok"].status == "succeeded"
    assert stored.outcomes["bad"].status == "failed"
    assert "kaput" in stored.outcomes["bad"].message
    assert [r.run_key for r in app.runs()] == [rec.run_key]


def test_stored_status_is_final_when_the_result_is_returned(stores):
    # Once invoke()/run()/result() has returned, the store must say how the run ended:
    # a dashboard or another process listing runs("running") right then must not see it.
    def boom(x):
        raise ValueError("no")

    ok_app = _chain().compile(store=stores.location("ok.db"))
    bad_app = cp.Graph().add("bad", boom).compile(store=stores.location("bad.db"))
    skip_app = (
        cp.Graph(on_error="continue")
        .add("ok", lambda x: x)
        .add("bad", boom)
        .add("after_bad", lambda x: x, after="bad")
        .compile(store=stores.location("skip.db"))
    )
    for _ in range(40):
        rec = ok_app.run("x")
        assert ok_app.store.load_run(rec.run_key).status == "succeeded"
        with pytest.raises(cp.AgentError):
            bad_app.invoke("x")
        assert next(r.status for r in bad_app.runs()) == "failed"
        rec = skip_app.run("x")  # ends on a skip, not on a checkpointed outcome
        assert skip_app.store.load_run(rec.run_key).status == rec.status == "succeeded"
    for app in (ok_app, bad_app, skip_app):
        assert app.runs("running") == []


def test_resuming_a_finished_run_reruns_nothing(stores):
    log = []
    app = _chain(log).compile(store=stores.location())
    rec = app.run("x")
    log.clear()
    again = app.start_resumed(rec.run_key).record()
    assert again.status == "succeeded"
    assert again.output == rec.output
    assert log == []
    assert all(o.restored for o in again.agents.values())


# ---- SIGKILL mid-run, resume in another process ------------------------------------

WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    import counterpoint as cp

    store, log_path, mode = sys.argv[1], sys.argv[2], sys.argv[3]

    def log(line):
        with open(log_path, "a") as f:
            f.write(line + "\\n")

    def step(name, hang=False):
        def agent(x):
            log(f"start {name}")
            if hang and mode == "first":
                time.sleep(120)  # killed here
            log(f"done {name}")
            return f"{name}<{json.dumps(x, sort_keys=True)}>"
        return agent

    g = (
        cp.Graph()
        .add("a", step("a"))
        .add("b1", step("b1"), after="a")
        .add("b2", step("b2", hang=True), after="a", dispatch="thread")
        .add("c", step("c"), after="b1")
        .add("e", step("e", hang=True), after="c", dispatch="thread")
        .add("d", step("d"), after=["e", "b2"])
    )
    app = g.compile(store=store)
    if mode == "first":
        run = app.start("input")
        with open(log_path + ".key", "w") as f:
            f.write(run.run_key)
        run.wait()
        log("first process finished (it should have been killed)")
    else:
        keys = [r.run_key for r in app.runs("running")]
        rec = app.start_resumed(keys[0]).record()
        print(json.dumps({
            "keys": keys,
            "status": rec.status,
            "output": rec.output,
            "restored": sorted(n for n, o in rec.agents.items() if o.restored),
        }))
    """
)


def test_sigkill_mid_run_then_resume_reruns_only_unfinished_agents(stores, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    store = stores.location()
    log = tmp_path / "agents.log"
    log.write_text("")

    proc = subprocess.Popen([sys.executable, str(worker), str(store), str(log), "first"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # e starts only once c's output is checkpointed; b2 is running too.
        deadline = time.monotonic() + 30
        while True:
            lines = log.read_text().splitlines()
            if "start e" in lines and "start b2" in lines:
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, lines
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    run_key = (tmp_path / "agents.log.key").read_text()
    first = log.read_text().splitlines()
    assert "done d" not in first

    resumed = subprocess.run([sys.executable, str(worker), str(store), str(log), "resume"],
                             capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert result["keys"] == [run_key]
    assert result["status"] == "succeeded"
    assert result["output"].startswith("d<")
    assert result["restored"] == ["a", "b1", "c"]

    lines = log.read_text().splitlines()
    for name in ("a", "b1", "c"):  # finished before the kill: never ran again
        assert lines.count(f"start {name}") == 1, lines
        assert lines.count(f"done {name}") == 1, lines
    for name in ("b2", "e"):  # killed mid-call: ran again, finished once
        assert lines.count(f"start {name}") == 2, lines
        assert lines.count(f"done {name}") == 1, lines
    assert lines.count("start d") == 1 and lines.count("done d") == 1
    assert "first process finished (it should have been killed)" not in lines

    store_obj = stores.open()
    try:
        assert store_obj.load_run(run_key).status == "succeeded"
        assert store_obj.runs("running") == []
    finally:
        store_obj.close()


# ---- JSON default, pickle opt-in -----------------------------------------------------


def test_json_store_fails_an_agent_whose_output_it_cannot_store(stores):
    g = (
        cp.Graph(on_error="continue")
        .add("maker", lambda x: Custom(x))
        .add("fine", lambda x: "fine")
        .add("user", lambda x: x, after="maker")
    )
    app = g.compile(store=stores.location())
    rec = app.run("x")
    assert rec.agents["maker"].status == "failed"
    message = rec.agents["maker"].error
    assert "maker" in message
    assert "Custom" in message
    assert "pickle=True" in message
    assert rec.agents["user"].status == "skipped"
    assert rec.agents["fine"].status == "succeeded"
    with pytest.raises(cp.AgentError) as info:
        cp.Graph().add("maker", lambda x: Custom(x)).compile(store=stores.location("r2.db")).invoke("x")
    assert info.value.agent == "maker"
    assert "maker" in str(info.value)


def test_json_store_refuses_input_it_cannot_store(stores):
    app = cp.Graph().add("a", lambda x: x).compile(store=stores.location())
    with pytest.raises(cp.StoreError, match="pickle=True"):
        app.invoke(Custom(1))


def test_pickle_store_round_trips_a_custom_object(stores):
    store = stores.open(pickle=True)
    log = []

    def make(x):
        log.append("make")
        return Custom({"n": x.payload + 1})

    g = cp.Graph().add("make", make).add("use", lambda c: Custom([c.payload]), after="make")
    app = g.compile(store=store)
    rec = app.run(Custom(1))
    assert rec.status == "succeeded"
    assert rec.output == Custom([{"n": 2}])
    store.close()

    fresh = stores.open(pickle=True)
    try:
        stored = fresh.load_run(rec.run_key)
        assert stored.input == Custom(1)
        assert stored.outcomes["make"].output == Custom({"n": 2})
        assert stored.outcomes["use"].output == Custom([{"n": 2}])
        # resuming restores the custom objects without re-running anything
        app2 = g.compile(store=fresh)
        log.clear()
        assert app2.resume(rec.run_key) == Custom([{"n": 2}])
        assert log == []
    finally:
        fresh.close()


def test_pickled_store_is_not_unpickled_without_opt_in(stores):
    store = stores.open(pickle=True)
    rec = cp.Graph().add("a", lambda x: Custom(x)).compile(store=store).run(1)
    store.close()
    json_store = stores.open()
    try:
        with pytest.raises(cp.StoreError, match="pickle=True"):
            json_store.load_run(rec.run_key)
    finally:
        json_store.close()


# ---- refusing files that are not counterpoint stores -------------------------------


def _listing(directory):
    return sorted(os.listdir(directory))


def test_non_sqlite_file_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my precious notes, not a database\n" * 200)
    before = _digest(path)
    mtime = os.stat(path).st_mtime_ns
    listing = _listing(tmp_path)
    with pytest.raises(cp.StoreError, match="not a SQLite database"):
        cp.SQLiteStore(path)
    with pytest.raises(cp.StoreError):
        cp.Graph().add("a", lambda x: x).compile(store=path)
    with pytest.raises(cp.StoreError):
        cp.Graph().add("a", lambda x: x).compile(store=str(path))
    assert _digest(path) == before
    assert os.stat(path).st_mtime_ns == mtime
    assert _listing(tmp_path) == listing


def test_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "app.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO users (name) VALUES ('ada'), ('grace')")
    db.commit()
    db.close()
    before = _digest(path)
    listing = _listing(tmp_path)
    with pytest.raises(cp.StoreError, match="users") as info:
        cp.SQLiteStore(path)
    assert "not a counterpoint run store" in str(info.value)
    with pytest.raises(cp.StoreError):
        cp.Graph().add("a", lambda x: x).compile(store=path)
    assert _digest(path) == before
    assert _listing(tmp_path) == listing
    db = sqlite3.connect(path)
    assert db.execute("SELECT name FROM users ORDER BY id").fetchall() == [("ada",), ("grace",)]
    db.close()


def _corrupt_store(tmp_path):
    """A real counterpoint store (WAL mode) with its pages damaged after page 1."""
    good = tmp_path / "good.db"
    app = cp.Graph().add("a", lambda x: "x" * 3000).compile(store=good)
    for i in range(20):
        app.invoke(i)
    app.store.close()
    data = good.read_bytes()
    bad = tmp_path / "corrupt.db"
    bad.write_bytes(data[:4096] + bytes(range(256)) * ((len(data) - 4096) // 256))
    good.unlink()
    return bad


def test_corrupt_store_is_refused_and_left_byte_for_byte_untouched(tmp_path):
    bad = _corrupt_store(tmp_path)
    before = _digest(bad)
    with pytest.raises(cp.StoreError, match="corrupt"):
        cp.SQLiteStore(bad)
    with pytest.raises(cp.StoreError):
        cp.Graph().add("a", lambda x: x).compile(store=bad)
    assert _digest(bad) == before


def test_refusing_a_corrupt_store_leaves_no_files_behind(tmp_path):
    # "it was left untouched": probing the refused file should not leave -wal/-shm
    # files next to it either.
    bad = _corrupt_store(tmp_path)
    listing = _listing(tmp_path)
    with pytest.raises(cp.StoreError):
        cp.SQLiteStore(bad)
    assert _listing(tmp_path) == listing


def test_empty_file_becomes_a_store(tmp_path):
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    app = cp.Graph().add("a", lambda x: x).compile(store=path)
    assert app.invoke(5) == 5


# ---- resuming with the wrong graph or key ---------------------------------------------


def test_resume_with_a_graph_of_a_different_shape_is_refused(stores):
    path = stores.location()
    log = []
    rec = _chain(log).compile(store=path).run("x")
    other_shapes = [
        _chain().add("d", lambda x: x, after="c"),                         # extra agent
        cp.Graph().add("a", lambda x: x).add("b", lambda x: x, after="a")  # missing agent
        .add("c", lambda x: x, after="a"),                                 # rewired
    ]
    for graph in other_shapes:
        app = graph.compile(store=path)
        with pytest.raises(cp.StoreError, match="different graph"):
            app.resume(rec.run_key)
    assert log == ["a", "b", "c"]


def test_resume_of_an_unknown_run_is_a_store_error(stores):
    app = _chain().compile(store=stores.location())
    with pytest.raises(cp.StoreError, match="no run"):
        app.resume("does-not-exist")


def test_resume_without_a_store_is_a_graph_error():
    with pytest.raises(cp.GraphError, match="store"):
        _chain().compile().resume("anything")


# ---- usage and budgets survive a resume -------------------------------------------------


def _spending_graph(calls):
    def spend(name):
        def agent(x):
            calls.append(name)
            return cp.Result(name, usage={"tokens": 60})

        return agent

    return (
        cp.Graph()
        .add("a", spend("a"))
        .add("b", spend("b"), after="a", review=cp.Review(below=0.5))
        .add("c", spend("c"), after="b")
    )


def test_resumed_run_keeps_the_usage_of_restored_agents(stores):
    # The store keeps every outcome's usage; a resumed run should report it, so that
    # rec.usage is what the whole run spent.
    calls = []
    app = _spending_graph(calls).compile(store=stores.location())
    rec = app.run("x")
    assert rec.status == "needs_review"
    assert rec.usage == {"tokens": 120.0}
    assert app.store.load_run(rec.run_key).outcomes["a"].usage == {"tokens": 60.0}
    resumed = app.start_resumed(rec.run_key, cp.approve()).record()
    assert resumed.status == "succeeded"
    assert calls == ["a", "b", "c"]
    assert resumed.agents["a"].restored
    assert resumed.agents["a"].usage == {"tokens": 60.0}
    assert resumed.usage == {"tokens": 180.0}


def test_resumed_run_does_not_get_a_fresh_budget(stores):
    # 120 tokens of a 100-token budget were spent before the pause: after approval,
    # no new agent should start.
    calls = []
    app = _spending_graph(calls).compile(store=stores.location(), budget={"tokens": 100})
    rec = app.run("x")
    assert rec.status == "needs_review"
    assert rec.budget_exhausted
    resumed = app.start_resumed(rec.run_key, cp.approve()).record()
    assert calls == ["a", "b"], "c ran on a budget the run had already spent"
    assert resumed.budget_exhausted
    assert resumed.agents["c"].status == "skipped"
