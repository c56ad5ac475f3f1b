"""How outputs are written to a run store: JSON by default, pickle only on request.

JSON keeps a store readable and safe to open (loading a pickled store runs code). What
plain JSON cannot say is written as a tagged object, ``{"__counterpoint__": tag, ...}``:
the result types of counterpoint's own patterns, tuples, sets, dicts whose keys are not
all strings, user dicts that happen to hold the tag key themselves, standard-library
values (datetimes, bytes, decimals, UUIDs), enum members, dataclasses and pydantic
models (LangChain messages are pydantic models). Because every dict holding the tag key
is escaped, a tagged object in the JSON is always one of ours, and user data comes back
exactly as it went in, whatever its keys.

User classes are recorded by import path and imported again to decode; see
:mod:`counterpoint._class_paths` for why that is safe where pickle is not.

Row formats: ``json3`` is written now. ``json2`` rows (before standard-library values,
enums, dataclasses and models were tagged) and ``json`` rows (before dicts holding the
tag key were escaped, with tuples stored as lists) are still read.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import json
import pickle
import typing
import uuid
from collections.abc import Callable
from typing import Any

from . import _results
from ._class_paths import DATACLASS, ENUM, MODEL, class_path, import_class, is_pydantic_model
from ._errors import StoreError

_TAG = "__counterpoint__"
_TYPES = {
    cls.__name__: cls
    for cls in (_results.Result, _results.Merged, _results.LoopResult, _results.ChatResult,
                _results.Escalation, _results.ReviewRequest)
}
# Tags of built-in containers; a counterpoint type of the same name cannot exist.
_DICT, _TUPLE, _SET, _FROZENSET, _EXCEPTION = "dict", "tuple", "set", "frozenset", "exception"


_KNOWN: dict[str, type] = {**_TYPES, "Verdict": _results.Verdict,
                           "Subtask": _results.Subtask}


def _known_types() -> dict[str, type]:
    return _KNOWN


def _sorted_items(items: Any) -> list[Any]:
    # A stable order makes equal sets encode to equal bytes.
    return sorted(items, key=repr)


# Written as they are; checked inline below, as a call per leaf would triple the cost.
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _zone(value: datetime.datetime | datetime.time) -> dict[str, Any]:
    """What the ISO text leaves out: a named zone (the text has only its offset) and
    ``fold`` (which of two repeated wall-clock times is meant)."""
    extra: dict[str, Any] = {}
    key = getattr(value.tzinfo, "key", None)  # zoneinfo.ZoneInfo
    if isinstance(key, str):
        extra["zone"] = key
    if value.fold:
        extra["fold"] = 1
    return extra


# Standard-library values, by exact type: a subclass (a pandas Timestamp) would come
# back as its base, so it is refused rather than changed.
_STDLIB: dict[type, Callable[[Any], dict[str, Any]]] = {
    datetime.datetime: lambda v: {_TAG: "datetime", "iso": v.isoformat(), **_zone(v)},
    datetime.date: lambda v: {_TAG: "date", "iso": v.isoformat()},
    datetime.time: lambda v: {_TAG: "time", "iso": v.isoformat(), **_zone(v)},
    datetime.timedelta: lambda v: {_TAG: "timedelta", "days": v.days, "seconds": v.seconds,
                                   "microseconds": v.microseconds},
    bytes: lambda v: {_TAG: "bytes", "base64": base64.b64encode(v).decode("ascii")},
    bytearray: lambda v: {_TAG: "bytearray", "base64": base64.b64encode(v).decode("ascii")},
    decimal.Decimal: lambda v: {_TAG: "decimal", "value": str(v)},
    uuid.UUID: lambda v: {_TAG: "uuid", "hex": v.hex},
}


def _to_json(value: Any, known: dict[str, type]) -> Any:
    """``value`` as plain JSON data, tagging what JSON would otherwise change."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        return [item if type(item) in _SCALARS else _to_json(item, known) for item in value]
    if kind is dict:
        if _TAG not in value and all(type(key) is str for key in value):
            return {key: item if type(item) in _SCALARS else _to_json(item, known)
                    for key, item in value.items()}
        return _tagged_dict(value, known)
    stdlib = _STDLIB.get(kind)
    if stdlib is not None:
        return stdlib(value)
    if isinstance(value, enum.Enum):  # before str and int: IntEnum and StrEnum are both
        return _enum(value)
    if isinstance(value, (str, bool, int, float)):  # other subclasses: JSON writes the value
        return value
    if isinstance(value, dict):
        if _TAG not in value and all(type(key) is str for key in value):
            return {key: _to_json(item, known) for key, item in value.items()}
        return _tagged_dict(value, known)
    if isinstance(value, tuple):  # named tuples come back as plain tuples (equal to them)
        return {_TAG: _TUPLE, "items": [_to_json(item, known) for item in value]}
    if isinstance(value, (set, frozenset)):
        tag = _FROZENSET if isinstance(value, frozenset) else _SET
        return {_TAG: tag, "items": [_to_json(item, known) for item in _sorted_items(value)]}
    if isinstance(value, list):  # a list subclass: stored as a list
        return [_to_json(item, known) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _to_json(getattr(value, f.name), known)
                  for f in dataclasses.fields(value)}
        if known.get(kind.__name__) is kind:
            return {_TAG: kind.__name__, "fields": fields}
        return {_TAG: DATACLASS, "class": class_path(kind), "fields": fields}
    if is_pydantic_model(kind):
        return _model(value, known)
    if isinstance(value, BaseException):
        return {_TAG: _EXCEPTION, "type": kind.__name__, "message": str(value)}
    raise TypeError(f"{kind.__name__} is not JSON serializable")


