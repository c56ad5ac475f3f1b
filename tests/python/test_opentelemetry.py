"""cp.instrument(): OpenTelemetry spans of every run, per the GenAI semantic conventions,
checked with the real opentelemetry-sdk (in-memory exporter) and one OTLP/HTTP export to
a receiver on 127.0.0.1: the span tree (nested patterns, retries, fan-outs), the
attributes, the agent's span current inside sync and coroutine agents, concurrent runs
apart, batches, every entry point, and nothing once uninstrumented."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import counterpoint as cp


@pytest.fixture
def provider():
    provider = TracerProvider()
    provider.exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(provider.exporter))
    cp.instrument(provider)
    yield provider
    cp.uninstrument()
    provider.shutdown()


def spans(provider) -> list[ReadableSpan]:
    return sorted(provider.exporter.get_finished_spans(), key=lambda s: s.start_time)


def named(provider, name) -> list[ReadableSpan]:
    return [s for s in spans(provider) if s.name == name]


def parent_name(provider, span) -> str | None:
    if span.parent is None:
        return None
    by_id = {s.context.span_id: s.name for s in spans(provider)}
    return by_id.get(span.parent.span_id, "<outside>")


def tree(provider) -> list[tuple[str, str | None]]:
    """(span, parent span) names, in start order."""
    return [(s.name, parent_name(provider, s)) for s in spans(provider)]


class Flaky:
    """Fails its first call, then returns its input."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("transient")
        return x


# ---- the span tree ----------------------------------------------------------------------


def test_a_run_is_a_workflow_span_with_a_span_per_agent_call(provider):
    review = cp.parallel({"security": lambda x: "ok", "style": lambda x: "fine"})
    g = cp.Graph()
    g.add("fetch", Flaky(), retry=cp.Retry(max_attempts=2, initial_backoff=0.01))
    g.add("review", review, after="fetch")
    g.add("fan", cp.fan_out(lambda item: item * 2, over=lambda x: [1, 2, 3]), after="fetch")
    g.add("report", lambda both: both, after=["review", "fan"])
    g.compile().invoke(1)

    shape = tree(provider)
    assert shape[0] == ("invoke_workflow graph", None)
    assert sorted(shape[1:]) == sorted([
        ("invoke_agent fetch", "invoke_workflow graph"),
        ("invoke_agent fetch", "invoke_workflow graph"),
        ("invoke_agent review", "invoke_workflow graph"),
        ("invoke_agent review/security", "invoke_agent review"),
        ("invoke_agent review/style", "invoke_agent review"),
        ("invoke_agent review/merge", "invoke_agent review"),
        ("invoke_agent fan", "invoke_workflow graph"),
        ("invoke_agent fan/fan_out", "invoke_agent fan"),
        ("invoke_agent fan/fan_out/item[0]", "invoke_agent fan/fan_out"),
        ("invoke_agent fan/fan_out/item[1]", "invoke_agent fan/fan_out"),
        ("invoke_agent fan/fan_out/item[2]", "invoke_agent fan/fan_out"),
        ("invoke_agent fan/fan_out/worker[0]", "invoke_agent fan/fan_out"),
        ("invoke_agent fan/fan_out/worker[1]", "invoke_agent fan/fan_out"),
        ("invoke_agent fan/fan_out/worker[2]", "invoke_agent fan/fan_out"),
        ("invoke_agent fan/fan_out/collect", "invoke_agent fan/fan_out"),
        ("invoke_agent report", "invoke_workflow graph"),
    ])
    every = spans(provider)
    assert {s.kind for s in every} == {SpanKind.INTERNAL}
    assert len({s.context.trace_id for s in every}) == 1
    # Each retry attempt is a span of its own, the failed one marked as such.
    first, second = named(provider, "invoke_agent fetch")
    assert (first.attributes["counterpoint.attempt"], second.attributes["counterpoint.attempt"]) \
        == (1, 2)
    assert first.status.status_code is StatusCode.ERROR
    assert first.attributes["error.type"] == "ConnectionError"
    assert second.status.status_code is StatusCode.UNSET
    assert first.end_time <= second.start_time
    # Children inside their parents, agents inside the run.
    workflow = every[0]
    for span in every[1:]:
        assert workflow.start_time <= span.start_time <= span.end_time <= workflow.end_time


