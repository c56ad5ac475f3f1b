"""The audit log: what a durable run records, chained by hashes, and what
``verify_audit`` detects when the SQLite file is tampered with directly."""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from conftest import Stores

import counterpoint as cp
from counterpoint._audit import entry_hash, genesis_hash


def billing(claim: str) -> cp.Result:
    return cp.Result(f"billing: {claim}", confidence=0.95,
                     usage={"input_tokens": 100, "output_tokens": 20, "cost": 0.01})


def shipping(claim: str) -> str:
    return f"shipping: {claim}"


def draft(merged: cp.Merged) -> cp.Result:
    return cp.Result({"reply": merged.value}, confidence=0.4, usage={"input_tokens": 50})


def send(reply: cp.Result) -> str:
    return f"sent {reply.value['reply']}"


def _graph(classify) -> cp.Graph:
    vote = cp.parallel(a=lambda x: "refund", b=lambda x: "refund", c=lambda x: "deny",
                       merge="majority")
    return (cp.Graph()
            .add("classify", classify, retry=cp.Retry(3, initial_backoff=0.01))
            .add("billing", billing, after="classify")
            .add("shipping", shipping, after="classify")
            .add("vote", vote, after="billing")
            .add("draft", draft, after="vote",
                 review=cp.Review(below=0.7, approvers=["support-leads"]))
            .add("send", send, after="draft"))


def _def_flaky_function():
    """A classifier (a plain function, whose attempts are counted) that fails its first
    call, then routes to billing."""
    state = {"calls": 0}

    def classify(claim: str) -> object:
        state["calls"] += 1
        if state["calls"] == 1:
            raise ConnectionError("the model timed out")
        return cp.route(claim, to=["billing"])

    return classify


@pytest.fixture
def paused(stores: Stores):
    """A run of the full graph, paused for review, and its app."""
    app = _graph(_def_flaky_function()).compile(store=stores.location(),
                                                budget={"input_tokens": 10_000})
    with pytest.raises(cp.NeedsReview) as info:
        app.invoke("double charge")
    return app, info.value.run_key


def _kinds(entries: list[cp.AuditEntry]) -> list[tuple[str, str | None]]:
    return [(e.kind, e.agent) for e in entries]


