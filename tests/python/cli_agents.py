"""Importable agents for the command-line tests (test_cli*.py): specs name them as
``cli_agents:<name>``. Deterministic and quick."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import counterpoint as cp


def classify(ticket: Any) -> dict[str, Any]:
    text = ticket["text"] if isinstance(ticket, dict) else str(ticket)
    return {"text": text, "intent": "billing" if "charged" in text else "other"}


def answer(found: dict[str, Any]) -> str:
    return f"{found['intent']}: {found['text']}"


def shout(text: Any) -> str:
    return str(text).upper()


def exclaim(text: Any) -> str:
    return f"{text}!"


def fail(_: Any) -> str:
    raise RuntimeError("the CRM is down")


def slow(value: Any) -> Any:
    time.sleep(2.0)
    return value


def draft(found: dict[str, Any]) -> cp.Result:
    """Low confidence for anything but billing: the review gate (below 0.8) pauses it."""
    confident = found["intent"] == "billing"
    return cp.Result({"reply": f"re: {found['text']}"}, confidence=0.95 if confident else 0.4)


def send(decision: Any) -> str:
    # A confident draft arrives as the Result it was; an approved one as its value.
    return f"sent {cp.value_of(decision)['reply']}"


def flaky(value: Any) -> Any:
    """Fails while the file $CLI_FLAKY_MARKER exists (a resumed run then succeeds)."""
    marker = os.environ.get("CLI_FLAKY_MARKER", "")
    if marker and Path(marker).exists():
        raise RuntimeError("flaky service unavailable")
    return value


def costly(value: Any) -> cp.Result:
    return cp.Result(value, usage={"tokens": 500.0})


def confirm(found: dict[str, Any]) -> str:
    """Asks a person which tone to use (cp.interrupt): the run pauses until answered."""
    tone = cp.interrupt({"ask": "which tone?", "text": found["text"]})
    return f"{tone} reply to {found['text']}"
