"""Durable runs: checkpoint every agent outcome before the run sees it, and resume."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._agent_call import AgentCall, enter_call
from ._audit import AuditEntry, AuditEvent, json_safe
from ._errors import StoreError
from ._leases import RENEW_SECONDS, Lease, release_leases, renew_leases
from ._native import _core
from ._policies import Decision, Review, as_decision, check_decider, resolve_output
from ._results import LoopResult, Merged, confidence_of
from ._store import Store, StoredOutcome, StoredRun, asked_question, on_close


def fingerprint(plan: dict[str, Any]) -> str:
    """Identifies a graph's shape, so a run is only resumed by the graph that made it."""
    shape = [(n["name"], n["after"], n["join"]) for n in plan["nodes"]]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]


class CheckpointWriter:
    """Writes the outcomes a store's runs produce, in batches, on one thread; each
    outcome reaches its run only once it is written.

    One writer (and thread) per store that has run something. It holds its store weakly,
    so it stops when the store is closed or garbage-collected: compiling a graph with a
    store again and again (a notebook cell re-run) leaves no threads behind.
    """

    def __init__(self, store: Store) -> None:
        try:
            self._store: Callable[[], Store | None] = weakref.ref(store)
        except TypeError:  # not weakly referenceable: the writer lives until close() or exit
            self._store = lambda: store
        self._name = repr(store)
        self.hook = _core.CheckpointHook()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="counterpoint-checkpoints",
                                        daemon=True)
        self._thread.start()

    @property
    def stopped(self) -> bool:
        return self._stopping

    def _loop(self) -> None:
        renew_at = time.monotonic() + RENEW_SECONDS
        while True:
            work = self.hook.take(0.5)
            pending = work.outcomes
            ended = [(end.key, end.status.name, end.run_id) for end in work.ended]
            if pending or ended:
                self._write(pending, ended)
            if time.monotonic() >= renew_at:  # the leases of runs being resumed
                renew_at = time.monotonic() + RENEW_SECONDS
                store = self._store()
                if store is not None:
                    renew_leases(store)
                del store
            if not (pending or ended) and self._stopping:
                # The hook is closed: take() returned at once with whatever was left
                # (the ends of runs cancelled at exit), and nothing more can come.
                _retiring.discard(self)
                return

    def _write(self, pending: list[Any], ended: list[tuple[str, str, int]]) -> None:
        store = self._store()
        by_run: dict[str, list[Any]] = defaultdict(list)
        for item in pending:
            by_run[item.run_key].append(item)
        for run_key, items in by_run.items():
            outcomes = [StoredOutcome(item.agent, item.status.name, item.output, item.routes,
                                      item.usage, item.message, item.confidence)
                        for item in items]
            audited = _audited.get(run_key)
            events = [outcome_events(outcome, audited, item.error)
                      for outcome, item in zip(outcomes, items)]
            errors: list[Exception | None]
            if store is None:
                errors = [StoreError(f"{self._name} was closed (garbage-collected) while run "
                                     f"{run_key!r} was still running")] * len(items)
            else:
                try:
                    errors = store.record_outcomes(run_key, outcomes, events)
                except Exception as exc:  # noqa: BLE001 - a broken store fails the agents
                    errors = [exc] * len(items)
            for item, error in zip(items, errors):
                if error is None:
                    item.deliver()
                else:
                    cause = _as_store_error(error, item.agent, self._name)
                    item.fail(str(cause), cause)
        if store is None:
            return
        for run_key, status, run_id in ended:
            # A failure leaves the status "running": the run is over either way.
            with contextlib.suppress(Exception):
                store.finish_run(run_key, status)
            run_ended(run_key, run_id)

    def stop(self, wait: float = 2.0) -> None:
        """Stops writing: outcomes not yet taken fail their agents; the thread ends once
        it has written what it holds. Waits up to ``wait`` seconds for that."""
        self._stopping = True
        self.hook.close()
        if wait > 0 and self._thread is not threading.current_thread():
            self._thread.join(wait)


def _as_store_error(error: Exception, agent: str, store: str) -> StoreError:
    """The exception an agent fails with when its output could not be written."""
    if isinstance(error, StoreError):
        return error  # it names the store and the fix; the AgentError names the agent
    wrapped = StoreError(
        f"the output of agent '{agent}' could not be stored by {store} "
        f"({type(error).__name__}: {error}); see the chained exception"
    )
    wrapped.__cause__ = error
    return wrapped


