"""Reviewer roles: a review gate names the roles that may decide (approvers=); a decision
says by whom and in which role; any other decision is refused and changes nothing."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import pytest

import counterpoint as cp

LEADS = ("support-leads", "managers")


def draft(claim: str) -> cp.Result:
    return cp.Result({"reply": f"refund for {claim}"}, confidence=0.3,
                     usage={"input_tokens": 12, "output_tokens": 30, "cost": 0.002})


def send(reply: cp.Result) -> str:
    return f"sent: {reply.value['reply']}"


def _app(path: Path, approvers=LEADS) -> cp.CompiledGraph:
    return (cp.Graph()
            .add("draft", draft, review=cp.Review(below=0.7, approvers=approvers))
            .add("send", send, after="draft")
            .compile(store=path))


def _paused(app: cp.CompiledGraph) -> str:
    with pytest.raises(cp.NeedsReview) as paused:
        app.invoke("order 7")
    return paused.value.run_key


def _dump(path: Path) -> list:
    """Every row of every table: what 'left exactly as it was' compares."""
    with sqlite3.connect(path) as db:
        tables = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return [(table, sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr))
                for table in tables]


def _settled(path: Path) -> list:
    """The dump once the checkpoint writer's own record of the run's end (which may
    come just after invoke returns) is in."""
    before = _dump(path)
    for _ in range(50):
        __import__("time").sleep(0.02)
        now = _dump(path)
        if now == before:
            return now
        before = now
    return before


def _decided(app: cp.CompiledGraph, key: str) -> cp.AuditEntry:
    [entry] = [e for e in app.store.audit(key) if e.kind == "review_decided"]
    return entry


def test_an_allowed_role_approves_and_the_run_continues(tmp_path: Path) -> None:
    app = _app(tmp_path / "r.db")
    key = _paused(app)
    before = __import__("time").time()
    result = app.resume(key, cp.approve(by="ann@example.com", role="support-leads",
                                        note="checked the order"))
    assert result == "sent: refund for order 7"
    assert app.store.load_run(key).status == "succeeded"
    stored = app.store.load_run(key).outcomes["draft"]
    assert stored.status == "succeeded" and stored.message == "approved by reviewer"
    entry = _decided(app, key)
    assert entry.agent == "draft"
    assert entry.data["approved"] is True
    assert entry.data["by"] == "ann@example.com"
    assert entry.data["role"] == "support-leads"
    assert entry.data["note"] == "checked the order"
    assert entry.data["approvers"] == list(LEADS)
    assert before <= entry.data["time"] == entry.time <= __import__("time").time()
    assert app.store.verify_audit(key).ok


def test_an_approval_may_replace_the_output(tmp_path: Path) -> None:
    app = _app(tmp_path / "r.db")
    key = _paused(app)
    corrected = cp.Result({"reply": "partial refund"}, confidence=1.0)
    assert app.resume(key, cp.approve(corrected, by="max", role="managers")) == \
        "sent: partial refund"
    assert _decided(app, key).data["replaced_output"] is True


@pytest.mark.parametrize("decision, given_by, given_role", [
    (cp.approve(by="sam", role="sales"), "sam", "sales"),
    (cp.approve(by="sam"), "sam", None),
    (cp.approve(role="support-leads"), None, "support-leads"),
    (cp.approve(), None, None),
    (True, None, None),
    ("approve", None, None),
    (cp.reject("no", by="sam", role="sales"), "sam", "sales"),
    ({"draft": cp.approve(by="sam", role="interns")}, "sam", "interns"),
], ids=["wrong-role", "no-role", "no-by", "anonymous", "true", "approve-string", "reject",
        "by-agent"])
def test_a_refused_decision_changes_nothing(tmp_path: Path, decision, given_by,
                                            given_role) -> None:
    app = _app(tmp_path / "r.db")
    key = _paused(app)
    before = _settled(tmp_path / "r.db")
    with pytest.raises(cp.ReviewRefused) as refused:
        app.resume(key, decision)
    error = refused.value
    assert isinstance(error, PermissionError) and isinstance(error, cp.CounterpointError)
    assert (error.agent, error.by, error.role, error.approvers) == \
        ("draft", given_by, given_role, LEADS)
    message = str(error)
    assert "'draft'" in message and "'support-leads', 'managers'" in message
    assert "cp.approve(by=" in message  # the fix
    if given_role is not None and given_by is not None:
        assert repr(given_role) in message
    assert _dump(tmp_path / "r.db") == before
    assert [s.status for s in app.runs()] == ["needs_review"]
    assert app.store.verify_audit(key).ok
    # Still resumable, by someone allowed.
    assert app.resume(key, cp.approve(by="ann", role="support-leads")).startswith("sent")


def test_start_resumed_refuses_too(tmp_path: Path) -> None:
    app = _app(tmp_path / "r.db")
    key = _paused(app)
    with pytest.raises(cp.ReviewRefused):
        app.start_resumed(key, cp.approve(by="sam", role="sales"))
    assert app.store.load_run(key).status == "needs_review"


def test_an_allowed_role_rejects(tmp_path: Path) -> None:
    app = _app(tmp_path / "r.db")
    key = _paused(app)
    with pytest.raises(cp.AgentError) as failed:
        app.resume(key, cp.reject("wrong customer", by="max", role="managers",
                                  note="see ticket 12"))
    assert isinstance(failed.value.__cause__, cp.ReviewRejected)
    entry = _decided(app, key)
    assert entry.data["approved"] is False
    assert entry.data["reason"] == "wrong customer"
    assert (entry.data["by"], entry.data["role"], entry.data["note"]) == \
        ("max", "managers", "see ticket 12")
    assert app.store.load_run(key).outcomes["draft"].status == "failed"
    assert app.store.verify_audit(key).ok


def test_a_gate_without_approvers_accepts_anyone(tmp_path: Path) -> None:
    app = _app(tmp_path / "r.db", approvers=())
    key = _paused(app)
    assert app.resume(key, True).startswith("sent")
    entry = _decided(app, key)
    assert entry.data["by"] is None and entry.data["role"] is None
    assert entry.data["approvers"] == []
    # Who decided is recorded when given, even without approvers.
    key = _paused(app)
    app.resume(key, cp.approve(by="kim", role="anyone", note="fine"))
    assert (_decided(app, key).data["by"], _decided(app, key).data["role"]) == ("kim", "anyone")


def test_each_of_several_gates_checks_its_own_roles(tmp_path: Path) -> None:
    app = (cp.Graph()
           .add("draft", draft, review=cp.Review(approvers=["support-leads"]))
           .add("legal", draft, review=cp.Review(approvers=["lawyers"]))
           .compile(store=tmp_path / "r.db"))
    key = _paused(app)
    lead = cp.approve(by="ann", role="support-leads")
    with pytest.raises(cp.ReviewRefused) as refused:
        app.resume(key, {"draft": lead, "legal": lead})
    assert refused.value.agent == "legal" and refused.value.approvers == ("lawyers",)
    assert app.store.load_run(key).status == "needs_review"
    result = app.resume(key, {"draft": lead, "legal": cp.approve(by="lou", role="lawyers")})
    assert set(result) == {"draft", "legal"}
    decided = {e.agent: e.data["role"] for e in app.store.audit(key)
               if e.kind == "review_decided"}
    assert decided == {"draft": "support-leads", "legal": "lawyers"}


def test_in_process_reviewer_with_roles(tmp_path: Path) -> None:
    def as_lead(request: cp.ReviewRequest) -> cp.Decision:
        return cp.approve(by="bot", role="support-leads")

    def as_intern(request: cp.ReviewRequest) -> cp.Decision:
        return cp.approve(by="bot", role="interns")

    def build(reviewer):
        return (cp.Graph()
                .add("draft", draft, review=cp.Review(reviewer=reviewer, approvers=LEADS))
                .add("send", send, after="draft")
                .compile(store=tmp_path / "r.db"))

    assert build(as_lead).invoke("order 1") == "sent: refund for order 1"
    record = build(as_intern).run("order 2")
    assert record.status == "failed"
    assert record.agents["draft"].status == "failed"
    assert isinstance(record.error.__cause__, cp.ReviewRefused)
    assert record.error.__cause__.role == "interns"
    failed = [e for e in record_entries(record) if e.kind == "agent_failed"]
    assert failed and "ReviewRefused" in failed[0].data["message"]
    # Without a store too: the check does not depend on durability.
    plain = cp.Graph().add("draft", draft, review=cp.Review(reviewer=as_intern,
                                                           approvers=LEADS)).compile()
    with pytest.raises(cp.AgentError) as info:
        plain.invoke("x")
    assert isinstance(info.value.__cause__, cp.ReviewRefused)


def record_entries(record: cp.RunResult) -> list[cp.AuditEntry]:
    return cp.SQLiteStore(_path_of(record)).audit(record.run_key)


_paths: dict[str, str] = {}


def _path_of(record: cp.RunResult) -> str:
    return _paths[record.run_key]


@pytest.fixture(autouse=True)
def _remember_paths(monkeypatch, tmp_path: Path):
    # Which file a run was written to, for record_entries.
    original = cp.CompiledGraph._durable_request

    def remembering(self, request, *args, **kwargs):
        out = original(self, request, *args, **kwargs)
        _paths[out[1]] = getattr(self.store, "path", "")
        return out

    monkeypatch.setattr(cp.CompiledGraph, "_durable_request", remembering)


@pytest.mark.parametrize("approvers, problem", [
    ("support-leads", "must be a list or tuple of role names"),
    (["leads", ""], "must be non-empty role names"),
    (["leads", 3], "must be non-empty role names"),
    (["leads", "leads"], "lists a role twice"),
    ({"leads"}, "must be a list or tuple"),
])
def test_bad_approvers_are_graph_errors(approvers, problem) -> None:
    with pytest.raises(cp.GraphError, match=problem):
        cp.Review(approvers=approvers)


def test_approvers_are_kept_as_a_tuple() -> None:
    assert cp.Review(approvers=["a", "b"]).approvers == ("a", "b")
    assert cp.Review().approvers == ()


def test_decisions_carry_who_and_why() -> None:
    kept = cp.approve(by="ann", role="support-leads", note="ok")
    assert (kept.approved, kept.by, kept.role, kept.note) == (True, "ann", "support-leads", "ok")
    assert not kept.replaces_output
    rejected = cp.reject("wrong", by="max", role="managers")
    assert (rejected.approved, rejected.reason, rejected.by) == (False, "wrong", "max")
    assert cp.reject().reason == "rejected by the reviewer"
    with pytest.raises(TypeError, match="by must be a non-empty string"):
        cp.approve(by="")
    with pytest.raises(TypeError, match="role"):
        cp.approve(role=3)
    with pytest.raises(TypeError, match="note"):
        cp.reject(note=None)


def test_decisions_and_gates_pickle() -> None:
    for value in (cp.approve(), cp.approve({"x": 1}, by="a", role="r", note="n"),
                  cp.reject("no", by="a", role="r"),
                  cp.Review(below=0.5, approvers=("leads",))):
        assert pickle.loads(pickle.dumps(value)) == value
    assert not pickle.loads(pickle.dumps(cp.approve())).replaces_output
    refused = cp.ReviewRefused("draft", "sam", "sales", LEADS)
    back = pickle.loads(pickle.dumps(refused))
    assert (back.agent, back.by, back.role, back.approvers, str(back)) == \
        ("draft", "sam", "sales", LEADS, str(refused))
