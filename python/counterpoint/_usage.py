"""Usage and cost of stored runs, per agent, graph or run, from their audit logs."""

from __future__ import annotations

import datetime
import importlib
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._audit import AuditEntry
from ._store import Store, as_timestamp

_BY = ("agent", "graph", "run")
# Entries of one execution of an agent (its final outcome, after any retries).
_CALLS = ("agent_finished", "agent_failed", "review_requested", "agent_cancelled")


@dataclass(frozen=True)
class UsageRow:
    """What one agent (or graph, or run) used over the stored runs.

    Attributes:
        key: The agent's path, the graph's fingerprint or the run key (``usage(by=...)``).
        calls: Executions (an agent's retries count once; a run's are its agents').
        failures: Executions that failed or timed out.
        tokens: Every usage name agents reported other than ``cost``, summed
            (``input_tokens``, ``output_tokens``, ``total_tokens`` ...).
        cost: The ``cost`` usage name, summed (0.0 if none was reported).
        p50_seconds: Median duration of an execution (a run's: of the run), None if no
            duration is recorded.
        p95_seconds: 95th percentile of the same.
    """

    key: str
    calls: int
    failures: int
    tokens: dict[str, float] = field(default_factory=dict)
    cost: float = 0.0
    p50_seconds: float | None = None
    p95_seconds: float | None = None


def _percentile(values: list[float], fraction: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _since(since: float | datetime.datetime | datetime.timedelta | None) -> float | None:
    if isinstance(since, datetime.timedelta):
        return time.time() - since.total_seconds()
    return as_timestamp(since, "since")


class _Tally:
    def __init__(self) -> None:
        self.calls = 0
        self.failures = 0
        self.usage: dict[str, float] = defaultdict(float)
        self.seconds: list[float] = []

    def row(self, key: str) -> UsageRow:
        usage = dict(self.usage)
        cost = float(usage.pop("cost", 0.0))
        return UsageRow(key, self.calls, self.failures, dict(sorted(usage.items())), cost,
                        _percentile(self.seconds, 0.5), _percentile(self.seconds, 0.95))


def _add_usage(tally: _Tally, usage: Any) -> None:
    if isinstance(usage, dict):
        for name, amount in usage.items():
            if isinstance(amount, (int, float)) and not isinstance(amount, bool):
                tally.usage[str(name)] += float(amount)


def usage(store: Store, *, by: str = "agent",
          since: float | datetime.datetime | datetime.timedelta | None = None,
          graph: str | None = None, as_frame: bool | None = None) -> Any:
    """Usage and cost of the runs kept in ``store``, aggregated from their audit logs.

    Args:
        store: A store with an audit log (``SQLiteStore``).
        by: ``"agent"`` (one row per agent path), ``"graph"`` (per graph fingerprint)
            or ``"run"`` (per run key).
        since: Only runs started at or after this: seconds since the epoch, a datetime,
            or a timedelta back from now.
        graph: Only runs of the graph with this fingerprint (``app.runs()`` lists them;
            ``RunSummary.graph``).
        as_frame: True: a pandas DataFrame (ImportError without pandas); False: a list
            of :class:`UsageRow`; None: a DataFrame when pandas is installed.

    Returns:
        Rows sorted by key, as a list of :class:`UsageRow` or a DataFrame with one
        column per field (``tokens`` spread into one column per usage name).
    """
    if by not in _BY:
        raise ValueError(f"by must be one of {', '.join(map(repr, _BY))}, got {by!r}")
    pandas = _pandas(as_frame)
    cutoff = _since(since)
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    for summary in store.runs(graph=graph):
        if cutoff is not None and summary.created < cutoff:
            continue
        entries = store.audit(summary.run_key)
        if by == "agent":
            for entry in entries:
                _count_agent(tallies, entry)
        else:
            key = summary.run_key if by == "run" else summary.graph
            _count_run(tallies[key], entries)
    rows = [tallies[key].row(key) for key in sorted(tallies)]
    if pandas is None:
        return rows
    return _frame(pandas, rows)


def _is_call(entry: AuditEntry) -> bool:
    # An in-process review is written at the run's end, besides the agent's outcome.
    return entry.kind in _CALLS and entry.agent is not None and \
        not entry.data.get("in_process")


def _seconds(value: Any) -> float | None:
    """A duration the log recorded, or None for anything else."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def _count_call(tally: _Tally, entry: AuditEntry) -> None:
    tally.calls += 1
    if entry.kind == "agent_failed":
        tally.failures += 1
    _add_usage(tally, entry.data.get("usage"))


def _count_agent(tallies: dict[str, _Tally], entry: AuditEntry) -> None:
    if entry.agent is None:
        return
    if _is_call(entry):
        _count_call(tallies[entry.agent], entry)
    elif entry.kind == "agent_started":
        seconds = _seconds(entry.data.get("seconds"))
        if seconds is not None:
            tallies[entry.agent].seconds.append(seconds)


def _count_run(tally: _Tally, entries: Iterable[AuditEntry]) -> None:
    for entry in entries:
        if _is_call(entry):
            _count_call(tally, entry)
        elif entry.kind == "run_finished":
            elapsed = _seconds(entry.data.get("elapsed"))
            if elapsed is not None:
                tally.seconds.append(elapsed)


def _pandas(as_frame: bool | None) -> Any:
    if as_frame is False:
        return None
    try:
        pandas = importlib.import_module("pandas")
    except ImportError:
        if as_frame:
            raise ImportError("usage(as_frame=True) returns a pandas DataFrame; install "
                              "pandas: pip install pandas") from None
        return None
    return pandas


def _frame(pandas: Any, rows: list[UsageRow]) -> Any:
    names = sorted({name for row in rows for name in row.tokens})
    records = [{"key": row.key, "calls": row.calls, "failures": row.failures,
                **{name: row.tokens.get(name, 0.0) for name in names}, "cost": row.cost,
                "p50_seconds": row.p50_seconds, "p95_seconds": row.p95_seconds}
               for row in rows]
    columns = ["key", "calls", "failures", *names, "cost", "p50_seconds", "p95_seconds"]
    return pandas.DataFrame.from_records(records, columns=columns)
