"""The timeline of a durable run, rebuilt from what its store keeps.

A store keeps each agent's outcome (status and message) but no times with it. Times come
from the run's audit log, for stores that keep one (:class:`SQLiteStore` does): when the
run started or was resumed, each agent's start and duration, each retry with the delay
before it, and the run's elapsed time. Those entries are written when the run ends, so a
run whose process was killed has its agents' outcomes but not their times.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from ._audit import AuditEntry
from ._store import Store, StoredOutcome
from ._timeline import ATTEMPT, BACKOFF, AgentLane, Span, Timeline, parent_of

# Live entries that carry an agent's outcome, with the status each stands for.
_OUTCOME_KINDS = {"agent_finished": "succeeded", "agent_failed": "failed",
                  "agent_cancelled": "cancelled", "review_requested": "needs_review"}
_SESSION_STARTS = ("run_started", "run_resumed")


def timeline_from_store(store: Store, run_key: str, *,
                        edges: Mapping[str, Sequence[str]] | None = None) -> Timeline:
    """The timeline of the stored run ``run_key``.

    It covers the run's latest session: from its start, or from its latest resume (the
    agents restored then are lanes marked ``restored``). Agents get their start,
    duration, attempts and retry backoffs from the audit log; in a store that keeps no
    audit log, or for a session whose process was killed before the run ended, agents
    have their outcome but no times (``start`` and ``end`` are None). Review waits are
    not in the log: a reviewed agent's wait is part of its last attempt. The log does not
    time nested graphs' agents, so the lanes are the top-level agents. The timeline's
    ``run_id`` is 0: a stored run is known by its ``run_key``.

    Args:
        store: The store the run was made with.
        run_key: The run's key.
        edges: ``{agent: names of the agents it runs after}`` (the graph's plan), if
            known; lanes get them as ``after``. The store does not keep the graph.

    Raises:
        StoreError: the store has no such run, or cannot be read.
    """
    if not isinstance(store, Store):
        raise TypeError(f"timeline_from_store needs a counterpoint Store, got "
                        f"{type(store).__name__}")
    run = store.load_run(run_key)
    entries = store.audit(run_key)
    begins = [i for i, entry in enumerate(entries) if entry.kind in _SESSION_STARTS]
    session = entries[begins[-1]:] if begins else []
    # The log times top-level agents only (their run's handle reports them at its end):
    # nested agents' checkpoints say how they ended, but not when.
    outcomes = {path: outcome for path, outcome in run.outcomes.items() if "/" not in path}
    lanes = _Session(session, outcomes, _origin(session)).lanes() if session else \
        [_untimed(outcome) for outcome in outcomes.values()]
    elapsed = _elapsed(session, lanes, run.updated - run.created)
    known = edges or {}
    lanes = [_with_after(lane, tuple(known.get(lane.agent, ()))) for lane in lanes]
    lanes.sort(key=lambda lane: (lane.start is None, lane.start or 0.0))
    return Timeline(run_id=0, status=run.status, elapsed=elapsed, lanes=tuple(lanes),
                    run_key=run_key)


def _untimed(outcome: StoredOutcome) -> AgentLane:
    return AgentLane(agent=outcome.agent, parent=parent_of(outcome.agent),
                     status=outcome.status, start=None, end=None,
                     message="" if outcome.status == "succeeded" else outcome.message)


def _with_after(lane: AgentLane, after: tuple[str, ...]) -> AgentLane:
    if not after:
        return lane
    return AgentLane(agent=lane.agent, parent=lane.parent, status=lane.status,
                     start=lane.start, end=lane.end, spans=lane.spans, after=after,
                     message=lane.message, restored=lane.restored, priority=lane.priority)


def _reported(session: list[AuditEntry], field: str) -> float | None:
    """The number the session's ``run_finished`` entry reports as ``field``, if any."""
    for entry in reversed(session):
        if entry.kind == "run_finished" and isinstance(entry.data.get(field), (int, float)):
            return float(entry.data[field])
    return None


def _elapsed(session: list[AuditEntry], lanes: list[AgentLane], stored: float) -> float:
    """The run's elapsed time as it reported it at its end; else up to its last entry."""
    reported = _reported(session, "elapsed")
    if reported is not None:
        return reported
    if not session:
        return max(0.0, stored)
    ends = [lane.end for lane in lanes if lane.end is not None]
    return max([session[-1].time - session[0].time, *ends, 0.0])


def _origin(session: list[AuditEntry]) -> float:
    """The wall time the session's agent entries count from: the one its end entry
    names; else (a session whose process died before its end) its first entry's,
    written as the run starts, before the engine's clock starts."""
    reported = _reported(session, "origin")
    return reported if reported is not None else session[0].time


class _Session:
    """One session's audit entries folded into lanes. Times are seconds from
    ``origin`` (see ``_origin``)."""

    def __init__(self, session: list[AuditEntry], outcomes: Mapping[str, StoredOutcome],
                 origin: float) -> None:
        self.t0 = origin
        self.outcomes = outcomes
        self.restored: list[str] = [str(a) for a in session[0].data.get("restored", ())
                                    if "/" not in str(a)] \
            if session[0].kind == "run_resumed" else []
        self.started: dict[str, AuditEntry] = {}
        self.retries: dict[str, list[AuditEntry]] = defaultdict(list)
        self.skipped: dict[str, str] = {}
        self.ended: dict[str, AuditEntry] = {}
        for entry in session:
            if entry.agent is None or "/" in entry.agent:  # see timeline_from_store
                continue
            if entry.kind == "agent_started":
                self.started[entry.agent] = entry
            elif entry.kind == "agent_retried":
                self.retries[entry.agent].append(entry)
            elif entry.kind == "agent_skipped":
                self.skipped[entry.agent] = str(entry.data.get("reason", ""))
            elif entry.kind in _OUTCOME_KINDS and "in_process" not in entry.data:
                self.ended[entry.agent] = entry

    def lanes(self) -> list[AgentLane]:
        lanes = [self._restored(agent) for agent in self.restored]
        lanes += [self._timed(agent, entry) for agent, entry in self.started.items()]
        lanes += [AgentLane(agent=agent, parent=parent_of(agent), status="skipped",
                            start=None, end=None, message=reason)
                  for agent, reason in self.skipped.items()]
        placed = {lane.agent for lane in lanes}
        # Outcomes written live by a session whose end entries never came (its process
        # was killed): known, but not when.
        lanes += [AgentLane(agent=agent, parent=parent_of(agent),
                            status=_status(entry), start=None, end=None,
                            message=self._message(agent))
                  for agent, entry in self.ended.items() if agent not in placed]
        return lanes

    def _message(self, agent: str) -> str:
        outcome = self.outcomes.get(agent)
        if outcome is None or outcome.status == "succeeded":
            return ""
        return outcome.message

    def _restored(self, agent: str) -> AgentLane:
        outcome = self.outcomes.get(agent)
        status = outcome.status if outcome is not None else "succeeded"
        return AgentLane(agent=agent, parent=parent_of(agent), status=status, start=0.0,
                         end=0.0, message=self._message(agent), restored=True)

    def _timed(self, agent: str, entry: AuditEntry) -> AgentLane:
        """A lane from its ``agent_started`` entry (start, duration, status) and its
        ``agent_retried`` entries (each: when the next attempt started, and the delay
        since the failed one ended)."""
        start = entry.time - self.t0
        seconds = entry.data.get("seconds")
        end = start + float(seconds) if isinstance(seconds, (int, float)) else None
        status = str(entry.data.get("status") or "running")
        spans: list[Span] = []
        cursor, attempt = start, 1
        for retry in sorted(self.retries.get(agent, []), key=lambda e: e.time):
            resumed = max(cursor, retry.time - self.t0)
            failed = max(cursor, resumed - float(retry.data.get("delay", 0.0)))
            message = str(retry.data.get("message", ""))
            spans.append(Span(agent, ATTEMPT, cursor, failed, attempt,
                              _failure(retry), message))
            spans.append(Span(agent, BACKOFF, failed, resumed, attempt, "", message))
            cursor, attempt = resumed, int(retry.data.get("attempt", attempt + 1))
        spans.append(Span(agent, ATTEMPT, cursor, max(cursor, end if end is not None else cursor),
                          attempt, status if end is not None else "running",
                          self._message(agent) if status != "succeeded" else ""))
        return AgentLane(agent=agent, parent=parent_of(agent), status=status, start=start,
                         end=end, spans=tuple(spans), message=self._message(agent))


def _status(entry: AuditEntry) -> str:
    """The status of the outcome a live entry records."""
    status = entry.data.get("status")
    return str(status) if status else _OUTCOME_KINDS[entry.kind]


def _failure(retry: AuditEntry) -> str:
    """How a retried attempt ended, from its ``agent_retried`` entry."""
    error = retry.data.get("error")
    return "timed_out" if error in ("AgentTimeout", "TimeoutError") else "failed"
