"""The per-agent output cache (``cache=cp.Cache(...)``): hits and misses across runs and
processes sharing a store, expiry, identity and versions, async agents, what a hit
reports, and the store's side of it."""

from __future__ import annotations

import json
import pickle
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from typing import Any

import pytest

import counterpoint as cp
from counterpoint._cache import cache_identity, entry_key

calls: Counter = Counter()


def embed(text: str) -> dict[str, Any]:
    """A module-level agent, so its identity is ``test_cache.embed``."""
    calls["embed"] += 1
    return {"text": text, "vector": (len(text), text.count(" "))}


def _embedding_graph(store, cache: cp.Cache | None = None) -> cp.CompiledGraph:
    g = cp.Graph()
    g.add("embed", embed, cache=cache or cp.Cache())
    g.add("summarize", lambda e: f"{e['text']}:{e['vector']}", after="embed")
    return g.compile(store=store)


@pytest.fixture(autouse=True)
def _no_calls():
    calls.clear()


def test_a_second_run_on_the_same_input_is_a_hit(stores):
    cache = cp.Cache()
    app = _embedding_graph(stores.location(), cache)
    first = app.run("hello world")
    second = app.run("hello world")
    assert calls["embed"] == 1
    assert (cache.misses, cache.hits) == (1, 1)
    assert second.output == first.output == "hello world:(11, 1)"
    # The output comes back exactly (the tuple stays a tuple), and the run says it.
    assert second.agents["embed"].output == {"text": "hello world", "vector": (11, 1)}
    finished = {e.agent: e.data for e in app.store.audit(second.run_key)
                if e.kind == "agent_finished"}
    assert finished["embed"]["cached"] is True
    assert "cached" not in finished["summarize"]
    first_finished = [e.data for e in app.store.audit(first.run_key)
                      if e.kind == "agent_finished" and e.agent == "embed"]
    assert "cached" not in first_finished[0]


def test_different_inputs_miss(stores):
    cache = cp.Cache()
    app = _embedding_graph(stores.location(), cache)
    app.batch(["a", "b", "a c"])
    app.invoke("b")
    assert calls["embed"] == 3
    assert (cache.misses, cache.hits) == (3, 1)


def test_dict_inputs_hit_whatever_their_key_order(stores):
    count: Counter = Counter()

    def join(parts):
        count["join"] += 1
        return sorted(parts.items())

    app = cp.Graph().add("join", join, cache=cp.Cache()).compile(store=stores.location("r.db"))
    app.invoke({"x": 1, "y": 2})
    app.invoke({"y": 2, "x": 1})
    assert count["join"] == 1


def test_a_version_bump_misses_and_a_shared_key_hits(stores):
    path = stores.location()
    _embedding_graph(path).invoke("text")
    _embedding_graph(path, cp.Cache(version=2)).invoke("text")
    assert calls["embed"] == 2
    _embedding_graph(path, cp.Cache(version=2)).invoke("text")
    assert calls["embed"] == 2

    # Another agent name is another identity, unless both give the same key.
    shared = cp.Cache(key="embedder")
    cp.Graph().add("embed", embed, cache=shared).compile(store=path).invoke("shared")
    cp.Graph().add("again", embed, cache=shared).compile(store=path).invoke("shared")
    assert calls["embed"] == 3
    assert (shared.misses, shared.hits) == (1, 1)


def test_agents_of_one_class_do_not_share_entries(stores):
    class Prompted:
        def __init__(self, prompt):
            self.prompt = prompt

        def invoke(self, text):
            calls[self.prompt] += 1
            return f"{self.prompt}: {text}"

    g = cp.Graph()
    g.add("polite", Prompted("please"), cache=cp.Cache())
    g.add("terse", Prompted("now"), cache=cp.Cache())
    app = g.compile(store=stores.location())
    assert app.invoke("x") == {"polite": "please: x", "terse": "now: x"}
    assert app.invoke("x") == {"polite": "please: x", "terse": "now: x"}
    assert calls == Counter({"please": 1, "now": 1})
    assert cache_identity("terse", Prompted("now"), cp.Cache()) == \
        "terse:test_cache.test_agents_of_one_class_do_not_share_entries.<locals>.Prompted"


def test_entries_expire_after_their_ttl(stores):
    cache = cp.Cache(ttl=0.001)
    app = _embedding_graph(stores.location(), cache)
    app.invoke("soon stale")
    time.sleep(0.01)  # past the ttl: no timing is asserted, only that it expired
    app.invoke("soon stale")
    assert calls["embed"] == 2 and cache.hits == 0