# Writers by id(store): a store need not be hashable, and a weak key would be pointless
# since each writer is stopped by its store's finalizer or close() anyway.
_writers: dict[int, CheckpointWriter] = {}
_writers_lock = threading.Lock()

# Writers told to stop whose threads may still be finishing (a finalizer does not wait;
# close() waits 2 s at most): exit waits for them too, as a thread inside the native hook
# when the interpreter finalizes would abort the process. Each thread leaves on its end.
# Only single (atomic) set operations touch it, so a finalizer may too.
_retiring: set[CheckpointWriter] = set()


def writer_for(store: Store) -> CheckpointWriter:
    """The store's checkpoint writer, started on first use."""
    with _writers_lock:
        writer = _writers.get(id(store))
        if writer is not None and not writer.stopped:
            return writer
        # Writers of collected stores are dropped here rather than by their finalizers,
        # which must not take this lock (see _store_collected).
        for key in [key for key, old in _writers.items() if old.stopped]:
            del _writers[key]
        writer = CheckpointWriter(store)
        _writers[id(store)] = writer
        # Not at exit: the shutdown hook stops every writer, after the engine has
        # interrupted the runs whose ends they must still record. (A store that is not
        # weakly referenceable keeps its writer until close() or exit.)
        with contextlib.suppress(TypeError):
            weakref.finalize(store, _store_collected, writer).atexit = False
        return writer


def _store_collected(writer: CheckpointWriter) -> None:
    """A collected store's finalizer. It runs wherever a garbage collection happens to
    start: on any thread, perhaps one that holds a lock of this module or that another
    thread holding one waits for (a writer thread being started). So it takes no lock:
    it stops the writer, and the registries drop what belongs to dead stores on their
    next use."""
    _retiring.add(writer)
    _stores_collected.append(None)
    writer.stop(0.0)


def _store_closed(store: Store) -> None:
    release_leases(store)
    _forget_audits(store)
    with _writers_lock:
        writer = _writers.pop(id(store), None)
    if writer is not None:
        _retiring.add(writer)
        writer.stop(2.0)


on_close(_store_closed)


def stop_writers(wait: float = 2.0) -> None:
    """Stops every writer, waiting up to ``wait`` seconds in all."""
    with _writers_lock:
        writers = [*_writers.values(), *_retiring.copy()]
        _writers.clear()
    for writer in writers:
        writer.stop(0.0)
    deadline = time.monotonic() + wait
    for writer in writers:
        writer.stop(max(0.0, deadline - time.monotonic()))


def _routes(outcome: StoredOutcome) -> list[str] | None:
    return None if outcome.routes is None else list(outcome.routes)


@dataclass
class Resumption:
    """What a resumed run starts with, and what resuming it records first.

    Attributes:
        restored: ``_core.Restored`` outcomes: finished agents (at any depth, by
            checkpoint path), reviewed outputs, and questions still unanswered.
        recorded: The decisions and answers to write to the store before the run starts.
        events: The audit entries of each of ``recorded``.
        answers: Answers by agent path, for the agents that asked (they run again, and
            ``cp.interrupt`` returns these in order).
    """

    restored: list[Any] = field(default_factory=list)
    recorded: list[StoredOutcome] = field(default_factory=list)
    events: list[list[AuditEvent]] = field(default_factory=list)
    answers: dict[str, list[Any]] = field(default_factory=dict)


def _decisions(stored: StoredRun, decision: Any, reviews: list[StoredOutcome],
               questions: list[StoredOutcome]) -> tuple[dict[str, Decision], dict[str, Any]]:
    """Splits ``resume``'s ``decision`` into review decisions and answers, by path."""
    key = stored.run_key
    if decision is None:
        # Questions may wait on: a run stopped by Ctrl-C or a crash while one agent was
        # asking goes on with the others. A run paused on them alone needs answers.
        if reviews or (questions and stored.status == "needs_input"):
            waiting = [o.agent for o in (*reviews, *questions)]
            raise ValueError(
                f"run {key!r} awaits {_what(reviews, questions)} of {waiting}; pass a "
                "decision for a review (cp.approve(), cp.approve(new_output), "
                "cp.reject(reason)) or an answer for a question, or a dict of them by agent")
        return {}, {}
    if not reviews and not questions:
        raise ValueError(f"run {key!r} has nothing awaiting review or input; resume it "
                         "without a decision")
    if isinstance(decision, dict):
        given = decision
    elif len(reviews) + len(questions) == 1:
        given = {(reviews or questions)[0].agent: decision}
    else:
        raise ValueError(f"run {key!r} awaits {_what(reviews, questions)} of "
                         f"{[o.agent for o in (*reviews, *questions)]}; pass a dict by agent")
    asked = {o.agent for o in questions}
    unknown = set(given) - {o.agent for o in reviews} - asked
    if unknown:
        raise ValueError(f"no review is pending (nor a question) for {sorted(unknown)}; pending: "
                         f"{[o.agent for o in (*reviews, *questions)]}")
    decisions = {name: as_decision(d) for name, d in given.items() if name not in asked}
    missing = [o.agent for o in reviews if o.agent not in decisions]
    if missing:
        raise ValueError(f"run {key!r} also awaits review of {missing}; decide every "
                         "pending review")
    return decisions, {name: answer for name, answer in given.items() if name in asked}


