"""Compiled graphs described for LangChain: plan_graph's nodes and edges (nested graphs
and patterns drawn as subgraphs, as LangGraph's get_graph(xray=True)), and the input and
output schemas read off the agents. Real langchain-core objects throughout."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.graph import Graph as DrawnGraph
from pydantic import BaseModel, ValidationError

import counterpoint as cp
from counterpoint.integrations.langchain._drawing import plan_graph
from counterpoint.integrations.langchain._schemas import input_schema, output_schema


class Report(BaseModel):
    verdict: str


def prepare(text: str) -> str:
    return text.strip()


def security(code: str) -> str:
    return "safe"


def perf(code: str) -> str:
    return "fast"


def classify(text: str) -> str:
    return "bug"


def bug(text: str) -> str:
    return f"bug: {text}"


def feature(text: str) -> str:
    return f"feature: {text}"


def report(parts: dict[str, Any]) -> Report:
    return Report(verdict=str(parts))


def count(text: str) -> int:
    return len(text)


def draft(brief: dict[str, Any]) -> str:
    return "draft"


def evaluate(review: dict[str, Any]) -> bool:
    return True


def nodes(drawn: DrawnGraph) -> dict[str, str]:
    """Node id -> node name."""
    return {node.id: node.name for node in drawn.nodes.values()}


def data(drawn: DrawnGraph) -> dict[str, Any]:
    """Node id -> node data (any agent: LangChain's annotation names runnables only)."""
    return {node.id: node.data for node in drawn.nodes.values()}


def edges(drawn: DrawnGraph) -> set[tuple[str, str, bool]]:
    """(source, target, conditional); asserts there are no duplicates."""
    found = {(edge.source, edge.target, edge.conditional) for edge in drawn.edges}
    assert len(found) == len(drawn.edges)
    return found


def _triage_app() -> tuple[cp.CompiledGraph, cp.CompiledGraph, cp.CompiledGraph]:
    review = cp.parallel(security=security, perf=perf)
    triage = cp.router(classify, routes={"bug": bug, "feature": feature})
    g = cp.Graph()
    g.add("prepare", prepare)
    g.add("review", review, after="prepare")
    g.add("triage", triage, after="prepare")
    g.add("report", report, after=["review", "triage"])
    return g.compile(), review, triage


TRIAGE_NODES = {
    "__start__": "__start__",
    "prepare": "prepare",
    "review:security": "review/security",
    "review:perf": "review/perf",
    "review:merge": "review/merge",
    "triage:input": "triage/input",
    "triage:classify": "triage/classify",
    "triage:route": "triage/route",
    "triage:bug": "triage/bug",
    "triage:feature": "triage/feature",
    "triage:join": "triage/join",
    "report": "report",
    "__end__": "__end__",
}
TRIAGE_EDGES = {
    ("__start__", "prepare", False),
    ("prepare", "review:security", False),
    ("prepare", "review:perf", False),
    ("review:security", "review:merge", False),
    ("review:perf", "review:merge", False),
    ("prepare", "triage:input", False),
    ("prepare", "triage:classify", False),
    ("triage:input", "triage:route", False),
    ("triage:classify", "triage:route", False),
    # The router's choice: only the routes it picks run.
    ("triage:route", "triage:bug", True),
    ("triage:route", "triage:feature", True),
    ("triage:bug", "triage:join", False),
    ("triage:feature", "triage:join", False),
    ("review:merge", "report", False),
    ("triage:join", "report", False),
    ("report", "__end__", False),
}


# ---- plan_graph ---------------------------------------------------------------------


def test_nested_parallel_and_router_are_expanded_into_their_agents() -> None:
    app, _, _ = _triage_app()
    drawn = plan_graph(app)
    assert nodes(drawn) == TRIAGE_NODES
    assert edges(drawn) == TRIAGE_EDGES
    # Node data is the agent itself; the start and end nodes carry none.
    agents = data(drawn)
    assert agents["prepare"] is prepare
    assert agents["review:security"] is security
    assert agents["triage:classify"] is classify
    assert agents["report"] is report
    assert agents["__start__"] is None and agents["__end__"] is None
    assert app.invoke(" my code ") == Report(verdict=str({
        "review": {"security": "safe", "perf": "fast"}, "triage": {"bug": "bug: my code"}}))


def test_mermaid_draws_nested_patterns_as_subgraphs() -> None:
    app, _, _ = _triage_app()
    mermaid = plan_graph(app).draw_mermaid()
    assert "\tsubgraph review\n" in mermaid
    assert "\tsubgraph triage\n" in mermaid
    assert mermaid.count("subgraph") == 2
    assert "\t__start__([<p>__start__</p>]):::first\n" in mermaid
    assert "\t__end__([<p>__end__</p>]):::last\n" in mermaid
    # Nodes are labelled with their path; ids are mermaid-escaped (':' is \3a).
    assert "\treview\\3asecurity(review/security)\n" in mermaid
    assert "\tprepare --> review\\3asecurity;\n" in mermaid
    assert "\treview\\3asecurity --> review\\3amerge;\n" in mermaid
    assert "\ttriage\\3aroute -.-> triage\\3abug;\n" in mermaid
    assert "\ttriage\\3ajoin --> report;\n" in mermaid
    # Each subgraph holds its own agents.
    review_block = mermaid.split("\tsubgraph review\n", 1)[1].split("\tend\n", 1)[0]
    assert "review\\3amerge(review/merge)" in review_block
    assert "triage" not in review_block


def test_xray_false_draws_nested_graphs_as_one_node() -> None:
    app, review, triage = _triage_app()
    drawn = plan_graph(app, xray=False)
    assert nodes(drawn) == {name: name for name in
                            ("__start__", "prepare", "review", "triage", "report", "__end__")}
    assert edges(drawn) == {
        ("__start__", "prepare", False),
        ("prepare", "review", False),
        ("prepare", "triage", False),
        ("review", "report", False),
        ("triage", "report", False),
        ("report", "__end__", False),
    }
    assert data(drawn)["review"] is review and data(drawn)["triage"] is triage
    assert "subgraph" not in drawn.draw_mermaid()
    assert plan_graph(app, xray=0).to_json() == drawn.to_json()


def test_xray_depth_expands_that_many_levels() -> None:
    review = cp.parallel(security=security, perf=perf)
    pipeline = cp.sequential(("clean", prepare), ("review", review))
    app = cp.Graph().add("pipeline", pipeline).add("report", report, after="pipeline").compile()

    one = plan_graph(app, xray=1)
    assert nodes(one) == {"__start__": "__start__", "pipeline:clean": "pipeline/clean",
                          "pipeline:review": "pipeline/review", "report": "report",
                          "__end__": "__end__"}
    assert data(one)["pipeline:review"] is review

    full = plan_graph(app)
    assert plan_graph(app, xray=2).to_json() == full.to_json()
    assert edges(full) == {
        ("__start__", "pipeline:clean", False),
        ("pipeline:clean", "pipeline:review:security", False),
        ("pipeline:clean", "pipeline:review:perf", False),
        ("pipeline:review:security", "pipeline:review:merge", False),
        ("pipeline:review:perf", "pipeline:review:merge", False),
        ("pipeline:review:merge", "report", False),
        ("report", "__end__", False),
    }
    assert nodes(full)["pipeline:review:merge"] == "pipeline/review/merge"
    mermaid = full.draw_mermaid()
    # Nested subgraphs: review inside pipeline.
    outer = mermaid.split("\tsubgraph pipeline\n", 1)[1]
    assert outer.index("\tsubgraph review\n") < outer.index("\tend\n")
    assert "pipeline\\3areview\\3asecurity(pipeline/review/security)" in mermaid


@pytest.mark.parametrize("xray", [-1, 1.5, "yes", None])
def test_xray_must_be_a_bool_or_a_depth(xray: Any) -> None:
    app, _, _ = _triage_app()
    with pytest.raises((TypeError, ValueError), match="xray"):
        plan_graph(app, xray=xray)


LOOP_EDGES = {
    ("{p}state", "{p}brief", False),
    ("{p}brief", "{p}worker", False),
    ("{p}state", "{p}review", False),
    ("{p}worker", "{p}review", False),
    ("{p}review", "{p}evaluator", False),
    ("{p}state", "{p}outcome", False),
    ("{p}worker", "{p}outcome", False),
    ("{p}evaluator", "{p}outcome", False),
    # Another iteration unless the evaluator passed the draft.
    ("{p}outcome", "{p}state", True),
}


def _loop_edges(prefix: str) -> set[tuple[str, str, bool]]:
    return {(s.format(p=prefix), t.format(p=prefix), c) for s, t, c in LOOP_EDGES}


def test_loop_draws_its_iteration_with_an_edge_back() -> None:
    app = cp.loop(draft, evaluate, max_iterations=3)
    drawn = plan_graph(app)
    agents = ("state", "brief", "worker", "review", "evaluator", "outcome")
    assert nodes(drawn) == {"__start__": "__start__", "__end__": "__end__",
                            **{f"loop:{a}": f"loop/{a}" for a in agents}}
    assert edges(drawn) == _loop_edges("loop:") | {("__start__", "loop:state", False),
                                                   ("loop:outcome", "__end__", False)}
    assert data(drawn)["loop:worker"] is draft and data(drawn)["loop:evaluator"] is evaluate
    assert "\tloop\\3aoutcome -.-> loop\\3astate;\n" in drawn.draw_mermaid()
    # Not expanded, the loop is the agent that runs it.
    assert nodes(plan_graph(app, xray=False)) == {"__start__": "__start__", "loop": "loop",
                                                 "__end__": "__end__"}


def test_two_loops_in_sequence_draw_as_two_subgraphs() -> None:
    # Both nested graphs have one agent named "loop": it is drawn in its graph's place
    # (LangChain's mermaid would drop a subgraph with no edges of its own, and reject
    # two subgraphs named "loop").
    app = cp.sequential(cp.loop(draft, evaluate), cp.loop(draft, evaluate))
    drawn = plan_graph(app)
    assert nodes(drawn)["step2:worker"] == "step2/loop/worker"
    assert edges(drawn) == _loop_edges("step1:") | _loop_edges("step2:") | {
        ("__start__", "step1:state", False),
        ("step1:outcome", "step2:state", False),
        ("step2:outcome", "__end__", False),
    }
    mermaid = drawn.draw_mermaid()
    assert mermaid.count("subgraph") == 2
    assert "\tstep2\\3aworker(step2/loop/worker)\n" in mermaid
    assert nodes(plan_graph(app, xray=1)) == {"__start__": "__start__", "step1": "step1/loop",
                                             "step2": "step2/loop", "__end__": "__end__"}


def test_group_chat_marks_the_turns_that_route() -> None:
    app = cp.group_chat({"alice": bug, "bob": feature}, manager=lambda state: None)
    conditional = {(s, t) for s, t, c in edges(plan_graph(app)) if c}
    assert conditional == {
        ("chat:pick", "chat:alice"),
        ("chat:pick", "chat:bob"),
        ("chat:pick", "chat:end"),
        ("chat:record", "chat:outcome"),
        ("chat:outcome", "chat:state"),  # the next turn
    }


def test_patterns_that_build_their_child_graph_per_run_are_one_node() -> None:
    team = cp.supervisor(lambda task: [], workers={"coder": bug}, synthesizer=report)
    research = cp.fan_out(count, over=lambda text: text.split())
    app = (cp.Graph().add("team", team).add("research", research, after="team")
           .add("judge", cp.adaptive(count, escalate_to=cp.sequential(prepare, count)),
                after="research").compile())
    drawn = plan_graph(app)
    assert nodes(drawn) == {
        "__start__": "__start__",
        "team:input": "team/input",
        "team:planner": "team/planner",
        "team:dispatch": "team/dispatch",  # the plan, hence the child graph, is per run
        "team:brief": "team/brief",
        "team:synthesizer": "team/synthesizer",
        "research": "research/fan_out",  # as many workers as items, known per run
        "judge:input": "judge/input",
        "judge:cheap": "judge/cheap",
        "judge:decide": "judge/decide",
        "judge:gate": "judge/gate",
        "judge:accept": "judge/accept",
        "judge:escalate:prepare": "judge/escalate/prepare",
        "judge:escalate:count": "judge/escalate/count",
        "judge:result": "judge/result",
        "__end__": "__end__",
    }
    assert edges(drawn) == {
        ("__start__", "team:input", False),
        ("__start__", "team:planner", False),
        ("team:planner", "team:dispatch", False),
        ("team:input", "team:brief", False),
        ("team:dispatch", "team:brief", False),
        ("team:brief", "team:synthesizer", False),
        ("team:synthesizer", "research", False),
        ("research", "judge:input", False),
        ("research", "judge:cheap", False),
        ("judge:cheap", "judge:decide", False),
        ("judge:input", "judge:gate", False),
        ("judge:decide", "judge:gate", False),
        ("judge:gate", "judge:accept", True),
        ("judge:gate", "judge:escalate:prepare", True),
        ("judge:escalate:prepare", "judge:escalate:count", False),
        ("judge:decide", "judge:result", False),
        ("judge:accept", "judge:result", False),
        ("judge:escalate:count", "judge:result", False),
        ("judge:result", "__end__", False),
    }
    mermaid = drawn.draw_mermaid()
    assert {"\tsubgraph team\n", "\tsubgraph judge\n", "\tsubgraph escalate\n"} == {
        line + "\n" for line in mermaid.splitlines() if "subgraph" in line}
    # Nested graphs of one agent are that agent, named by its whole path.
    wrapped = cp.sequential(("outer", cp.sequential(("research", research))), report)
    assert nodes(plan_graph(wrapped)) == {"__start__": "__start__",
                                          "outer": "outer/research/fan_out",
                                          "report": "report", "__end__": "__end__"}


def test_runnable_agents_and_policies_draw_with_the_runnable_as_data() -> None:
    prompt = ChatPromptTemplate.from_messages([("human", "Review: {code}")])
    model = FakeListChatModel(responses=["looks fine"])
    checks = cp.parallel(lint=RunnableLambda(count), style=count)
    app = (cp.Graph().add("prompt", prompt).add("model", model, after="prompt")
           .add("checks", cp.policy(checks, retry=2), after="model").compile())
    drawn = plan_graph(app)
    assert nodes(drawn) == {"__start__": "__start__", "prompt": "prompt", "model": "model",
                            "checks:lint": "checks/lint", "checks:style": "checks/style",
                            "checks:merge": "checks/merge", "__end__": "__end__"}
    agents = data(drawn)
    assert agents["prompt"] is prompt and agents["model"] is model
    assert isinstance(agents["checks:lint"], RunnableLambda)
    as_json = {node["id"]: node for node in drawn.to_json()["nodes"]}
    assert as_json["prompt"]["type"] == "runnable"
    assert as_json["model"]["data"]["name"] == "model"
    assert as_json["checks:style"]["type"] == "unknown"
    assert "\tsubgraph checks\n" in drawn.draw_mermaid()


def test_ids_that_would_confuse_mermaid_get_suffixes_and_keep_their_path_as_name() -> None:
    review = cp.parallel(security=security, perf=perf)
    # Same agent at the end of one nested graph and the start of the next: LangChain
    # would draw the edge step1:count -> step2:count in a stray subgraph "count".
    chained = cp.sequential(cp.sequential(prepare, count), cp.sequential(count, str))
    app = (cp.Graph().add("review", prepare)
           .add("x", cp.sequential(("review", review), report), after="review")
           .add("chained", chained, after="review").compile())
    drawn = plan_graph(app)
    assert nodes(drawn) == {
        "__start__": "__start__",
        "review": "review",
        # A subgraph named "review" would clash with the top-level node "review".
        "x:review_2:security": "x/review/security",
        "x:review_2:perf": "x/review/perf",
        "x:review_2:merge": "x/review/merge",
        "x:report": "x/report",
        "chained:step1:prepare": "chained/step1/prepare",
        "chained:step1:count": "chained/step1/count",
        "chained:step2:count_2": "chained/step2/count",
        "chained:step2:str": "chained/step2/str",
        "__end__": "__end__",
    }
    assert ("chained:step1:count", "chained:step2:count_2", False) in edges(drawn)
    mermaid = drawn.draw_mermaid()
    subgraphs = sorted(line.strip() for line in mermaid.splitlines() if "subgraph" in line)
    assert subgraphs == ["subgraph chained", "subgraph review_2", "subgraph step1",
                         "subgraph step2", "subgraph x"]


def test_colons_in_agent_names_do_not_open_subgraphs() -> None:
    # A judge merge adds helper agents named "merge:ballot", "merge:judge" ...
    app = cp.parallel(a=security, b=perf, merge=cp.judge(lambda outputs: "safe"))
    drawn = plan_graph(app)
    assert set(nodes(drawn)) == {"__start__", "a", "b", "merge\ua789ballot",
                                 "merge\ua789candidates", "merge\ua789judge", "merge",
                                 "__end__"}
    assert "subgraph" not in drawn.draw_mermaid()


def test_draw_ascii() -> None:
    pytest.importorskip("grandalf")
    app, _, _ = _triage_app()
    art = plan_graph(app).draw_ascii()
    for name in ("review/security", "triage/route", "report", "__end__"):
        assert name in art


# ---- schemas ------------------------------------------------------------------------


def test_schemas_of_annotated_functions() -> None:
    app, _, _ = _triage_app()
    given = input_schema(app, name="Triage")
    assert given.__name__ == "TriageInput"
    assert given.model_json_schema() == {"title": "TriageInput", "type": "string"}
    assert output_schema(app, name="Triage") is Report  # a model is its own schema

    counted = cp.sequential(prepare, count)
    assert output_schema(counted, name="Counted").model_json_schema() == {
        "title": "CountedOutput", "type": "integer"}


def test_input_schema_of_a_pattern_ignores_its_pass_through_agents() -> None:
    # The router's "input" agent passes anything on; the classifier says what it takes.
    triage = cp.router(classify, routes={"bug": bug})
    assert input_schema(triage, name="Router").model_json_schema() == {
        "title": "RouterInput", "type": "string"}
    # Entries that disagree leave the input unknown.
    mixed = cp.parallel(text=count, parts=report)
    assert input_schema(mixed, name="Mixed").model_json_schema() == {"title": "MixedInput"}


def test_schemas_of_runnable_agents_are_their_own() -> None:
    prompt = ChatPromptTemplate.from_messages([("human", "Review: {code}")])
    model = FakeListChatModel(responses=["looks fine"])
    app = cp.Graph().add("prompt", prompt).add("model", model, after="prompt").compile()
    given = input_schema(app, name="Reviewer")
    assert given.model_json_schema() == prompt.get_input_jsonschema()
    assert given.model_json_schema()["required"] == ["code"]
    returned = output_schema(app, name="Reviewer")
    assert returned.model_json_schema() == model.get_output_jsonschema()
    # Through a policy and a nested graph too.
    outer = cp.Graph().add("inner", cp.policy(app, retry=2)).compile()
    assert input_schema(outer).model_json_schema() == given.model_json_schema()


def test_schemas_are_any_when_agents_do_not_say() -> None:
    app = cp.sequential(lambda x: x, lambda x: x)
    for schema, title in ((input_schema(app, name="Plain"), "PlainInput"),
                          (output_schema(app, name="Plain"), "PlainOutput")):
        assert schema.model_json_schema() == {"title": title}
        anything = object()
        assert schema.model_validate(anything).model_dump() is anything
    loop = cp.loop(draft, evaluate)  # its one agent takes anything and delegates
    assert input_schema(loop).model_json_schema() == {"title": "CompiledGraphInput"}


def test_output_schema_of_several_sinks_is_a_dict_by_sink() -> None:
    g = cp.Graph()
    g.add("text", prepare)
    g.add("length", count, after="text")
    g.add("loud", RunnableLambda(str.upper), after="text")
    g.add("json", RunnableLambda(prepare), after="text")  # a name BaseModel fields can't take
    app = g.compile()
    returned = output_schema(app, name="Stats")
    assert returned.__name__ == "StatsOutput"
    schema = returned.model_json_schema()
    fields = schema["$defs"]["StatsOutput"]["properties"]
    assert {name: field.get("type") for name, field in fields.items()} == {
        "length": "integer", "loud": None, "json": "string"}
    # A sink routed around, or failed in a run that goes on, is absent from the result.
    assert "required" not in schema["$defs"]["StatsOutput"]
    assert returned.model_validate(app.invoke(" abc ")).model_dump() == {
        "length": 3, "loud": "ABC", "json": "abc"}
    with pytest.raises(ValidationError):
        returned.model_validate({"length": "three"})