def test_the_store_reads_expiry_against_the_time_it_is_given(stores):
    store = stores.open()
    now = time.time()
    store.cache_put("k1", {"v": 1}, owner="a", expires=now + 60)
    store.cache_put("k2", [1, 2], owner="b", expires=None)
    assert store.cache_get("k1") == (True, {"v": 1})
    assert store.cache_get("k1", now=now + 61) == (False, None)
    assert store.cache_get("k2", now=now + 10**9) == (True, [1, 2])
    assert store.cache_get("missing") == (False, None)
    assert store.cache_prune(now=now + 61) == 1
    assert store.cache_get("k1") == (False, None)
    assert store.cache_clear("b") == 1
    assert store.cache_get("k2") == (False, None)
    store.cache_put("k3", 3, owner="c", expires=None)
    assert store.cache_clear() == 1
    store.close()


def test_usage_is_not_counted_again_on_a_hit(stores):
    def priced(text):
        calls["priced"] += 1
        return cp.Result(text.upper(), confidence=0.9, usage={"tokens": 7})

    app = cp.Graph().add("priced", priced, cache=cp.Cache()).compile(store=stores.location("r.db"))
    first, second = app.run("q"), app.run("q")
    assert first.usage == {"tokens": 7}
    assert second.usage == {}
    # The confidence is kept; the usage is not.
    assert second.output == cp.Result("Q", confidence=0.9)
    assert first.output == cp.Result("Q", confidence=0.9, usage={"tokens": 7})
    assert calls["priced"] == 1


def test_async_agents_are_cached(stores):
    async def answer(question):
        calls["answer"] += 1
        return f"answer to {question}"

    cache = cp.Cache()
    app = cp.Graph().add("answer", answer, cache=cache).compile(store=stores.location("r.db"))
    assert app.invoke("q") == app.invoke("q") == "answer to q"

    import asyncio

    assert asyncio.run(app.ainvoke("q")) == "answer to q"
    assert calls["answer"] == 1 and (cache.misses, cache.hits) == (1, 2)


def test_a_routers_choice_is_cached_with_its_output(stores):
    def triage(text):
        calls["triage"] += 1
        return cp.route(text, to=["billing"] if "card" in text else ["support"])

    g = cp.Graph().add("triage", triage, cache=cp.Cache())
    g.add("billing", lambda t: f"billing: {t}", after="triage")
    g.add("support", lambda t: f"support: {t}", after="triage")
    app = g.compile(store=stores.location("r.db"))
    first, second = app.run("card"), app.run("card")
    assert calls["triage"] == 1
    assert second.output == first.output == {"billing": "billing: card"}
    assert second.agents["support"].status == "skipped"


def test_retries_apply_to_real_calls_only(stores):
    def flaky(x):
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise ConnectionError("try again")
        return x * 2

    cache = cp.Cache()
    app = cp.Graph().add("flaky", flaky, cache=cache, retry=cp.Retry(3, initial_backoff=0)) \
        .compile(store=stores.location("r.db"))
    assert app.invoke(4) == 8 and calls["flaky"] == 2
    assert app.invoke(4) == 8 and calls["flaky"] == 2
    assert (cache.misses, cache.hits) == (2, 1)


def test_a_cache_given_with_cp_policy_works(stores):
    app = cp.Graph().add("embed", cp.policy(embed, cache=cp.Cache())) \
        .compile(store=stores.location("r.db"))
    app.invoke("p")
    app.invoke("p")
    assert calls["embed"] == 1


WORKER = textwrap.dedent(
    """
    import json, sys
    import counterpoint as cp
    from collections import Counter

    calls = Counter()

    def embed(text):
        calls["embed"] += 1
        return [len(text)]

    cache = cp.Cache(key="embed", version=1)
    app = cp.Graph().add("embed", embed, cache=cache).compile(store=sys.argv[1])
    outputs = [app.invoke(text) for text in sys.argv[2:]]
    print(json.dumps({"calls": calls["embed"], "hits": cache.hits,
                      "misses": cache.misses, "outputs": outputs}))
    """
)