def _what(reviews: list[StoredOutcome], questions: list[StoredOutcome]) -> str:
    return " and ".join(kind for kind, some in (("review", reviews), ("input", questions))
                        if some)


def restored_outcomes(stored: StoredRun, decision: Any,
                      gates: dict[str, Review] | None = None) -> Resumption:
    """What a resumed run starts with: finished agents' outputs (at every depth),
    reviewed outputs decided by ``decision``, questions answered by it (their agents run
    again) and questions still unanswered (they keep waiting).

    Raises:
        ReviewRefused: a decision for a gate with ``approvers`` is not by one of them
            (checked before anything is written).
        ValueError: ``decision`` does not match what the run awaits.
    """
    resumption = Resumption()
    for o in stored.outcomes.values():
        if o.status == "succeeded":
            resumption.restored.append(
                _core.Restored.succeeded(o.agent, o.output, _routes(o), o.usage))
        elif o.status == "answered":  # answered, and the run did not get past it yet
            resumption.answers[o.agent] = list(asked_question(o)["answers"])
    reviews = [o for o in stored.outcomes.values() if o.status == "needs_review"]
    questions = [o for o in stored.outcomes.values() if o.status == "needs_input"]
    decisions, answers = _decisions(stored, decision, reviews, questions)
    for outcome in reviews:
        gate = _gate_of(gates, outcome.agent)
        if gate is not None:
            check_decider(outcome.agent, gate.approvers, decisions[outcome.agent])
    now = time.time()
    for outcome in reviews:
        decided = decisions[outcome.agent]
        gate = _gate_of(gates, outcome.agent)
        resumption.events.append([decision_event(outcome.agent, decided, now, gate,
                                                 outcome.output)])
        if decided.approved:
            output = resolve_output(decided, outcome.output)
            resumption.restored.append(_core.Restored.succeeded(
                outcome.agent, output, _routes(outcome), outcome.usage))
            resumption.recorded.append(StoredOutcome(
                outcome.agent, "succeeded", output, outcome.routes, outcome.usage,
                "approved by reviewer", outcome.confidence))
        else:
            reason = f"rejected by reviewer: {decided.reason}"
            resumption.restored.append(_core.Restored.rejected(outcome.agent, reason))
            resumption.recorded.append(StoredOutcome(outcome.agent, "failed", None, None,
                                                     outcome.usage, reason, outcome.confidence))
    for outcome in questions:
        asked = asked_question(outcome)
        if outcome.agent not in answers:
            resumption.restored.append(_core.Restored.awaiting_input(outcome.agent,
                                                                     outcome.output))
            continue
        given = [*asked["answers"], answers[outcome.agent]]
        resumption.answers[outcome.agent] = given
        # Written first: a resume killed before the agent finishes still has the answer.
        resumption.recorded.append(StoredOutcome(
            outcome.agent, "answered", {"ask": asked["ask"], "answers": given}, None,
            outcome.usage, "answered"))
        resumption.events.append([AuditEvent("input_given", outcome.agent, {
            "question": json_safe(asked["ask"]), "time": now},
            {"answer": answers[outcome.agent]}, time=now)])
    return resumption


def _gate_of(gates: dict[str, Review] | None, path: str) -> Review | None:
    gates = gates or {}
    return gates.get(path) or gates.get(gate_path(path))


