"""The spec grammar, in one place: each kind of value a spec holds knows how to check
it (collecting every problem with its path, and every import path, without importing
anything), build it once the imports are resolved, write a Python object back as spec
data, and describe itself as JSON Schema. Nothing here evaluates code."""

from __future__ import annotations

import builtins
import difflib
import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import _errors
from .. import patterns as _patterns
from .._agents import DISPATCH
from .._errors import GraphError, SpecError, SpecProblem
from .._executors import RayActors, RayOptions, RayTasks, ray, ray_actors
from .._graph import CompiledGraph, Graph
from .._policies import (
    Cache,
    CircuitBreaker,
    Limit,
    Policed,
    Retry,
    Review,
    _Shared,
    policy,
)
from .._spec import GRAPH_ERROR_MODES, JOINS, NODE_ERROR_MODES, NodeSpec
from ..patterns.merging import POLICIES as MERGE_POLICIES
from ..patterns.merging import Judge

Path = tuple["str | int", ...]

# Limits that keep a hostile or broken spec from costing more than a refusal.
MAX_DEPTH = 64
MAX_ITEMS = 20_000
MAX_TEXT = 1_000

_MAX_COUNT = 2**32 - 1
_PRIORITY_MIN, _PRIORITY_MAX = -(2**31), 2**31 - 1
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_MISSING: Any = object()


def format_path(path: Iterable[str | int]) -> str:
    """``("agents", "billing", "retry")`` -> ``agents.billing.retry``; list items as
    ``[2]`` and keys that are not plain words as ``["a.b"]``."""
    out = ""
    for segment in path:
        if isinstance(segment, int):
            out += f"[{segment}]"
        elif _KEY.match(segment):
            out += f".{segment}" if out else segment
        else:
            out += f"[{_quote(segment)}]"
    return out


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def show(value: Any) -> str:
    """A value as a spec author wrote it: kind and (short) text."""
    kinds = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
             type(None): "null", list: "a list", dict: "a mapping"}
    kind = kinds.get(type(value), type(value).__name__)
    if isinstance(value, (dict, list)):
        return kind
    text = repr(value)
    return f"{text[:60]}..." if len(text) > 63 else f"{text} ({kind})"


def suggest(word: Any, options: Iterable[str]) -> str:
    """``did you mean 'x'?`` for the closest option, or an empty string."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def _options(options: Iterable[str]) -> str:
    return ", ".join(repr(option) for option in options)


# ---- the three passes' state ------------------------------------------------------------


@dataclass(frozen=True)
class ImportRef:
    """One ``module:attribute`` reference found in a spec."""

    path: Path
    text: str
    module: str
    attrs: tuple[str, ...]
    role: str


class Checker:
    """Collects the problems and import references of a spec, without importing."""

    def __init__(self, sections: Mapping[str, Iterable[str]]) -> None:
        self.problems: list[SpecProblem] = []
        self.refs: list[ImportRef] = []
        self.sections = {name: set(names) for name, names in sections.items()}
        self._items = 0
        self._too_big = False

    def fail(self, path: Path, problem: str, hint: str = "") -> None:
        self.problems.append(SpecProblem(format_path(path), problem, hint))

    def enter(self, path: Path) -> bool:
        """Counts a value; False (once reported) when the spec is too deep or too big."""
        self._items += 1
        if len(path) > MAX_DEPTH:
            self.fail(path, f"the spec nests deeper than {MAX_DEPTH} levels",
                      "flatten it; a nesting this deep is usually a recursive YAML alias")
            return False
        if self._items > MAX_ITEMS:
            if not self._too_big:
                self._too_big = True
                self.fail(path, f"the spec has more than {MAX_ITEMS} values",
                          "split it; a spec this big is usually repeated YAML aliases")
            return False
        return True


class Builder:
    """Builds graphs from a checked spec whose imports are resolved."""

    def __init__(self, source: str, resolved: Mapping[Path, Any], store: Any) -> None:
        self.source = source
        self.resolved = resolved
        self.store = store
        self.breakers: dict[str, CircuitBreaker] = {}
        self.limits: dict[str, Limit] = {}

    def error(self, path: Path, problem: str, hint: str = "") -> SpecError:
        return SpecError(self.source, format_path(path), problem, hint)

    def wrap(self, path: Path, exc: GraphError) -> SpecError:
        """A builder's GraphError, located: its message already says what to fix."""
        if isinstance(exc, SpecError):
            return exc
        problem, _, hint = str(exc).partition("; ")
        error = self.error(path, problem, hint)
        error.__cause__ = exc
        return error


class Dumper:
    """Writes Python-built graphs as spec data, collecting every problem."""

    def __init__(self) -> None:
        self.problems: list[SpecProblem] = []
        # id -> (object, section, places); a place is (container, key) to fill in.
        self.shared: dict[int, tuple[Any, str, list[tuple[Any, Any]]]] = {}

    def fail(self, path: Path, problem: str, hint: str = "") -> str:
        self.problems.append(SpecProblem(format_path(path), problem, hint))
        return "?"

    def share(self, obj: Any, section: str, container: Any, key: Any) -> None:
        """Records that ``container[key]`` refers to a breaker or limit, filled in by
        :meth:`sections` (by name, or inline when it belongs to this one place)."""
        entry = self.shared.setdefault(id(obj), (obj, section, []))
        entry[2].append((container, key))
        container[key] = None

    def sections(self) -> dict[str, dict[str, Any]]:
        sections: dict[str, dict[str, Any]] = {"breakers": {}, "limits": {}}
        for obj, section, places in self.shared.values():
            settings = SHARED_KINDS[section].dump_settings(obj)
            named = _Shared._registry.get((type(obj), obj.name)) is obj
            if not named and len(places) == 1:
                container, key = places[0]
                container[key] = settings
                continue
            sections[section][obj.name] = settings
            for container, key in places:
                container[key] = obj.name
        return {name: entries for name, entries in sections.items() if entries}

    def import_path(self, obj: Any, path: Path, role: str) -> str:
        found, problem = import_path_of(obj)
        if found is None:
            return self.fail(path, f"the {role} {problem}",
                             "define it at module level in an importable module (not a "
                             "lambda, a local function or a partial) so a spec can name it "
                             "as 'module:attribute'")
        return found


def import_path_of(obj: Any) -> tuple[str | None, str]:
    """``("module:qual.name", "")`` for an object a spec can name, else ``(None, why)``."""
    import sys

    name = getattr(obj, "__qualname__", None)
    # A method of a built-in class (str.lower) knows its class, not its module.
    module_name = getattr(obj, "__module__", None) or \
        getattr(getattr(obj, "__objclass__", None), "__module__", None)
    if isinstance(name, str) and isinstance(module_name, str) and (
            inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)
            or inspect.ismethoddescriptor(obj)):
        if "<lambda>" in name:
            return None, f"{obj!r} is a lambda"
        if "<locals>" in name:
            return None, f"{name} is defined inside a function"
        if any(part.startswith("_") for part in name.split(".")):
            return None, f"{module_name}:{name} is a private name, which specs may not use"
        found: Any = sys.modules.get(module_name)
        for part in name.split("."):
            found = getattr(found, part, None)
        if found is obj:
            return f"{module_name}:{name}", ""
        return None, f"{module_name}:{name} does not lead back to {obj!r}"
    # An instance (a runnable, a configured agent): a module-level name bound to it.
    for candidate in dict.fromkeys(
            [getattr(type(obj), "__module__", None), module_name]):
        module = sys.modules.get(candidate) if isinstance(candidate, str) else None
        for attr, value in (vars(module).items() if module is not None else ()):
            if value is obj and not attr.startswith("_"):
                return f"{candidate}:{attr}", ""
    return None, f"{type(obj).__name__} object has no module-level name"


