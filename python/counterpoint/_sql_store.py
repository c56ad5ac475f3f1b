"""What SQLiteStore and PostgresStore share: the same tables and statements (written with
``?`` placeholders, in the SQL both speak), the audit chain built in the transaction that
writes the outcomes, the cross-checks of ``verify_audit``, the codec, run listings,
pruning and leases. A backend supplies its connection, transactions, schema and error
messages."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import threading
import time
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ._audit import (
    AuditEntry,
    AuditEvent,
    AuditVerification,
    chain,
    genesis_hash,
    json_safe,
    verify_chain,
)
from ._codec import Codec
from ._errors import StoreError
from ._store import (
    FINISHED_STATUSES,
    LeaseHolder,
    RunSummary,
    Store,
    StoredOutcome,
    StoredRun,
    as_timestamp,
    written_events,
)


class Cursor(Protocol):
    """What a statement returns (sqlite3's and psycopg's cursors both fit)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What the shared statements run on: ``?`` placeholders, one call per statement."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...


def _canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _digest(blob: bytes | None) -> str | None:
    return None if blob is None else "sha256:" + hashlib.sha256(blob).hexdigest()


def _cross_check(entries: list[AuditEntry], input_blob: bytes | None,
                 stored: list[tuple[str, bytes | None]]) -> AuditVerification | None:
    """A problem if the stored input or an agent's stored output is not what the log
    last recorded of it (by digest)."""
    for entry in entries:
        if entry.kind == "run_started" and "input_digest" in entry.data:
            if entry.data["input_digest"] != _digest(input_blob):
                return AuditVerification(False, len(entries), "the run's stored input was "
                                         f"changed: it does not match entry {entry.seq}",
                                         entry.seq)
            break
    # A run begun before the store kept audit logs (schema 1) has outputs no entry records.
    begun_audited = any(entry.kind == "run_started" for entry in entries)
    last: dict[str, AuditEntry] = {}
    for entry in entries:
        if entry.agent is not None and "output_digest" in entry.data:
            last[entry.agent] = entry
    for agent, blob in sorted(stored, key=lambda row: row[0]):
        if blob is None:
            continue
        recorded = last.get(agent)
        if recorded is None:
            if not begun_audited:
                continue
            return AuditVerification(False, len(entries), f"agent '{agent}' has a stored "
                                     "output that no audit entry records", None)
        if recorded.data["output_digest"] != _digest(blob):
            return AuditVerification(False, len(entries), f"the stored output of agent "
                                     f"'{agent}' was changed: it does not match entry "
                                     f"{recorded.seq}", recorded.seq)
    return None


def _statuses(status: str | Iterable[str], what: str) -> list[str]:
    statuses = [status] if isinstance(status, str) else list(status)
    if not statuses or not all(isinstance(s, str) for s in statuses):
        raise ValueError(f"status must be {what}; got {status!r}")
    return statuses


def _in(values: Sequence[Any]) -> str:
    return f"({', '.join('?' * len(values))})"


# A run's audit log, in order (audit() and verify_audit()).
_AUDIT_ROWS = ("SELECT run_key, seq, time, kind, agent, data, prev_hash, hash FROM audit_log "
               "WHERE run_key = ? ORDER BY seq")
# An agent's row is replaced when it runs again (a retry in a resumed run).
_UPSERT_OUTCOME = (
    "INSERT INTO outcomes (run_key, agent, status, output, format, routes, usage, message, "
    "confidence, updated) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (run_key, agent) DO UPDATE "
    "SET status = excluded.status, output = excluded.output, format = excluded.format, "
    "routes = excluded.routes, usage = excluded.usage, message = excluded.message, "
    "confidence = excluded.confidence, updated = excluded.updated")
_UPSERT_TIMELINE = (
    "INSERT INTO timelines (run_key, data, updated) VALUES (?, ?, ?) ON CONFLICT (run_key) "
    "DO UPDATE SET data = excluded.data, updated = excluded.updated")
_UPSERT_CACHE = (
    "INSERT INTO agent_cache (key, owner, value, format, created, expires) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, "
    "value = excluded.value, format = excluded.format, created = excluded.created, "
    "expires = excluded.expires")
# Taken if free, lapsed, or held by the holder named last (a holder known to be gone).
_TAKE_LEASE = (
    "INSERT INTO leases (run_key, holder, pid, host, since, expires) VALUES (?,?,?,?,?,?) "
    "ON CONFLICT (run_key) DO UPDATE SET holder = excluded.holder, pid = excluded.pid, "
    "host = excluded.host, since = excluded.since, expires = excluded.expires "
    "WHERE leases.expires < ? OR leases.holder = ?")
