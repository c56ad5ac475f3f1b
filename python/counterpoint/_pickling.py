"""Whether a compiled graph can travel to another process by pickle and, when it
cannot, which agent (or which policy function or store of one) keeps it from it.

A compiled graph pickles as its declaration (``CompiledGraph.__reduce__``): a pattern as
its builder's arguments, any other graph as its node specs. This module walks the same
declaration to name the first thing in it that does not pickle, by agent path.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import GraphError
from ._graph import CompiledGraph
from ._policies import Policed
from .patterns.merging import Judge

# A function or class pickle could not find by name (a lambda, a local function) fails
# with one of these; any other failure is an object that holds a resource.
_NOT_FOUND_BY_NAME = (pickle.PicklingError, AttributeError)
_DEFINE_AT_MODULE_LEVEL = ("define it at module level, where pickle finds it by name, or "
                           "pickle the graph with cloudpickle")
_KEEP_RESOURCES_OUT = ("keep locks, connections and clients out of it: open them inside "
                       "the call, or keep them in an actor")

# Pattern arguments that are plain functions rather than agents.
_FUNCTION_ARGUMENTS = ("key", "over")


@dataclass(frozen=True)
class _Part:
    """One thing a graph pickles with: an agent, or a function or store it holds."""

    path: str  # the agent's path ("review/security"); "" for the graph at the top
    role: str  # "agent", or what it is of that agent: "fallback", "reviewer", "store" ...
    value: Any

    def describe(self) -> str:
        owner = f"agent '{self.path}'" if self.path else "the graph"
        return owner if self.role == "agent" else f"the {self.role} of {owner}"


def check_picklable(app: CompiledGraph, dumps: Callable[[Any], bytes]) -> bytes:
    """Pickles ``app`` with ``dumps`` (``pickle.dumps``, ``cloudpickle.dumps`` ...) and
    returns the bytes.

    Raises:
        GraphError: ``app`` does not pickle; it names the first agent (by path, such as
            ``review/security`` for an agent of a pattern nested in the graph), or the
            fallback, reviewer, retry predicate or store of one, that does not, with
            pickle's reason and the fix. ``node`` is that agent's path (None for the
            store of the graph itself).
    """
    try:
        return dumps(app)
    except Exception as failure:  # pickling fails with any exception type
        found = _first_unpicklable(_graph_parts(app, ""), dumps)
        if found is None:
            raise GraphError(f"the graph cannot be pickled ({_reason(failure)})") from failure
        part, error = found
        message = f"{part.describe()} cannot be pickled ({_reason(error)})"
        raise GraphError(message + _fix(part, error), part.path or None) from error


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _fix(part: _Part, error: Exception) -> str:
    if part.role == "store":
        return ""  # a store's own error says what to do (SQLiteStore: give it a file)
    if isinstance(error, _NOT_FOUND_BY_NAME):
        return f": {_DEFINE_AT_MODULE_LEVEL}"
    return f": {_KEEP_RESOURCES_OUT}"


def _first_unpicklable(parts: Iterator[_Part], dumps: Callable[[Any], bytes]
                       ) -> tuple[_Part, Exception] | None:
    """The first part, depth first in declaration order, that does not pickle although
    everything in it does, with the error: the innermost culprit, not its graph."""
    for part in parts:
        found = _first_unpicklable(_parts_inside(part), dumps)
        if found is not None:
            return found
        try:
            dumps(part.value)
        except Exception as error:  # noqa: BLE001 - pickling fails with any exception type
            return part, error
    return None


def _parts_inside(part: _Part) -> Iterator[_Part]:
    """What a part pickles with that has a name of its own."""
    value = part.value
    if isinstance(value, CompiledGraph):
        return _graph_parts(value, part.path)
    if isinstance(value, Policed):
        return _policy_parts(value, part.path)
    return iter(())


def _graph_parts(app: CompiledGraph, path: str) -> Iterator[_Part]:
    """A graph's parts as it pickles them: a pattern's arguments, or each node's agent
    and policies; then its store."""
    declared = app.__dict__.get("_cp_declared")
    if declared is not None:
        yield from _pattern_parts(app, path, declared[1])
    else:
        for spec in app._specs:
            agent_path = _join(path, spec.name)
            policed = spec.policed
            if policed is None:
                yield _Part(agent_path, "agent", spec.agent)
            else:
                yield from _policy_parts(policed, agent_path)
    if app.store is not None:
        yield _Part(path, "store", app.store)


def _policy_parts(policed: Policed, path: str) -> Iterator[_Part]:
    """An agent with policies: the agent, and the functions its policies call.
    (Breakers and limits pickle as their settings, always.)"""
    yield _Part(path, "agent", policed.agent)
    if policed.fallback is not None:
        yield _Part(path, "fallback", policed.fallback)
    if policed.review is not None and policed.review.reviewer is not None:
        yield _Part(path, "reviewer", policed.review.reviewer)
    if policed.retry is not None:
        yield _Part(path, "retry_on", policed.retry.retry_on)


def _pattern_parts(app: CompiledGraph, path: str, arguments: Mapping[str, Any]
                   ) -> Iterator[_Part]:
    """A pattern's arguments. An agent is named by its node in the pattern's graph when
    it has one there, else by its key in a dict argument, else by the argument."""
    nodes = {id(spec.agent): spec.name for spec in app._specs}
    for argument, value in arguments.items():
        if argument in _FUNCTION_ARGUMENTS:
            yield _Part(path, f"{argument}= function", value)
        else:
            yield from _argument_parts(value, argument, path, nodes)


def _argument_parts(value: Any, label: str, path: str, nodes: Mapping[int, str]
                    ) -> Iterator[_Part]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _argument_parts(item, str(key), path, nodes)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _argument_parts(item, f"{label}[{index}]", path, nodes)
    else:
        if isinstance(value, Judge):
            value = value.choose
        yield _Part(_join(path, nodes.get(id(value), label)), "agent", value)


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name
