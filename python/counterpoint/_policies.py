"""Per-agent policies: retry, timeout, fallback, circuit breaker, limits, review gate.

Policies wrap any agent (a callable, a coroutine, a runnable, a compiled graph) and run
natively for every run in the process. Every setting is checked when the policy is
built, so a bad value fails at once with a message that says what to fix.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ._agents import SubmittingAgent, check_agent, uses_event_loop
from ._errors import AgentTimeout, GraphError, ReviewRefused
from ._native import _core
from ._results import ReviewRequest


def _number(owner: str, name: str, value: Any, *, positive: bool = False,
            allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or math.isinf(value):
        raise GraphError(f"{owner}: {name} must be a finite number, got {value!r}")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        bound = "> 0" if not allow_zero else ">= 0"
        raise GraphError(f"{owner}: {name} must be {bound}, got {value!r}")
    return float(value)


_MAX_COUNT = 2**32 - 1  # what the engine's counters hold


def _count(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_COUNT:
        raise GraphError(
            f"{owner}: {name} must be a positive int (at most {_MAX_COUNT}), got {value!r}"
        )
    return value


@dataclass(frozen=True)
class Retry:
    """Retry an agent with exponential backoff and jitter.

    The delay before attempt ``n + 1`` is ``initial_backoff * multiplier ** (n - 1)``,
    varied by up to ``+-jitter`` (a fraction) and never more than ``max_backoff``. Other
    agents keep running meanwhile: the wait is a native timer, not a sleeping thread.

    Args:
        max_attempts: Total attempts, the first included (>= 1).
        initial_backoff: Seconds before the second attempt (>= 0).
        multiplier: Growth of the backoff per attempt (>= 1).
        max_backoff: Upper bound of every delay, jitter included (>= 0).
        jitter: Random variation of each delay, from 0 (none) to 1 (+-100 %).
        retry_on: Exception class(es) worth retrying (timeouts count as
            :class:`AgentTimeout`, a ``TimeoutError``), or a predicate on the exception.
    """

    max_attempts: int = 3
    initial_backoff: float = 0.1
    multiplier: float = 2.0
    max_backoff: float = 10.0
    jitter: float = 0.1
    retry_on: Any = Exception

    def __post_init__(self) -> None:
        _count("Retry", "max_attempts", self.max_attempts)
        _number("Retry", "initial_backoff", self.initial_backoff, positive=True)
        if _number("Retry", "multiplier", self.multiplier) < 1:
            raise GraphError(f"Retry: multiplier must be >= 1, got {self.multiplier!r}")
        _number("Retry", "max_backoff", self.max_backoff, positive=True)
        if not 0 <= _number("Retry", "jitter", self.jitter) <= 1:
            raise GraphError(f"Retry: jitter must be between 0 and 1, got {self.jitter!r}")
        classes = self.retry_on if isinstance(self.retry_on, tuple) else (self.retry_on,)
        if not all(isinstance(c, type) and issubclass(c, BaseException) for c in classes) \
                and not (callable(self.retry_on) and not isinstance(self.retry_on, type)):
            raise GraphError(
                "Retry: retry_on must be an exception class, a tuple of them, or a predicate "
                f"taking the exception; got {self.retry_on!r}"
            )

    def _native_spec(self) -> Any:
        """The engine's retry spec: timeouts, open circuits and rejections are decided
        natively; Python is asked only about the agent's own exceptions, and only when
        ``retry_on`` is narrower than every exception."""
        retry_on = self.retry_on
        if isinstance(retry_on, (type, tuple)):
            classes = retry_on if isinstance(retry_on, tuple) else (retry_on,)
            timeouts = (_core.RetryTimeouts.always if issubclass(AgentTimeout, classes)
                        else _core.RetryTimeouts.never)
            if BaseException in classes:
                predicate = None
            else:
                def predicate(failure: Any) -> bool:
                    # A failure the engine made itself (no exception) counts as a
                    # RuntimeError, as it always has.
                    error = failure.error
                    if error is None:
                        error = RuntimeError(failure.message)
                    return isinstance(error, classes)
        else:
            timeouts = _core.RetryTimeouts.ask_predicate

            def predicate(failure: Any) -> bool:
                error = failure.error
                if error is None:  # a timeout, or a failure the engine made
                    is_timeout = failure.kind is _core.FailureKind.timeout
                    error = AgentTimeout(failure.message) if is_timeout \
                        else RuntimeError(failure.message)
                return bool(retry_on(error))

        return _core.RetrySpec(
            max_attempts=self.max_attempts, initial_backoff=float(self.initial_backoff),
            multiplier=float(self.multiplier), max_backoff=float(self.max_backoff),
            jitter=float(self.jitter), retry_on=predicate, timeouts=timeouts)


class _Shared:
    """Instances with a name are shared process-wide: building one again with the same
    name and settings returns the same object (and so the same native state).

    They pickle as how they were built: a named one, unpickled, joins the process's
    registry (the same object as every other with that name); an anonymous one is a new
    object, which pickle's memo makes one for everything pickled together that shared
    it. Their state (counts, an open breaker) stays in the process that pickled them.
    """

    _registry: ClassVar[dict[tuple[type, str], Any]] = {}
    _lock = threading.Lock()
    _anonymous = itertools.count(1)
    # The keywords of the constructor, in the order of ``_settings``.
    _SETTING_NAMES: ClassVar[tuple[str, ...]]
    _settings: tuple[Any, ...]
    _shared_name: str | None  # the name given, None for an anonymous one

    @classmethod
    def _shared(cls, name: str | None, settings: tuple, build: Callable[[str], Any]) -> Any:
        if name is not None and (not isinstance(name, str) or not name):
            raise GraphError(
                f"{cls.__name__}: name must be a non-empty string or None, got {name!r}"
            )
        with cls._lock:
            if name is None:
                instance = object.__new__(cls)
                instance._settings = settings
                instance._shared_name = None
                instance._native = build(f"{cls.__name__.lower()}-{next(cls._anonymous)}")
                return instance
            existing = cls._registry.get((cls, name))
            if existing is not None:
                if existing._settings != settings:
                    raise GraphError(
                        f"{cls.__name__} {name!r} already exists with other settings "
                        f"{existing._settings}; use the same settings or another name"
                    )
                return existing
            instance = object.__new__(cls)
            instance._settings = settings
            instance._shared_name = name
            instance._native = build(name)
            cls._registry[(cls, name)] = instance
            return instance

    def __reduce__(self) -> tuple[Any, ...]:
        return _build_shared, (type(self), self._shared_name,
                               dict(zip(self._SETTING_NAMES, self._settings)))


def _build_shared(cls: Callable[..., _Shared], name: str | None,
                  settings: dict[str, Any]) -> _Shared:
    """Unpickles a breaker or limit by building it again (see ``_Shared``)."""
    return cls(name, **settings)


class CircuitBreaker(_Shared):
    """Stops calling an agent (or a resource shared by several) that keeps failing.

    After ``failures`` failures within ``window`` seconds it opens: calls fail fast with
    :class:`CircuitOpenError` (no retries). After ``reset_after`` seconds one probe call
    goes through (half-open); its success closes the breaker, its failure reopens it.
    Give it a ``name`` to share it across agents and graphs; without one, it belongs to
    whatever you attach it to.

    It pickles as its name and settings (with the graph it guards): unpickled, a named
    breaker is the process's breaker of that name. Its state does not travel: in a new
    process it starts closed, with no failures counted.
    """

    _SETTING_NAMES = ("failures", "window", "reset_after")

    def __new__(cls, name: str | None = None, *, failures: int = 5, window: float = 60.0,
                reset_after: float = 30.0) -> CircuitBreaker:
        _count("CircuitBreaker", "failures", failures)
        _number("CircuitBreaker", "window", window, positive=True, allow_zero=False)
        _number("CircuitBreaker", "reset_after", reset_after, positive=True, allow_zero=False)
        return cls._shared(name, (failures, float(window), float(reset_after)),
                           lambda n: _core.CircuitBreaker(n, failures, window, reset_after))

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""
        return self._native.snapshot()["state"]

    def snapshot(self) -> dict[str, Any]:
        """State, recent and total failures, successes, rejected calls, time to probe."""
        return self._native.snapshot()

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state!r})"


class Limit(_Shared):
    """Caps concurrent calls and/or calls per second, across every run in the process.

    Calls over the limit wait in a queue without holding a thread. Give it a ``name``
    (e.g. the LLM provider) to share it between agents.

    Args:
        max_concurrent: At most this many calls at once.
        per_second: At most this many call starts per second.
        burst: Starts allowed back to back before ``per_second`` applies (default 1).

    It pickles as its name and settings (with the graph it limits): unpickled, a named
    limit is the process's limit of that name, and an anonymous one shared by several
    agents pickled together is still one limit. Its state does not travel: in a new
    process no calls are running or counted.
    """

    _SETTING_NAMES = ("max_concurrent", "per_second", "burst")

    def __new__(cls, name: str | None = None, *, max_concurrent: int | None = None,
                per_second: float | None = None, burst: int | None = None) -> Limit:
        if max_concurrent is None and per_second is None:
            raise GraphError("Limit: give max_concurrent, per_second, or both")
        if max_concurrent is not None:
            _count("Limit", "max_concurrent", max_concurrent)
        if per_second is not None:
            _number("Limit", "per_second", per_second, positive=True, allow_zero=False)
        if burst is not None:
            _count("Limit", "burst", burst)
        settings = (max_concurrent, per_second, burst)
        return cls._shared(name, settings, lambda n: _core.Limiter(
            n, max_concurrent or 0, float(per_second or 0.0), float(burst or 1)))

    @property
    def name(self) -> str:
        return self._native.name

    def snapshot(self) -> dict[str, Any]:
        """Calls running and waiting now, calls granted so far, most ever running at once."""
        return self._native.snapshot()

    def __repr__(self) -> str:
        return f"Limit({self.name!r}, {self.snapshot()})"


class _Keep:
    """The output of an approval that keeps the held output (pickles as itself)."""

    def __repr__(self) -> str:
        return "<keep the held output>"

    def __reduce__(self) -> str:
        return "_KEEP"


_KEEP = _Keep()


@dataclass(frozen=True)
class Decision:
    """A reviewer's decision about an agent output: approve (optionally replacing it)
    or reject.

    Attributes:
        approved: True to approve, False to reject.
        output: The replacement output of an approval (unset: keep the held output).
        reason: Why it was rejected.
        by: Who decided (a user name, an e-mail ...), recorded in the audit log.
        role: The role they decided in; a gate with ``approvers`` accepts only those roles.
        note: A free-form note, recorded with the decision.
    """

    approved: bool
    output: Any = field(default=_KEEP, repr=False)
    reason: str = ""
    by: str | None = None
    role: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        for name in ("by", "role"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"a review decision's {name} must be a non-empty string or "
                                f"None, got {value!r}")
        if not isinstance(self.note, str):
            raise TypeError(f"a review decision's note must be a string, got {self.note!r}")

    @property
    def replaces_output(self) -> bool:
        """True if the approval replaces the held output."""
        return self.output is not _KEEP


def approve(output: Any = _KEEP, *, by: str | None = None, role: str | None = None,
            note: str = "") -> Decision:
    """Approve the output under review, or replace it with ``output``.

    Args:
        output: The replacement output (omit it to keep the held one).
        by: Who decides; recorded, and required by a gate with ``approvers``.
        role: The role they decide in; a gate with ``approvers`` refuses other roles
            with :class:`ReviewRefused`.
        note: Recorded with the decision.
    """
    return Decision(True, output, by=by, role=role, note=note)


def reject(reason: str = "rejected by the reviewer", *, by: str | None = None,
           role: str | None = None, note: str = "") -> Decision:
    """Reject the output under review: the agent fails with :class:`ReviewRejected`.

    ``by``, ``role`` and ``note`` are as for :func:`approve`.
    """
    return Decision(False, reason=reason, by=by, role=role, note=note)


def as_decision(decision: Any) -> Decision:
    if isinstance(decision, Decision):
        return decision
    if decision is True or decision == "approve":
        return approve()
    if decision is False or decision == "reject":
        return reject()
    raise TypeError(
        "a review decision must be cp.approve(...), cp.reject(...), True/False or "
        f"'approve'/'reject'; got {decision!r}"
    )


def check_decider(agent: str, approvers: tuple[str, ...], decision: Decision) -> None:
    """Raises :class:`ReviewRefused` unless ``decision`` may decide a gate that allows
    ``approvers`` (empty: anyone)."""
    if approvers and (decision.by is None or decision.role not in approvers):
        raise ReviewRefused(agent, decision.by, decision.role, approvers)


# What a durable run's audit log learns in-process (attempts of agents with retries,
# in-process review decisions): set around a run's start, as agent calls and reviewers
# run in a copy of their run's caller context. (A batch shares one context: not set.)
audit_notes: ContextVar[list[dict[str, Any]] | None] = ContextVar(
    "counterpoint_audit_notes", default=None)


def _note_attempt(notes: list[dict[str, Any]], name: str, begun: float,
                  error: BaseException | None) -> None:
    note: dict[str, Any] = {"kind": "attempt", "agent": name, "started": begun,
                            "ended": time.time(), "error": None}
    if error is not None:
        note.update(error=type(error).__name__, message=str(error))
    notes.append(note)


def counted_attempts(name: str, agent: Any) -> Any:
    """``agent`` (a function, a submitting agent such as a Ray agent, or an object whose
    ``__call__`` is a coroutine function) noting each attempt in the running durable
    run's audit notes, so retries can be audited."""
    if isinstance(agent, SubmittingAgent):
        return _CountedSubmissions(name, agent)
    if inspect.iscoroutinefunction(agent) or \
            inspect.iscoroutinefunction(getattr(type(agent), "__call__", None)):  # noqa: B004
        @functools.wraps(agent)
        async def counted_async(*args: Any, **kwargs: Any) -> Any:
            notes = audit_notes.get()
            if notes is None:
                return await agent(*args, **kwargs)
            begun = time.time()
            try:
                result = await agent(*args, **kwargs)
            except BaseException as exc:
                _note_attempt(notes, name, begun, exc)
                raise
            _note_attempt(notes, name, begun, None)
            return result

        return counted_async

    @functools.wraps(agent)
    def counted(*args: Any, **kwargs: Any) -> Any:
        notes = audit_notes.get()
        if notes is None:
            return agent(*args, **kwargs)
        begun = time.time()
        try:
            result = agent(*args, **kwargs)
        except BaseException as exc:
            _note_attempt(notes, name, begun, exc)
            raise
        _note_attempt(notes, name, begun, None)
        return result

    return counted


