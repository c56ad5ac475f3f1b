"""An agent whose every call is one Ray task."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import ray

from ..._errors import GraphError
from ..._executors import RayTasks
from ._calls import blocking, is_factory
from ._session import connect, raise_agent_failure


class RayTaskAgent:
    """The coroutine agent the engine runs for ``executor=cp.ray(...)``: it submits the
    call as a Ray task and awaits its object ref, holding no thread meanwhile."""

    def __init__(self, name: str, agent: Any, executor: RayTasks) -> None:
        if is_factory(agent):
            raise GraphError(
                f"agent '{name}': a class cannot run as Ray tasks (each call would build "
                "it again); use executor=cp.ray_actors(...) to build it once per actor, or "
                "pass an instance", name)
        self.name = name
        self.agent = agent
        self.executor = executor
        connect(executor.options.address)
        call = blocking(agent)
        if not inspect.isfunction(call):
            def call(argument: Any, _call: Any = call) -> Any:
                return _call(argument)
        # Ray's retries are off: the agent's Retry decides, as for a local agent. The
        # function is exported to the cluster once, on the first call.
        self._remote = ray.remote(max_retries=0, retry_exceptions=False)(call).options(
            name=name, **executor.options.ray_options())

    async def __call__(self, argument: Any) -> Any:
        ref = self._remote.remote(argument)
        try:
            return await ref
        except asyncio.CancelledError:
            # A timeout or the run's end: stop the task (and its worker process, which is
            # the only way to stop a blocking call), then let the engine see the cancel.
            ray.cancel(ref, force=True)
            raise
        except Exception as error:  # noqa: BLE001 - sorted into the agent's own or lost
            raise_agent_failure(self.name, error, "worker")

    def __reduce__(self) -> tuple[Any, ...]:
        # The remote function is this process's; a copy elsewhere makes its own.
        return (RayTaskAgent, (self.name, self.agent, self.executor))

    def __repr__(self) -> str:
        return f"RayTaskAgent({self.name!r}, {self.executor.options})"
