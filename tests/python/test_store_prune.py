"""store.prune: deleting old runs (by age or count) with their outcomes and audit logs,
in both stores; stores without an audit log keep working."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
from conftest import Stores

import counterpoint as cp


def _statuses(stores: Stores) -> tuple[cp.Store, dict[str, str]]:
    """A store with one run of each status a prune cares about."""
    def boom(x):
        raise ValueError("no")

    store = stores.open("r.db")
    ok = cp.Graph().add("a", lambda x: x).compile(store=store)
    bad = cp.Graph().add("a", boom).compile(store=store)
    paused = cp.Graph().add("a", lambda x: cp.Result(x, confidence=0.1),
                            review=cp.Review(below=0.5)).compile(store=store)
    keys = {"succeeded": ok.run(1).run_key, "failed": bad.run(1).run_key,
            "needs_review": paused.run(1).run_key}
    running = ok.run(2).run_key
    interrupted = ok.run(3).run_key
    # As if those two runs' processes had died: their statuses are set on a reopened
    # store, once the checkpoint writer (which may record a run's end just after its
    # waiter did) has stopped.
    store.close()
    store = stores.open("r.db")
    store.set_status(running, "running")
    store.set_status(interrupted, "interrupted")
    keys.update(running=running, interrupted=interrupted)
    return store, keys


def _rows(stores: Stores, key: str) -> dict[str, int]:
    with stores.connect("r.db") as db:
        return {table: db.execute(f"SELECT COUNT(*) FROM {table} WHERE run_key = ?",
                                  (key,)).fetchone()[0]
                for table in ("runs", "outcomes", "audit_log")}


def test_prune_deletes_finished_runs_with_their_outcomes_and_logs(stores: Stores) -> None:
    store, keys = _statuses(stores)
    assert _rows(stores, keys["succeeded"])["audit_log"] > 0
    assert store.prune() == 2
    left = {summary.status for summary in store.runs()}
    assert left == {"needs_review", "running", "interrupted"}
    for status in ("succeeded", "failed"):
        assert _rows(stores, keys[status]) == {"runs": 0, "outcomes": 0,
                                                          "audit_log": 0}
        with pytest.raises(cp.StoreError, match="no run"):
            store.verify_audit(keys[status])
    assert store.verify_audit(keys["needs_review"]).ok
    assert store.prune() == 0


def test_prune_deletes_other_statuses_only_when_named(stores: Stores) -> None:
    store, _keys = _statuses(stores)
    assert store.prune(status="needs_review") == 1
    assert store.prune(status=["running", "interrupted"]) == 2
    assert {summary.status for summary in store.runs()} == {"succeeded", "failed"}
    with pytest.raises(ValueError, match="status must be"):
        store.prune(status=[])


def test_prune_before(stores: Stores) -> None:
    store = stores.open("r.db")
    app = cp.Graph().add("a", lambda x: x).compile(store=store)
    old = app.run(1).run_key
    time.sleep(0.05)
    cutoff = time.time()
    time.sleep(0.05)
    new = app.run(2).run_key
    assert store.prune(before=cutoff) == 1
    assert [summary.run_key for summary in store.runs()] == [new]
    assert store.prune(before=datetime.datetime.fromtimestamp(cutoff)) == 0
    assert store.prune(before=datetime.datetime.now() + datetime.timedelta(seconds=5)) == 1
    assert old not in {s.run_key for s in store.runs()}
    with pytest.raises(TypeError, match="before must be"):
        store.prune(before="yesterday")


def test_prune_keeps_the_newest_finished_runs(stores: Stores) -> None:
    def boom(x):
        raise ValueError("no")

    store = stores.open("r.db")
    ok = cp.Graph().add("a", lambda x: x).compile(store=store)
    bad = cp.Graph().add("a", boom).compile(store=store)
    finished = [ok.run(1).run_key, bad.run(2).run_key, ok.run(3).run_key, ok.run(4).run_key]
    paused = cp.Graph().add("a", lambda x: cp.Result(x, confidence=0.1),
                            review=cp.Review(below=0.5)).compile(store=store).run(5).run_key
    assert store.prune(keep=3) == 1  # the oldest finished run; the paused one is not counted
    assert [s.run_key for s in store.runs()] == [paused, *reversed(finished[1:])]
    assert _rows(stores, finished[0]) == {"runs": 0, "outcomes": 0, "audit_log": 0}
    assert store.prune(keep=3) == 0
    assert store.prune(keep=1, status="succeeded") == 1  # of the succeeded runs: keep 1
    assert {s.run_key for s in store.runs()} == {paused, finished[1], finished[3]}
    assert store.prune(keep=0) == 2
    assert [s.run_key for s in store.runs()] == [paused]
    for wrong in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="keep must be"):
            store.prune(keep=wrong)


def test_prune_keep_and_before_together(stores: Stores) -> None:
    store = stores.open("r.db")
    app = cp.Graph().add("a", lambda x: x).compile(store=store)
    keys = [app.run(1).run_key, app.run(2).run_key]
    time.sleep(0.05)
    cutoff = time.time()
    time.sleep(0.05)
    keys += [app.run(3).run_key, app.run(4).run_key]
    # Keep the 3 newest; of the older ones, delete those started before the cutoff.
    assert store.prune(keep=3, before=cutoff) == 1
    assert [s.run_key for s in store.runs()] == list(reversed(keys[1:]))
    # Keep 1; only runs started before the cutoff go.
    assert store.prune(keep=1, before=cutoff) == 1
    assert [s.run_key for s in store.runs()] == list(reversed(keys[2:]))


class MemoryStore(cp.Store):
    """A third-party store written before the audit log: only the abstract methods."""

    def __init__(self) -> None:
        self.runs_: dict[str, dict[str, Any]] = {}

    def begin_run(self, run_key: str, graph: str, input: Any) -> None:
        self.runs_[run_key] = {"graph": graph, "input": input, "status": "running",
                               "outcomes": {}, "created": time.time()}

    def save_outcomes(self, run_key, outcomes):
        for outcome in outcomes:
            self.runs_[run_key]["outcomes"][outcome.agent] = outcome
        return [None] * len(outcomes)

    def set_status(self, run_key: str, status: str) -> None:
        self.runs_[run_key]["status"] = status

    def load_run(self, run_key: str) -> cp.StoredRun:
        run = self.runs_[run_key]
        return cp.StoredRun(run_key, run["graph"], run["status"], run["input"],
                            dict(run["outcomes"]), run["created"], run["created"])

    def runs(self, status=None, *, graph=None):
        return [cp.RunSummary(key, run["status"], run["created"], run["created"], run["graph"])
                for key, run in self.runs_.items()
                if (status is None or run["status"] == status)
                and (graph is None or run["graph"] == graph)]


def test_a_store_without_an_audit_log_keeps_working() -> None:
    store = MemoryStore()
    app = (cp.Graph().add("a", lambda x: x + 1)
           .add("b", lambda x: cp.Result(x, confidence=0.1), after="a",
                review=cp.Review(below=0.5, approvers=["leads"]))
           .compile(store=store))
    with pytest.raises(cp.NeedsReview) as paused:
        app.invoke(1)
    key = paused.value.run_key
    with pytest.raises(cp.ReviewRefused):
        app.resume(key, cp.approve())
    assert app.resume(key, cp.approve(by="ann", role="leads")).value == 2
    assert not store.keeps_audit
    assert store.audit(key) == []
    result = store.verify_audit(key)
    assert not result.ok and "keeps no audit log" in result.problem
    assert cp.usage(store, as_frame=False) == []
    with pytest.raises(cp.StoreError, match="cannot prune"):
        store.prune()
