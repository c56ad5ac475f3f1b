"""Stream modes without LangChain: "updates", "custom" and "values", alone and together,
from stream and astream, and what each makes the run record (only what it reads)."""

from __future__ import annotations

import asyncio

import pytest

import counterpoint as cp
from counterpoint import _core


def _nested() -> cp.CompiledGraph:
    inner = cp.Graph().add("x", lambda v: v + 1).add("y", lambda v: v * 10, after="x").compile()
    return (
        cp.Graph()
        .add("first", lambda v: v)
        .add("sub", inner, after="first", priority=5)
        .add("side", lambda v: -v, after="first")
        .add("last", lambda d: d["sub"] + d["side"], after=["sub", "side"])
        .compile()
    )


def _async_collect(app: cp.CompiledGraph, x: object, mode: object) -> list[object]:
    async def collect() -> list[object]:
        return [chunk async for chunk in app.astream(x, stream_mode=mode)]

    return asyncio.run(collect())


EXPECTED_UPDATES = [{"first": 2}, {"sub/x": 3}, {"sub/y": 30}, {"sub": 30}, {"side": -2},
                    {"last": 28}]


@pytest.mark.parametrize("dispatch", ["auto", "thread", "inline"])
def test_updates_name_every_agent_at_every_depth_as_it_finishes(dispatch):
    inner = (cp.Graph().add("x", lambda v: v + 1, dispatch=dispatch)
             .add("y", lambda v: v * 10, after="x", dispatch=dispatch).compile())
    app = (cp.Graph().add("first", lambda v: v, dispatch=dispatch)
           .add("sub", inner, after="first", priority=5)
           .add("side", lambda v: -v, after="first", dispatch=dispatch)
           .add("last", lambda d: d["sub"] + d["side"], after=["sub", "side"], dispatch=dispatch)
           .compile())
    updates = list(app.stream(2, stream_mode="updates"))
    assert all(type(update) is dict and len(update) == 1 for update in updates)
    assert sorted(updates, key=lambda u: EXPECTED_UPDATES.index(u)) == EXPECTED_UPDATES
    order = [next(iter(update)) for update in updates]
    # Causal: an agent's update follows those of everything it depends on.
    for before, after in [("first", "sub/x"), ("sub/x", "sub/y"), ("sub/y", "sub"),
                          ("sub", "last"), ("side", "last"), ("first", "side")]:
        assert order.index(before) < order.index(after), order


def test_astream_updates_match_stream():
    app = _nested()
    assert sorted(map(str, _async_collect(app, 2, "updates"))) == \
        sorted(map(str, EXPECTED_UPDATES))


async def _async_agent(v):
    await asyncio.sleep(0)
    return v + 100


def test_updates_of_coroutine_agents_from_stream_and_astream():
    app = cp.Graph().add("a", _async_agent).add("b", _async_agent, after="a").compile()
    assert list(app.stream(1, stream_mode="updates")) == [{"a": 101}, {"b": 201}]
    assert _async_collect(app, 1, "updates") == [{"a": 101}, {"b": 201}]


def test_updates_then_the_failure_of_invoke():
    def boom(_):
        raise ValueError("no")

    app = cp.Graph().add("ok", lambda v: v).add("bad", boom, after="ok").compile()
    seen = []
    with pytest.raises(cp.AgentError, match="bad"):
        for update in app.stream(7, stream_mode="updates"):
            seen.append(update)
    assert seen == [{"ok": 7}]


def test_modes_together_come_as_pairs_in_order():
    app = _nested()
    chunks = list(app.stream(2, stream_mode=["updates", "values", "events"]))
    assert all(isinstance(chunk, tuple) and len(chunk) == 2 for chunk in chunks)
    updates = [chunk for mode, chunk in chunks if mode == "updates"]
    events = [chunk for mode, chunk in chunks if mode == "events"]
    assert sorted(map(str, updates)) == sorted(map(str, EXPECTED_UPDATES))
    assert [e.kind for e in events].count("start") == 6
    assert events[-1].kind == "end"
    assert chunks[-1] == ("values", 28)
    # Each update comes right after its agent's finish event.
    for i, (mode, chunk) in enumerate(chunks):
        if mode == "updates":
            previous_mode, finish = chunks[i - 1]
            assert previous_mode == "events" and finish.kind == "finish"
            assert {finish.agent: finish.output} == chunk


