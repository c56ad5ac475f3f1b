"""Run handles and run records: what a run did, agent by agent."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._critical_path import CriticalPath, critical_path
from ._errors import (
    AgentError,
    AgentTimeout,
    BudgetExceeded,
    CircuitOpenError,
    NeedsInput,
    NeedsReview,
    ReviewRejected,
    RunCancelled,
    RunTimeout,
)
from ._events import Event
from ._native import _core
from ._perfetto import timeline_trace
from ._results import InputRequest, ReviewRequest
from ._run_table import run_table
from ._store import Store
from ._timeline import Timeline
from ._timeline_picture import TimelinePicture
from ._tracing import RunTrace

# The one mapping from how the engine says an agent failed to the exception users see
# as the AgentError's __cause__ when the agent raised nothing itself.
_CAUSES = {
    _core.FailureKind.timeout: AgentTimeout,
    _core.FailureKind.circuit_open: CircuitOpenError,
    _core.FailureKind.rejected: ReviewRejected,
}
_NO_OUTPUT = "the run produced no output: every sink was skipped"
_STATUS = _core.RunStatus
_EVENT_FORM = _core.EventForm.event
# What a run keeps for its timeline: every step of every agent, at any depth (not the
# data agents publish for streams).
TIMELINE_EVENTS = _core.EventKinds([
    kind for kind in _core.EventKind
    if kind not in (_core.EventKind.custom, _core.EventKind.message)])


def failure_exception(report: Any, run_key: str | None = None,
                      store: Store | None = None) -> BaseException:
    """The exception ``invoke`` raises for a run that did not succeed (a RunReport);
    ``store``: a durable run's, where its pending reviews and questions are read."""
    status = report.status
    outputs = report.outputs
    run_id = report.run_id
    if status is _STATUS.cancelled or status is _STATUS.interrupted:
        return RunCancelled(run_id, outputs)
    if status is _STATUS.timed_out:
        return RunTimeout(run_id, outputs)
    if status is _STATUS.needs_review or status is _STATUS.needs_input:
        if store is not None and run_key is not None:
            # A durable run: what awaits a person at every depth is in its store (each
            # waiting agent's outcome was written before its run could pause).
            stored = store.load_run(run_key)
            questions, reviews = stored.questions(), stored.reviews()
        else:
            questions = []
            reviews = [ReviewRequest(p.agent, p.output, p.reason, p.confidence, run_key)
                       for p in report.pending]
        if status is _STATUS.needs_input:
            return NeedsInput(run_key, questions, reviews, outputs)
        return NeedsReview(run_key, reviews, outputs)
    failure = report.failure
    starved = failure.kind is _core.FailureKind.budget if failure is not None \
        else report.budget_exhausted
    if starved:  # no output, or a nested graph starved by the budget
        return BudgetExceeded(run_id, report.usage, outputs)
    if failure is None:
        return AgentError("<none>", _NO_OUTPUT, outputs, run_id)
    exc = AgentError(report.failed_agent or "<none>", failure.message, outputs, run_id)
    cause = failure.error
    if not isinstance(cause, BaseException) and failure.kind in _CAUSES:
        cause = _CAUSES[failure.kind](failure.message)
    if isinstance(cause, BaseException):
        exc.__cause__ = cause
    return exc


def unwrap(report: Any, run_key: str | None = None, store: Store | None = None) -> Any:
    """The run's result, or raises what ``invoke`` raises."""
    if report.ok:
        return report.output
    raise failure_exception(report, run_key, store)


def as_exception(report: Any, run_key: str | None = None, store: Store | None = None) -> Any:
    """The run's result, or the exception ``invoke`` would raise."""
    if report.ok:
        return report.output
    return failure_exception(report, run_key, store)


