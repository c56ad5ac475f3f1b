"""Hierarchical orchestration with dependencies: a bug investigation.

A lead investigator (a supervisor) plans the investigation as subtasks with
dependencies; independent subtasks run in parallel, dependent ones wait only for what
they need, and a synthesizer writes the incident summary:

    reproduce  (0.30 s) --+
    read_logs  (team)   --+--> root_cause (0.25 s) --> patch (0.30 s) --> test (0.20 s)
    bisect     (0.40 s) --+

`read_logs` is handled by a coordinator of its own: a nested supervisor that gives each
service's log to a separate reader (api, db, queue in parallel) and merges what they
found - tiers of coordinators instead of one overloaded supervisor. Each worker sees
only its own subtask and the outputs of the subtasks it depends on.

The script prints the incident summary and a timeline of every subtask, measured from
the run's event stream, which shows which ones overlapped. Everything is simulated
(no repository, no LLM).

Run it with:  python examples/bug_investigation.py
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import counterpoint as cp

BUG = "POST /checkout returns 500 for carts with more than 100 items since release 2.14"

# Simulated latency of every agent, in seconds.
LATENCY = {
    "lead.planner": 0.10, "lead.synthesizer": 0.10,
    "reproduce": 0.30, "bisect": 0.40, "root_cause": 0.25, "patch": 0.30, "test": 0.20,
    "logs.planner": 0.05, "logs.synthesizer": 0.05,
    "logs.api": 0.25, "logs.db": 0.35, "logs.queue": 0.20,
}
LOGS = {
    "api": "TimeoutError in POST /checkout after 30 s (cart_id=9183, items=101)",
    "db": "Lock wait timeout exceeded on table cart_items (UPDATE of 101 rows)",
    "queue": "nothing unusual",
}

# ---- tier 2: the log team, a supervisor of its own -----------------------------------


def log_planner(assignment: dict[str, Any]) -> list[dict[str, Any]]:
    time.sleep(LATENCY["logs.planner"])
    return [{"id": service, "task": f"read the {service} logs around the failures"}
            for service in LOGS]


async def log_reader(subtask: dict[str, Any]) -> str:
    await asyncio.sleep(LATENCY[f"logs.{subtask['id']}"])
    return LOGS[subtask["id"]]


def log_synthesizer(brief: dict[str, Any]) -> str:
    time.sleep(LATENCY["logs.synthesizer"])
    notable = {svc: line for svc, line in brief["results"].items() if line != "nothing unusual"}
    return "; ".join(f"{svc}: {line}" for svc, line in notable.items())


log_team = cp.supervisor(log_planner, workers={"reader": log_reader},
                         synthesizer=log_synthesizer)

# ---- tier 1: the lead investigator and its workers ------------------------------------

PLAN: list[dict[str, Any]] = [
    {"id": "reproduce", "worker": "reproducer", "task": BUG},
    {"id": "read_logs", "worker": "log_team", "task": "find errors around the failures"},
    {"id": "bisect", "worker": "bisector", "task": "find the first bad commit in 2.13..2.14"},
    {"id": "root_cause", "worker": "analyst", "task": "explain the failure",
     "depends_on": ["reproduce", "read_logs", "bisect"]},
    {"id": "patch", "worker": "developer", "task": "fix it", "depends_on": ["root_cause"]},
    {"id": "test", "worker": "tester", "task": "verify the fix", "depends_on": ["patch"]},
]


def lead_planner(bug: str) -> list[dict[str, Any]]:
    """Decomposes the investigation; `depends_on` says what each subtask needs."""
    time.sleep(LATENCY["lead.planner"])
    return PLAN


def reproducer(subtask: dict[str, Any]) -> str:
    time.sleep(LATENCY["reproduce"])
    return "reproduced: 101 items -> 500 after 30 s; 100 items -> 200 OK"


async def bisector(subtask: dict[str, Any]) -> str:
    await asyncio.sleep(LATENCY["bisect"])
    return "first bad commit 4e1f9ac 'update cart items in one batch statement'"


def analyst(subtask: dict[str, Any]) -> str:
    time.sleep(LATENCY["root_cause"])
    found = subtask["deps"]  # exactly the three outputs it depends on
    assert set(found) == {"reproduce", "read_logs", "bisect"}
    return ("4e1f9ac updates every cart item in one statement; above 100 rows the database "
            "escalates to a table lock and concurrent checkouts wait until timeout")


def developer(subtask: dict[str, Any]) -> str:
    time.sleep(LATENCY["patch"])
    return "patch: update cart items in chunks of 100 rows"


async def tester(subtask: dict[str, Any]) -> str:
    await asyncio.sleep(LATENCY["test"])
    assert "chunks" in subtask["deps"]["patch"]
    return "regression test with 1, 100, 101 and 500 items: all pass"


def lead_synthesizer(brief: dict[str, Any]) -> str:
    time.sleep(LATENCY["lead.synthesizer"])
    results = brief["results"]
    return "\n".join([f"Incident: {brief['task']}"] +
                     [f"  {subtask.id:<11} {results[subtask.id]}" for subtask in brief["plan"]])


investigation = cp.supervisor(
    lead_planner,
    workers={"reproducer": reproducer, "log_team": log_team, "bisector": bisector,
             "analyst": analyst, "developer": developer, "tester": tester},
    synthesizer=lead_synthesizer,
)


def longest_path(plan: list[dict[str, Any]], latency: dict[str, float]) -> float:
    """The critical path of a plan: the longest chain of dependent subtasks."""
    finish: dict[str, float] = {}
    for subtask in plan:  # the plan lists dependencies before their dependants
        ready = max((finish[d] for d in subtask.get("depends_on", ())), default=0.0)
        finish[subtask["id"]] = ready + latency[subtask["id"]]
    return max(finish.values())


def main() -> None:
    print(f"Bug: {BUG}\n")
    timings: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    for event in investigation.stream(BUG, stream_mode="events"):
        if event.kind == "end":
            wall = time.perf_counter() - started
            summary = event.output
            break
        timings.setdefault(event.agent or "(run)", {})[event.kind] = event.time

    print(summary)

    # Subtasks run in a child run of the `dispatch` agent, so the stream names them
    # dispatch/<subtask>; the log team's readers are one tier further down.
    rows = [("planner", "planner"),
            ("reproduce", "dispatch/reproduce"),
            ("read_logs", "dispatch/read_logs"),
            *((f"  logs: {svc}", f"dispatch/read_logs/dispatch/{svc}") for svc in LOGS),
            ("bisect", "dispatch/bisect"),
            ("root_cause", "dispatch/root_cause"),
            ("patch", "dispatch/patch"),
            ("test", "dispatch/test"),
            ("synthesizer", "synthesizer")]
    scale = 50 / wall
    print("\nMeasured timeline (from the event stream):")
    for label, agent in rows:
        start, finish = timings[agent]["start"], timings[agent]["finish"]
        bar = " " * round(start * scale) + "#" * max(1, round((finish - start) * scale))
        print(f"  {label:<13} {start:5.2f} -> {finish:5.2f} s  |{bar:<50}|")

    log_team_latency = LATENCY["logs.planner"] + max(LATENCY[f"logs.{s}"] for s in LOGS) \
        + LATENCY["logs.synthesizer"]
    plan_latency = {**LATENCY, "read_logs": log_team_latency}
    critical = LATENCY["lead.planner"] + longest_path(PLAN, plan_latency) \
        + LATENCY["lead.synthesizer"]
    total = sum(LATENCY.values())
    print(f"\nWall time:               {wall:5.3f} s")
    print(f"Sum of agent latencies:  {total:5.3f} s  (one investigator doing everything in turn)")
    print(f"Critical path:           {critical:5.3f} s  "
          "(planner -> read_logs team -> root_cause -> patch -> test -> synthesizer)")
    print(f"Wall / critical path:    {wall / critical:5.3f}x")


if __name__ == "__main__":
    main()
