"""The command line's commands built on the governance API, end to end in subprocesses:
reviewer roles (``runs approve/reject --as --role``), the hash-chained audit log
(``audit --verify``), usage and prune.

The review flow runs the example spec examples/refund_review.yaml (a gate with
``approvers: [support-leads]``) from the repository root."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from test_cli import HERE, REPO, SIMPLE, cli, json_error, one_error_line

pytestmark = pytest.mark.timeout(120)

SPEC = "examples/refund_review.yaml"
ALLOW = ["--allow", "refund_agents"]
# Where the store keeps the audit log: the table and the columns the tampering edits.
AUDIT_TABLE = "audit_log"


def start(store: Path) -> str:
    """A refund the drafting agent is unsure of: paused for review (exit 3)."""
    proc = cli("run", SPEC, *ALLOW, "--input", "@examples/inputs/refund_ticket.json",
               "--store", str(store), cwd=REPO)
    assert proc.returncode == 3, proc.stderr
    return re.search(r"Run ([0-9a-f]{32}) needs review", proc.stdout).group(1)


def decide(verb: str, key: str, store: Path, *more: str):
    return cli("runs", verb, key, "--store", str(store), "--spec", SPEC, *ALLOW, *more,
               cwd=REPO)


def status(key: str, store: Path) -> str:
    proc = cli("runs", "show", key, "--store", str(store), "--json", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return str(json.loads(proc.stdout)["status"])


def tamper(store: Path, key: str) -> int:
    """Rewrites the data of the run's first audit entry behind the store's back; returns
    that entry's seq."""
    db = sqlite3.connect(store)
    try:
        (seq,) = db.execute(f"SELECT MIN(seq) FROM {AUDIT_TABLE} WHERE run_key = ?",
                            (key,)).fetchone()
        # The store's append-only trigger stops accidents, not someone editing the file.
        db.execute("DROP TRIGGER IF EXISTS audit_log_append_only")
        db.execute(f"UPDATE {AUDIT_TABLE} SET data = ? WHERE run_key = ? AND seq = ?",
                   (json.dumps({"tampered": True}), key, seq))
        db.commit()
    finally:
        db.close()
    return int(seq)


def test_review_by_role_then_audit_before_and_after_tampering(tmp_path):
    store = tmp_path / "runs.db"
    key = start(store)

    refused = decide("approve", key, store, "--as", "bob", "--role", "interns")
    assert refused.returncode == 6
    assert "Traceback" not in refused.stderr
    one_error_line(refused)
    assert status(key, store) == "needs_review"
    refused_json = decide("approve", key, store, "--as", "bob", "--role", "interns", "--json")
    assert refused_json.returncode == 6
    assert json_error(refused_json)["kind"] == "review_refused"

    approved = decide("approve", key, store, "--as", "alice", "--role", "support-leads",
                      "--note", "refund ok")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout == "We refunded 120.00 for order B-2210 (unverified claim).\n"
    assert status(key, store) == "succeeded"

    audit = cli("audit", key, "--store", str(store), "--json", cwd=REPO)
    assert audit.returncode == 0, audit.stderr
    entries = json.loads(audit.stdout)["entries"]
    kinds = [e["kind"] for e in entries]
    assert "review_decided" in kinds
    decided = entries[kinds.index("review_decided")]
    assert decided["agent"] == "draft"
    assert "alice" in json.dumps(decided["data"]) and "support-leads" in json.dumps(decided["data"])
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)

    human = cli("audit", key, "--store", str(store), cwd=REPO)
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines()[0].split() == ["seq", "time", "kind", "agent", "data"]
    assert re.search(r"review_decided\s+draft", human.stdout)

    intact = cli("audit", key, "--store", str(store), "--verify", cwd=REPO)
    assert intact.returncode == 0, intact.stderr
    assert f"audit log intact: {len(entries)} entries" in intact.stdout

    seq = tamper(store, key)
    broken = cli("audit", key, "--store", str(store), "--verify", cwd=REPO)
    assert broken.returncode == 1
    assert "AUDIT LOG TAMPERED" in broken.stdout
    assert f"first bad entry: seq {seq}" in broken.stdout
    assert "tampered with" in one_error_line(broken)
    broken_json = cli("audit", key, "--store", str(store), "--verify", "--json", cwd=REPO)
    assert broken_json.returncode == 1
    verification = json.loads(broken_json.stdout)["verification"]
    assert verification["ok"] is False and verification["seq"] == seq
    assert verification["problem"]
    assert json_error(broken_json)["kind"] == "audit_tampered"