def _enum(member: enum.Enum) -> dict[str, Any]:
    # By name, as values need not be JSON; a combination of Flag members has no single
    # name, so flags go by their (int) value.
    if isinstance(member, enum.Flag):
        return {_TAG: ENUM, "class": class_path(type(member)), "value": member.value}
    return {_TAG: ENUM, "class": class_path(type(member)), "name": member.name}


def _model(model: Any, known: dict[str, type]) -> dict[str, Any]:
    # Field by field through this codec, not model_dump(): nested models, datetimes and
    # tuples keep their types. Which fields were set, and extra fields, are kept too.
    cls = type(model)
    encoded: dict[str, Any] = {
        _TAG: MODEL, "class": class_path(cls),
        "fields": {name: _to_json(getattr(model, name), known) for name in cls.model_fields},
        "set": sorted(model.model_fields_set),
    }
    if model.model_extra:
        encoded["extra"] = {name: _to_json(item, known)
                            for name, item in model.model_extra.items()}
    return encoded


def _tagged_dict(value: dict[Any, Any], known: dict[str, type]) -> dict[str, Any]:
    # Pairs, not an object: a JSON object here would be read back as a tagged one, and
    # its keys would have to be strings.
    return {_TAG: _DICT, "items": [[_to_json(key, known), _to_json(item, known)]
                                   for key, item in value.items()]}


_Clock = typing.TypeVar("_Clock", datetime.datetime, datetime.time)


def _with_zone(value: _Clock, obj: dict[str, Any]) -> _Clock:
    if "zone" in obj:
        import zoneinfo  # only for values that had a named zone

        value = value.replace(tzinfo=zoneinfo.ZoneInfo(obj["zone"]))
    return value.replace(fold=1) if obj.get("fold") else value


def _dataclass(obj: dict[str, Any]) -> Any:
    # As pickle restores one: the fields are set, __init__ and __post_init__ are not run
    # (init=False fields and frozen classes come back exactly).
    cls = import_class(obj["class"], DATACLASS)
    value: Any = object.__new__(cls)
    for name, item in obj["fields"].items():
        object.__setattr__(value, name, item)
    return value


def _decoded_model(obj: dict[str, Any]) -> Any:
    # model_construct sets the stored fields without validating again: validators may
    # change values, and the values were valid when they were stored.
    cls: Any = import_class(obj["class"], MODEL)
    return cls.model_construct(_fields_set=set(obj["set"]), **obj["fields"],
                               **obj.get("extra", {}))


def _decoded_enum(obj: dict[str, Any]) -> Any:
    cls: Any = import_class(obj["class"], ENUM)
    try:
        return cls[obj["name"]] if "name" in obj else cls(obj["value"])
    except (KeyError, ValueError) as exc:
        what = obj.get("name", obj.get("value"))
        raise StoreError(
            f"the stored enum member {what!r} of {obj['class']} no longer exists in that "
            "enum; add it back (or map the old member to a new one) to read the run") \
            from exc


def _bytes(obj: dict[str, Any]) -> bytes:
    return base64.b64decode(obj["base64"], validate=True)


