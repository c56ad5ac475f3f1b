"""One typed spec per node: what ``Graph.add`` records and ``compile`` validates once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from types import FunctionType
from typing import Any, NamedTuple

from ._agents import DISPATCH, native_agent, submits_calls
from ._errors import GraphError
from ._executors import Executor
from ._handoffs import Annotations, annotations_of, checked
from ._native import _core
from ._policies import Cache, Policed, counted_attempts, policy

JOINS = {mode.name: mode for mode in _core.JoinMode}
GRAPH_ERROR_MODES = {"fail": _core.ErrorMode.fail_run, "continue": _core.ErrorMode.continue_run}
NODE_ERROR_MODES = {"inherit": _core.ErrorMode.inherit, **GRAPH_ERROR_MODES}
_PRIORITY_RANGE = range(-(2**31), 2**31)
# Wraps a cached agent: (agent name, agent as declared, agent as called, its Cache) ->
# the agent to call. Made by compile() for a graph with a store (see counterpoint._cache).
Caching = Callable[[str, Any, Any, Cache], Any]


def _choices(options: Any) -> str:
    return ", ".join(repr(option) for option in options)


class NativeNode(NamedTuple):
    """A node as the engine takes it, and what running it needs from a run."""

    spec: Any  # _core.NodeSpec
    uses_event_loop: bool
    submits_calls: bool  # see CompiledGraph.submits_calls


@dataclass(frozen=True)
class NodeSpec:
    """One agent of a graph as declared, policies included. Nothing is checked when it
    is recorded; :meth:`validate` reports every problem naming the agent."""

    name: Any
    agent: Any
    after: Any = ()
    priority: Any = None  # None: inherit the highest priority of the predecessors
    dispatch: Any = "auto"
    join: Any = "all"
    on_error: Any = "inherit"
    retry: Any = None
    timeout: Any = None
    fallback: Any = None
    breaker: Any = None
    limits: Any = None
    review: Any = None
    executor: Any = None  # None: in this process
    cache: Any = None

    def _fail(self, problem: str) -> GraphError:
        return GraphError(f"agent '{self.name}': {problem}", self.name)

    def predecessors(self) -> list[str]:
        """``after`` as a list of names; raises GraphError naming the agent otherwise."""
        after = self.after
        if after is None:
            return []
        if isinstance(after, str):
            return [after]
        if not isinstance(after, (list, tuple)):
            raise self._fail(f"`after` must be an agent name or a list of names, got {after!r}")
        for predecessor in after:
            if not isinstance(predecessor, str):
                raise self._fail(f"`after` must name agents by string, got {predecessor!r}")
        return list(after)

    @cached_property
    def policed(self) -> Policed | None:
        """The agent's policies, from ``add()``'s arguments and a ``cp.policy`` agent
        (worked out once; validate, pauses_for_review and to_native all read it)."""
        given = {"retry": self.retry, "timeout": self.timeout, "fallback": self.fallback,
                 "breaker": self.breaker, "limits": self.limits, "review": self.review,
                 "cache": self.cache}
        agent = self.agent
        if isinstance(agent, Policed):
            for field_name, value in given.items():
                if value is not None:
                    raise self._fail(
                        f"{field_name}= is given both to add() and to the cp.policy() agent; "
                        "give each policy once")
            return agent
        if all(value is None for value in given.values()):
            return None
        try:
            return policy(agent, **given)
        except GraphError as exc:
            raise self._fail(str(exc)) from None

    @cached_property
    def annotations(self) -> Annotations:
        """The input and output types its agent declares (read once; typed handoffs)."""
        policed = self.policed
        return annotations_of(policed.agent if policed is not None else self.agent)

    def __getstate__(self) -> dict[str, Any]:
        # Annotations are read again where the spec is unpickled: they may hold objects
        # (Annotated metadata) that do not pickle although the agent does.
        state = dict(self.__dict__)
        state.pop("annotations", None)
        return state

    def validate(self) -> None:
        """Raises GraphError naming the agent and the fix for the first problem found."""
        if not isinstance(self.name, str):
            raise GraphError(
                f"agent names must be strings, got {self.name!r} ({type(self.name).__name__})"
            )
        self.predecessors()
        priority = self.priority
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)
                                     or priority not in _PRIORITY_RANGE):
            raise self._fail(f"priority must be an int from -2**31 to 2**31 - 1, got {priority!r}")
        if self.dispatch not in DISPATCH:
            raise self._fail(f"dispatch={self.dispatch!r} is not one of {_choices(DISPATCH)}")
        if self.join not in JOINS:
            raise self._fail(f"join={self.join!r} is not one of {_choices(JOINS)}")
        if self.on_error not in NODE_ERROR_MODES:
            raise self._fail(
                f"on_error={self.on_error!r} is not one of {_choices(NODE_ERROR_MODES)}")
        policed = self.policed  # raises GraphError for a bad policy
        if policed is not None and policed.cache is not None and \
                isinstance(getattr(policed.agent, "_native", None), _core.CompiledGraph):
            raise self._fail(
                "cache= keeps the outputs of functions and runnables; a compiled graph (or "
                "pattern) runs as a child run and cannot be cached")
        if self.executor is not None:
            if not isinstance(self.executor, Executor):
                raise self._fail(
                    f"executor must be cp.ray(...) or cp.ray_actors(...), got {self.executor!r}"
                    " (for a batch over Ray actors, pass cp.ray_batch(...) to batch())")
            if self.dispatch != "auto":
                raise self._fail(
                    f"dispatch={self.dispatch!r} is for agents run in this process; an agent "
                    "with an executor runs where the executor sends it: drop one of the two")

    @property
    def pauses_for_review(self) -> bool:
        """True if a low-confidence output pauses the run for a human (no reviewer)."""
        policed = self.policed
        return policed is not None and policed.review is not None and \
            policed.review.reviewer is None

    @property
    def caches(self) -> bool:
        """True if the agent's outputs are cached (``cache=``)."""
        policed = self.policed
        return policed is not None and policed.cache is not None

    def to_native(self, caching: Caching | None = None) -> NativeNode:
        """The engine's node spec, and what running it needs. Call :meth:`validate`
        first; ``caching`` wraps a cached agent (compile() passes it for graphs with a
        store)."""
        policed = self.policed
        agent = policed.agent if policed is not None else self.agent
        dispatch = DISPATCH[self.dispatch]
        if self.executor is not None:
            agent = self.executor.bind(self.name, agent)  # a coroutine agent, remote calls
        check = checked(self.name, self.annotations)  # typed handoffs, checked here
        if policed is not None and policed.cache is not None:
            assert caching is not None, "compile() refuses a cached agent without a store"
            # Around the executor's call (a hit makes no remote call), inside the retry.
            agent = caching(self.name, policed.agent, agent, policed.cache)
        if policed is not None and policed.retry is not None and \
                policed.retry.max_attempts > 1 and \
                (type(agent) is FunctionType or self.executor is not None):
            agent = counted_attempts(self.name, agent)  # its retries reach the audit log
        native, is_async = native_agent(self.name, agent, dispatch, check)
        submits = submits_calls(agent)
        policy_spec = review_spec = None
        if policed is not None:
            if policed.retry or policed.timeout or policed.fallback is not None or \
                    policed.breaker or policed.limits:
                fallback = None
                if policed.fallback is not None:
                    fallback, fallback_async = native_agent(
                        self.name, policed.fallback, DISPATCH["auto"],
                        checked(self.name, annotations_of(policed.fallback)))
                    is_async = is_async or fallback_async
                    submits = submits or submits_calls(policed.fallback)
                policy_spec = _core.PolicySpec(
                    retry=policed.retry._native_spec() if policed.retry else None,
                    timeout=float(policed.timeout or 0.0),
                    breaker=policed.breaker._native if policed.breaker else None,
                    limits=[limit._native for limit in policed.limits],
                    fallback=fallback)
            if policed.review is not None:
                review_spec = policed.review._native_spec(self.name)
        spec = _core.NodeSpec(self.name, native, after=self.predecessors(),
                              priority=self.priority, join=JOINS[self.join],
                              on_error=NODE_ERROR_MODES[self.on_error], policy=policy_spec,
                              review=review_spec)
        return NativeNode(spec, is_async, submits)