def test_a_run_records_every_kind_of_decision(paused) -> None:
    app, key = paused
    entries = app.store.audit(key)
    assert [e.seq for e in entries] == list(range(len(entries)))
    assert all(isinstance(e, cp.AuditEntry) and e.run_key == key for e in entries)
    by_kind: dict[str, list[cp.AuditEntry]] = {}
    for entry in entries:
        by_kind.setdefault(entry.kind, []).append(entry)
    first = entries[0]
    assert first.kind == "run_started" and first.agent is None
    assert first.data["graph"] == app.runs()[0].graph
    assert first.data["input_digest"].startswith("sha256:")
    assert "input" not in first.data  # digests only, by default
    assert first.data["budget"] == {"input_tokens": 10_000.0}

    finished = {e.agent: e for e in by_kind["agent_finished"]}
    # The consensus nested as "vote" has its own agents checkpointed under its path.
    assert set(finished) == {"classify", "billing", "vote",
                             "vote/a", "vote/b", "vote/c", "vote/merge"}
    assert finished["billing"].data["confidence"] == 0.95
    assert finished["billing"].data["usage"] == {"input_tokens": 100.0, "output_tokens": 20.0,
                                                 "cost": 0.01}
    assert finished["billing"].data["output_digest"].startswith("sha256:")

    [retried] = by_kind["agent_retried"]
    assert retried.agent == "classify"
    assert retried.data["attempt"] == 2 and retried.data["error"] == "ConnectionError"
    assert retried.data["delay"] >= 0
    started = {e.agent: e for e in by_kind["agent_started"]}
    assert started["classify"].data["attempts"] == 2
    assert set(started) == {"classify", "billing", "vote", "draft"}
    assert all(e.data["seconds"] >= 0 for e in started.values())

    [routed] = by_kind["route_chosen"]
    assert (routed.agent, routed.data["routes"]) == ("classify", ["billing"])
    skipped = {e.agent: e.data["reason"] for e in by_kind["agent_skipped"]}
    assert set(skipped) == {"shipping", "send"}

    merges = {e.agent: e for e in by_kind["merge_resolved"]}
    assert set(merges) == {"vote", "vote/merge"}
    merged = merges["vote"]
    assert merged.data["policy"] == "majority" and merged.data["pattern"] == "merge"
    assert merged.data["agreeing"] == ["a", "b"] and merged.data["disagreeing"] == ["c"]
    assert merged.data["resolution"]

    [requested] = by_kind["review_requested"]
    assert requested.agent == "draft"
    assert requested.data["confidence"] == 0.4 and requested.data["threshold"] == 0.7
    assert requested.data["approvers"] == ["support-leads"]

    [spent] = by_kind["budget_spent"]
    assert spent.data["budget"] == {"input_tokens": 10_000.0}
    assert spent.data["usage"]["input_tokens"] == 150.0
    assert spent.data["exhausted"] is False
    assert entries[-1].kind == "run_finished"
    assert entries[-1].data["status"] == "needs_review"
    assert app.store.verify_audit(key) == cp.AuditVerification(True, len(entries))

    # Resuming appends to the same chain.
    app.resume(key, cp.approve(by="ann", role="support-leads", note="ok"))
    more = app.store.audit(key)
    assert more[:len(entries)] == entries
    tail = _kinds(more[len(entries):])
    assert tail[:2] == [("review_decided", "draft"), ("run_resumed", None)]
    assert ("agent_finished", "send") in tail and tail[-1] == ("run_finished", None)
    assert more[-1].data["status"] == "succeeded"
    resumed = more[len(entries) + 1]
    assert resumed.data["restored"] == ["billing", "classify", "draft", "vote", "vote/a",
                                        "vote/b", "vote/c", "vote/merge"]
    assert app.store.verify_audit(key).ok


def test_failures_cancellations_and_times(stores: Stores) -> None:
    def boom(x):
        raise ValueError("bad input")

    app = (cp.Graph(on_error="continue").add("ok", lambda x: x).add("boom", boom)
           .compile(store=stores.location()))
    record = app.run(1)
    entries = app.store.audit(record.run_key)
    [failed] = [e for e in entries if e.kind == "agent_failed"]
    assert failed.agent == "boom" and "bad input" in failed.data["message"]
    assert failed.data["status"] == "failed"
    times = [e.time for e in entries if e.kind in ("run_started", "run_finished")]
    assert times == sorted(times)
    assert entries[-1].data["status"] == record.status


def test_hashes_chain_from_a_per_run_genesis(paused) -> None:
    app, key = paused
    entries = app.store.audit(key)
    previous = genesis_hash(key)
    for entry in entries:
        assert entry.prev_hash == previous
        assert entry.hash == entry_hash(key, entry.seq, entry.time, entry.kind, entry.agent,
                                        entry.data, entry.prev_hash)
        previous = entry.hash
    assert len(entries[0].prev_hash) == 64


def test_digests_are_of_the_stored_bytes(stores: Stores) -> None:
    store = stores.open("r.db")
    app = cp.Graph().add("a", lambda x: {"n": x["n"] + 1}).compile(store=store)
    record = app.run({"n": 1})
    entries = store.audit(record.run_key)
    digest = "sha256:" + hashlib.sha256(store.codec.encode({"n": 2})).hexdigest()
    [finished] = [e for e in entries if e.kind == "agent_finished"]
    assert finished.data["output_digest"] == digest
    assert "output" not in finished.data
    assert entries[0].data["input_digest"] == \
        "sha256:" + hashlib.sha256(store.codec.encode({"n": 1})).hexdigest()