class _CountedSubmissions(SubmittingAgent):
    """A submitting agent (a Ray agent) noting each attempt when its call settles: it
    stays a submitting agent, which the engine follows without an event loop."""

    def __init__(self, name: str, agent: SubmittingAgent) -> None:
        self.name = name
        self.agent = agent

    def submit(self, argument: Any) -> Future[Any]:
        notes = audit_notes.get()  # submit runs in the run's context; settling may not
        begun = time.time()
        call = self.agent.submit(argument)
        if notes is not None:
            def note(settled: Future[Any]) -> None:  # before the engine's own callback
                error = CancelledError() if settled.cancelled() else settled.exception()
                _note_attempt(notes, self.name, begun, error)

            call.add_done_callback(note)
        return call


@dataclass(frozen=True)
class Review:
    """Confidence gate: outputs below ``below`` go to a human.

    With a ``reviewer`` callable, it is called in-process (on a pool thread) with a
    :class:`ReviewRequest` and returns a decision (``cp.approve(...)``, ``cp.reject(...)``,
    True or False). Without one, the run pauses with status ``"needs_review"``, is kept
    in the graph's store, and continues with ``app.resume(run_key, decision)`` — from this
    process or another. Outputs with no confidence reported are reviewed too.

    Args:
        below: Outputs whose confidence is below this (in (0, 1]) are reviewed.
        reviewer: Decides in-process; None pauses the run for a human.
        approvers: Role names allowed to decide (empty: anyone). A decision must then
            say ``by`` whom and in which ``role`` (``cp.approve(by=..., role=...)``);
            any other is refused with :class:`ReviewRefused`.
    """

    below: float = 0.7
    reviewer: Callable[[Any], Any] | None = None
    approvers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        threshold = _number("Review", "below", self.below)
        if not 0 < threshold <= 1:
            raise GraphError(f"Review: below must be a confidence in (0, 1], got {self.below!r}")
        if self.reviewer is not None and not callable(self.reviewer):
            raise GraphError(f"Review: reviewer must be callable or None, got {self.reviewer!r}")
        approvers = self.approvers
        if isinstance(approvers, str) or not isinstance(approvers, (list, tuple)):
            raise GraphError(
                "Review: approvers must be a list or tuple of role names, e.g. "
                f"approvers=['support-leads'], got {approvers!r}")
        for role in approvers:
            if not isinstance(role, str) or not role.strip():
                raise GraphError(
                    f"Review: approvers must be non-empty role names, got {role!r} in "
                    f"{list(approvers)!r}")
        if len(set(approvers)) != len(approvers):
            raise GraphError(f"Review: approvers lists a role twice: {list(approvers)!r}")
        object.__setattr__(self, "approvers", tuple(approvers))

    def _native_spec(self, agent: str = "") -> Any:
        """The engine's review gate: the threshold is checked natively; a reviewer, if
        any, is called on a pool thread with a :class:`ReviewRequest`."""
        reviewer = self.reviewer
        if reviewer is None:
            return _core.ReviewSpec(below=float(self.below), pause_details={
                "threshold": float(self.below), "approvers": list(self.approvers)})
        approvers, threshold = self.approvers, self.below

        def ask(pending: Any) -> Any:
            request = ReviewRequest(pending.agent, pending.output, pending.reason,
                                    pending.confidence)
            decision = as_decision(reviewer(request))
            notes = audit_notes.get()
            if notes is not None:
                notes.append({"kind": "review", "agent": agent or pending.agent,
                              "decision": decision, "output": pending.output,
                              "confidence": pending.confidence, "threshold": threshold,
                              "approvers": list(approvers), "time": time.time()})
            check_decider(agent or pending.agent, approvers, decision)
            if decision.approved:
                return _core.ReviewVerdict(approved=True,
                                           output=resolve_output(decision, pending.output))
            return _core.ReviewVerdict(approved=False, reason=decision.reason)

        return _core.ReviewSpec(below=float(self.below), reviewer=ask)


