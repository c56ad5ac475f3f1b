"""The ``stores`` fixture: the durability tests run once against SQLite and once against
PostgreSQL.

PostgreSQL needs a server: ``eval "$(scripts/postgres.sh start)"`` starts one and sets
COUNTERPOINT_TEST_POSTGRES to its URI. Without it the postgres tests are skipped, unless
COUNTERPOINT_REQUIRE_POSTGRES=1 (as CI sets): then they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import counterpoint as cp

POSTGRES = os.environ.get("COUNTERPOINT_TEST_POSTGRES", "")
REQUIRE_POSTGRES = os.environ.get("COUNTERPOINT_REQUIRE_POSTGRES", "") == "1"


class Stores:
    """The run stores of one backend for one test. Each name is its own store, seen by
    no other test: a file in the test's directory, or a new PostgreSQL database."""

    def __init__(self, kind: str, tmp_path: Path, server: str = "") -> None:
        self.kind = kind
        self._tmp_path = tmp_path
        self._server = server
        self._databases: dict[str, str] = {}

    def location(self, name: str = "runs.db") -> str:
        """What ``compile(store=...)`` takes: the file's path, or the database's URI."""
        if self.kind == "sqlite":
            return str(self._tmp_path / name)
        if name not in self._databases:
            database = f"cp_test_{uuid.uuid4().hex[:16]}"
            with self._admin() as admin:
                admin.execute(f"CREATE DATABASE {database}")
            self._databases[name] = self._server.rsplit("/", 1)[0] + "/" + database
        return self._databases[name]

    def open(self, name: str = "runs.db", **options: Any) -> cp.Store:
        """The store called ``name``, opened with ``options`` (``pickle=True`` ...)."""
        if self.kind == "sqlite":
            return cp.SQLiteStore(self.location(name), **options)
        return cp.PostgresStore(self.location(name), **options)

    @contextmanager
    def connect(self, name: str = "runs.db", *, tamper: bool = False) -> Iterator[Any]:
        """A connection to the store's database behind its back, committing each
        statement: ``db.execute(sql, args)`` with ``?`` placeholders. ``tamper`` drops
        the trigger that keeps the audit log append-only first, as whoever tampers would."""
        if self.kind == "sqlite":
            import sqlite3
            lite = sqlite3.connect(self.location(name), isolation_level=None)
            try:
                if tamper:
                    lite.execute("DROP TRIGGER IF EXISTS audit_log_append_only")
                yield lite
            finally:
                lite.close()
            return
        import psycopg
        with psycopg.connect(self.location(name), autocommit=True) as pg:
            if tamper:
                pg.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
            yield _Placeholders(pg)

    def _admin(self) -> Any:
        import psycopg
        return psycopg.connect(self._server, autocommit=True)

    def drop(self) -> None:
        if not self._databases:
            return
        with self._admin() as admin:
            for dsn in self._databases.values():
                admin.execute(f"DROP DATABASE IF EXISTS {dsn.rsplit('/', 1)[1]} WITH (FORCE)")


class _Placeholders:
    """A psycopg connection taking ``?`` placeholders, as sqlite3's does."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def execute(self, statement: str, args: Sequence[Any] = ()) -> Any:
        return self._connection.execute(statement.replace("?", "%s"), args)


def postgres_server() -> str:
    """The test server's URI; skips (or, when CI requires it, fails) without one."""
    if not POSTGRES:
        message = ("no PostgreSQL server for the tests: start one with "
                   'eval "$(scripts/postgres.sh start)"')
        if REQUIRE_POSTGRES:
            pytest.fail(f"COUNTERPOINT_REQUIRE_POSTGRES=1 but {message}")
        pytest.skip(message)
    return POSTGRES


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """Run stores of each backend in turn (see :class:`Stores`)."""
    if request.param == "sqlite":
        yield Stores("sqlite", tmp_path)
        return
    made = Stores("postgres", tmp_path, postgres_server())
    try:
        yield made
    finally:
        made.drop()