# ---- kinds ------------------------------------------------------------------------------


class SchemaGen:
    """Collects ``$defs`` while kinds describe themselves."""

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}

    def ref(self, name: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if name not in self.defs:
            self.defs[name] = {}  # placeholder: a recursive reference sees it
            self.defs[name] = make()
        return {"$ref": f"#/$defs/{name}"}


class Kind:
    """A kind of value in a spec."""

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        raise NotImplementedError

    def build(self, value: Any, path: Path, bd: Builder) -> Any:
        return value

    def dump(self, obj: Any, path: Path, dp: Dumper) -> Any:
        return obj

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        raise NotImplementedError


class Integer(Kind):
    def __init__(self, minimum: int | None = None, maximum: int | None = None) -> None:
        self.minimum, self.maximum = minimum, maximum

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            example = 1 if self.minimum is None or self.minimum < 1 else self.minimum
            hint = f"write a whole number, e.g. {example}"
            ck.fail(path, f"must be an integer, got {show(value)}", hint)
        elif self.minimum is not None and value < self.minimum:
            ck.fail(path, f"must be >= {self.minimum}, got {value}", self._range())
        elif self.maximum is not None and value > self.maximum:
            ck.fail(path, f"must be <= {self.maximum}, got {value}", self._range())

    def _range(self) -> str:
        low = "" if self.minimum is None else f"from {self.minimum} "
        high = "" if self.maximum is None else f"to {self.maximum}"
        return f"use an integer {low}{high}".strip()

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


class Number(Kind):
    def __init__(self, minimum: float | None = None, *, above: float | None = None,
                 maximum: float | None = None, unit: str = "") -> None:
        self.minimum, self.above, self.maximum, self.unit = minimum, above, maximum, unit

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            ck.fail(path, f"must be a number{self.unit}, got {show(value)}",
                    f"write a number, e.g. {self._example()}")
        elif math.isnan(value) or math.isinf(value):
            ck.fail(path, f"must be a finite number, got {value}",
                    f"write a number, e.g. {self._example()}")
        elif self.minimum is not None and value < self.minimum:
            ck.fail(path, f"must be >= {self.minimum:g}, got {value:g}", self._range())
        elif self.above is not None and value <= self.above:
            ck.fail(path, f"must be > {self.above:g}, got {value:g}", self._range())
        elif self.maximum is not None and value > self.maximum:
            ck.fail(path, f"must be <= {self.maximum:g}, got {value:g}", self._range())

    def _example(self) -> str:
        if self.maximum is not None and self.maximum <= 1:
            return "0.8"
        low = self.minimum if self.minimum is not None else self.above
        return "10" if low is None or low < 10 else f"{low:g}"

    def _range(self) -> str:
        parts = []
        if self.minimum is not None:
            parts.append(f">= {self.minimum:g}")
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        if self.maximum is not None:
            parts.append(f"<= {self.maximum:g}")
        return f"use a number {' and '.join(parts)}"

    def build(self, value: Any, path: Path, bd: Builder) -> Any:
        return value

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "number"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.above is not None:
            out["exclusiveMinimum"] = self.above
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


class Text(Kind):
    """A non-empty string, at most MAX_TEXT characters... or a longer description."""

    def __init__(self, limit: int = MAX_TEXT) -> None:
        self.limit = limit

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if not isinstance(value, str) or not value:
            ck.fail(path, f"must be a non-empty string, got {show(value)}", "write some text")
        elif len(value) > self.limit:
            ck.fail(path, f"is longer than {self.limit} characters", "shorten it")

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": self.limit}


class Choice(Kind):
    def __init__(self, options: Sequence[str]) -> None:
        self.options = tuple(options)

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if value not in self.options or not isinstance(value, str):
            hint = suggest(value, self.options) or f"use one of {_options(self.options)}"
            ck.fail(path, f"{show(value)} is not one of {_options(self.options)}", hint)

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.options)}


class Reference(Kind):
    """The name of an entry of a top-level section (``breakers``, ``limits``)."""

    def __init__(self, section: str) -> None:
        self.section = section

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        names = ck.sections[self.section]
        if value not in names:
            hint = suggest(value, names) or (
                f"declare it under the top-level `{self.section}:` "
                f"(e.g. {self.section}: {{{value}: {{...}}}}), or give its settings here")
            ck.fail(path, f"there is no {self.section[:-1]} named {value!r} in the top-level "
                    f"`{self.section}:`", hint)

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return {"type": "string", "minLength": 1,
                "description": f"The name of an entry of the top-level `{self.section}`."}


def parse_import_path(text: str) -> tuple[str, tuple[str, ...]] | None:
    module, colon, attrs = text.partition(":")
    if not colon or not module or not attrs:
        return None
    modules, names = module.split("."), attrs.split(".")
    if not all(part.isascii() and part.isidentifier() for part in [*modules, *names]):
        return None
    return module, tuple(names)


class ImportPath(Kind):
    """``module.sub:attr.attr``, the only way a spec names code."""

    PATTERN = (r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
               r":[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")

    def __init__(self, role: str) -> None:
        self.role = role

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if not isinstance(value, str):
            ck.fail(path, f"must be an import path 'module:attribute' naming the {self.role}, "
                    f"got {show(value)}", "e.g. 'support.agents:classify'")
            return
        parsed = parse_import_path(value) if len(value) <= MAX_TEXT else None
        if parsed is None:
            hint = ("write 'module:attribute', e.g. 'support.agents:classify' (a colon "
                    "between the module and the name in it)")
            if ":" not in value and "." in value:
                module, _, attr = value.rpartition(".")
                hint = f"write {module + ':' + attr!r}: a colon separates the module and the name"
            ck.fail(path, f"{show(value)} is not an import path", hint)
            return
        module, attrs = parsed
        private = [part for part in attrs if part.startswith("_")]
        if private:
            ck.fail(path, f"{value!r} names the private attribute {private[0]!r}",
                    "specs may only name public attributes (no leading underscore); "
                    "export the object under a public name")
            return
        ck.refs.append(ImportRef(path, value, module, attrs, self.role))

    def build(self, value: Any, path: Path, bd: Builder) -> Any:
        return bd.resolved[path]

    def dump(self, obj: Any, path: Path, dp: Dumper) -> Any:
        return dp.import_path(obj, path, self.role)

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return sg.ref("importPath", lambda: {
            "type": "string", "pattern": self.PATTERN, "maxLength": MAX_TEXT,
            "description": "An importable object, 'module.sub:attribute.attribute'; its "
                           "module must match the loader's allowlist."})


@dataclass(frozen=True)
class Field:
    kind: Kind
    doc: str
    default: Any = _MISSING
    required: bool = False


def _check_keys(value: Any, path: Path, ck: Checker, allowed: Iterable[str], what: str,
                hints: Mapping[str, str] | None = None) -> bool:
    """Reports a non-mapping and unknown keys; True if ``value`` is a mapping."""
    if not isinstance(value, dict):
        ck.fail(path, f"{what} must be a mapping, got {show(value)}",
                f"give its keys, e.g. {{{next(iter(allowed), 'key')}: ...}}")
        return False
    allowed = list(allowed)
    for key in value:
        if not isinstance(key, str):
            ck.fail(path, f"has the key {show(key)}, but keys must be strings",
                    f"quote it: '{key}'")
        elif key not in allowed:
            hint = (hints or {}).get(key) or suggest(key, allowed) or \
                f"the keys of {what} are {_options(allowed)}"
            ck.fail((*path, key), f"unknown key {key!r} in {what}", hint)
    return True


