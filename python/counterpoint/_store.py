"""Run stores: where durable runs keep their input, each finished agent's output, and
their status, so a killed process (or a paused review) can resume without re-running
finished agents. ``Store`` is the interface every backend implements; ``SQLiteStore``
(the default) and ``PostgresStore`` share one implementation of it over SQL
(``_sql_store``)."""

from __future__ import annotations

import datetime
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._audit import AuditEntry, AuditEvent, AuditVerification, verify_chain
from ._errors import StoreError
from ._results import InputRequest, ReviewRequest

# 2: the audit log (audit_log table, runs.audit_count and runs.audit_head).
# 3: the agent output cache (agent_cache table).
SCHEMA_VERSION = 3
# Statuses of runs that ended and will not be resumed as a matter of course: what
# prune() deletes unless told otherwise.
FINISHED_STATUSES = ("succeeded", "failed", "timed_out", "cancelled")


@dataclass(frozen=True)
class StoredOutcome:
    """One agent's persisted outcome."""

    agent: str
    status: str                      # succeeded, failed, timed_out, needs_review, cancelled
    output: Any = None
    routes: tuple[str, ...] | None = None
    usage: dict[str, float] = field(default_factory=dict)
    message: str = ""
    confidence: float | None = None


def asked_question(outcome: StoredOutcome) -> dict[str, Any]:
    """The stored question of an agent that called ``cp.interrupt`` (status
    ``needs_input``, or ``answered`` once a resume answered it): ``{"ask": question,
    "answers": [answers so far]}``."""
    question = outcome.output
    if not isinstance(question, dict) or "ask" not in question:
        question = {"ask": question, "answers": []}
    return question


@dataclass(frozen=True)
class StoredRun:
    """A persisted run. ``outcomes`` are by checkpoint path: an agent's name, or
    ``"<agent>/<child agent>"`` for agents of nested graphs and patterns."""

    run_key: str
    graph: str                       # fingerprint of the graph that made it
    status: str
    input: Any
    outcomes: dict[str, StoredOutcome]
    created: float
    updated: float

    def questions(self) -> list[InputRequest]:
        """The questions the run awaits answers to (``cp.interrupt``), at every depth."""
        return [InputRequest(o.agent, asked_question(o)["ask"], self.run_key)
                for o in self.outcomes.values() if o.status == "needs_input"]

    def reviews(self) -> list[ReviewRequest]:
        """The outputs the run awaits review decisions on, at every depth."""
        return [ReviewRequest(o.agent, o.output, o.message, o.confidence, self.run_key)
                for o in self.outcomes.values() if o.status == "needs_review"]


@dataclass(frozen=True)
class RunSummary:
    """One row of a run listing.

    Attributes:
        run_key: The run's durable identifier (pass it to ``app.resume``).
        status: ``"running"``, ``"succeeded"``, ``"failed"``, ``"cancelled"``,
            ``"timed_out"``, ``"needs_review"`` or ``"interrupted"``.
        created: When the run started (seconds since the epoch).
        updated: When it was last written to.
        graph: Fingerprint of the graph that made it.
    """

    run_key: str
    status: str
    created: float
    updated: float
    graph: str = ""


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a run's lease: the process resuming it (see :meth:`Store.acquire_lease`).

    Attributes:
        id: Unique to one taking of the lease.
        pid: The holding process's id.
        host: The host it runs on.
        since: When it took the lease (seconds since the epoch).
        expires: When the lease lapses unless renewed.
    """

    id: str
    pid: int
    host: str
    since: float
    expires: float


# Told when a store is closed (the checkpoint writers register here); a list rather than
# an import because the writers live in a module above this one.
_close_listeners: list[Callable[[Store], None]] = []


def on_close(listener: Callable[[Store], None]) -> None:
    """Calls ``listener(store)`` whenever a store is closed."""
    _close_listeners.append(listener)


def written_events(outcomes: Sequence[StoredOutcome], events: Sequence[Sequence[AuditEvent]],
                   errors: Sequence[Exception | None]) -> list[AuditEvent]:
    """The audit events of a batch of outcomes: each outcome's own if it was written, an
    ``agent_failed`` entry naming the store's error if not."""
    out: list[AuditEvent] = []
    for outcome, outcome_events, error in zip(outcomes, events, errors):
        if error is None:
            out.extend(outcome_events)
        else:
            out.append(AuditEvent("agent_failed", outcome.agent, {
                "status": "failed", "error": type(error).__name__, "message": str(error)}))
    return out