def test_custom_data_alone_and_with_updates():
    def talker(v):
        cp.emit({"step": 1, "v": v})
        cp.emit("done")
        return v

    async def atalker(v):
        cp.emit("async")
        return v

    app = cp.Graph().add("t", talker).add("a", atalker, after="t").compile()
    assert list(app.stream(3, stream_mode="custom")) == [{"step": 1, "v": 3}, "done", "async"]
    assert _async_collect(app, 3, "custom") == [{"step": 1, "v": 3}, "done", "async"]
    both = list(app.stream(3, stream_mode=["custom", "updates"]))
    assert both == [("custom", {"step": 1, "v": 3}), ("custom", "done"), ("updates", {"t": 3}),
                    ("custom", "async"), ("updates", {"a": 3})]


def test_values_alone_is_the_result():
    app = _nested()
    assert list(app.stream(2)) == [28]
    assert list(app.stream(2, stream_mode="values")) == [28]
    assert _async_collect(app, 2, "values") == [28]


@pytest.mark.parametrize("bad", ["nope", [], ["updates", "nope"], 3])
def test_unknown_modes_are_refused_naming_the_choices(bad):
    with pytest.raises(ValueError, match="stream_mode"):
        cp.Graph().add("a", lambda v: v).compile().stream(1, stream_mode=bad)


def _recorded(app: cp.CompiledGraph, kinds: list[object], form: object) -> list[object]:
    """What a run records of `kinds`, taken in `form`, by the native calls stream uses."""
    started = _core.start_stream(app._native, 2, None, None, 0.0, 5.0, 0.001,
                                 _core.EventKinds(kinds), form)
    handle, batch = started.handle, started.events
    taken = list(batch)
    while batch.more:
        batch = handle.next_events(5.0, 0.001, form)
        taken.extend(batch)
    assert handle.done
    assert list(batch) == []  # an EventBatch is an iterator: consumed once
    return taken


def test_a_run_records_only_the_kinds_its_modes_read():
    kind, form = _core.EventKind, _core.EventForm
    app = _nested()
    finishes = _recorded(app, [kind.finish], form.event)
    assert [e.kind for e in finishes] == ["finish"] * 6
    starts = _recorded(app, [kind.start], form.event)
    assert sorted(e.agent for e in starts) == sorted(["first", "sub", "sub/x", "sub/y", "side",
                                                      "last"])
    assert [e.kind for e in _recorded(app, list(kind), form.event)].count("start") == 6
    # Taken as updates: {agent: output} for each finish, the other kinds left out.
    updates = _recorded(app, list(kind), form.update)
    assert sorted(map(str, updates)) == sorted(map(str, EXPECTED_UPDATES))
    with pytest.raises(ValueError, match="records events"):
        _recorded(app, [], form.event)


def test_event_kinds_is_a_set():
    kind = _core.EventKind
    some = _core.EventKinds([kind.start, kind.custom])
    assert kind.start in some and kind.custom in some and kind.finish not in some
    assert not some.none and _core.EventKinds([]).none
    assert all(k in _core.EventKinds.all() for k in kind)
    assert some == _core.EventKinds([kind.custom, kind.start])
    assert repr(some) == "EventKinds(start, custom)"


def test_events_of_a_child_run_come_before_the_result_of_its_delegator():
    # "sub" has a higher priority than its child's agents: results ready together are
    # delivered highest priority first, but never ahead of what caused them.
    app = _nested()
    for _ in range(20):
        finishes = [e.agent for e in app.stream(2, stream_mode="events") if e.kind == "finish"]
        assert finishes.index("sub/y") < finishes.index("sub") < finishes.index("last")
        updates = [next(iter(u)) for u in app.stream(2, stream_mode="updates")]
        assert updates.index("sub/y") < updates.index("sub") < updates.index("last")


def test_an_observer_without_agent_ended_sees_starts_and_changes_no_outcome():
    from counterpoint._streaming import AgentObserver

    class Starts(AgentObserver):
        def __init__(self) -> None:
            super().__init__(publish=False)
            self.paths: list[str] = []

        def agent_started(self, call):
            self.paths.append(call.path)

    class Both(Starts):
        def __init__(self) -> None:
            super().__init__()
            self.ended: list[tuple[str, object]] = []

        def agent_ended(self, call):
            self.ended.append((call.path, call.output))

    app = _nested()
    for observer in (Starts(), Both()):
        run = app._launch(2, app._dispatcher(), observer=observer)
        assert run.result() == 28
        assert sorted(observer.paths) == sorted(["first", "sub", "sub/x", "sub/y", "side", "last"])
    assert sorted(observer.ended) == sorted((next(iter(u)), u[next(iter(u))])
                                            for u in EXPECTED_UPDATES)