def paused_gates(entries: Sequence[AuditEntry]) -> dict[str, Review]:
    """The gates of the outputs a run paused on, as their ``review_requested`` audit
    entries recorded them, by path: the gates of graphs a pattern builds while it runs
    (a ``fan_out``'s workers) are known nowhere else."""
    gates: dict[str, Review] = {}
    for entry in entries:
        if entry.kind == "review_requested" and entry.agent is not None and \
                entry.data.get("threshold") is not None and not entry.data.get("in_process"):
            gates[entry.agent] = Review(below=float(entry.data["threshold"]),
                                        approvers=tuple(entry.data.get("approvers") or ()))
    return gates


def gate_path(path: str) -> str:
    """A checkpoint path without loop iteration marks (``"a#2/b"`` -> ``"a/b"``): the
    agents of every iteration share their gate."""
    return "/".join(part.split("#", 1)[0] if "#" in part else part
                    for part in path.split("/"))


class CallScope:
    """The observer of a durable run's agent calls: each call runs with its
    :class:`AgentCall` current (``cp.current()``, ``cp.interrupt()``), then the run's
    other observer (a stream's, LangChain's, a trace's), if any, is told."""

    def __init__(self, run_key: str, answers: dict[str, list[Any]], inner: Any = None) -> None:
        self._run_key = run_key
        self._answers = answers
        self._inner = inner

    def agent_started(self, call: Any) -> None:
        path = call.checkpoint_path or call.path
        enter_call(call.context, AgentCall(self._run_key, path, call.attempt,
                                           self._answers.get(path, [])))
        if self._inner is not None:
            self._inner.agent_started(call)


class _CallScopeWithEnds(CallScope):
    def agent_ended(self, call: Any) -> None:
        self._inner.agent_ended(call)


def call_scope(run_key: str, answers: dict[str, list[Any]], inner: Any) -> CallScope:
    """A durable run's observer over ``inner`` (None, or the run's other observer)."""
    # Only an observer with agent_ended has each outcome routed through it.
    if inner is not None and hasattr(inner, "agent_ended"):
        return _CallScopeWithEnds(run_key, answers, inner)
    return CallScope(run_key, answers, inner)


def check_resumable(stored: StoredRun, graph_fingerprint: str, doing: str = "resume") -> None:
    """Refuses a run another graph made (``doing``: what the caller would do to it)."""
    if stored.graph != graph_fingerprint:
        raise StoreError(
            f"run {stored.run_key!r} was made by a different graph (fingerprint "
            f"{stored.graph}, this graph {graph_fingerprint}); {doing} it with the graph "
            "that started it"
        )


# ---- the audit log -----------------------------------------------------------------------
#
# Live, from the checkpoint writer, in the transaction that writes each outcome:
# agent_finished, route_chosen, merge_resolved, review_requested, agent_failed and
# agent_cancelled. At the run's start: run_started (or run_resumed), with the run's row;
# review_decided with the decision it records. At the run's end, from the run's handle:
# agent_started (with the agent's duration), agent_retried, agent_skipped, in-process
# reviews, budget_spent and run_finished.


def decision_event(agent: str, decision: Decision, when: float, gate: Review | None,
                   held: Any = None, *, in_process: bool = False) -> AuditEvent:
    """The ``review_decided`` entry of a reviewer's decision."""
    data: dict[str, Any] = {
        "approved": decision.approved, "by": decision.by, "role": decision.role,
        "note": decision.note, "time": when,
        "approvers": list(gate.approvers) if gate is not None else [],
    }
    values: dict[str, Any] = {}
    if decision.approved:
        data["replaced_output"] = decision.replaces_output
        values["output"] = resolve_output(decision, held)
    else:
        data["reason"] = decision.reason
    if in_process:
        data["in_process"] = True
    return AuditEvent("review_decided", agent, data, values, time=when)


def _merge_details(output: Any) -> dict[str, Any] | None:
    """How a merge pattern's result was resolved, if the output is one."""
    if isinstance(output, Merged):
        return {"pattern": "merge", "policy": output.policy, "resolution": output.resolution,
                "agreeing": list(output.agreeing), "disagreeing": list(output.disagreeing),
                "failed": sorted(output.failed), "tally": dict(output.tally)}
    if isinstance(output, LoopResult):
        verdicts = [verdict for _, verdict in output.history]
        return {"pattern": "loop", "iterations": output.iterations, "stopped": output.stopped,
                "verdicts": [getattr(v, "passed", v) for v in verdicts]}
    return None


def _cache_hit(audited: AuditedRun, agent: str) -> bool:
    """True if the agent's output came from its cache (``cp.Cache``) in this run."""
    return any(note["kind"] == "cache_hit" and note["agent"] == agent
               for note in list(audited.notes))


