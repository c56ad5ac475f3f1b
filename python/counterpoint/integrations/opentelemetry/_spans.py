"""One run's spans.

The workflow span opens just before the run starts. Each agent call's span opens when
the call starts, as a child of the workflow span or of the span of the agent whose
nested graph it runs in, and is made the current span of the call's context, so that
spans made inside the agent (by any instrumentation) nest under it, on pool threads and
on the event loop alike. The spans close once the run has ended and its caller knows
it, timed by the engine: the run's clock is the engine's (both read CLOCK_MONOTONIC),
and what the engine recorded of the run (its timeline: each attempt's end, the waits
for limits and retries, skipped and restored agents) gives the spans their ends and
counterpoint's attributes. A call the engine gave up on (a timeout) closes at that
time; one its run ended without (the run's result no longer needed it) closes when it
returns, as cancelled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context

from ..._results import Result
from ..._run import failure_exception
from ..._timeline import ATTEMPT, BACKOFF, FALLBACK, QUEUED, REVIEW, AgentLane, Timeline
from . import _attributes as attr

_FAILED = ("failed", "timed_out")

_log = logging.getLogger("counterpoint.opentelemetry")


def _make_current(span: Span) -> None:
    """Run inside an agent call's context: makes ``span`` its current span. The context
    is the call's own copy, so nothing needs resetting."""
    otel_context.attach(set_span_in_context(span))


@dataclass
class _Engine:
    """What the engine recorded of one agent call: its stretch of the run's timeline."""

    end: float  # seconds on the run's clock
    status: str
    attempt: int
    fallback: bool
    queued: dict[str, float]  # seconds waited for each limit before it
    delay: float | None  # seconds of retry backoff before it
    detail: str  # how it failed, if it did


@dataclass
class _Call:
    """One agent call and its span."""

    path: str
    span: Span
    started: int  # monotonic ns
    # Its attempt's number, as the calls tell it: those of its path the run started, not
    # counting continuations (the run's timeline then says which attempt it was).
    number: int
    # The `then` step of a delegation (a loop's next iteration, say): a call of the same
    # agent made while its delegating call is still open, as part of it.
    continuation: bool = False
    ended: int | None = None  # monotonic ns
    status: str = "running"
    error_type: str | None = None
    message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    usage: Mapping[str, float] = field(default_factory=dict)  # what its output reported
    engine: _Engine | None = None
    review: tuple[str, str] | None = None  # (status, reason)
    closing: bool = False  # its span is being ended (by the run's end, or by its own)
    late: bool = False  # it returned after its run had ended: its result was discarded