def test_a_loops_iterations_nest_under_the_loop_agent(provider):
    drafting = cp.loop(lambda x: "draft", evaluator=lambda draft: False, max_iterations=3)
    app = cp.Graph().add("write", drafting).compile()
    assert app.invoke("topic").iterations == 3
    write, *steps = named(provider, "invoke_agent write/loop")
    assert write.attributes["counterpoint.attempt"] == 1
    # Each next iteration is started by a `then` step of the same agent: a continuation
    # of its call, not an attempt.
    assert len(steps) == 3
    for step in steps:
        assert step.attributes["counterpoint.continuation"] is True
        assert "counterpoint.attempt" not in step.attributes
        assert parent_name(provider, step) == "invoke_agent write/loop"
    workers = named(provider, "invoke_agent write/loop/worker")
    assert len(workers) == 3
    assert {parent_name(provider, s) for s in workers} == {"invoke_agent write/loop"}
    assert {s.attributes["counterpoint.attempt"] for s in workers} == {1}


def test_attributes_follow_the_genai_conventions(provider):
    app = cp.Graph().add("classify", lambda x: "billing").add(
        "answer", lambda x: x, after="classify").compile()
    app.name = "triage"
    result = app.run("charged twice")

    workflow = named(provider, "invoke_workflow triage")[0]
    assert workflow.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert workflow.attributes["gen_ai.workflow.name"] == "triage"
    assert workflow.attributes["gen_ai.conversation.id"] == str(result.run_id)
    assert workflow.attributes["counterpoint.run.id"] == result.run_id
    assert workflow.attributes["counterpoint.run.status"] == "succeeded"
    agent = named(provider, "invoke_agent classify")[0]
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.agent.name"] == "classify"
    assert agent.attributes["gen_ai.conversation.id"] == str(result.run_id)
    assert agent.attributes["counterpoint.agent.status"] == "succeeded"
    assert agent.attributes["counterpoint.attempt"] == 1
    assert agent.instrumentation_scope.name == "counterpoint"


def test_spans_are_timed_by_the_runs_clock(provider):
    app = cp.Graph().add("nap", lambda x: time.sleep(0.05)).compile()
    before = time.time_ns()
    result = app.run(None)
    after = time.time_ns()
    workflow = named(provider, "invoke_workflow graph")[0]
    nap = named(provider, "invoke_agent nap")[0]
    assert before <= workflow.start_time <= nap.start_time
    assert nap.end_time <= workflow.end_time <= after
    # The workflow lasts at least what the engine says the run lasted (it opens just
    # before the engine starts the run), the agent what its call took, by the engine.
    assert workflow.end_time - workflow.start_time >= round(result.elapsed * 1e9)
    timeline_end = result.timeline_data().lane("nap").end
    assert nap.end_time - workflow.start_time >= round(timeline_end * 1e9)
    assert nap.end_time - nap.start_time >= 0.05e9


def test_waits_on_limits_and_retries_are_the_engines(provider):
    api = cp.Limit("api", max_concurrent=1)

    def hold(x):
        time.sleep(0.05)
        return x

    g = cp.Graph()
    g.add("fetch", Flaky(), retry=cp.Retry(max_attempts=2, initial_backoff=0.05))
    g.add("one", hold, limits=api, after="fetch")
    g.add("two", hold, limits=api, after="fetch")
    g.add("broken", lambda x: 1 / 0, fallback=lambda x: "fallback", after="fetch")
    g.compile().invoke(1)

    first, second = named(provider, "invoke_agent fetch")
    assert (first.attributes["counterpoint.attempt"], second.attributes["counterpoint.attempt"]) \
        == (1, 2)
    assert "counterpoint.retry.delay" not in first.attributes
    delay = second.attributes["counterpoint.retry.delay"]
    assert delay > 0
    # The backoff lies between the first attempt's end and the second's start (50 µs:
    # reading the run's start off the engine's clock).
    assert second.start_time - first.end_time >= delay * 1e9 - 50e3
    # One of the two agents sharing the limit waited for the other's slot: it started
    # once the other had ended.
    (one,), (two,) = named(provider, "invoke_agent one"), named(provider, "invoke_agent two")
    holder, waiter = (one, two) if "counterpoint.queued.api" in two.attributes else (two, one)
    assert "counterpoint.queued.api" not in holder.attributes
    assert waiter.attributes["counterpoint.queued.api"] > 0
    assert waiter.start_time >= holder.end_time
    called, fallback = named(provider, "invoke_agent broken")
    assert called.attributes["error.type"] == "ZeroDivisionError"
    assert fallback.attributes["counterpoint.fallback"] is True
    assert "counterpoint.attempt" not in fallback.attributes
    assert fallback.attributes["counterpoint.agent.status"] == "succeeded"


