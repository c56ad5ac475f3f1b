"""cp.usage: per-agent (graph, run) usage and cost over the runs a store keeps."""

from __future__ import annotations

import datetime
import sqlite3
import sys
from pathlib import Path

import pytest

import counterpoint as cp


def writer(topic: str) -> cp.Result:
    return cp.Result(f"draft on {topic}", confidence=0.9,
                     usage={"input_tokens": 100, "output_tokens": 40, "total_tokens": 140,
                            "cost": 0.02})


def editor(draft: cp.Result) -> cp.Result:
    if "fail" in draft.value:
        raise RuntimeError("the editor refused")
    return cp.Result(draft.value.upper(), usage={"input_tokens": 50, "cost": 0.01})


def _app(path: Path) -> cp.CompiledGraph:
    return (cp.Graph().add("writer", writer).add("editor", editor, after="writer")
            .compile(store=path))


@pytest.fixture
def store(tmp_path: Path):
    app = _app(tmp_path / "r.db")
    for topic in ("a", "b", "c"):
        app.invoke(topic)
    with pytest.raises(cp.AgentError):
        app.invoke("fail")
    yield app.store


def test_by_agent(store) -> None:
    rows = cp.usage(store, as_frame=False)
    assert [row.key for row in rows] == ["editor", "writer"]
    editor_row, writer_row = rows
    assert isinstance(writer_row, cp.UsageRow)
    assert (writer_row.calls, writer_row.failures) == (4, 0)
    assert writer_row.tokens == {"input_tokens": 400.0, "output_tokens": 160.0,
                                 "total_tokens": 560.0}
    assert writer_row.cost == pytest.approx(0.08)
    assert (editor_row.calls, editor_row.failures) == (4, 1)
    assert editor_row.tokens == {"input_tokens": 150.0}
    assert editor_row.cost == pytest.approx(0.03)
    for row in rows:
        assert row.p50_seconds is not None and row.p95_seconds is not None
        assert 0 <= row.p50_seconds <= row.p95_seconds


def test_by_graph_and_by_run(store, tmp_path: Path) -> None:
    other = cp.Graph().add("solo", writer).compile(store=store)
    other.invoke("x")
    by_graph = cp.usage(store, by="graph", as_frame=False)
    fingerprints = {summary.graph for summary in store.runs()}
    assert [row.key for row in by_graph] == sorted(fingerprints)
    totals = {row.key: (row.calls, row.failures, row.cost) for row in by_graph}
    main = _app(tmp_path / "r.db").runs()[0].graph
    assert totals[main][:2] == (8, 1) and totals[main][2] == pytest.approx(0.11)
    by_run = cp.usage(store, by="run", as_frame=False)
    assert len(by_run) == 5
    assert [row.key for row in by_run] == sorted(s.run_key for s in store.runs())
    assert sum(row.calls for row in by_run) == 9
    assert all(row.p50_seconds is not None for row in by_run)  # the runs' elapsed times
    only = cp.usage(store, graph=main, as_frame=False)
    assert [row.key for row in only] == ["editor", "writer"]


def test_since(store) -> None:
    newest, before = store.runs()[:2]
    assert len(cp.usage(store, by="run", since=newest.created, as_frame=False)) == 1
    assert cp.usage(store, since=newest.created + 1, as_frame=False) == []
    # A datetime keeps microseconds: a moment between the two newest runs (which can be
    # well under a millisecond apart) still tells them apart.
    gap = newest.created - before.created
    assert gap > 2e-6
    as_datetime = datetime.datetime.fromtimestamp(newest.created - min(0.001, gap / 2))
    assert len(cp.usage(store, by="run", since=as_datetime, as_frame=False)) == 1
    assert len(cp.usage(store, by="run", since=datetime.timedelta(hours=1),
                        as_frame=False)) == 4
    with pytest.raises(TypeError, match="since must be"):
        cp.usage(store, since="yesterday", as_frame=False)


def test_percentiles(tmp_path: Path) -> None:
    store = cp.SQLiteStore(tmp_path / "r.db")
    app = cp.Graph().add("a", lambda x: x).compile(store=store)
    keys = [app.run(i).run_key for i in range(5)]
    # Durations known exactly: rewrite the recorded ones (only reading is tested here).
    with sqlite3.connect(tmp_path / "r.db") as db:
        db.execute("DROP TRIGGER audit_log_append_only")
        for seconds, key in zip([1.0, 2.0, 3.0, 4.0, 10.0], keys):
            db.execute("UPDATE audit_log SET data = json_set(data, '$.seconds', ?) "
                       "WHERE run_key = ? AND kind = 'agent_started'", (seconds, key))
    [row] = cp.usage(store, as_frame=False)
    assert row.p50_seconds == 3.0
    assert row.p95_seconds == pytest.approx(8.8)  # between 4 and 10, linearly


def test_retries_count_as_one_call_and_reviews_as_calls(tmp_path: Path) -> None:
    state = {"n": 0}

    def flaky(x):
        state["n"] += 1
        if state["n"] == 1:
            raise ConnectionError("blip")
        return cp.Result(x, confidence=0.2, usage={"input_tokens": 7})

    app = (cp.Graph().add("flaky", flaky, retry=cp.Retry(2, initial_backoff=0.0),
                          review=cp.Review(below=0.5))
           .compile(store=tmp_path / "r.db"))
    with pytest.raises(cp.NeedsReview) as paused:
        app.invoke("x")
    app.resume(paused.value.run_key, cp.approve())
    [row] = cp.usage(app.store, as_frame=False)
    assert (row.key, row.calls, row.failures, row.tokens) == ("flaky", 1, 0,
                                                             {"input_tokens": 7.0})


def test_empty_store_and_bad_arguments(tmp_path: Path) -> None:
    store = cp.SQLiteStore(tmp_path / "r.db")
    assert cp.usage(store, as_frame=False) == []
    with pytest.raises(ValueError, match="by must be one of 'agent', 'graph', 'run'"):
        cp.usage(store, by="model", as_frame=False)


def test_rows_without_pandas(store, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    rows = cp.usage(store)
    assert isinstance(rows, list) and all(isinstance(r, cp.UsageRow) for r in rows)
    with pytest.raises(ImportError, match="pip install pandas"):
        cp.usage(store, as_frame=True)


def test_a_data_frame_with_pandas(store) -> None:
    pandas = pytest.importorskip("pandas")
    frame = cp.usage(store)
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame["key"]) == ["editor", "writer"]
    assert list(frame.columns) == ["key", "calls", "failures", "input_tokens",
                                   "output_tokens", "total_tokens", "cost", "p50_seconds",
                                   "p95_seconds"]
    assert frame.set_index("key").loc["writer", "input_tokens"] == 400.0
    assert isinstance(cp.usage(store, as_frame=False), list)