@dataclass(frozen=True)
class AgentOutcome:
    """How one agent of a run ended.

    Attributes:
        name: The agent.
        status: ``"succeeded"``, ``"failed"``, ``"timed_out"``, ``"skipped"`` (its join
            could not be satisfied: not routed to, a predecessor it needed failed, or
            the budget was spent), ``"needs_review"``, ``"needs_input"`` (it asked a
            person, or an agent of its graph did), ``"cancelled"`` (running when the
            run ended; its result was discarded), ``"not_started"`` or ``"running"``
            (still executing: a sync call cannot be interrupted; if its run has ended,
            it becomes ``"cancelled"`` when it returns and its result is discarded).
        output: The agent's output, if it succeeded.
        error: The failure summary, if it failed.
        started: Seconds from the run's start to the agent's start (None if it never ran).
        finished: Seconds from the run's start to the agent's end (None if it has not ended).
        routes: For a router, the successors it chose.
        usage: What the agent reported consuming (``Result(usage=...)``).
        reason: Why it was skipped, or why it awaits review.
        confidence: For ``"needs_review"``: the confidence that triggered the review.
        restored: True if the outcome came from a checkpoint instead of running again.
        attempts: How many attempts it made (retries included; 0 if it never ran).
    """

    name: str
    status: str
    output: Any = None
    error: str = ""
    started: float | None = None
    finished: float | None = None
    routes: tuple[str, ...] = ()
    usage: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    confidence: float | None = None
    restored: bool = False
    attempts: int = 0

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


@dataclass(frozen=True)
class RunResult:
    """Everything a finished run produced.

    Attributes:
        run_id: The run.
        status: ``"succeeded"``, ``"failed"``, ``"cancelled"``, ``"timed_out"``,
            ``"needs_review"``, ``"needs_input"`` or ``"interrupted"`` (Ctrl-C or
            interpreter exit).
        output: The result (as ``invoke`` returns it), or None if the run did not succeed.
        error: The exception ``invoke`` would have raised, or None.
        agents: Each agent's outcome, by name, in topological order.
        elapsed: Wall time of the run in seconds.
        usage: Usage reported by all agents, summed by name.
        budget_exhausted: True if the run stopped starting agents because its budget
            was spent.
        run_key: The durable identifier of the run, for runs of a graph with a store.
        pending_reviews: For ``"needs_review"`` (and ``"needs_input"``): what awaits a
            decision, at every depth.
        pending_inputs: For ``"needs_input"``: the questions agents asked
            (``cp.interrupt``) that await an answer, at every depth.
        events: Everything that happened to every agent, at any depth, in order: starts
            and ends, and the steps of their policies (``"queued"``, ``"attempt"``,
            ``"retry"``, ``"fallback"``, ``"reviewing"``). :meth:`timeline` is made
            from them.
        edges: ``{agent path: paths of the agents it runs after}`` for every agent of the
            graph's plan, nested graphs included.
    """

    run_id: int
    status: str
    output: Any
    error: BaseException | None
    agents: dict[str, AgentOutcome] = field(default_factory=dict)
    elapsed: float = 0.0
    usage: dict[str, float] = field(default_factory=dict)
    budget_exhausted: bool = False
    run_key: str | None = None
    pending_reviews: tuple[ReviewRequest, ...] = ()
    pending_inputs: tuple[InputRequest, ...] = ()
    events: tuple[Event, ...] = field(default=(), repr=False)
    edges: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def timeline(self) -> TimelinePicture:
        """What every agent did over time, as a Gantt picture (shown inline in Jupyter;
        ``.save("run.html")`` or ``.svg`` elsewhere): one row per agent at every depth,
        a bar per attempt, the waits between them (queued on a limit, retry backoff,
        review), the critical path highlighted and the parallel speed-up. The data is
        its ``.timeline``."""
        return TimelinePicture(self.timeline_data())

    def timeline_data(self) -> Timeline:
        """The timeline's data: each agent's lane and its spans (see :class:`Timeline`).
        Made from the events on first use, then kept (the picture, the critical path and
        the traces all read it)."""
        made: Timeline | None = self.__dict__.get("_timeline")
        if made is None:
            made = Timeline.from_events(self.events, run_id=self.run_id, status=self.status,
                                        elapsed=self.elapsed, edges=self.edges,
                                        run_key=self.run_key)
            # A frozen record: the derived timeline goes beside its fields, not among them.
            self.__dict__["_timeline"] = made
        return made

    def critical_path(self) -> CriticalPath:
        """The chain of agents and waits that the run's wall time was spent on, and that
        time by cause: agent work, queueing on limits, retry backoff, review waits and
        engine overhead (``by_cause`` sums to ``elapsed``)."""
        return critical_path(self.timeline_data())

    def trace(self, format: str = "json") -> dict[str, Any]:
        """The run as a JSON-ready trace.

        Args:
            format: ``"json"``: the timeline's lanes and spans as plain data;
                ``"perfetto"``: the Chrome trace-event format, which opens in
                ui.perfetto.dev and chrome://tracing (one track per agent, flow arrows
                along data edges).
        """
        return timeline_trace(self.timeline_data(), format)

    def raise_for_status(self) -> Any:
        """Returns ``output``, or raises ``error`` if the run did not succeed."""
        if self.error is not None:
            raise self.error
        return self.output

    def _repr_html_(self) -> str:
        """The run as an HTML table (how Jupyter shows it): status, elapsed time and
        usage, then each agent's status, timing, confidence, usage and error."""
        return run_table(self)


