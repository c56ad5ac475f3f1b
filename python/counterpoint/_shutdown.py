"""Interpreter exit with runs in flight: cancel, drain, stop — never hang, never crash."""

from __future__ import annotations

import atexit
import os

from ._loops import stop_engine_loop
from ._native import _core

# Agents still running at exit get this long to return before the process moves on.
_DRAIN_SECONDS = float(os.environ.get("COUNTERPOINT_EXIT_DRAIN_SECONDS", "2"))


def _shutdown() -> None:
    _core.shutdown(_DRAIN_SECONDS)
    stop_engine_loop(_DRAIN_SECONDS)


atexit.register(_shutdown)
