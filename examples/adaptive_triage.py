"""Adaptive orchestration: escalate only the hard cases to a heavier team.

A support desk labels incoming tickets. A cheap, fast classifier handles every ticket
and says how sure it is; only when its confidence is below 0.7 does the ticket go to a
panel of three slower experts who vote (a consensus):

                                         confidence >= 0.7 --> cheap label
    ticket --> cheap_classifier (0.05 s)
                                         confidence <  0.7 --> consensus of
                                                               expert_a (sync,  0.30 s)
                                                               expert_b (async, 0.40 s)
                                                               expert_c (async, 0.35 s)
                                                               -> majority vote

Ten tickets run as a batch (`app.batch`), at most two in flight at a time (as a
provider's rate limit would impose). The script prints which tickets were escalated and
why, then compares the batch with sending every ticket to the expert panel: the
adaptive batch spends a fraction of the agent time and finishes sooner. Everything is
simulated (no LLM): the classifiers are keyword rules that sleep for their latency.

Run it with:  python examples/adaptive_triage.py
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import counterpoint as cp

TICKETS = [
    {"id": "T01", "text": "I was charged twice this month"},
    {"id": "T02", "text": "The app crashes when I open settings"},
    {"id": "T03", "text": "Please reset my password"},
    {"id": "T04", "text": "Where is my parcel? Tracking has not moved"},
    {"id": "T05", "text": "My invoice shows the wrong VAT number"},
    {"id": "T06", "text": "The refund for my broken router never arrived"},
    {"id": "T07", "text": "Can't log in since the update, the app shows an error"},
    {"id": "T08", "text": "Error 502 on the checkout page"},
    {"id": "T09", "text": "Change the email address on my account"},
    {"id": "T10", "text": "Something is wrong, please call me back"},
]

LATENCY = {"cheap": 0.05, "expert_a": 0.30, "expert_b": 0.40, "expert_c": 0.35}
THRESHOLD = 0.7
IN_FLIGHT = 2  # tickets processed at once

# The cheap classifier knows a few obvious words per label.
QUICK_WORDS = {
    "billing": ("charged", "invoice", "refund"),
    "technical": ("crash", "error", "broken"),
    "account": ("password", "log in", "email"),
    "shipping": ("parcel", "tracking", "arrived"),
}
# The experts know more words and weigh them differently.
EXPERT_WORDS = {
    "billing": ("charged", "invoice", "refund", "vat", "payment"),
    "technical": ("crash", "error", "502", "update", "app"),
    "account": ("password", "log in", "email", "account"),
    "shipping": ("parcel", "tracking", "arrived", "delivery"),
}


def cheap_classifier(ticket: dict[str, Any]) -> cp.Result:
    """Fast and shallow: confident only when exactly one label's words appear."""
    time.sleep(LATENCY["cheap"])
    text = ticket["text"].lower()
    hits = [label for label, words in QUICK_WORDS.items() if any(w in text for w in words)]
    if len(hits) == 1:
        return cp.Result(hits[0], confidence=0.92)
    if not hits:
        return cp.Result("unknown", confidence=0.20)
    return cp.Result(hits[0], confidence=round(0.9 / len(hits), 2))  # ambiguous


def expert_label(text: str, tie_break: tuple[str, ...]) -> str:
    """Counts every expert keyword; ties go to the expert's own preference order."""
    text = text.lower()
    scores = {label: sum(w in text for w in words) for label, words in EXPERT_WORDS.items()}
    best = max(scores.values())
    if best == 0:
        return "needs_human"
    return next(label for label in tie_break if scores[label] == best)


def expert_a(ticket: dict[str, Any]) -> str:
    time.sleep(LATENCY["expert_a"])
    return expert_label(ticket["text"], ("billing", "technical", "account", "shipping"))


async def expert_b(ticket: dict[str, Any]) -> str:
    await asyncio.sleep(LATENCY["expert_b"])
    return expert_label(ticket["text"], ("shipping", "technical", "account", "billing"))


async def expert_c(ticket: dict[str, Any]) -> str:
    await asyncio.sleep(LATENCY["expert_c"])
    return expert_label(ticket["text"], ("account", "billing", "technical", "shipping"))


expert_panel = cp.consensus([expert_a, expert_b, expert_c], vote="majority")
triage = cp.adaptive(cheap_classifier, escalate_to=expert_panel, below=THRESHOLD)


def main() -> None:
    print(f"Triage of {len(TICKETS)} tickets (escalate below confidence {THRESHOLD}, "
          f"{IN_FLIGHT} in flight):\n")
    started = time.perf_counter()
    outcomes = triage.batch(TICKETS, max_concurrency=IN_FLIGHT)
    adaptive_wall = time.perf_counter() - started

    escalated = 0
    for ticket, outcome in zip(TICKETS, outcomes, strict=True):
        if outcome.path == "escalated":
            escalated += 1
            merged = outcome.value  # a cp.Merged: the panel's vote
            label = merged.value
            votes = ", ".join(f"{name}={vote}" for name, vote in merged.outputs.items())
            split = "unanimous" if merged.unanimous else f"{len(merged.agreeing)} of 3"
            detail = f"ESCALATED ({outcome.reason}); panel {split}: {votes}"
        else:
            label = outcome.value
            detail = f"cheap ({outcome.reason})"
        print(f"  {ticket['id']} {ticket['text'][:54]:<54} -> {label:<11} {detail}")

    print(f"\nEscalating everything instead: the expert panel on all {len(TICKETS)} tickets...")
    started = time.perf_counter()
    panel_only = expert_panel.batch(TICKETS, max_concurrency=IN_FLIGHT)
    everything_wall = time.perf_counter() - started

    agreed = sum(1 for o, p in zip(outcomes, panel_only, strict=True)
                 if (o.value.value if o.path == "escalated" else o.value) == p.value)
    panel = LATENCY["expert_a"] + LATENCY["expert_b"] + LATENCY["expert_c"]
    panel_critical = max(LATENCY["expert_a"], LATENCY["expert_b"], LATENCY["expert_c"])
    adaptive_total = len(TICKETS) * LATENCY["cheap"] + escalated * panel
    everything_total = len(TICKETS) * panel
    print(f"  same label as the panel on {agreed} of {len(TICKETS)} tickets\n")

    print(f"{'':<26}{'adaptive':>10}{'escalate all':>14}")
    print(f"{'tickets sent to the panel':<26}{escalated:>10}{len(TICKETS):>14}")
    print(f"{'wall time of the batch':<26}{adaptive_wall:>9.2f}s{everything_wall:>13.2f}s")
    print(f"{'sum of agent latencies':<26}{adaptive_total:>9.2f}s{everything_total:>13.2f}s")
    print(f"\nCritical path per ticket: {LATENCY['cheap']:.2f} s when the cheap label is kept, "
          f"{LATENCY['cheap'] + panel_critical:.2f} s when escalated "
          f"(cheap -> slowest expert); {panel_critical:.2f} s for the panel alone.")


if __name__ == "__main__":
    main()
