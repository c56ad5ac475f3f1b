"""Patterns that iterate: an evaluation loop and a managed group chat.

Each iteration (or turn) is a native child run; between them a small controller
decides whether to go on, so no pattern keeps a scheduling loop of its own in Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._graph import CompiledGraph, Graph, delegate, route
from .._results import ChatResult, LoopResult, Verdict, value_of
from ._common import check_agent, check_agent_map, check_positive_int, declared, identity


def _verdict(raw: Any) -> Verdict:
    raw = value_of(raw)
    if isinstance(raw, Verdict):
        return raw
    if isinstance(raw, bool):
        return Verdict(raw)
    if isinstance(raw, Mapping):
        for key in ("passed", "pass", "approved", "ok"):
            if key in raw:
                return Verdict(bool(raw[key]), raw.get("feedback"), raw.get("score"))
    raise TypeError(
        "loop: the evaluator must return a bool, a cp.Verdict, or a dict with 'passed' and "
        f"'feedback'; got {raw!r}"
    )


@declared("loop")
def loop(worker: Any, evaluator: Any, *, max_iterations: int = 5) -> CompiledGraph:
    """Drafts, evaluates and revises until the evaluator passes the draft or
    ``max_iterations`` is reached (always enforced).

    The worker receives ``{"task", "draft", "feedback", "iteration"}`` (draft and
    feedback are None on the first iteration); the evaluator receives ``{"task",
    "draft", "iteration"}``. The result is a :class:`~counterpoint.LoopResult` saying why
    the loop stopped.
    """
    check_agent("loop", "worker", worker)
    check_agent("loop", "evaluator", evaluator)
    check_positive_int("loop", "max_iterations", max_iterations)

    g = Graph()
    g.add("state", identity, dispatch="inline")
    g.add("brief", lambda s: {k: s[k] for k in ("task", "draft", "feedback", "iteration")},
          after="state", dispatch="inline")
    g.add("worker", worker, after="brief")
    g.add("review", lambda s: {"task": s["state"]["task"], "draft": s["worker"],
                                "iteration": s["state"]["iteration"]},
          after=["state", "worker"], dispatch="inline")
    g.add("evaluator", evaluator, after="review")
    g.add("outcome", identity, after=["state", "worker", "evaluator"], dispatch="inline")
    iteration = g.compile()

    def after_iteration(outcome: dict[str, Any]) -> Any:
        state, draft = outcome["state"], outcome["worker"]
        verdict = _verdict(outcome["evaluator"])
        history = state["history"] + ((draft, verdict),)
        if verdict.passed:
            return LoopResult(draft, state["iteration"], "passed", history)
        if state["iteration"] >= max_iterations:
            return LoopResult(draft, state["iteration"], "max_iterations", history)
        following = {"task": state["task"], "draft": draft, "feedback": verdict.feedback,
                     "iteration": state["iteration"] + 1, "history": history}
        return delegate(iteration, following, then=after_iteration)

    def start(task: Any) -> Any:
        first = {"task": task, "draft": None, "feedback": None, "iteration": 1, "history": ()}
        return delegate(iteration, first, then=after_iteration)

    start.uses_event_loop = iteration.uses_event_loop  # type: ignore[attr-defined]
    # What pictures draw in place of the agent (see _drawing_hooks.py).
    start._cp_child_graph = iteration  # type: ignore[attr-defined]
    start._cp_child_repeats = True  # type: ignore[attr-defined]

    outer = Graph()
    outer.add("loop", start, dispatch="inline")
    app = outer.compile()
    return app


END = "__end__"
_CHAT_NODES = ("state", "manager", "pick", "end", "said", "record", "until", "outcome")


@declared("group_chat")
def group_chat(
    participants: Mapping[str, Any],
    *,
    manager: Any,
    until: Any = None,
    max_turns: int = 12,
) -> CompiledGraph:
    """A managed conversation: each turn the manager picks the next speaker.

    The manager receives ``{"task", "transcript", "turn"}`` and returns a participant's
    name, or ``None`` / ``cp.END`` to end the chat. The speaker receives the same dict and
    returns its message. The chat stops when ``until(transcript)`` is true (``until`` is
    an agent too: a function, a coroutine ...), when the manager ends it, or after
    ``max_turns``. The result is a
    :class:`~counterpoint.ChatResult`.
    """
    check_agent_map("group_chat", "participants", "participant", participants, _CHAT_NODES)
    check_agent("group_chat", "manager", manager)
    if until is not None:
        check_agent("group_chat", "until=", until)
    check_positive_int("group_chat", "max_turns", max_turns)
    names = list(participants)

    def view(state: dict[str, Any]) -> dict[str, Any]:
        return {"task": state["task"], "transcript": state["transcript"], "turn": state["turn"]}

    def pick(state: dict[str, Any]) -> Any:
        choice = value_of(state["manager"])
        if choice is None or choice == END:
            return route(None, ["end"])
        if choice not in participants:
            raise LookupError(
                f"group_chat: the manager picked {choice!r}, who is not a participant; "
                f"participants are {names}"
            )
        return route(view(state["state"]), [choice])

    def record(said: dict[str, Any]) -> Any:
        state = said.pop("state")
        if "end" in said:
            return route({"state": state, "ended": True}, ["outcome"])
        ((speaker, message),) = said.items()
        turn_record = {"state": state, "ended": False,
                       "transcript": state["transcript"] + ((speaker, message),)}
        # Only a turn that happened is shown to `until`.
        return route(turn_record, ["outcome", "until:transcript"] if until else ["outcome"])

    # Both route, so their edges are drawn as conditional.
    pick._cp_routes = record._cp_routes = True  # type: ignore[attr-defined]

    g = Graph()
    g.add("state", identity, dispatch="inline")
    g.add("manager", manager, after="state")
    g.add("pick", pick, after=["state", "manager"], dispatch="inline")
    for name, agent in participants.items():
        g.add(name, agent, after="pick")
    g.add("end", identity, after="pick", dispatch="inline")
    g.add("said", identity, after=["state", *names, "end"], join="available", dispatch="inline")
    g.add("record", record, after="said", dispatch="inline")
    outcome_after = ["record"]
    if until is not None:
        # `until` is an agent like the others (it may be an async LLM call).
        g.add("until:transcript", lambda turn: turn["transcript"], after="record",
              dispatch="inline")
        g.add("until", until, after="until:transcript")
        outcome_after.append("until")
    g.add("outcome", identity, after=outcome_after, join="available", dispatch="inline")
    turn = g.compile()

    def after_turn(outcome: Any) -> Any:
        turn_record = outcome["record"] if until is not None else outcome
        state = turn_record["state"]
        if turn_record["ended"]:
            return ChatResult(state["transcript"], len(state["transcript"]), "manager")
        transcript = turn_record["transcript"]
        if until is not None and bool(value_of(outcome.get("until"))):
            return ChatResult(transcript, len(transcript), "until")
        if len(transcript) >= max_turns:
            return ChatResult(transcript, len(transcript), "max_turns")
        following = {"task": state["task"], "transcript": transcript, "turn": state["turn"] + 1}
        return delegate(turn, following, then=after_turn)

    def start(task: Any) -> Any:
        return delegate(turn, {"task": task, "transcript": (), "turn": 1}, then=after_turn)

    start.uses_event_loop = turn.uses_event_loop  # type: ignore[attr-defined]
    # What pictures draw in place of the agent (see _drawing_hooks.py).
    start._cp_child_graph = turn  # type: ignore[attr-defined]
    start._cp_child_repeats = True  # type: ignore[attr-defined]

    outer = Graph()
    outer.add("chat", start, dispatch="inline")
    app = outer.compile()
    return app
