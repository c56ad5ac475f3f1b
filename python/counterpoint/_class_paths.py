"""Classes named by import path in stored values, and the checks that keep decoding safe.

The JSON codec writes a user's pydantic model, dataclass or enum as its class's import
path (``module:qualname``) and its data. Decoding imports that class again and builds
the value from the data without calling anything the row names: the class is used only
if it is of the kind the row records (a pydantic ``BaseModel`` subclass, a dataclass or
an ``Enum``), and only pydantic's ``model_construct``, ``object.__new__`` with field
assignment, or an enum lookup are applied to it. A row can make the reader import an
installed module by name (running its top-level code, as any import does), but it cannot
call anything or pass arguments: that is what keeps a JSON store safe to open where a
pickled one is not.

pydantic is imported only to check a class that a row names as a model, so neither
``import counterpoint`` nor a store without models imports it.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import sys
import weakref
from typing import Any

from ._errors import StoreError

# The kinds of class a row can name, as the row records them.
MODEL, DATACLASS, ENUM = "model", "dataclass", "enum"

# Where each class encoded so far can be imported from, or why it cannot: checked once
# per class, not per value. Weak, so classes made at run time can still be collected.
_paths: weakref.WeakKeyDictionary[type, str | TypeError] = weakref.WeakKeyDictionary()


def is_pydantic_model(cls: type) -> bool:
    """True for subclasses of pydantic (v2) ``BaseModel``, found without importing it."""
    return any(base.__name__ == "BaseModel" and base.__module__ == "pydantic.main"
               for base in cls.__mro__)


def class_path(cls: type) -> str:
    """``module:qualname`` of ``cls``, which decoding imports again.

    Raises:
        TypeError: the class cannot be imported under its own name (defined inside a
            function, made at run time, or a parametrized generic), so a stored value of
            it could never be read back.
    """
    try:
        known = _paths[cls]
    except KeyError:
        known = _paths[cls] = _importable_path(cls)
    if isinstance(known, TypeError):
        raise known
    return known


def _importable_path(cls: type) -> str | TypeError:
    path = f"{cls.__module__}:{cls.__qualname__}"
    if "<locals>" in cls.__qualname__:
        return TypeError(
            f"{cls.__qualname__} is defined inside a function, so it cannot be imported "
            "again to read the stored value back; define the class at module level")
    found: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        found = getattr(found, part, None)
    if found is not cls:
        return TypeError(
            f"{cls.__qualname__} cannot be imported as {path} (it was made at run time, or "
            "is a parametrized generic), so the stored value could not be read back; "
            "define the class at module level under its own name")
    return path


def import_class(path: Any, kind: str) -> type:
    """The class a row names by ``path``, checked to be of the recorded ``kind``.

    Raises:
        StoreError: the path is malformed, the class cannot be imported (renamed, or its
            module is missing), or it is not of the kind the row records.
    """
    if not isinstance(path, str) or path.count(":") != 1:
        raise StoreError(f"a stored {kind} names its class as {path!r}, not as "
                         "'module:qualname'; the row is damaged or was written by other "
                         "software")
    module_name, qualname = path.split(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise StoreError(
            f"the stored {kind} of class {path} cannot be read: the class cannot be "
            f"imported ({type(exc).__name__}: {exc}); make it importable under that name "
            "again (restore the module or the class's old name), then read the run") \
            from exc
    if not isinstance(found, type) or not _is_kind(found, kind):
        raise StoreError(
            f"the stored {kind} names {path}, which is not a {_KIND_NAMES[kind]}; the row "
            "was not written by counterpoint for this class, so it is not decoded")
    return found


_KIND_NAMES = {MODEL: "pydantic BaseModel subclass", DATACLASS: "dataclass",
               ENUM: "Enum subclass"}


def _is_kind(cls: type, kind: str) -> bool:
    if kind == MODEL:
        if not is_pydantic_model(cls):
            return False
        import pydantic  # only when a row names a model, so only for stores that hold one

        return issubclass(cls, pydantic.BaseModel)
    if kind == DATACLASS:
        return dataclasses.is_dataclass(cls)
    return kind == ENUM and issubclass(cls, enum.Enum)
