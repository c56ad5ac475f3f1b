"""Interpreter exit with runs in flight: cancel, drain, stop — never hang, never crash."""

from __future__ import annotations

import atexit
import os
import warnings

from ._durable import stop_writers
from ._loops import stop_engine_loop
from ._native import _core

_DEFAULT_DRAIN_SECONDS = 2.0


def _drain_seconds() -> float:
    """Agents still running at exit get this long to return before the process moves on."""
    raw = os.environ.get("COUNTERPOINT_EXIT_DRAIN_SECONDS", "")
    try:
        seconds = float(raw) if raw.strip() else _DEFAULT_DRAIN_SECONDS
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also rejects NaN
        warnings.warn(
            f"COUNTERPOINT_EXIT_DRAIN_SECONDS={raw!r} is not a number of seconds >= 0; "
            f"using {_DEFAULT_DRAIN_SECONDS}",
            RuntimeWarning,
            stacklevel=2,
        )
        seconds = _DEFAULT_DRAIN_SECONDS
    return seconds


def _shutdown() -> None:
    seconds = _drain_seconds()
    _core.shutdown(seconds)
    stop_writers()
    stop_engine_loop(seconds)


atexit.register(_shutdown)
