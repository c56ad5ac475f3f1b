"""Typed handoffs: an agent's annotated input and output types, checked at its edges.

An agent whose input parameter or return type is annotated with a pydantic model, a
dataclass or a TypedDict (anywhere in the annotation: ``list[Draft]``, ``Draft | None``)
has its input checked before it runs and its output after it returns. The annotations
are read once, when the graph is compiled; an agent without such annotations is not
wrapped and pays nothing per call.

``compile()`` also compares connected agents' annotations (:func:`mismatches`) and
reports the pairs whose types cannot match before any agent runs.

Rules (docs/typed-handoffs.md has the table):

- A pydantic model input accepts an instance of the model, or a mapping that validates
  into one; the agent then receives the model (as LangGraph coerces state schemas). Only
  that top-level input is converted; nothing else is.
- Everything else is checked, never converted: a dataclass's fields, a TypedDict's
  required keys and field types, and the simple annotations inside them (``str``,
  ``int``, ``float`` (ints too), ``bool``, ``bytes``, ``None``, ``list[...]``,
  ``set[...]``, ``tuple[...]``, ``dict[...]``, unions and ``Optional``, ``Literal``,
  nested models, dataclasses and TypedDicts, and other plain classes by ``isinstance``).
- What it cannot check is not checked: ``Any``, type variables, protocols, callables,
  generic classes other than the containers above, and annotations that cannot be
  resolved (a name defined inside a function, under ``from __future__ import
  annotations``).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import inspect
import types
import typing
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, Union

from ._errors import HandoffError
from ._native import _core
from ._results import Result

# An annotation that is absent (no annotation, or one that cannot be resolved).
MISSING: Any = inspect.Parameter.empty


class Annotations(NamedTuple):
    """What an agent's callable declares: its input parameter's type and return type."""

    input: Any
    output: Any


# Annotations per function, so patterns that compile graphs of the same functions again
# and again (one per fan_out size, per supervisor plan) read each signature once.
_read: weakref.WeakKeyDictionary[Any, Annotations] = weakref.WeakKeyDictionary()
_NONE = Annotations(MISSING, MISSING)


def annotations_of(agent: Any) -> Annotations:
    """The input and output annotations of the callable that runs for ``agent``.

    That is the function itself, a callable object's ``__call__``, a RunnableLambda's
    function, or an object's ``invoke``/``ainvoke``. A compiled graph declares nothing.
    """
    if isinstance(agent, types.FunctionType):
        if not agent.__annotations__:  # the common case, without inspecting anything
            return _NONE
        found = _read.get(agent)
        if found is None:
            found = _read[agent] = _signature_annotations(agent)
        return found
    if inspect.isclass(agent) or isinstance(getattr(agent, "_native", None),
                                            _core.CompiledGraph):
        return _NONE
    if callable(getattr(agent, "invoke", None)) or callable(getattr(agent, "ainvoke", None)):
        # A runnable: a RunnableLambda's own function says more than its generic invoke.
        for attribute in ("afunc", "func", "ainvoke", "invoke"):
            target = getattr(agent, attribute, None)
            if isinstance(target, types.FunctionType):
                return annotations_of(target)
            if callable(target):
                return _signature_annotations(target)
    return _signature_annotations(agent) if callable(agent) else _NONE


def _signature_annotations(target: Any) -> Annotations:
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # builtins and extension callables without one
        return _NONE
    first = next((p for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)), None)
    namespace = getattr(inspect.unwrap(target), "__globals__", {})
    return Annotations(
        MISSING if first is None else _resolved(first.annotation, namespace),
        _resolved(signature.return_annotation, namespace))


def _resolved(annotation: Any, namespace: dict[str, Any]) -> Any:
    """A string annotation (``from __future__ import annotations``) evaluated in the
    function's module, or MISSING when it names what the module does not have."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, namespace)  # as typing.get_type_hints does
    except Exception:  # noqa: BLE001 - an annotation that cannot be resolved is not checked
        return MISSING


# ---- what can be checked ------------------------------------------------------------


