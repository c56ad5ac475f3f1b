"""Runs agents and whole batches on Ray (``pip install "counterpoint[ray]"``).

Imported only by graphs that use :func:`counterpoint.ray`, :func:`counterpoint.ray_actors`
or :func:`counterpoint.ray_batch`; counterpoint without Ray never imports it.
"""

from ._actors import RayActorAgent
from ._batch import run_batch
from ._session import connect
from ._tasks import RayTaskAgent

__all__ = ["RayActorAgent", "RayTaskAgent", "connect", "run_batch"]
