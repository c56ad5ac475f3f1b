"""Every public exception pickles with its message and structured fields, directly and
through a multiprocessing pool (how multiprocessing and distributed backends send them)."""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

import counterpoint as cp


class Boom(Exception):
    """An agent's own exception (module-level, so it pickles)."""


class Unpicklable(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.lock = __import__("threading").Lock()


def _public_exceptions() -> list[type[BaseException]]:
    return [
        value for name in cp.__all__
        if isinstance(value := getattr(cp, name), type) and issubclass(value, BaseException)
    ]


def _examples() -> list[BaseException]:
    review = cp.ReviewRequest("draft", {"text": "hi"}, "confidence 0.4 < 0.7", 0.4, "k1")
    agent_error = cp.AgentError("billing", "card declined", {"classify": "c(q)"}, 7)
    agent_error.__cause__ = Boom("card declined")
    return [
        cp.CounterpointError("plain"),
        cp.GraphError("agent 'x': bad", "x"),
        cp.GraphError("empty graph"),
        agent_error,
        cp.RunCancelled(3, {"a": 1}),
        cp.AgentTimeout("agent 'slow' timed out after 1 s"),
        cp.CircuitOpenError("circuit open"),
        cp.ReviewRejected("rejected by reviewer: wrong"),
        cp.ReviewRefused("draft", "bob", "intern", ("support-leads", "managers")),
        cp.ReviewRefused("draft", None, None, ("support-leads",)),
        cp.RunTimeout(4, {"a": [1, 2]}),
        cp.BudgetExceeded(5, {"tokens": 120.0}, {"a": "x"}),
        cp.NeedsReview("k1", [review], {"research": "facts"}),
        cp.NeedsInput("k1", [cp.InputRequest("ask/worker[2]", {"q": "ok?"}, "k1")], [review],
                      {"research": "facts"}),
        cp.InterruptSignal({"ask": {"q": "ok?"}, "answers": ["yes"]}),
        cp.StoreError("run store runs.db: cannot write agent outputs: the disk is full"),
        cp.PlanError("unknown worker 'w'", "t1"),
        cp.SpecError("triage.yaml", "agents.billing.retry.max_attempts", "must be >= 1, got 0",
                     "use an integer from 1", problems=(
                         cp.SpecProblem("agents.billing.retry.max_attempts",
                                        "must be >= 1, got 0", "use an integer from 1"),
                         cp.SpecProblem("agents.reply.join", "'x' is not one of 'all'"))),
        cp.SpecError("bad.json", "", "invalid JSON: Expecting value", "fix the syntax",
                     line=3, column=7),
        cp.EngineError("refused"),
        cp.WorkerLost("judge", "the Ray actor running it died (ActorDiedError: killed)"),
        cp.WorkerLost(None, "a Ray actor of the batch could not rebuild the graph"),
        cp.HandoffError("pay", "input", "field 'amount' = 'high' is not a valid float "
                        "(expects float)", "amount", "high"),
        cp.HandoffError("draft", "output", "None (NoneType) is not a valid Draft"),
    ]


# The fields each type carries besides its message.
FIELDS = ("question", "node", "agent", "by", "role", "approvers", "outputs", "run_id", "usage", "run_key", "pending", "subtask",
          "source", "path", "problem", "hint", "problems", "line", "column", "direction",
          "field", "value")


def _same(original: BaseException, copy_: BaseException) -> None:
    assert type(copy_) is type(original)
    assert str(copy_) == str(original)
    assert copy_.args == original.args
    for name in FIELDS:
        if hasattr(original, name):
            assert getattr(copy_, name) == getattr(original, name), name
    if original.__cause__ is not None:
        assert type(copy_.__cause__) is type(original.__cause__)
        assert str(copy_.__cause__) == str(original.__cause__)


def test_every_public_exception_has_an_example():
    assert {type(e) for e in _examples()} == set(_public_exceptions())


@pytest.mark.parametrize("exc", _examples(), ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_pickle_round_trip_keeps_message_and_fields(exc, protocol):
    _same(exc, pickle.loads(pickle.dumps(exc, protocol=protocol)))


@pytest.mark.parametrize("exc", _examples(), ids=lambda e: type(e).__name__)
def test_copy_keeps_message_and_fields(exc):
    _same(exc, copy.copy(exc))
    _same(exc, copy.deepcopy(exc))


def test_isinstance_relations_survive():
    timeout = pickle.loads(pickle.dumps(cp.AgentTimeout("late")))
    assert isinstance(timeout, TimeoutError) and isinstance(timeout, cp.CounterpointError)
    graph_error = pickle.loads(pickle.dumps(cp.GraphError("bad", "x")))
    assert isinstance(graph_error, ValueError)
    refused = pickle.loads(pickle.dumps(cp.ReviewRefused("d", "bob", "intern", ("leads",))))
    assert isinstance(refused, PermissionError) and isinstance(refused, cp.CounterpointError)


def test_an_unpicklable_cause_is_replaced_by_a_stand_in():
    exc = cp.AgentError("a", "no", {}, 1)
    exc.__cause__ = Unpicklable("holds a lock")
    back = pickle.loads(pickle.dumps(exc))
    assert back.agent == "a"
    assert isinstance(back.__cause__, RuntimeError)
    assert "Unpicklable: holds a lock" in str(back.__cause__)


class NeedsTwoArgs(Exception):
    """Pickles, but fails to unpickle: __init__ wants more than its args."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def test_a_cause_that_cannot_be_unpickled_is_replaced_too():
    exc = cp.AgentError("a", "no", {}, 1)
    exc.__cause__ = NeedsTwoArgs(42, "bad gateway")
    back = pickle.loads(pickle.dumps(exc))
    assert isinstance(back.__cause__, RuntimeError)
    assert "NeedsTwoArgs: bad gateway" in str(back.__cause__)


def test_unpicklable_outputs_are_replaced_one_by_one():
    lock = __import__("threading").Lock()
    review = cp.ReviewRequest("draft", lock, "confidence 0.1 < 0.5", 0.1, "k")
    exc = cp.NeedsReview("k", [review], {"ok": [1, 2], "client": lock})
    back = pickle.loads(pickle.dumps(exc))
    assert back.outputs["ok"] == [1, 2]
    assert back.outputs["client"].startswith("<unpicklable lock")
    assert back.pending[0].agent == "draft" and back.pending[0].reason == review.reason
    assert back.pending[0].output.startswith("<unpicklable lock")
    assert str(back) == str(exc)


def test_notes_and_extra_attributes_survive():
    exc = cp.RunCancelled(9, {})
    exc.add_note("cancelled by the dashboard")
    exc.extra = {"who": "ops"}
    back = pickle.loads(pickle.dumps(exc))
    assert back.__notes__ == ["cancelled by the dashboard"]
    assert back.extra == {"who": "ops"}


def test_exceptions_raised_by_real_runs_pickle(tmp_path):
    def billing(x):
        raise Boom("card declined")

    with pytest.raises(cp.AgentError) as info:
        cp.Graph().add("classify", lambda x: x).add("billing", billing, after="classify") \
            .compile().invoke("q")
    _same(info.value, pickle.loads(pickle.dumps(info.value)))

    app = cp.Graph().add("draft", lambda x: cp.Result(x, confidence=0.1),
                         review=cp.Review(below=0.5)).compile(store=tmp_path / "r.db")
    with pytest.raises(cp.NeedsReview) as paused:
        app.invoke("text")
    back = pickle.loads(pickle.dumps(paused.value))
    _same(paused.value, back)
    assert back.pending[0].agent == "draft"
    assert back.pending[0].run_key == paused.value.run_key


POOL = textwrap.dedent(
    """
    import json, multiprocessing, sys
    import counterpoint as cp

    def make(index):
        # Raised in the worker process, pickled back to the parent.
        review = cp.ReviewRequest("draft", "text", "confidence 0.4 < 0.7", 0.4, "k")
        errors = [
            cp.AgentError("billing", "card declined", {"classify": "c"}, 7),
            cp.RunCancelled(3, {"a": 1}),
            cp.RunTimeout(4, {"a": 2}),
            cp.BudgetExceeded(5, {"tokens": 120.0}, {"a": "x"}),
            cp.NeedsReview("k", [review], {"research": "facts"}),
            cp.NeedsInput("k", [cp.InputRequest("ask", "which tone?", "k")], [], {}),
            cp.GraphError("bad", "x"),
            cp.StoreError("full"),
            cp.AgentTimeout("late"),
            cp.CircuitOpenError("open"),
            cp.ReviewRejected("no"),
            cp.PlanError("bad plan", "t1"),
            cp.EngineError("refused"),
            cp.SpecError("t.yaml", "agents.a.timeout", "must be > 0, got 0", "use a number > 0"),
            cp.ReviewRefused("draft", "bob", "intern", ("support-leads",)),
            cp.WorkerLost("judge", "the Ray actor running it died"),
            cp.HandoffError("pay", "input", "field 'amount' = 'x' is not a valid float",
                            "amount", "x"),
        ]
        raise errors[index]

    if __name__ == "__main__":
        out = []
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(2) as pool:
            for index in range(17):
                try:
                    pool.apply(make, (index,))
                except BaseException as exc:
                    out.append({"type": type(exc).__name__, "message": str(exc),
                                "fields": {k: repr(getattr(exc, k)) for k in
                                           ("agent", "outputs", "run_id", "usage", "run_key",
                                            "pending", "node", "subtask", "source", "path",
                                            "problem", "hint", "problems", "by", "role",
                                            "approvers", "reviews", "direction", "field",
                                            "value")
                                           if hasattr(exc, k)}})
        print(json.dumps(out))
    """
)


def test_exceptions_cross_a_multiprocessing_pool(tmp_path):
    script = tmp_path / "pool_script.py"
    script.write_text(POOL)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    got = {row["type"]: row for row in json.loads(proc.stdout.strip().splitlines()[-1])}
    # InterruptSignal is a BaseException, which a pool's worker does not catch: it stops
    # an agent, and never leaves its run.
    assert set(got) == {t.__name__ for t in _public_exceptions()} - {"CounterpointError",
                                                                      "InterruptSignal"}
    assert got["AgentError"]["message"] == "agent 'billing' failed: card declined"
    assert got["AgentError"]["fields"] == {
        "agent": "'billing'", "outputs": "{'classify': 'c'}", "run_id": "7"}
    assert got["BudgetExceeded"]["fields"]["usage"] == "{'tokens': 120.0}"
    assert "ReviewRequest(agent='draft'" in got["NeedsReview"]["fields"]["pending"]
    assert got["ReviewRefused"]["fields"] == {
        "agent": "'draft'", "by": "'bob'", "role": "'intern'", "approvers": "('support-leads',)"}
    assert got["NeedsReview"]["fields"]["run_key"] == "'k'"
    assert got["NeedsInput"]["fields"]["pending"] == \
        "[InputRequest(agent='ask', question='which tone?', run_key='k')]"
    assert got["RunCancelled"]["fields"] == {"outputs": "{'a': 1}", "run_id": "3"}
    assert got["PlanError"]["fields"] == {"node": "'t1'", "subtask": "'t1'"}
    assert got["WorkerLost"]["fields"] == {"agent": "'judge'"}
    assert got["SpecError"]["message"] == "t.yaml: agents.a.timeout: must be > 0, got 0; use a number > 0"
    assert got["SpecError"]["fields"]["path"] == "'agents.a.timeout'"
    assert got["SpecError"]["fields"]["problems"] == \
        "(SpecProblem(path='agents.a.timeout', problem='must be > 0, got 0', " \
        "hint='use a number > 0'),)"