def outcome_events(outcome: StoredOutcome, audited: AuditedRun | None,
                   paused_by: Any = None) -> list[AuditEvent]:
    """The live audit entries of one agent outcome; ``paused_by``: for an output paused
    for review, what its gate recorded (``{"threshold", "approvers"}``)."""
    agent, status = outcome.agent, outcome.status
    usage = dict(outcome.usage)
    if status == "succeeded":
        data: dict[str, Any] = {"status": status, "usage": usage}
        confidence = outcome.confidence
        if confidence is None:
            confidence = confidence_of(outcome.output)
        if confidence is not None:
            data["confidence"] = confidence
        if audited is not None and _cache_hit(audited, agent):
            data["cached"] = True
        events = [AuditEvent("agent_finished", agent, data, {"output": outcome.output})]
        if outcome.routes is not None:
            events.append(AuditEvent("route_chosen", agent, {"routes": list(outcome.routes)}))
        merged = _merge_details(outcome.output)
        if merged is not None:
            events.append(AuditEvent("merge_resolved", agent, merged))
        return events
    if status == "needs_review":
        if isinstance(paused_by, dict):  # the gate itself said, at any depth
            threshold, approvers = paused_by.get("threshold"), paused_by.get("approvers", [])
        else:
            gate = audited.gates.get(agent) if audited is not None else None
            threshold = gate.below if gate is not None else None
            approvers = list(gate.approvers) if gate is not None else []
        return [AuditEvent("review_requested", agent, {
            "confidence": outcome.confidence, "reason": outcome.message, "usage": usage,
            "threshold": threshold, "approvers": list(approvers)},
            {"output": outcome.output})]
    if status == "needs_input":
        question = asked_question(outcome)
        return [AuditEvent("input_requested", agent, {
            "question": json_safe(question["ask"]), "usage": usage}, {"question": question})]
    if status == "cancelled":
        return [AuditEvent("agent_cancelled", agent, {"message": outcome.message,
                                                      "usage": usage})]
    return [AuditEvent("agent_failed", agent, {"status": status, "message": outcome.message,
                                               "usage": usage})]


class AuditedRun:
    """What the audit log of one durable run in flight needs beyond its outcomes."""

    def __init__(self, store: Store, run_key: str, gates: dict[str, Review],
                 budget: dict[str, float] | None) -> None:
        # Weakly, as the checkpoint writer holds it: a run whose end is never seen (its
        # store closed or dropped first) must not keep the store and its writer alive.
        try:
            self.store: Callable[[], Store | None] = weakref.ref(store)
        except TypeError:
            self.store = lambda: store
        self.run_key = run_key
        self.gates = gates
        self.budget = budget
        self.started = time.time()
        self.notes: list[dict[str, Any]] = []  # audit_notes of the run's agent calls
        self.handle: Any = None
        # Run ids whose end the checkpoint writer saw before this run's handle came (a
        # resumed run has the key of the run before it, so the id tells them apart).
        self.ended: set[int] = set()
        # Held while the end entries are written, so whoever else sees the end (the
        # waiter, when the checkpoint writer was first) returns only once they are.
        self.finishing = threading.Lock()
        self.lease: Lease | None = None  # a resumed run's, released at its end


_audited: dict[str, AuditedRun] = {}
_audited_lock = threading.Lock()
# Appended to (atomically) by a collected store's finalizer, which takes no lock: the
# next run to start drops the tracked runs of stores that are gone.
_stores_collected: list[None] = []


def audit_begin(audited: AuditedRun) -> None:
    """Tracks a durable run from its start until its end entries are written."""
    if _stores_collected:
        _stores_collected.clear()
        _forget_audits(None)
    with _audited_lock:
        _audited[audited.run_key] = audited


def audit_attach(audited: AuditedRun, handle: Any) -> None:
    """Gives the run's handle; writes the end entries now if the run already ended."""
    with _audited_lock:
        audited.handle = handle
        ended = handle.id in audited.ended
    if ended:
        audit_finish(audited)


def hold_until_end(run_key: str, lease: Lease) -> None:
    """Keeps a resumed run's lease until the run ends (now, if it already has)."""
    with _audited_lock:
        audited = _audited.get(run_key)
        if audited is not None and audited.lease is None:
            audited.lease = lease
            return
    lease.release()


