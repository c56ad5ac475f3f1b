"""Tokens stream out of agents: ``stream_mode="messages"`` tags each chat model chunk
with its agent's path, and ``astream_events(version="v2")`` nests agent and model events
the way LangGraph does for the same graph."""

from __future__ import annotations

import asyncio
import itertools
import operator
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langchain_core")

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

import counterpoint as cp

WORDS = {"security": "no injection found", "perf": "fast enough", "style": "tidy code"}


def _model(text: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=itertools.cycle([AIMessage(content=text)]))


def _agents():
    prompt = ChatPromptTemplate.from_template("Review {diff}")
    return {
        "security": prompt | _model(WORDS["security"]),            # a chain (async path)
        "perf": RunnableLambda(lambda d: f"Perf {d['diff']}") | _model(WORDS["perf"]),
        "style": lambda diff: _model(WORDS["style"]).invoke(str(diff)),  # a plain function
    }


def _review():
    return cp.parallel(**_agents(), merge=lambda outputs: sorted(outputs))


def _joined(chunks):
    text: dict[str, str] = {}
    for message, meta in chunks:
        assert isinstance(message, AIMessageChunk)
        text[meta["agent"]] = text.get(meta["agent"], "") + message.content
    return text


def test_messages_mode_tags_each_agents_tokens():
    chunks = list(_review().stream({"diff": "d"}, stream_mode="messages"))
    assert _joined(chunks) == WORDS
    # Tokens come one by one (the models stream even when agents call invoke()).
    assert len(chunks) > len(WORDS)
    meta = chunks[0][1]
    assert {"agent", "run_id", "langchain_run_id", "tags"} <= set(meta)
    assert isinstance(meta["run_id"], int)  # the counterpoint run's id


def test_messages_mode_async_and_nested():
    outer = cp.Graph().add("prep", lambda x: x).add("review", _review(), after="prep").compile()

    async def collect():
        return [chunk async for chunk in outer.astream({"diff": "d"}, stream_mode="messages")]

    text = _joined(asyncio.run(collect()))
    assert text == {f"review/{name}": words for name, words in WORDS.items()}


def test_several_modes_at_once():
    chunks = list(_review().stream({"diff": "d"}, stream_mode=["updates", "messages", "values"]))
    modes = [mode for mode, _ in chunks]
    assert set(modes) == {"updates", "messages", "values"}
    assert modes[-1] == "values"
    assert chunks[-1][1] == ["perf", "security", "style"]
    updates = [chunk for mode, chunk in chunks if mode == "updates"]
    assert {name for update in updates for name in update} == {"security", "perf", "style",
                                                                "merge"}
    # An agent's tokens all come before its update.
    for name in WORDS:
        last_token = max(i for i, (mode, c) in enumerate(chunks)
                         if mode == "messages" and c[1]["agent"] == name)
        update_at = next(i for i, (mode, c) in enumerate(chunks)
                         if mode == "updates" and name in c)
        assert last_token < update_at


def test_messages_mode_without_models_yields_nothing():
    app = cp.Graph().add("a", lambda x: x + 1).compile()
    assert list(app.stream(1, stream_mode="messages")) == []


# ---- astream_events against LangGraph ---------------------------------------------------


def _counterpoint_events():
    async def collect():
        return [event async for event in _review().astream_events({"diff": "d"},
                                                                  version="v2")]
    return asyncio.run(collect())


def _langgraph_events():
    langgraph = pytest.importorskip("langgraph.graph")
    agents = _agents()

    class State(TypedDict, total=False):
        diff: str
        outputs: Annotated[list[Any], operator.add]

    def node(name):
        agent = agents[name]

        async def call(state: State) -> dict[str, Any]:
            if hasattr(agent, "ainvoke"):
                return {"outputs": [await agent.ainvoke({"diff": state["diff"]})]}
            return {"outputs": [agent({"diff": state["diff"]})]}
        return call

    graph = langgraph.StateGraph(State)
    for name in WORDS:
        graph.add_node(name, node(name))
        graph.add_edge(langgraph.START, name)
    graph.add_node("merge", lambda state: {"outputs": []})
    graph.add_edge(list(WORDS), "merge")
    graph.add_edge("merge", langgraph.END)
    app = graph.compile()

    async def collect():
        return [event async for event in app.astream_events({"diff": "d"}, version="v2")]
    return asyncio.run(collect())


def _shape(events, agent_names):
    """What both engines should agree on: the root run first and last, a start and an
    end per agent directly under the root, each agent's model tokens nested under that
    agent's run, and the text each agent streamed."""
    root = events[0]
    assert root["event"] == "on_chain_start" and root["parent_ids"] == []
    assert events[-1]["event"] == "on_chain_end" and events[-1]["run_id"] == root["run_id"]
    agent_runs = {}
    for event in events:
        if event["name"] in agent_names and event["event"] == "on_chain_start" \
                and event["parent_ids"] == [root["run_id"]]:
            agent_runs[event["run_id"]] = event["name"]
    ends = {e["name"] for e in events
            if e["event"] == "on_chain_end" and e["run_id"] in agent_runs}
    text: dict[str, str] = {}
    for event in events:
        if event["event"] == "on_chat_model_stream":
            owners = [agent_runs[p] for p in event["parent_ids"] if p in agent_runs]
            assert len(owners) == 1, event["parent_ids"]
            assert event["parent_ids"][0] == root["run_id"]
            text[owners[0]] = text.get(owners[0], "") + event["data"]["chunk"].content
    return {"agents": sorted(agent_runs.values()), "ended": sorted(ends), "text": text}


def test_astream_events_match_langgraph():
    names = set(WORDS) | {"merge"}
    ours = _shape(_counterpoint_events(), names)
    theirs = _shape(_langgraph_events(), names)
    assert ours == theirs
    assert ours["text"] == WORDS
    assert ours["agents"] == sorted(names)


def test_astream_events_token_events_carry_agent_metadata():
    events = _counterpoint_events()
    streams = [e for e in events if e["event"] == "on_chat_model_stream"]
    assert streams
    starts = {e["run_id"]: e for e in events if e["event"] == "on_chain_start"}
    for event in streams:
        agent_run = next(starts[p] for p in event["parent_ids"] if p in starts
                         and starts[p]["name"] in WORDS)
        assert agent_run["metadata"]["counterpoint_agent"] == agent_run["name"]


def test_custom_mode_from_sync_and_async_agents_at_any_depth():
    def sync_agent(x):
        cp.emit({"progress": "sync", "x": x})
        return x + 1

    async def async_agent(x):
        cp.emit("async says hi")
        await asyncio.sleep(0)
        return x * 2

    inner = cp.Graph().add("deep", sync_agent).compile()
    app = (cp.Graph().add("s", sync_agent).add("a", async_agent, after="s")
           .add("nested", inner, after="s").compile())
    chunks = list(app.stream(1, stream_mode="custom"))
    assert sorted(map(str, chunks)) == sorted(map(str, [
        {"progress": "sync", "x": 1}, "async says hi", {"progress": "sync", "x": 2}]))
    # Outside a streamed run, emit is a no-op.
    assert app.invoke(1) == {"a": 4, "nested": 3}
    assert cp.emit("nobody listens") is False