def _is_model(tp: Any) -> bool:
    """A pydantic (v2) model class, found without importing pydantic."""
    return isinstance(tp, type) and any(
        base.__name__ == "BaseModel" and base.__module__ == "pydantic.main"
        for base in tp.__mro__)


def _is_record(tp: Any) -> bool:
    """A class whose instances are checked field by field: model, dataclass, TypedDict."""
    return isinstance(tp, type) and (
        _is_model(tp) or dataclasses.is_dataclass(tp) or typing.is_typeddict(tp))


def _mentions_record(tp: Any) -> bool:
    return _is_record(tp) or any(_mentions_record(arg) for arg in typing.get_args(tp))


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


@functools.lru_cache(maxsize=1024)
def _fields(cls: type) -> dict[str, Any]:
    """The annotated fields of a model, dataclass or TypedDict; unresolvable ones are
    MISSING."""
    if _is_model(cls):
        return {name: field.annotation for name, field in cls.model_fields.items()}  # type: ignore[attr-defined]
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - names it cannot resolve: fields unchecked
        hints = {}
    if dataclasses.is_dataclass(cls):
        return {f.name: hints.get(f.name, MISSING) for f in dataclasses.fields(cls)}
    return {name: hints.get(name, MISSING) for name in hints or cls.__annotations__}


def _required(cls: type) -> frozenset[str]:
    """The fields a mapping must have to become ``cls``."""
    if _is_model(cls):
        return frozenset(name for name, field in cls.model_fields.items()  # type: ignore[attr-defined]
                         if field.is_required())
    if typing.is_typeddict(cls):
        return frozenset(cls.__required_keys__)  # type: ignore[attr-defined]
    return frozenset()


def type_name(tp: Any) -> str:
    """``tp`` as it is written in code: ``Draft``, ``list[int]``, ``float | None``."""
    if tp is type(None) or tp is None:
        return "None"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")


class _Problem(NamedTuple):
    path: str  # "" for the value itself, else "score", "citations[0].url"
    value: Any
    expected: Any
    detail: str = ""


