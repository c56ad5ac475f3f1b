"""The default run store: one SQLite file, with nothing to start and safe to share
between processes. The statements it runs are ``SQLStore``'s; this module opens and
checks the file, makes the schema and turns SQLite's failures into StoreErrors."""

from __future__ import annotations

import os
import pathlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._codec import Codec
from ._errors import StoreError
from ._sql_store import SQLStore
from ._store import SCHEMA_VERSION

_SQLITE_HEADER = b"SQLite format 3\x00"


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


class SQLiteStore(SQLStore):
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

    _restore = "Restore the file from a backup"

    def __init__(self, path: str | os.PathLike[str], *, pickle: bool = False,
                 audit_content: bool = False) -> None:
        self.path = _store_path(path)
        self.location = self.path
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
                CREATE TABLE IF NOT EXISTS agent_cache (
                    key TEXT PRIMARY KEY, owner TEXT NOT NULL, value BLOB NOT NULL,
                    format TEXT NOT NULL, created REAL NOT NULL, expires REAL);
                CREATE TABLE IF NOT EXISTS leases (
                    run_key TEXT PRIMARY KEY, holder TEXT NOT NULL, pid INTEGER NOT NULL,
                    host TEXT NOT NULL, since REAL NOT NULL, expires REAL NOT NULL);
                CREATE TABLE IF NOT EXISTS audit_log (
                    run_key TEXT NOT NULL, seq INTEGER NOT NULL, time REAL NOT NULL,
                    kind TEXT NOT NULL, agent TEXT, data TEXT NOT NULL,
                    prev_hash TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (run_key, seq));
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

    def _disconnect(self) -> None:
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