class _CacheCounts:
    """A cache policy's hit and miss counts in this process (a pickled policy starts
    again from zero: counts do not travel)."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def count(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    def __reduce__(self) -> tuple[Any, ...]:
        return _CacheCounts, ()


@dataclass(frozen=True)
class Cache:
    """Reuse an agent's output for an input it was already given, from the graph's store,
    across runs and processes. The graph must be compiled with a store.

    An entry is found by the agent's identity and a SHA-256 of its input (encoded as
    JSON, dict keys sorted; pickled if JSON cannot encode it). The identity is ``key``
    if given, else the agent's name in the graph and its qualified name (module and
    qualname of a function or method, class of any other object). The agent's code is
    not part of it: bump ``version`` when it changes (a prompt, a model), or stale
    outputs keep being returned.

    A hit returns the stored output without calling the agent, reports no usage, and
    shows as ``"cached": true`` in the run's ``agent_finished`` audit entry. A miss
    calls the agent and stores its output (through the store's codec, like outcomes;
    usage is not stored).

    Args:
        ttl: Seconds an entry is used for (> 0); None: forever.
        key: The identity to use instead of the agent's: agents (in any graph) with the
            same ``key`` share entries.
        version: Part of the identity (a string or an int); change it to stop using
            what older code stored.

    Attributes:
        hits, misses: Lookups that found an entry, and those that called the agent, in
            this process, for every agent this policy is given to.
    """

    ttl: float | None = None
    key: str | None = None
    version: str | int = 0
    _counts: _CacheCounts = field(default_factory=_CacheCounts, init=False, repr=False,
                                  compare=False)

    def __post_init__(self) -> None:
        if self.ttl is not None:
            _number("Cache", "ttl", self.ttl, positive=True, allow_zero=False)
        if self.key is not None and (not isinstance(self.key, str) or not self.key.strip()):
            raise GraphError(f"Cache: key must be a non-empty string or None, got {self.key!r}")
        if isinstance(self.version, bool) or not isinstance(self.version, (str, int)):
            raise GraphError(
                f"Cache: version must be a string or an int, got {self.version!r}")

    @property
    def hits(self) -> int:
        return self._counts.hits

    @property
    def misses(self) -> int:
        return self._counts.misses

    def _counted(self, hit: bool) -> None:
        """Counts one lookup."""
        self._counts.count(hit)


def resolve_output(decision: Decision, output: Any) -> Any:
    return output if decision.output is _KEEP else decision.output


@dataclass(frozen=True)
class Policed:
    """An agent with policies attached; use it anywhere an agent goes. Graph.add copies
    the policies onto the agent's node spec."""

    agent: Any
    retry: Retry | None = None
    timeout: float | None = None
    fallback: Any = None
    breaker: CircuitBreaker | None = None
    limits: tuple[Limit, ...] = ()
    review: Review | None = None
    cache: Cache | None = None

    _is_agent_spec = True  # counts as an agent wherever agents are checked

    @property
    def uses_event_loop(self) -> bool:
        return uses_event_loop(self.agent) or uses_event_loop(self.fallback)


