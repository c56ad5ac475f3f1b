"""Durable at every depth: agents of nested graphs and patterns are checkpointed under
their paths and restored on resume (after SIGKILL too), questions asked from inside
agents (cp.interrupt) pause the run and are answered by path, review gates of nested
graphs pause like top-level ones, and cp.current() gives a stable idempotency key."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import depth_agents
import pytest

import counterpoint as cp

HERE = Path(__file__).parent


def _calls(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [json.loads(line)[0] for line in log.read_text().splitlines() if line]


@pytest.fixture
def depth_log(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("DEPTH_LOG", str(log))
    return log


# ---- checkpoints at every depth ------------------------------------------------------


def test_nested_agents_are_checkpointed_under_their_paths(stores, depth_log):
    app = depth_agents.nested_graph().compile(store=stores.location())
    assert app.invoke(3) == depth_agents.expected(3)
    [run] = app.runs()
    stored = app.store.load_run(run.run_key).outcomes
    # A supervisor's plan and workers, each iteration of a loop (n >= 2 marked "#n") and
    # each item of the fan_out inside it.
    assert stored["plan/planner"].status == "succeeded"
    assert stored["plan/dispatch/t5"].output == 2 * 8 + 2 * 7 + 0
    assert stored["drafts/loop/worker/fan_out/worker[2]"].output == 12 ** 2
    assert stored["drafts/loop#3/worker/fan_out/worker[1]"].output == 31 ** 2
    assert "drafts/loop#4/evaluator" not in stored
    called = _calls(depth_log)
    assert set(called) <= set(stored)
    assert len(called) == len(set(called))  # each user agent ran once


def test_resuming_restores_nested_outcomes_instead_of_calling_agents(stores, depth_log):
    app = depth_agents.nested_graph().compile(store=stores.location())
    app.invoke(3)
    [run] = app.runs()
    depth_log.unlink()
    # Forget the top-level outcomes of the two patterns: their inner agents' outcomes
    # are all the resume has to go on.
    with stores.connect() as db:  # as a kill before they were written
        db.execute("DELETE FROM outcomes WHERE run_key = ? AND agent IN "
                   "('plan', 'drafts', 'combine', 'drafts/loop')", (run.run_key,))
    record = app.start_resumed(run.run_key).record()
    assert record.status == "succeeded" and record.output == depth_agents.expected(3)
    # Only the combining agent runs again: plans, workers, iterations and items are
    # restored (the loop replays its three iterations from their checkpoints).
    assert _calls(depth_log) == ["combine"]
    assert not record.agents["plan"].restored and record.agents["drafts"].restored is False


_KILLED = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    import depth_agents
    app = depth_agents.nested_graph().compile(store=sys.argv[1])
    app.invoke(int(sys.argv[2]))
    """
)


