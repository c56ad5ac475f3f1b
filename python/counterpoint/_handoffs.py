"""Typed handoffs: an agent's annotated input and output types, checked at its edges.

An agent whose input parameter or return type is annotated with a pydantic model, a
dataclass or a TypedDict (anywhere in the annotation: ``list[Draft]``, ``Draft | None``)
has its input checked before it runs and its output after it returns. The annotations
are read once, when the graph is compiled; an agent without such annotations is not
wrapped and pays nothing per call.

``compile()`` also compares connected agents' annotations (:func:`mismatches`) and
reports the pairs whose types cannot match before any agent runs.

Rules (docs/typed-handoffs.md has the table): a pydantic model input accepts an
instance of the model, or a mapping that validates into one, and the agent receives the
model (as LangGraph coerces state schemas); only that top-level input is converted.
Everything else is checked, never converted, as :mod:`counterpoint._type_checks` says.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from ._errors import HandoffError
from ._native import _core
from ._results import Result
from ._type_checks import (
    MISSING,
    PAIRS,
    Problem,
    check_for,
    fields,
    is_model,
    is_record,
    is_union,
    join,
    mentions_record,
    required,
    type_name,
)


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
    namespace = _module_namespace(target)
    return Annotations(
        MISSING if first is None else _resolved(first.annotation, namespace),
        _resolved(signature.return_annotation, namespace))


def _module_namespace(target: Any) -> dict[str, Any]:
    """Where the names in ``target``'s string annotations are defined: the globals of
    the function behind it (a method's, a partial's, a callable object's ``__call__``)."""
    function = inspect.unwrap(target)
    if isinstance(function, functools.partial):
        function = function.func
    if not hasattr(function, "__globals__") and not inspect.isroutine(function):
        function = getattr(type(function), "__call__", None)  # noqa: B004 - the method
    return getattr(function, "__globals__", {})


def _resolved(annotation: Any, namespace: dict[str, Any]) -> Any:
    """A string annotation (``from __future__ import annotations``) evaluated in the
    function's module, or MISSING when it names what the module does not have."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, namespace)  # as typing.get_type_hints does
    except Exception:  # noqa: BLE001 - an annotation that cannot be resolved is not checked
        return MISSING


# ---- checks at the edges --------------------------------------------------------------


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(problem: Problem) -> str:
    expected = type_name(problem.expected)
    if problem.detail == "missing":
        return f"field '{problem.path}' is missing (expects {expected})"
    detail = f" ({problem.detail})" if problem.detail else ""
    if not problem.path:
        return f"{_shown(problem.value)} ({type(problem.value).__name__}){detail} is not a " \
               f"valid {expected}"
    return f"field '{problem.path}' = {_shown(problem.value)}{detail} is not a valid " \
           f"{expected} (expects {expected})"


def _model_input(agent: str, tp: type, value: Any) -> Any:
    """A pydantic model input: the model itself, or a mapping validated into one."""
    if isinstance(value, tp):
        return value
    if not isinstance(value, Mapping):
        raise _error(agent, "input", Problem("", value, tp))
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
        path = f"{path}[{part}]" if isinstance(part, int) else join(path, str(part))
    return path


def _field_type(tp: Any, loc: Sequence[Any]) -> Any:
    """The annotation of the field pydantic's error location points at, as far as it
    can be followed (MISSING past that)."""
    for part in loc:
        while is_union(tp) or typing.get_origin(tp) is typing.Annotated:
            members = [m for m in typing.get_args(tp) if m is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        if isinstance(part, str) and is_record(tp):
            tp = fields(tp).get(part, MISSING)
        elif isinstance(part, int) and typing.get_origin(tp) in (list, tuple, set, frozenset):
            tp = typing.get_args(tp)[0]
        else:
            return tp
    return tp


def _error(agent: str, direction: str, problem: Problem) -> HandoffError:
    return HandoffError(agent, direction, _describe(problem), problem.path or None,
                        None if problem.value is MISSING else problem.value)


def _model_in(tp: Any) -> type | None:
    """The model a top-level input annotation converts mappings into: ``M`` or
    ``M | None``."""
    members = [m for m in typing.get_args(tp) if m is not type(None)] if is_union(tp) \
        else [tp]
    return members[0] if len(members) == 1 and is_model(members[0]) else None


def _input_check(agent: str, tp: Any) -> Callable[[Any], Any]:
    model = _model_in(tp)
    check = check_for(tp)

    def check_input(value: Any) -> Any:
        if model is not None and value is not None:
            return _model_input(agent, model, value)
        problem = check(value, "") if check is not None else None
        if problem is not None:
            raise _error(agent, "input", problem)
        return value

    return check_input


def _output_check(agent: str, tp: Any) -> Callable[[Any], None] | None:
    check = check_for(tp)
    if check is None:
        return None

    def check_output(output: Any) -> None:
        if isinstance(output, _core.Delegation):
            return  # the child run's result arrives later, unchecked
        problem = check(output, "")
        if problem is not None and isinstance(output, (_core.Routed, Result)):
            problem = check(output.value, "")  # what successors are handed
        if problem is not None:
            raise _error(agent, "output", problem)

    return check_output


def checked(agent: str, annotations: Annotations) -> Callable[[Any, bool], Any] | None:
    """What wraps the agent's callable to check its edges, or None when its annotations
    name no model, dataclass or TypedDict (the callable then runs as it is)."""
    check_input = _input_check(agent, annotations.input) \
        if mentions_record(annotations.input) else None
    check_output = _output_check(agent, annotations.output) \
        if mentions_record(annotations.output) else None
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
        if is_union(takes) else [takes]
    if len(members) != 1:
        return []
    shape = members[0]
    if typing.is_typeddict(shape) or is_model(shape):
        found = []
        declared = fields(shape)
        for name in sorted(required(shape) - set(node.after)):
            found.append(f"{receives}, but takes {type_name(shape)}, whose required field "
                         f"'{name}' is none of them")
        for name in node.after:
            returns = outputs.get(name, MISSING)
            if name in declared and not can_match(returns, declared[name]):
                found.append(f"agent '{name}' returns {type_name(returns)}, but agent "
                             f"'{node.name}' takes {type_name(shape)}, whose field "
                             f"'{name}' is {type_name(declared[name])}")
        return found
    if typing.get_origin(shape) in PAIRS:
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
    if is_union(returns):
        return any(can_match(member, takes) for member in typing.get_args(returns))
    if is_union(takes):
        return any(can_match(returns, member) for member in typing.get_args(takes))
    if typing.get_origin(returns) is Literal:
        check = check_for(takes)
        return check is None or any(check(value, "") is None
                                    for value in typing.get_args(returns))
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
        have = fields(returns)
        return all(name in have and can_match(have[name], field_type)
                   for name, field_type in fields(takes).items() if name in required(takes))
    made, made_args = _as_class(returns)
    wanted, wanted_args = _as_class(takes)
    if not isinstance(made, type) or not isinstance(wanted, type):
        return True  # a special form it does not know: not checked
    try:
        if is_model(wanted) and issubclass(made, Mapping):
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
