"""The audit log's entries and their hash chain.

Each run has an append-only list of entries (what happened, to which agent, when), each
chained to the one before by a SHA-256 hash, so an edited, deleted, inserted or
reordered entry breaks the chain. Stores keep the entries; this module defines them,
hashes them and checks a chain, whatever the store.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The kinds of entry counterpoint writes (see docs/governance.md).
AUDIT_KINDS = (
    "run_started", "run_resumed", "agent_started", "agent_finished", "agent_failed",
    "agent_cancelled", "agent_retried", "agent_skipped", "route_chosen", "merge_resolved",
    "review_requested", "review_decided", "budget_spent", "run_finished",
)


@dataclass(frozen=True)
class AuditEntry:
    """One entry of a run's audit log.

    Attributes:
        run_key: The run.
        seq: Its position in the run's log: 0, 1, 2 ...
        time: When it happened (UTC seconds since the epoch).
        kind: What happened: ``"run_started"``, ``"agent_finished"``,
            ``"review_decided"`` ... (see docs/governance.md).
        agent: The agent's path (``"review/security"``), or None for the run itself.
        data: The details, JSON data (outputs and inputs as ``"sha256:<hex>"`` digests
            unless the store records content).
        prev_hash: The previous entry's hash (the run's genesis hash for ``seq`` 0).
        hash: ``sha256(prev_hash + canonical JSON of every other field)``, in hex.
    """

    run_key: str
    seq: int
    time: float
    kind: str
    agent: str | None
    data: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = ""
    hash: str = ""


@dataclass(frozen=True)
class AuditVerification:
    """What :meth:`Store.verify_audit` found.

    Attributes:
        ok: True if the log is intact (and matches what the store holds).
        entries: How many entries the log has.
        problem: What is wrong, or None.
        seq: The first entry found wrong (None if ok, or if the problem is not one entry's).
    """

    ok: bool
    entries: int
    problem: str | None = None
    seq: int | None = None


@dataclass(frozen=True)
class AuditEvent:
    """An entry to append, before the store numbers, times and chains it.

    ``values`` holds inputs and outputs by name (``"output"``, ``"input"``): the store
    records each as ``data[name + "_digest"]`` (SHA-256 of its encoding) and, if it keeps
    content, as ``data[name]`` too.
    """

    kind: str
    agent: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)
    time: float | None = None


def canonical_json(value: Any) -> str:
    """The one JSON text of ``value`` that hashes are computed over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def json_safe(value: Any) -> Any:
    """``value`` as JSON data: tuples as lists, non-finite floats and other objects as
    strings (an audit entry must always be writable)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [json_safe(item) for item in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    return repr(value)


def genesis_hash(run_key: str) -> str:
    """The ``prev_hash`` of a run's first entry: tied to the run, so a log cannot be
    passed off as another run's."""
    return hashlib.sha256(f"counterpoint-audit:{run_key}".encode()).hexdigest()


def entry_hash(run_key: str, seq: int, time: float, kind: str, agent: str | None,
               data: Mapping[str, Any], prev_hash: str) -> str:
    """The hash of an entry with these fields."""
    body = canonical_json({"run_key": run_key, "seq": seq, "time": time, "kind": kind,
                           "agent": agent, "data": data, "prev_hash": prev_hash})
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def chain(run_key: str, start_seq: int, prev_hash: str,
          items: Sequence[tuple[float, str, str | None, dict[str, Any]]]) -> list[AuditEntry]:
    """Entries for ``(time, kind, agent, data)`` items appended after ``prev_hash``."""
    entries = []
    for offset, (when, kind, agent, data) in enumerate(items):
        seq = start_seq + offset
        digest = entry_hash(run_key, seq, when, kind, agent, data, prev_hash)
        entries.append(AuditEntry(run_key, seq, when, kind, agent, data, prev_hash, digest))
        prev_hash = digest
    return entries


def verify_chain(run_key: str, entries: Sequence[AuditEntry], head: tuple[int, str] | None
                 ) -> AuditVerification:
    """Checks a run's entries (in the order stored, by ``seq``) link up, and that they end
    where the run's head record ``(count, last hash)`` says (None: no head to compare)."""
    expected_prev = genesis_hash(run_key)
    for index, entry in enumerate(entries):
        if entry.run_key != run_key:
            return AuditVerification(False, len(entries),
                                     f"entry {entry.seq} belongs to run {entry.run_key!r}",
                                     entry.seq)
        if entry.seq != index:
            if entry.seq > index:
                problem = (f"entry {index} is missing (deleted): the log goes from entry "
                           f"{index - 1} to entry {entry.seq}")
            else:
                problem = f"entry {entry.seq} appears twice (an inserted entry)"
            return AuditVerification(False, len(entries), problem, index)
        if entry.prev_hash != expected_prev:
            return AuditVerification(
                False, len(entries),
                f"entry {index} does not follow entry {index - 1} (its prev_hash is not that "
                "entry's hash): an entry was inserted, deleted or moved"
                if index else "entry 0 does not start this run's chain", index)
        try:
            recomputed = entry_hash(run_key, entry.seq, entry.time, entry.kind, entry.agent,
                                    entry.data, entry.prev_hash)
        except (TypeError, ValueError):
            recomputed = ""
        if recomputed != entry.hash:
            return AuditVerification(
                False, len(entries),
                f"entry {index} ({entry.kind}) was edited: its hash does not match its content",
                index)
        expected_prev = entry.hash
    if head is not None:
        count, last = head
        if count != len(entries) or (count and last != expected_prev):
            if count > len(entries):
                problem = (f"the log ends after {len(entries)} entries but the run's head "
                           f"record says {count}: entries were deleted from its end")
                at: int | None = len(entries)
            else:
                problem = (f"the log has {len(entries)} entries but the run's head record "
                           f"says {count} ending in {last[:12]}...: the log or the head "
                           "record was changed")
                at = count if count < len(entries) else max(count - 1, 0)
            return AuditVerification(False, len(entries), problem, at)
    return AuditVerification(True, len(entries))
