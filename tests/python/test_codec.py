"""The JSON codec gives user data back exactly, whatever its keys: dicts holding the
codec's own tag key at any depth, tuples, sets, non-string keys, counterpoint result
types, through the codec, the store and a resume."""

from __future__ import annotations

import json
import math
import random
import sqlite3

import pytest

import counterpoint as cp
from counterpoint._codec import Codec

TAG = "__counterpoint__"


def _same(a, b, path="value"):
    """Equal and of the same types all the way down (1, 1.0 and True are not the same)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert len(a) == len(b), path
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            _same(ka, kb, f"{path} key {ka!r}")
            _same(va, vb, f"{path}[{ka!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for index, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{index}]")
    elif isinstance(a, float):
        assert repr(a) == repr(b), path  # keeps -0.0 apart from 0.0
    else:
        assert a == b, path


# ---- a seeded generator of many shapes ----------------------------------------------

_STRINGS = [TAG, "fields", "items", "type", "message", "", "é", "a b", "Merged", "tuple",
            "dict", "exception", "__counterpoint__ ", "\u2603", "null"]
_TAG_VALUES = ["Merged", "Result", "tuple", "dict", "set", "exception", "nope", 3, None]


def _scalar(rng: random.Random):
    return rng.choice([
        None, True, False, 0, 1, -7, 2**70, 0.5, -0.0, 1.0, 1e300,
        rng.choice(_STRINGS), rng.randint(-1000, 1000), rng.random(),
    ])


def _key(rng: random.Random):
    kind = rng.random()
    if kind < 0.55:
        return rng.choice(_STRINGS)
    if kind < 0.7:
        return rng.choice([0, 1, -3, 2**64])
    if kind < 0.8:
        return rng.choice([1.5, -0.25, 2.0])
    if kind < 0.85:
        return rng.choice([True, False, None])
    if kind < 0.95:
        return tuple(_hashable(rng) for _ in range(rng.randint(0, 3)))
    return frozenset(_hashable(rng) for _ in range(rng.randint(0, 3)))


def _hashable(rng: random.Random):
    value = _scalar(rng)
    return value if rng.random() < 0.8 else (value, rng.choice(_STRINGS))


def _value(rng: random.Random, depth: int = 0):
    if depth >= 4 or rng.random() < 0.3:
        return _scalar(rng)
    kind = rng.choice(["dict", "dict", "tagdict", "list", "tuple", "set", "frozenset",
                       "result", "merged"])
    size = rng.randint(0, 4)
    if kind == "dict":
        return {_key(rng): _value(rng, depth + 1) for _ in range(size)}
    if kind == "tagdict":  # looks like one of the codec's own tagged objects
        shape = {TAG: rng.choice(_TAG_VALUES)}
        for _ in range(size):
            shape[rng.choice(["fields", "items", "type", "message", "x"])] = _value(rng, depth + 1)
        return shape
    if kind == "list":
        return [_value(rng, depth + 1) for _ in range(size)]
    if kind == "tuple":
        return tuple(_value(rng, depth + 1) for _ in range(size))
    if kind == "set":
        return {_hashable(rng) for _ in range(size)}
    if kind == "frozenset":
        return frozenset(_hashable(rng) for _ in range(size))
    if kind == "result":
        return cp.Result(_value(rng, depth + 1), confidence=rng.choice([None, 0.25]),
                         usage=rng.choice([None, {"tokens": 3.0}]))
    outputs = {name: _value(rng, depth + 1) for name in ("a", "b")}
    return cp.Merged(value=_value(rng, depth + 1), policy="majority", resolution="r",
                     outputs=outputs, agreeing=("a",), disagreeing=("b",), failed={},
                     tally={"'x'": 1.0})


def _shapes(count: int, seed: int = 7):
    rng = random.Random(seed)
    return [_value(rng) for _ in range(count)]


def _same_result(a, b, path="value"):
    """_same, comparing counterpoint's frozen dataclasses field by field."""
    if isinstance(a, (cp.Result, cp.Merged)):
        assert type(a) is type(b), path
        for name in a.__dataclass_fields__:
            _same_result(getattr(a, name), getattr(b, name), f"{path}.{name}")
    elif isinstance(a, dict):
        assert type(a) is type(b) and len(a) == len(b), path
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            _same(ka, kb, f"{path} key {ka!r}")
            _same_result(va, vb, f"{path}[{ka!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for index, (x, y) in enumerate(zip(a, b)):
            _same_result(x, y, f"{path}[{index}]")
    else:
        _same(a, b, path)


# ---- the codec -------------------------------------------------------------------------


def test_many_shapes_round_trip_exactly():
    codec = Codec()
    shapes = _shapes(3000)
    assert sum(TAG in json.dumps(repr(s)) for s in shapes) > 300  # the tag key is common
    for index, shape in enumerate(shapes):
        _same_result(shape, codec.decode(codec.encode(shape), codec.row_format),
                     f"shape #{index}")


@pytest.mark.parametrize("value", [
    {TAG: "Merged", "fields": {"value": 1}},
    {TAG: "nope"},
    {TAG: "exception", "type": "ValueError", "message": "x"},
    {TAG: "tuple", "items": [1, 2]},
    {TAG: "dict", "items": [["a", 1]]},
    {"deep": [{"deeper": ({TAG: "Result", "fields": {"value": 2}},)}]},
    {TAG: {TAG: {TAG: None}}},
    [{TAG: 1}, {TAG: 2}],
    {1: "int key", "1": "str key", 1.5: "float key", None: "none key", (1, "a"): "tuple key"},
    {True: "bool key", "true": "str"},
    ((1, 2), [3, (4,)]),
    {1, 2, "three"},
    frozenset({(1, 2), "x"}),
])
def test_values_that_look_like_the_codecs_own(value):
    codec = Codec()
    _same(value, codec.decode(codec.encode(value), codec.row_format))


def test_a_user_dict_with_the_tag_key_is_escaped_so_it_cannot_be_misread():
    encoded = json.loads(Codec().encode({TAG: "Merged", "fields": {}}))
    assert encoded[TAG] == "dict"  # stored as the codec's escaped dict, not as-is


def test_plain_json_data_is_stored_as_readable_json():
    value = {"q": [1, 2.5, "x", None, True, {"nested": "ok"}]}
    assert json.loads(Codec().encode(value)) == value


def test_values_json_cannot_hold_are_still_refused():
    codec = Codec()
    with pytest.raises(ValueError):
        codec.encode(math.nan)
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        codec.encode({"x": object()})


def test_rows_written_before_escaping_still_read():
    # The old "json" rows: tagged counterpoint types with tuple fields as lists, tuples
    # as lists, and a user dict with the tag key left as it was.
    codec = Codec()
    legacy = json.dumps({
        "merged": {TAG: "Merged", "fields": {
            "value": "x", "policy": "majority", "resolution": "r", "outputs": {"a": "x"},
            "agreeing": ["a"], "disagreeing": [], "failed": {}, "tally": {"'x'": 1.0}}},
        "pair": [1, 2],
        "user": {TAG: "not a type of ours", "n": 1},
    }).encode()
    decoded = codec.decode(legacy, "json")
    assert decoded["merged"] == cp.Merged("x", "majority", "r", {"a": "x"}, ("a",), (), {},
                                          {"'x'": 1.0})
    assert decoded["pair"] == [1, 2]
    assert decoded["user"] == {TAG: "not a type of ours", "n": 1}


# ---- through a store and a resume ------------------------------------------------------


def test_outputs_with_the_tag_key_survive_the_store_and_a_resume(tmp_path):
    shapes = [*_shapes(40, seed=11), {TAG: "nope"}, {TAG: "Merged", "fields": {"value": 1}}]
    path = tmp_path / "runs.db"
    for shape in shapes:
        calls = []

        def make(x, shape=shape, calls=calls):
            calls.append("make")
            return shape

        g = cp.Graph().add("make", make).add("same", lambda x: x, after="make")
        app = g.compile(store=path)
        record = app.run({TAG: "input", "n": 1})
        assert record.status == "succeeded", record.error
        stored = app.store.load_run(record.run_key)
        _same_result(shape, stored.outcomes["make"].output)
        _same({TAG: "input", "n": 1}, stored.input)
        calls.clear()
        _same_result(shape, app.resume(record.run_key))
        assert calls == []  # restored, not re-run
        app.store.close()


def test_new_rows_record_their_format(tmp_path):
    path = tmp_path / "runs.db"
    app = cp.Graph().add("a", lambda x: (x, x)).compile(store=path)
    assert app.invoke(1) == (1, 1)
    db = sqlite3.connect(path)
    formats = {row[0] for row in db.execute("SELECT format FROM outcomes")}
    formats |= {row[0] for row in db.execute("SELECT format FROM runs")}
    db.close()
    assert formats == {"json2"}
