"""Agents of the refund-review example (refund_review.yaml): look up the order, draft a
refund decision, notify the customer. Deterministic and offline.

The drafting agent reports its confidence: a refund it cannot check against the order's
charges (an amount above what was charged twice) gets 0.55, below the spec's review
gate (0.8), so the run pauses until someone in `support-leads` approves or rejects it.

Run it with the command line (from the repository root; see docs/cli.md):

    counterpoint run examples/refund_review.yaml --allow refund_agents \
        --input @examples/inputs/refund_ticket.json --store runs.db
"""

from __future__ import annotations

from typing import Any

import counterpoint as cp

ORDERS: dict[str, dict[str, Any]] = {
    "A-1042": {"customer": "Dana Whitfield", "charges": [89.90, 89.90], "total": 89.90},
    "B-2210": {"customer": "Sam Okafor", "charges": [24.50], "total": 24.50},
}


def lookup_order(ticket: dict[str, Any]) -> dict[str, Any]:
    """The order the ticket is about, with what the customer asks for."""
    order = ORDERS.get(str(ticket.get("order", "")), {"customer": "unknown", "charges": [],
                                                       "total": 0.0})
    return {"ticket": ticket, "order": order}


def draft_refund(found: dict[str, Any]) -> cp.Result:
    """A refund decision, confident only when the order shows the duplicate charge."""
    ticket, order = found["ticket"], found["order"]
    amount = float(ticket.get("amount", 0.0))
    charges = order["charges"]
    duplicate = len(charges) > len(set(charges)) and amount <= order["total"]
    decision = {"order": ticket.get("order"), "refund": amount,
                "reason": "duplicate charge" if duplicate else "unverified claim"}
    return cp.Result(decision, confidence=0.95 if duplicate else 0.55)


def notify(drafted: cp.Result | dict[str, Any]) -> str:
    """The message sent to the customer. A confident draft arrives as the Result it was,
    an approved one as its (possibly replaced) value."""
    decision = cp.value_of(drafted)
    return (f"We refunded {decision['refund']:.2f} for order {decision['order']} "
            f"({decision['reason']}).")
