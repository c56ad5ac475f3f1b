"""One customer message, four intents: sequential chain vs. parallel counterpoint graph.

A customer writes in with a billing dispute, a delayed shipment, a promo code that was
never applied and a change of delivery address for a parcel that is already in transit.
A classifier detects the four intents, four specialised agents work them in parallel and
a reply agent joins their findings into one consolidated answer:

                     +--> billing     (sync,  0.6 s) ---+
                     +--> shipping    (async, 0.8 s) ---+
    classify --------+--> promotions  (async, 0.5 s) ---+--> reply
                     +--> address     (sync,  0.3 s) ---+
                          priority=10: the time-critical one

The same agents first run one after another in a plain Python loop, then as a
counterpoint graph. Everything is simulated (no network, no LLM), so the reply is the
same on every run; only the timings vary.

Run it with:  python examples/customer_message.py
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, ClassVar

import counterpoint as cp

MESSAGE = (
    "Hi, I was charged twice for order A-1042 and I want the duplicate refunded. "
    "The parcel was supposed to arrive on Monday and it still hasn't shown up. "
    "I also entered the promo code SPRING20 at checkout but the discount was never "
    "applied. And please send it to my new address, 42 Harbour Lane, Bristol BS1 4ST - "
    "I moved last week!"
)

# ---- stand-ins for the systems the agents would query ---------------------------------

ORDERS: dict[str, dict[str, Any]] = {
    "A-1042": {
        "customer": "Dana Whitfield",
        "total": 89.90,
        "charges": [("2026-03-02 09:14", 89.90), ("2026-03-02 09:15", 89.90)],
        "promo_entered": "SPRING20",
        "discount_applied": 0.0,
        "tracking": "CPX-77310",
    }
}
CARRIER: dict[str, dict[str, Any]] = {
    "CPX-77310": {
        "status": "in transit",
        "last_scan": "Leeds sorting hub",
        "delay": "a storm at the hub",
        "new_eta": "Thursday",
        "interceptable": True,
    }
}
PROMOS: dict[str, dict[str, Any]] = {"SPRING20": {"percent": 20, "valid": True}}

INTENT_KEYWORDS = {
    "billing": ("charged twice", "refund", "overcharged", "duplicate"),
    "shipping": ("arrive", "hasn't shown up", "delayed", "where is"),
    "promotions": ("promo code", "discount", "coupon"),
    "address": ("new address", "change my address", "moved", "send it to"),
}


def find(pattern: str, text: str, group: int = 1) -> str:
    """The first match of ``pattern`` in ``text`` (stands in for real entity extraction)."""
    match = re.search(pattern, text)
    if match is None:
        raise ValueError(f"no match for {pattern!r} in the message")
    return match.group(group)


# ---- the agents ----------------------------------------------------------------------


def classify(message: str) -> dict[str, Any]:
    """Entry agent: detects every intent in the message and which one is urgent."""
    text = message.lower()
    intents = [intent for intent, words in INTENT_KEYWORDS.items()
               if any(word in text for word in words)]
    order_id = find(r"\b[A-Z]-\d{4}\b", message, 0)
    promo = find(r"promo code (\w+)", message, 1)
    new_address = find(r"new address, (.+?) -", message, 1)
    # An address change for a parcel that is still on its way is time-critical: it only
    # helps while the parcel can be redirected.
    urgent = ["address"] if {"address", "shipping"} <= set(intents) else []
    return {"order_id": order_id, "intents": intents, "urgent": urgent,
            "promo_code": promo, "new_address": new_address}


def billing_agent(ticket: dict[str, Any]) -> str:
    """Sync agent: pulls the charges and opens the dispute."""
    time.sleep(0.6)  # transaction history + dispute analysis
    order = ORDERS[ticket["order_id"]]
    charges = order["charges"]
    duplicates = len(charges) - 1
    refund = sum(amount for _, amount in charges[1:])
    return (f"We found {duplicates} duplicate charge of GBP {refund:.2f} on "
            f"{charges[1][0][:10]}; the refund is on its way (3-5 business days).")


async def shipping_agent(ticket: dict[str, Any]) -> str:
    """Async agent: asks the carrier for the live status."""
    await asyncio.sleep(0.8)  # carrier API
    shipment = CARRIER[ORDERS[ticket["order_id"]]["tracking"]]
    return (f"Your parcel is {shipment['status']} (last scan: {shipment['last_scan']}); "
            f"it was held up by {shipment['delay']} and is now due {shipment['new_eta']}.")


async def promotions_agent(ticket: dict[str, Any]) -> str:
    """Async agent: validates the code against the order."""
    await asyncio.sleep(0.5)  # promotions service
    order = ORDERS[ticket["order_id"]]
    promo = PROMOS.get(ticket["promo_code"])
    if promo is None or not promo["valid"]:
        return f"The code {ticket['promo_code']} is not valid for this order."
    credit = order["total"] * promo["percent"] / 100 - order["discount_applied"]
    return (f"{ticket['promo_code']} was valid but not applied at checkout; we have "
            f"credited GBP {credit:.2f} ({promo['percent']}%) to your account.")


def address_agent(ticket: dict[str, Any]) -> str:
    """Sync agent, time-critical: redirects the parcel while it can still be redirected."""
    time.sleep(0.3)  # carrier intercept request
    shipment = CARRIER[ORDERS[ticket["order_id"]]["tracking"]]
    if not shipment["interceptable"]:
        return "Your parcel can no longer be redirected; we will re-send it to your new address."
    return ("Your parcel was intercepted in transit and will be delivered to "
            f"{ticket['new_address']}.")


class ReplyDrafter:
    """A LangChain-style runnable (an object with ``invoke``): joins the four findings."""

    ORDER = ("address", "billing", "shipping", "promotions")  # most time-critical first
    TITLES: ClassVar[dict[str, str]] = {"address": "Delivery address", "billing": "Billing dispute",
              "shipping": "Shipment status", "promotions": "Promo code"}

    def invoke(self, findings: dict[str, Any]) -> str:
        order = ORDERS["A-1042"]
        lines = [f"Dear {order['customer']},", "",
                 "thank you for your message about order A-1042. Here is where everything stands:"]
        for number, name in enumerate(self.ORDER, 1):
            lines.append(f"  {number}. {self.TITLES[name]}: {findings[name]}")
        lines += ["", "Kind regards,", "Customer Care"]
        return "\n".join(lines)


reply_agent = ReplyDrafter()
SPECIALISTS = {
    "billing": billing_agent,
    "shipping": shipping_agent,
    "promotions": promotions_agent,
    "address": address_agent,
}


# ---- sequential: one agent after another ---------------------------------------------


def run_sequentially(message: str) -> str:
    ticket = classify(message)
    findings = {}
    for name in ticket["intents"]:  # billing, shipping, promotions, address: in line
        agent = SPECIALISTS[name]
        if asyncio.iscoroutinefunction(agent):
            findings[name] = asyncio.run(agent(ticket))
        else:
            findings[name] = agent(ticket)
    return reply_agent.invoke(findings)


# ---- parallel: the same agents as a counterpoint graph -------------------------------


def build_graph() -> cp.CompiledGraph:
    g = cp.Graph()
    g.add("classify", classify)
    g.add("billing", billing_agent, after="classify")
    g.add("shipping", shipping_agent, after="classify")
    g.add("promotions", promotions_agent, after="classify")
    g.add("address", address_agent, after="classify", priority=10)
    g.add("reply", reply_agent, after=["billing", "shipping", "promotions", "address"])
    return g.compile()


def main() -> None:
    app = build_graph()
    print("Customer message:")
    print(f"  {MESSAGE}\n")
    ticket = classify(MESSAGE)
    print(f"Intents detected: {', '.join(ticket['intents'])} "
          f"(time-critical: {', '.join(ticket['urgent']) or 'none'})\n")

    started = time.perf_counter()
    sequential_reply = run_sequentially(MESSAGE)
    sequential = time.perf_counter() - started

    started = time.perf_counter()
    parallel_reply = app.invoke(MESSAGE)
    parallel = time.perf_counter() - started

    assert parallel_reply == sequential_reply, "both runs must produce the same reply"
    print(f"Sequential (plain Python loop): {sequential:5.2f} s")
    print(f"Parallel (counterpoint graph):  {parallel:5.2f} s")
    print(f"Speedup:                        {sequential / parallel:5.2f}x\n")
    print("Consolidated reply:")
    print("\n".join(f"  | {line}" for line in parallel_reply.splitlines()))

    print("\nStreaming the parallel run (events as they happen):")
    for event in app.stream(MESSAGE, stream_mode="events"):
        agent = event.agent or "(run)"
        print(f"  {event.time:6.3f} s  {agent:<11} {event.kind}")
        if event.kind == "finish" and event.agent in ticket["urgent"]:
            # Time-critical findings go to the customer at once, before the full reply.
            print(f"             -> sent to the customer right away: {event.output}")


if __name__ == "__main__":
    main()
