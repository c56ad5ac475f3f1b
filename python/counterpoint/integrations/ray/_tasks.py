"""An agent whose every call is one Ray task."""

from __future__ import annotations

import inspect
from typing import Any

import ray

from ..._agents import SubmittingAgent
from ..._errors import GraphError
from ..._executors import RayTasks
from ._calls import blocking, is_factory
from ._ray_call import RayCall
from ._session import connect


class RayTaskAgent(SubmittingAgent):
    """The agent the engine runs for ``executor=cp.ray(...)``: each call submits a Ray
    task, and the engine follows its object ref without holding a thread."""

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

    def submit(self, argument: Any) -> RayCall:
        ref = self._remote.remote(argument)  # sent first: on its way while we set up
        call = RayCall(self.name, "worker")
        # Cancelled (a timeout, the run's end): the task and its worker process are
        # stopped, the only way to stop a blocking call.
        call.follow(ref, lambda: ray.cancel(ref, force=True))
        return call

    def __reduce__(self) -> tuple[Any, ...]:
        # The remote function is this process's; a copy elsewhere makes its own.
        return (RayTaskAgent, (self.name, self.agent, self.executor))

    def __repr__(self) -> str:
        return f"RayTaskAgent({self.name!r}, {self.executor.options})"