def run_ended(run_key: str, run_id: int) -> None:
    """The checkpoint writer saw the run end."""
    with _audited_lock:
        audited = _audited.get(run_key)
        if audited is None:
            return
        if audited.handle is None:
            audited.ended.add(run_id)  # written when the handle comes (or by the batch)
            return
        if audited.handle.id != run_id:
            return  # the end of the run this one resumes
    audit_finish(audited)


def audit_finish(audited: AuditedRun, report: Any = None) -> None:
    """Writes the run's end entries, once (whoever sees the end first: the waiter, the
    checkpoint writer or a batch with the run's ``report``); returns once they are."""
    with audited.finishing:
        with _audited_lock:
            if _audited.get(audited.run_key) is not audited or \
                    (audited.handle is None and report is None):
                return
            del _audited[audited.run_key]
            lease, audited.lease = audited.lease, None
        store = audited.store()
        try:
            if store is not None:
                with contextlib.suppress(Exception):  # the audit log never fails a finished run
                    store.append_audit(audited.run_key, end_events(audited, report, store))
        finally:
            # Written: the run is no business of the log any more. Whatever still holds
            # this record (a closure of the run's start) must not keep the run alive, nor
            # what its agents left: a StoreError's traceback holds its store.
            audited.handle = None
            audited.notes = []
        if lease is not None:
            lease.release()  # after the end's status and entries: the next resume sees them


def _forget_audits(store: Store | None) -> None:
    """Stops tracking the runs of a closed (or collected: None) store."""
    with _audited_lock:
        for key, audited in list(_audited.items()):
            tracked = audited.store()
            if tracked is None or tracked is store:
                del _audited[key]


def end_events(audited: AuditedRun, report: Any = None,
               store: Store | None = None) -> list[AuditEvent]:
    """The entries written when a run ends."""
    events: list[AuditEvent] = []
    handle = audited.handle
    t0 = audited.started
    attempts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for note in list(audited.notes):
        if note["kind"] == "attempt":
            attempts[note["agent"]].append(note)
    if handle is not None:
        for record in handle.outcomes():
            name, status = record.name, record.status.name
            if record.started is not None and not record.restored:
                tried = sorted(attempts.get(name, []), key=lambda n: n["started"])
                data: dict[str, Any] = {"status": status}
                if record.finished is not None:
                    data["seconds"] = record.finished - record.started
                if tried:
                    data["attempts"] = len(tried)
                events.append(AuditEvent("agent_started", name, data,
                                         time=t0 + record.started))
                for number, (failed, following) in enumerate(itertools.pairwise(tried), 1):
                    if failed["error"] is not None:
                        events.append(AuditEvent("agent_retried", name, {
                            "attempt": number + 1, "error": failed["error"],
                            "message": failed["message"],
                            "delay": max(0.0, following["started"] - failed["ended"])},
                            time=following["started"]))
            if status == "skipped":
                events.append(AuditEvent("agent_skipped", name, {"reason": record.reason}))
    for note in list(audited.notes):
        if note["kind"] == "review":
            agent = note["agent"]
            gate = audited.gates.get(agent)
            events.append(AuditEvent("review_requested", agent, {
                "confidence": note["confidence"], "threshold": note["threshold"],
                "approvers": note["approvers"], "in_process": True},
                {"output": note["output"]}, time=note["time"]))
            events.append(decision_event(agent, note["decision"], note["time"], gate,
                                         note["output"], in_process=True))
    if handle is not None:
        status, usage, exhausted = handle.status.name, handle.usage(), handle.budget_exhausted
        elapsed: float | None = handle.elapsed
    else:
        status, exhausted, elapsed = report.status.name, report.budget_exhausted, None
        try:
            usage = report.usage
        except TypeError:  # a report of a run that succeeded carries no usage
            usage = None
        if usage is None and store is not None:
            usage = defaultdict(float)
            for outcome in store.load_run(audited.run_key).outcomes.values():
                for name, amount in outcome.usage.items():
                    usage[name] += amount
    usage = dict(usage or {})
    if audited.budget:
        events.append(AuditEvent("budget_spent", None, {
            "usage": usage, "budget": dict(audited.budget), "exhausted": bool(exhausted)}))
    # "origin": the wall time the agents' entries count from, so a timeline rebuilt
    # from them lines up with "elapsed" (the run_started entry is written earlier, by
    # a store write whose time varies).
    events.append(AuditEvent("run_finished", None, {
        "status": status, "usage": usage, "elapsed": elapsed, "origin": t0}))
    return events
