"""Reading and writing spec files: JSON with the standard library, YAML with PyYAML's
safe loader only (an optional dependency)."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from .._errors import SpecError

MAX_BYTES = 10 * 2**20
FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}


def yaml_module() -> ModuleType:
    try:
        return importlib.import_module("yaml")
    except ImportError:
        raise ImportError(
            'YAML specs need PyYAML: pip install "counterpoint[yaml]" (or use a .json spec)'
        ) from None


def format_of(path: Path) -> str:
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise SpecError(str(path), "", f"{path.suffix or 'no suffix'!r} is not a spec file "
                        "type", "name the file .json, .yaml or .yml")
    return found


def read(path: Path) -> Any:
    """The file's data (not yet checked); SpecError for what cannot be read or parsed."""
    source = str(path)
    kind = format_of(path)
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SpecError(source, "", f"cannot read the spec: {exc.strerror or exc}",
                        "check the path") from exc
    if len(raw) > MAX_BYTES:
        raise SpecError(source, "", f"the file is larger than {MAX_BYTES >> 20} MiB",
                        "split the spec")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(source, "", f"the file is not UTF-8 text ({exc.reason} at byte "
                        f"{exc.start})", "save it as UTF-8") from None
    return parse(text, kind, source)


class _Duplicate(Exception):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def parse(text: str, kind: str, source: str) -> Any:
    if kind == "json":
        return _parse_json(text, source)
    return _parse_yaml(text, source)


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as exc:
        raise SpecError(source, "", f"invalid JSON: {exc.msg}",
                        "fix the syntax at that place", line=exc.lineno,
                        column=exc.colno) from None
    except _Duplicate as exc:
        raise SpecError(source, "", f"the key {exc.args[0]!r} appears twice in one object",
                        "keep one; with two, one would silently replace the other") from None
    except RecursionError:
        raise SpecError(source, "", "the JSON nests too deeply", "flatten the spec") from None


def _parse_yaml(text: str, source: str) -> Any:
    yaml = yaml_module()
    try:
        # Composing builds the node tree only (no objects): duplicate keys are found with
        # their line, then safe_load builds plain data.
        _check_duplicates(yaml, yaml.compose(text, Loader=yaml.SafeLoader), source)
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot parse it"
        raise SpecError(source, "", f"invalid YAML: {problem}", "fix the syntax at that place",
                        line=mark.line + 1 if mark else None,
                        column=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise SpecError(source, "", f"invalid YAML: {exc}", "fix the syntax") from None
    except RecursionError:
        raise SpecError(source, "", "the YAML nests too deeply", "flatten the spec") from None


def _check_duplicates(yaml: Any, root: Any, source: str) -> None:
    seen: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[Any] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if (key.tag, key.value) in keys:
                        raise SpecError(
                            source, "", f"the key {key.value!r} appears twice in one mapping",
                            "keep one; with two, one would silently replace the other",
                            line=key.start_mark.line + 1, column=key.start_mark.column + 1)
                    keys.add((key.tag, key.value))
                stack.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def write(data: dict[str, Any], path: str | os.PathLike[str]) -> None:
    target = Path(path)
    kind = format_of(target)
    if kind == "json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml_module().safe_dump(data, sort_keys=False, allow_unicode=True)
    target.write_text(text, encoding="utf-8")
