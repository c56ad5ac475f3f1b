"""A run store in a PostgreSQL database, for runs shared by processes on several hosts.

The statements are ``SQLStore``'s (the same as SQLite's); this module connects with
psycopg 3 (the optional ``postgres`` extra, imported only when a store is made), makes
the schema and turns the driver's failures into StoreErrors naming the server and
database, the cause and the fix.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ._codec import Codec
from ._errors import StoreError
from ._sql_store import RUN_TABLES, Cursor, SQLStore
from ._store import SCHEMA_VERSION

DSN_PREFIXES = ("postgresql://", "postgres://")
# Serializes making the schema, which CREATE ... IF NOT EXISTS alone does not do in
# Postgres (two processes creating one table can both try). Any constant will do.
_SCHEMA_LOCK = 0x636F756E74657270  # "counterp"
_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS counterpoint_meta (key TEXT PRIMARY KEY, value TEXT)",
    "INSERT INTO counterpoint_meta VALUES ('schema_version', '3'), "
    "('application', 'counterpoint') ON CONFLICT DO NOTHING",
    """CREATE TABLE IF NOT EXISTS runs (
        run_key TEXT PRIMARY KEY, graph TEXT NOT NULL, status TEXT NOT NULL, input BYTEA,
        format TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
        updated DOUBLE PRECISION NOT NULL, audit_count INTEGER NOT NULL DEFAULT 0,
        audit_head TEXT)""",
    """CREATE TABLE IF NOT EXISTS outcomes (
        run_key TEXT NOT NULL, agent TEXT NOT NULL, status TEXT NOT NULL, output BYTEA,
        format TEXT NOT NULL, routes TEXT, usage TEXT, message TEXT,
        confidence DOUBLE PRECISION, updated DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_key, agent))""",
    """CREATE TABLE IF NOT EXISTS timelines (
        run_key TEXT PRIMARY KEY, data TEXT NOT NULL, updated DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS agent_cache (
        key TEXT PRIMARY KEY, owner TEXT NOT NULL, value BYTEA NOT NULL, format TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS leases (
        run_key TEXT PRIMARY KEY, holder TEXT NOT NULL, pid INTEGER NOT NULL,
        host TEXT NOT NULL, since DOUBLE PRECISION NOT NULL,
        expires DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS audit_log (
        run_key TEXT NOT NULL, seq INTEGER NOT NULL, time DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL, agent TEXT, data TEXT NOT NULL, prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL, PRIMARY KEY (run_key, seq))""",
    # Append-only: nothing in counterpoint updates an entry. (This only stops accidents;
    # the hash chain is what detects a deliberate edit.)
    """CREATE OR REPLACE FUNCTION counterpoint_audit_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$""",
    # (CREATE OR REPLACE TRIGGER needs PostgreSQL 14.)
    """DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'audit_log_append_only'
                       AND tgrelid = 'audit_log'::regclass) THEN
            CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
                FOR EACH ROW EXECUTE FUNCTION counterpoint_audit_append_only();
        END IF;
    END $$""",
]


def _driver() -> Any:
    """psycopg, imported on first use (``import counterpoint`` must not import it)."""
    try:
        import psycopg
    except ImportError as exc:
        raise ImportError(
            "PostgresStore needs the psycopg driver (version 3); install it with "
            'pip install "counterpoint[postgres]"'
        ) from exc
    return psycopg


def is_dsn(location: object) -> bool:
    """True for a PostgreSQL connection URI (what ``compile(store=...)`` opens as a
    :class:`PostgresStore`)."""
    return isinstance(location, str) and location.startswith(DSN_PREFIXES)


def _describe(psycopg: Any, dsn: str) -> str:
    """The server and database a DSN names, without its password (for messages)."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise StoreError(
            f"the PostgreSQL connection string is not valid ({exc}); pass a URI such as "
            "'postgresql://user:password@host:5432/dbname' or key=value pairs such as "
            "'host=localhost dbname=runs'"
        ) from None
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = str(parts.get("host") or "localhost")
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


# What to do about a failure, by the words of libpq's (or the server's) message, when
# it carries no SQLSTATE (failures to connect mostly do not).
_CONNECT_FIXES = (
    (("password authentication failed", "authentication failed", "no password supplied",
      "role \"", "no pg_hba.conf entry"),
     "authentication failed", "check the user name and password in the DSN (and the "
     "server's pg_hba.conf)"),
    (("database \"",), "the database does not exist",
     "create it (createdb NAME, or CREATE DATABASE NAME as a superuser) or name an existing "
     "database in the DSN"),
    (("connection refused", "could not connect", "no such file or directory",
      "timeout expired", "could not translate host name", "name or service not known",
      "network is unreachable", "no route to host", "the database system is starting up",
      "the database system is shutting down"),
     "the server is unreachable", "check that PostgreSQL is running and that the DSN's host "
     "and port are right"),
)
_LOST = ("the connection to the server was lost",
         "check that the server is running; the store connects again on its next use")
_SQLSTATE_FIXES = {
    "28P01": _CONNECT_FIXES[0][1:], "28000": _CONNECT_FIXES[0][1:],
    "3D000": _CONNECT_FIXES[1][1:],
    "57P01": _LOST, "57P02": _LOST, "57P03": _CONNECT_FIXES[2][1:],
    "53100": ("the server's disk is full", "free space on the server's disk"),
    "53300": ("the server has no free connections",
              "raise max_connections or close idle connections"),
    "25006": ("the server is read-only (a standby?)", "point the DSN at the primary"),
    "42501": ("the user lacks a privilege on the store's tables",
              "grant it the privileges on them, or use their owner"),
    "57014": ("a statement was cancelled (statement_timeout?)",
              "raise the user's statement_timeout, or find what holds the rows locked"),
}


def _pg_failure(location: str, doing: str, exc: Exception, lost: bool) -> StoreError:
    sqlstate = getattr(exc, "sqlstate", None)
    found = _SQLSTATE_FIXES.get(sqlstate) if sqlstate else None
    if found is None:
        text = str(exc).lower()
        for markers, cause, fix in _CONNECT_FIXES:
            if any(marker in text for marker in markers):
                found = (cause, fix)
                break
    if found is None and lost:
        found = _LOST
    cause, fix = found or ("PostgreSQL failed", "see the chained exception")
    detail = " ".join(str(exc).split())
    return StoreError(f"run store {location}: cannot {doing}: {cause} ({detail}); {fix}")


@functools.lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    """The shared statements' ``?`` placeholders as psycopg's ``%s``."""
    return sql.replace("?", "%s")


class _Statements:
    """A psycopg cursor behind the shared statements' interface."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        result: Cursor = self._cursor.execute(_placeholders(sql), parameters)
        return result

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> None:
        rows = list(parameters)
        if len(rows) == 1:  # one round trip; executemany's pipeline takes two
            self._cursor.execute(_placeholders(sql), rows[0])
        elif rows:
            self._cursor.executemany(_placeholders(sql), rows)


class PostgresStore(SQLStore):
    """A store in a PostgreSQL database, shared by every process (on any host) that can
    reach it. Same behaviour as :class:`SQLiteStore`: the same tables, audit log,
    timelines, leases and pruning.

    Every failure is a :class:`StoreError` naming the server and database, the cause
    and the fix (server unreachable, authentication failed, no such database, the
    connection lost). After a lost connection the store connects again on its next use.

    Args:
        dsn: A libpq connection string: a URI (``"postgresql://user:password@host:5432/runs"``)
            or ``"key=value"`` pairs. The database must exist; the store makes its tables
            in it (in the connection's default schema). ``compile(store=...)`` also takes
            a ``postgresql://`` or ``postgres://`` URI and opens one.
        pickle: Store outputs with pickle instead of JSON. Only for databases you trust:
            loading a pickled value runs code.
        audit_content: Record inputs and outputs themselves in the audit log, not only
            their SHA-256 digests.
        connect_timeout: Seconds to wait for the server when connecting.

    It pickles as its DSN (password included) and these options: unpickled in another
    process, it connects again. It uses one connection, guarded by a lock.

    Raises:
        ImportError: psycopg is not installed (``pip install "counterpoint[postgres]"``).
        StoreError: the server cannot be reached, refuses the login, has no such
            database, or holds tables that are not a counterpoint store's, or a store of a
            newer schema.
    """

    _lock_row = " FOR UPDATE"
    _restore = "Restore the database from a backup"

    def __init__(self, dsn: str, *, pickle: bool = False, audit_content: bool = False,
                 connect_timeout: float = 10.0) -> None:
        if not isinstance(dsn, str) or not dsn.strip():
            raise TypeError("a PostgresStore needs a connection string such as "
                            f"'postgresql://user:password@host:5432/dbname', got {dsn!r}")
        self._psycopg = _driver()
        self.dsn = dsn
        self.location = _describe(self._psycopg, dsn)
        self.codec = Codec(use_pickle=pickle)
        self.audit_content = bool(audit_content)
        self.connect_timeout = float(connect_timeout)
        self._lock = threading.Lock()
        self._closed = False
        self._conn: Any = None
        with self._lock:
            self._conn = self._connect("open it")
            # A store dropped without close() (compiled again and again in a notebook)
            # closes its connection when collected, instead of leaving it to psycopg's
            # warning. The list holds whichever connection is current.
            self._current = [self._conn]
            weakref.finalize(self, _close_connection, self._current)
            try:
                self._create_schema()
            except self._psycopg.Error as exc:
                self._conn.close()
                raise _pg_failure(self.location, "open it", exc, False) from exc
            except BaseException:
                self._conn.close()
                raise

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _connect(self, doing: str) -> Any:
        try:
            return self._psycopg.connect(self.dsn, autocommit=True,
                                         connect_timeout=max(2, round(self.connect_timeout)))
        except self._psycopg.Error as exc:
            raise _pg_failure(self.location, doing, exc, False) from exc

    @contextmanager
    def _using(self, doing: str) -> Iterator[_Statements]:
        """The connection (made again if it was lost), under the lock; failures become
        StoreErrors."""
        with self._lock:
            if self._closed:
                raise StoreError(
                    f"run store {self.location} is closed, so it cannot {doing}; open it "
                    "again with PostgresStore(dsn) (or compile the graph again)"
                )
            if self._conn.closed or self._conn.broken:
                self._conn.close()
                self._conn = self._current[0] = self._connect(doing)
            try:
                with self._conn.cursor() as cursor:
                    yield _Statements(cursor)
            except self._psycopg.Error as exc:
                raise _pg_failure(self.location, doing, exc,
                                  self._conn.closed or self._conn.broken) from exc

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[_Statements]:
        with self._using(doing) as db, self._conn.transaction():
            yield db

    def _create_schema(self) -> None:
        with self._conn.transaction(), self._conn.cursor() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            db.execute("SELECT to_regclass('counterpoint_meta') IS NOT NULL")
            if db.fetchone()[0]:
                db.execute("SELECT value FROM counterpoint_meta WHERE key = 'schema_version'")
                row = db.fetchone()
                version = int(row[0]) if row else 0
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"run store {self.location} was written by a newer counterpoint "
                        f"(store schema {version}, this one reads {SCHEMA_VERSION}); upgrade "
                        "counterpoint to open it"
                    )
            else:
                db.execute("SELECT table_name FROM information_schema.tables WHERE "
                           "table_schema = current_schema() AND table_name = ANY(%s)",
                           ([*RUN_TABLES, "agent_cache"],))
                foreign = sorted(row[0] for row in db.fetchall())
                if foreign:
                    raise StoreError(
                        f"database {self.location} has tables named like a run store's "
                        f"({', '.join(foreign)}) but is not a counterpoint run store; it was "
                        "left untouched. Use another database (or schema)"
                    )
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute("UPDATE counterpoint_meta SET value = %s WHERE key = 'schema_version' "
                       "AND CAST(value AS INTEGER) < %s", (str(SCHEMA_VERSION), SCHEMA_VERSION))

    def _disconnect(self) -> None:
        self._conn.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return _reconnect, (type(self), self.dsn, self.codec.use_pickle, self.audit_content,
                            self.connect_timeout)

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r}, format={self.codec.format!r})"


def _close_connection(current: list[Any]) -> None:
    current[0].close()


def _reconnect(cls: Callable[..., PostgresStore], dsn: str, use_pickle: bool,
               audit_content: bool, connect_timeout: float) -> PostgresStore:
    """Unpickles a Postgres store: the same database, connected to again."""
    return cls(dsn, pickle=use_pickle, audit_content=audit_content,
               connect_timeout=connect_timeout)
