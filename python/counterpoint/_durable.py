"""Durable runs: checkpoint every agent outcome before the run sees it, and resume."""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections import defaultdict
from typing import Any

from ._errors import StoreError
from ._native import _core
from ._policies import as_decision, resolve_output
from ._store import Store, StoredOutcome, StoredRun


def fingerprint(plan: dict[str, Any]) -> str:
    """Identifies a graph's shape, so a run is only resumed by the graph that made it."""
    shape = [(n["name"], n["after"], n["join"]) for n in plan["nodes"]]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]


class CheckpointWriter:
    """Writes the outcomes a store's runs produce, in batches, on one thread; each
    outcome reaches its run only once it is written."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.hook = _core.CheckpointHook()
        self._thread = threading.Thread(target=self._loop, name="counterpoint-checkpoints",
                                        daemon=True)
        self._stopping = False
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping:
            work = self.hook.take(0.5)
            pending = work.outcomes
            ended = [(end.key, end.status.name) for end in work.ended]
            by_run: dict[str, list[Any]] = defaultdict(list)
            for item in pending:
                by_run[item.run_key].append(item)
            for run_key, items in by_run.items():
                outcomes = [StoredOutcome(item.agent, item.status.name, item.output, item.routes,
                                          item.usage, item.message, item.confidence)
                            for item in items]
                try:
                    errors = self.store.save_outcomes(run_key, outcomes)
                except Exception as exc:  # noqa: BLE001 - a broken store fails the agents
                    errors = [exc] * len(items)
                for item, error in zip(items, errors):
                    if error is None:
                        item.deliver()
                    else:
                        item.fail(
                            f"the output of agent '{item.agent}' could not be stored "
                            f"({type(error).__name__}: {error}); return JSON-compatible data or "
                            "open the store with pickle=True",
                            error,
                        )
            for run_key, status in ended:
                try:
                    self.store.set_status(run_key, status)
                except Exception:  # noqa: BLE001 - the run is over; its status stays "running"
                    pass

    def stop(self) -> None:
        self._stopping = True
        self.hook.close()
        self._thread.join(2.0)


_writers: weakref.WeakKeyDictionary[Store, CheckpointWriter] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def writer_for(store: Store) -> CheckpointWriter:
    with _writers_lock:
        writer = _writers.get(store)
        if writer is None:
            writer = CheckpointWriter(store)
            _writers[store] = writer
        return writer


def stop_writers() -> None:
    with _writers_lock:
        writers = list(_writers.values())
        _writers.clear()
    for writer in writers:
        writer.stop()


def _routes(outcome: StoredOutcome) -> list[str] | None:
    return None if outcome.routes is None else list(outcome.routes)


def restored_outcomes(stored: StoredRun, decision: Any) -> tuple[list[Any], list[StoredOutcome]]:
    """What a resumed run starts with (``_core.Restored``): finished agents' outputs, plus
    reviewed outputs decided by ``decision``. Also returns the decisions, to record them
    in the store."""
    restored = [_core.Restored.succeeded(o.agent, o.output, _routes(o), o.usage)
                for o in stored.outcomes.values() if o.status == "succeeded"]
    pending = [o for o in stored.outcomes.values() if o.status == "needs_review"]
    if not pending:
        if decision is not None:
            raise ValueError(f"run {stored.run_key!r} has nothing awaiting review; "
                             "resume it without a decision")
        return restored, []
    if decision is None:
        names = ", ".join(repr(o.agent) for o in pending)
        raise ValueError(
            f"run {stored.run_key!r} awaits review of {names}; pass a decision: "
            "cp.approve(), cp.approve(new_output), cp.reject(reason), or a dict of them by agent"
        )
    if isinstance(decision, dict):
        unknown = set(decision) - {o.agent for o in pending}
        if unknown:
            raise ValueError(f"no review is pending for {sorted(unknown)}; pending: "
                             f"{[o.agent for o in pending]}")
        decisions = {name: as_decision(d) for name, d in decision.items()}
        missing = [o.agent for o in pending if o.agent not in decisions]
        if missing:
            raise ValueError(f"run {stored.run_key!r} also awaits review of {missing}; "
                             "decide every pending agent")
    else:
        if len(pending) > 1:
            raise ValueError(
                f"run {stored.run_key!r} awaits review of {[o.agent for o in pending]}; pass "
                "a dict of decisions by agent"
            )
        decisions = {pending[0].agent: as_decision(decision)}
    recorded = []
    for outcome in pending:
        decided = decisions[outcome.agent]
        if decided.approved:
            output = resolve_output(decided, outcome.output)
            restored.append(_core.Restored.succeeded(outcome.agent, output, _routes(outcome),
                                                     outcome.usage))
            recorded.append(StoredOutcome(outcome.agent, "succeeded", output, outcome.routes,
                                          outcome.usage, "approved by reviewer",
                                          outcome.confidence))
        else:
            restored.append(_core.Restored.rejected(outcome.agent,
                                                    f"rejected by reviewer: {decided.reason}"))
            recorded.append(StoredOutcome(outcome.agent, "failed", None, None, outcome.usage,
                                          f"rejected by reviewer: {decided.reason}",
                                          outcome.confidence))
    return restored, recorded


def check_resumable(stored: StoredRun, graph_fingerprint: str) -> None:
    if stored.graph != graph_fingerprint:
        raise StoreError(
            f"run {stored.run_key!r} was made by a different graph (fingerprint "
            f"{stored.graph}, this graph {graph_fingerprint}); resume it with the graph that "
            "started it"
        )