def test_reject_by_a_refused_role_leaves_the_run_pending(tmp_path):
    store = tmp_path / "runs.db"
    key = start(store)
    proc = decide("reject", key, store, "--as", "bob", "--role", "interns", "--reason", "no")
    assert proc.returncode == 6
    one_error_line(proc)
    assert status(key, store) == "needs_review"
    proc = decide("reject", key, store, "--as", "carol", "--role", "support-leads",
                  "--reason", "claim not verified")
    assert proc.returncode == 1
    assert "claim not verified" in one_error_line(proc)
    assert status(key, store) == "failed"


def test_audit_of_an_unknown_run_exits_5(tmp_path):
    store = tmp_path / "runs.db"
    start(store)
    proc = cli("audit", "nokey", "--store", str(store), "--verify", cwd=REPO)
    assert proc.returncode == 5
    one_error_line(proc)


def test_usage_by_agent_and_by_run(tmp_path):
    store = tmp_path / "runs.db"
    key = start(store)
    assert decide("approve", key, store, "--as", "alice", "--role", "support-leads").returncode == 0
    proc = cli("usage", "--store", str(store), "--json", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["by"] == "agent"
    rows = {row["key"]: row for row in doc["rows"]}
    assert {"lookup", "draft", "notify"} <= set(rows)
    assert rows["notify"]["calls"] >= 1 and rows["notify"]["failures"] == 0
    for row in doc["rows"]:
        assert set(row) == {"key", "calls", "failures", "tokens", "cost", "p50_seconds",
                            "p95_seconds"}
    human = cli("usage", "--store", str(store), "--by", "agent", "--since", "7d", cwd=REPO)
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines()[0].split() == ["agent", "calls", "failures", "tokens",
                                                    "cost", "p50", "p95"]
    assert re.search(r"^notify\s+\d+\s+0\s", human.stdout, re.M)
    by_run = json.loads(cli("usage", "--store", str(store), "--by", "run", "--since",
                            "2000-01-01", "--json", cwd=REPO).stdout)
    assert [row["key"] for row in by_run["rows"]] == [key]
    bad = cli("usage", "--store", str(store), "--since", "yesterday-ish", cwd=REPO)
    assert bad.returncode == 2


def test_prune(tmp_path):
    shutil.copy(HERE / "cli_agents.py", tmp_path / "cli_agents.py")
    (tmp_path / "simple.yaml").write_text(SIMPLE)
    store = tmp_path / "runs.db"
    for _ in range(2):
        done = cli("run", "simple.yaml", "--allow", "cli_agents", "--store", str(store),
                   cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    paused = start(store)

    kept = cli("runs", "prune", "--store", str(store), "--before", "7d", "--yes",
               cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert "deleted 0 run(s)" in kept.stdout

    proc = cli("runs", "prune", "--store", str(store), "--yes", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"deleted 2 run(s) from {store}" in proc.stdout
    left = json.loads(cli("runs", "list", "--store", str(store), "--json",
                          cwd=tmp_path).stdout)["runs"]
    assert [r["run_key"] for r in left] == [paused]  # a paused run is kept by default

    proc = cli("runs", "prune", "--store", str(store), "--status", "needs_review", "--json",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["deleted"] == 1