class Obj(Kind):
    """A mapping with known keys."""

    def __init__(self, what: str, fields: Mapping[str, Field], *,
                 one_of: Sequence[str] = (), schema_name: str | None = None) -> None:
        self.what, self.fields, self.one_of, self.schema_name = what, dict(fields), one_of, \
            schema_name

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if not _check_keys(value, path, ck, self.fields, self.what):
            return
        self.check_fields(value, path, ck)

    def check_fields(self, value: dict[str, Any], path: Path, ck: Checker) -> None:
        for name, spec in self.fields.items():
            if name in value:
                if ck.enter((*path, name)):
                    spec.kind.check(value[name], (*path, name), ck)
            elif spec.required:
                ck.fail(path, f"{self.what} is missing `{name}`", f"add {name}: ({spec.doc})")
        if self.one_of and not any(name in value for name in self.one_of):
            ck.fail(path, f"{self.what} needs at least one of "
                    f"{', '.join('`' + n + '`' for n in self.one_of)}",
                    f"add {self.one_of[0]}: ...")

    def build(self, value: Any, path: Path, bd: Builder) -> dict[str, Any]:
        return {name: self.fields[name].kind.build(item, (*path, name), bd)
                for name, item in value.items() if name in self.fields}

    def dump(self, obj: Any, path: Path, dp: Dumper) -> dict[str, Any]:
        """``obj``: the Python values by key; default values are left out."""
        out: dict[str, Any] = {}
        for name, spec in self.fields.items():
            item = obj.get(name, _MISSING)
            if item is _MISSING or item is None or _same(item, spec.default):
                continue
            out[name] = spec.kind.dump(item, (*path, name), dp)
        return out

    def properties(self, sg: SchemaGen) -> dict[str, Any]:
        return {name: {**spec.kind.schema(sg), "description": spec.doc}
                for name, spec in self.fields.items()}

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        def make() -> dict[str, Any]:
            out: dict[str, Any] = {"type": "object", "properties": self.properties(sg),
                                   "additionalProperties": False}
            required = [name for name, spec in self.fields.items() if spec.required]
            if required:
                out["required"] = required
            if self.one_of:
                out["anyOf"] = [{"required": [name]} for name in self.one_of]
            return out

        return sg.ref(self.schema_name, make) if self.schema_name else make()


def _same(value: Any, default: Any) -> bool:
    if default is _MISSING:
        return False
    try:
        return (type(value) is type(default) and bool(value == default)) or (
            isinstance(value, (int, float)) and not isinstance(value, bool)
            and isinstance(default, (int, float)) and value == default)
    except Exception:  # noqa: BLE001 - an object whose == raises is not the default
        return False


class MapOf(Kind):
    """``{name: value}`` with at least ``min_items`` entries."""

    def __init__(self, item: Kind, what: str, *, min_items: int = 1) -> None:
        self.item, self.what, self.min_items = item, what, min_items

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if not isinstance(value, dict):
            ck.fail(path, f"must be a mapping of {self.what}, got {show(value)}",
                    "write name: value entries")
            return
        if len(value) < self.min_items:
            ck.fail(path, f"must have at least {self.min_items} entr"
                    f"{'y' if self.min_items == 1 else 'ies'}", f"add {self.what}")
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                ck.fail(path, f"has the name {show(key)}, but names must be non-empty strings",
                        "quote the name")
            elif ck.enter((*path, key)):
                self.item.check(item, (*path, key), ck)

    def build(self, value: Any, path: Path, bd: Builder) -> dict[str, Any]:
        return {key: self.item.build(item, (*path, key), bd) for key, item in value.items()}

    def dump(self, obj: Any, path: Path, dp: Dumper) -> dict[str, Any]:
        return {key: self.item.dump(item, (*path, key), dp) for key, item in obj.items()}

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return {"type": "object", "minProperties": self.min_items,
                "propertyNames": {"minLength": 1},
                "additionalProperties": self.item.schema(sg)}


class ListOf(Kind):
    def __init__(self, item: Kind, what: str, *, min_items: int = 1) -> None:
        self.item, self.what, self.min_items = item, what, min_items

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if not isinstance(value, list):
            ck.fail(path, f"must be a list of {self.what}, got {show(value)}",
                    f"write [{self.what}, ...]")
            return
        if len(value) < self.min_items:
            ck.fail(path, f"must list at least {self.min_items} of {self.what}",
                    f"add {self.what}")
        for index, item in enumerate(value):
            if ck.enter((*path, index)):
                self.item.check(item, (*path, index), ck)

    def build(self, value: Any, path: Path, bd: Builder) -> list[Any]:
        return [self.item.build(item, (*path, index), bd) for index, item in enumerate(value)]

    def dump(self, obj: Any, path: Path, dp: Dumper) -> list[Any]:
        return [self.item.dump(item, (*path, index), dp) for index, item in enumerate(obj)]

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return {"type": "array", "minItems": self.min_items, "items": self.item.schema(sg)}


class OneOrList(ListOf):
    """One value, or a list of them (``after: classify`` or ``after: [a, b]``)."""

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if isinstance(value, list):
            super().check(value, path, ck)
        else:
            self.item.check(value, path, ck)

    def build(self, value: Any, path: Path, bd: Builder) -> list[Any]:
        if isinstance(value, list):
            return super().build(value, path, bd)
        return [self.item.build(value, path, bd)]

    def dump(self, obj: Any, path: Path, dp: Dumper) -> Any:
        items = list(obj) if isinstance(obj, (list, tuple)) else [obj]
        if len(items) == 1:
            return self.item.dump(items[0], path, dp)
        return super().dump(items, path, dp)

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return {"anyOf": [self.item.schema(sg), super().schema(sg)]}


# ---- policies ---------------------------------------------------------------------------


def _exception_names() -> dict[str, type[BaseException]]:
    """Exception classes a spec may name without an import: the built-in ones and
    counterpoint's."""
    names: dict[str, type[BaseException]] = {}
    for module in (builtins, _errors):
        for name, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, BaseException) and \
                    not name.startswith("_") and value.__module__ in ("builtins", _errors.__name__):
                names[name] = value
    return names


EXCEPTIONS = _exception_names()


class ExceptionRef(Kind):
    """An exception class: a built-in or counterpoint name (``TimeoutError``,
    ``AgentTimeout``) or an import path (of a class, or of a predicate)."""

    path_kind = ImportPath("exception class or predicate")

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if isinstance(value, str) and ":" not in value:
            if value not in EXCEPTIONS:
                hint = suggest(value, EXCEPTIONS) or (
                    "name a built-in exception (e.g. TimeoutError), a counterpoint one "
                    "(e.g. AgentTimeout), or give an import path 'module:Class'")
                ck.fail(path, f"{value!r} is not a built-in or counterpoint exception", hint)
            return
        self.path_kind.check(value, path, ck)

    def build(self, value: Any, path: Path, bd: Builder) -> Any:
        return EXCEPTIONS[value] if ":" not in value else bd.resolved[path]

    def dump(self, obj: Any, path: Path, dp: Dumper) -> Any:
        name = getattr(obj, "__name__", None)
        if isinstance(name, str) and EXCEPTIONS.get(name) is obj:
            return name
        return dp.import_path(obj, path, "retry_on exception")

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return {"type": "string", "minLength": 1,
                "description": "A built-in or counterpoint exception name, or an import path."}


RETRY_DEFAULTS = {f: getattr(Retry(), f) for f in
                  ("max_attempts", "initial_backoff", "multiplier", "max_backoff", "jitter",
                   "retry_on")}
