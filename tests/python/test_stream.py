"""CompiledGraph.stream: events as they happen, a final "end", early close cancels."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import counterpoint as cp


def _diamond(dispatch="auto", billing_priority=2):
    return (
        cp.Graph()
        .add("classify", lambda x: x.upper(), dispatch=dispatch)
        .add("billing", lambda x: f"b:{x}", after="classify", priority=billing_priority,
             dispatch=dispatch)
        .add("shipping", lambda x: f"s:{x}", after="classify", dispatch=dispatch)
        .add(
            "reply",
            lambda d: d["billing"] + "|" + d["shipping"],
            after=["billing", "shipping"],
            dispatch=dispatch,
        )
        .compile()
    )


def _collect(app, slow_consumer):
    events = []
    for event in app.stream("q", stream_mode="events"):
        events.append(event)
        if slow_consumer:
            time.sleep(0.001)  # e.g. a UI rendering each event: later events queue up
    return events


def _check_diamond_events(app, events):
    assert all(isinstance(e, cp.Event) for e in events)
    assert events[-1].kind == "end"
    assert events[-1].agent is None
    assert events[-1].output == "b:Q|s:Q"
    assert sum(e.kind == "end" for e in events) == 1

    agent_events = events[:-1]
    for name in app.agents:
        kinds = [e.kind for e in agent_events if e.agent == name]
        assert kinds == ["start", "finish"], (name, kinds)

    order = [(e.kind, e.agent) for e in events]
    position = {key: i for i, key in enumerate(order)}
    # Events come in the order things happened: an agent starts only after each of
    # its predecessors finished, so its "start" follows their "finish".
    for before, after in [
        ("classify", "billing"),
        ("classify", "shipping"),
        ("billing", "reply"),
        ("shipping", "reply"),
    ]:
        assert position[("finish", before)] < position[("start", after)], order
        assert events[position[("finish", before)]].time <= events[position[("start", after)]].time


@pytest.mark.parametrize("dispatch", ["auto", "thread", "inline"])
def test_event_order_per_agent_and_final_end(dispatch):
    app = _diamond(dispatch, billing_priority=0)
    assert app.invoke("q") == "b:Q|s:Q"
    # repeated: "auto" moves fast agents inline after the first runs
    for i in range(40):
        _check_diamond_events(app, _collect(app, slow_consumer=i % 2 == 1))


@pytest.mark.parametrize("dispatch", ["auto", "thread", "inline"])
def test_event_order_is_causal_when_agents_have_priorities(dispatch):
    """Priorities decide which ready agent is scheduled first; they must not reorder the
    event stream so that an agent "starts" before its predecessor started/finished."""
    app = _diamond(dispatch, billing_priority=2)
    assert app.invoke("q") == "b:Q|s:Q"
    # repeated: "auto" moves fast agents inline after the first runs
    for i in range(40):
        _check_diamond_events(app, _collect(app, slow_consumer=i % 2 == 1))


def test_event_payloads_and_metadata():
    events = list(_diamond().stream("q", stream_mode="events"))
    finishes = {e.agent: e.output for e in events if e.kind == "finish"}
    assert finishes == {
        "classify": "Q",
        "billing": "b:Q",
        "shipping": "s:Q",
        "reply": "b:Q|s:Q",
    }
    assert len({e.run_id for e in events}) == 1
    assert all(e.time >= 0 for e in events)
    assert events[-1].time >= max(e.time for e in events[:-1])
    starts = [e for e in events if e.kind == "start"]
    assert all(e.output is None for e in starts)
    priorities = {e.agent: e.priority for e in events if e.agent}
    assert priorities["billing"] == 2
    assert priorities["shipping"] == 0


def test_event_times_reflect_agent_duration():
    def slow(x):
        time.sleep(0.2)
        return x

    events = list(cp.Graph().add("slow", slow).compile().stream(1, stream_mode="events"))
    start = next(e for e in events if e.kind == "start")
    finish = next(e for e in events if e.kind == "finish")
    assert 0.15 < finish.time - start.time < 2.0


def test_events_arrive_while_the_run_is_in_progress():
    """The first events are yielded before a later slow agent finishes."""
    release = threading.Event()

    def slow(x):
        release.wait(5)
        return x

    app = cp.Graph().add("first", lambda x: x).add("slow", slow, after="first").compile()
    gen = app.stream(1, stream_mode="events")
    seen = []
    try:
        for event in gen:
            seen.append((event.kind, event.agent))
            if event.kind == "start" and event.agent == "slow":
                assert ("finish", "slow") not in seen
                release.set()
    finally:
        release.set()
    assert seen[-1] == ("end", None)


def test_closing_generator_early_cancels_run():
    log = []
    running = threading.Event()

    def slow(x):
        running.set()
        time.sleep(0.3)
        log.append("slow.end")
        return x

    def later(x):
        log.append("later")
        return x

    app = (
        cp.Graph()
        .add("first", lambda x: x)
        .add("slow", slow, after="first")
        .add("later", later, after="slow")
        .compile()
    )
    gen = app.stream(1, stream_mode="events")
    for event in gen:
        if event.kind == "start" and event.agent == "slow":
            break
    assert running.wait(2)  # slow's body is executing
    gen.close()
    time.sleep(0.6)  # slow has returned by now
    assert log == ["slow.end"]  # ... but later never started


def test_dropping_generator_cancels_run():
    log = []

    async def slow(x):
        await asyncio.sleep(0.3)
        log.append("slow.end")
        return x

    app = (
        cp.Graph()
        .add("slow", slow)
        .add("later", lambda x: log.append("later"), after="slow")
        .compile()
    )
    gen = app.stream(1, stream_mode="events")
    first = next(gen)
    assert first.kind == "start"
    del gen  # refcount drop closes the generator
    time.sleep(0.6)
    assert "later" not in log


def test_stream_async_agents():
    async def a(x):
        await asyncio.sleep(0.01)
        return x + 1

    async def b(x):
        return x * 3

    app = cp.Graph().add("a", a).add("b", b, after="a").compile()
    events = list(app.stream(1, stream_mode="events"))
    assert [(e.kind, e.agent) for e in events] == [
        ("start", "a"),
        ("finish", "a"),
        ("start", "b"),
        ("finish", "b"),
        ("end", None),
    ]
    assert events[-1].output == 6


def test_stream_multiple_sinks_end_output_is_dict():
    app = cp.Graph().add("x", lambda v: v + 1).add("y", lambda v: v - 1).compile()
    events = list(app.stream(10, stream_mode="events"))
    assert events[-1].output == {"x": 11, "y": 9}


def test_stream_is_lazy_nothing_runs_before_iteration():
    calls = []
    app = cp.Graph().add("a", lambda x: calls.append(x)).compile()
    gen = app.stream(1, stream_mode="events")
    time.sleep(0.05)
    assert calls == []
    list(gen)
    assert calls == [1]


def test_many_streams_in_parallel_threads():
    def agent(x):
        time.sleep(0.01)
        return x

    app = cp.Graph().add("a", agent).add("b", lambda x: x, after="a").compile()
    results = {}

    def worker(i):
        results[i] = [e for e in app.stream(i, stream_mode="events")][-1].output

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {i: i for i in range(8)}


@pytest.mark.parametrize("mode", ["events", "updates"])
def test_one_mode_stream_is_an_iterator_that_ends_once(mode):
    app = cp.Graph().add("a", lambda x: x + 1).add("b", lambda x: x * 2, after="a").compile()
    stream = app.stream(1, stream_mode=mode)
    assert iter(stream) is stream
    chunks = list(stream)
    if mode == "updates":
        assert chunks == [{"a": 2}, {"b": 4}]
    else:
        assert [c.kind for c in chunks] == ["start", "finish", "start", "finish", "end"]
    assert list(stream) == []  # exhausted: stays so
    with pytest.raises(StopIteration):
        next(stream)
    stream.close()  # closing an ended stream does nothing


@pytest.mark.parametrize("mode", ["events", "updates"])
def test_failure_is_raised_after_the_chunks_before_it(mode):
    def boom(x):
        raise ValueError("boom")

    app = cp.Graph().add("a", lambda x: x + 1).add("b", boom, after="a").compile()
    seen = []
    with pytest.raises(cp.AgentError, match="boom") as failure:
        for chunk in app.stream(1, stream_mode=mode):
            seen.append(chunk)
    assert isinstance(failure.value.__cause__, ValueError)
    if mode == "updates":
        assert seen == [{"a": 2}]
    else:
        assert [(e.kind, e.agent) for e in seen][-1] == ("error", "b")


@pytest.mark.parametrize("mode", ["events", "updates"])
def test_a_stream_closed_before_its_first_chunk_never_runs(mode):
    calls = []
    app = cp.Graph().add("a", lambda x: calls.append(x)).compile()
    stream = app.stream(1, stream_mode=mode)
    stream.close()
    assert list(stream) == []
    time.sleep(0.05)
    assert calls == []


def test_an_error_in_the_consumer_cancels_the_run():
    later = []

    def slow(x):
        time.sleep(0.2)
        return x

    app = (cp.Graph().add("slow", slow)
           .add("later", lambda x: later.append(x), after="slow").compile())

    def consume():
        for update in app.stream(1, stream_mode="events"):
            if update.kind == "start":
                raise RuntimeError("consumer failed")

    with pytest.raises(RuntimeError, match="consumer failed"):
        consume()
    time.sleep(0.4)
    assert later == []