def policy(
    agent: Any,
    *,
    retry: Retry | int | None = None,
    timeout: float | None = None,
    fallback: Any = None,
    breaker: CircuitBreaker | None = None,
    limits: Limit | Sequence[Limit] | None = None,
    review: Review | None = None,
    cache: Cache | None = None,
) -> Policed:
    """Attaches policies to an agent.

    Args:
        agent: Any agent.
        retry: A :class:`Retry`, or the number of attempts with default backoff.
        timeout: Seconds per attempt (> 0). A coroutine (or a child graph's run) is
            cancelled when it passes; a sync call is abandoned and its late result
            discarded. A timed-out attempt fails like any other: it is retried, then the
            fallback runs; the run goes on if there is a fallback or ``on_error="continue"``.
        fallback: An agent run with the same input after the final failure.
        breaker: A :class:`CircuitBreaker` (shared if it has a name).
        limits: One or more :class:`Limit` (shared if they have names).
        review: A :class:`Review` confidence gate.
        cache: A :class:`Cache`: reuse outputs for inputs already seen, from the
            graph's store (the graph must be compiled with one).
    """
    check_agent("policy", "agent", agent)
    if isinstance(retry, int) and not isinstance(retry, bool):
        retry = Retry(max_attempts=retry)
    if retry is not None and not isinstance(retry, Retry):
        raise GraphError(f"policy: retry must be a cp.Retry or an int, got {retry!r}")
    if timeout is not None:
        _number("policy", "timeout", timeout, positive=True, allow_zero=False)
    if fallback is not None:
        check_agent("policy", "fallback", fallback)
    if breaker is not None and not isinstance(breaker, CircuitBreaker):
        raise GraphError(f"policy: breaker must be a cp.CircuitBreaker, got {breaker!r}")
    if limits is None:
        limits = ()
    elif isinstance(limits, Limit):
        limits = (limits,)
    elif not isinstance(limits, (list, tuple)):
        raise GraphError(f"policy: limits must be a cp.Limit or a list of them, got {limits!r}")
    limits = tuple(limits)
    for limit in limits:
        if not isinstance(limit, Limit):
            raise GraphError(f"policy: limits must be cp.Limit objects, got {limit!r}")
    if review is not None and not isinstance(review, Review):
        raise GraphError(f"policy: review must be a cp.Review, got {review!r}")
    if cache is not None and not isinstance(cache, Cache):
        raise GraphError(f"policy: cache must be a cp.Cache, got {cache!r}")
    return Policed(agent, retry, timeout, fallback, breaker, limits, review, cache)