RETRY_FIELDS = Obj("retry", {
    "max_attempts": Field(Integer(1, _MAX_COUNT), "total attempts, the first included",
                          RETRY_DEFAULTS["max_attempts"]),
    "initial_backoff": Field(Number(0), "seconds before the second attempt",
                             RETRY_DEFAULTS["initial_backoff"]),
    "multiplier": Field(Number(1), "growth of the backoff per attempt",
                        RETRY_DEFAULTS["multiplier"]),
    "max_backoff": Field(Number(0), "upper bound of every delay, in seconds",
                         RETRY_DEFAULTS["max_backoff"]),
    "jitter": Field(Number(0, maximum=1), "random variation of each delay, from 0 to 1",
                    RETRY_DEFAULTS["jitter"]),
    "retry_on": Field(OneOrList(ExceptionRef(), "exception classes"),
                      "exception class(es) worth retrying, or a predicate's import path",
                      RETRY_DEFAULTS["retry_on"]),
}, schema_name="retry")


class RetryKind(Kind):
    """``retry: 3`` (attempts) or ``retry: {max_attempts: 3, ...}``."""

    attempts = Integer(1, _MAX_COUNT)

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if isinstance(value, int) and not isinstance(value, bool):
            self.attempts.check(value, path, ck)
        else:
            RETRY_FIELDS.check(value, path, ck)

    def build(self, value: Any, path: Path, bd: Builder) -> Any:
        if isinstance(value, int):
            return value
        settings = RETRY_FIELDS.build(value, path, bd)
        retry_on = settings.get("retry_on")
        if isinstance(retry_on, list):
            settings["retry_on"] = retry_on[0] if len(retry_on) == 1 else tuple(retry_on)
        try:
            return Retry(**settings)
        except GraphError as exc:
            raise bd.wrap(path, exc) from None

    def dump(self, obj: Any, path: Path, dp: Dumper) -> Any:
        values = {name: getattr(obj, name) for name in RETRY_DEFAULTS}
        if isinstance(values["retry_on"], tuple):
            values["retry_on"] = list(values["retry_on"])
        return RETRY_FIELDS.dump(values, path, dp) or {"max_attempts": obj.max_attempts}

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return {"anyOf": [self.attempts.schema(sg), RETRY_FIELDS.schema(sg)]}


def _defaults(function: Callable[..., Any]) -> dict[str, Any]:
    return {name: parameter.default
            for name, parameter in inspect.signature(function).parameters.items()
            if parameter.default is not inspect.Parameter.empty}


class SharedKind(Kind):
    """A breaker or a limit: the name of a top-level entry, or settings of its own."""

    def __init__(self, section: str, cls: type[_Shared], settings: Obj) -> None:
        self.section, self.cls, self.settings = section, cls, settings
        self.reference = Reference(section)
        self.names = tuple(settings.fields)

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if isinstance(value, str):
            self.reference.check(value, path, ck)
        else:
            self.settings.check(value, path, ck)

    def make(self, name: str | None, value: Any, path: Path, bd: Builder) -> Any:
        try:
            return self.cls(name, **self.settings.build(value, path, bd))  # type: ignore[call-arg]
        except GraphError as exc:
            raise bd.wrap(path, exc) from None

    def build(self, value: Any, path: Path, bd: Builder) -> Any:
        if isinstance(value, str):
            return (bd.breakers if self.section == "breakers" else bd.limits)[value]
        return self.make(None, value, path, bd)

    def dump_settings(self, obj: Any) -> dict[str, Any]:
        return self.settings.dump(dict(zip(self.names, obj._settings)), (), Dumper())

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return {"anyOf": [self.reference.schema(sg), self.settings.schema(sg)]}


_BREAKER_DEFAULTS = _defaults(CircuitBreaker.__new__)
BREAKER = SharedKind("breakers", CircuitBreaker, Obj("breaker", {
    "failures": Field(Integer(1, _MAX_COUNT), "failures within `window` that open it",
                      _BREAKER_DEFAULTS["failures"]),
    "window": Field(Number(above=0), "seconds over which failures count",
                    _BREAKER_DEFAULTS["window"]),
    "reset_after": Field(Number(above=0), "seconds open before one probe call",
                         _BREAKER_DEFAULTS["reset_after"]),
}, schema_name="breakerSettings"))
LIMIT = SharedKind("limits", Limit, Obj("limit", {
    "max_concurrent": Field(Integer(1, _MAX_COUNT), "at most this many calls at once"),
    "per_second": Field(Number(above=0), "at most this many call starts per second"),
    "burst": Field(Integer(1, _MAX_COUNT), "starts allowed back to back (default 1)"),
}, one_of=("max_concurrent", "per_second"), schema_name="limitSettings"))
SHARED_KINDS = {"breakers": BREAKER, "limits": LIMIT}


class LimitsKind(OneOrList):
    """One limit or a list (written by :func:`dump_policies`, shared by name)."""

    def __init__(self) -> None:
        super().__init__(LIMIT, "limits")


class BreakerKind(Kind):
    def check(self, value: Any, path: Path, ck: Checker) -> None:
        BREAKER.check(value, path, ck)

    def build(self, value: Any, path: Path, bd: Builder) -> Any:
        return BREAKER.build(value, path, bd)

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return BREAKER.schema(sg)


class ReviewKind(Kind):
    fields = Obj("review", {
        "below": Field(Number(above=0, maximum=1), "outputs below this confidence go to a "
                       "human", Review().below),
        "reviewer": Field(ImportPath("reviewer"), "a callable deciding in-process (without "
                          "one the run pauses for review, which needs a store)"),
        "approvers": Field(ListOf(Text(), "role names"), "the roles allowed to decide "
                           "(a decision must say by whom and in which role); unset: anyone"),
    }, schema_name="review")

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        self.fields.check(value, path, ck)

    def build(self, value: Any, path: Path, bd: Builder) -> Any:
        try:
            return Review(**self.fields.build(value, path, bd))
        except GraphError as exc:
            raise bd.wrap(path, exc) from None

    def dump(self, obj: Any, path: Path, dp: Dumper) -> Any:
        return self.fields.dump({"below": obj.below, "reviewer": obj.reviewer,
                                 "approvers": list(obj.approvers) or None}, path, dp)

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return self.fields.schema(sg)


class Version(Kind):
    """A cache version: a string or an integer."""

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            ck.fail(path, f"must be a string or an integer, got {show(value)}",
                    "e.g. 2 or 'prompt-v2'")

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]}


class CacheKind(Kind):
    """``cache: {}`` (forever) or ``cache: {ttl: 3600, key: ..., version: 2}``."""

    fields = Obj("cache", {
        "ttl": Field(Number(above=0, unit=" of seconds"), "seconds an entry is used for "
                     "(unset: forever)"),
        "key": Field(Text(), "an identity agents share entries by (unset: the agent's name "
                     "and qualified name)"),
        "version": Field(Version(), "part of the identity: change it when the agent's code "
                         "changes", Cache().version),
    }, schema_name="cache")

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        self.fields.check(value, path, ck)

    def build(self, value: Any, path: Path, bd: Builder) -> Any:
        try:
            return Cache(**self.fields.build(value, path, bd))
        except GraphError as exc:
            raise bd.wrap(path, exc) from None

    def dump(self, obj: Any, path: Path, dp: Dumper) -> Any:
        return self.fields.dump({"ttl": obj.ttl, "key": obj.key, "version": obj.version},
                                path, dp)

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return self.fields.schema(sg)


