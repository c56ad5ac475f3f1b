"""Whether a value is of an annotated type, for typed handoffs.

Each annotation is turned once into a check function (cached per annotation), so a call
pays only the ``isinstance`` tests its types need, not the walk over the annotation.

What is checked: ``str``, ``int`` (not ``bool``), ``float`` (ints too), ``bool``,
``bytes``, ``None``, ``list[...]``, ``set[...]``, ``frozenset[...]``, ``tuple[...]``,
``dict[...]`` and their ``collections.abc`` counterparts, unions and ``Optional``,
``Literal``, ``Annotated``, pydantic models (an instance, already validated), dataclasses
(an instance, field by field), TypedDicts (a mapping with the required keys, field by
field), and other plain classes by ``isinstance``. What is not: ``Any``, type variables,
protocols, callables, other generic forms, and annotations that could not be resolved.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple, Union

# An annotation that is absent (no annotation, or one that cannot be resolved).
MISSING: Any = inspect.Parameter.empty


class Problem(NamedTuple):
    """Why a value is not of its annotated type."""

    path: str  # "" for the value itself, else "score", "citations[0].url"
    value: Any  # MISSING for a missing field
    expected: Any  # the annotation it failed
    detail: str = ""


# ``check(value, path)``: None when the value is of the type, else the Problem.
Check = Callable[[Any, str], "Problem | None"]


def is_model(tp: Any) -> bool:
    """A pydantic (v2) model class, found without importing pydantic."""
    return isinstance(tp, type) and any(
        base.__name__ == "BaseModel" and base.__module__ == "pydantic.main"
        for base in tp.__mro__)


def is_record(tp: Any) -> bool:
    """A class whose instances are checked field by field: model, dataclass, TypedDict."""
    return isinstance(tp, type) and (
        is_model(tp) or dataclasses.is_dataclass(tp) or typing.is_typeddict(tp))


def mentions_record(tp: Any) -> bool:
    """True if a model, dataclass or TypedDict appears anywhere in the annotation."""
    return is_record(tp) or any(mentions_record(arg) for arg in typing.get_args(tp))


def is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


@functools.lru_cache(maxsize=1024)
def fields(cls: type) -> dict[str, Any]:
    """The annotated fields of a model, dataclass or TypedDict; unresolvable ones are
    MISSING."""
    if is_model(cls):
        return {name: field.annotation for name, field in cls.model_fields.items()}  # type: ignore[attr-defined]
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - names it cannot resolve: the fields go unchecked
        hints = {}
    if dataclasses.is_dataclass(cls):
        return {f.name: hints.get(f.name, MISSING) for f in dataclasses.fields(cls)}
    return {name: hints.get(name, MISSING) for name in hints or cls.__annotations__}


def required(cls: type) -> frozenset[str]:
    """The keys a mapping must have to be (or become) a ``cls``."""
    if is_model(cls):
        return frozenset(name for name, field in cls.model_fields.items()  # type: ignore[attr-defined]
                         if field.is_required())
    if typing.is_typeddict(cls):
        return frozenset(cls.__required_keys__)  # type: ignore[attr-defined]
    return frozenset()


def type_name(tp: Any) -> str:
    """``tp`` as it is written in code: ``Draft``, ``list[Draft]``, ``float | None``."""
    if tp is type(None) or tp is None:
        return "None"
    if tp is Ellipsis:
        return "..."
    if isinstance(tp, list):  # Callable's parameters
        return f"[{', '.join(type_name(arg) for arg in tp)}]"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is None or not args:
        return tp.__qualname__ if isinstance(tp, type) else repr(tp).replace("typing.", "")
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    return f"{type_name(origin)}[{', '.join(type_name(arg) for arg in args)}]"


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# ---- compiled checks ----------------------------------------------------------------------

_checks: dict[Any, Check | None] = {}


def check_for(tp: Any) -> Check | None:
    """The check of annotation ``tp``, or None when there is nothing to check."""
    try:
        return _checks[tp]
    except KeyError:
        check = _checks[tp] = _build(tp)
        return check
    except TypeError:  # an unhashable annotation (Annotated with a dict): not cached
        return _build(tp)


def _isinstance(tp: Any, classes: Any) -> Check:
    def check(value: Any, path: str) -> Problem | None:
        return None if isinstance(value, classes) else Problem(path, value, tp)

    return check


def _build(tp: Any) -> Check | None:
    if tp is MISSING or tp is Any or tp is object:
        return None
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return check_for(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return _union(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)

        def literal(value: Any, path: str) -> Problem | None:
            ok = any(value == a and type(value) is type(a) for a in allowed)
            return None if ok else Problem(path, value, tp)

        return literal
    if tp is None or tp is type(None):
        return _isinstance(tp, type(None))
    if origin is not None:
        return _container(tp, origin)
    if not isinstance(tp, type) or getattr(tp, "_is_protocol", False):
        return None  # a TypeVar, NewType, ForwardRef, protocol: not checked
    if tp is float or tp is int:
        numbers = (int, float) if tp is float else int

        def number(value: Any, path: str) -> Problem | None:
            ok = isinstance(value, numbers) and not isinstance(value, bool)
            return None if ok else Problem(path, value, tp)

        return number
    if typing.is_typeddict(tp):
        return _typeddict(tp)
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp)
    return _isinstance(tp, tp)  # models are valid once made; other classes as they are


def _union(tp: Any) -> Check | None:
    members = [check_for(member) for member in typing.get_args(tp)]
    if any(member is None for member in members):
        return None  # a member that accepts anything
    checks = typing.cast(list[Check], members)

    def union(value: Any, path: str) -> Problem | None:
        problems = []
        for check in checks:
            problem = check(value, path)
            if problem is None:
                return None
            problems.append(problem)
        # The deeper reason, when only one member is of the value's kind.
        deeper = [problem for problem in problems if problem.path != path]
        return deeper[0] if len(deeper) == 1 else Problem(path, value, tp)

    return union


def _field_checks(cls: type) -> Callable[[], list[tuple[str, Check]]]:
    """The checks of ``cls``'s fields, made at the first call: a class may refer to
    itself (a tree of nodes), so they cannot be made while ``cls``'s own is."""
    @functools.cache
    def made() -> list[tuple[str, Check]]:
        return [(name, check) for name, field_type in fields(cls).items()
                if (check := check_for(field_type)) is not None]

    return made


