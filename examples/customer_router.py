"""Handoff routing: one customer message, four intents, the urgent one answered first.

A customer writes in with a billing dispute, a late parcel, a promo code that was never
applied and a new delivery address for a parcel that is already in transit. A router
classifies the message and hands it to one specialist per intent found; the four run in
parallel, the address change (time-critical: the parcel can only be redirected while
it is in transit) with the highest priority. Billing is itself a small parallel team
(transaction history and dispute rules at once, then a decision). A reply agent joins
the four findings into one answer. Intents with no specialist go to `escalate`:

                      +--> address     (sync,  0.30 s, priority 10)
                      +--> billing     = parallel(transactions 0.35 s, rules 0.25 s)
    classify (0.10 s) +                  -> resolve 0.20 s               --> reply (0.05 s)
                      +--> shipping    (async, 0.80 s)
                      +--> promotions  (async, 0.50 s)
                      +--> escalate    (default: any intent without a route)

The run is streamed: the address confirmation goes to the customer the moment it is
ready, before billing is resolved and before the consolidated reply. Everything is
simulated (no network, no LLM), so the answers are the same on every run; only the
measured timings vary a little.

Run it with:  python examples/customer_router.py
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import counterpoint as cp

MESSAGE = (
    "Hi, I was charged twice for order A-1042 and I want the duplicate refunded. "
    "The parcel was supposed to arrive on Monday and it still hasn't shown up. "
    "I also entered the promo code SPRING20 but the discount was never applied. "
    "And please send it to my new address, 42 Harbour Lane, Bristol BS1 4ST - I moved!"
)
SECOND_MESSAGE = "Please cancel my account A-1042 and delete my data."

# Simulated latency of every agent, in seconds: what the LLM / API calls would take.
LATENCY = {
    "classify": 0.10,
    "address": 0.30,
    "billing.transactions": 0.35,
    "billing.rules": 0.25,
    "billing.resolve": 0.20,
    "shipping": 0.80,
    "promotions": 0.50,
    "escalate": 0.15,
    "reply": 0.05,
}

# ---- stand-ins for the systems the agents would query ---------------------------------

ORDERS: dict[str, dict[str, Any]] = {
    "A-1042": {"customer": "Dana Whitfield", "total": 89.90,
               "charges": [("2026-03-02 09:14", 89.90), ("2026-03-02 09:15", 89.90)],
               "tracking": "CPX-77310"}}
CARRIER: dict[str, dict[str, Any]] = {
    "CPX-77310": {"status": "in transit", "last_scan": "Leeds hub",
                  "new_eta": "Thursday", "interceptable": True}}
PROMOS = {"SPRING20": 20}
INTENT_KEYWORDS = {
    "billing": ("charged twice", "refund", "duplicate"),
    "shipping": ("arrive", "hasn't shown up", "where is"),
    "promotions": ("promo code", "discount"),
    "address": ("new address", "send it to", "moved"),
    "cancellation": ("cancel my account", "delete my data"),  # no specialist: escalated
}


def order_id(message: str) -> str:
    return find(r"\b[A-Z]-\d{4}\b", message, 0)


def find(pattern: str, text: str, group: int = 1) -> str:
    """The first match of ``pattern`` in ``text`` (stands in for real entity extraction)."""
    match = re.search(pattern, text)
    if match is None:
        raise ValueError(f"no match for {pattern!r} in the message")
    return match.group(group)


# ---- the agents ----------------------------------------------------------------------
# A router hands every specialist the original message; each extracts what it needs.


def classify(message: str) -> dict[str, Any]:
    time.sleep(LATENCY["classify"])  # intent-detection model
    text = message.lower()
    intents = [name for name, words in INTENT_KEYWORDS.items() if any(w in text for w in words)]
    return {"intents": intents}


def address(message: str) -> str:
    time.sleep(LATENCY["address"])  # carrier intercept request
    new_address = find(r"new address, (.+?) -", message, 1)
    parcel = CARRIER[ORDERS[order_id(message)]["tracking"]]
    if not parcel["interceptable"]:
        return "Your parcel can no longer be redirected; we will re-send it."
    return f"Parcel intercepted in transit; it will be delivered to {new_address}."


def transactions(message: str) -> list[Any]:
    time.sleep(LATENCY["billing.transactions"])  # payment ledger
    charges: list[Any] = ORDERS[order_id(message)]["charges"]
    return charges


async def dispute_rules(message: str) -> dict[str, Any]:
    await asyncio.sleep(LATENCY["billing.rules"])  # policy knowledge base
    return {"duplicate_window_minutes": 10, "auto_refund": True}


def resolve_dispute(found: dict[str, Any]) -> str:
    time.sleep(LATENCY["billing.resolve"])  # dispute-analysis model
    charges, rules = found["transactions"], found["rules"]
    duplicates = charges[1:]
    refund = sum(amount for _, amount in duplicates)
    action = "refunded automatically" if rules["auto_refund"] else "sent to a specialist"
    return f"{len(duplicates)} duplicate charge of GBP {refund:.2f} found and {action}."


# Billing is a team of its own: two lookups in parallel, then a decision.
billing = cp.parallel(transactions=transactions, rules=dispute_rules, merge=resolve_dispute)


async def shipping(message: str) -> str:
    await asyncio.sleep(LATENCY["shipping"])  # carrier tracking API
    parcel = CARRIER[ORDERS[order_id(message)]["tracking"]]
    return (f"Parcel is {parcel['status']} (last scan: {parcel['last_scan']}), "
            f"due {parcel['new_eta']}.")


async def promotions(message: str) -> str:
    await asyncio.sleep(LATENCY["promotions"])  # promotions service
    code = find(r"promo code (\w+)", message, 1)
    percent = PROMOS.get(code)
    if percent is None:
        return f"{code} is not a valid code."
    credit = ORDERS[order_id(message)]["total"] * percent / 100
    return f"{code} was valid; GBP {credit:.2f} ({percent}%) credited to your account."


def escalate(message: str) -> str:
    time.sleep(LATENCY["escalate"])  # opens a ticket for a human agent
    return "Passed to a human colleague, who will reply within 24 hours."


def reply(findings: dict[str, Any]) -> str:
    time.sleep(LATENCY["reply"])  # response-drafting model
    order = ORDERS["A-1042"]
    lines = [f"Dear {order['customer']}, here is where everything stands:"]
    for topic in ("address", "billing", "shipping", "promotions", "default"):
        if topic in findings:
            lines.append(f"  - {'other' if topic == 'default' else topic}: {findings[topic]}")
    return "\n".join(lines)


def build() -> cp.CompiledGraph:
    triage = cp.router(
        classify,
        routes={"address": address, "billing": billing, "shipping": shipping,
                "promotions": promotions},
        default=escalate,
        priorities={"address": 10},  # time-critical: scheduled and streamed first
    )
    g = cp.Graph()
    g.add("triage", triage)
    g.add("reply", reply, after="triage")
    return g.compile()


def main() -> None:
    app = build()
    print("Customer message:\n ", MESSAGE, "\n")

    print("Streaming the run (events as they happen):")
    timings: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    for event in app.stream(MESSAGE, stream_mode="events"):
        if event.kind == "end":
            wall = time.perf_counter() - started
            final_reply = event.output
            break
        name = (event.agent or "(run)").removeprefix("triage/")
        timings.setdefault(name, {})[event.kind] = event.time
        if event.kind == "finish" and name == "classify":
            print(f"  {event.time:6.3f} s  intents: {', '.join(event.output['intents'])}")
        elif event.kind == "finish" and name in ("address", "billing", "shipping", "promotions"):
            print(f"  {event.time:6.3f} s  {name:<10} resolved")
            if name == "address":
                print(f"             -> sent to the customer right away: {event.output}")

    print("\nConsolidated reply:")
    print("\n".join(f"  | {line}" for line in final_reply.splitlines()))

    address_done = timings["address"]["finish"]
    billing_done = timings["billing"]["finish"]
    assert address_done < billing_done, "the address change must reach the customer first"
    print(f"\nAddress confirmed at {address_done:.3f} s, billing resolved at {billing_done:.3f} s "
          f"-> the time-critical answer went out {billing_done - address_done:.2f} s earlier.")

    print("\nMeasured per-agent timings (from the stream):")
    for name in ("classify", "address", "billing/transactions", "billing/rules",
                 "billing/merge", "billing", "shipping", "promotions", "reply"):
        t = timings[name]
        print(f"  {name:<20} {t['start']:6.3f} -> {t['finish']:6.3f} s")

    # What the configured latencies predict: every agent one after another (the sum),
    # versus the longest chain of agents that depend on each other (the critical path).
    total = sum(LATENCY[k] for k in LATENCY if k != "escalate")  # escalate did not run
    billing_path = max(LATENCY["billing.transactions"], LATENCY["billing.rules"]) \
        + LATENCY["billing.resolve"]
    critical = LATENCY["classify"] + max(LATENCY["address"], billing_path, LATENCY["shipping"],
                                         LATENCY["promotions"]) + LATENCY["reply"]
    print(f"\nWall time:                     {wall:5.3f} s")
    print(f"Sum of agent latencies:        {total:5.3f} s  (what a sequential chain would take)")
    print(f"Critical path:                 {critical:5.3f} s  (classify -> shipping -> reply)")
    print(f"Wall / critical path:          {wall / critical:5.3f}x  (target <= 1.1x)")

    # An intent with no specialist goes to the default route.
    print(f"\nSecond message: {SECOND_MESSAGE!r}")
    result = app.run(SECOND_MESSAGE)
    print(f"  status: {result.status}, took {result.elapsed:.3f} s")
    print("\n".join(f"  | {line}" for line in result.output.splitlines()))


if __name__ == "__main__":
    main()