_RAY_OPTIONS: dict[str, Field] = {
    "num_cpus": Field(Number(0), "CPUs each task or actor reserves (Ray's default: 1)"),
    "num_gpus": Field(Number(0), "GPUs each task or actor reserves"),
    "memory": Field(Integer(0), "bytes of memory each task or actor reserves"),
    "resources": Field(MapOf(Number(0), "custom resource: amount"),
                       "custom resources each task or actor reserves"),
    "address": Field(Text(), "the Ray cluster ('auto', 'ray://head:10001'); unset: the one "
                     "this process uses, or a new local one"),
}
_ACTORS_DEFAULTS = _defaults(ray_actors)
EXECUTORS: dict[str, tuple[Obj, Callable[..., Any]]] = {
    "ray": (Obj("ray", _RAY_OPTIONS, schema_name="rayTasks"), ray),
    "ray_actors": (Obj("ray_actors", {
        "num_actors": Field(Integer(1, _MAX_COUNT), "actors in the pool",
                            _ACTORS_DEFAULTS["num_actors"]),
        "max_concurrency": Field(Integer(1, _MAX_COUNT), "calls each actor runs at once",
                                 _ACTORS_DEFAULTS["max_concurrency"]),
        **_RAY_OPTIONS,
    }, schema_name="rayActors"), ray_actors),
}


class ExecutorKind(Kind):
    """Where an agent runs: ``executor: {ray: {num_cpus: 1}}``, ``{ray_actors:
    {num_actors: 2}}``, or just ``ray`` / ``ray_actors`` for the defaults."""

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if isinstance(value, str):
            Choice(tuple(EXECUTORS)).check(value, path, ck)
            return
        if not _check_keys(value, path, ck, EXECUTORS, "an executor"):
            return
        if len(value) != 1:
            ck.fail(path, f"an executor has one key, got {len(value)}",
                    f"keep one of {_options(EXECUTORS)}")
        for key, settings in value.items():
            if key in EXECUTORS and ck.enter((*path, key)):
                EXECUTORS[key][0].check(settings or {}, (*path, key), ck)

    def build(self, value: Any, path: Path, bd: Builder) -> Any:
        [(key, settings)] = [(value, None)] if isinstance(value, str) else value.items()
        fields, make = EXECUTORS[key]
        try:
            return make(**fields.build(settings or {}, (*path, key), bd))
        except GraphError as exc:
            raise bd.wrap((*path, key), exc) from None

    def dump(self, obj: Any, path: Path, dp: Dumper) -> Any:
        options: RayOptions = obj.options
        settings = {name: getattr(options, name) for name in _RAY_OPTIONS}
        if isinstance(obj, RayActors):
            key = "ray_actors"
            settings.update(num_actors=obj.num_actors, max_concurrency=obj.max_concurrency)
        elif isinstance(obj, RayTasks):
            key = "ray"
        else:
            dp.fail(path, f"{obj!r} is not an executor a spec can name",
                    f"use one of {_options(EXECUTORS)}")
            return None
        written = EXECUTORS[key][0].dump(settings, (*path, key), dp)
        return {key: written} if written else key

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return {"anyOf": [
            {"type": "string", "enum": list(EXECUTORS)},
            *({"type": "object", "properties": {key: {"anyOf": [
                {"type": "null"}, fields.schema(sg)]}}, "required": [key],
               "additionalProperties": False} for key, (fields, _) in EXECUTORS.items())]}


# ---- agents -----------------------------------------------------------------------------

BASES = ("use", "pattern", "graph")


class AgentKind(Kind):
    """An agent: an import path, or a mapping with one of ``use:``, ``pattern:`` or
    ``graph:``. As a graph's node (``context="node"``) it takes ``Graph.add``'s wiring
    keys too; as a pattern's member (``"member"``) it takes the policies; elsewhere
    (``"agent"``: a fallback) neither."""

    def __init__(self, context: str) -> None:
        self.context = context

    def extras(self) -> dict[str, Field]:
        extra: dict[str, Field] = {}
        if self.context == "node":
            extra.update(NODE_FIELDS)
        if self.context in ("node", "member"):
            extra.update(POLICY_FIELDS)
        return extra

    def _misplaced(self) -> dict[str, str]:
        hints: dict[str, str] = {}
        if self.context != "node":
            for key in NODE_FIELDS:
                hints[key] = (f"`{key}` wires an agent into a graph: it belongs to an agent "
                              "listed under a graph's `agents:`, not to a pattern's member")
        if self.context == "agent":
            for key in POLICY_FIELDS:
                hints[key] = f"`{key}` cannot be set here: a fallback takes no policies"
        for key in ("breakers", "limits") if self.context == "agent" else ("breakers",):
            hints.setdefault(key, "breakers and limits are declared at the top level of the "
                                  "spec and referred to by name")
        return hints

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if isinstance(value, str):
            ImportPath("agent").check(value, path, ck)
            return
        if not isinstance(value, dict):
            ck.fail(path, f"an agent must be an import path 'module:attribute' or a mapping "
                    f"with `use`, `pattern` or `graph`, got {show(value)}",
                    "e.g. {use: 'support.agents:classify'}")
            return
        bases = [base for base in BASES if base in value]
        pattern = PATTERNS.get(value["pattern"]) if "pattern" in bases and \
            isinstance(value["pattern"], str) else None
        # With an unknown pattern, its parameters are not reported as unknown keys too.
        parameters = pattern.fields.fields if pattern else {
            key for known in PATTERNS.values() for key in known.fields.fields} \
            if "pattern" in bases else ()
        allowed = [*bases, *parameters, *self.extras()]
        if not bases:
            allowed = [*BASES, *self.extras()]
        _check_keys(value, path, ck, allowed, "an agent", self._misplaced())
        if not bases:
            ck.fail(path, "the agent is missing `use`",
                    "name its code with use: 'module:attribute', or build it with pattern: "
                    "or graph:")
        elif len(bases) > 1:
            ck.fail(path, f"the agent gives {' and '.join('`' + b + '`' for b in bases)}",
                    "an agent is one of use:, pattern: or graph:; keep one")
        else:
            base = bases[0]
            if base == "use":
                ImportPath("agent").check(value["use"], (*path, "use"), ck)
            elif base == "graph":
                if ck.enter((*path, "graph")):
                    NESTED_GRAPH.check(value["graph"], (*path, "graph"), ck)
            else:
                Choice(tuple(PATTERNS)).check(value["pattern"], (*path, "pattern"), ck)
                if pattern is not None:
                    pattern.fields.check_fields(value, path, ck)
        for name, spec in self.extras().items():
            if name in value and ck.enter((*path, name)):
                spec.kind.check(value[name], (*path, name), ck)

    def build_agent(self, value: Any, path: Path, bd: Builder) -> Any:
        if isinstance(value, str):
            return bd.resolved[path]
        if "use" in value:
            use_path: Path = (*path, "use")
            return bd.resolved[use_path]
        if "graph" in value:
            return NESTED_GRAPH.build(value["graph"], (*path, "graph"), bd)
        return PATTERNS[value["pattern"]].build(value, path, bd)

    def build_policies(self, value: Any, path: Path, bd: Builder) -> dict[str, Any]:
        if isinstance(value, str):
            return {}
        return {name: spec.kind.build(value[name], (*path, name), bd)
                for name, spec in POLICY_FIELDS.items()
                if name in value and self.context != "agent"}

    def build(self, value: Any, path: Path, bd: Builder) -> Any:
        agent = self.build_agent(value, path, bd)
        policies = self.build_policies(value, path, bd)
        if not policies:
            return agent
        try:
            return policy(agent, **policies)
        except GraphError as exc:
            raise bd.wrap(path, exc) from None

    def dump(self, obj: Any, path: Path, dp: Dumper) -> Any:
        policed = None
        if isinstance(obj, Policed):
            if self.context == "agent":
                return dp.fail(path, "the fallback has policies of its own",
                               "a fallback takes no policies; give them to the agent")
            policed, obj = obj, obj.agent
        base = dump_base(obj, path, dp)
        if isinstance(base, str) and policed is None:
            return base
        out: dict[str, Any] = {"use": base} if isinstance(base, str) else base
        if policed is not None:
            dump_policies(policed, path, dp, out)
        return out

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        name = {"node": "node", "member": "member", "agent": "agent"}[self.context]
        return sg.ref(name, lambda: self._schema(sg))

    def _schema(self, sg: SchemaGen) -> dict[str, Any]:
        extras = {key: {**spec.kind.schema(sg), "description": spec.doc}
                  for key, spec in self.extras().items()}

        def variant(base: dict[str, Any], required: list[str]) -> dict[str, Any]:
            return {"type": "object", "properties": {**base, **extras}, "required": required,
                    "additionalProperties": False}

        variants: list[Any] = [
            ImportPath("agent").schema(sg),
            variant({"use": {**ImportPath("agent").schema(sg),
                             "description": "The agent's import path."}}, ["use"]),
            variant({"graph": NESTED_GRAPH.schema(sg)}, ["graph"]),
        ]
        for pattern_name, pattern in PATTERNS.items():
            properties = {"pattern": {"const": pattern_name, "description": pattern.doc},
                          **pattern.fields.properties(sg)}
            required = ["pattern", *(n for n, s in pattern.fields.fields.items() if s.required)]
            variants.append(variant(properties, required))
        return {"oneOf": variants}