def test_an_in_process_review_is_reported(provider):
    review = cp.Review(below=0.5, reviewer=lambda request: cp.reject("not good enough"))
    app = cp.Graph().add("draft", lambda x: cp.Result(x, confidence=0.3), review=review) \
        .compile()
    with pytest.raises(cp.AgentError):
        app.invoke("text")
    draft = named(provider, "invoke_agent draft")[0]
    # The call itself succeeded; the reviewer rejected its output.
    assert draft.attributes["counterpoint.agent.status"] == "succeeded"
    assert draft.attributes["counterpoint.review.status"] == "rejected"
    assert draft.attributes["counterpoint.confidence"] == 0.3


def test_usage_tokens_are_reported_under_the_conventions_names(provider):
    def model(x):
        return cp.Result("answer", usage={"prompt_tokens": 120, "completion_tokens": 30,
                                          "cost": 0.002})

    def other(x):
        return cp.Result(x, usage={"input_tokens": 5, "output_tokens": 7}, confidence=0.9)

    cp.Graph().add("model", model).add("other", other, after="model").compile().invoke(1)
    span = named(provider, "invoke_agent model")[0]
    assert span.attributes["gen_ai.usage.input_tokens"] == 120
    assert span.attributes["gen_ai.usage.output_tokens"] == 30
    assert span.attributes["counterpoint.usage.cost"] == 0.002
    span = named(provider, "invoke_agent other")[0]
    assert span.attributes["gen_ai.usage.input_tokens"] == 5
    assert span.attributes["gen_ai.usage.output_tokens"] == 7
    assert span.attributes["counterpoint.confidence"] == 0.9
    workflow = named(provider, "invoke_workflow graph")[0]
    assert workflow.attributes["gen_ai.usage.input_tokens"] == 125
    assert workflow.attributes["gen_ai.usage.output_tokens"] == 37


def test_a_failure_sets_error_type_and_status(provider):
    def lookup(x):
        return {}["missing"]

    app = cp.Graph().add("lookup", lookup).compile()
    with pytest.raises(cp.AgentError):
        app.invoke(1)
    agent = named(provider, "invoke_agent lookup")[0]
    assert agent.status.status_code is StatusCode.ERROR
    assert agent.attributes["error.type"] == "KeyError"
    assert agent.attributes["counterpoint.agent.status"] == "failed"
    workflow = named(provider, "invoke_workflow graph")[0]
    assert workflow.status.status_code is StatusCode.ERROR
    assert workflow.attributes["error.type"] == "AgentError"
    assert workflow.attributes["counterpoint.run.status"] == "failed"


def test_a_timeout_is_the_engines(provider):
    release = threading.Event()
    app = cp.Graph().add("slow", lambda x: release.wait(10), timeout=0.05).compile()
    try:
        result = app.run(None)
        assert result.status == "failed"
        # Closed when the engine gave up on it, while the call still runs.
        (span,) = named(provider, "invoke_agent slow")
        assert span.attributes["counterpoint.agent.status"] == "timed_out"
        assert span.attributes["error.type"] == "AgentTimeout"
    finally:
        release.set()


