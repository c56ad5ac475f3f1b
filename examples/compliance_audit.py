"""Sequential chain with an audit trail: a financial compliance audit.

A bank audits the day's transactions. Every step needs the validated output of the one
before it, so the steps run strictly in order, and the run keeps a per-step record
(status, start, finish, output) that is the audit trail:

    ingest (0.10 s) -> validate (0.15 s, async) -> screen_sanctions (0.20 s)
                    -> risk_score (0.15 s, async) -> report (0.10 s)

A sequential chain gains nothing from parallelism: its critical path is the sum of its
steps. What it gives is order and traceability. The script audits a clean file, prints
the audit trail from `app.run(...)` and the JSON trace from `app.start(...).trace()`,
then audits a file with a malformed row to show that the chain stops at validation and
that the trail records exactly where and why.

Run it with:  python examples/compliance_audit.py
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import counterpoint as cp

DAILY_FILE = """\
T-001,ACME Corp,GB,12500.00,GBP
T-002,Northwind Ltd,DE,980.50,EUR
T-003,Blue Harbor Shipping,IR,48000.00,USD
T-004,Globex,US,310.00,USD
T-005,Initech,US,9999.00,USD
T-006,Umbrella Trading,CY,152000.00,EUR
"""
MALFORMED_FILE = DAILY_FILE + "T-007,Stark Industries,US,not-a-number,USD\n"

SANCTIONED_COUNTRIES = {"IR", "KP", "SY"}
WATCHLIST = {"Umbrella Trading"}
CURRENCIES = {"GBP", "EUR", "USD"}

# Simulated latency of every step, in seconds.
LATENCY = {"ingest": 0.10, "validate": 0.15, "screen_sanctions": 0.20, "risk_score": 0.15,
           "report": 0.10}


def ingest(raw: str) -> list[dict[str, Any]]:
    """Parses the daily file into records."""
    time.sleep(LATENCY["ingest"])
    fields = ("id", "counterparty", "country", "amount", "currency")
    return [dict(zip(fields, line.split(","), strict=True))
            for line in raw.splitlines() if line.strip()]


async def validate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rejects the whole file if any record is malformed: the audit must be complete."""
    await asyncio.sleep(LATENCY["validate"])
    valid = []
    for record in records:
        try:
            amount = float(record["amount"])
        except ValueError:
            problem = f"{record['id']}: amount {record['amount']!r} is not a number"
            raise ValueError(problem) from None
        if record["currency"] not in CURRENCIES:
            raise ValueError(f"{record['id']}: unknown currency {record['currency']!r}")
        valid.append({**record, "amount": amount})
    return valid


def screen_sanctions(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Checks every counterparty against sanctions lists and the internal watchlist."""
    time.sleep(LATENCY["screen_sanctions"])
    screened = []
    for record in records:
        hits = []
        if record["country"] in SANCTIONED_COUNTRIES:
            hits.append(f"sanctioned country {record['country']}")
        if record["counterparty"] in WATCHLIST:
            hits.append("internal watchlist")
        screened.append({**record, "hits": hits})
    return screened


async def risk_score(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scores each screened transaction from 0 to 100."""
    await asyncio.sleep(LATENCY["risk_score"])
    scored = []
    for record in records:
        score = 60 * bool(record["hits"]) + min(30, record["amount"] / 5000)
        if 9000 <= record["amount"] < 10000:  # just under the reporting threshold
            score += 50
        scored.append({**record, "risk": round(min(score, 100))})
    return scored


def report(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Writes the compliance report: what must be escalated, and why."""
    time.sleep(LATENCY["report"])
    escalate = [r for r in records if r["risk"] >= 50]
    return {
        "audited": len(records),
        "escalated": [f"{r['id']} {r['counterparty']} (risk {r['risk']}: "
                      f"{', '.join(r['hits']) or 'structuring pattern'})" for r in escalate],
        "cleared": [r["id"] for r in records if r["risk"] < 50],
    }


audit = cp.sequential(ingest, validate, screen_sanctions, risk_score, report)


def summary(output: object) -> str:
    """A one-line summary of a step's output for the audit trail."""
    if isinstance(output, list):
        flagged = sum(1 for r in output if r.get("hits"))
        extra = f", {flagged} with sanctions hits" if "hits" in output[0] else ""
        return f"{len(output)} records{extra}"
    if isinstance(output, dict):
        return f"{output['audited']} audited, {len(output['escalated'])} escalated"
    return "-"


def print_trail(result: cp.RunResult) -> None:
    print(f"  {'step':<17} {'status':<12} {'start':>7} {'finish':>7}   output / error")
    for name, step in result.agents.items():
        start = f"{step.started:7.3f}" if step.started is not None else "      -"
        finish = f"{step.finished:7.3f}" if step.finished is not None else "      -"
        detail = step.error or summary(step.output)
        print(f"  {name:<17} {step.status:<12} {start} {finish}   {detail}")


def main() -> None:
    print("Audit of the daily file (clean):")
    started = time.perf_counter()
    result = audit.run(DAILY_FILE)
    wall = time.perf_counter() - started
    findings = result.raise_for_status()
    print(f"  audited {findings['audited']} transactions; "
          f"cleared: {', '.join(findings['cleared'])}")
    for line in findings["escalated"]:
        print(f"  ESCALATE {line}")

    print("\nAudit trail (app.run(file).agents):")
    print_trail(result)

    total = sum(LATENCY.values())
    critical = total  # every step depends on the previous one
    print(f"\nWall time:               {wall:5.3f} s")
    print(f"Sum of agent latencies:  {total:5.3f} s")
    print(f"Critical path:           {critical:5.3f} s  (a strict chain: the sum of its steps)")

    print("\nRun trace (app.start(file).trace(), JSON-ready for a log or audit store):")
    run = audit.start(DAILY_FILE)
    run.wait()
    trace = run.trace()
    print("  " + json.dumps({k: v for k, v in trace.items() if k != "agents"}))
    for step in trace["agents"]:
        print("    " + json.dumps(step))

    print("\nAudit of a file with a malformed row:")
    result = audit.run(MALFORMED_FILE)
    print(f"  run status: {result.status} - {result.error}")
    print_trail(result)
    print("  (the chain stopped at validation: no unvalidated record was screened or scored)")


if __name__ == "__main__":
    main()
