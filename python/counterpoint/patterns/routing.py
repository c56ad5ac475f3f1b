"""Handoff routing and adaptive escalation: a decision picks which agents run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._errors import GraphError
from .._graph import CompiledGraph, Graph
from .._graph import route as route_to
from .._results import Escalation, Failed, confidence_of, value_of
from ._common import check_agent, check_agent_map, check_priorities, declared, identity

_ROUTER_NODES = ("input", "classify", "route", "join")


def _intents(output: Any) -> list[str]:
    """A classifier may return one intent, several, or a mapping/object carrying them."""
    value = value_of(output)
    if isinstance(value, Mapping):
        value = value.get("intents", value.get("intent"))
    elif not isinstance(value, (str, list, tuple, set, frozenset)) and hasattr(value, "intents"):
        value = value.intents
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in value):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(
        "router: the classifier must return an intent name, a list of them, or a mapping "
        f"with an 'intents' key; got {value!r}"
    )


@declared("router")
def router(
    classify: Any,
    routes: Mapping[str, Any],
    *,
    default: Any = None,
    priorities: Mapping[str, int] | None = None,
) -> CompiledGraph:
    """Classifies the input and hands it to the agent of each intent found.

    Several intents run in parallel; the result is ``{route: output}`` for the routes
    that ran. Intents with no route go to ``default`` (as route ``"default"``); without
    a default they fail the run with a message naming the intent. The decision is
    recorded: the ``route`` agent's outcome lists the routes taken.

    Example:
        >>> triage = cp.router(classify, routes={"billing": billing, "address": address},
        ...                    default=escalate, priorities={"address": 10})
    """
    check_agent("router", "classify", classify)
    check_agent_map("router", "routes", "route", routes, _ROUTER_NODES)
    if default is not None:
        check_agent("router", "default", default)
        if "default" in routes:
            raise GraphError("router: a route is named 'default' and default= is given; rename one")
    known = list(routes) + (["default"] if default is not None else [])
    priorities = check_priorities("router", priorities, known)

    def route(decision: dict[str, Any]) -> Any:
        chosen: list[str] = []
        unknown: list[str] = []
        for intent in _intents(decision["classify"]):
            target = intent if intent in routes else None
            if target is None:
                unknown.append(intent)
                target = "default" if default is not None else None
            if target is not None and target not in chosen:
                chosen.append(target)
        if unknown and default is None:
            raise LookupError(
                f"router: the classifier returned intent(s) {unknown} with no route; routes "
                f"are {list(routes)}. Add a route or pass default="
            )
        if not chosen:
            if default is None:
                raise LookupError(
                    "router: the classifier returned no intent and there is no default route"
                )
            chosen.append("default")
        return route_to(decision["input"], chosen)

    route._cp_routes = True  # type: ignore[attr-defined]  # drawn with conditional edges

    g = Graph()
    g.add("input", identity, dispatch="inline")
    g.add("classify", classify)
    g.add("route", route, after=["input", "classify"], dispatch="inline")
    targets = dict(routes)
    if default is not None:
        targets["default"] = default
    for name, agent in targets.items():
        g.add(name, agent, after="route", priority=priorities.get(name, 0))
    names = list(targets)
    g.add("join", lambda outs: {names[0]: outs} if len(names) == 1 else dict(outs),
          after=names, join="available", dispatch="inline")
    return g.compile()


@declared("adaptive")
def adaptive(cheap: Any, *, escalate_to: Any, below: float = 0.7) -> CompiledGraph:
    """Runs ``cheap`` and escalates to ``escalate_to`` only if its confidence is below
    ``below`` (or it failed, or reported no confidence).

    Returns:
        A graph whose result is an :class:`~counterpoint.Escalation` recording which
        path ran and why. The escalated agent receives the original input.
    """
    check_agent("adaptive", "cheap", cheap)
    check_agent("adaptive", "escalate_to", escalate_to)
    if isinstance(below, bool) or not isinstance(below, (int, float)) or not 0 < below <= 1:
        raise GraphError(f"adaptive: below must be a confidence threshold in (0, 1], got {below!r}")

    def decide(output: Any) -> dict[str, Any]:
        if isinstance(output, Failed):
            return {"escalate": True, "reason": f"cheap path failed: {output.error!r}",
                    "confidence": None, "cheap_output": None}
        confidence = confidence_of(output)
        if confidence is None:
            return {"escalate": True, "reason": "cheap path reported no confidence",
                    "confidence": None, "cheap_output": output}
        if confidence < below:
            return {"escalate": True, "reason": f"confidence {confidence:g} < {below:g}",
                    "confidence": confidence, "cheap_output": output}
        return {"escalate": False, "reason": f"confidence {confidence:g} >= {below:g}",
                "confidence": confidence, "cheap_output": output}

    def gate(state: dict[str, Any]) -> Any:
        decision = state["decide"]
        if decision["escalate"]:
            return route_to(state["input"], ["escalate"])
        return route_to(value_of(decision["cheap_output"]), ["accept"])

    gate._cp_routes = True  # type: ignore[attr-defined]  # drawn with conditional edges

    def result(state: dict[str, Any]) -> Escalation:
        decision = state["decide"]
        path = "escalated" if "escalate" in state else "cheap"
        value = state["escalate"] if path == "escalated" else state["accept"]
        return Escalation(value=value, path=path, reason=decision["reason"],
                          confidence=decision["confidence"], cheap_output=decision["cheap_output"])

    g = Graph()
    g.add("input", identity, dispatch="inline")
    g.add("cheap", cheap, on_error="continue")
    g.add("decide", decide, after="cheap", join="settled", dispatch="inline")
    g.add("gate", gate, after=["input", "decide"], dispatch="inline")
    g.add("accept", identity, after="gate", dispatch="inline")
    g.add("escalate", escalate_to, after="gate")
    g.add("result", result, after=["decide", "accept", "escalate"], join="available",
          dispatch="inline")
    return g.compile()