def _kill_after(script: Path, store: str, log: Path, task: int, calls: int) -> bool:
    """Runs the graph in a child process and kills it (SIGKILL) once ``calls`` agents
    have started; False if the run finished first."""
    env = {**os.environ, "DEPTH_LOG": str(log)}
    proc = subprocess.Popen([sys.executable, str(script), str(store), str(task)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and len(_calls(log)) < calls:
            assert time.monotonic() < deadline, "the child process made no progress"
            time.sleep(0.002)
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
            return False
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        return True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.mark.timeout(900)  # 50 child processes; about a minute on a quiet 2-core machine
def test_sigkill_at_random_moments_never_reruns_a_committed_agent(stores, tmp_path,
                                                                   monkeypatch):
    """50 runs of a supervisor and a fan_out inside a loop, each killed after a random
    number of agent calls, then resumed: no agent whose outcome was committed runs
    again, at any depth, and every run completes with the right result."""
    script = tmp_path / "killed.py"
    script.write_text(_KILLED.format(here=str(HERE)))
    rng = random.Random(20261202)
    trials, killed, restored_total = 50, 0, 0
    for trial in range(trials):
        store, log = stores.location(f"runs{trial}.db"), tmp_path / f"first{trial}.log"
        task = rng.randrange(10)
        killed += _kill_after(script, store, log, task, calls=rng.randrange(1, 24))
        app = depth_agents.nested_graph().compile(store=store)
        [run] = app.store.runs()
        committed = {path for path, outcome in app.store.load_run(run.run_key).outcomes.items()
                     if outcome.status == "succeeded"}
        resumed_log = tmp_path / f"resumed{trial}.log"
        monkeypatch.setenv("DEPTH_LOG", str(resumed_log))
        record = app.start_resumed(run.run_key).record()
        assert record.status == "succeeded", record.error
        assert record.output == depth_agents.expected(task)
        rerun = committed & set(_calls(resumed_log))
        assert not rerun, f"trial {trial}: committed agents ran again: {sorted(rerun)}"
        restored_total += len(committed)
        app.store.close()
    # Most kills land mid-run, with outcomes committed at several depths.
    assert killed >= trials * 0.8, killed
    assert restored_total >= killed * 5, restored_total
    print(f"{stores.kind}: {killed} of {trials} runs killed mid-run; {restored_total} "
          "committed outcomes, none run again")


# ---- interrupts inside agents --------------------------------------------------------


def test_an_agent_asks_a_question_and_gets_the_answer_on_resume(stores):
    calls = []

    def draft(topic):
        calls.append(topic)
        tone = cp.interrupt({"ask": "which tone?", "topic": topic})
        length = cp.interrupt("how long?")
        return f"{topic}: {tone}, {length}"

    app = cp.Graph().add("draft", draft).add("send", lambda d: d.upper(), after="draft") \
        .compile(store=stores.location())
    with pytest.raises(cp.NeedsInput) as paused:
        app.invoke("refund")
    key = paused.value.run_key
    assert paused.value.pending == [cp.InputRequest(
        "draft", {"ask": "which tone?", "topic": "refund"}, key)]
    assert "needs input" in str(paused.value)
    assert [r.status for r in app.runs()] == ["needs_input"]
    assert app.runs("needs_input")[0].run_key == key
    # The first answer: the agent runs again, gets it, and asks its second question.
    record = app.start_resumed(key, "warm").record()
    assert record.status == "needs_input" and record.agents["draft"].status == "needs_input"
    assert record.pending_inputs == (cp.InputRequest("draft", "how long?", key),)
    assert record.agents["send"].status == "skipped"
    assert app.resume(key, {"draft": "short"}) == "REFUND: WARM, SHORT"
    assert calls == ["refund"] * 3
    kinds = [(e.kind, e.agent) for e in app.store.audit(key)]
    assert ("input_requested", "draft") in kinds and ("input_given", "draft") in kinds


def test_async_agents_ask_too_and_retries_do_not_retry_a_question(stores):
    attempts = []

    async def check(x):
        attempts.append(cp.current().attempt)
        await asyncio.sleep(0)
        return {"ok": cp.interrupt(f"approve {x}?")}

    app = cp.Graph().add("check", check, retry=cp.Retry(max_attempts=3, initial_backoff=0.0)) \
        .compile(store=stores.location())

    async def main():
        with pytest.raises(cp.NeedsInput) as paused:
            await app.ainvoke("x")
        return paused.value.run_key

    key = asyncio.run(main())
    assert attempts == [1]  # a question is not a failure: no second attempt
    assert app.resume(key, True) == {"ok": True}


def test_parallel_questions_in_a_fan_out_answered_in_random_order_by_another_process(
        stores, tmp_path):
    """Ten items ask at once; another process answers them one resume at a time, in a
    random order; every item gets its own answer."""
    store = stores.location()
    log = tmp_path / "calls.log"
    first = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(HERE)!r})
        import counterpoint as cp, depth_agents
        app = depth_agents.asking_graph(10).compile(store=sys.argv[1])
        try:
            app.invoke(10)
        except cp.NeedsInput as paused:
            print(json.dumps({{"key": paused.run_key,
                              "pending": [[p.agent, p.question] for p in paused.pending]}}))
    """)
    answering = textwrap.dedent(f"""
        import json, random, sys
        sys.path.insert(0, {str(HERE)!r})
        import counterpoint as cp, depth_agents
        app = depth_agents.asking_graph(10).compile(store=sys.argv[1])
        key = sys.argv[2]
        pending = [p.agent for p in app.store.load_run(key).questions()]
        random.Random(7).shuffle(pending)
        statuses = []
        for path in pending:
            [question] = [q.question for q in app.store.load_run(key).questions()
                          if q.agent == path]
            record = app.start_resumed(key, {{path: "answer to " + question}}).record()
            statuses.append([record.status, len(record.pending_inputs)])
        print(json.dumps({{"order": pending, "statuses": statuses, "output": record.output}}))
    """)
    env = {**os.environ, "DEPTH_LOG": str(log)}
    ran = subprocess.run([sys.executable, "-c", first, str(store)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    paused = json.loads(ran.stdout)
    assert sorted(paused["pending"]) == sorted(
        [f"ask/fan_out/worker[{i}]", f"question {i}"] for i in range(10))
    ran = subprocess.run([sys.executable, "-c", answering, str(store), paused["key"]], env=env,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    answered = json.loads(ran.stdout)
    assert answered["order"] != sorted(answered["order"])
    assert answered["statuses"] == [["needs_input", 9 - i] for i in range(9)] + [["succeeded", 0]]
    assert answered["output"] == [[i, f"answer to question {i}"] for i in range(10)]
    # Each asking agent ran once to ask, and once more when its own answer came.
    called = _calls(log)
    assert sorted(called) == sorted([f"ask/fan_out/worker[{i}]" for i in range(10)] * 2)


def test_resume_refuses_answers_that_match_nothing(stores, depth_log):
    app = depth_agents.asking_graph(3).compile(store=stores.location())
    record = app.run(2)
    assert record.status == "needs_input" and len(record.pending_inputs) == 2
    with pytest.raises(ValueError, match="awaits input"):
        app.resume(record.run_key)
    with pytest.raises(ValueError, match=r"ask/fan_out/worker\[7\]"):
        app.resume(record.run_key, {"ask/fan_out/worker[7]": "x"})
    with pytest.raises(ValueError, match="dict by agent"):
        app.resume(record.run_key, "one answer for two questions")


def test_interrupt_and_current_need_a_durable_run():
    def ask(x):
        return cp.interrupt("?")

    def who(x):
        return cp.current().path

    with pytest.raises(cp.AgentError, match="store=") as caught:
        cp.Graph().add("ask", ask).compile().invoke("x")
    assert isinstance(caught.value.__cause__, RuntimeError)
    with pytest.raises(cp.AgentError, match="durable runs"):
        cp.Graph().add("who", who).compile().invoke("x")
    with pytest.raises(RuntimeError, match="inside the agents"):
        cp.current()


# ---- review gates inside nested graphs -----------------------------------------------


def test_a_review_gate_of_a_nested_graph_pauses_the_run(stores):
    calls = []

    def draft(x):
        calls.append("draft")
        return cp.Result(f"draft({x})", confidence=0.3)

    inner = cp.Graph().add("draft", draft, review=cp.Review(below=0.8)) \
        .add("polish", lambda d: f"polished {d}", after="draft").compile()
    app = cp.Graph().add("write", inner).add("send", lambda d: f"sent {d}", after="write") \
        .compile(store=stores.location())
    with pytest.raises(cp.NeedsReview) as paused:
        app.invoke("x")
    [request] = paused.value.pending
    assert (request.agent, cp.value_of(request.output), request.confidence) == \
        ("write/draft", "draft(x)", 0.3)
    key = paused.value.run_key
    assert [r.status for r in app.runs()] == ["needs_review"]
    assert app.resume(key, {"write/draft": cp.approve("better draft")}) == \
        "sent polished better draft"
    assert calls == ["draft"]  # approved, not run again


def test_a_fan_out_of_reviewed_workers_pauses_for_each(stores):
    def worker(x):
        return cp.Result(x * 10, confidence=0.9 if x % 2 else 0.1)

    reviewed = cp.policy(worker, review=cp.Review(below=0.5))
    app = cp.Graph().add("all", cp.fan_out(reviewed, over=lambda n: list(range(n)))) \
        .compile(store=stores.location())
    record = app.run(4)
    assert record.status == "needs_review"
    assert sorted(r.agent for r in record.pending_reviews) == \
        ["all/fan_out/worker[0]", "all/fan_out/worker[2]"]
    decisions = {"all/fan_out/worker[0]": cp.approve(), "all/fan_out/worker[2]": cp.approve(-1)}
    outputs = app.resume(record.run_key, decisions)
    assert [cp.value_of(output) for output in outputs] == [0, 10, -1, 30]


# ---- idempotency keys ------------------------------------------------------------------


def test_the_idempotency_key_is_stable_across_retries_and_resumes(stores):
    seen = []

    def charge(x):
        call = cp.current()
        seen.append((call.path, call.attempt, call.idempotency_key))
        if call.attempt == 1:
            raise ConnectionError("flaky")
        if len(seen) == 2:
            cp.interrupt("confirm the charge?")
        return "charged"

    inner = cp.Graph().add("charge", charge, retry=cp.Retry(max_attempts=2, initial_backoff=0.0)).compile()
    app = cp.Graph().add("pay", inner).compile(store=stores.location())
    record = app.run("x")
    assert record.status == "needs_input"
    assert app.resume(record.run_key, True) == "charged"
    paths = {path for path, _, _ in seen}
    keys = {key for _, _, key in seen}
    assert paths == {"pay/charge"} and len(keys) == 1 and len(seen) == 4
    # Another run, or another agent, gets another key.
    other = app.run("y")
    assert seen[-1][2] not in keys
    assert other.status == "succeeded"


def test_a_question_is_an_input_event_and_a_needs_input_lane(stores):
    app = cp.Graph().add("ask", lambda x: cp.interrupt({"ask": "tone?"})) \
        .add("other", lambda x: x).compile(store=stores.location())
    events = []
    with pytest.raises(cp.NeedsInput):
        for event in app.stream("x", stream_mode="events"):
            events.append(event)
    [asked] = [e for e in events if e.kind == "input"]
    assert (asked.agent, asked.output) == ("ask", {"ask": {"ask": "tone?"}, "answers": []})
    record = app.run("x")
    lanes = {lane.agent: lane.status for lane in record.timeline_data().lanes}
    assert lanes == {"ask": "needs_input", "other": "succeeded"}
    assert "needs_input" in record._repr_html_()


def test_an_interrupted_run_resumes_while_a_question_keeps_waiting(stores):
    calls = []

    def slow(x):
        calls.append("slow")
        return "slow done"

    app = cp.Graph().add("ask", lambda x: cp.interrupt("go on?")).add("slow", slow) \
        .compile(store=stores.location())
    record = app.run("x")
    assert record.status == "needs_input"
    # As if Ctrl-C had stopped the run while "slow" was still running.
    app.store.set_status(record.run_key, "interrupted")
    with stores.connect() as db:
        db.execute("DELETE FROM outcomes WHERE agent = 'slow'")
    resumed = app.start_resumed(record.run_key).record()
    assert resumed.status == "needs_input" and calls == ["slow", "slow"]
    assert resumed.agents["ask"].restored
    assert app.resume(record.run_key, "yes") == {"ask": "yes", "slow": "slow done"}