# Every table with rows per run, children first.
RUN_TABLES = ("audit_log", "outcomes", "timelines", "leases", "runs")


class SQLStore(Store):
    """A store over a SQL database with counterpoint's tables (see the backends'
    ``_create_schema``). Thread-safe: subclasses serialize use of their connection.

    Subclasses set ``codec``, ``audit_content`` and ``location`` (how messages name the
    store) and implement :meth:`_using` and :meth:`_transaction`.
    """

    codec: Codec
    audit_content: bool
    location: str
    # Appended to the read of a run's audit head inside a write transaction, to lock the
    # row where the database has row locks (Postgres): appends to one log never race.
    _lock_row = ""
    # Where to restore a damaged store from, in the fix of a read error.
    _restore = "Restore the store from a backup"

    # Set by each backend's constructor: the lock around its connection, and whether
    # close() was called.
    _lock: threading.Lock
    _closed: bool

    @abstractmethod
    def _disconnect(self) -> None:
        """Closes the backend's connection (called once, under the lock)."""

    def close(self) -> None:
        """Stops the store's checkpoint writer and closes its connection. Idempotent; any
        later use raises :class:`StoreError`."""
        if self._closed:
            return
        super().close()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._disconnect()

    @abstractmethod
    def _using(self, doing: str) -> AbstractContextManager[Connection]:
        """The connection, for single statements; failures become StoreErrors naming
        the store, ``doing``, the cause and the fix."""

    @abstractmethod
    def _transaction(self, doing: str) -> AbstractContextManager[Connection]:
        """Like :meth:`_using`, in one write transaction (committed at the end)."""

    @property
    def keeps_audit(self) -> bool:
        return True

    def _recorded(self, name: str, value: Any, encoded: bytes | None,
                  data: dict[str, Any]) -> None:
        """Puts ``value`` (an input or output) into audit data: its digest, and its
        content if the store records content."""
        if encoded is None:
            try:
                encoded = self.codec.encode(value)
            except Exception as exc:  # noqa: BLE001 - an entry is written whatever the value
                data[f"{name}_digest"] = None
                data[f"{name}_unstorable"] = f"{type(exc).__name__}: {exc}"
                return
        data[f"{name}_digest"] = "sha256:" + hashlib.sha256(encoded).hexdigest()
        if self.audit_content:
            if self.codec.format == "pickle":
                data[name] = {"pickle_base64": base64.b64encode(encoded).decode("ascii")}
            else:
                data[name] = json.loads(encoded)

    def _append_in(self, db: Connection, run_key: str, events: Sequence[AuditEvent],
                   encoded: dict[int, bytes], updated: float | None = None) -> None:
        """Appends entries inside the caller's transaction, moving the run's head (and
        its ``updated`` time, when given: the run's row is written once)."""
        if not events:
            if updated is not None:
                db.execute("UPDATE runs SET updated = ? WHERE run_key = ?", (updated, run_key))
            return
        head = db.execute("SELECT audit_count, audit_head FROM runs WHERE run_key = ?"
                          + self._lock_row, (run_key,)).fetchone()
        if head is None:
            raise StoreError(f"no run {run_key!r} in store {self.location}, so its audit log "
                             "cannot grow")
        count, last = head[0], head[1] or genesis_hash(run_key)
        now = time.time()
        items = []
        for event in events:
            data = {key: json_safe(value) for key, value in event.data.items()}
            for name, value in event.values.items():
                self._recorded(name, value, encoded.get(id(value)), data)
            items.append((now if event.time is None else float(event.time), event.kind,
                          event.agent, data))
        entries = chain(run_key, count, last, items)
        db.executemany("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?)", [
            (e.run_key, e.seq, e.time, e.kind, e.agent, _canonical(e.data), e.prev_hash, e.hash)
            for e in entries])
        if updated is None:
            db.execute("UPDATE runs SET audit_count = ?, audit_head = ? WHERE run_key = ?",
                       (count + len(entries), entries[-1].hash, run_key))
        else:
            db.execute("UPDATE runs SET audit_count = ?, audit_head = ?, updated = ? "
                       "WHERE run_key = ?", (count + len(entries), entries[-1].hash, updated,
                                             run_key))

    def append_audit(self, run_key: str, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        with self._transaction(f"append to the audit log of run {run_key}") as db:
            self._append_in(db, run_key, events, {})

    def begin_run(self, run_key: str, graph: str, input: Any) -> None:
        self._begin(run_key, graph, input, ())

    def record_start(self, run_key: str, graph: str, input: Any,
                     events: Sequence[AuditEvent]) -> None:
        if type(self).begin_run is not SQLStore.begin_run:  # a subclass's own begin_run
            Store.record_start(self, run_key, graph, input, events)
        else:
            self._begin(run_key, graph, input, events)

    def _begin(self, run_key: str, graph: str, input: Any,
               events: Sequence[AuditEvent]) -> None:
        try:
            data = self.codec.encode(input)
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"the run input cannot be stored as {self.codec.format} ({exc}); pass "
                "JSON-compatible input or open the store with pickle=True"
            ) from exc
        now = time.time()
        with self._transaction("record a new run") as db:
            db.execute("INSERT INTO runs (run_key, graph, status, input, format, created, "
                       "updated) VALUES (?, ?, 'running', ?, ?, ?, ?)",
                       (run_key, graph, data, self.codec.row_format, now, now))
            self._append_in(db, run_key, events, {id(input): data})

    def save_outcomes(self, run_key: str, outcomes: list[StoredOutcome]) -> list[Exception | None]:
        return self._record_outcomes(run_key, outcomes, [()] * len(outcomes))

    def record_outcomes(self, run_key: str, outcomes: list[StoredOutcome],
                        events: Sequence[Sequence[AuditEvent]]) -> list[Exception | None]:
        if type(self).save_outcomes is not SQLStore.save_outcomes:
            # A subclass's own save_outcomes: call it, then append.
            return Store.record_outcomes(self, run_key, outcomes, events)
        return self._record_outcomes(run_key, outcomes, events)

    def _record_outcomes(self, run_key: str, outcomes: list[StoredOutcome],
                         events: Sequence[Sequence[AuditEvent]]) -> list[Exception | None]:
        errors: list[Exception | None] = []
        rows = []
        encoded: dict[int, bytes] = {}
        now = time.time()
        for outcome in outcomes:
            try:
                data = self.codec.encode(outcome.output) if outcome.output is not None else None
            except Exception as exc:  # noqa: BLE001 - any encoding failure is reported per agent
                error = StoreError(
                    f"the output of agent '{outcome.agent}' cannot be stored as "
                    f"{self.codec.format} ({type(exc).__name__}: {exc}); return "
                    "JSON-compatible data or open the store with pickle=True"
                )
                error.__cause__ = exc
                errors.append(error)
                continue
            if data is not None:
                encoded[id(outcome.output)] = data
            errors.append(None)
            rows.append((run_key, outcome.agent, outcome.status, data, self.codec.row_format,
                         None if outcome.routes is None else json.dumps(list(outcome.routes)),
                         json.dumps(outcome.usage), outcome.message, outcome.confidence, now))
        audit = written_events(outcomes, events, errors)
        if rows or audit:
            try:
                with self._transaction("write agent outputs") as db:
                    if rows:
                        db.executemany(_UPSERT_OUTCOME, rows)
                    self._append_in(db, run_key, audit, encoded, updated=now)
            except StoreError as exc:
                return [exc if error is None else error for error in errors]
        return errors

    def set_status(self, run_key: str, status: str) -> None:
        with self._using(f"record the status of run {run_key}") as db:
            db.execute("UPDATE runs SET status = ?, updated = ? WHERE run_key = ?",
                       (status, time.time(), run_key))

    def finish_run(self, run_key: str, status: str) -> None:
        with self._using(f"record the end of run {run_key}") as db:
            db.execute("UPDATE runs SET status = ?, updated = ? "
                       "WHERE run_key = ? AND status != 'interrupted'",
                       (status, time.time(), run_key))

    def save_timeline(self, run_key: str, timeline: dict[str, Any]) -> None:
        data = json.dumps(timeline)
        with self._using(f"keep the timeline of run {run_key}") as db:
            db.execute(_UPSERT_TIMELINE, (run_key, data, time.time()))

    def load_timeline(self, run_key: str) -> dict[str, Any] | None:
        with self._using(f"load the timeline of run {run_key}") as db:
            row = db.execute("SELECT data FROM timelines WHERE run_key = ?",
                             (run_key,)).fetchone()
        if row is None:
            return None
        try:
            loaded: dict[str, Any] = json.loads(row[0])
        except ValueError as exc:
            raise self._unreadable(f"the timeline of run {run_key}", exc) from exc
        return loaded

    def load_run(self, run_key: str) -> StoredRun:
        with self._using(f"load run {run_key}") as db:
            run = db.execute(
                "SELECT graph, status, input, format, created, updated FROM runs WHERE run_key = ?",
                (run_key,)).fetchone()
            rows = db.execute(
                "SELECT agent, status, output, format, routes, usage, message, confidence "
                "FROM outcomes WHERE run_key = ?", (run_key,)).fetchall()
        if run is None:
            raise StoreError(f"no run {run_key!r} in store {self.location}")
        graph, status, data, fmt, created, updated = run
        outcomes = {}
        for agent, ostatus, odata, ofmt, routes, usage, message, confidence in rows:
            where = f"the output of agent '{agent}' of run {run_key!r}"
            try:
                output = None if odata is None else self.codec.decode(odata, ofmt)
                routes = None if routes is None else tuple(json.loads(routes))
                usage = json.loads(usage) if usage else {}
            except StoreError as exc:
                raise StoreError(f"run store {self.location}: {where}: {exc}") from exc
            except Exception as exc:
                raise self._unreadable(where, exc) from exc
            outcomes[agent] = StoredOutcome(agent, ostatus, output, routes, usage,
                                            message or "", confidence)
        try:
            input = self.codec.decode(data, fmt)
        except StoreError as exc:
            raise StoreError(f"run store {self.location}: the input of run {run_key!r}: "
                             f"{exc}") from exc
        except Exception as exc:
            raise self._unreadable(f"the input of run {run_key!r}", exc) from exc
        return StoredRun(run_key, graph, status, input, outcomes, created, updated)

    def _unreadable(self, what: str, exc: Exception) -> StoreError:
        return StoreError(
            f"run store {self.location}: {what} cannot be read ({type(exc).__name__}: "
            f"{exc}); the row is damaged or was written by other software. {self._restore}, "
            "or start the run again"
        )

    def runs(self, status: str | Iterable[str] | None = None, *,
             graph: str | None = None) -> list[RunSummary]:
        query = "SELECT run_key, status, created, updated, graph FROM runs"
        clauses: list[str] = []
        args: list[Any] = []
        if status is not None:
            statuses = _statuses(status, "a run status such as 'interrupted', or a list of "
                                 "them")
            clauses.append(f"status IN {_in(statuses)}")
            args.extend(statuses)
        if graph is not None:
            clauses.append("graph = ?")
            args.append(graph)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        with self._using("list its runs") as db:
            rows = db.execute(query + " ORDER BY created DESC", args).fetchall()
        return [RunSummary(*row) for row in rows]

    def audit(self, run_key: str) -> list[AuditEntry]:
        """The run's audit log, in order (see docs/governance.md).

        Raises:
            StoreError: there is no such run (and no log of it).
        """
        with self._using(f"read the audit log of run {run_key}") as db:
            rows = db.execute(_AUDIT_ROWS, (run_key,)).fetchall()
            known = rows or db.execute("SELECT 1 FROM runs WHERE run_key = ?",
                                       (run_key,)).fetchone()
        if not known:
            raise StoreError(f"no run {run_key!r} in store {self.location}")
        return [self._entry(row) for row in rows]

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> AuditEntry:
        key, seq, when, kind, agent, data, prev_hash, digest = row
        try:
            details = json.loads(data)
        except (TypeError, ValueError):
            details = {"unreadable": str(data)}
        return AuditEntry(key, seq, when, kind, agent, details, prev_hash, digest)

    def verify_audit(self, run_key: str) -> AuditVerification:
        """Checks the run's audit log against its hash chain and the run's head record
        (the count and last hash, written with every append), and the stored input and
        outputs against the last digests the log recorded of them.

        Detects an edited, deleted, inserted or reordered entry, entries cut from the
        end, and a changed stored input or output. It cannot detect a log rewritten
        consistently from the first changed entry on, head record included: keep the
        head hash (``audit(run_key)[-1].hash``) elsewhere to catch that.

        Raises:
            StoreError: there is no such run (and no log of it).
        """
        with self._using(f"verify the audit log of run {run_key}") as db:
            rows = db.execute(_AUDIT_ROWS, (run_key,)).fetchall()
            run = db.execute("SELECT audit_count, audit_head, input FROM runs WHERE run_key = ?",
                             (run_key,)).fetchone()
            stored = db.execute("SELECT agent, output FROM outcomes WHERE run_key = ?",
                                (run_key,)).fetchall()
        if run is None:
            if not rows:
                raise StoreError(f"no run {run_key!r} in store {self.location}")
            return AuditVerification(False, len(rows), f"run {run_key!r} has audit entries "
                                     "but no run record (its head record was deleted)", None)
        entries = [self._entry(row) for row in rows]
        result = verify_chain(run_key, entries, (run[0], run[1] or ""))
        if not result.ok or not entries:
            return result
        return _cross_check(entries, run[2], stored) or result

    def prune(self, *, before: float | datetime.datetime | None = None,
              status: str | Iterable[str] | None = None, keep: int | None = None) -> int:
        """Deletes runs with their outcomes and whole audit logs; returns how many.

        Args:
            before: Only runs started before this (seconds since the epoch, or a
                datetime); None: whenever they started.
            status: Only runs with this status or these statuses. None: the finished
                ones (``succeeded``, ``failed``, ``timed_out``, ``cancelled``). Runs
                ``running``, ``interrupted`` or ``needs_review`` are deleted only when
                named here.
            keep: Keep the ``keep`` newest of the runs ``status`` selects (by start
                time) and delete the older ones (those also started before ``before``,
                if given). None: keep none of them.
        """
        cutoff = as_timestamp(before, "before")
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int)
                                 or keep < 0):
            raise ValueError(f"keep must be a number of runs (an int >= 0), got {keep!r}")
        statuses = list(FINISHED_STATUSES) if status is None else \
            _statuses(status, "a run status or a list of them")
        with self._transaction("prune runs") as db:
            rows = db.execute(f"SELECT run_key, created FROM runs WHERE status IN "
                              f"{_in(statuses)} ORDER BY created DESC, run_key",
                              statuses).fetchall()
            keys = [(key,) for key, created in rows[keep or 0:]
                    if cutoff is None or created < cutoff]
            for table in RUN_TABLES:
                db.executemany(f"DELETE FROM {table} WHERE run_key = ?", keys)
        return len(keys)

    # ---- the agent output cache (cache=cp.Cache(...)) ----

    @property
    def keeps_cache(self) -> bool:
        return True

    def cache_get(self, key: str, *, now: float | None = None) -> tuple[bool, Any]:
        when = time.time() if now is None else now
        with self._using("read its agent output cache") as db:
            row = db.execute("SELECT value, format, owner FROM agent_cache WHERE key = ? AND "
                             "(expires IS NULL OR expires > ?)", (key, when)).fetchone()
        if row is None:
            return False, None
        value, fmt, owner = row
        where = f"the cached output of {owner!r}"
        try:
            return True, self.codec.decode(value, fmt)
        except StoreError as exc:
            raise StoreError(f"run store {self.location}: {where}: {exc}") from exc
        except Exception as exc:
            raise self._unreadable(where, exc) from exc

    def cache_put(self, key: str, value: Any, *, owner: str, expires: float | None) -> None:
        try:
            data = self.codec.encode(value)
        except Exception as exc:
            raise StoreError(
                f"the output of {owner!r} cannot be cached as {self.codec.format} "
                f"({type(exc).__name__}: {exc}); return JSON-compatible data, open the "
                "store with pickle=True, or drop cache= from the agent"
            ) from exc
        with self._using(f"cache an output of {owner!r}") as db:
            db.execute(_UPSERT_CACHE,
                       (key, owner, data, self.codec.row_format, time.time(), expires))

    def cache_clear(self, owner: str | None = None) -> int:
        with self._using("clear its agent output cache") as db:
            if owner is None:
                return db.execute("DELETE FROM agent_cache").rowcount
            return db.execute("DELETE FROM agent_cache WHERE owner = ?", (owner,)).rowcount

    def cache_prune(self, *, now: float | None = None) -> int:
        when = time.time() if now is None else now
        with self._using("prune its agent output cache") as db:
            return db.execute("DELETE FROM agent_cache WHERE expires <= ?", (when,)).rowcount

    # ---- leases (see counterpoint._leases) ----

    def acquire_lease(self, run_key: str, holder: LeaseHolder,
                      replacing: str | None = None) -> LeaseHolder | None:
        with self._transaction(f"take the lease of run {run_key}") as db:
            db.execute(_TAKE_LEASE, (run_key, holder.id, holder.pid, holder.host, holder.since,
                                     holder.expires, holder.since, replacing or holder.id))
            row = db.execute("SELECT holder, pid, host, since, expires FROM leases "
                             "WHERE run_key = ?", (run_key,)).fetchone()
        return LeaseHolder(*row)

    def renew_lease(self, run_key: str, holder_id: str, expires: float) -> bool:
        with self._using(f"renew the lease of run {run_key}") as db:
            renewed = db.execute("UPDATE leases SET expires = ? WHERE run_key = ? AND "
                                 "holder = ?", (expires, run_key, holder_id)).rowcount
        return renewed == 1

    def release_lease(self, run_key: str, holder_id: str) -> None:
        with self._using(f"release the lease of run {run_key}") as db:
            db.execute("DELETE FROM leases WHERE run_key = ? AND holder = ?",
                       (run_key, holder_id))