def test_skipped_agents_are_events_of_the_workflow(provider):
    g = cp.Graph(on_error="continue")
    g.add("broken", lambda x: 1 / 0)
    g.add("after", lambda x: x, after="broken")
    g.compile().run(1)
    assert not named(provider, "invoke_agent after")  # it made no call
    workflow = named(provider, "invoke_workflow graph")[0]
    (event,) = [e for e in workflow.events if e.name == "counterpoint.agent.skipped"]
    assert event.attributes["gen_ai.agent.name"] == "after"
    assert event.attributes["counterpoint.skip.reason"]
    assert workflow.start_time <= event.timestamp <= workflow.end_time


def test_a_refusal_by_the_circuit_breaker_is_a_failed_span(provider):
    breaker = cp.CircuitBreaker(failures=1, window=60, reset_after=60)
    app = cp.Graph().add("flaky", lambda x: 1 / 0, breaker=breaker).compile()
    for _ in range(2):
        with pytest.raises(cp.AgentError):
            app.invoke(1)
    called, refused = named(provider, "invoke_agent flaky")
    assert called.attributes["error.type"] == "ZeroDivisionError"
    assert refused.attributes["error.type"] == "CircuitOpenError"
    assert refused.attributes["counterpoint.breaker.state"] == "open"
    assert refused.status.status_code is StatusCode.ERROR
    assert refused.start_time == refused.end_time


def test_a_review_is_reported_with_its_confidence(provider, tmp_path):
    g = cp.Graph().add("draft", lambda x: cp.Result(x, confidence=0.4),
                       review=cp.Review(below=0.5))
    app = g.compile(store=tmp_path / "runs.db")
    result = app.run("text")
    assert result.status == "needs_review"
    draft = named(provider, "invoke_agent draft")[0]
    assert draft.attributes["counterpoint.review.status"] == "needs_review"
    assert draft.attributes["counterpoint.confidence"] == 0.4
    assert draft.attributes["gen_ai.conversation.id"] == result.run_key
    workflow = named(provider, "invoke_workflow graph")[0]
    assert workflow.attributes["counterpoint.run.status"] == "needs_review"
    assert workflow.status.status_code is StatusCode.UNSET

    provider.exporter.clear()
    assert cp.value_of(app.resume(result.run_key, cp.approve())) == "text"
    workflow = named(provider, "invoke_workflow graph")[0]
    assert workflow.attributes["gen_ai.conversation.id"] == result.run_key
    (restored,) = [e for e in workflow.events if e.name == "counterpoint.agent.restored"]
    assert restored.attributes["gen_ai.agent.name"] == "draft"
    assert restored.attributes["counterpoint.restored"] is True
    assert not named(provider, "invoke_agent draft")  # decided, not run again


# ---- the agent's span is current inside the agent ---------------------------------------


def test_spans_made_inside_a_sync_agent_nest_under_its_span(provider):
    client = provider.get_tracer("llm-client")

    def call_model(x):
        with client.start_as_current_span("chat gpt-x"):
            time.sleep(0.001)
        return x

    g = cp.Graph().add("model", call_model, dispatch="thread")
    g.add("nested", cp.sequential(call_model, call_model), after="model")
    g.compile().invoke(1)
    chats = named(provider, "chat gpt-x")
    assert [parent_name(provider, s) for s in chats] == [
        "invoke_agent model", "invoke_agent nested/call_model", "invoke_agent nested/call_model_2"]


def test_spans_made_inside_a_coroutine_agent_nest_under_its_span(provider):
    client = provider.get_tracer("llm-client")

    async def call_model(x):
        with client.start_as_current_span("chat gpt-x"):
            await asyncio.sleep(0.001)
        with client.start_as_current_span("chat gpt-x"):
            await asyncio.sleep(0.001)
        return x

    app = cp.Graph().add("a", call_model).add("b", call_model).compile()
    app.invoke(1)  # on the engine's loop
    assert asyncio.run(app.ainvoke(2)) == {"a": 2, "b": 2}  # on the caller's loop
    chats = named(provider, "chat gpt-x")
    assert len(chats) == 8
    parents = [parent_name(provider, s) for s in chats]
    assert sorted(parents) == ["invoke_agent a"] * 4 + ["invoke_agent b"] * 4
    for chat in chats:  # in its own run's trace
        agent = next(s for s in spans(provider) if s.context.span_id == chat.parent.span_id)
        assert chat.context.trace_id == agent.context.trace_id


