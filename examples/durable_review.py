"""Durable runs and human review: a paused run resumed from another process.

An insurance assistant drafts a decision on a claim. Two lookups run in parallel, a
drafting agent proposes a decision with a confidence, and a notifier sends it:

    policy_lookup  (async, 0.10 s) --+
                                     +--> draft_decision (0.20 s, review gate) --> notify (0.05 s)
    claim_history  (sync,  0.15 s) --+

The drafting agent has a review gate with no reviewer attached: when its confidence is
below 0.8 the run pauses with status "needs_review" instead of notifying the customer.
The graph is compiled with a store (a SQLite file), so every finished agent's output is
checkpointed and the paused run outlives the process. A second Python process - this
script started again with `--resume` - builds the same graph on the same file, approves
the decision with a correction (`cp.approve(...)`) and resumes the run: the lookups and
the draft are restored from the store, only `notify` runs.

Everything is simulated (no LLM, no claims system). The store lives in a temporary
directory that is removed at the end.

Run it with:  python examples/durable_review.py
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import counterpoint as cp

CLAIM = {"id": "CLM-5521", "policy": "HOME-88", "amount": 4200.0,
         "description": "Water damage to kitchen floor after a pipe burst"}
LATENCY = {"policy_lookup": 0.10, "claim_history": 0.15, "draft_decision": 0.20,
           "notify": 0.05}
REVIEW_BELOW = 0.8


async def policy_lookup(claim: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(LATENCY["policy_lookup"])  # policy administration system
    return {"covers": ["fire", "water damage"], "excess": 250.0, "limit": 10000.0}


def claim_history(claim: dict[str, Any]) -> dict[str, Any]:
    time.sleep(LATENCY["claim_history"])  # claims database
    return {"previous_claims": 2, "last_claim": "water damage, 14 months ago"}


def draft_decision(found: dict[str, Any]) -> dict[str, Any]:
    """Proposes a decision; a repeat water-damage claim makes it unsure."""
    time.sleep(LATENCY["draft_decision"])  # decision model
    policy, history = found["policy_lookup"], found["claim_history"]
    payout = min(CLAIM["amount"], policy["limit"]) - policy["excess"]
    confidence = 0.62 if "water damage" in history["last_claim"] else 0.93
    return {"decision": "approve", "payout": payout, "confidence": confidence,
            "note": f"covered; {history['previous_claims']} previous claims"}


def notify(decision: dict[str, Any]) -> str:
    time.sleep(LATENCY["notify"])  # email to the customer
    return (f"Claim {CLAIM['id']}: {decision['decision']}d, payout GBP {decision['payout']:.2f} "
            f"({decision['note']})")


def build(store_path: str) -> cp.CompiledGraph:
    g = cp.Graph()
    g.add("policy_lookup", policy_lookup)
    g.add("claim_history", claim_history)
    g.add("draft_decision", draft_decision, after=["policy_lookup", "claim_history"],
          review=cp.Review(below=REVIEW_BELOW))  # no reviewer: the run pauses for a human
    g.add("notify", notify, after="draft_decision")
    return g.compile(store=store_path)


def reviewer_process(store_path: str, run_key: str) -> None:
    """The second process: a reviewer's tool that approves with a correction."""
    app = build(store_path)
    waiting = [run.run_key for run in app.runs("needs_review")]
    print(f"  [reviewer process {os.getpid()}] runs awaiting review: {waiting}")
    assert app.store is not None  # build() compiles with a store
    draft = app.store.load_run(run_key).outcomes["draft_decision"].output
    corrected = {**draft, "payout": draft["payout"] - 300.0, "confidence": 1.0,
                 "note": draft["note"] + "; GBP 300 deducted for pre-existing wear"}
    print(f"  [reviewer process] approving with payout {draft['payout']:.2f} -> "
          f"{corrected['payout']:.2f}")
    started = time.perf_counter()
    result = app.start_resumed(run_key, cp.approve(corrected)).record()
    wall = time.perf_counter() - started
    print(f"  [reviewer process] resumed run: {result.status} in {wall:.3f} s")
    for name, outcome in result.agents.items():
        how = "restored from the store" if outcome.restored else "ran in this process"
        print(f"  [reviewer process]   {name:<15} {outcome.status:<10} {how}")
    print(f"  [reviewer process] result: {result.output}")


def main() -> None:
    directory = tempfile.mkdtemp(prefix="counterpoint-")
    store_path = os.path.join(directory, "claims.db")
    try:
        app = build(store_path)
        print(f"Claim {CLAIM['id']}: {CLAIM['description']}, GBP {CLAIM['amount']:.2f}")
        print(f"Store: {store_path}\n")

        print("1. This process runs the claim:")
        started = time.perf_counter()
        run = app.start(CLAIM)
        result = run.record()
        wall = time.perf_counter() - started
        print(f"  status: {result.status} after {wall:.3f} s; run key {result.run_key}")
        for request in result.pending_reviews:
            print(f"  awaiting review: {request.agent} ({request.reason}): {request.output}")
        for name, outcome in result.agents.items():
            timing = (f"{outcome.started:.3f} -> {outcome.finished:.3f} s"
                      if outcome.started is not None else "-")
            print(f"    {name:<15} {outcome.status:<13} {timing}  {outcome.reason}".rstrip())
        critical = max(LATENCY["policy_lookup"], LATENCY["claim_history"]) \
            + LATENCY["draft_decision"]
        print(f"  wall time {wall:.3f} s; sum of agent latencies so far "
              f"{sum(LATENCY.values()) - LATENCY['notify']:.2f} s; critical path up to the "
              f"pause {critical:.2f} s (claim_history -> draft_decision)")
        try:
            run.result()
        except cp.NeedsReview as paused:
            print(f"  run.result() raises {type(paused).__name__}: {paused}")

        print("\n2. A separate Python process decides and resumes it:")
        run_key = result.run_key
        assert run_key is not None  # a durable run has a key
        command = [sys.executable, os.path.abspath(__file__), "--resume", store_path, run_key]
        print(f"  $ python {os.path.basename(__file__)} --resume <store> {result.run_key}")
        child = subprocess.run(command, capture_output=True, text=True, timeout=60)
        print(child.stdout, end="")
        if child.returncode != 0:
            print(child.stderr, file=sys.stderr)
            raise SystemExit(f"the reviewer process failed with exit code {child.returncode}")

        print("\n3. Back in this process, the store shows the outcome:")
        assert app.store is not None
        stored = app.store.load_run(run_key)
        print(f"  run {stored.run_key}: {stored.status}")
        for name, saved in stored.outcomes.items():
            print(f"    {name:<15} {saved.status:<10} {saved.message}")
        total = sum(LATENCY.values())
        full_critical = critical + LATENCY["notify"]
        print(f"  sum of agent latencies {total:.2f} s; critical path {full_critical:.2f} s "
              "(plus however long the human took)")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        print(f"\nRemoved {directory}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--resume":
        reviewer_process(sys.argv[2], sys.argv[3])
    else:
        main()