def dump_base(obj: Any, path: Path, dp: Dumper) -> Any:
    """An agent as an import path, or a ``pattern:``/``graph:`` mapping."""
    if isinstance(obj, CompiledGraph):
        declared = getattr(obj, "_cp_declared", None)
        if declared is not None:
            return dump_pattern(obj, declared, path, dp)
        return {"graph": dump_graph(obj, (*path, "graph"), dp, root=False)}
    return dp.import_path(obj, path, "agent")


def dump_policies(policed: Policed, path: Path, dp: Dumper, out: dict[str, Any]) -> None:
    """Writes the policies into ``out`` (where shared breakers and limits are filled in
    once the whole graph is written)."""
    if policed.retry is not None:
        out["retry"] = RetryKind().dump(policed.retry, (*path, "retry"), dp)
    if policed.timeout is not None:
        out["timeout"] = policed.timeout
    if policed.fallback is not None:
        out["fallback"] = AgentKind("agent").dump(policed.fallback, (*path, "fallback"), dp)
    if policed.breaker is not None:
        dp.share(policed.breaker, "breakers", out, "breaker")
    if len(policed.limits) == 1:
        dp.share(policed.limits[0], "limits", out, "limits")
    elif policed.limits:
        limits: list[Any] = [None] * len(policed.limits)
        out["limits"] = limits
        for index, limit in enumerate(policed.limits):
            dp.share(limit, "limits", limits, index)
    if policed.review is not None:
        out["review"] = ReviewKind().dump(policed.review, (*path, "review"), dp)
    if policed.cache is not None:
        out["cache"] = CacheKind().dump(policed.cache, (*path, "cache"), dp)


NODE_FIELDS: dict[str, Field] = {
    "after": Field(OneOrList(Text(), "agent names"),
                   "the agent(s) whose outputs this one receives"),
    "priority": Field(Integer(_PRIORITY_MIN, _PRIORITY_MAX),
                      "higher runs first when several are ready (unset: inherited)"),
    "dispatch": Field(Choice(tuple(DISPATCH)), "how a plain callable runs", "auto"),
    "join": Field(Choice(tuple(JOINS)), "when an agent with several predecessors runs",
                  "all"),
    "on_error": Field(Choice(tuple(NODE_ERROR_MODES)), "what this agent's failure does",
                      "inherit"),
    "executor": Field(ExecutorKind(), "where the agent's calls run (unset: in this "
                      "process): Ray tasks or a pool of Ray actors"),
}
POLICY_FIELDS: dict[str, Field] = {
    "retry": Field(RetryKind(), "attempts, or retry settings"),
    "timeout": Field(Number(above=0, unit=" of seconds"), "seconds per attempt"),
    "fallback": Field(AgentKind("agent"), "an agent run with the same input after the "
                      "final failure"),
    "breaker": Field(BreakerKind(), "a circuit breaker: the name of a top-level "
                     "`breakers` entry, or settings of its own"),
    "limits": Field(LimitsKind(), "limit(s): names of top-level `limits` entries, or "
                    "settings of their own"),
    "review": Field(ReviewKind(), "a confidence gate"),
    "cache": Field(CacheKind(), "reuse outputs for inputs already seen, from the graph's "
                   "store"),
}


# ---- patterns ---------------------------------------------------------------------------


class MergeKind(Kind):
    """A merge policy: a policy name, ``{judge: agent}``, or a reducer agent."""

    def __init__(self, policies: Sequence[str]) -> None:
        self.policies = tuple(policies)
        self.member = AgentKind("member")

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if isinstance(value, str) and ":" not in value:
            Choice(self.policies).check(value, path, ck)
        elif isinstance(value, dict) and "judge" in value:
            if _check_keys(value, path, ck, ["judge"], "a judge merge") and \
                    ck.enter((*path, "judge")):
                self.member.check(value["judge"], (*path, "judge"), ck)
        else:
            self.member.check(value, path, ck)

    def build(self, value: Any, path: Path, bd: Builder) -> Any:
        if isinstance(value, str) and ":" not in value:
            return value
        if isinstance(value, dict) and "judge" in value:
            try:
                return _patterns.judge(self.member.build(value["judge"], (*path, "judge"), bd))
            except GraphError as exc:
                raise bd.wrap(path, exc) from None
        return self.member.build(value, path, bd)

    def dump(self, obj: Any, path: Path, dp: Dumper) -> Any:
        if isinstance(obj, str):
            return obj
        if isinstance(obj, Judge):
            return {"judge": self.member.dump(obj.choose, (*path, "judge"), dp)}
        return self.member.dump(obj, path, dp)

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return {"anyOf": [
            {"type": "string", "enum": list(self.policies)},
            {"type": "object", "properties": {"judge": self.member.schema(sg)},
             "required": ["judge"], "additionalProperties": False},
            self.member.schema(sg)]}


class StepsKind(Kind):
    """``sequential``'s agents: a list (named after the agents) or ``{name: agent}``."""

    def __init__(self) -> None:
        self.as_list = ListOf(AgentKind("member"), "agents")
        self.as_map = MapOf(AgentKind("member"), "named steps")

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if isinstance(value, dict):
            self.as_map.check(value, path, ck)
        else:
            self.as_list.check(value, path, ck)

    def build(self, value: Any, path: Path, bd: Builder) -> Any:
        if isinstance(value, dict):
            return list(self.as_map.build(value, path, bd).items())
        return self.as_list.build(value, path, bd)

    def dump(self, obj: Any, path: Path, dp: Dumper) -> Any:
        if isinstance(obj, dict):
            return self.as_map.dump(obj, path, dp)
        return self.as_list.dump(obj, path, dp)

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return {"anyOf": [self.as_list.schema(sg), self.as_map.schema(sg)]}


@dataclass(frozen=True)
class PatternDef:
    """A pattern: its parameters (named as the builder's), and the call that builds it."""

    doc: str
    fields: Obj
    call: Callable[[dict[str, Any]], CompiledGraph]
    # The builder's bound arguments (and the graph it built) -> the spec's parameters.
    arguments: Callable[[dict[str, Any], CompiledGraph], dict[str, Any]] = \
        field(default=lambda args, app: dict(args))

    def build(self, value: dict[str, Any], path: Path, bd: Builder) -> CompiledGraph:
        arguments = self.fields.build(
            {key: item for key, item in value.items() if key in self.fields.fields}, path, bd)
        try:
            return self.call(arguments)
        except GraphError as exc:
            raise bd.wrap(path, exc) from None


