"""The allowlist: which modules a spec may import, checked for every reference before
any import, and the resolution of the references once they all passed."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any

from .._errors import SpecProblem
from ._grammar import ImportRef, Path, format_path, suggest


def check_allow(allow: Any) -> tuple[str, ...]:
    """``allow`` as a tuple of module patterns; raises TypeError/ValueError naming the fix
    (a wrong allowlist is the caller's mistake, not the spec's)."""
    if isinstance(allow, str) or not isinstance(allow, Iterable):
        raise TypeError(
            f"allow must be a list of module patterns such as ['support.agents', "
            f"'support.*'], got {allow!r}"
            + (f"; write allow=[{allow!r}]" if isinstance(allow, str) else ""))
    patterns = tuple(allow)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip() or pattern != pattern.strip():
            raise ValueError(
                f"allow entries must be module names or patterns such as 'support.*', got "
                f"{pattern!r}")
    return patterns


def is_allowed(module: str, allow: Sequence[str]) -> bool:
    """fnmatch-style, on the whole dotted name: ``support.*`` matches ``support.agents``
    and ``support.agents.billing`` but not ``support`` itself."""
    return any(fnmatchcase(module, pattern) for pattern in allow)


def refused(refs: Iterable[ImportRef], allow: Sequence[str]) -> list[SpecProblem]:
    """A problem for every reference to a module outside the allowlist."""
    problems = []
    for ref in refs:
        if is_allowed(ref.module, allow):
            continue
        if allow:
            hint = (f"add {ref.module!r} (or a pattern matching it) to allow=; it allows "
                    f"{', '.join(map(repr, allow))}")
        else:
            hint = f"nothing may be imported until you pass allow=[{ref.module!r}] (or a pattern)"
        problems.append(SpecProblem(
            format_path(ref.path),
            f"{ref.text!r} is in module {ref.module!r}, which the allowlist does not allow",
            hint))
    return problems


def resolve(refs: Iterable[ImportRef]) -> tuple[dict[Path, Any], list[SpecProblem],
                                                 BaseException | None]:
    """Imports the (allowed) modules and looks the names up with getattr.

    Returns what each reference names by its path, the problems, and the first
    exception an import raised (for ``__cause__``).
    """
    resolved: dict[Path, Any] = {}
    problems: list[SpecProblem] = []
    modules: dict[str, Any] = {}
    failures: dict[str, str] = {}
    cause: BaseException | None = None
    for ref in refs:
        where = format_path(ref.path)
        if ref.module in failures:
            problems.append(SpecProblem(where, failures[ref.module], _IMPORT_HINT))
            continue
        module = modules.get(ref.module)
        if module is None:
            try:
                module = importlib.import_module(ref.module)
            except Exception as exc:  # noqa: BLE001 - a module failing to import is the spec's problem
                cause = cause or exc
                missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
                if missing is not None and (ref.module == missing or
                                            ref.module.startswith(missing + ".")):
                    failures[ref.module] = f"there is no module {missing!r} to import"
                else:
                    failures[ref.module] = (f"importing module {ref.module!r} raised "
                                            f"{type(exc).__name__}: {exc}")
                problems.append(SpecProblem(where, failures[ref.module], _IMPORT_HINT))
                continue
            modules[ref.module] = module
        found: Any = module
        for index, attr in enumerate(ref.attrs):
            try:
                found = getattr(found, attr)
            except Exception:  # noqa: BLE001 - a missing (or failing) attribute
                owner = ref.module + ("" if index == 0 else ":" + ".".join(ref.attrs[:index]))
                names = [name for name in dir(found) if not name.startswith("_")]
                hint = suggest(attr, names) or (
                    f"check the name; if {attr!r} is a submodule, write "
                    f"'{ref.module}.{attr}:...'" if index == 0 and
                    hasattr(found, "__path__") else "check the spelling of the name")
                problems.append(SpecProblem(where, f"{owner} has no attribute {attr!r}", hint))
                break
        else:
            resolved[ref.path] = found
    return resolved, problems, cause


_IMPORT_HINT = ("check the module name and that it can be imported here (installed, or on "
                "sys.path)")