class RunSpans:
    """The trace of one run (``_tracing.RunTrace``) and the observer of its agent calls."""

    def __init__(self, tracer: Tracer, name: str, observer: Any) -> None:
        self._tracer = tracer
        self.observer: Any = self if observer is None else _Observers(self, observer)
        self._lock = threading.Lock()
        self._calls: list[_Call] = []
        # The newest call of each path that is not a continuation: where a nested
        # agent's call, and a continuation of the same agent, find their parent.
        self._latest: dict[str, _Call] = {}
        self._counts: dict[str, int] = {}  # calls of each path that are not continuations
        self._closed = False
        self._conversation: str | None = None
        now = time.monotonic_ns()
        # The run's start on the monotonic clock (refined once the run has started), and
        # what turns a monotonic time into the wall-clock time spans carry.
        self._zero = now
        self._wall = time.time_ns() - now
        self._workflow = tracer.start_span(
            f"{attr.INVOKE_WORKFLOW} {name}", kind=SpanKind.INTERNAL, start_time=now + self._wall,
            attributes={attr.OPERATION: attr.INVOKE_WORKFLOW, attr.WORKFLOW_NAME: name})
        self._workflow_context = set_span_in_context(self._workflow)

    # ---- the run's agent calls (any thread, with the GIL) -----------------------------

    def agent_started(self, call: Any) -> None:
        path = call.path
        previous = self._latest.get(path)
        # A call of an agent whose previous call has not ended is a delegation's next
        # step (a loop's iteration), unless the engine says it is a retry: a sync attempt
        # abandoned by its timeout is still running when the next attempt starts.
        continuation = previous is not None and previous.ended is None and call.attempt < 2
        if continuation:
            parent: _Call | None = previous
            number = self._counts[path]
        else:
            parent = self._parent(path)
            self._counts[path] = self._counts.get(path, 0) + 1
            # The engine's number for an agent with policies; else the calls so far (the
            # run's timeline, when it has one, corrects it as the run ends).
            number = call.attempt or self._counts[path]
        now = time.monotonic_ns()
        span = self._tracer.start_span(
            f"{attr.INVOKE_AGENT} {path}",
            self._workflow_context if parent is None else set_span_in_context(parent.span),
            SpanKind.INTERNAL, {attr.OPERATION: attr.INVOKE_AGENT, attr.AGENT_NAME: path},
            start_time=now + self._wall)
        record = _Call(path, span, now, number, continuation)
        if not continuation:
            self._latest[path] = record
        self._calls.append(record)
        call.state = record
        call.context.run(_make_current, span)

    def agent_ended(self, call: Any) -> None:
        record = call.state
        if not isinstance(record, _Call):
            return
        status = call.status.name
        error = call.error
        if status in ("succeeded", "needs_review", "needs_input"):
            output = call.output
            record.attributes = attr.output_attributes(output)
            if isinstance(output, Result) and output.usage:
                record.usage = output.usage
        with self._lock:
            record.status = status
            record.message = call.message
            if isinstance(error, BaseException):
                record.error_type = type(error).__name__
            elif status == "timed_out":
                record.error_type = attr.TIMED_OUT
            record.ended = time.monotonic_ns()
            record.late = self._closed
            late = self._closed and not record.closing
            record.closing = True
        if late:  # the run ended first: nobody else will close this call's span
            self._end_call(record)

    def _parent(self, path: str) -> _Call | None:
        """The call of the agent whose nested graph ``path`` runs in, if any."""
        cut = path.rfind("/")
        while cut > 0:
            parent = self._latest.get(path[:cut])
            if parent is not None:
                return parent
            cut = path.rfind("/", 0, cut)
        return None

    # ---- the run (its caller's thread) ------------------------------------------------

    def started(self, handle: Any, run_key: str | None) -> None:
        self._conversation = run_key or str(handle.id)
        # The engine's clock started a little after the workflow span: take its start
        # from the run itself while it runs (a run already over keeps the estimate).
        elapsed = handle.elapsed
        now = time.monotonic_ns()
        if not handle.done:
            self._zero = now - round(elapsed * 1e9)

    def ended(self, handle: Any, timeline: Timeline | None) -> None:
        try:
            report = handle.report()
            self._close(report.status.name, handle.id, None if report.ok else
                        failure_exception(report, handle.key or None), handle.usage(),
                        self._zero + round(handle.elapsed * 1e9), timeline)
        except Exception:  # noqa: BLE001  (a tracing failure must not change the run)
            _log.exception("counterpoint: could not end the trace of run %s", handle.id)

    def reported(self, report: Any, run_key: str | None,
                 timeline: Timeline | None = None) -> None:
        try:
            self._conversation = run_key or str(report.run_id)
            # No handle is kept for a run of a batch: it ended with its timeline (when
            # the batch handed it over), else when its last call did; it used what its
            # calls reported (a report says only what a failed run used).
            ended = [call for call in self._calls if call.ended is not None]
            if timeline is not None:
                end = self._zero + round(timeline.elapsed * 1e9)
            else:
                end = max((call.ended for call in ended if call.ended is not None),
                          default=time.monotonic_ns())
            usage: dict[str, float] = {}
            for call in ended:
                for name, amount in call.usage.items():
                    usage[name] = usage.get(name, 0.0) + amount
            self._close(report.status.name, report.run_id,
                        None if report.ok else failure_exception(report, run_key),
                        usage, end, timeline)
        except Exception:  # noqa: BLE001  (a tracing failure must not change the run)
            _log.exception("counterpoint: could not end the trace of run %s", report.run_id)

    def abandoned(self, error: BaseException) -> None:
        try:
            interrupted = isinstance(error, KeyboardInterrupt)
            self._close("interrupted" if interrupted else "failed", None,
                        None if interrupted else error, None, time.monotonic_ns(), None)
        except Exception:  # noqa: BLE001  (a tracing failure must not change the run)
            _log.exception("counterpoint: could not end the trace of a run")

    # ---- closing ----------------------------------------------------------------------

    def _close(self, status: str, run_id: int | None, error: BaseException | None,
               usage: Mapping[str, float] | None, end: int, timeline: Timeline | None) -> None:
        if timeline is not None:
            self._match(timeline)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # Calls that returned, and calls the engine gave up on (a timeout) while
            # their code runs on; the others close when they return.
            ending = [call for call in self._calls if call.ended is not None or (
                call.engine is not None and call.engine.status not in ("", "running"))]
            for call in ending:
                call.closing = True
        for call in ending:
            self._end_call(call)
        workflow = self._workflow
        if timeline is not None:
            for lane in timeline.lanes:
                self._lane_without_call(lane)
        attributes: dict[str, Any] = {attr.RUN_STATUS: status, **attr.usage_attributes(usage)}
        if run_id is not None:
            attributes[attr.RUN_ID] = run_id
        if self._conversation is not None:
            attributes[attr.CONVERSATION] = self._conversation
        if status in _FAILED and error is not None:
            attributes[attr.ERROR_TYPE] = type(error).__name__
            workflow.set_status(Status(StatusCode.ERROR, str(error)))
        workflow.set_attributes(attributes)
        workflow.end(end_time=end + self._wall)

    def _match(self, timeline: Timeline) -> None:
        """Gives each call the engine's record of it. A lane's attempts and fallback are
        its calls: each call belongs to the last of them that started before it did (the
        engine marks an attempt before it calls the agent); a second call in the same one
        is a continuation of the first."""
        by_path: dict[str, list[_Call]] = {}
        for call in list(self._calls):
            by_path.setdefault(call.path, []).append(call)
        for lane in timeline.lanes:
            calls = by_path.get(lane.agent)
            if not calls:
                continue
            engines: list[tuple[float, _Engine]] = []  # (start, the stretch's record)
            queued: dict[str, float] = {}
            delay: float | None = None
            for stretch in lane.spans:
                if stretch.kind == QUEUED:
                    queued[stretch.detail] = queued.get(stretch.detail, 0.0) + stretch.duration
                elif stretch.kind == BACKOFF:
                    delay = stretch.duration
                elif stretch.kind in (ATTEMPT, FALLBACK):
                    engines.append((stretch.start, _Engine(
                        stretch.end, stretch.status, stretch.attempt, stretch.kind == FALLBACK,
                        queued, delay, stretch.detail)))
                    queued, delay = {}, None
            index, taken, last = -1, -1, None
            for call in calls:
                at = (call.started - self._zero) * 1e-9
                while index + 1 < len(engines) and engines[index + 1][0] <= at:
                    index += 1
                call.continuation = index >= 0 and index == taken
                if index >= 0 and not call.continuation:
                    call.engine, taken, last = engines[index][1], index, call
            review = _review_of(lane)
            if review is not None and last is not None:
                last.review = review

    def _end_call(self, call: _Call) -> None:
        attributes = dict(call.attributes)
        if self._conversation is not None:
            attributes[attr.CONVERSATION] = self._conversation
        status, error_type, end, message = call.status, call.error_type, call.ended, call.message
        engine = call.engine
        if call.continuation:
            attributes[attr.CONTINUATION] = True
        elif engine is None:
            attributes[attr.ATTEMPT] = call.number
        else:
            if engine.fallback:  # not an attempt: what the agent's failures led to
                attributes[attr.FALLBACK] = True
            else:
                attributes[attr.ATTEMPT] = engine.attempt
            if engine.delay is not None:
                attributes[attr.RETRY_DELAY] = engine.delay
            for limit, seconds in engine.queued.items():
                attributes[attr.QUEUED + limit] = seconds
        if engine is not None and engine.status not in ("", "running"):
            status = engine.status  # a timeout the engine decided, say
            message = message or engine.detail
            end = self._zero + round(engine.end * 1e9)
        elif call.late:
            status = "cancelled"
        if call.review is not None:
            attributes[attr.REVIEW_STATUS], reason = call.review
            if reason:
                attributes[attr.REVIEW_REASON] = reason
        attributes[attr.AGENT_STATUS] = status
        if status in _FAILED:
            attributes[attr.ERROR_TYPE] = error_type or \
                (attr.TIMED_OUT if status == "timed_out" else attr.OTHER_ERROR)
            call.span.set_status(Status(StatusCode.ERROR, message or status))
        call.span.set_attributes(attributes)
        call.span.end(end_time=max(end or call.started, call.started) + self._wall)

    def _lane_without_call(self, lane: AgentLane) -> None:
        """Shows what the engine did with an agent that made no call of its own: skipped
        and restored agents as events of the workflow span (no agent ran), a refusal by
        a circuit breaker (or any failure before a call) as a span of no length."""
        path = lane.agent
        if lane.status == "skipped":  # its lane ends when it was skipped
            self._workflow.add_event(
                attr.SKIPPED_EVENT, {attr.AGENT_NAME: path, attr.SKIP_REASON: lane.message},
                self._zero + round((lane.end or 0.0) * 1e9) + self._wall)
        elif lane.restored:
            self._workflow.add_event(
                attr.RESTORED_EVENT, {attr.AGENT_NAME: path, attr.RESTORED: True},
                self._zero + round((lane.start or 0.0) * 1e9) + self._wall)
        elif lane.status in _FAILED and (attr.is_breaker_refusal(lane.message)
                                         or path not in self._counts):
            self._refusal(lane)

    def _refusal(self, lane: AgentLane) -> None:
        path = lane.agent
        parent = self._parent(path)
        at = self._zero + round((lane.end or lane.start or 0.0) * 1e9) + self._wall
        breaker = attr.is_breaker_refusal(lane.message)
        attributes: dict[str, Any] = {
            attr.OPERATION: attr.INVOKE_AGENT, attr.AGENT_NAME: path,
            attr.AGENT_STATUS: lane.status,
            attr.ERROR_TYPE: attr.CIRCUIT_OPEN if breaker else
            attr.TIMED_OUT if lane.status == "timed_out" else attr.OTHER_ERROR,
        }
        if breaker:
            attributes[attr.BREAKER_STATE] = "open"
        if self._conversation is not None:
            attributes[attr.CONVERSATION] = self._conversation
        span = self._tracer.start_span(
            f"{attr.INVOKE_AGENT} {path}",
            self._workflow_context if parent is None else set_span_in_context(parent.span),
            SpanKind.INTERNAL, attributes, start_time=at)
        span.set_status(Status(StatusCode.ERROR, lane.message))
        span.end(end_time=at)


def _review_of(lane: AgentLane) -> tuple[str, str] | None:
    """The review of a lane's output: awaiting a person, or decided by a reviewer."""
    if lane.status == "needs_review":
        return "needs_review", lane.message
    for stretch in lane.spans:
        if stretch.kind == REVIEW:
            return ("approved" if lane.status == "succeeded" else "rejected"), stretch.detail
    return None


class _Observers:
    """A run's trace and the observer it had anyway (a stream's channel for emit, the
    LangChain callbacks), both told of every call, each keeping its own ``call.state``.
    The trace goes first, so the other's code (a LangChain run, say) runs with the
    agent's span current."""

    def __init__(self, spans: RunSpans, other: Any) -> None:
        self._spans = spans
        self._other = other
        self._other_ends = getattr(other, "agent_ended", None)

    def agent_started(self, call: Any) -> None:
        self._spans.agent_started(call)
        mine, call.state = call.state, None
        self._other.agent_started(call)
        call.state = (mine, call.state)

    def agent_ended(self, call: Any) -> None:
        mine, theirs = call.state
        if self._other_ends is not None:
            call.state = theirs
            self._other_ends(call)
        call.state = mine
        self._spans.agent_ended(call)