def _dataclass(cls: type) -> Check:
    field_checks = _field_checks(cls)

    def dataclass(value: Any, path: str) -> Problem | None:
        if not isinstance(value, cls):
            return Problem(path, value, cls)
        for name, check in field_checks():
            problem = check(getattr(value, name), join(path, name))
            if problem is not None:
                return problem
        return None

    return dataclass


def _typeddict(cls: type) -> Check:
    field_checks = _field_checks(cls)
    keys = required(cls)

    def typeddict(value: Any, path: str) -> Problem | None:
        if not isinstance(value, Mapping):
            return Problem(path, value, cls)
        if not keys <= value.keys():
            name = min(keys - value.keys())
            return Problem(join(path, name), MISSING, fields(cls).get(name, MISSING), "missing")
        for name, check in field_checks():
            if name in value:
                problem = check(value[name], join(path, name))
                if problem is not None:
                    return problem
        return None

    return typeddict


_ITEMS = (list, set, frozenset, collections.abc.Sequence, collections.abc.MutableSequence,
          collections.abc.Set, collections.abc.MutableSet, collections.abc.Collection,
          collections.abc.Iterable)
PAIRS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def _container(tp: Any, origin: Any) -> Check | None:
    args = typing.get_args(tp)
    if origin in PAIRS:
        return _pairs(tp, origin, *(check_for(arg) for arg in args[:2]))
    if origin is tuple:
        return _tuple(tp, args)
    if origin in _ITEMS:
        return _items(tp, origin, check_for(args[0]) if args else None)
    if isinstance(origin, type) and not getattr(origin, "_is_protocol", False):
        return _isinstance(tp, origin)
    return None  # Callable[...], generic aliases of other kinds: not checked


def _pairs(tp: Any, origin: type, keys: Check | None = None,
           items: Check | None = None) -> Check:
    def pairs(value: Any, path: str) -> Problem | None:
        if not isinstance(value, origin):
            return Problem(path, value, tp)
        if keys is not None or items is not None:
            for key, item in typing.cast(Mapping[Any, Any], value).items():
                where = f"{path}[{key!r}]"
                problem = keys(key, where) if keys is not None else None
                if problem is None and items is not None:
                    problem = items(item, where)
                if problem is not None:
                    return problem
        return None

    return pairs


def _tuple(tp: Any, args: tuple[Any, ...]) -> Check:
    variadic = len(args) == 2 and args[1] is Ellipsis
    each = check_for(args[0]) if variadic else None
    checks = [] if variadic or args == ((),) else [check_for(arg) for arg in args]

    def fixed(value: Any, path: str) -> Problem | None:
        if not isinstance(value, tuple):
            return Problem(path, value, tp)
        if variadic:
            pairs: list[tuple[Check | None, Any]] = [(each, item) for item in value]
        elif len(value) != len(checks):
            return Problem(path, value, tp, f"has {len(value)} items")
        else:
            pairs = list(zip(checks, value))
        for index, (check, item) in enumerate(pairs):
            problem = check(item, f"{path}[{index}]") if check is not None else None
            if problem is not None:
                return problem
        return None

    return fixed


def _items(tp: Any, origin: type, each: Check | None) -> Check:
    # A string is a sequence of strings, but passing one for list[str] is a mistake.
    text_is_wrong = origin is not collections.abc.Iterable

    def items(value: Any, path: str) -> Problem | None:
        if not isinstance(value, origin) or \
                (text_is_wrong and isinstance(value, (str, bytes))):
            return Problem(path, value, tp)
        if each is not None and isinstance(value, (list, tuple, set, frozenset)):  # not
            for index, item in enumerate(value):                              # iterators
                problem = each(item, f"{path}[{index}]")
                if problem is not None:
                    return problem
        return None

    return items