def _member(doc: str, *, required: bool = True) -> Field:
    return Field(AgentKind("member"), doc, required=required)


def _members(what: str, doc: str) -> Field:
    return Field(MapOf(AgentKind("member"), what), doc, required=True)


_PRIORITIES = Field(MapOf(Integer(_PRIORITY_MIN, _PRIORITY_MAX), "name: priority"),
                    "name -> priority; higher runs first")
_QUORUM = Field(Number(above=0), "votes needed: a count (>= 1) or a fraction (< 1)")
_KEY_FIELD = Field(ImportPath("vote key"), "what votes compare of each output "
                   "(a function's import path)")


def _sequential(args: dict[str, Any]) -> CompiledGraph:
    return _patterns.sequential(*args["agents"])


def _sequential_arguments(args: dict[str, Any], app: CompiledGraph) -> dict[str, Any]:
    steps = list(args["agents"])
    if len(steps) == 1 and isinstance(steps[0], (list, tuple)) and not (
            isinstance(steps[0], tuple) and len(steps[0]) == 2 and isinstance(steps[0][0], str)):
        steps = list(steps[0])
    if any(isinstance(step, tuple) for step in steps):
        names = [spec.name for spec in app._specs]
        agents = [step[1] if isinstance(step, tuple) else step for step in steps]
        return {"agents": dict(zip(names, agents))}
    return {"agents": steps}


def _parallel_arguments(args: dict[str, Any], app: CompiledGraph) -> dict[str, Any]:
    args = dict(args)
    args["branches"] = {**(args.get("branches") or {}), **args.pop("named_branches", {})}
    return args


def _kwargs(call: Callable[..., CompiledGraph], *positional: str) -> \
        Callable[[dict[str, Any]], CompiledGraph]:
    def build(args: dict[str, Any]) -> CompiledGraph:
        args = dict(args)
        leading = [args.pop(name) for name in positional]
        return call(*leading, **args)

    return build


PATTERNS: dict[str, PatternDef] = {
    "sequential": PatternDef(
        "Runs agents one after another.",
        Obj("sequential", {"agents": Field(StepsKind(), "the steps, in order: a list, or "
                                           "{name: agent}", required=True)}),
        _sequential, _sequential_arguments),
    "parallel": PatternDef(
        "Runs every branch on the same input and merges their outputs.",
        Obj("parallel", {
            "branches": _members("branches", "the branches by name"),
            "merge": Field(MergeKind(MERGE_POLICIES), "'all', 'first', 'majority', "
                           "'quorum', 'confidence', {judge: agent} or a reducer agent"),
            "priorities": _PRIORITIES, "quorum": _QUORUM, "key": _KEY_FIELD}),
        _kwargs(_patterns.parallel, "branches"), _parallel_arguments),
    "consensus": PatternDef(
        "Gives the same problem to several agents and converges on one answer.",
        Obj("consensus", {
            "agents": Field(ListOf(AgentKind("member"), "agents"), "the voters",
                            required=True),
            "vote": Field(MergeKind(("majority", "quorum", "confidence")),
                          "'majority', 'quorum', 'confidence', or a judge agent",
                          "majority"),
            "quorum": _QUORUM, "key": _KEY_FIELD}),
        _kwargs(_patterns.consensus, "agents")),
    "fan_out": PatternDef(
        "Runs a worker once per item of a list known only at run time.",
        Obj("fan_out", {
            "worker": _member("the agent run on each item"),
            "over": Field(ImportPath("function"), "a function mapping the input to the items",
                          required=True),
            "merge": Field(MergeKind(tuple(p for p in MERGE_POLICIES if p != "quorum")),
                           "None (a list), a policy, {judge: agent} or a reducer agent"),
            "max_items": Field(Integer(1, None), "refuse runs with more items"),
            "key": _KEY_FIELD}),
        _kwargs(_patterns.fan_out, "worker")),
    "router": PatternDef(
        "Classifies the input and hands it to the agent of each intent found.",
        Obj("router", {
            "classify": _member("the classifier"),
            "routes": _members("routes", "intent -> agent"),
            "default": _member("the agent for intents with no route", required=False),
            "priorities": _PRIORITIES}),
        _kwargs(_patterns.router, "classify", "routes")),
    "supervisor": PatternDef(
        "A planner splits the task; workers run the subtasks; a synthesizer merges.",
        Obj("supervisor", {
            "planner": _member("the agent returning the subtasks"),
            "workers": _members("workers", "worker name -> agent"),
            "synthesizer": _member("the agent merging the results")}),
        _kwargs(_patterns.supervisor, "planner")),
    "loop": PatternDef(
        "Drafts, evaluates and revises until the evaluator passes the draft.",
        Obj("loop", {
            "worker": _member("the agent drafting"),
            "evaluator": _member("the agent judging each draft"),
            "max_iterations": Field(Integer(1, None), "iterations at most", 5)}),
        _kwargs(_patterns.loop, "worker", "evaluator")),
    "group_chat": PatternDef(
        "A managed conversation: each turn the manager picks the next speaker.",
        Obj("group_chat", {
            "participants": _members("participants", "name -> agent"),
            "manager": _member("the agent picking the next speaker"),
            "until": _member("an agent ending the chat when true", required=False),
            "max_turns": Field(Integer(1, None), "turns at most", 12)}),
        _kwargs(_patterns.group_chat, "participants")),
    "adaptive": PatternDef(
        "Runs a cheap agent and escalates when its confidence is low.",
        Obj("adaptive", {
            "cheap": _member("the cheap agent"),
            "escalate_to": _member("the agent escalated to"),
            "below": Field(Number(above=0, maximum=1), "confidence below which it "
                           "escalates", 0.7)}),
        _kwargs(_patterns.adaptive, "cheap")),
}


def dump_pattern(app: CompiledGraph, declared: tuple[str, dict[str, Any]], path: Path,
                 dp: Dumper) -> dict[str, Any]:
    name, arguments = declared
    pattern = PATTERNS[name]
    return {"pattern": name, **pattern.fields.dump(pattern.arguments(arguments, app), path, dp)}


# ---- graphs -----------------------------------------------------------------------------

INFO_FIELDS: dict[str, Field] = {
    "name": Field(Text(), "the graph's name"),
    "description": Field(Text(100_000), "what the graph does"),
}
GRAPH_FIELDS: dict[str, Field] = {
    **INFO_FIELDS,
    "on_error": Field(Choice(tuple(GRAPH_ERROR_MODES)), "what an agent's failure does by "
                      "default", "fail"),
    "budget": Field(MapOf(Number(above=0), "usage name: limit"), "default per-run budget, "
                    "e.g. {tokens: 10000}"),
    "deadline": Field(Number(above=0, unit=" of seconds"), "default per-run deadline in "
                      "seconds"),
    "agents": Field(MapOf(AgentKind("node"), "agents"), "the agents by name",
                    required=True),
}
SECTION_FIELDS: dict[str, Field] = {
    "$schema": Field(Text(), "the spec's JSON Schema (for editors; ignored)"),
    "breakers": Field(MapOf(BREAKER.settings, "breakers"), "circuit breakers shared by name"),
    "limits": Field(MapOf(LIMIT.settings, "limits"), "limits shared by name"),
}


