"""Graphs as specs: JSON or YAML files (or dicts) that declare agents, patterns and
policies, with a published JSON Schema.

A spec never evaluates code. Agents and functions are named by import path
(``"support.agents:classify"``), and only modules matching the ``allow=`` list may be
imported: the whole spec is checked, every reference included, before anything is
imported. See docs/specs.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .._errors import GraphError, SpecError, SpecProblem
from .._graph import CompiledGraph, register_spec_writer
from .._store import Store
from . import _files
from ._grammar import (
    BREAKER,
    LIMIT,
    PATTERN_ROOT,
    ROOT_GRAPH,
    Builder,
    Checker,
    Dumper,
    SchemaGen,
    dump_graph,
    dump_pattern,
    root_kind,
    show,
)
from ._imports import check_allow, is_allowed, refused, resolve

SCHEMA_ID = "https://counterpoint.dev/spec.schema.json"
SCHEMA_FILE = Path(__file__).with_name("spec.schema.json")

__all__ = ["SpecError", "SpecProblem", "dump", "is_allowed", "load", "schema", "to_spec"]


def load(
    spec: str | os.PathLike[str] | Mapping[str, Any],
    *,
    allow: Iterable[str] = (),
    store: Store | str | os.PathLike[str] | None = None,
    source: str | None = None,
) -> CompiledGraph:
    """Builds a compiled graph from a spec file (``.json``, ``.yaml``, ``.yml``) or an
    already parsed dict.

    Example:
        >>> app = cp.load("triage.yaml", allow=["support.*"])

    Args:
        spec: A path, or the spec's data.
        allow: Module patterns the spec may import from, fnmatch-style on the dotted
            module name: ``"support.agents"`` (that module), ``"support.*"`` (every module
            below ``support``, not ``support`` itself). Nothing else is imported: a spec
            naming another module is refused before any import.
        store: Makes the graph's runs durable, as for :meth:`Graph.compile` (a run
            store is a resource of the process, not part of the spec).
        source: The name errors give for a dict (default ``"<spec>"``).

    Raises:
        SpecError: what is wrong, where in the spec, and how to fix it; with every
            problem found when the spec is checked (structure, values, references to
            agents, breakers and limits, the allowlist), else the first one found while
            importing and building.
        TypeError, ValueError: ``allow`` is not a list of module patterns.
        ImportError: a YAML file without PyYAML installed.
    """
    patterns = check_allow(allow)
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        data = _files.read(path)
        name = source or str(path)
    elif isinstance(spec, Mapping):
        data, name = dict(spec), source or "<spec>"
    else:
        raise TypeError(f"load() takes a path or a dict, got {type(spec).__name__}")
    return _load(data, name, patterns, store)


def _load(data: Any, source: str, allow: tuple[str, ...], store: Any) -> CompiledGraph:
    if not isinstance(data, dict):
        raise SpecError(source, "", f"a spec must be a mapping, got {show(data)}",
                        "write a graph (name:, agents: {...}) or a pattern (pattern: ...)")
    sections = {name: [key for key in data[name] if isinstance(key, str)]
                if isinstance(data.get(name), dict) else []
                for name in ("breakers", "limits")}
    checker = Checker(sections)
    kind = root_kind(data)
    root = PATTERN_ROOT if kind == "pattern" else ROOT_GRAPH
    root.check(data, (), checker)
    _raise(source, checker.problems)
    # Nothing is imported unless every reference is allowed.
    _raise(source, refused(checker.refs, allow))
    resolved, problems, cause = resolve(checker.refs)
    _raise(source, problems, cause)
    if kind == "pattern" and store is not None:
        raise ValueError("store= makes a graph's runs durable; a spec whose top level is a "
                         "pattern has no graph of its own to keep them: wrap it in a graph "
                         "(agents: {main: {pattern: ...}})")
    builder = Builder(source, resolved, store)
    try:
        for name, settings in (data.get("breakers") or {}).items():
            builder.breakers[name] = BREAKER.make(name, settings, ("breakers", name), builder)
        for name, settings in (data.get("limits") or {}).items():
            builder.limits[name] = LIMIT.make(name, settings, ("limits", name), builder)
        app: CompiledGraph = root.build(data, (), builder)
    except SpecError:
        raise
    except GraphError as exc:
        raise builder.wrap((), exc) from None
    except Exception as exc:
        raise SpecError(source, "", f"building the graph failed: {type(exc).__name__}: {exc}",
                        "this looks like a bug in counterpoint; please report it") from exc
    return app


def _raise(source: str, problems: list[SpecProblem],
           cause: BaseException | None = None) -> None:
    if problems:
        first = problems[0]
        raise SpecError(source, first.path, first.problem, first.hint,
                        problems=tuple(problems)) from cause


def to_spec(app: CompiledGraph) -> dict[str, Any]:
    """``app.to_spec()``: the graph as spec data (see :meth:`CompiledGraph.to_spec`)."""
    dumper = Dumper()
    declared = getattr(app, "_cp_declared", None)
    body = dump_pattern(app, declared, (), dumper) if declared is not None \
        else dump_graph(app, (), dumper, root=True)
    sections = dumper.sections()
    _raise("to_spec()", dumper.problems)
    return {**getattr(app, "_cp_spec_info", {}), **sections, **body}


def dump(app: CompiledGraph, path: str | os.PathLike[str]) -> None:
    """Writes ``app.to_spec()`` to a ``.json``, ``.yaml`` or ``.yml`` file."""
    _files.write(to_spec(app), path)


def schema() -> dict[str, Any]:
    """The JSON Schema of specs (draft 2020-12), generated from the same definitions
    the loader checks specs with. It is also shipped as ``counterpoint/specs/
    spec.schema.json``."""
    generator = SchemaGen()
    graph = ROOT_GRAPH.schema(generator)
    patterns = PATTERN_ROOT.schema(generator)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "counterpoint graph spec",
        "description": "A graph (agents:) or a pattern (pattern:) for counterpoint.load(); "
                       "see docs/specs.md.",
        "anyOf": [graph, patterns],
        "$defs": generator.defs,
    }


def schema_text() -> str:
    """:func:`schema` as the text of ``spec.schema.json``."""
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"


register_spec_writer(to_spec)
