"""What only PostgresStore has: opening by URI, pickling as its DSN, and StoreErrors that
name the server and database, the cause and the fix (server unreachable, login refused,
no such database, connection lost mid-run, a newer schema, another application's
tables). What both stores share is tested against both (the ``stores`` fixture)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import Stores, postgres_server

import counterpoint as cp


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Stores]:
    made = Stores("postgres", tmp_path, postgres_server())
    try:
        yield made
    finally:
        made.drop()


def _app(store: object) -> cp.CompiledGraph:
    return cp.Graph().add("a", lambda x: x + 1).add("b", lambda x: x * 2, after="a") \
        .compile(store=store)


def _with(dsn: str, *, password: str | None = None, port: int | None = None,
          database: str | None = None) -> str:
    """The DSN with one part changed."""
    import psycopg
    parts = psycopg.conninfo.conninfo_to_dict(dsn)
    if password is not None:
        parts["password"] = password
    if port is not None:
        parts["port"] = str(port)
    if database is not None:
        parts["dbname"] = database
    return psycopg.conninfo.make_conninfo("", **parts)


def test_compile_opens_a_postgres_uri(pg: Stores) -> None:
    dsn = pg.location()
    app = _app(dsn)
    assert isinstance(app.store, cp.PostgresStore)
    assert app.invoke(1) == 4
    again = _app("postgres://" + dsn.removeprefix("postgresql://"))
    assert [s.status for s in again.runs()] == ["succeeded"]
    assert "counterpoint" not in repr(app.store)  # the password is not shown
    assert repr(app.store).startswith("PostgresStore('postgresql://postgres@")


def test_it_pickles_as_its_dsn(pg: Stores) -> None:
    store = pg.open(pickle=True, audit_content=True)
    key = _app(store).run(1).run_key
    copy = pickle.loads(pickle.dumps(store))
    assert copy is not store and copy.dsn == store.dsn
    assert copy.codec.use_pickle and copy.audit_content
    assert copy.load_run(key).outcomes["b"].output == 4
    copy.close()


def test_an_unreachable_server(pg: Stores) -> None:
    dsn = _with(postgres_server(), port=1)
    with pytest.raises(cp.StoreError) as info:
        cp.PostgresStore(dsn, connect_timeout=2)
    message = str(info.value)
    assert "127.0.0.1:1" in message and "the server is unreachable" in message
    assert "check that PostgreSQL is running" in message
    assert "counterpoint" not in message.replace("counterpoint run", "")  # no password
    server = urlsplit(postgres_server())
    if server.scheme.startswith("postgres"):  # the URI form, as compile(store=...) takes it
        login = f"{server.username}:{server.password}@" if server.password else ""
        uri = server._replace(netloc=f"{login}127.0.0.1:1", query="connect_timeout=2")
        with pytest.raises(cp.StoreError, match="unreachable"):
            _app(uri.geturl())


def test_a_wrong_password(pg: Stores) -> None:
    with pytest.raises(cp.StoreError) as info:
        cp.PostgresStore(_with(postgres_server(), password="wrong"))
    message = str(info.value)
    assert "authentication failed" in message and "user name and password" in message
    assert "wrong" not in message


def test_a_missing_database(pg: Stores) -> None:
    with pytest.raises(cp.StoreError) as info:
        cp.PostgresStore(_with(postgres_server(), database="no_such_db"))
    message = str(info.value)
    assert "/no_such_db" in message and "the database does not exist" in message
    assert "CREATE DATABASE" in message


def test_an_invalid_connection_string() -> None:
    with pytest.raises(cp.StoreError, match="connection string is not valid"):
        cp.PostgresStore("host=localhost port")
    with pytest.raises(TypeError, match="connection string"):
        cp.PostgresStore("")


def _terminate(pg: Stores) -> None:
    """Ends every other session on the store's database, as a server restart or a
    dropped network would."""
    with pg.connect() as db:
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   "WHERE datname = current_database() AND pid <> pg_backend_pid()")


def test_a_connection_lost_mid_run_is_a_store_error_and_the_next_use_reconnects(
        pg: Stores) -> None:
    store = pg.open()
    app = _app(store)
    key = app.run(1).run_key
    _terminate(pg)
    with pytest.raises(cp.StoreError) as info:
        store.load_run(key)
    message = str(info.value)
    assert pg.location().split("@")[1].split("?")[0] in message.replace("postgres@", "")
    assert "the connection to the server was lost" in message
    assert "connects again on its next use" in message
    assert store.load_run(key).outcomes["b"].output == 4
    # Lost between runs: the next run's first write fails the run clearly, the one
    # after runs.
    _terminate(pg)
    with pytest.raises(cp.StoreError, match="connection to the server was lost"):
        app.invoke(2)
    assert app.invoke(3) == 8


def test_a_store_of_a_newer_schema_is_refused(pg: Stores) -> None:
    pg.open().close()
    with pg.connect() as db:
        db.execute("UPDATE counterpoint_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(cp.StoreError, match=r"newer counterpoint \(store schema 99"):
        pg.open()


def test_another_applications_tables_are_refused_and_left_untouched(pg: Stores) -> None:
    with pg.connect() as db:
        db.execute("CREATE TABLE runs (id INTEGER)")
    with pytest.raises(cp.StoreError, match=r"tables named like a run store's \(runs\)"):
        pg.open()
    with pg.connect() as db:
        assert db.execute("SELECT to_regclass('counterpoint_meta')").fetchone() == (None,)


def test_a_closed_store(pg: Stores) -> None:
    store = pg.open()
    store.close()
    store.close()
    with pytest.raises(cp.StoreError, match=r"is closed.*PostgresStore\(dsn\)"):
        store.runs()


def test_the_log_is_append_only_and_outputs_are_bytea(pg: Stores) -> None:
    store = pg.open()
    key = _app(store).run(1).run_key
    with pg.connect() as db:
        kinds = dict(db.execute("SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_name = 'outcomes'").fetchall())
        assert kinds["output"] == "bytea" and kinds["updated"] == "double precision"
        with pytest.raises(Exception, match="append-only"):
            db.execute("UPDATE audit_log SET kind = 'x' WHERE run_key = ?", (key,))
    assert store.verify_audit(key).ok