def test_audit_content_records_inputs_and_outputs(stores: Stores) -> None:
    store = stores.open("r.db", audit_content=True)
    app = (cp.Graph().add("a", lambda x: {"n": x["n"] + 1, "tags": ("x", "y")})
           .compile(store=store))
    record = app.run({"n": 1})
    entries = store.audit(record.run_key)
    assert entries[0].data["input"] == {"n": 1}
    [finished] = [e for e in entries if e.kind == "agent_finished"]
    # The codec's JSON: a tuple is written as a tagged object.
    assert finished.data["output"]["n"] == 2
    assert json.loads(store.codec.encode(record.output)) == finished.data["output"]
    assert finished.data["output_digest"].startswith("sha256:")
    assert store.verify_audit(record.run_key).ok


def test_pickle_stores_record_content_as_base64(stores: Stores) -> None:
    store = stores.open("r.db", pickle=True, audit_content=True)
    record = cp.Graph().add("a", lambda x: {1, 2}).compile(store=store).run(0)
    [finished] = [e for e in store.audit(record.run_key) if e.kind == "agent_finished"]
    assert set(finished.data["output"]) == {"pickle_base64"}


def test_unknown_runs(stores: Stores) -> None:
    store = stores.open("r.db")
    with pytest.raises(cp.StoreError, match="no run 'nope'"):
        store.audit("nope")
    with pytest.raises(cp.StoreError, match="no run 'nope'"):
        store.verify_audit("nope")


# ---- tampering with the file --------------------------------------------------------------


@pytest.fixture
def finished(stores: Stores):
    app = _graph(_def_flaky_function()).compile(store=stores.location())
    with pytest.raises(cp.NeedsReview) as info:
        app.invoke("double charge")
    key = info.value.run_key
    app.resume(key, cp.approve(by="ann", role="support-leads"))
    app.store.close()
    store = stores.open()
    entries = store.audit(key)
    assert store.verify_audit(key).ok and len(entries) > 12
    # The trigger only stops accidents; whoever tampers drops it first.
    yield store, functools.partial(stores.connect, tamper=True), key, entries
    store.close()


def _seq_of(entries, kind: str, agent: str | None = None) -> int:
    return next(e.seq for e in entries if e.kind == kind and (agent is None or e.agent == agent))


def test_an_edited_entry_is_detected(finished) -> None:
    store, tamper, key, entries = finished
    seq = _seq_of(entries, "review_decided")
    data = dict(entries[seq].data, by="mallory")
    with tamper() as db:
        db.execute("UPDATE audit_log SET data = ? WHERE run_key = ? AND seq = ?",
                   (json.dumps(data), key, seq))
    result = store.verify_audit(key)
    assert not result.ok and result.seq == seq and "edited" in result.problem
    assert result.entries == len(entries)


def test_an_edited_time_or_kind_is_detected(finished) -> None:
    store, tamper, key, _entries = finished
    with tamper() as db:
        db.execute("UPDATE audit_log SET time = time + 1 WHERE run_key = ? AND seq = 3", (key,))
    assert store.verify_audit(key).seq == 3


def test_a_deleted_entry_is_detected(finished) -> None:
    store, tamper, key, entries = finished
    with tamper() as db:
        db.execute("DELETE FROM audit_log WHERE run_key = ? AND seq = 4", (key,))
    result = store.verify_audit(key)
    assert not result.ok and result.seq == 4 and "missing" in result.problem
    assert result.entries == len(entries) - 1


def test_swapped_entries_are_detected(finished) -> None:
    store, tamper, key, _entries = finished
    with tamper() as db:
        db.execute("UPDATE audit_log SET seq = -1 WHERE run_key = ? AND seq = 5", (key,))
        db.execute("UPDATE audit_log SET seq = 5 WHERE run_key = ? AND seq = 6", (key,))
        db.execute("UPDATE audit_log SET seq = 6 WHERE run_key = ? AND seq = -1", (key,))
    result = store.verify_audit(key)
    assert not result.ok and result.seq == 5


def test_a_truncated_tail_is_detected(finished) -> None:
    store, tamper, key, entries = finished
    with tamper() as db:
        db.execute("DELETE FROM audit_log WHERE run_key = ? AND seq >= ?",
                   (key, len(entries) - 2))
    result = store.verify_audit(key)
    assert not result.ok and result.seq == len(entries) - 2
    assert "deleted from its end" in result.problem


