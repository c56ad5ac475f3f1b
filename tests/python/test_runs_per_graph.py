"""Graphs sharing a store list only their own runs, so the documented resume loop never
meets another graph's run; the store itself still lists them all."""

from __future__ import annotations

from conftest import Stores

import counterpoint as cp


def _chain():
    return cp.Graph().add("a", lambda x: f"a({x})").add("b", lambda x: f"b({x})", after="a")


def _fan():
    return cp.Graph().add("x", lambda v: v).add("y", lambda v: v).add(
        "z", lambda d: sorted(d), after=["x", "y"])


def test_each_graph_lists_only_its_runs(stores: Stores) -> None:
    store = stores.open("shared.db")
    chain, fan = _chain().compile(store=store), _fan().compile(store=store)
    chain_keys = {chain.run(i).run_key for i in range(3)}
    fan_keys = {fan.run(i).run_key for i in range(2)}
    assert {s.run_key for s in chain.runs()} == chain_keys
    assert {s.run_key for s in fan.runs()} == fan_keys
    assert {s.run_key for s in chain.runs("succeeded")} == chain_keys
    # The store-level listing keeps every graph's runs, with each run's graph.
    summaries = store.runs()
    assert {s.run_key for s in summaries} == chain_keys | fan_keys
    assert {s.graph for s in summaries} == {chain._fingerprint, fan._fingerprint}
    assert {s.run_key for s in store.runs(graph=fan._fingerprint)} == fan_keys


def test_the_documented_resume_loop_only_meets_its_own_runs(stores: Stores) -> None:
    store = stores.open("shared.db")
    chain, fan = _chain().compile(store=store), _fan().compile(store=store)
    for app in (chain, fan):
        for i in range(2):
            record = app.run(i)
            store.set_status(record.run_key, "interrupted")  # as Ctrl-C would leave them
    resumed = [chain.resume(s.run_key) for s in chain.runs("interrupted")]
    assert sorted(resumed) == ["b(a(0))", "b(a(1))"]
    assert len(fan.runs("interrupted")) == 2  # untouched, still waiting for their graph
    assert [fan.resume(s.run_key) for s in fan.runs("interrupted")] == [["x", "y"]] * 2


def test_a_rebuilt_graph_of_the_same_shape_sees_the_runs(stores: Stores) -> None:
    path = stores.location()
    key = _chain().compile(store=path).run(1).run_key
    rebuilt = _chain().compile(store=path)  # another process, the same code
    assert [s.run_key for s in rebuilt.runs()] == [key]
