"""How outputs are written to a run store: JSON by default, pickle only on request.

JSON keeps a store readable and safe to open (loading a pickled store runs code). What
plain JSON cannot say is written as a tagged object, ``{"__counterpoint__": tag, ...}``:
the result types of counterpoint's own patterns, tuples, sets, dicts whose keys are not
all strings, and user dicts that happen to hold the tag key themselves. Because every
dict holding the tag key is escaped, a tagged object in the JSON is always one of ours,
and user data comes back exactly as it went in, whatever its keys.

Row formats: ``json2`` is written now. ``json`` rows (written before dicts holding the
tag key were escaped, with tuples stored as lists) are still read.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from typing import Any

from . import _results
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
    if isinstance(value, (str, bool, int, float)):  # subclasses (enums): JSON writes the value
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
    if dataclasses.is_dataclass(value) and known.get(kind.__name__) is kind:
        fields = {f.name: _to_json(getattr(value, f.name), known)
                  for f in dataclasses.fields(value)}
        return {_TAG: kind.__name__, "fields": fields}
    if isinstance(value, BaseException):
        return {_TAG: _EXCEPTION, "type": kind.__name__, "message": str(value)}
    raise TypeError(f"{kind.__name__} is not JSON serializable")


def _tagged_dict(value: dict[Any, Any], known: dict[str, type]) -> dict[str, Any]:
    # Pairs, not an object: a JSON object here would be read back as a tagged one, and
    # its keys would have to be strings.
    return {_TAG: _DICT, "items": [[_to_json(key, known), _to_json(item, known)]
                                   for key, item in value.items()]}


def _decode_hook(obj: dict[str, Any]) -> Any:
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
        """The format recorded with each value written (``"json2"`` or ``"pickle"``)."""
        return "pickle" if self.use_pickle else "json2"

    def encode(self, value: Any) -> bytes:
        if self.use_pickle:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return _ENCODER.encode(_to_json(value, _known_types())).encode("utf-8")

    def decode(self, data: bytes, fmt: str) -> Any:
        """Decodes one stored value.

        Raises:
            StoreError: a pickled value in a store not opened with ``pickle=True``, or a
                format this version does not know.
        """
        if fmt in ("json", "json2"):
            return json.loads(data.decode("utf-8"), object_hook=_decode_hook)
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
