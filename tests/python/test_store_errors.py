"""Every run store failure is a StoreError naming the store, the cause and the fix, with
the underlying exception chained; none leaks as a raw OSError or sqlite3 error. (The
failures only PostgreSQL has are in test_postgres_store.py.)"""

from __future__ import annotations

import os
import sqlite3

import pytest

import counterpoint as cp


class Custom:
    def __init__(self, payload):
        self.payload = payload

    def __eq__(self, other):
        return isinstance(other, Custom) and other.payload == self.payload


def _app(store):
    return cp.Graph().add("a", lambda x: x).add("b", lambda x: x, after="a").compile(store=store)


def test_a_directory_path(tmp_path):
    for store in (tmp_path, str(tmp_path)):
        with pytest.raises(cp.StoreError) as info:
            _app(store)
        message = str(info.value)
        assert str(tmp_path) in message
        assert "is a directory" in message
        assert os.path.join(str(tmp_path), "runs.db") in message  # the fix
    with pytest.raises(cp.StoreError, match="is a directory"):
        cp.SQLiteStore(tmp_path)


@pytest.mark.parametrize("path", ["", "   "])
def test_an_empty_path_does_not_make_a_temporary_database(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever happens, nothing lands in the working directory
    with pytest.raises(cp.StoreError, match="empty") as info:
        _app(path)
    assert "'runs.db'" in str(info.value)
    with pytest.raises(cp.StoreError, match="empty"):
        cp.SQLiteStore(path)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_directory(tmp_path):
    path = tmp_path / "nowhere" / "runs.db"
    with pytest.raises(cp.StoreError) as info:
        cp.SQLiteStore(path)
    assert str(tmp_path / "nowhere") in str(info.value)
    assert "does not exist" in str(info.value)
    assert not (tmp_path / "nowhere").exists()


def test_a_path_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match=r"str or os\.PathLike"):
        cp.SQLiteStore(42)


def test_every_method_of_a_closed_store(stores):
    store = stores.open()
    app = _app(store)
    key = app.run(1).run_key
    store.close()
    calls = {
        "begin_run": lambda: store.begin_run("k2", "g", 1),
        "save_outcomes": lambda: store.save_outcomes(key, [cp.StoredOutcome("a", "succeeded", 1)]),
        "set_status": lambda: store.set_status(key, "failed"),
        "load_run": lambda: store.load_run(key),
        "runs": lambda: store.runs(),
        "invoke": lambda: app.invoke(2),
        "resume": lambda: app.resume(key),
        "app.runs": lambda: app.runs(),
    }
    for name, call in calls.items():
        try:
            result = call()
        except cp.StoreError as exc:
            assert "closed" in str(exc), name
            assert store.location in str(exc), name
            assert f"{type(store).__name__}(" in str(exc), name  # the fix: open it again
        else:
            # save_outcomes reports per outcome instead of raising
            assert name == "save_outcomes", name
            assert isinstance(result[0], cp.StoreError) and "closed" in str(result[0])
    assert store.closed


def _fill(store):
    """Caps the database at its current size, as a full disk would."""
    db = store._db
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_disk_fails_the_agent_with_the_right_hint(tmp_path):
    path = tmp_path / "runs.db"
    store = cp.SQLiteStore(path)
    app = cp.Graph().add("big", lambda x: "x" * 200_000).compile(store=store)
    _fill(store)
    with pytest.raises(cp.AgentError) as info:
        app.invoke(1)
    error = info.value
    assert error.agent == "big"
    cause = error.__cause__
    assert isinstance(cause, cp.StoreError)
    message = str(error)
    assert "full" in message
    assert str(path) in message
    assert "free space" in message
    assert "JSON-compatible" not in message  # the output was fine; the disk was not
    assert isinstance(cause.__cause__, sqlite3.OperationalError)