def test_a_truncated_tail_with_its_head_rewritten_is_detected_by_the_head_hash(finished) -> None:
    store, tamper, key, entries = finished
    with tamper() as db:
        db.execute("DELETE FROM audit_log WHERE run_key = ? AND seq >= ?",
                   (key, len(entries) - 2))
        db.execute("UPDATE runs SET audit_count = ? WHERE run_key = ?",
                   (len(entries) - 2, key))
    result = store.verify_audit(key)
    assert not result.ok and result.seq == len(entries) - 3


def test_a_forged_entry_is_detected(finished) -> None:
    store, tamper, key, entries = finished
    seq = len(entries)
    forged_prev = "f" * 64  # not the last entry's hash
    data = {"approved": True, "by": "mallory"}
    forged_hash = entry_hash(key, seq, 1.0, "review_decided", "draft", data, forged_prev)
    with tamper() as db:
        db.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?)",
                   (key, seq, 1.0, "review_decided", "draft",
                    json.dumps(data, sort_keys=True), forged_prev, forged_hash))
        db.execute("UPDATE runs SET audit_count = ?, audit_head = ? WHERE run_key = ?",
                   (seq + 1, forged_hash, key))
    result = store.verify_audit(key)
    assert not result.ok and result.seq == seq and "does not follow" in result.problem


def test_an_appended_entry_without_its_head_is_detected(finished) -> None:
    store, tamper, key, entries = finished
    seq = len(entries)
    prev = entries[-1].hash
    data = {"status": "succeeded"}
    digest = entry_hash(key, seq, 1.0, "run_finished", None, data, prev)
    with tamper() as db:
        db.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?)",
                   (key, seq, 1.0, "run_finished", None, json.dumps(data), prev, digest))
    result = store.verify_audit(key)
    assert not result.ok and result.seq == seq


def test_a_changed_output_is_detected(finished) -> None:
    store, tamper, key, entries = finished
    with tamper() as db:
        db.execute("UPDATE outcomes SET output = ? WHERE run_key = ? AND agent = 'billing'",
                   (b'"billing: refund everything"', key))
    result = store.verify_audit(key)
    assert not result.ok and "stored output of agent 'billing' was changed" in result.problem
    assert result.seq == _seq_of(entries, "agent_finished", "billing")


def test_a_forged_outcome_row_is_detected(finished) -> None:
    store, tamper, key, _entries = finished
    with tamper() as db:
        db.execute("INSERT INTO outcomes VALUES (?, 'ghost', 'succeeded', ?, 'json2', NULL, "
                   "'{}', '', NULL, 1.0)", (key, b'"boo"'))
    result = store.verify_audit(key)
    assert not result.ok and "agent 'ghost' has a stored output that no audit entry records" \
        in result.problem


def test_a_changed_input_is_detected(finished) -> None:
    store, tamper, key, _entries = finished
    with tamper() as db:
        db.execute("UPDATE runs SET input = ? WHERE run_key = ?", (b'"other"', key))
    result = store.verify_audit(key)
    assert not result.ok and result.seq == 0 and "input" in result.problem


def test_a_deleted_run_record_is_detected(finished) -> None:
    store, tamper, key, _entries = finished
    with tamper() as db:
        db.execute("DELETE FROM runs WHERE run_key = ?", (key,))
    result = store.verify_audit(key)
    assert not result.ok and "no run record" in result.problem


def test_the_log_refuses_updates_through_sql(finished, stores: Stores) -> None:
    _store, _tamper, key, _entries = finished
    with stores.connect() as db, pytest.raises(Exception, match="append-only"):
        db.execute("UPDATE audit_log SET kind = 'x' WHERE run_key = ?", (key,))


