"""Run stores: where durable runs keep their input, each finished agent's output, and
their status, so a killed process (or a paused review) can resume without re-running
finished agents. ``SQLiteStore`` is the default; ``Store`` is the interface another
backend (e.g. Postgres) implements."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import pathlib
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

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
from ._results import InputRequest, ReviewRequest

# 2: the audit log (audit_log table, runs.audit_count and runs.audit_head).
# 3: the agent output cache (agent_cache table).
SCHEMA_VERSION = 3
# Statuses of runs that ended and will not be resumed as a matter of course: what
# prune() deletes unless told otherwise.
FINISHED_STATUSES = ("succeeded", "failed", "timed_out", "cancelled")
_SQLITE_HEADER = b"SQLite format 3\x00"


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

    def prune(self, *, before: float | datetime.datetime | None = None,
              status: str | Iterable[str] | None = None) -> int:
        """Deletes finished runs with their outcomes and audit logs; see
        :meth:`SQLiteStore.prune`. The default refuses: the store cannot delete runs."""
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


def _store_path(path: Any) -> str:
    """The store's file path, refusing paths that cannot hold a durable store."""
    try:
        text = os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(
            f"a run store path must be a str or os.PathLike, got {type(path).__name__}"
        ) from None
    if not text.strip():
        # SQLite would make an anonymous temporary database, deleted at close: every
        # run would look durable and none could be resumed.
        raise StoreError(
            "the run store path is empty; SQLite would silently use a temporary database "
            "that is deleted when the process ends, so nothing could be resumed. Pass a "
            "file path such as 'runs.db'"
        )
    if text == ":memory:":
        return text
    if os.path.isdir(text):
        raise StoreError(
            f"run store {text} is a directory; a run store is one SQLite file, so pass a "
            f"file path such as {os.path.join(text, 'runs.db')!r}"
        )
    parent = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(parent):
        raise StoreError(
            f"cannot create run store {text}: its directory {parent} does not exist; "
            "create the directory first or use another path"
        )
    return text


def _check_existing(path: str) -> None:
    """Refuses, without writing a byte, a file that is not a counterpoint store."""
    try:
        if path == ":memory:" or not os.path.exists(path) or os.path.getsize(path) == 0:
            return
        with open(path, "rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise StoreError(
            f"cannot read run store {path} ({type(exc).__name__}: {exc.strerror or exc}); "
            "check that it is a file this process may read and write, or use another path"
        ) from exc
    if header != _SQLITE_HEADER:
        raise StoreError(
            f"{path} is not a SQLite database (corrupt, or another kind of file); it was left "
            "untouched. Point the store at a new path or remove the file."
        )
    try:
        # immutable: read without locking, so probing leaves no -wal/-shm files behind.
        # as_uri() escapes the characters ('?', '#', '%') a URI would misread.
        uri = pathlib.Path(os.path.abspath(path)).as_uri() + "?mode=ro&immutable=1"
        probe = sqlite3.connect(uri, uri=True)
        try:
            tables = {row[0] for row in probe.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                return
            if "counterpoint_meta" not in tables:
                raise StoreError(
                    f"{path} is a SQLite database of something else (tables: "
                    f"{', '.join(sorted(tables))}), not a counterpoint run store; it was left "
                    "untouched. Use another path."
                )
            meta = dict(probe.execute("SELECT key, value FROM counterpoint_meta"))
        finally:
            probe.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is a corrupt SQLite database ({exc}); it was left untouched. Restore it "
            "from a backup, or point the store at a new path"
        ) from exc
    version = int(meta.get("schema_version", "0"))
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer counterpoint (store schema {version}, this one "
            f"reads {SCHEMA_VERSION}); upgrade counterpoint to open it"
        )


# What to do about a SQLite failure, by its primary result code.
_SQLITE_FIXES = {
    5: ("the database stayed locked by another connection for longer than the 30 s busy "
        "timeout", "find the process holding it (a long transaction, a viewer) and retry"),
    8: ("the file or its directory is read-only",
        "make both writable by this process, or use another path"),
    10: ("a disk I/O error", "check the disk (full, removed, failing) and the file"),
    11: ("the database file is corrupt",
         "restore it from a backup, or point the store at a new path"),
    13: ("the disk is full (or the database reached its size limit)",
         "free space on the disk that holds it, or move the store to another disk"),
    14: ("the file cannot be opened", "check that its directory exists and is writable"),
    26: ("the file is not a SQLite database (corrupt, or another kind of file)",
         "restore it from a backup, or point the store at a new path"),
}