def test_a_run_started_inside_a_span_nests_under_it(provider):
    app = cp.Graph().add("a", lambda x: x).compile()
    outer = provider.get_tracer("app")
    with outer.start_as_current_span("handle request"):
        app.invoke(1)
        app.batch([1, 2])
    assert [parent_name(provider, s) for s in named(provider, "invoke_workflow graph")] == [
        "handle request"] * 3


def test_a_graph_called_inside_an_agent_nests_under_that_agent(provider):
    inner = cp.Graph().add("leaf", lambda x: x).compile()
    inner.name = "inner"
    outer = cp.Graph().add("caller", lambda x: inner.invoke(x)).compile()
    outer.invoke(1)
    assert tree(provider) == [
        ("invoke_workflow graph", None),
        ("invoke_agent caller", "invoke_workflow graph"),
        ("invoke_workflow inner", "invoke_agent caller"),
        ("invoke_agent leaf", "invoke_workflow inner"),
    ]


CONCURRENT_RUNS = """
import json, threading, time
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import counterpoint as cp

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
cp.instrument(provider)
client = provider.get_tracer("client")

def tagged(name):
    def agent(x):
        with client.start_as_current_span("inner " + name) as span:
            span.set_attribute("input", x)
            time.sleep(0.002)
        return x
    return agent

async def atagged(x):
    import asyncio
    with client.start_as_current_span("inner async") as span:
        span.set_attribute("input", x)
        await asyncio.sleep(0.002)
    return x

g = cp.Graph()
g.add("a", tagged("a"), dispatch="thread")
g.add("b", atagged, after="a")
g.add("nested", cp.parallel({"p": tagged("p"), "q": tagged("q")}), after="a")
app = g.compile()
start = threading.Barrier(50)

def one(i):
    start.wait()
    app.invoke(i)

threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
for t in threads: t.start()
for t in threads: t.join()
spans = exporter.get_finished_spans()
by_id = {s.context.span_id: s for s in spans}
out = []
for s in spans:
    if s.name.startswith("inner"):
        chain = []
        node = s
        while node.parent is not None:
            node = by_id[node.parent.span_id]
            chain.append(node.name)
        out.append([s.attributes["input"], s.context.trace_id == node.context.trace_id, chain,
                    node.attributes["gen_ai.conversation.id"]])
workflows = [s for s in spans if s.name == "invoke_workflow graph"]
print(json.dumps({"inner": out, "workflows": len(workflows),
                  "traces": len({s.context.trace_id for s in workflows})}))
"""


