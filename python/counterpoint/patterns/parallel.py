"""Fan-out / fan-in: fixed branches (``parallel``, ``consensus``) and a dynamic number of
branches known only at run time (``fan_out``)."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._agents import uses_event_loop
from .._errors import GraphError
from .._graph import CompiledGraph, Graph, delegate
from .._results import Merged
from . import merging
from ._common import (
    check_agent,
    check_positive_int,
    check_priorities,
    declared,
    unique_names,
)


def tolerates_failures(merge: Any) -> bool:
    """Vote-like policies merge what arrived; ``all`` and reducers need every branch."""
    return merge not in (None, "all") and not is_reducer(merge)


def is_reducer(merge: Any) -> bool:
    return callable(merge) and not isinstance(merge, merging.Judge)


def add_merge(g: Graph, names: list[str], merge: Any, *, quorum: float | None = None,
              merge_name: str = "merge", key: merging.VoteKey = merging.message_content) -> None:
    """Adds the node merging the outputs of nodes ``names`` under policy ``merge``;
    vote policies compare ``key(output)``."""

    def by_name(outputs: Any) -> dict[str, Any]:
        # With a single branch the engine hands over its output itself.
        return {names[0]: outputs} if len(names) == 1 else dict(outputs)

    if merge is None or merge == "all":
        g.add(merge_name, by_name, after=names, dispatch="inline")
    elif is_reducer(merge):
        # A reducer is an agent in its own right (it may be an LLM call).
        if len(names) == 1:
            g.add(f"{merge_name}:collect", by_name, after=names, dispatch="inline")
            g.add(merge_name, merge, after=f"{merge_name}:collect")
        else:
            g.add(merge_name, merge, after=names)
    elif merge == "first":
        g.add(merge_name, lambda won: merging.first(by_name(won)), after=names, join="any",
              dispatch="inline")
    elif isinstance(merge, merging.Judge):
        # The judge is an agent of its own (often an LLM call, sync or async): it sees the
        # outputs that arrived; the merge node records who agreed with its choice.
        ballot, shown = f"{merge_name}:ballot", f"{merge_name}:candidates"
        judge = f"{merge_name}:judge"
        g.add(ballot, by_name, after=names, join="settled", dispatch="inline")
        g.add(shown, merging.candidates, after=ballot, dispatch="inline")
        g.add(judge, merge.choose, after=shown)
        name = getattr(merge.choose, "__name__", type(merge.choose).__name__)
        g.add(merge_name,
              lambda parts: merging.judged(parts[ballot], parts[judge], name, key),
              after=[ballot, judge], dispatch="inline")
    else:
        if merge == "majority":
            def policy(outs: Any) -> Any:
                return merging.majority(by_name(outs), key)
        elif merge == "quorum":
            def policy(outs: Any) -> Any:
                return merging.quorum(by_name(outs), quorum, key)
        else:
            def policy(outs: Any) -> Any:
                return merging.confidence_weighted(by_name(outs), key)
        g.add(merge_name, policy, after=names, join="settled", dispatch="inline")


def add_fan_in(g: Graph, branches: Mapping[str, Any], merge: Any, *, quorum: float | None = None,
               priorities: Mapping[str, int] | None = None, merge_name: str = "merge",
               key: merging.VoteKey = merging.message_content) -> None:
    """Adds ``branches`` as entry agents and the node merging them."""
    priorities = priorities or {}
    on_error = "continue" if tolerates_failures(merge) else "inherit"
    for name, agent in branches.items():
        g.add(name, agent, priority=priorities.get(name, 0), on_error=on_error)
    add_merge(g, list(branches), merge, quorum=quorum, merge_name=merge_name, key=key)


def _check_quorum(pattern: str, merge: Any, quorum: Any) -> float | None:
    if merge != "quorum":
        if quorum is not None:
            raise GraphError(f"{pattern}: quorum= is only used with the 'quorum' policy")
        return None
    if isinstance(quorum, bool) or not isinstance(quorum, (int, float)) or quorum <= 0:
        raise GraphError(
            f"{pattern}: the 'quorum' policy needs quorum= as a vote count (>= 1) or a "
            f"fraction of the branches (0 < q < 1), got {quorum!r}"
        )
    return float(quorum)


@declared("parallel")
def parallel(
    branches: Mapping[str, Any] | None = None,
    *,
    merge: Any = None,
    priorities: Mapping[str, int] | None = None,
    quorum: float | None = None,
    key: Callable[[Any], Any] | None = None,
    **named_branches: Any,
) -> CompiledGraph:
    """Runs every branch on the same input at once and merges their outputs.

    Example:
        >>> review = cp.parallel(security=sec, perf=perf, style=style, merge=synthesize)

    Args:
        branches: Branches by name (or pass them as keyword arguments).
        merge: ``None``/``"all"`` (``{branch: output}``), ``"first"`` (first success;
            the rest are cancelled), ``"majority"``, ``"quorum"`` (with ``quorum=``),
            ``"confidence"`` (confidence-weighted vote), ``cp.judge(fn)``, or a reducer
            agent that receives ``{branch: output}``. Vote-like policies return a
            :class:`~counterpoint.Merged` recording agreement and disagreement, and
            tolerate failed branches (recorded in ``Merged.failed``).
        priorities: Branch name -> priority; higher-priority branches are scheduled
            and streamed first.
        quorum: For ``merge="quorum"``: votes needed, as a count or a fraction.
        key: For the vote policies: what each output is compared by, e.g.
            ``key=lambda answer: answer.strip().lower()``. By default an output is
            compared as it is, and a message-like object (one with a ``content``
            attribute, such as a LangChain ``AIMessage``) by its content. ``key`` is
            therefore not a branch name; pass the branches as a dict for that.
    """
    all_branches = dict(branches or {})
    for name in named_branches:
        if name in all_branches:
            raise GraphError(f"parallel: branch {name!r} is given twice")
    all_branches.update(named_branches)
    if not all_branches:
        raise GraphError("parallel: give at least one branch, e.g. parallel(a=agent_a, b=agent_b)")
    for name, agent in all_branches.items():
        if not isinstance(name, str) or not name:
            raise GraphError(f"parallel: branch names must be non-empty strings, got {name!r}")
        if name == "merge" or name.startswith("merge:"):
            raise GraphError(f"parallel: branch name {name!r} is reserved for the merge; rename it")
        check_agent("parallel", f"branch {name!r}", agent)
    merging.check_policy("parallel", merge)
    needed = _check_quorum("parallel", merge, quorum)
    vote_key = merging.check_key("parallel", key, merge)
    priorities = check_priorities("parallel", priorities, all_branches)
    g = Graph()
    add_fan_in(g, all_branches, merge, quorum=needed, priorities=priorities, key=vote_key)
    return g.compile()


@declared("consensus")
def consensus(
    agents: Sequence[Any], vote: Any = "majority", *, quorum: float | None = None,
    key: Callable[[Any], Any] | None = None,
) -> CompiledGraph:
    """Gives the same problem to several agents and converges on one answer.

    Args:
        agents: The voters (at least one). Branches are named after the agents.
        vote: ``"majority"``, ``"quorum"`` (with ``quorum=``), ``"confidence"``, or a
            judge callable receiving ``{agent: output}`` and returning the answer.
        quorum: For ``vote="quorum"``: votes needed, as a count or a fraction.
        key: What each answer is compared by, e.g.
            ``key=lambda answer: answer.strip().lower()``. By default an answer is
            compared as it is, and a message-like object (one with a ``content``
            attribute, such as a LangChain ``AIMessage``) by its content, so two "yes"
            messages agree although their ids differ.

    Returns:
        A graph whose result is a :class:`~counterpoint.Merged`. Ties are broken by
        declaration order: the earliest agent's answer wins. ``Merged.value`` is the
        first winning answer itself (the message, not its key).
    """
    if isinstance(agents, (str, bytes)) or not isinstance(agents, Sequence):
        raise GraphError(f"consensus: agents must be a list of agents, got {type(agents).__name__}")
    if not agents:
        raise GraphError("consensus: give at least one agent")
    for index, agent in enumerate(agents):
        check_agent("consensus", f"agent #{index + 1}", agent)
    if callable(vote) and not isinstance(vote, merging.Judge):
        vote = merging.judge(vote)
    if not (isinstance(vote, merging.Judge) or vote in ("majority", "quorum", "confidence")):
        raise GraphError(
            f"consensus: vote={vote!r} must be 'majority', 'quorum', 'confidence' or a judge "
            "callable"
        )
    needed = _check_quorum("consensus", vote, quorum)
    vote_key = merging.check_key("consensus", key, vote)
    names = unique_names(agents, "agent", reserved=("vote",))
    g = Graph()
    add_fan_in(g, dict(zip(names, agents)), vote, quorum=needed, merge_name="vote",
               key=vote_key)
    return g.compile()


class _FanOut:
    """The dispatcher of ``fan_out``: sizes a child graph to the items of each run."""

    def __init__(self, worker: Any, over: Callable[[Any], Any], merge: Any,
                 max_items: int | None, key: merging.VoteKey = merging.message_content) -> None:
        self.key = key
        self.worker = worker
        self.over = over
        self.merge = merge
        self.max_items = max_items
        self._children: dict[int, CompiledGraph] = {}
        self._lock = threading.Lock()

    def child(self, count: int) -> CompiledGraph:
        with self._lock:
            found = self._children.get(count)
            if found is None:
                found = self._build(count)
                if len(self._children) < 256:
                    self._children[count] = found
            return found

    def _build(self, count: int) -> CompiledGraph:
        g = Graph()
        if count == 0:
            if self.merge is None or is_reducer(self.merge):
                g.add("collect", lambda items: [], dispatch="inline")
                if self.merge is not None:
                    g.add("merge", self.merge, after="collect")
            else:
                # Same result type as with items: {} for "all", an empty Merged otherwise.
                policy = self.merge if isinstance(self.merge, str) else "judge"
                g.add("merge", lambda items: {} if policy == "all" else
                      Merged(None, policy, "no items to merge"), dispatch="inline")
            return g.compile()
        names = [f"worker[{index}]" for index in range(count)]
        on_error = "continue" if tolerates_failures(self.merge) else "inherit"
        for index, name in enumerate(names):
            g.add(f"item[{index}]", lambda items, i=index: items[i], dispatch="inline")
            g.add(name, self.worker, after=f"item[{index}]", on_error=on_error)
        if self.merge is None or is_reducer(self.merge):
            g.add("collect", lambda outs: _in_order(outs, count), after=names, dispatch="inline")
            if self.merge is not None:
                g.add("merge", self.merge, after="collect")
        else:
            add_merge(g, names, self.merge, key=self.key)
        return g.compile()

    def __call__(self, value: Any) -> Any:
        items = self.over(value)
        if isinstance(items, (str, bytes, Mapping)) or not hasattr(items, "__iter__"):
            raise TypeError(
                f"fan_out: over() must return a list of items, got {type(items).__name__}"
            )
        items = list(items)
        if self.max_items is not None and len(items) > self.max_items:
            raise ValueError(
                f"fan_out: over() returned {len(items)} items, more than max_items="
                f"{self.max_items}; raise max_items or split the work"
            )
        return delegate(self.child(len(items)), items)


def _in_order(outputs: Any, count: int) -> list[Any]:
    if count == 1:
        return [outputs]
    return [outputs[f"worker[{i}]"] for i in range(count)]


@declared("fan_out")
def fan_out(
    worker: Any,
    *,
    over: Callable[[Any], Any],
    merge: Any = None,
    max_items: int | None = None,
    key: Callable[[Any], Any] | None = None,
) -> CompiledGraph:
    """Runs ``worker`` once per item of a list known only at run time, all at once.

    Example:
        >>> research = cp.fan_out(search, over=lambda plan: plan["subtasks"], merge=summarize)

    Args:
        worker: The agent run on each item (it receives the item alone).
        over: Maps the input to the list of items.
        merge: ``None`` (the outputs as a list, in item order), a reducer agent that
            receives that list, or a policy (``"all"``, ``"first"``, ``"majority"``,
            ``"confidence"``, ``cp.judge(fn)``) over ``{"worker[i]": output}``.
        max_items: Refuse runs whose list is longer than this.
        key: For the vote policies: what each output is compared by (as in
            :func:`parallel`).
    """
    check_agent("fan_out", "worker", worker)
    if not callable(over) or inspect.iscoroutinefunction(over):
        raise GraphError(
            f"fan_out: over= must be a plain function returning the list of items, got {over!r}"
        )
    if merge == "quorum":
        raise GraphError(
            "fan_out: the 'quorum' policy needs a fixed set of voters; use consensus()"
        )
    merging.check_policy("fan_out", merge)
    vote_key = merging.check_key("fan_out", key, merge)
    if max_items is not None:
        check_positive_int("fan_out", "max_items", max_items)
    dispatcher = _FanOut(worker, over, merge, max_items, vote_key)
    merge_agent = merge.choose if isinstance(merge, merging.Judge) else merge
    dispatcher.uses_event_loop = uses_event_loop(worker) or uses_event_loop(merge_agent)
    g = Graph()
    g.add("fan_out", dispatcher, dispatch="inline")
    return g.compile()
