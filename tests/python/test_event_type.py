"""counterpoint.Event, a native type: it behaves as the frozen dataclass it replaced
(fields, defaults, equality, hashing, repr, pickling, match, frozen), whether a run made
it (its fields made when first read) or the caller did, and frees what it holds."""

from __future__ import annotations

import copy
import dataclasses
import gc
import pickle
import weakref

import pytest

import counterpoint as cp


def _events(stream_mode="events"):
    app = (cp.Graph()
           .add("a", lambda x: x + 1, priority=3)
           .add("b", lambda x: {"v": x}, after="a")
           .compile())
    return list(app.stream(1, stream_mode=stream_mode))


def test_fields_defaults_and_keywords():
    event = cp.Event("start", "a", 7, 0.25)
    assert (event.kind, event.agent, event.run_id, event.time) == ("start", "a", 7, 0.25)
    assert (event.output, event.error, event.message) == (None, None, "")
    assert (event.priority, event.attempt, event.delay) == (0, 0, 0.0)
    error = ValueError("x")
    named = cp.Event(kind="retry", agent="b", run_id=1, time=1.0, output=None, error=error,
                     message="m", priority=2, attempt=3, delay=0.5)
    assert named.error is error
    assert (named.message, named.priority, named.attempt, named.delay) == ("m", 2, 3, 0.5)


def test_bad_arguments_are_type_errors():
    with pytest.raises(TypeError, match="Event"):
        cp.Event("start", "a")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        cp.Event("start", "a", 1, 0.0, nope=1)  # type: ignore[call-arg]


def test_engine_events_read_as_values():
    events = _events()
    assert [(e.kind, e.agent) for e in events] == [
        ("start", "a"), ("finish", "a"), ("start", "b"), ("finish", "b"), ("end", None)]
    assert events[1].output == 2 and events[3].output == {"v": 2}
    assert events[0].priority == 3 and all(type(e.priority) is int for e in events)
    assert all(isinstance(e.time, float) and isinstance(e.delay, float) for e in events)
    assert all(type(e.attempt) is int and e.message == "" for e in events)
    # A field read twice is the same object: made once, then kept.
    assert events[0].agent is events[0].agent
    assert events[0].time is events[0].time


def test_equality_hash_and_repr():
    a = cp.Event("finish", "a", 1, 0.5, output=2)
    b = cp.Event("finish", "a", 1, 0.5, output=2)
    assert a == b and (a != b) is False and hash(a) == hash(b)
    assert a != cp.Event("finish", "a", 1, 0.5, output=3)
    assert a != ("finish", "a", 1, 0.5)
    assert repr(a) == ("Event(kind='finish', agent='a', run_id=1, time=0.5, output=2, "
                       "message='', priority=0, attempt=0, delay=0.0)")
    with pytest.raises(TypeError, match="unhashable"):
        hash(cp.Event("finish", "a", 1, 0.5, output={"v": 1}))
    engine = _events()[1]
    assert engine == cp.Event("finish", "a", engine.run_id, engine.time, output=2,
                              priority=3)


def test_frozen():
    event = _events()[0]
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'kind'"):
        event.kind = "finish"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field"):
        del event.agent  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.anything = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_and_copy(protocol):
    for event in _events():
        again = pickle.loads(pickle.dumps(event, protocol))
        assert again == event and type(again) is cp.Event
    event = cp.Event("error", "a", 1, 0.1, error=ValueError("boom"), message="boom")
    again = pickle.loads(pickle.dumps(event, protocol))
    assert isinstance(again.error, ValueError) and str(again.error) == "boom"
    assert copy.copy(event) == event
    assert copy.deepcopy(_events()[3]).output == {"v": 2}


def test_match_statement():
    matched = []
    for event in _events():
        match event:
            case cp.Event("finish", agent, output=output):
                matched.append((agent, output))
    assert matched == [("a", 2), ("b", {"v": 2})]


def test_an_event_in_a_cycle_is_collected():
    class Box:
        pass

    box = Box()
    event = cp.Event("finish", "a", 1, 0.0, output=[box])
    box.event = event  # type: ignore[attr-defined]
    gone = weakref.ref(box)
    del box, event
    gc.collect()
    assert gone() is None


def test_recursive_repr():
    holder: list = []
    event = cp.Event("finish", "a", 1, 0.0, output=holder)
    holder.append(event)
    assert "output=[...]" in repr(event)


def test_events_hold_no_references_once_dropped():
    class Output:
        pass

    app = cp.Graph().add("a", lambda x: Output()).compile()
    refs = []
    for event in app.stream(1, stream_mode="events"):
        if event.kind == "finish":
            refs.append(weakref.ref(event.output))
    del event
    gc.collect()
    assert refs and all(ref() is None for ref in refs)
