"""The JSON codec gives user data back exactly, whatever its keys: dicts holding the
codec's own tag key at any depth, tuples, sets, non-string keys, counterpoint result
types, through the codec, the store and a resume; and it round-trips exactly what agents
commonly return (datetimes, bytes, decimals, UUIDs, enums, dataclasses, pydantic models,
LangChain messages) without pickle, refusing to decode a class of another kind."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
import random
import sqlite3
import uuid
import zoneinfo

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
    assert formats == {"json3"}


# ---- standard-library values, enums, dataclasses, pydantic models, chat messages --------

pydantic = pytest.importorskip("pydantic")
messages = pytest.importorskip("langchain_core.messages")


class Color(enum.Enum):
    RED = (255, 0, 0)  # a value JSON would turn into a list
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"
    SAFE = "safe"


class Perm(enum.Flag):
    READ = 1
    WRITE = 2


@dataclasses.dataclass
class Point:
    x: float
    y: float
    label: str | None = None


@dataclasses.dataclass(frozen=True)
class Segment:
    start: Point
    end: Point
    created: datetime.datetime
    length: float = dataclasses.field(init=False, default=0.0)


class Citation(pydantic.BaseModel):
    url: str
    fetched: datetime.datetime
    digest: bytes


class Draft(pydantic.BaseModel):
    title: str
    score: float
    notes: str | None = None
    citations: list[Citation] = pydantic.Field(default_factory=list)
    level: Level = Level.LOW
    shape: tuple[int, int] = (0, 0)
    key: uuid.UUID | None = None


class Loose(pydantic.BaseModel, extra="allow"):
    name: str


class Frozen(pydantic.BaseModel, frozen=True):
    name: str
    at: datetime.date


_PARIS = zoneinfo.ZoneInfo("Europe/Paris")
_WHEN = datetime.datetime(2025, 3, 30, 1, 59, 59, 999999)

EVERY_TYPE = {
    "naive datetime": _WHEN,
    "utc datetime": _WHEN.replace(tzinfo=datetime.timezone.utc),
    "offset datetime": _WHEN.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=-3,
                                                                                 minutes=-30))),
    "zoned datetime": _WHEN.replace(tzinfo=_PARIS),
    "folded datetime": datetime.datetime(2025, 10, 26, 2, 30, fold=1, tzinfo=_PARIS),
    "date": datetime.date(1969, 7, 20),
    "time": datetime.time(23, 59, 1, 5),
    "aware time": datetime.time(8, 0, tzinfo=datetime.timezone.utc),
    "timedelta": datetime.timedelta(days=-2, seconds=5, microseconds=7),
    "bytes": b"\x00\xffbinary\n",
    "empty bytes": b"",
    "bytearray": bytearray(b"abc"),
    "decimal": decimal.Decimal("-1234.5678901234567890123"),
    "decimal nan": decimal.Decimal("NaN"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "enum": Color.RED,
    "int enum": Level.HIGH,
    "str enum": Mode.SAFE,
    "flag": Perm.READ | Perm.WRITE,
    "dataclass": Point(1.0, -2.5),
    "frozen nested dataclass": Segment(Point(0.0, 0.0, "o"), Point(3.0, 4.0), _WHEN),
    "model": Draft(title="t", score=0.5),
    "nested models": Draft(title="t", score=1.0, notes="n", level=Level.HIGH, shape=(2, 3),
                           key=uuid.UUID(int=7),
                           citations=[Citation(url="u", fetched=_WHEN, digest=b"\x01")]),
    "extra fields": Loose(name="x", tokens=3, when=_WHEN),
    "frozen model": Frozen(name="f", at=datetime.date(2020, 2, 29)),
    "ai message": messages.AIMessage(
        content="calling", id="run-1", name="bot",
        additional_kwargs={"refusal": None}, response_metadata={"model_name": "m"},
        tool_calls=[{"name": "search", "args": {"q": "x", "n": 2}, "id": "call_1"}],
        usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}),
    "human message": messages.HumanMessage(content=[{"type": "text", "text": "hi"}], id="h1"),
    "system message": messages.SystemMessage("be brief"),
    "tool message": messages.ToolMessage("42", tool_call_id="call_1", artifact={"raw": 42},
                                         status="success"),
    "ai message chunk": messages.AIMessageChunk(
        content="par", id="c", tool_call_chunks=[
            {"name": "search", "args": '{"q": ', "id": "call_1", "index": 0}]),
    "enum keys and members in containers": {Level.LOW: [Mode.FAST, {Color.GREEN}],
                                            (Perm.READ, 1): frozenset({Level.HIGH})},
}
EVERY_TYPE["everything at once"] = {"all": list(EVERY_TYPE.values()),
                                    "as tuple": tuple(EVERY_TYPE.values())}


def _exactly(a, b, path="value"):
    """Equal and of the same types all the way down, into datetimes' zones, enum members,
    dataclass fields, models' fields, extras and set fields."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, (datetime.datetime, datetime.time)):
        assert (a, a.tzinfo, a.fold) == (b, b.tzinfo, b.fold), path
        assert type(a.tzinfo) is type(b.tzinfo), path
    elif isinstance(a, decimal.Decimal):
        assert str(a) == str(b), path  # NaN is not equal to itself
    elif isinstance(a, enum.Enum):
        assert a is b, path
    elif isinstance(a, pydantic.BaseModel):
        assert a.model_fields_set == b.model_fields_set, path
        assert a.model_extra == b.model_extra, path
        for name in type(a).model_fields:
            _exactly(getattr(a, name), getattr(b, name), f"{path}.{name}")
        assert a == b, path
    elif dataclasses.is_dataclass(a):
        for field in dataclasses.fields(a):
            _exactly(getattr(a, field.name), getattr(b, field.name), f"{path}.{field.name}")
    elif isinstance(a, dict):
        assert len(a) == len(b), path
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            _exactly(ka, kb, f"{path} key {ka!r}")
            _exactly(va, vb, f"{path}[{ka!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for index, (x, y) in enumerate(zip(a, b)):
            _exactly(x, y, f"{path}[{index}]")
    else:
        _same(a, b, path)


@pytest.mark.parametrize("name", list(EVERY_TYPE))
def test_every_listed_type_round_trips_exactly_through_the_codec(name):
    codec = Codec()
    encoded = codec.encode(EVERY_TYPE[name])
    assert b"pickle" not in encoded and TAG.encode() in encoded  # tagged JSON, no pickle
    _exactly(EVERY_TYPE[name], codec.decode(encoded, codec.row_format))


@pytest.fixture
def store(stores):
    """A real store of each backend (SQLite, PostgreSQL: see conftest.py)."""
    opened = stores.open()
    yield opened
    opened.close()


@pytest.fixture
def sqlite_store(tmp_path):
    """A SQLite store, for the tests that read or damage its rows directly."""
    opened = cp.SQLiteStore(tmp_path / "runs.db")
    yield opened
    opened.close()


@pytest.mark.parametrize("name", list(EVERY_TYPE))
def test_every_listed_type_round_trips_exactly_through_a_store(store, name):
    value = EVERY_TYPE[name]
    app = cp.Graph().add("make", lambda _: value).add("same", lambda x: x, after="make") \
        .compile(store=store)
    record = app.run(value)
    assert record.status == "succeeded", record.error
    stored = store.load_run(record.run_key)
    _exactly(value, stored.input)
    _exactly(value, stored.outcomes["make"].output)
    _exactly(value, stored.outcomes["same"].output)
    _exactly(value, app.resume(record.run_key))  # restored from the store, not re-run


def test_outputs_of_new_types_are_written_as_json3_rows(sqlite_store):
    store = sqlite_store
    app = cp.Graph().add("a", lambda _: _WHEN).compile(store=store)
    record = app.run(b"x")
    db = sqlite3.connect(store.path)
    formats = {row[0] for row in db.execute("SELECT format FROM outcomes")}
    formats |= {row[0] for row in db.execute("SELECT format FROM runs WHERE run_key = ?",
                                              (record.run_key,))}
    db.close()
    assert formats == {"json3"}


def test_a_class_defined_inside_a_function_is_refused_when_encoded(tmp_path):
    @dataclasses.dataclass
    class Local:
        x: int

    with pytest.raises(TypeError, match=r"Local is defined inside a function.*module level"):
        Codec().encode({"v": Local(1)})
    app = cp.Graph().add("make", lambda _: Local(1)).compile(store=tmp_path / "runs.db")
    with pytest.raises(cp.AgentError) as failed:
        app.invoke(None)
    assert failed.value.agent == "make"
    assert isinstance(failed.value.__cause__, cp.StoreError)
    assert "define the class at module level" in str(failed.value.__cause__)
    app.store.close()


def test_a_class_that_cannot_be_imported_again_names_the_class_and_the_row(sqlite_store):
    store = sqlite_store
    app = cp.Graph().add("make", lambda _: Point(1.0, 2.0)).compile(store=store)
    record = app.run(None)
    db = sqlite3.connect(store.path)  # as if the class was renamed since
    (output,) = db.execute("SELECT output FROM outcomes").fetchone()
    db.execute("UPDATE outcomes SET output = ?",
               (output.replace(b"test_codec:Point", b"test_codec:RenamedPoint"),))
    db.commit()
    db.close()
    with pytest.raises(cp.StoreError) as error:
        store.load_run(record.run_key)
    message = str(error.value)
    assert "test_codec:RenamedPoint" in message and "agent 'make'" in message
    assert record.run_key in message and "cannot be imported" in message


@pytest.mark.parametrize(("tag", "path"), [
    ("model", "subprocess:Popen"),        # a class, but not a pydantic model
    ("dataclass", "os:system"),           # not a class at all
    ("enum", "test_codec:Point"),         # a class of another kind
    ("model", "no_such_module_here:Model"),
    ("dataclass", "no colon"),
])
def test_decoding_never_uses_a_class_of_another_kind(tag, path):
    row = json.dumps({TAG: tag, "class": path, "fields": {"args": ["true"]}, "set": [],
                      "name": "X"}).encode()
    with pytest.raises(cp.StoreError, match=path.replace(" ", ".")):
        Codec().decode(row, "json3")


def test_a_removed_enum_member_is_a_clear_error():
    row = json.dumps({TAG: "enum", "class": "test_codec:Level", "name": "MEDIUM"}).encode()
    with pytest.raises(cp.StoreError, match="'MEDIUM' of test_codec:Level no longer exists"):
        Codec().decode(row, "json3")


def test_older_rows_keep_user_dicts_that_look_like_new_tags():
    # Before json3, no row held these tags; a "json" row may hold such a user dict as is.
    user = {TAG: "datetime", "iso": "2020-01-01T00:00:00"}
    assert Codec().decode(json.dumps(user).encode(), "json") == user
    escaped = json.dumps({TAG: "dict", "items": [[TAG, "bytes"], ["base64", ""]]}).encode()
    assert Codec().decode(escaped, "json2") == {TAG: "bytes", "base64": ""}


def test_subclasses_of_standard_types_are_refused_not_changed():
    class Stamp(datetime.datetime):
        pass

    with pytest.raises(TypeError, match="Stamp is not JSON serializable"):
        Codec().encode(Stamp(2020, 1, 1))
