"""Objects with invoke()/ainvoke() as agents: the async path is used when it is real,
the sync one otherwise, tested against langchain-core's own runnables."""

from __future__ import annotations

import asyncio
import threading

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

import counterpoint as cp


async def _shout(text: str) -> str:
    await asyncio.sleep(0)
    return text.upper()


def test_async_runnable_lambda_runs_under_invoke_and_ainvoke() -> None:
    app = cp.Graph().add("shout", RunnableLambda(_shout)).compile()
    assert app.uses_event_loop
    assert app.invoke("hi") == "HI"
    assert asyncio.run(app.ainvoke("hi")) == "HI"
    assert app.batch(["a", "b"]) == ["A", "B"]


def test_sync_runnable_lambda_takes_the_sync_path_on_the_engine_pool() -> None:
    seen: list[str] = []

    def where(x: int) -> int:
        seen.append(threading.current_thread().name)
        return x + 1

    app = cp.Graph().add("step", RunnableLambda(where)).compile()
    assert not app.uses_event_loop
    assert app.invoke(1) == 2
    assert asyncio.run(app.ainvoke(2)) == 3
    assert not any("event-loop" in name for name in seen)


def test_object_with_its_own_ainvoke_is_awaited() -> None:
    class Both:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def invoke(self, x: int) -> int:
            self.calls.append("invoke")
            return x

        async def ainvoke(self, x: int) -> int:
            self.calls.append("ainvoke")
            await asyncio.sleep(0)
            return x

    agent = Both()
    app = cp.Graph().add("both", agent).compile()
    assert app.invoke(3) == 3
    assert asyncio.run(app.ainvoke(4)) == 4
    assert agent.calls == ["ainvoke", "ainvoke"]


def test_langchain_chain_with_fake_chat_model_as_an_agent() -> None:
    chain = (ChatPromptTemplate.from_template("Say {word}")
             | FakeListChatModel(responses=["yes", "yes", "yes"]) | StrOutputParser())
    app = (cp.Graph()
           .add("ask", chain)
           .add("shout", RunnableLambda(_shout), after="ask")
           .compile())
    assert app.invoke({"word": "yes"}) == "YES"
    assert asyncio.run(app.ainvoke({"word": "yes"})) == "YES"