class GraphKind(Kind):
    def __init__(self, root: bool) -> None:
        self.root = root
        self.fields = Obj("the graph" if root else "a nested graph",
                          {**GRAPH_FIELDS, **(SECTION_FIELDS if root else {})},
                          schema_name="graph" if root else "nestedGraph")

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        hints = {} if self.root else {
            key: "breakers and limits are declared once, at the top level of the spec"
            for key in ("breakers", "limits")}
        if self.root and isinstance(value, dict) and "use" in value:
            hints["use"] = "the top level is a graph (agents:) or a pattern (pattern:)"
        if not _check_keys(value, path, ck, self.fields.fields,
                           self.fields.what, hints):
            return
        self.fields.check_fields(value, path, ck)
        agents = value.get("agents")
        if isinstance(agents, dict):
            self._check_wiring(agents, (*path, "agents"), ck)

    def _check_wiring(self, agents: dict[Any, Any], path: Path, ck: Checker) -> None:
        names = [name for name in agents if isinstance(name, str)]
        edges: dict[str, list[str]] = {}
        for name in names:
            node = agents[name]
            after = node.get("after") if isinstance(node, dict) else None
            after = [after] if isinstance(after, str) else after
            if not isinstance(after, list):
                continue
            edges[name] = []
            for index, predecessor in enumerate(after):
                where = (*path, name, "after") + \
                    ((index,) if isinstance(node["after"], list) else ())
                if not isinstance(predecessor, str):
                    continue
                if predecessor == name:
                    ck.fail(where, f"agent {name!r} comes after itself",
                            "remove it from its own `after`")
                elif predecessor not in agents:
                    ck.fail(where, f"{predecessor!r} is not an agent of this graph",
                            suggest(predecessor, names) or
                            f"the agents are {_options(names)}")
                else:
                    edges[name].append(predecessor)
        cycle = _find_cycle(edges)
        if cycle:
            ck.fail((*path, cycle[0], "after"),
                    f"the agents form a cycle ({' -> '.join(cycle)})",
                    "remove one of these `after` references; loops are built with "
                    "pattern: loop")

    def build(self, value: Any, path: Path, bd: Builder) -> CompiledGraph:
        graph = Graph(on_error=value.get("on_error", "fail"))
        node_kind = AgentKind("node")
        for name, node in value["agents"].items():
            node_path = (*path, "agents", name)
            agent = node_kind.build_agent(node, node_path, bd)
            options = node_kind.build_policies(node, node_path, bd)
            if isinstance(node, dict):
                for key, spec in NODE_FIELDS.items():
                    if key in node:
                        options[key] = spec.kind.build(node[key], (*node_path, key), bd)
            if isinstance(options.get("limits"), list):
                options["limits"] = tuple(options["limits"])
            graph.add(name, agent, **options)
        try:
            app = graph.compile(budget=value.get("budget"), deadline=value.get("deadline"),
                                store=bd.store if self.root else None)
        except GraphError as exc:
            node = exc.node
            where = (*path, "agents", node) if isinstance(node, str) and \
                node in value["agents"] else path
            raise bd.wrap(where, exc) from None
        remember_info(app, value)
        return app

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        return self.fields.schema(sg)


def remember_info(app: CompiledGraph, value: Mapping[str, Any]) -> None:
    info = {key: value[key] for key in INFO_FIELDS if key in value}
    if info:
        app._cp_spec_info = info  # type: ignore[attr-defined]


def _find_cycle(edges: Mapping[str, list[str]]) -> list[str]:
    """A cycle among ``name -> predecessors`` as ``[a, ..., a]``, or []. Iterative."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for start in edges:
        if state.get(start):
            continue
        stack: list[tuple[str, Iterable[str]]] = [(start, iter(edges.get(start, ())))]
        state[start] = 1
        while stack:
            node, successors = stack[-1]
            for following in successors:
                if state.get(following) == 1:
                    names = [name for name, _ in stack]
                    return [*names[names.index(following):], following][::-1]
                if not state.get(following):
                    state[following] = 1
                    stack.append((following, iter(edges.get(following, ()))))
                    break
            else:
                state[node] = 2
                stack.pop()
    return []


ROOT_GRAPH = GraphKind(root=True)
NESTED_GRAPH = GraphKind(root=False)


def dump_graph(app: CompiledGraph, path: Path, dp: Dumper, *, root: bool) -> dict[str, Any]:
    specs: tuple[NodeSpec, ...] = app._specs
    out: dict[str, Any] = dict(getattr(app, "_cp_spec_info", {}))
    if not specs:
        dp.fail(path, "the graph does not keep its declaration",
                "build it with cp.Graph().add(...).compile() or a pattern")
        return out
    # The graph's own on_error shows on the agents that inherit it.
    modes = {node["name"]: node["on_error"] for node in app.describe()["nodes"]}
    inherited = [modes[spec.name] for spec in specs if spec.on_error == "inherit"]
    if inherited and inherited[0] != "fail":
        out["on_error"] = inherited[0]
    if app._budget:
        out["budget"] = dict(app._budget)
    if app._deadline:
        out["deadline"] = app._deadline
    agents: dict[str, Any] = {}
    for spec in specs:
        agents[spec.name] = dump_node(spec, (*path, "agents", spec.name), dp)
    out["agents"] = agents
    return out


def dump_node(spec: NodeSpec, path: Path, dp: Dumper) -> dict[str, Any]:
    agent = spec.agent.agent if isinstance(spec.agent, Policed) else spec.agent
    base = dump_base(agent, path, dp)
    out: dict[str, Any] = {"use": base} if isinstance(base, str) else dict(base)
    after = spec.predecessors()
    if after:
        out["after"] = after[0] if len(after) == 1 else after
    for key in ("priority", "dispatch", "join", "on_error"):
        value = getattr(spec, key)
        if value is not None and not _same(value, NODE_FIELDS[key].default):
            out[key] = value
    if spec.executor is not None:
        out["executor"] = NODE_FIELDS["executor"].kind.dump(spec.executor,
                                                            (*path, "executor"), dp)
    policed = spec.policed
    if policed is not None:
        dump_policies(policed, path, dp, out)
    return out


def root_kind(value: Any) -> str:
    """``"pattern"`` for a spec whose top level is a pattern, else ``"graph"``."""
    return "pattern" if isinstance(value, dict) and "pattern" in value else "graph"


class PatternRoot(Kind):
    """A spec whose top level is a pattern: ``{pattern: parallel, branches: ...}``."""

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        name = value.get("pattern")
        pattern = PATTERNS.get(name) if isinstance(name, str) else None
        allowed = ["pattern", *(pattern.fields.fields if pattern else ()), *INFO_FIELDS,
                   *SECTION_FIELDS]
        _check_keys(value, path, ck, allowed, "the spec")
        Choice(tuple(PATTERNS)).check(name, (*path, "pattern"), ck)
        if pattern is not None:
            pattern.fields.check_fields(value, path, ck)
        for key, spec in {**INFO_FIELDS, **SECTION_FIELDS}.items():
            if key in value and ck.enter((*path, key)):
                spec.kind.check(value[key], (*path, key), ck)

    def build(self, value: Any, path: Path, bd: Builder) -> CompiledGraph:
        app = PATTERNS[value["pattern"]].build(value, path, bd)
        remember_info(app, value)
        return app

    def schema(self, sg: SchemaGen) -> dict[str, Any]:
        variants = []
        extras = {key: {**spec.kind.schema(sg), "description": spec.doc}
                  for key, spec in {**INFO_FIELDS, **SECTION_FIELDS}.items()}
        for name, pattern in PATTERNS.items():
            required = ["pattern", *(n for n, s in pattern.fields.fields.items() if s.required)]
            variants.append({
                "type": "object", "additionalProperties": False, "required": required,
                "properties": {"pattern": {"const": name, "description": pattern.doc},
                               **pattern.fields.properties(sg), **extras}})
        return {"oneOf": variants}


PATTERN_ROOT = PatternRoot()
