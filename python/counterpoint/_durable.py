"""Durable runs: checkpoint every agent outcome before the run sees it, and resume."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from ._errors import StoreError
from ._native import _core
from ._policies import as_decision, resolve_output
from ._store import Store, StoredOutcome, StoredRun, on_close


def fingerprint(plan: dict[str, Any]) -> str:
    """Identifies a graph's shape, so a run is only resumed by the graph that made it."""
    shape = [(n["name"], n["after"], n["join"]) for n in plan["nodes"]]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]


class CheckpointWriter:
    """Writes the outcomes a store's runs produce, in batches, on one thread; each
    outcome reaches its run only once it is written.

    One writer (and thread) per store that has run something. It holds its store weakly,
    so it stops when the store is closed or garbage-collected: compiling a graph with a
    store again and again (a notebook cell re-run) leaves no threads behind.
    """

    def __init__(self, store: Store) -> None:
        try:
            self._store: Callable[[], Store | None] = weakref.ref(store)
        except TypeError:  # not weakly referenceable: the writer lives until close() or exit
            self._store = lambda: store
        self._name = repr(store)
        self.hook = _core.CheckpointHook()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="counterpoint-checkpoints",
                                        daemon=True)
        self._thread.start()

    @property
    def stopped(self) -> bool:
        return self._stopping

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            work = self.hook.take(0.5)
            pending = work.outcomes
            ended = [(end.key, end.status.name) for end in work.ended]
            if pending or ended:
                self._write(pending, ended)
            elif self._stopping:
                # The hook is closed: take() returned at once with whatever was left
                # (the ends of runs cancelled at exit), and nothing more can come.
                with _writers_lock:
                    _retiring.discard(self)
                return

    def _write(self, pending: list[Any], ended: list[tuple[str, str]]) -> None:
        store = self._store()
        by_run: dict[str, list[Any]] = defaultdict(list)
        for item in pending:
            by_run[item.run_key].append(item)
        for run_key, items in by_run.items():
            outcomes = [StoredOutcome(item.agent, item.status.name, item.output, item.routes,
                                      item.usage, item.message, item.confidence)
                        for item in items]
            errors: list[Exception | None]
            if store is None:
                errors = [StoreError(f"{self._name} was closed (garbage-collected) while run "
                                     f"{run_key!r} was still running")] * len(items)
            else:
                try:
                    errors = store.save_outcomes(run_key, outcomes)
                except Exception as exc:  # noqa: BLE001 - a broken store fails the agents
                    errors = [exc] * len(items)
            for item, error in zip(items, errors):
                if error is None:
                    item.deliver()
                else:
                    cause = _as_store_error(error, item.agent, self._name)
                    item.fail(str(cause), cause)
        if store is None:
            return
        for run_key, status in ended:
            # A failure leaves the status "running": the run is over either way.
            with contextlib.suppress(Exception):
                store.finish_run(run_key, status)

    def stop(self, wait: float = 2.0) -> None:
        """Stops writing: outcomes not yet taken fail their agents; the thread ends once
        it has written what it holds. Waits up to ``wait`` seconds for that."""
        self._stopping = True
        self.hook.close()
        if wait > 0 and self._thread is not threading.current_thread():
            self._thread.join(wait)


def _as_store_error(error: Exception, agent: str, store: str) -> StoreError:
    """The exception an agent fails with when its output could not be written."""
    if isinstance(error, StoreError):
        return error  # it names the store and the fix; the AgentError names the agent
    wrapped = StoreError(
        f"the output of agent '{agent}' could not be stored by {store} "
        f"({type(error).__name__}: {error}); see the chained exception"
    )
    wrapped.__cause__ = error
    return wrapped


# Writers by id(store): a store need not be hashable, and a weak key would be pointless
# since each writer is dropped by its store's finalizer or close() anyway.
_writers: dict[int, CheckpointWriter] = {}
# Reentrant: a store's finalizer (which forgets its writer) can run on any thread, in
# the middle of a garbage collection that this very lock's holder triggered.
_writers_lock = threading.RLock()


def writer_for(store: Store) -> CheckpointWriter:
    """The store's checkpoint writer, started on first use."""
    with _writers_lock:
        writer = _writers.get(id(store))
        if writer is None or writer.stopped:
            writer = CheckpointWriter(store)
            _writers[id(store)] = writer
            # Not at exit: the shutdown hook stops every writer, after the engine has
            # interrupted the runs whose ends they must still record. (A store that is
            # not weakly referenceable keeps its writer until close() or exit.)
            with contextlib.suppress(TypeError):
                weakref.finalize(store, _forget, id(store), writer, 0.0).atexit = False
        return writer


# Writers told to stop whose threads may still be finishing (a finalizer does not wait;
# close() waits 2 s at most): exit waits for them too, as a thread inside the native hook
# when the interpreter finalizes would abort the process. Each thread leaves on its end.
_retiring: set[CheckpointWriter] = set()


def _forget(key: int, writer: CheckpointWriter, wait: float) -> None:
    with _writers_lock:
        if _writers.get(key) is writer:
            del _writers[key]
        # Also drop the writers whose threads ended after their last look at this set.
        _retiring.difference_update([w for w in _retiring if not w.alive])
        _retiring.add(writer)
    writer.stop(wait)


def _store_closed(store: Store) -> None:
    with _writers_lock:
        writer = _writers.get(id(store))
    if writer is not None:
        _forget(id(store), writer, 2.0)


on_close(_store_closed)


def stop_writers(wait: float = 2.0) -> None:
    """Stops every writer, waiting up to ``wait`` seconds in all."""
    with _writers_lock:
        writers = [*_writers.values(), *_retiring]
        _writers.clear()
    for writer in writers:
        writer.stop(0.0)
    deadline = time.monotonic() + wait
    for writer in writers:
        writer.stop(max(0.0, deadline - time.monotonic()))


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
