"""Importable agents for the spec tests (test_specs*.py): a spec names them as
``spec_agents:<name>``. Deterministic and quick."""

from __future__ import annotations

import asyncio
from typing import Any

import counterpoint as cp


def classify(text: str) -> dict[str, Any]:
    words = text.split()
    return {"text": text, "intents": [w for w in words if w in ("billing", "address")] or
            ["other"]}


def billing(ticket: Any) -> str:
    return f"billing({_text(ticket)})"


def address(ticket: Any) -> str:
    return f"address({_text(ticket)})"


async def slow_address(ticket: Any) -> str:
    await asyncio.sleep(0)
    return f"address({_text(ticket)})"


def other(ticket: Any) -> str:
    return f"other({_text(ticket)})"


def reply(findings: Any) -> str:
    if isinstance(findings, dict):
        return " + ".join(f"{k}={findings[k]}" for k in sorted(findings))
    return f"reply({findings})"


def _text(value: Any) -> str:
    return value["text"] if isinstance(value, dict) and "text" in value else str(value)


def upper(text: Any) -> str:
    return str(text).upper()


def exclaim(text: Any) -> str:
    return f"{text}!"


def yes(_: Any) -> str:
    return "yes"


def no(_: Any) -> str:
    return "no"


def sure(_: Any) -> cp.Result:
    return cp.Result("sure", confidence=0.9)


def unsure(_: Any) -> cp.Result:
    return cp.Result("unsure", confidence=0.2)


def big(_: Any) -> str:
    return "big model"


def first_value(outputs: dict[str, Any]) -> Any:
    return outputs[sorted(outputs)[0]]


def count_items(items: list[Any]) -> int:
    return len(items)


def words(text: str) -> list[str]:
    return text.split()


def lower(value: Any) -> Any:
    return str(value).lower()


def plan(task: str) -> list[dict[str, Any]]:
    return [{"id": "a", "task": f"{task}-a", "worker": "search"},
            {"id": "b", "task": f"{task}-b", "worker": "search", "depends_on": ["a"]}]


def search(brief: dict[str, Any]) -> str:
    return f"found {brief['task']}"


def synthesize(result: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in sorted(result["results"].items()))


def draft(state: dict[str, Any]) -> str:
    return f"draft {state['iteration']}"


def evaluate(state: dict[str, Any]) -> cp.Verdict:
    return cp.Verdict(state["iteration"] >= 2, "again")


def manager(state: dict[str, Any]) -> Any:
    return "alice" if state["turn"] == 1 else ("bob" if state["turn"] == 2 else cp.END)


def alice(state: dict[str, Any]) -> str:
    return "hi from alice"


def bob(state: dict[str, Any]) -> str:
    return "hi from bob"


def done(transcript: Any) -> bool:
    return len(transcript) >= 2


def approve_all(request: Any) -> cp.Decision:
    return cp.approve()


def approve_as_lead(request: Any) -> cp.Decision:
    return cp.approve(by="lee", role="support-leads")


def is_value_error(error: BaseException) -> bool:
    return isinstance(error, ValueError)


class Flaky(Exception):
    """An exception class a spec names by import path."""


class Drafter:
    """A runnable-like object (``invoke``), named by the module-level instance below."""

    def invoke(self, text: Any) -> str:
        return f"drafted({text})"


drafter = Drafter()

# Not for specs: the loader refuses private names, and these cannot be named at all.
def _private_agent(text: Any) -> Any:
    return text


lambda_agent = lambda text: text  # noqa: E731


def make_local() -> Any:
    def local(text: Any) -> Any:
        return text

    return local

NOT_AN_AGENT = 42
