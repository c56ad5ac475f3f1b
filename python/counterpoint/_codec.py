"""How outputs are written to a run store: JSON by default, pickle only on request.

JSON keeps a store readable and safe to open (loading a pickled store runs code). The
result types of counterpoint's own patterns round-trip through JSON as tagged objects.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from typing import Any

from . import _results

_TAG = "__counterpoint__"
_TYPES = {
    cls.__name__: cls
    for cls in (_results.Result, _results.Merged, _results.LoopResult, _results.ChatResult,
                _results.Escalation, _results.ReviewRequest)
}


def _known_types() -> dict[str, type]:
    # The pattern result parts live in modules that import this one's users.
    from .patterns.iterate import Verdict
    from .patterns.supervisor import Subtask

    return {**_TYPES, "Verdict": Verdict, "Subtask": Subtask}


def _encode_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and type(value).__name__ in _known_types():
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {_TAG: type(value).__name__, "fields": fields}
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, BaseException):
        return {_TAG: "exception", "type": type(value).__name__, "message": str(value)}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _decode_hook(obj: dict[str, Any]) -> Any:
    tag = obj.get(_TAG)
    if tag is None:
        return obj
    if tag == "exception":
        return RuntimeError(f"{obj['type']}: {obj['message']}")
    cls = _known_types()[tag]
    fields = dict(obj["fields"])
    for name in ("agreeing", "disagreeing", "history", "transcript"):
        if isinstance(fields.get(name), list):
            fields[name] = tuple(tuple(x) if isinstance(x, list) else x for x in fields[name])
    return cls(**fields)


class Codec:
    """Encodes values to bytes and back. ``use_pickle`` only for trusted stores."""

    def __init__(self, use_pickle: bool = False) -> None:
        self.use_pickle = use_pickle

    @property
    def format(self) -> str:
        return "pickle" if self.use_pickle else "json"

    def encode(self, value: Any) -> bytes:
        if self.use_pickle:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return json.dumps(value, default=_encode_default, allow_nan=False).encode("utf-8")

    def decode(self, data: bytes, fmt: str) -> Any:
        if fmt == "json":
            return json.loads(data.decode("utf-8"), object_hook=_decode_hook)
        if fmt == "pickle":
            if not self.use_pickle:
                raise ValueError(
                    "this store holds pickled values; loading them runs code, so open the "
                    "store with pickle=True only if you trust it"
                )
            return pickle.loads(data)  # noqa: S301 - opted in by the user
        raise ValueError(f"unknown value format {fmt!r}")
