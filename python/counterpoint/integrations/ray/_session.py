"""The process's connection to Ray, and what Ray's failures mean for an agent call."""

from __future__ import annotations

import re
import threading
from typing import Any, NoReturn

import ray
from ray import exceptions as ray_errors

from ..._errors import WorkerLost

_connecting = threading.Lock()


def connect(address: str | None) -> None:
    """Connects to the cluster at ``address``, or to the Ray this process already uses,
    or starts a local one; once per process. (Must run on a thread that lives on, such
    as the one compiling the graph: Ray keeps per-thread state from its init.)"""
    if ray.is_initialized():
        return
    with _connecting:
        if not ray.is_initialized():
            ray.init(address=address)


# Ray colours the names in its messages for terminals; a note or a log has no use for it.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Failures of the machinery rather than of the agent: the attempt is lost, not wrong.
LOST = (ray_errors.RayActorError, ray_errors.WorkerCrashedError, ray_errors.NodeDiedError,
        ray_errors.ObjectLostError, ray_errors.OutOfMemoryError)


def raise_agent_failure(name: str, error: BaseException, where: str) -> NoReturn:
    """Re-raises what a remote call of agent ``name`` failed with, as the run should see
    it: the agent's own exception as itself (so ``Retry(retry_on=...)`` and callers'
    ``except`` clauses work as for a local agent), a lost worker as :class:`WorkerLost`."""
    if isinstance(error, ray_errors.RayTaskError):
        cause: Any = error.cause
        if isinstance(cause, Exception):
            # (What Ray raises is a class made of RayTaskError and the cause's class,
            # whose own attributes may be the cause's: only the cause is plainly typed.)
            remote = _ANSI.sub("", vars(error).get("traceback_str") or str(error))
            note = f"raised by agent '{name}' on Ray; the remote traceback:\n{remote}"
            if hasattr(cause, "add_note"):  # Python 3.11+
                cause.add_note(note)
            raise cause from None
    if isinstance(error, LOST):
        text = _ANSI.sub("", str(error)).strip()
        first_line = text.splitlines()[0] if text else ""
        raise WorkerLost(name, f"the Ray {where} running it died "
                         f"({type(error).__name__}: {first_line})") from error
    raise error
