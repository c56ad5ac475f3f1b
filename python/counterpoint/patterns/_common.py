"""Shared helpers of the pattern builders."""

from __future__ import annotations

import functools
import inspect
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ParamSpec

from .._agents import check_agent
from .._errors import GraphError
from .._graph import CompiledGraph, register_pattern_rebuilder

P = ParamSpec("P")

# The declared builders by pattern name, with their signatures.
_builders: dict[str, tuple[Callable[..., CompiledGraph], inspect.Signature]] = {}


def declared(pattern: str) -> Callable[[Callable[P, CompiledGraph]], Callable[P, CompiledGraph]]:
    """Makes a pattern builder record its name and the arguments it was given on the
    graph it returns, so that ``app.to_spec()`` can write the pattern back as a spec and
    a pickled graph can be built again (:func:`rebuild_declared`)."""

    def wrap(build: Callable[P, CompiledGraph]) -> Callable[P, CompiledGraph]:
        signature = inspect.signature(build)

        @functools.wraps(build)
        def declare(*args: P.args, **kwargs: P.kwargs) -> CompiledGraph:
            app = build(*args, **kwargs)
            app._cp_declared = (  # type: ignore[attr-defined]
                pattern, dict(signature.bind(*args, **kwargs).arguments))
            return app

        _builders[pattern] = (declare, signature)
        return declare

    return wrap


def rebuild_declared(pattern: str, arguments: dict[str, Any]) -> CompiledGraph:
    """Builds a pattern's graph again from its declaration (``app._cp_declared``): how a
    pickled pattern is unpickled. The builder makes fresh internal closures and child
    graphs, which is why they never need to be pickled."""
    build, signature = _builders[pattern]
    call = inspect.BoundArguments(signature, OrderedDict(arguments))
    return build(*call.args, **call.kwargs)


register_pattern_rebuilder(rebuild_declared)


def agent_name(agent: Any, fallback: str) -> str:
    """A readable node name for an agent: its ``name``, its ``__name__``, or ``fallback``."""
    if isinstance(agent, CompiledGraph):
        return fallback
    name = getattr(agent, "name", None)
    if not isinstance(name, str) or not name:
        name = getattr(agent, "__name__", None)
    if not isinstance(name, str) or not name or name == "<lambda>":
        return fallback
    return name


def unique_names(agents: Iterable[Any], prefix: str, reserved: Iterable[str] = ()) -> list[str]:
    """Distinct node names for agents; a name in ``reserved`` gets a suffix too."""
    taken = set(reserved)
    names: list[str] = []
    for index, agent in enumerate(agents):
        base = agent_name(agent, f"{prefix}{index + 1}")
        name, suffix = base, 2
        while name in taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(name)
        names.append(name)
    return names


def check_agent_map(pattern: str, field: str, role: str, agents: Any,
                    reserved: Iterable[str] = ()) -> None:
    """Rejects anything but a non-empty {name: agent} dict, naming what to fix."""
    if not isinstance(agents, Mapping) or not agents:
        raise GraphError(f"{pattern}: {field} must be a non-empty dict of name -> agent")
    reserved = set(reserved)
    for name, agent in agents.items():
        if not isinstance(name, str) or not name:
            raise GraphError(f"{pattern}: {role} names must be non-empty strings, got {name!r}")
        if name in reserved:
            raise GraphError(f"{pattern}: {role} name {name!r} is reserved; rename it")
        check_agent(pattern, f"{role} {name!r}", agent)


def check_positive_int(pattern: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GraphError(f"{pattern}: {name} must be a positive int, got {value!r}")


def check_priorities(pattern: str, priorities: Any, names: Iterable[str]) -> dict[str, int]:
    if priorities is None:
        return {}
    if not isinstance(priorities, dict):
        raise GraphError(f"{pattern}: priorities must be a dict of name -> int, got {priorities!r}")
    known = set(names)
    for key, value in priorities.items():
        if key not in known:
            raise GraphError(
                f"{pattern}: priorities names {key!r}, which is not one of {sorted(known)}"
            )
        if isinstance(value, bool) or not isinstance(value, int):
            raise GraphError(f"{pattern}: priority of {key!r} must be an int, got {value!r}")
    return dict(priorities)


def identity(value: Any) -> Any:
    return value
