"""Run stores: where durable runs keep their input, each finished agent's output, and
their status, so a killed process (or a paused review) can resume without re-running
finished agents. ``SQLiteStore`` is the default; ``Store`` is the interface another
backend (e.g. Postgres) implements."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from ._codec import Codec
from ._errors import StoreError

SCHEMA_VERSION = 1
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


@dataclass(frozen=True)
class StoredRun:
    """A persisted run."""

    run_key: str
    graph: str                       # fingerprint of the graph that made it
    status: str
    input: Any
    outcomes: dict[str, StoredOutcome]
    created: float
    updated: float


@dataclass(frozen=True)
class RunSummary:
    run_key: str
    status: str
    created: float
    updated: float


class Store(ABC):
    """What a durable run needs from storage. Implementations must be thread-safe."""

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

    @abstractmethod
    def load_run(self, run_key: str) -> StoredRun:
        """Raises StoreError if there is no such run."""

    @abstractmethod
    def runs(self, status: str | None = None) -> list[RunSummary]:
        """Stored runs, newest first, optionally only those with ``status``."""

    def close(self) -> None:
        """Releases the store's resources."""


def _check_existing(path: str) -> None:
    """Refuses, without writing a byte, a file that is not a counterpoint store."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb") as handle:
        header = handle.read(len(_SQLITE_HEADER))
    if header != _SQLITE_HEADER:
        raise StoreError(
            f"{path} is not a SQLite database (corrupt, or another kind of file); it was left "
            "untouched. Point the store at a new path or remove the file."
        )
    try:
        # immutable: read without locking, so probing leaves no -wal/-shm files behind.
        probe = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
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
            f"{path} is a corrupt SQLite database ({exc}); it was left untouched"
        ) from exc
    version = int(meta.get("schema_version", "0"))
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer counterpoint (store schema {version}, this one "
            f"reads {SCHEMA_VERSION}); upgrade counterpoint to open it"
        )


class SQLiteStore(Store):
    """An embedded store in one SQLite file: nothing to start, safe across processes.

    Args:
        path: The database file (created if missing). A file that is not a counterpoint
            store is refused and left untouched.
        pickle: Store outputs with pickle instead of JSON. Only for stores you trust:
            loading a pickled store runs code.
    """

    def __init__(self, path: str | os.PathLike[str], *, pickle: bool = False) -> None:
        self.path = os.fspath(path)
        _check_existing(self.path)
        self.codec = Codec(use_pickle=pickle)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0,
                                       isolation_level=None)
            # WAL: a commit survives the process being killed, readers do not block the
            # writer, and commits need no fsync of the whole file.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._create_schema()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open run store {self.path}: {exc}") from exc

    def _create_schema(self) -> None:
        with self._lock:
            self._db.executescript(
                """
                BEGIN;
                CREATE TABLE IF NOT EXISTS counterpoint_meta (key TEXT PRIMARY KEY, value TEXT);
                INSERT OR IGNORE INTO counterpoint_meta VALUES ('schema_version', '1');
                INSERT OR IGNORE INTO counterpoint_meta VALUES ('application', 'counterpoint');
                CREATE TABLE IF NOT EXISTS runs (
                    run_key TEXT PRIMARY KEY, graph TEXT NOT NULL, status TEXT NOT NULL,
                    input BLOB, format TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
                CREATE TABLE IF NOT EXISTS outcomes (
                    run_key TEXT NOT NULL, agent TEXT NOT NULL, status TEXT NOT NULL,
                    output BLOB, format TEXT NOT NULL, routes TEXT, usage TEXT, message TEXT,
                    confidence REAL, updated REAL NOT NULL,
                    PRIMARY KEY (run_key, agent));
                COMMIT;
                """
            )

    def begin_run(self, run_key: str, graph: str, input: Any) -> None:
        try:
            data = self.codec.encode(input)
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"the run input cannot be stored as {self.codec.format} ({exc}); pass "
                "JSON-compatible input or open the store with pickle=True"
            ) from exc
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO runs VALUES (?, ?, 'running', ?, ?, ?, ?)",
                (run_key, graph, data, self.codec.format, now, now))

    def save_outcomes(self, run_key: str, outcomes: list[StoredOutcome]) -> list[Exception | None]:
        errors: list[Exception | None] = []
        rows = []
        now = time.time()
        for outcome in outcomes:
            try:
                data = self.codec.encode(outcome.output) if outcome.output is not None else None
            except Exception as exc:  # noqa: BLE001 - any encoding failure is reported per agent
                errors.append(exc)
                continue
            errors.append(None)
            rows.append((run_key, outcome.agent, outcome.status, data, self.codec.format,
                         None if outcome.routes is None else json.dumps(list(outcome.routes)),
                         json.dumps(outcome.usage), outcome.message, outcome.confidence, now))
        if rows:
            try:
                with self._lock:
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        self._db.executemany(
                            "INSERT OR REPLACE INTO outcomes VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
                        self._db.execute("UPDATE runs SET updated = ? WHERE run_key = ?",
                                         (now, run_key))
                        self._db.execute("COMMIT")
                    except BaseException:
                        self._db.execute("ROLLBACK")
                        raise
            except sqlite3.Error as exc:
                return [exc if error is None else error for error in errors]
        return errors

    def set_status(self, run_key: str, status: str) -> None:
        with self._lock:
            self._db.execute("UPDATE runs SET status = ?, updated = ? WHERE run_key = ?",
                             (status, time.time(), run_key))

    def load_run(self, run_key: str) -> StoredRun:
        with self._lock:
            run = self._db.execute(
                "SELECT graph, status, input, format, created, updated FROM runs WHERE run_key = ?",
                (run_key,)).fetchone()
            rows = self._db.execute(
                "SELECT agent, status, output, format, routes, usage, message, confidence "
                "FROM outcomes WHERE run_key = ?", (run_key,)).fetchall()
        if run is None:
            raise StoreError(f"no run {run_key!r} in store {self.path}")
        graph, status, data, fmt, created, updated = run
        outcomes = {}
        for agent, ostatus, odata, ofmt, routes, usage, message, confidence in rows:
            outcomes[agent] = StoredOutcome(
                agent, ostatus,
                None if odata is None else self.codec.decode(odata, ofmt),
                None if routes is None else tuple(json.loads(routes)),
                json.loads(usage) if usage else {}, message or "", confidence)
        return StoredRun(run_key, graph, status, self.codec.decode(data, fmt), outcomes,
                         created, updated)

    def runs(self, status: str | None = None) -> list[RunSummary]:
        query = "SELECT run_key, status, created, updated FROM runs"
        args: tuple = ()
        if status is not None:
            query += " WHERE status = ?"
            args = (status,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY created DESC", args).fetchall()
        return [RunSummary(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}, format={self.codec.format!r})"