def test_processes_sharing_a_store_file_share_the_cache(tmp_path, stores):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    store = stores.location()

    def run(*texts):
        done = subprocess.run([sys.executable, str(worker), str(store), *texts],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    assert run("one", "three") == {"calls": 2, "hits": 0, "misses": 2, "outputs": [[3], [5]]}
    assert run("three", "four", "one") == {"calls": 1, "hits": 2, "misses": 1,
                                           "outputs": [[5], [4], [3]]}


# ---- what is refused ------------------------------------------------------------------


def test_an_output_the_store_cannot_encode_fails_the_agent_clearly(stores):
    app = cp.Graph().add("opaque", lambda x: object(), cache=cp.Cache()) \
        .compile(store=stores.location("r.db"))
    with pytest.raises(cp.AgentError) as failed:
        app.invoke(1)
    cause = failed.value.__cause__
    assert isinstance(cause, cp.StoreError)
    assert "cannot be cached as json" in str(cause)
    assert "pickle=True" in str(cause) and "drop cache=" in str(cause)
    # The engine keeps the failure's traceback, whose frames hold the store: closing it
    # stops its checkpoint writer now.
    app.store.close()


def test_a_cached_agent_needs_a_store():
    g = cp.Graph().add("embed", embed, cache=cp.Cache(ttl=3600))
    with pytest.raises(cp.GraphError, match=r"agent 'embed': cache= .*pass store= to compile"):
        g.compile()


def test_a_compiled_graph_cannot_be_cached(stores):
    inner = cp.Graph().add("x", embed).compile()
    g = cp.Graph().add("inner", inner, cache=cp.Cache())
    with pytest.raises(cp.GraphError, match=r"agent 'inner': .*cannot be cached"):
        g.compile(store=stores.location("r.db"))


@pytest.mark.parametrize(("settings", "problem"), [
    ({"ttl": 0}, "ttl must be > 0"),
    ({"ttl": "1h"}, "ttl must be a finite number"),
    ({"key": ""}, "key must be a non-empty string"),
    ({"version": True}, "version must be a string or an int"),
])
def test_bad_settings_are_refused(settings, problem):
    with pytest.raises(cp.GraphError, match=problem):
        cp.Cache(**settings)
    with pytest.raises(cp.GraphError, match=r"cache must be a cp.Cache"):
        cp.policy(embed, cache=3600)


# ---- stores ---------------------------------------------------------------------------


class NoCacheStore(cp.SQLiteStore):
    """A store with the interface's cache defaults: no cache."""

    keeps_cache = cp.Store.keeps_cache
    cache_get = cp.Store.cache_get
    cache_put = cp.Store.cache_put


def test_a_store_without_a_cache_always_misses(tmp_path):
    store = NoCacheStore(tmp_path / "r.db")
    cache = cp.Cache()
    app = _embedding_graph(store, cache)
    app.invoke("x")
    app.invoke("x")
    assert calls["embed"] == 2 and (cache.misses, cache.hits) == (2, 0)
    assert not store.keeps_cache


def test_a_schema_2_store_gets_a_cache_table(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE counterpoint_meta (key TEXT PRIMARY KEY, value TEXT);
            INSERT INTO counterpoint_meta VALUES ('schema_version', '2');
            INSERT INTO counterpoint_meta VALUES ('application', 'counterpoint');
            CREATE TABLE runs (
                run_key TEXT PRIMARY KEY, graph TEXT NOT NULL, status TEXT NOT NULL,
                input BLOB, format TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
                audit_count INTEGER NOT NULL DEFAULT 0, audit_head TEXT);
            INSERT INTO runs VALUES ('old', 'fp', 'succeeded', CAST('"in"' AS BLOB), 'json2', 1, 1,
                                     0, NULL);
            """
        )
    db.close()
    store = cp.SQLiteStore(path)
    assert store.load_run("old").input == "in"
    store.cache_put("k", "v", owner="o", expires=None)
    assert store.cache_get("k") == (True, "v")
    store.close()
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT value FROM counterpoint_meta WHERE key = "
                             "'schema_version'").fetchone()[0]
    db.close()
    assert version == "3"


def test_counts_stay_in_their_process_when_a_cache_is_pickled():
    cache = cp.Cache(ttl=5, version="v2")
    cache._counted(True)
    copy = pickle.loads(pickle.dumps(cache))
    assert copy == cache and copy.hits == 0 and cache.hits == 1


def test_entry_keys_depend_on_identity_version_and_input():
    keys = {entry_key("a", 0, 1), entry_key("b", 0, 1), entry_key("a", 1, 1),
            entry_key("a", 0, 2), entry_key("a", "0", 1)}
    assert len(keys) == 5
    assert entry_key("a", 0, {"x": 1, "y": (2,)}) == entry_key("a", 0, {"y": (2,), "x": 1})


def test_specs_round_trip_a_cache(tmp_path):
    spec = {"agents": {"encode": {"use": "json:dumps", "cache": {"ttl": 60, "version": "v2"}},
                       "decode": {"use": "json:loads", "after": "encode", "cache": {}}}}
    app = cp.load(spec, allow=["json"], store=tmp_path / "r.db")
    assert app.to_spec() == spec
    assert app.invoke([1, 2]) == app.invoke([1, 2]) == [1, 2]
    with pytest.raises(cp.SpecError, match="must be > 0"):
        cp.load({"agents": {"a": {"use": "json:dumps", "cache": {"ttl": 0}}}}, allow=["json"],
                store=tmp_path / "r.db")
