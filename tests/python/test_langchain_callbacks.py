"""LangChain callbacks reach every agent at any depth: one chain run per agent call
(named by its path), nested under the graph's run and under the agent that delegated to
a nested graph; retries visible; runnables inside agents nest under them; concurrent runs
never see each other's events."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

import counterpoint as cp


class Recorder(BaseCallbackHandler):
    """Records every chain and chat model run: id, parent, name, tags, outcome."""

    def __init__(self):
        self.lock = threading.Lock()
        self.runs: dict[UUID, dict] = {}

    def _start(self, kind, name, run_id, parent_run_id, tags, metadata, inputs):
        with self.lock:
            self.runs[run_id] = {"kind": kind, "name": name, "parent": parent_run_id,
                                 "tags": list(tags or []), "metadata": dict(metadata or {}),
                                 "inputs": inputs, "end": None}

    def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, tags=None,
                       metadata=None, **kwargs):
        self._start("chain", kwargs.get("name"), run_id, parent_run_id, tags, metadata, inputs)

    def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None,
                            tags=None, metadata=None, **kwargs):
        self._start("llm", kwargs.get("name") or "chat", run_id, parent_run_id, tags,
                    metadata, messages)

    def on_chain_end(self, outputs, *, run_id, **kwargs):
        with self.lock:
            self.runs[run_id]["end"] = ("ok", outputs)

    def on_chain_error(self, error, *, run_id, **kwargs):
        with self.lock:
            self.runs[run_id]["end"] = ("error", error)

    def on_llm_end(self, response, *, run_id, **kwargs):
        with self.lock:
            self.runs[run_id]["end"] = ("ok", response)

    def by_name(self, name):
        return [(run_id, run) for run_id, run in self.runs.items() if run["name"] == name]

    def one(self, name):
        found = self.by_name(name)
        assert len(found) == 1, (name, [r["name"] for r in self.runs.values()])
        return found[0]

    def parent_name(self, name):
        _, run = self.one(name)
        return self.runs[run["parent"]]["name"] if run["parent"] in self.runs else None


def _nested_app(calls):
    """A graph: draft (retried once), a nested parallel review, a fan-out, a chat model."""

    def draft(topic):
        calls.append("draft")
        if calls.count("draft") == 1:
            raise ConnectionError("flaky")
        return f"draft about {topic}"

    model = GenericFakeChatModel(messages=iter([AIMessage(content="polished words")]))
    review = cp.parallel(
        security=lambda text: "secure",
        style=RunnableLambda(lambda text: "stylish"),
        merge="all",
    )
    sections = cp.fan_out(lambda item: item.upper(), over=lambda text: ["a", "b"])
    return (
        cp.Graph()
        .add("draft", draft, retry=cp.Retry(max_attempts=2, initial_backoff=0.001))
        .add("review", review, after="draft")
        .add("sections", sections, after="draft")
        .add("polish", RunnableLambda(lambda outputs: str(outputs["review"])) | model,
             after=["review", "sections"])
        .compile()
    )


def test_nested_run_tree():
    calls = []
    app = _nested_app(calls)
    recorder = Recorder()
    out = app.invoke("cats", {"callbacks": [recorder], "tags": ["pr-42"], "run_name": "doc"})
    assert out.content == "polished words"

    root_id, root = recorder.one("doc")
    assert root["parent"] is None and root["end"][0] == "ok"
    # Each attempt of the retried agent is its own run; the first failed.
    drafts = recorder.by_name("draft")
    assert sorted(run["end"][0] for _, run in drafts) == ["error", "ok"]
    assert sorted(run["metadata"]["counterpoint_attempt"] for _, run in drafts) == [1, 2]
    assert all(run["parent"] == root_id for _, run in drafts)
    # Nested pattern agents nest under the agent that runs the pattern.
    assert recorder.parent_name("review") == "doc"
    assert recorder.parent_name("review/security") == "review"
    assert recorder.parent_name("review/style") == "review"
    # The Runnable agent's own run nests under its agent run.
    style_id, _ = recorder.one("review/style")
    inner = [run for run in recorder.runs.values() if run["parent"] == style_id]
    assert [run["kind"] for run in inner] == ["chain"]
    # The chat model inside the polish agent's chain nests under it, two levels down.
    (_, llm), = [(i, r) for i, r in recorder.runs.items() if r["kind"] == "llm"]
    chain_id = llm["parent"]
    assert recorder.runs[recorder.runs[chain_id]["parent"]]["name"] == "polish"
    # Tags reach every run in the tree.
    assert all("pr-42" in run["tags"] for run in recorder.runs.values())
    # Every run that started ended.
    assert all(run["end"] is not None for run in recorder.runs.values())
    # The fan-out's planner delegates the items; each item's worker nests under it.
    assert recorder.parent_name("sections/fan_out") == "sections"
    assert recorder.parent_name("sections/fan_out/worker[0]") == "sections/fan_out"
    assert recorder.parent_name("sections/fan_out/worker[1]") == "sections/fan_out"
    assert recorder.one("sections/fan_out/worker[1]")[1]["end"] == ("ok", "B")


def test_failed_run_reports_errors_up_the_tree():
    recorder = Recorder()
    app = cp.Graph().add("ok", lambda x: x).add("boom", lambda x: 1 / 0, after="ok").compile()
    with pytest.raises(cp.AgentError):
        app.invoke(1, {"callbacks": [recorder], "run_name": "failing"})
    assert recorder.one("boom")[1]["end"][0] == "error"
    assert isinstance(recorder.one("boom")[1]["end"][1], ZeroDivisionError)
    assert recorder.one("failing")[1]["end"][0] == "error"
    assert recorder.one("ok")[1]["end"] == ("ok", 1)


def test_async_agents_and_ainvoke_nest_too():
    recorder = Recorder()

    async def fetch(x):
        await asyncio.sleep(0)
        return await RunnableLambda(lambda v: v + 1).ainvoke(x)

    app = cp.Graph().add("fetch", fetch).add("double", lambda x: x * 2, after="fetch").compile()
    assert asyncio.run(app.ainvoke(1, {"callbacks": [recorder], "run_name": "root"})) == 4
    fetch_id, _ = recorder.one("fetch")
    assert recorder.parent_name("fetch") == "root"
    nested = [run for run in recorder.runs.values() if run["parent"] == fetch_id]
    assert len(nested) == 1  # the RunnableLambda awaited inside the coroutine agent


def test_plain_function_agents_see_the_child_config():
    seen = {}

    def agent(x):
        from langchain_core.runnables.config import ensure_config
        config = ensure_config()
        seen["tags"] = config.get("tags")
        seen["configurable"] = config.get("configurable")
        return x

    app = cp.Graph().add("agent", agent).compile()
    app.invoke(1, {"tags": ["t1"], "configurable": {"model": "small"}})
    assert "t1" in seen["tags"]
    assert seen["configurable"] == {"model": "small"}


def test_no_cross_talk_between_concurrent_runs():
    def slow(x):
        return RunnableLambda(lambda v: v).invoke(x)

    app = (cp.Graph().add("a", slow, dispatch="thread")
           .add("b", slow, after="a", dispatch="thread")
           .add("nested", cp.sequential(slow, slow), after="a").compile())

    def one(index):
        recorder = Recorder()
        app.invoke(index, {"callbacks": [recorder], "tags": [f"run-{index}"],
                           "run_name": f"run-{index}"})
        return index, recorder

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(50)))
    for index, recorder in results:
        root_id, _ = recorder.one(f"run-{index}")
        tags = {tag for run in recorder.runs.values() for tag in run["tags"]
                if tag.startswith("run-")}
        assert tags == {f"run-{index}"}
        # Every run of this tree descends from this root.
        for run_id in recorder.runs:
            node = run_id
            while recorder.runs[node]["parent"] is not None:
                node = recorder.runs[node]["parent"]
            assert node == root_id
        # The root; agents a, b, nested and its two steps; the lambda each step calls.
        assert len(recorder.runs) == 1 + 3 + 2 + 4


def test_batch_gives_each_input_its_own_tree():
    app = cp.Graph().add("a", lambda x: x + 1).compile()
    recorders = [Recorder(), Recorder(), Recorder()]
    out = app.batch([1, 2, 3], [{"callbacks": [r], "run_name": "one"} for r in recorders])
    assert out == [2, 3, 4]
    for value, recorder in zip([1, 2, 3], recorders):
        _, root = recorder.one("one")
        assert root["end"] == ("ok", value + 1)
        assert recorder.parent_name("a") == "one"


def test_stream_reports_the_run_too():
    recorder = Recorder()
    app = cp.Graph().add("a", lambda x: x + 1).compile()
    chunks = list(app.stream(1, {"callbacks": [recorder], "run_name": "s"},
                             stream_mode=["updates", "values"]))
    assert chunks == [("updates", {"a": 2}), ("values", 2)]
    assert recorder.parent_name("a") == "s"


def test_a_fallback_call_is_a_run_of_its_own():
    recorder = Recorder()
    app = cp.Graph().add("a", lambda x: 1 / 0, fallback=lambda x: "fallback").compile()
    assert app.invoke(1, {"callbacks": [recorder], "run_name": "r"}) == "fallback"
    calls = sorted((run["metadata"]["counterpoint_attempt"], run["end"][0])
                   for _, run in recorder.by_name("a"))
    assert calls == [(1, "error"), (2, "ok")]