# What json3 rows add to the tags earlier rows have.
_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "datetime": lambda obj: _with_zone(datetime.datetime.fromisoformat(obj["iso"]), obj),
    "date": lambda obj: datetime.date.fromisoformat(obj["iso"]),
    "time": lambda obj: _with_zone(datetime.time.fromisoformat(obj["iso"]), obj),
    "timedelta": lambda obj: datetime.timedelta(obj["days"], obj["seconds"],
                                                obj["microseconds"]),
    "bytes": _bytes,
    "bytearray": lambda obj: bytearray(_bytes(obj)),
    "decimal": lambda obj: decimal.Decimal(obj["value"]),
    "uuid": lambda obj: uuid.UUID(hex=obj["hex"]),
    ENUM: _decoded_enum,
    DATACLASS: _dataclass,
    MODEL: _decoded_model,
}


def _decode_hook(obj: dict[str, Any]) -> Any:
    tag = obj.get(_TAG)
    if tag is None:
        return obj
    decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
    if decoder is not None:
        return decoder(obj)
    return _decode_json2(obj)


def _decode_json2(obj: dict[str, Any]) -> Any:
    """The tags of ``json2`` and ``json`` rows."""
    tag = obj.get(_TAG)
    if tag is None:
        return obj
    if tag == _DICT:
        return {_hashable(key): item for key, item in obj["items"]}
    if tag == _TUPLE:
        return tuple(obj["items"])
    if tag == _SET:
        return set(map(_hashable, obj["items"]))
    if tag == _FROZENSET:
        return frozenset(map(_hashable, obj["items"]))
    if tag == _EXCEPTION:
        return RuntimeError(f"{obj['type']}: {obj['message']}")
    cls = _known_types().get(tag) if isinstance(tag, str) else None
    if cls is None or set(obj) != {_TAG, "fields"}:
        # Only a row of the old "json" format can hold an untagged user dict with the
        # tag key; it is the user's data, so give it back as it is.
        return obj
    fields = dict(obj["fields"])
    # Old "json" rows stored these tuple fields as lists.
    for name in ("agreeing", "disagreeing", "history", "transcript"):
        if isinstance(fields.get(name), list):
            fields[name] = tuple(tuple(x) if isinstance(x, list) else x for x in fields[name])
    return cls(**fields)


def _hashable(key: Any) -> Any:
    # A key or set member is hashable when it went in, so a list here was a tuple in an
    # old row; a tagged tuple is already a tuple.
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


# One encoder for every call: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(allow_nan=False)
# The decode hook of each JSON row format: a "json" row may hold a user dict whose tag
# value is one of json3's tags, which must come back as the user's dict.
_HOOKS = {"json3": _decode_hook, "json2": _decode_json2, "json": _decode_json2}


class Codec:
    """Encodes values to bytes and back. ``use_pickle`` only for trusted stores."""

    def __init__(self, use_pickle: bool = False) -> None:
        self.use_pickle = use_pickle

    @property
    def format(self) -> str:
        """The serialization, as users choose it: ``"json"`` or ``"pickle"``."""
        return "pickle" if self.use_pickle else "json"

    @property
    def row_format(self) -> str:
        """The format recorded with each value written (``"json3"`` or ``"pickle"``)."""
        return "pickle" if self.use_pickle else "json3"

    def encode(self, value: Any) -> bytes:
        """``value`` as bytes in :attr:`row_format`.

        Raises:
            TypeError: a value JSON cannot hold, or an instance of a class that could not
                be imported again to decode it (defined inside a function).
            ValueError: NaN or infinity.
        """
        if self.use_pickle:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return _ENCODER.encode(_to_json(value, _known_types())).encode("utf-8")

    def decode(self, data: bytes, fmt: str) -> Any:
        """Decodes one stored value.

        Raises:
            StoreError: a pickled value in a store not opened with ``pickle=True``, a
                format this version does not know, or a stored class that cannot be
                imported or is not of the recorded kind.
        """
        hook = _HOOKS.get(fmt)
        if hook is not None:
            return json.loads(data.decode("utf-8"), object_hook=hook)
        if fmt == "pickle":
            if not self.use_pickle:
                raise StoreError(
                    "this store holds pickled values; loading them runs code, so open the "
                    "store with pickle=True (SQLiteStore(path, pickle=True)) only if you "
                    "trust it"
                )
            return pickle.loads(data)
        raise StoreError(
            f"a stored value has format {fmt!r}, which this counterpoint cannot read; "
            "upgrade counterpoint to read it"
        )
