"""Input and output schemas of a compiled graph, for ``Runnable.get_input_schema`` and
``get_output_schema``, read off its agents as LangChain reads them off a function.

A graph's input is what its entry agents take; its output is its sink's result, or
``{sink: result}`` when it has several. Each agent tells its type as LangChain's runnables
do: a runnable by its own schema, a function (or an object's ``invoke``) by its
annotations, a nested graph by its own entries and sinks. Unknown types are ``Any``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import GenericAlias
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.utils.pydantic import create_model_v2
from pydantic import BaseModel, RootModel
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from ..._graph import CompiledGraph
from ..._policies import Policed

_EMPTY = inspect.Parameter.empty


def input_schema(graph: CompiledGraph, config: RunnableConfig | None = None, *,
                 name: str = "CompiledGraph") -> type[BaseModel]:
    """The schema of what ``graph`` takes, named ``f"{name}Input"``.

    With one entry agent it is that agent's: a runnable's own ``get_input_schema``
    (``config`` passed on), the annotation of a function's first parameter, a nested
    graph's input. With several (all receive the run input) it is the one type those
    that declare a type agree on; agents typed ``Any`` or not annotated (such as the
    patterns' pass-through ``input`` agents) do not count. ``Any`` otherwise.

    Args:
        graph: A compiled graph.
        config: Passed to runnable agents' ``get_input_schema``.
        name: The graph's name (``Runnable.get_name()``).
    """
    return _as_schema(_graph_input(graph, config), f"{name}Input")


def output_schema(graph: CompiledGraph, config: RunnableConfig | None = None, *,
                  name: str = "CompiledGraph") -> type[BaseModel]:
    """The schema of what ``graph`` returns, named ``f"{name}Output"``.

    With one sink it is that agent's output: a runnable's ``get_output_schema``
    (``config`` passed on), a function's return annotation, a nested graph's output.
    With several it is a dict of sink name to output (each sink optional: one routed
    around, or after a failure the run tolerated, is left out of the result). ``Any``
    when unknown.

    Args:
        graph: A compiled graph.
        config: Passed to runnable agents' ``get_output_schema``.
        name: The graph's name (``Runnable.get_name()``).
    """
    return _as_schema(_graph_output(graph, config, f"{name}Output"), f"{name}Output")


def _as_schema(found: Any, title: str) -> type[BaseModel]:
    """A model as LangChain makes one: a model class as it is, any other type as the root
    of a model named ``title``."""
    if _is_model(found):
        return found  # type: ignore[no-any-return]
    return create_model_v2(title, root=found)


def _is_model(found: Any) -> bool:
    # list[int] and the like pass isclass() but not issubclass().
    return inspect.isclass(found) and not isinstance(found, GenericAlias) and \
        issubclass(found, BaseModel)


def _agents(graph: CompiledGraph, names: list[str]) -> list[Any]:
    """The agents named ``names``, out of their ``cp.policy`` wrappers (None if the graph
    was not built by ``Graph.compile`` and does not know them)."""
    agents = {spec.name: spec.agent for spec in getattr(graph, "_specs", ())}
    found = [agents.get(name) for name in names]
    return [agent.agent if isinstance(agent, Policed) else agent for agent in found]


def _graph_input(graph: CompiledGraph, config: RunnableConfig | None) -> Any:
    entries = _agents(graph, graph.describe()["entries"])
    if len(entries) == 1:
        return _agent_input(entries[0], config)
    declared: list[Any] = []
    for agent in entries:
        found = _agent_input(agent, config)
        if _declares(found) and found not in declared:
            declared.append(found)
    return declared[0] if len(declared) == 1 else Any


def _declares(found: Any) -> bool:
    """False for ``Any``, as an annotation or as the root of a runnable's schema."""
    if found is Any:
        return False
    return not (_is_model(found) and issubclass(found, RootModel)
                and found.model_fields["root"].annotation is Any)


def _agent_input(agent: Any, config: RunnableConfig | None) -> Any:
    # A compiled graph may be a Runnable too; its agents know more than its signature.
    if isinstance(agent, CompiledGraph):
        return _graph_input(agent, config)
    if isinstance(agent, Runnable):
        return agent.get_input_schema(config)
    signature = _signature(agent)
    if signature is None:
        return Any
    first = next(iter(signature.parameters.values()), None)
    if first is None or first.kind not in (inspect.Parameter.POSITIONAL_ONLY,
                                           inspect.Parameter.POSITIONAL_OR_KEYWORD):
        return Any
    return _known(first.annotation)


def _graph_output(graph: CompiledGraph, config: RunnableConfig | None, title: str) -> Any:
    sinks: list[str] = graph.describe()["sinks"]
    agents = _agents(graph, sinks)
    if len(sinks) == 1:
        return _agent_output(agents[0], config, title)
    fields = {sink: _field_type(_agent_output(agent, config, f"{title}_{sink}"))
              for sink, agent in zip(sinks, agents)}
    # A TypedDict takes any sink name as a key, where model fields could not start with
    # '_' or shadow BaseModel's attributes (a sink named "json").
    typed_dict: Any = TypedDict
    return typed_dict(title, fields, total=False)


def _agent_output(agent: Any, config: RunnableConfig | None, title: str) -> Any:
    if isinstance(agent, CompiledGraph):
        return _graph_output(agent, config, title)
    if isinstance(agent, Runnable):
        return agent.get_output_schema(config)
    signature = _signature(agent)
    return Any if signature is None else _known(signature.return_annotation)


def _field_type(found: Any) -> Any:
    """A runnable's root-model schema as the type it wraps, for a dict's value."""
    if _is_model(found) and issubclass(found, RootModel):
        return found.model_fields["root"].annotation
    return found


def _known(annotation: Any) -> Any:
    # A string is an annotation that could not be resolved (a name local to a function).
    if annotation is _EMPTY or isinstance(annotation, str):
        return Any
    # `-> None` is read as None, which create_model_v2 would take for "no root type".
    return type(None) if annotation is None else annotation


def _signature(agent: Any) -> inspect.Signature | None:
    """The signature the engine calls: an object's ``invoke`` (or ``ainvoke``), else the
    agent itself; annotations resolved where they can be (``from __future__ import
    annotations`` makes them strings)."""
    target: Callable[..., Any] | None = None
    if not inspect.isclass(agent):
        for method in ("invoke", "ainvoke"):
            if callable(getattr(agent, method, None)):
                target = getattr(agent, method)
                break
    if target is None and callable(agent):
        target = agent
    if target is None:
        return None
    for resolve in (True, False):
        try:
            return inspect.signature(target, eval_str=resolve)
        except Exception:  # noqa: BLE001 - an unresolvable annotation raises anything
            continue
    return None
