"""Forking a stored run: a new run that reuses the old one's outcomes, except those of the
agents named to run again, of agents given new outputs, and of everything downstream of
them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._audit import AuditEvent
from ._durable import outcome_events
from ._native import _core
from ._store import Store, StoredOutcome, StoredRun

# The message of an outcome a fork's override set.
OVERRIDDEN = "set by a fork override"


def fork_arguments(agents: Sequence[str], rerun: str | Iterable[str] | None,
                   overrides: Mapping[str, Any] | None) -> tuple[list[str], dict[str, Any]]:
    """``rerun`` as a list of names and ``overrides`` as a dict, both checked against the
    graph's ``agents``.

    Raises:
        ValueError: an unknown agent (listing the known ones), an agent both rerun and
            overridden, or arguments of the wrong type.
    """
    if rerun is None:
        names: list[str] = []
    elif isinstance(rerun, str):
        names = [rerun]
    elif isinstance(rerun, (list, tuple, set, frozenset)) and \
            all(isinstance(name, str) for name in rerun):
        names = list(rerun)
    else:
        raise ValueError(f"rerun must be an agent name or a list of names, got {rerun!r}")
    if overrides is None:
        overrides = {}
    elif not isinstance(overrides, Mapping):
        raise ValueError(f"overrides must be a dict of outputs by agent name, got {overrides!r}")
    known = set(agents)
    for role, given in (("rerun", names), ("overrides", list(overrides))):
        unknown = [name for name in given if name not in known]
        if unknown:
            raise ValueError(
                f"{role} names agents this graph does not have: "
                f"{', '.join(map(repr, unknown))}; its agents are "
                f"{', '.join(map(repr, agents))}")
    both = [name for name in names if name in overrides]
    if both:
        raise ValueError(
            f"{', '.join(map(repr, both))} both rerun and given an override; an override "
            "sets the agent's output instead of running it: give each agent one of the two")
    return names, dict(overrides)


def downstream(after: Mapping[str, Sequence[str]], changed: Iterable[str]) -> set[str]:
    """``changed`` and every agent that receives, directly or not, an output of one of
    them (``after``: each agent's predecessors)."""
    successors: dict[str, list[str]] = {name: [] for name in after}
    for name, predecessors in after.items():
        for predecessor in predecessors:
            successors[predecessor].append(name)
    reached = set(changed)
    pending = list(reached)
    while pending:
        for successor in successors[pending.pop()]:
            if successor not in reached:
                reached.add(successor)
                pending.append(successor)
    return reached


def top_level(agent: str) -> str:
    """The top-level agent of a stored outcome's key (``"review/security"`` -> ``"review"``)."""
    return agent.split("/", 1)[0]


def fork_outcomes(stored: StoredRun, after: Mapping[str, Sequence[str]], rerun: Sequence[str],
                  overrides: Mapping[str, Any], new_input: bool
                  ) -> tuple[list[StoredOutcome], list[StoredOutcome]]:
    """What a fork of ``stored`` starts with: the outcomes it reuses, and those the
    overrides set.

    Every agent named in ``rerun`` or ``overrides``, and every agent downstream of one,
    is changed; with ``new_input``, the entry agents (they receive the run input) are
    too. A stored ``succeeded`` outcome is reused unless its top-level agent changed;
    nested outcomes (keys ``"outer/inner"``) go along, keys unchanged, with their
    top-level agent.
    """
    changed = [*rerun, *overrides]
    if new_input:
        changed.extend(name for name, predecessors in after.items() if not predecessors)
    stale = downstream(after, changed)
    reused = [outcome for key, outcome in stored.outcomes.items()
              if outcome.status == "succeeded" and top_level(key) not in stale]
    return reused, [_overridden(name, output) for name, output in overrides.items()]


def _overridden(agent: str, output: Any) -> StoredOutcome:
    """The outcome an override sets; ``cp.route(value, to=[...])`` keeps its routes."""
    if isinstance(output, _core.Routed):
        return StoredOutcome(agent, "succeeded", output.value, tuple(output.routes),
                             message=OVERRIDDEN)
    return StoredOutcome(agent, "succeeded", output, message=OVERRIDDEN)


def _seeded_events(outcome: StoredOutcome, source: str, overridden: bool) -> list[AuditEvent]:
    """The audit entries of an outcome a fork starts with: those of the outcome, its
    ``agent_finished`` entry saying where it came from."""
    events = outcome_events(outcome, None)
    first = events[0]
    data = {**first.data, "forked_from": source}
    if overridden:
        data["override"] = True
    events[0] = AuditEvent(first.kind, first.agent, data, first.values, first.time)
    return events


def begin_fork(store: Store, graph: str, stored: StoredRun, after: Mapping[str, Sequence[str]],
               rerun: Sequence[str], overrides: Mapping[str, Any], inputs: Any,
               budget: dict[str, float] | None) -> str:
    """Records a fork of ``stored`` as a new run holding the outcomes it reuses or that
    ``overrides`` set (see :func:`fork_outcomes`), with the new input ``inputs`` (None:
    the stored one). Returns the new run's key; resuming it runs the rest.

    Raises:
        StoreError: the input or an override's output cannot be stored (the new run is
            then recorded as ``"failed"``).
    """
    new_input = inputs is not None
    reused, overridden = fork_outcomes(stored, after, rerun, overrides, new_input)
    fork_key = uuid.uuid4().hex
    input = inputs if new_input else stored.input
    store.record_start(fork_key, graph, input, [AuditEvent("run_started", None, {
        "graph": graph, "budget": budget, "forked_from": stored.run_key,
        "rerun": list(rerun), "overrides": list(overrides), "new_input": new_input},
        {"input": input})])
    events = [_seeded_events(outcome, stored.run_key, False) for outcome in reused] + \
        [_seeded_events(outcome, stored.run_key, True) for outcome in overridden]
    errors = store.record_outcomes(fork_key, reused + overridden, events)
    failed = next((error for error in errors if error is not None), None)
    if failed is not None:
        store.set_status(fork_key, "failed")
        raise failed
    return fork_key