def test_a_consistent_rewrite_needs_the_head_hash_kept_elsewhere(finished) -> None:
    """What verify cannot catch: the whole chain recomputed, head record included. The
    head hash kept elsewhere (e.g. by the CLI's user) shows it."""
    store, tamper, key, entries = finished
    kept_head = entries[-1].hash
    previous = genesis_hash(key)
    with tamper() as db:
        for entry in entries:
            data = dict(entry.data, by="mallory") if entry.kind == "review_decided" \
                else entry.data
            digest = entry_hash(key, entry.seq, entry.time, entry.kind, entry.agent, data,
                                previous)
            db.execute("UPDATE audit_log SET data = ?, prev_hash = ?, hash = ? "
                       "WHERE run_key = ? AND seq = ?",
                       (json.dumps(data), previous, digest, key, entry.seq))
            previous = digest
        db.execute("UPDATE runs SET audit_head = ? WHERE run_key = ?", (previous, key))
    assert store.verify_audit(key).ok
    assert store.audit(key)[-1].hash != kept_head


# ---- stores and runs ----------------------------------------------------------------------


def test_twenty_durable_runs_in_a_batch_each_get_an_intact_chain(stores: Stores) -> None:
    store = stores.open("r.db")
    app = (cp.Graph().add("a", lambda x: cp.Result(x + 1, usage={"input_tokens": 1}))
           .add("b", lambda x: x.value * 2, after="a").add("c", lambda x: x.value - 1, after="a")
           .compile(store=store, budget={"input_tokens": 5}))
    assert app.batch(range(20), max_concurrency=8) == [{"b": (i + 1) * 2, "c": i} for i in
                                                        range(20)]
    runs = store.runs()
    assert len(runs) == 20
    for summary in runs:
        entries = store.audit(summary.run_key)
        assert store.verify_audit(summary.run_key).ok
        kinds = [e.kind for e in entries]
        assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
        assert kinds.count("agent_finished") == 3
        assert "budget_spent" in kinds
        assert entries[-1].data["status"] == "succeeded"


def test_concurrent_started_runs_each_get_an_intact_chain(stores: Stores) -> None:
    app = (cp.Graph().add("a", lambda x: x + 1).add("b", lambda x: x * 2, after="a")
           .compile(store=stores.location("r.db")))
    runs = [app.start(i) for i in range(20)]
    assert [run.result() for run in runs] == [(i + 1) * 2 for i in range(20)]
    for run in runs:
        entries = app.store.audit(run.run_key)
        assert [e.kind for e in entries] == [
            "run_started", "agent_finished", "agent_finished", "agent_started", "agent_started",
            "run_finished"]
        assert app.store.verify_audit(run.run_key).ok


def test_a_schema_1_store_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE counterpoint_meta (key TEXT PRIMARY KEY, value TEXT);
            INSERT INTO counterpoint_meta VALUES ('schema_version', '1');
            INSERT INTO counterpoint_meta VALUES ('application', 'counterpoint');
            CREATE TABLE runs (run_key TEXT PRIMARY KEY, graph TEXT NOT NULL,
                status TEXT NOT NULL, input BLOB, format TEXT NOT NULL, created REAL NOT NULL,
                updated REAL NOT NULL);
            CREATE TABLE outcomes (run_key TEXT NOT NULL, agent TEXT NOT NULL,
                status TEXT NOT NULL, output BLOB, format TEXT NOT NULL, routes TEXT,
                usage TEXT, message TEXT, confidence REAL, updated REAL NOT NULL,
                PRIMARY KEY (run_key, agent));
            INSERT INTO runs VALUES ('old', 'g', 'succeeded', X'31', 'json2', 1.0, 1.0);
            INSERT INTO outcomes VALUES ('old', 'a', 'succeeded', X'32', 'json2', NULL, '{}',
                '', NULL, 1.0);
        """)
    store = cp.SQLiteStore(path)
    assert store.audit("old") == []
    assert store.verify_audit("old") == cp.AuditVerification(True, 0)
    assert store.load_run("old").input == 1
    app = cp.Graph().add("a", lambda x: x).compile(store=store)
    assert store.verify_audit(app.run(3).run_key).ok
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM counterpoint_meta WHERE key = 'schema_version'"
                          ).fetchone() == ("3",)
