"""A LangChain pipeline with a counterpoint review inside it, streaming three reviewers'
tokens at once, each tagged with its agent.

    prompt | cp.parallel(security, performance, style, merge=synthesize) | parser

The reviewers are LangChain chains (a prompt and a chat model), the synthesizer is a
plain function: counterpoint runs the three reviewers in parallel on its native engine,
LangChain composes the graph like any Runnable, and a callback handler passed to the
pipeline sees one run per agent. The chat models are LangChain's fake streaming models
(offline, deterministic) that wait a little per token, as a real model does.

Run from the repository root:  python examples/langchain_review.py
"""

from __future__ import annotations

import itertools
import time
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable

import counterpoint as cp
from counterpoint.integrations.langchain import RunnableGraph

DIFF = "+ query = f\"SELECT * FROM users WHERE name = '{name}'\"\n+ for row in rows: time.sleep(1)"
TOKEN_DELAY = 0.02  # seconds per token, like a model generating text

FINDINGS = {
    "security": "SQL injection: the query interpolates a user-supplied name.",
    "performance": "A one-second sleep per row makes the loop linear in wall time.",
    "style": "Prefer a parameterised query and a named constant for the delay.",
}


class SlowFakeChatModel(GenericFakeChatModel):
    """LangChain's fake streaming chat model, taking a while per token."""

    def _stream(self, *args: Any, **kwargs: Any) -> Any:
        for chunk in super()._stream(*args, **kwargs):
            time.sleep(TOKEN_DELAY)
            yield chunk


def reviewer(aspect: str) -> Runnable[Any, BaseMessage]:
    """A LangChain reviewer chain: a prompt and a chat model."""
    prompt = ChatPromptTemplate.from_template(f"Review this diff for {aspect}:\n{{diff}}")
    model = SlowFakeChatModel(messages=itertools.cycle([AIMessage(content=FINDINGS[aspect])]))
    return prompt | model


def synthesize(findings: dict[str, BaseMessage]) -> str:
    """Merges the reviewers' findings into one comment, security first."""
    order = ["security", "performance", "style"]
    return "\n".join(f"- {name}: {findings[name].content}" for name in order)


class AgentRuns(BaseCallbackHandler):
    """Counts the chain runs the graph reports, by name."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        name = kwargs.get("name")
        if isinstance(name, str) and name in ("review", *FINDINGS, "merge"):
            self.names.append(name)


def main() -> None:
    review = cp.parallel(
        security=reviewer("security"),
        performance=reviewer("performance"),
        style=reviewer("style"),
        merge=synthesize,
    )
    # With langchain-core installed every compiled graph is a RunnableGraph; the check
    # tells a type checker so too.
    assert isinstance(review, RunnableGraph)
    pipeline = (
        ChatPromptTemplate.from_template("{diff}")
        | (lambda prompt: {"diff": prompt.to_string()})
        | review.with_config(run_name="review")
        | StrOutputParser()
    )

    print("The reviewers' tokens as they arrive, tagged by agent (first 12):\n")
    started = time.perf_counter()
    lines: dict[str, str] = {}
    for count, (message, meta) in enumerate(review.stream({"diff": DIFF},
                                                          stream_mode="messages")):
        agent = meta["agent"]
        lines[agent] = lines.get(agent, "") + str(message.content)
        if count < 12:
            print(f"  {time.perf_counter() - started:5.2f} s  {agent:>11}: {message.content!r}")
    streamed = time.perf_counter() - started
    print("\nWhat each agent streamed:\n")
    for agent, text in sorted(lines.items()):
        print(f"  {agent:>11}: {text}")

    tokens = sum(len(text.split()) * 2 for text in FINDINGS.values())
    print(f"\nThree reviewers streamed at once in {streamed:.2f} s; one after another "
          f"their ~{tokens} tokens would take ~{tokens * TOKEN_DELAY:.2f} s.\n")

    handler = AgentRuns()
    comment = pipeline.invoke({"diff": DIFF}, config={"callbacks": [handler],
                                                      "tags": ["pr-42"]})
    print("The same review inside an LCEL pipeline (prompt | review | parser):\n")
    print(comment)
    print(f"\nCallback runs seen for the graph and its agents: {sorted(set(handler.names))}")


if __name__ == "__main__":
    main()