def test_concurrent_runs_never_cross():
    proc = subprocess.run([sys.executable, "-c", CONCURRENT_RUNS], capture_output=True,
                          text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["workflows"] == 50 and found["traces"] == 50
    inner = found["inner"]
    assert len(inner) == 50 * 4
    by_run: dict[str, set[int]] = {}
    for value, same_trace, chain, conversation in inner:
        assert same_trace
        assert chain[-1] == "invoke_workflow graph"
        assert chain[0] in ("invoke_agent a", "invoke_agent b", "invoke_agent nested/p",
                            "invoke_agent nested/q")
        by_run.setdefault(conversation, set()).add(value)
    # Every span made inside an agent is in the trace of the run that agent belongs to.
    assert len(by_run) == 50
    assert all(len(values) == 1 for values in by_run.values())


# ---- every entry point ------------------------------------------------------------------


def _graph():
    async def shout(x):
        return str(x).upper()

    return cp.Graph().add("a", lambda x: x).add("b", shout, after="a").compile()


ENTRY_POINTS = {
    "invoke": lambda app: app.invoke("x"),
    "ainvoke": lambda app: asyncio.run(app.ainvoke("x")),
    "run": lambda app: app.run("x").output,
    "start": lambda app: app.start("x").result(),
    "stream": lambda app: list(app.stream("x", stream_mode="updates"))[-1]["b"],
    "stream values": lambda app: list(app.stream("x"))[-1],
    "astream": lambda app: asyncio.run(_last(app.astream("x", stream_mode="events"))).output,
    "batch": lambda app: app.batch(["x"])[0],
    "abatch": lambda app: asyncio.run(app.abatch(["x"]))[0],
}


async def _last(stream):
    last = None
    async for chunk in stream:
        last = chunk
    return last


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_entry_point_is_traced(provider, entry):
    assert ENTRY_POINTS[entry](_graph()) == "X"
    assert tree(provider) == [
        ("invoke_workflow graph", None),
        ("invoke_agent a", "invoke_workflow graph"),
        ("invoke_agent b", "invoke_workflow graph"),
    ]


def test_a_start_that_is_only_polled_ends_its_trace(provider):
    run = _graph().start("x")
    while not run.done:
        time.sleep(0.001)
    assert len(named(provider, "invoke_workflow graph")) == 1


def test_a_stream_closed_early_ends_its_trace(provider):
    release = threading.Event()
    app = cp.Graph().add("a", lambda x: x).add("b", lambda x: release.wait(10),
                                                  after="a").compile()
    stream = app.stream(1, stream_mode="updates")
    assert next(stream) == {"a": 1}
    stream.close()
    workflow = named(provider, "invoke_workflow graph")[0]
    assert workflow.attributes["counterpoint.run.status"] == "cancelled"
    assert not named(provider, "invoke_agent b")  # still running
    release.set()  # the abandoned call closes its span when it returns
    deadline = time.monotonic() + 10
    while not named(provider, "invoke_agent b") and time.monotonic() < deadline:
        time.sleep(0.01)
    (b,) = named(provider, "invoke_agent b")
    assert b.attributes["counterpoint.agent.status"] == "cancelled"
    assert b.end_time > workflow.end_time


def test_a_batch_makes_a_workflow_per_run(provider):
    app = cp.Graph().add("double", lambda x: x * 2).add(
        "check", lambda x: 1 / (x - 4), after="double").compile()
    results = app.batch([1, 2, 3], return_exceptions=True)
    assert isinstance(results[1], cp.AgentError)
    workflows = named(provider, "invoke_workflow graph")
    assert len(workflows) == 3
    assert sorted(w.attributes["counterpoint.run.status"] for w in workflows) == [
        "failed", "succeeded", "succeeded"]
    assert len({w.context.trace_id for w in workflows}) == 3
    for workflow in workflows:
        agents = [s for s in spans(provider) if s.parent is not None
                  and s.parent.span_id == workflow.context.span_id]
        assert sorted(s.name for s in agents) == ["invoke_agent check", "invoke_agent double"]
        assert {s.attributes["gen_ai.conversation.id"] for s in agents} == {
            workflow.attributes["gen_ai.conversation.id"]}


def test_a_batch_run_s_spans_end_with_the_run_not_the_batch(provider):
    exported_before_last = []

    def agent(x):
        if x == 39:  # the last input: earlier runs' workflows are out already
            exported_before_last.append(len(named(provider, "invoke_workflow graph")))
        time.sleep(0.005)  # the batch reports ended runs every 20 ms or 64 runs
        return x

    cp.Graph().add("a", agent, dispatch="thread").compile().batch(range(40),
                                                                  max_concurrency=2)
    assert exported_before_last and exported_before_last[0] >= 20
    assert len(named(provider, "invoke_workflow graph")) == 40


def test_durable_runs_use_the_run_key_as_conversation(provider, tmp_path):
    app = cp.Graph().add("a", lambda x: x).compile(store=tmp_path / "runs.db")
    result = app.run(1)
    app.batch([2])
    first, second = named(provider, "invoke_workflow graph")
    assert first.attributes["gen_ai.conversation.id"] == result.run_key
    assert second.attributes["gen_ai.conversation.id"] in {s.run_key for s in app.runs()}


def test_custom_stream_and_spans_together(provider):
    def chatty(x):
        cp.emit({"progress": 0.5})
        return x

    app = cp.Graph().add("chatty", chatty).compile()
    assert list(app.stream(1, stream_mode="custom")) == [{"progress": 0.5}]
    assert [name for name, _ in tree(provider)] == ["invoke_workflow graph",
                                                    "invoke_agent chatty"]


def test_langchain_callbacks_and_spans_together(provider):
    pytest.importorskip("langchain_core")
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.runnables import RunnableLambda

    class Names(BaseCallbackHandler):
        def __init__(self):
            self.names = []

        def on_chain_start(self, serialized, inputs, **kwargs):
            self.names.append(kwargs.get("name"))

    client = provider.get_tracer("client")

    def inner(x):
        with client.start_as_current_span("inside runnable"):
            return x

    app = cp.Graph().add("step", RunnableLambda(inner)).compile()
    handler = Names()
    assert app.invoke(1, config={"callbacks": [handler]}) == 1
    assert "step" in handler.names
    assert parent_name(provider, named(provider, "inside runnable")[0]) == "invoke_agent step"
    app.batch([1, 2], config={"callbacks": [handler]})
    assert len(named(provider, "invoke_workflow graph")) == 3


# ---- on and off -------------------------------------------------------------------------


def test_uninstrument_stops_spans(provider):
    app = cp.Graph().add("a", lambda x: x).compile()
    app.invoke(1)
    cp.uninstrument()
    app.invoke(1)
    app.batch([1, 2])
    asyncio.run(app.ainvoke(1))
    assert len(named(provider, "invoke_workflow graph")) == 1


def test_instrument_takes_only_a_tracer_provider():
    with pytest.raises(TypeError, match="TracerProvider"):
        cp.instrument(tracer_provider=object())


def test_instrument_without_a_provider_uses_the_global_one(tmp_path):
    code = textwrap.dedent("""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import counterpoint as cp

        cp.instrument()  # before the application sets its provider: spans go to it anyway
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        cp.Graph().add("a", lambda x: x).compile().invoke(1)
        print(sorted(s.name for s in exporter.get_finished_spans()))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['invoke_agent a', 'invoke_workflow graph']"


# ---- OTLP/HTTP ----------------------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: keeps each request's protobuf body."""

    bodies: ClassVar[list[bytes]] = []

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format, *args):
        pass


@pytest.mark.timeout(60)
def test_spans_export_over_otlp_http():
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.bodies = []
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=f"http://127.0.0.1:{server.server_address[1]}/v1/traces", timeout=10)))
    cp.instrument(provider)
    try:
        review = cp.parallel({"security": lambda x: x, "style": lambda x: x})
        cp.Graph().add("draft", lambda x: x).add("review", review, after="draft").compile() \
            .invoke("patch")
    finally:
        cp.uninstrument()
        provider.shutdown()
        server.shutdown()
        server.server_close()
    names = []
    for body in _Receiver.bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                assert scope_spans.scope.name == "counterpoint"
                names += [span.name for span in scope_spans.spans]
    assert sorted(names) == sorted([
        "invoke_workflow graph", "invoke_agent draft", "invoke_agent review",
        "invoke_agent review/security", "invoke_agent review/style", "invoke_agent review/merge",
    ])


def test_a_batch_run_s_spans_have_the_engine_s_record(provider):
    limit = cp.Limit("otel-batch", max_concurrent=1)
    calls = {"n": 0}

    def flaky(x):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("first call fails")
        # Held well past the retry's 10 ms backoff: the other run's call then holds the
        # limit when the retry comes, which must queue (at 10 ms, the two ended together
        # often enough that nothing queued).
        time.sleep(0.05)
        return x

    app = cp.Graph().add("f", flaky, limits=[limit],
                         retry=cp.Retry(2, initial_backoff=0.01)).compile()
    app.batch([1, 2], max_concurrency=2)
    agent_spans = named(provider, "invoke_agent f")
    assert sorted(s.attributes["counterpoint.attempt"] for s in agent_spans) == [1, 1, 2]
    keys = {key for s in agent_spans for key in s.attributes}
    assert "counterpoint.retry.delay" in keys
    assert any(key.startswith("counterpoint.queued") for key in keys)