def _sqlite_failure(path: str, doing: str, exc: sqlite3.Error) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    found = _SQLITE_FIXES.get(code & 0xFF) if isinstance(code, int) else None
    if found is None:
        # Without an error code (an old sqlite3 module), recognise the usual messages.
        text = str(exc).lower()
        for marker, key in (("full", 13), ("locked", 5), ("readonly", 8), ("malformed", 11),
                            ("not a database", 26), ("disk i/o", 10), ("unable to open", 14)):
            if marker in text:
                found = _SQLITE_FIXES[key]
                break
    cause, fix = found or ("SQLite failed", "see the chained exception")
    return StoreError(f"run store {path}: cannot {doing}: {cause} ({exc}); {fix}")


# A run's audit log, in order (audit() and verify_audit()).
_AUDIT_ROWS = ("SELECT run_key, seq, time, kind, agent, data, prev_hash, hash FROM audit_log "
               "WHERE run_key = ? ORDER BY seq")


class SQLiteStore(Store):
    """An embedded store in one SQLite file: nothing to start, safe across processes.

    Every failure is a :class:`StoreError` naming the file, the cause and the fix.

    Args:
        path: The database file (created if missing; its directory must exist). A file
            that is not a counterpoint store is refused and left untouched. ``":memory:"``
            keeps runs in this process only.
        pickle: Store outputs with pickle instead of JSON. Only for stores you trust:
            loading a pickled store runs code.
        audit_content: Record inputs and outputs themselves in the audit log (as the
            codec's JSON), not only their SHA-256 digests.

    It pickles as its file's absolute path and these options: unpickled (with a graph
    sent to another process, say), it opens the same file again. An in-memory store
    cannot be pickled: its runs exist only in this process.

    Raises:
        StoreError: the path is empty or a directory, the file is not a counterpoint
            store, is corrupt, was written by a newer counterpoint, or cannot be opened.
    """

    def __init__(self, path: str | os.PathLike[str], *, pickle: bool = False,
                 audit_content: bool = False) -> None:
        self.path = _store_path(path)
        _check_existing(self.path)
        self.codec = Codec(use_pickle=pickle)
        self.audit_content = bool(audit_content)
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0,
                                       isolation_level=None)
        except sqlite3.Error as exc:
            raise _sqlite_failure(self.path, "open it", exc) from exc
        try:
            # WAL: a commit survives the process being killed, readers do not block the
            # writer, and commits need no fsync of the whole file.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._create_schema()
        except sqlite3.Error as exc:
            self._db.close()
            raise _sqlite_failure(self.path, "open it", exc) from exc

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @contextmanager
    def _using(self, doing: str) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock; SQLite failures become StoreErrors."""
        with self._lock:
            if self._closed:
                raise StoreError(
                    f"run store {self.path} is closed, so it cannot {doing}; open it again "
                    f"with SQLiteStore({self.path!r}) (or compile the graph again)"
                )
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise _sqlite_failure(self.path, doing, exc) from exc

    def _create_schema(self) -> None:
        with self._lock:
            self._db.executescript(
                """
                BEGIN IMMEDIATE;
                CREATE TABLE IF NOT EXISTS counterpoint_meta (key TEXT PRIMARY KEY, value TEXT);
                INSERT OR IGNORE INTO counterpoint_meta VALUES ('schema_version', '3');
                INSERT OR IGNORE INTO counterpoint_meta VALUES ('application', 'counterpoint');
                CREATE TABLE IF NOT EXISTS runs (
                    run_key TEXT PRIMARY KEY, graph TEXT NOT NULL, status TEXT NOT NULL,
                    input BLOB, format TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
                    audit_count INTEGER NOT NULL DEFAULT 0, audit_head TEXT);
                CREATE TABLE IF NOT EXISTS outcomes (
                    run_key TEXT NOT NULL, agent TEXT NOT NULL, status TEXT NOT NULL,
                    output BLOB, format TEXT NOT NULL, routes TEXT, usage TEXT, message TEXT,
                    confidence REAL, updated REAL NOT NULL,
                    PRIMARY KEY (run_key, agent));
                CREATE TABLE IF NOT EXISTS timelines (
                    run_key TEXT PRIMARY KEY, data TEXT NOT NULL, updated REAL NOT NULL);
                CREATE TABLE IF NOT EXISTS audit_log (
                    run_key TEXT NOT NULL, seq INTEGER NOT NULL, time REAL NOT NULL,
                    kind TEXT NOT NULL, agent TEXT, data TEXT NOT NULL,
                    prev_hash TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (run_key, seq));
                CREATE TABLE IF NOT EXISTS agent_cache (
                    key TEXT PRIMARY KEY, owner TEXT NOT NULL, value BLOB NOT NULL,
                    format TEXT NOT NULL, created REAL NOT NULL, expires REAL);
                COMMIT;
                """
            )
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if "audit_count" not in columns:  # a schema 1 store: give runs a log head
                    self._db.execute("ALTER TABLE runs ADD COLUMN audit_count INTEGER NOT NULL "
                                     "DEFAULT 0")
                    self._db.execute("ALTER TABLE runs ADD COLUMN audit_head TEXT")
                # Append-only: nothing in counterpoint updates an entry. (This only stops
                # accidents; the hash chain is what detects a deliberate edit.)
                self._db.execute(
                    "CREATE TRIGGER IF NOT EXISTS audit_log_append_only BEFORE UPDATE ON "
                    "audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")
                self._db.execute("UPDATE counterpoint_meta SET value = ? WHERE key = "
                                 "'schema_version' AND CAST(value AS INTEGER) < ?",
                                 (str(SCHEMA_VERSION), SCHEMA_VERSION))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

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

    def _append_in(self, db: sqlite3.Connection, run_key: str, events: Sequence[AuditEvent],
                   encoded: dict[int, bytes], updated: float | None = None) -> None:
        """Appends entries inside the caller's transaction, moving the run's head (and
        its ``updated`` time, when given: the run's row is written once)."""
        if not events:
            if updated is not None:
                db.execute("UPDATE runs SET updated = ? WHERE run_key = ?", (updated, run_key))
            return
        head = db.execute("SELECT audit_count, audit_head FROM runs WHERE run_key = ?",
                          (run_key,)).fetchone()
        if head is None:
            raise StoreError(f"no run {run_key!r} in store {self.path}, so its audit log "
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

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._using(doing) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def append_audit(self, run_key: str, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        with self._transaction(f"append to the audit log of run {run_key}") as db:
            self._append_in(db, run_key, events, {})

    def begin_run(self, run_key: str, graph: str, input: Any) -> None:
        self._begin(run_key, graph, input, ())

    def record_start(self, run_key: str, graph: str, input: Any,
                     events: Sequence[AuditEvent]) -> None:
        if type(self).begin_run is not SQLiteStore.begin_run:  # a subclass's own begin_run
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
        if type(self).save_outcomes is not SQLiteStore.save_outcomes:
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
                    db.executemany(
                        "INSERT OR REPLACE INTO outcomes VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
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
            db.execute("INSERT OR REPLACE INTO timelines VALUES (?, ?, ?)",
                       (run_key, data, time.time()))

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
            raise StoreError(f"no run {run_key!r} in store {self.path}")
        graph, status, data, fmt, created, updated = run
        outcomes = {}
        for agent, ostatus, odata, ofmt, routes, usage, message, confidence in rows:
            where = f"the output of agent '{agent}' of run {run_key!r}"
            try:
                output = None if odata is None else self.codec.decode(odata, ofmt)
                routes = None if routes is None else tuple(json.loads(routes))
                usage = json.loads(usage) if usage else {}
            except StoreError as exc:
                raise StoreError(f"run store {self.path}: {where}: {exc}") from exc
            except Exception as exc:
                raise self._unreadable(where, exc) from exc
            outcomes[agent] = StoredOutcome(agent, ostatus, output, routes, usage,
                                            message or "", confidence)
        try:
            input = self.codec.decode(data, fmt)
        except StoreError as exc:
            raise StoreError(f"run store {self.path}: the input of run {run_key!r}: {exc}") \
                from exc
        except Exception as exc:
            raise self._unreadable(f"the input of run {run_key!r}", exc) from exc
        return StoredRun(run_key, graph, status, input, outcomes, created, updated)

    def _unreadable(self, what: str, exc: Exception) -> StoreError:
        return StoreError(
            f"run store {self.path}: {what} cannot be read ({type(exc).__name__}: {exc}); "
            "the row is damaged or was written by other software. Restore the file from a "
            "backup, or start the run again"
        )

    def runs(self, status: str | Iterable[str] | None = None, *,
             graph: str | None = None) -> list[RunSummary]:
        query = "SELECT run_key, status, created, updated, graph FROM runs"
        clauses: list[str] = []
        args: list[Any] = []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            if not statuses or not all(isinstance(s, str) for s in statuses):
                raise ValueError(
                    f"status must be a run status such as 'interrupted', or a list of them; "
                    f"got {status!r}"
                )
            clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
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
            rows = db.execute(_AUDIT_ROWS,
                              (run_key,)).fetchall()
            known = rows or db.execute("SELECT 1 FROM runs WHERE run_key = ?",
                                       (run_key,)).fetchone()
        if not known:
            raise StoreError(f"no run {run_key!r} in store {self.path}")
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
            rows = db.execute(_AUDIT_ROWS,
                              (run_key,)).fetchall()
            run = db.execute("SELECT audit_count, audit_head, input FROM runs WHERE run_key = ?",
                             (run_key,)).fetchone()
            stored = db.execute("SELECT agent, output FROM outcomes WHERE run_key = ?",
                                (run_key,)).fetchall()
        if run is None:
            if not rows:
                raise StoreError(f"no run {run_key!r} in store {self.path}")
            return AuditVerification(False, len(rows), f"run {run_key!r} has audit entries "
                                     "but no run record (its head record was deleted)", None)
        entries = [self._entry(row) for row in rows]
        result = verify_chain(run_key, entries, (run[0], run[1] or ""))
        if not result.ok or not entries:
            return result
        return _cross_check(entries, run[2], stored) or result

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
            raise StoreError(f"run store {self.path}: {where}: {exc}") from exc
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
            db.execute("INSERT OR REPLACE INTO agent_cache VALUES (?, ?, ?, ?, ?, ?)",
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

    def prune(self, *, before: float | datetime.datetime | None = None,
              status: str | Iterable[str] | None = None) -> int:
        """Deletes runs with their outcomes and whole audit logs; returns how many.

        Args:
            before: Only runs started before this (seconds since the epoch, or a
                datetime); None: whenever they started.
            status: Only runs with this status or these statuses. None: the finished
                ones (``succeeded``, ``failed``, ``timed_out``, ``cancelled``). Runs
                ``running``, ``interrupted`` or ``needs_review`` are deleted only when
                named here.
        """
        cutoff = as_timestamp(before, "before")
        if status is None:
            statuses = list(FINISHED_STATUSES)
        else:
            statuses = [status] if isinstance(status, str) else list(status)
            if not statuses or not all(isinstance(s, str) for s in statuses):
                raise ValueError(f"status must be a run status or a list of them, got "
                                 f"{status!r}")
        query = f"SELECT run_key FROM runs WHERE status IN ({', '.join('?' * len(statuses))})"
        args: list[Any] = list(statuses)
        if cutoff is not None:
            query += " AND created < ?"
            args.append(cutoff)
        with self._transaction("prune runs") as db:
            keys = [(row[0],) for row in db.execute(query, args).fetchall()]
            for table in ("audit_log", "outcomes", "timelines", "runs"):
                db.executemany(f"DELETE FROM {table} WHERE run_key = ?", keys)
        return len(keys)

    def close(self) -> None:
        """Stops the store's checkpoint writer and closes the file. Idempotent; any later
        use raises :class:`StoreError`."""
        if self._closed:
            return
        super().close()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __reduce__(self) -> tuple[Any, ...]:
        if self.path == ":memory:":
            raise TypeError(
                "SQLiteStore(':memory:') cannot be pickled: its runs exist only in this "
                "process; give the store a file path to share it with other processes")
        return _reopen, (type(self), os.path.abspath(self.path), self.codec.use_pickle,
                         self.audit_content)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}, format={self.codec.format!r})"


def _reopen(cls: Callable[..., SQLiteStore], path: str, use_pickle: bool,
            audit_content: bool) -> SQLiteStore:
    """Unpickles a SQLite store: the same file, opened again."""
    return cls(path, pickle=use_pickle, audit_content=audit_content)