def _problem(value: Any, tp: Any, path: str = "") -> _Problem | None:
    """Why ``value`` is not a ``tp``, or None if it is (or ``tp`` cannot be checked)."""
    if tp is MISSING or tp is Any or tp is object:
        return None
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _problem(value, typing.get_args(tp)[0], path)
    if origin in (Union, types.UnionType):
        problems = [_problem(value, member, path) for member in typing.get_args(tp)]
        if any(problem is None for problem in problems):
            return None
        # The deepest reason, when only one member is of the value's kind.
        deeper = [p for p in problems if p is not None and p.path != path]
        return deeper[0] if len(deeper) == 1 else _Problem(path, value, tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        ok = any(value == a and type(value) is type(a) for a in allowed)
        return None if ok else _Problem(path, value, tp)
    if tp is None or tp is type(None):
        return None if value is None else _Problem(path, value, tp)
    if origin is not None:
        return _container_problem(value, tp, origin, path)
    if not isinstance(tp, type) or getattr(tp, "_is_protocol", False):
        return None  # a TypeVar, NewType, ForwardRef, protocol: not checked
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else _Problem(path, value, tp)
    if tp is int and isinstance(value, bool):
        return _Problem(path, value, tp)
    if typing.is_typeddict(tp):
        return _mapping_problem(value, tp, path)
    if not isinstance(value, tp):
        return _Problem(path, value, tp)
    if dataclasses.is_dataclass(tp):
        for name, field_type in _fields(tp).items():
            problem = _problem(getattr(value, name), field_type, _join(path, name))
            if problem is not None:
                return problem
    return None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _mapping_problem(value: Any, tp: type, path: str) -> _Problem | None:
    if not isinstance(value, Mapping):
        return _Problem(path, value, tp)
    missing = sorted(_required(tp) - value.keys())
    if missing:
        return _Problem(_join(path, missing[0]), MISSING, _fields(tp).get(missing[0], MISSING),
                        "missing")
    for name, field_type in _fields(tp).items():
        if name in value:
            found = _problem(value[name], field_type, _join(path, name))
            if found is not None:
                return found
    return None


_ITEMS = (list, set, frozenset, collections.abc.Sequence, collections.abc.MutableSequence,
          collections.abc.Set, collections.abc.MutableSet, collections.abc.Collection,
          collections.abc.Iterable)
_PAIRS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def _container_problem(value: Any, tp: Any, origin: Any, path: str) -> _Problem | None:
    args = typing.get_args(tp)
    if origin in _PAIRS:
        if not isinstance(value, origin):
            return _Problem(path, value, tp)
        if len(args) == 2:
            for key, item in value.items():
                found = _problem(key, args[0], f"{path}[{key!r}]") or \
                    _problem(item, args[1], f"{path}[{key!r}]")
                if found is not None:
                    return found
        return None
    if origin is tuple:
        if not isinstance(value, tuple):
            return _Problem(path, value, tp)
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        elif args == ((),):  # tuple[()]
            args = ()
        if len(args) != len(value):
            return _Problem(path, value, tp, f"has {len(value)} items")
        return next((p for p in (_problem(item, item_type, f"{path}[{index}]")
                                 for index, (item, item_type) in enumerate(zip(value, args)))
                     if p is not None), None)
    if origin in _ITEMS:
        # A string is a sequence of strings, but passing one for list[str] is a mistake.
        text = isinstance(value, (str, bytes)) and origin is not collections.abc.Iterable
        if text or not isinstance(value, origin):
            return _Problem(path, value, tp)
        if args and isinstance(value, (list, tuple, set, frozenset)):  # not iterators
            for index, item in enumerate(value):
                found = _problem(item, args[0], f"{path}[{index}]")
                if found is not None:
                    return found
        return None
    if isinstance(origin, type) and not getattr(origin, "_is_protocol", False):
        return None if isinstance(value, origin) else _Problem(path, value, tp)
    return None  # Callable[...], generic aliases of other kinds: not checked


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(problem: _Problem) -> str:
    expected = type_name(problem.expected)
    if problem.detail == "missing":
        return f"field '{problem.path}' is missing (expects {expected})"
    detail = f" ({problem.detail})" if problem.detail else ""
    if not problem.path:
        return f"{_shown(problem.value)} ({type(problem.value).__name__}){detail} is not a " \
               f"valid {expected}"
    return f"field '{problem.path}' = {_shown(problem.value)}{detail} is not a valid " \
           f"{expected} (expects {expected})"


# ---- checks at the edges --------------------------------------------------------------


def _model_input(agent: str, tp: type, value: Any) -> Any:
    """A pydantic model input: the model itself, or a mapping validated into one."""
    if isinstance(value, tp):
        return value
    if not isinstance(value, Mapping):
        raise _error(agent, "input", _Problem("", value, tp, ""))
    from pydantic import ValidationError  # the model's own pydantic, already imported

    try:
        return tp.model_validate(dict(value))  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise _pydantic_error(agent, tp, exc) from exc


def _pydantic_error(agent: str, tp: type, exc: Any) -> HandoffError:
    details = []
    errors = exc.errors(include_url=False)
    for error in errors:
        path = _loc_path(error["loc"])
        field_type = _field_type(tp, error["loc"])
        expected = "a value" if field_type is MISSING else type_name(field_type)
        message = error["msg"][:1].lower() + error["msg"][1:]
        if error["type"] == "missing":
            details.append(f"field '{path}' is missing (expects {expected})")
        else:
            details.append(f"field '{path}' = {_shown(error['input'])} is not a valid "
                           f"{expected}: {message}")
    first = errors[0]  # pydantic raises with at least one error
    value = None if first["type"] == "missing" else first.get("input")
    return HandoffError(agent, "input", "; ".join(details),
                        _loc_path(first["loc"]) or None, value)


def _loc_path(loc: Sequence[Any]) -> str:
    """pydantic's error location written as this module writes paths: ``items[0].url``."""
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
    return path


def _field_type(tp: Any, loc: Sequence[Any]) -> Any:
    """The annotation of the field pydantic's error location points at, as far as it
    can be followed (MISSING past that)."""
    for part in loc:
        while _is_union(tp) or typing.get_origin(tp) is typing.Annotated:
            members = [m for m in typing.get_args(tp) if m is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        if isinstance(part, str) and _is_record(tp):
            tp = _fields(tp).get(part, MISSING)
        elif isinstance(part, int) and typing.get_origin(tp) in (list, tuple, set, frozenset):
            tp = typing.get_args(tp)[0]
        else:
            return tp
    return tp


def _error(agent: str, direction: str, problem: _Problem) -> HandoffError:
    return HandoffError(agent, direction, _describe(problem), problem.path or None,
                        None if problem.value is MISSING else problem.value)


def _model_in(tp: Any) -> type | None:
    """The model a top-level input annotation converts mappings into: ``M`` or
    ``M | None``."""
    members = [m for m in typing.get_args(tp) if m is not type(None)] if _is_union(tp) \
        else [tp]
    return members[0] if len(members) == 1 and _is_model(members[0]) else None


def _input_check(agent: str, tp: Any) -> Callable[[Any], Any]:
    model = _model_in(tp)

    def check(value: Any) -> Any:
        if model is not None and value is not None:
            return _model_input(agent, model, value)
        problem = _problem(value, tp)
        if problem is not None:
            raise _error(agent, "input", problem)
        return value

    return check


def _output_check(agent: str, tp: Any) -> Callable[[Any], None]:
    def check(output: Any) -> None:
        if isinstance(output, _core.Delegation):
            return  # the child run's result arrives later, unchecked
        problem = _problem(output, tp)
        if problem is not None and isinstance(output, (_core.Routed, Result)):
            problem = _problem(output.value, tp)  # what successors are handed
        if problem is not None:
            raise _error(agent, "output", problem)

    return check


def checked(agent: str, annotations: Annotations) -> Callable[[Any, bool], Any] | None:
    """What wraps the agent's callable to check its edges, or None when its annotations
    name no model, dataclass or TypedDict (the callable then runs as it is)."""
    check_input = _input_check(agent, annotations.input) \
        if _mentions_record(annotations.input) else None
    check_output = _output_check(agent, annotations.output) \
        if _mentions_record(annotations.output) else None
    if check_input is None and check_output is None:
        return None

    def wrap(call: Callable[[Any], Any], is_async: bool) -> Callable[[Any], Any]:
        if is_async:
            async def checked_async(value: Any) -> Any:
                if check_input is not None:
                    value = check_input(value)
                output = await call(value)
                if check_output is not None:
                    check_output(output)
                return output

            return checked_async

        def checked_sync(value: Any) -> Any:
            if check_input is not None:
                value = check_input(value)
            output = call(value)
            if check_output is not None:
                check_output(output)
            return output

        return checked_sync

    return wrap


# ---- compile time ---------------------------------------------------------------------


class Node(NamedTuple):
    """One agent as :func:`mismatches` sees it."""

    name: str
    after: Sequence[str]
    annotations: Annotations


class Mismatch(NamedTuple):
    """Connected agents whose annotated types cannot match."""

    agent: str  # the successor
    problem: str  # names both agents and both types


def mismatches(nodes: Sequence[Node]) -> list[Mismatch]:
    """Every pair of connected agents whose annotated types cannot match, in graph order.
    Unannotated or ``Any`` sides never mismatch."""
    outputs = {node.name: node.annotations.output for node in nodes}
    found: list[Mismatch] = []
    for node in nodes:
        takes = node.annotations.input
        if takes is MISSING or not node.after:
            continue
        if len(node.after) == 1:
            returns = outputs.get(node.after[0], MISSING)
            problems = [] if can_match(returns, takes) else [
                f"agent '{node.after[0]}' returns {type_name(returns)}, but agent "
                f"'{node.name}' takes {type_name(takes)}"]
        else:
            problems = _joined_mismatches(node, takes, outputs)
        found.extend(Mismatch(node.name, problem) for problem in problems)
    return found


def _joined_mismatches(node: Node, takes: Any, outputs: dict[str, Any]) -> list[str]:
    """An agent after several others receives ``{predecessor: output}``: a TypedDict or
    model input is compared field by field, a ``dict[str, X]`` value by value."""
    names = ", ".join(f"'{name}'" for name in node.after)
    receives = f"agent '{node.name}' receives {{name: output}} of {names}"
    members = [m for m in typing.get_args(takes) if m is not type(None)] \
        if _is_union(takes) else [takes]
    if len(members) != 1:
        return []
    shape = members[0]
    if typing.is_typeddict(shape) or _is_model(shape):
        found = []
        fields = _fields(shape)
        for name in sorted(_required(shape) - set(node.after)):
            found.append(f"{receives}, but takes {type_name(shape)}, whose required field "
                         f"'{name}' is none of them")
        for name in node.after:
            returns = outputs.get(name, MISSING)
            if name in fields and not can_match(returns, fields[name]):
                found.append(f"agent '{name}' returns {type_name(returns)}, but agent "
                             f"'{node.name}' takes {type_name(shape)}, whose field "
                             f"'{name}' is {type_name(fields[name])}")
        return found
    if typing.get_origin(shape) in _PAIRS:
        args = typing.get_args(shape)
        return [f"agent '{name}' returns {type_name(outputs.get(name))}, but agent "
                f"'{node.name}' takes {type_name(shape)}"
                for name in node.after
                if len(args) == 2 and not can_match(outputs.get(name, MISSING), args[1])]
    if not can_match(dict, shape):
        return [f"{receives}, but takes {type_name(takes)}"]
    return []


def _unknown(tp: Any) -> bool:
    return tp is MISSING or tp is Any or tp is object or isinstance(
        tp, (typing.TypeVar, typing.ForwardRef, str)) or (
        isinstance(tp, type) and getattr(tp, "_is_protocol", False))


def can_match(returns: Any, takes: Any) -> bool:
    """False only when no value of type ``returns`` can be a valid ``takes`` input."""
    if _unknown(returns) or _unknown(takes):
        return True
    if typing.get_origin(returns) is typing.Annotated:
        return can_match(typing.get_args(returns)[0], takes)
    if typing.get_origin(takes) is typing.Annotated:
        return can_match(returns, typing.get_args(takes)[0])
    if _is_union(returns):
        return any(can_match(member, takes) for member in typing.get_args(returns))
    if _is_union(takes):
        return any(can_match(returns, member) for member in typing.get_args(takes))
    if typing.get_origin(returns) is Literal:
        return any(_problem(value, takes) is None for value in typing.get_args(returns))
    if typing.get_origin(takes) is Literal:
        return any(can_match(returns, type(value)) for value in typing.get_args(takes))
    return _classes_match(returns, takes)


def _as_class(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """``(class, type arguments)``; a TypedDict is a dict, None is NoneType."""
    if tp is None:
        return type(None), ()
    if isinstance(tp, type) and typing.is_typeddict(tp):
        return dict, ()
    origin = typing.get_origin(tp)
    return (origin, typing.get_args(tp)) if origin is not None else (tp, ())


def _classes_match(returns: Any, takes: Any) -> bool:
    if isinstance(returns, type) and isinstance(takes, type) and \
            typing.is_typeddict(returns) and typing.is_typeddict(takes):
        have = _fields(returns)
        return all(name in have and can_match(have[name], field_type)
                   for name, field_type in _fields(takes).items() if name in _required(takes))
    made, made_args = _as_class(returns)
    wanted, wanted_args = _as_class(takes)
    if not isinstance(made, type) or not isinstance(wanted, type):
        return True  # a special form it does not know: not checked
    try:
        if _is_model(wanted) and issubclass(made, Mapping):
            return True  # a mapping is validated into the model
        if (made is int and wanted in (float, complex)) or (made is float and wanted is complex):
            return True
        if not (issubclass(made, wanted) or issubclass(wanted, made)):
            return False
    except TypeError:  # issubclass() refuses some classes (protocols with members)
        return True
    if len(made_args) != len(wanted_args) or Ellipsis in made_args + wanted_args:
        return True  # different shapes of arguments: not compared
    return all(can_match(r, t) for r, t in zip(made_args, wanted_args))