def as_timestamp(value: float | datetime.datetime | None, name: str) -> float | None:
    """Seconds since the epoch from a number or a datetime (naive: local time)."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be seconds since the epoch or a datetime, got {value!r}")
    return float(value)


class Store(ABC):
    """What a durable run needs from storage. Implementations must be thread-safe.

    Failures should be raised as :class:`StoreError` naming the store, the cause and the
    fix, chaining the backend's exception.
    """

    @abstractmethod
    def begin_run(self, run_key: str, graph: str, input: Any) -> None:
        """Records a new run (status ``"running"``); raises StoreError if the input
        cannot be stored."""

    @abstractmethod
    def save_outcomes(self, run_key: str, outcomes: list[StoredOutcome]) -> list[Exception | None]:
        """Persists outcomes durably, all in one transaction where possible. Returns, per
        outcome, None if it was written or the exception that prevented it (e.g. an
        output that cannot be serialized); others are still written."""

    @abstractmethod
    def set_status(self, run_key: str, status: str) -> None:
        """Records the run's status (``running``, ``succeeded``, ``needs_review`` ...)."""

    def finish_run(self, run_key: str, status: str) -> None:
        """Records how a run ended, as its checkpoint writer observed it.

        Unlike :meth:`set_status` it must not replace ``"interrupted"``: the waiting
        caller records an interrupted run (Ctrl-C) as such, and the writer's report of the
        same end (``"cancelled"``) may arrive after it. Stores that cannot test and set
        in one step may fall back to this default (a narrow race).
        """
        self.set_status(run_key, status)

    @abstractmethod
    def load_run(self, run_key: str) -> StoredRun:
        """Raises StoreError if there is no such run."""

    @abstractmethod
    def runs(self, status: str | Iterable[str] | None = None, *,
             graph: str | None = None) -> list[RunSummary]:
        """Stored runs, newest first.

        Args:
            status: Only runs with this status, or with any of these statuses.
            graph: Only runs made by the graph with this fingerprint.
        """

    # ---- audit log: optional; these defaults keep a store without one working ----

    @property
    def keeps_audit(self) -> bool:
        """True if the store keeps an audit log (:meth:`append_audit` records entries)."""
        return False

    def append_audit(  # noqa: B027 - optional: by default a store keeps no audit log
            self, run_key: str, events: Sequence[AuditEvent]) -> None:
        """Appends entries to the run's audit log, chained (see ``counterpoint._audit``).

        The default does nothing: the store keeps no audit log.
        """

    def record_start(self, run_key: str, graph: str, input: Any,
                     events: Sequence[AuditEvent]) -> None:
        """Records a new run and its first audit entries, in one transaction where the
        store can. The default calls :meth:`begin_run` then :meth:`append_audit`."""
        self.begin_run(run_key, graph, input)
        self.append_audit(run_key, events)

    def record_outcomes(self, run_key: str, outcomes: list[StoredOutcome],
                        events: Sequence[Sequence[AuditEvent]]) -> list[Exception | None]:
        """Like :meth:`save_outcomes`, also appending ``events[i]`` for each outcome
        written (and an ``agent_failed`` entry for each that could not be), in one
        transaction where the store can. The default calls :meth:`save_outcomes` then
        :meth:`append_audit`; if appending fails, every outcome reports that failure."""
        errors = self.save_outcomes(run_key, outcomes)
        try:
            self.append_audit(run_key, written_events(outcomes, events, errors))
        except Exception as exc:  # noqa: BLE001 - the agents fail with the store's error
            return [exc] * len(outcomes)
        return errors

    def audit(self, run_key: str) -> list[AuditEntry]:
        """The run's audit log, in order. The default (a store without one) is empty."""
        return []

    # ---- timelines: optional; a store without them rebuilds one from its audit log ----

    def save_timeline(  # noqa: B027 - optional: by default a store keeps no timelines
            self, run_key: str, timeline: dict[str, Any]) -> None:
        """Keeps the run's timeline (``Timeline.to_json()``: plain JSON data), replacing
        the one an earlier session of the run left. The default keeps nothing."""

    def load_timeline(self, run_key: str) -> dict[str, Any] | None:
        """The timeline :meth:`save_timeline` kept for the run, or None."""
        return None

    def verify_audit(self, run_key: str) -> AuditVerification:
        """Checks the run's audit log: every entry unchanged, none deleted, inserted or
        moved. The default checks the chain of :meth:`audit` (it cannot tell a log cut
        short at its end); a store without an audit log is reported as not ok."""
        if not self.keeps_audit:
            return AuditVerification(False, 0, f"{self!r} keeps no audit log")
        return verify_chain(run_key, self.audit(run_key), None)

    # ---- leases: optional; without them, resume takes no lock ----

    def acquire_lease(self, run_key: str, holder: LeaseHolder,
                      replacing: str | None = None) -> LeaseHolder | None:
        """Gives ``holder`` the run's lease, in one atomic step, unless another holder's
        lease has not yet expired (or is the one with id ``replacing``, which may be taken
        over). Returns who holds the lease now: ``holder``, or the other holder.

        The default keeps no leases and returns None: resuming takes no lock.
        """
        return None

    def renew_lease(self, run_key: str, holder_id: str, expires: float) -> bool:
        """Moves the expiry of the lease ``holder_id`` holds; False if it no longer holds
        it. The default keeps no leases."""
        return False

    def release_lease(  # noqa: B027 - optional: by default a store keeps no leases
            self, run_key: str, holder_id: str) -> None:
        """Gives up the lease ``holder_id`` holds, if it still does."""

    def prune(self, *, before: float | datetime.datetime | None = None,
              status: str | Iterable[str] | None = None, keep: int | None = None) -> int:
        """Deletes finished runs with their outcomes and audit logs; see
        :meth:`SQLStore.prune`. The default refuses: the store cannot delete runs."""
        raise StoreError(f"{self!r} cannot prune runs; delete them in the backend itself")

    # ---- agent output cache: optional; a store without one misses every lookup ----

    @property
    def keeps_cache(self) -> bool:
        """True if the store keeps cached agent outputs (``cache=cp.Cache(...)``)."""
        return False

    def cache_get(self, key: str, *, now: float | None = None) -> tuple[bool, Any]:
        """``(True, value)`` for an entry stored under ``key`` that has not expired at
        ``now`` (default: the current time), else ``(False, None)``. The default (a store
        without a cache) always misses."""
        return False, None

    def cache_put(  # noqa: B027 - optional: by default a store keeps no cache
            self, key: str, value: Any, *, owner: str, expires: float | None) -> None:
        """Stores ``value`` under ``key`` (replacing an entry there) until ``expires``
        (seconds since the epoch; None: forever), encoded like outputs; ``owner`` is the
        agent identity it belongs to, for :meth:`cache_clear`. Raises StoreError if the
        value cannot be encoded. The default keeps nothing."""

    def cache_clear(self, owner: str | None = None) -> int:
        """Deletes the entries of ``owner`` (an agent identity, see ``cp.Cache``), or
        all of them; returns how many."""
        return 0

    def cache_prune(self, *, now: float | None = None) -> int:
        """Deletes the entries expired at ``now`` (default: the current time); returns
        how many."""
        return 0

    def close(self) -> None:
        """Releases the store's resources and stops its checkpoint writer.

        Implementations that override it must call ``super().close()``.
        """
        for listener in list(_close_listeners):
            listener(self)