def test_a_full_disk_when_a_run_starts(tmp_path):
    path = tmp_path / "runs.db"
    store = cp.SQLiteStore(path)
    app = _app(store)
    _fill(store)
    with pytest.raises(cp.StoreError) as info:
        app.invoke("y" * 200_000)
    assert "full" in str(info.value) and "free space" in str(info.value)
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)


def test_a_file_damaged_after_it_was_opened(tmp_path):
    path = tmp_path / "runs.db"
    app = cp.Graph().add("a", lambda x: "x" * 5000).compile(store=path)
    keys = [app.run(i).run_key for i in range(30)]
    app.store.close()
    store = cp.SQLiteStore(path)  # opens fine: the damage comes later
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = bytearray(path.read_bytes())
    page = 4096
    data[page * 2:] = bytes(len(data) - page * 2)
    for offset in range(page * 2, len(data), 7):
        data[offset] = 0xA5
    path.write_bytes(bytes(data))
    try:
        with pytest.raises(cp.StoreError) as info:
            for key in keys:
                store.load_run(key)
            store.runs()
        assert str(path) in str(info.value)
        assert "corrupt" in str(info.value) or "not a SQLite database" in str(info.value)
        assert "backup" in str(info.value)
        assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    finally:
        store.close()


def test_a_damaged_value(stores):
    app = _app(stores.location())
    key = app.run({"q": 1}).run_key
    with stores.connect() as db:
        db.execute("UPDATE outcomes SET output = ? WHERE agent = 'a'", (b"{not json",))
    with pytest.raises(cp.StoreError) as info:
        app.store.load_run(key)
    message = str(info.value)
    assert app.store.location in message and "backup" in message and "agent 'a'" in message and key in message
    with pytest.raises(cp.StoreError):
        app.resume(key)


def test_a_pickled_store_opened_without_pickle(stores):
    store = stores.open(pickle=True)
    rec = cp.Graph().add("a", lambda x: Custom(x)).compile(store=store).run(Custom(1))
    store.close()
    plain = stores.open()
    try:
        with pytest.raises(cp.StoreError) as info:
            plain.load_run(rec.run_key)
        message = str(info.value)
        assert plain.location in message
        assert "pickle=True" in message
        assert "trust" in message
    finally:
        plain.close()


def test_an_unknown_value_format(stores):
    app = _app(stores.location())
    key = app.run(1).run_key
    with stores.connect() as db:
        db.execute("UPDATE runs SET format = 'yaml' WHERE run_key = ?", (key,))
    with pytest.raises(cp.StoreError, match="upgrade counterpoint"):
        app.store.load_run(key)


def test_an_output_that_cannot_be_encoded_names_the_agent_and_the_fix(stores):
    app = cp.Graph().add("maker", lambda x: Custom(x)).compile(store=stores.location())
    with pytest.raises(cp.AgentError) as info:
        app.invoke(1)
    assert isinstance(info.value.__cause__, cp.StoreError)
    assert "maker" in str(info.value) and "Custom" in str(info.value)
    assert "pickle=True" in str(info.value)
    assert isinstance(info.value.__cause__.__cause__, TypeError)


def test_a_custom_store_raising_its_own_errors_fails_the_agent_with_a_store_error(tmp_path):
    class Flaky(cp.SQLiteStore):
        def save_outcomes(self, run_key, outcomes):
            raise ConnectionError("the database server went away")

    app = _app(Flaky(tmp_path / "r.db"))
    with pytest.raises(cp.AgentError) as info:
        app.invoke(1)
    cause = info.value.__cause__
    assert isinstance(cause, cp.StoreError)
    assert "the database server went away" in str(cause)
    assert "agent 'a'" in str(cause)
    assert isinstance(cause.__cause__, ConnectionError)


def test_store_error_messages_stay_specific_for_open_time_problems(tmp_path):
    # The checks at open time already named the file and the fix; they still do.
    path = tmp_path / "notes.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(cp.StoreError, match="not a SQLite database"):
        cp.SQLiteStore(path)