def _outcome(record: Any, attempts: int) -> AgentOutcome:
    failure = record.failure
    return AgentOutcome(
        name=record.name,
        status=record.status.name,
        output=record.output,
        error=failure.message if failure is not None else "",
        started=record.started,
        finished=record.finished,
        routes=tuple(record.routes),
        usage=record.usage,
        reason=record.reason,
        confidence=record.confidence,
        restored=record.restored,
        attempts=attempts,
    )


def _attempts(events: list[Event]) -> dict[str, int]:
    """Attempts per agent path: agents with policies report each; others ran once."""
    counted: dict[str, int] = {}
    started: set[str] = set()
    for event in events:
        agent = event.agent
        if agent is None:
            continue
        if event.kind == "attempt":
            counted[agent] = max(counted.get(agent, 0), event.attempt)
        elif event.kind == "start" and event.message != "restored":
            started.add(agent)
    for agent in started:
        counted.setdefault(agent, 1)
    return counted


class Run:
    """A run in flight, started by :meth:`CompiledGraph.start`."""

    def __init__(self, handle: Any, run_key: str | None = None,
                 store: Any = None, on_end: Callable[[], None] | None = None, *,
                 edges: Callable[[], Mapping[str, tuple[str, ...]]] | None = None,
                 trace: RunTrace | None = None) -> None:
        self._handle = handle
        self.run_key = run_key
        # A run started to be recorded (start(), not a stream) keeps its events here,
        # taken once it has ended; `edges` gives the graph's plan for its timeline.
        self._events: list[Event] | None = None if edges is None else []
        self._edges = edges
        self._timeline_made: Timeline | None = None
        # A durable run's end is also recorded by the checkpoint writer, in the background;
        # recording it here as well means that once wait() returns, the store agrees
        # (its audit log's end entries included: on_end).
        self._store = store
        self._durable_store = store  # kept: a paused run's requests are read from it
        self._on_end = on_end
        # Ended (its spans exported) once this handle sees the run's end.
        self._trace = trace

    @property
    def id(self) -> int:
        return self._handle.id

    @property
    def status(self) -> str:
        """``"running"``, ``"succeeded"``, ``"failed"``, ``"cancelled"``, ``"timed_out"``,
        ``"needs_review"``, ``"needs_input"`` or ``"interrupted"`` (Ctrl-C or interpreter
        exit)."""
        return str(self._handle.status.name)

    @property
    def done(self) -> bool:
        done: bool = self._handle.done
        if done and self._trace is not None:
            self._end_trace()
        return done

    def wait(self, timeout: float | None = None) -> bool:
        """Waits (GIL released) until the run ends or ``timeout`` seconds pass. Ctrl-C
        interrupts the run (a durable one is then listed by ``runs("interrupted")``)
        and raises KeyboardInterrupt. Returns True if the run has ended."""
        try:
            ended = self._handle.wait(-1.0 if timeout is None else timeout)
        except KeyboardInterrupt:
            # The run ended "interrupted": record it now, as below, so that a notebook
            # that catches the KeyboardInterrupt finds the run listed for resume at once.
            self._record_end()
            raise
        if ended and self._store is not None:
            store, self._store = self._store, None
            try:
                store.set_status(self.run_key, self.status)
                if self._events is not None and self.run_key is not None:
                    # What the store's own records cannot tell later: each agent's waits
                    # and attempts, at every depth (the latest session of a resumed run).
                    store.save_timeline(self.run_key, self._timeline().to_json())
            finally:
                self._ended()  # the audit log's end entries, whatever happened above
        if ended and self._trace is not None:
            self._end_trace()
        return ended

    def _timeline(self) -> Timeline:
        """The ended run's timeline, made once (its store and its trace both read it)."""
        if self._timeline_made is None:
            self._timeline_made = Timeline.from_events(
                self._take_events(), run_id=self.id, status=self.status,
                elapsed=self._handle.elapsed, edges=self._plan_edges(), run_key=self.run_key)
        return self._timeline_made

    def _plan_edges(self) -> Mapping[str, tuple[str, ...]]:
        return self._edges() if self._edges is not None else {}

    def _end_trace(self) -> None:
        """Ends the run's trace, if it has one and the run has ended."""
        trace = self._trace
        if trace is not None and self._handle.done:
            self._trace = None
            trace.ended(self._handle, None if self._events is None else self._timeline())

    def _ended(self) -> None:
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end()

    def _record_end(self) -> None:
        self._end_trace()
        if self._store is not None and self._handle.done:
            store, self._store = self._store, None
            with contextlib.suppress(Exception):  # the KeyboardInterrupt must go on
                store.finish_run(self.run_key, self.status)
                self._ended()

    def cancel(self) -> bool:
        """Ends the run: agents not yet started never start, running agents' results are
        discarded (running coroutines are cancelled). Returns True if this call ended it."""
        cancelled: bool = self._handle.cancel()
        if self._trace is not None:
            self._end_trace()
        return cancelled

    def result(self, timeout: float | None = None) -> Any:
        """Waits for the run and returns its output, raising like ``invoke`` does."""
        if not self.wait(timeout):
            raise TimeoutError(f"run {self.id} is still running after {timeout} s")
        return unwrap(self._handle.report(), self.run_key, self._durable_store)

    def _take_events(self) -> list[Event]:
        """The run's events (once it has ended), taken from the engine on first use."""
        if self._events is None:
            return []
        while True:
            batch = self._handle.next_events(0.0, 0.0, _EVENT_FORM)
            self._events.extend(batch)
            if not batch.more:
                return self._events

    def record(self) -> RunResult:
        """Waits for the run and returns what every agent did."""
        self.wait()
        events = self._take_events()
        attempts = _attempts(events)
        report = self._handle.report()
        error = None if report.ok else failure_exception(report, self.run_key,
                                                          self._durable_store)
        reviews: tuple[ReviewRequest, ...] = ()
        questions: tuple[InputRequest, ...] = ()
        if isinstance(error, NeedsReview):
            reviews = tuple(error.pending)
        elif isinstance(error, NeedsInput):
            reviews, questions = tuple(error.reviews), tuple(error.pending)
        return RunResult(
            run_id=self.id,
            status=self.status,
            output=report.output,
            error=error,
            agents={record.name: _outcome(record, attempts.get(record.name, 0))
                    for record in self._handle.outcomes()},
            elapsed=self._handle.elapsed,
            usage=self._handle.usage(),
            budget_exhausted=self._handle.budget_exhausted,
            run_key=self.run_key,
            pending_reviews=reviews,
            pending_inputs=questions,
            events=tuple(events),
            edges=dict(self._plan_edges()),  # its own copy: the graph's is shared
        )

    def trace(self) -> dict[str, Any]:
        """A JSON-ready trace: run status, timing and each agent's status and timing."""
        return json.loads(self._handle.trace_json())

    def __repr__(self) -> str:
        return f"Run(id={self.id}, status={self.status!r})"
