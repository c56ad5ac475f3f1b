"""Graphs as specs: every pattern and policy round-trips through to_spec() and cp.load(),
as dicts, JSON and YAML files; specs validate against the published schema; the
allowlist refuses a spec before anything is imported. Malformed specs and the fuzzer
are in test_specs_errors.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import spec_agents as a
import yaml

import counterpoint as cp
from counterpoint.specs import SCHEMA_FILE, schema_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ALLOW = ["spec_agents"]
VALIDATOR = jsonschema.Draft202012Validator(cp.spec_schema())


def assert_valid(spec: dict[str, Any]) -> None:
    errors = sorted(VALIDATOR.iter_errors(spec), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors]


def round_trip(app: cp.CompiledGraph, **load_options: Any) -> tuple[dict[str, Any],
                                                                      cp.CompiledGraph]:
    """The spec of ``app`` and the graph loaded from it, checked to be the same spec,
    valid against the schema, and JSON- and YAML-safe."""
    spec = app.to_spec()
    assert_valid(spec)
    assert json.loads(json.dumps(spec)) == spec
    assert yaml.safe_load(yaml.safe_dump(spec, sort_keys=False)) == spec
    loaded = cp.load(spec, allow=ALLOW, **load_options)
    assert loaded.to_spec() == spec
    assert loaded.agents == app.agents
    return spec, loaded


# ---- patterns ---------------------------------------------------------------------------

PATTERNS = {
    "sequential": (lambda: cp.sequential(a.upper, a.exclaim), "hi"),
    "sequential-list": (lambda: cp.sequential([a.upper, a.exclaim, a.exclaim]), "hi"),
    "sequential-named": (lambda: cp.sequential(("shout", a.upper), a.exclaim), "hi"),
    "parallel": (lambda: cp.parallel(y=a.yes, n=a.no), "q"),
    "parallel-dict": (lambda: cp.parallel({"y": a.yes}, n=a.no, merge="majority", key=a.lower,
                                          priorities={"n": 5}), "q"),
    "parallel-quorum": (lambda: cp.parallel(y=a.yes, y2=a.yes, n=a.no, merge="quorum",
                                            quorum=2), "q"),
    "parallel-first": (lambda: cp.parallel(y=a.yes, merge="first"), "q"),
    "parallel-confidence": (lambda: cp.parallel(s=a.sure, u=a.unsure, merge="confidence"), "q"),
    "parallel-reducer": (lambda: cp.parallel(y=a.yes, n=a.no, merge=a.first_value), "q"),
    "parallel-judge": (lambda: cp.parallel(y=a.yes, n=a.no, merge=cp.judge(a.first_value)), "q"),
    "consensus": (lambda: cp.consensus([a.yes, a.yes, a.no]), "q"),
    "consensus-quorum": (lambda: cp.consensus([a.yes, a.no], vote="quorum", quorum=0.5,
                                              key=a.lower), "q"),
    "consensus-confidence": (lambda: cp.consensus([a.sure, a.unsure], vote="confidence"), "q"),
    "consensus-judge": (lambda: cp.consensus([a.yes, a.no], vote=a.first_value), "q"),
    "consensus-judge-object": (lambda: cp.consensus([a.yes, a.no],
                                                    vote=cp.judge(a.first_value)), "q"),
    "fan_out": (lambda: cp.fan_out(a.upper, over=a.words), "a b c"),
    "fan_out-reducer": (lambda: cp.fan_out(a.upper, over=a.words, merge=a.count_items,
                                           max_items=10), "a b c"),
    "fan_out-vote": (lambda: cp.fan_out(a.upper, over=a.words, merge="majority", key=a.lower),
                     "a a b"),
    "router": (lambda: cp.router(a.classify, {"billing": a.billing, "address": a.address},
                                 default=a.other, priorities={"address": 10}),
               "billing address"),
    "router-plain": (lambda: cp.router(a.classify, routes={"billing": a.billing,
                                                            "other": a.other}), "billing"),
    "supervisor": (lambda: cp.supervisor(a.plan, workers={"search": a.search},
                                         synthesizer=a.synthesize), "task"),
    "loop": (lambda: cp.loop(a.draft, a.evaluate, max_iterations=3), "task"),
    "loop-default": (lambda: cp.loop(a.draft, a.evaluate), "task"),
    "group_chat": (lambda: cp.group_chat({"alice": a.alice, "bob": a.bob}, manager=a.manager,
                                         until=a.done, max_turns=5), "task"),
    "group_chat-plain": (lambda: cp.group_chat({"alice": a.alice, "bob": a.bob},
                                               manager=a.manager), "task"),
    "adaptive": (lambda: cp.adaptive(a.unsure, escalate_to=a.big, below=0.5), "q"),
    "adaptive-cheap": (lambda: cp.adaptive(a.sure, escalate_to=a.big), "q"),
}


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_every_pattern_round_trips(name: str) -> None:
    build, value = PATTERNS[name]
    app = build()
    spec, loaded = round_trip(app)
    assert spec["pattern"] == name.split("-")[0]
    assert loaded.invoke(value) == app.invoke(value)


def test_every_pattern_of_the_package_is_covered() -> None:
    from counterpoint.specs._grammar import PATTERNS as GRAMMAR

    assert {name.split("-")[0] for name in PATTERNS} == set(GRAMMAR)
    assert set(GRAMMAR) == {"sequential", "parallel", "consensus", "fan_out", "router",
                            "supervisor", "loop", "group_chat", "adaptive"}


def test_pattern_parameters_are_named_as_the_builders_parameters() -> None:
    import inspect

    from counterpoint.specs._grammar import PATTERNS as GRAMMAR

    for name, pattern in GRAMMAR.items():
        parameters = set(inspect.signature(getattr(cp, name)).parameters) - {"named_branches"}
        assert set(pattern.fields.fields) == parameters, name


def test_pattern_spec_reads_as_written() -> None:
    app = cp.parallel(y=a.yes, n=a.no, merge=cp.judge(a.first_value), priorities={"n": 5})
    assert app.to_spec() == {
        "pattern": "parallel",
        "branches": {"y": "spec_agents:yes", "n": "spec_agents:no"},
        "merge": {"judge": "spec_agents:first_value"},
        "priorities": {"n": 5},
    }


# ---- graphs and policies ----------------------------------------------------------------


def test_graph_with_every_node_option_round_trips() -> None:
    g = cp.Graph(on_error="continue")
    g.add("classify", a.classify, dispatch="thread")
    g.add("billing", a.billing, after="classify", priority=-3, on_error="fail")
    g.add("address", a.slow_address, after="classify", priority=0)
    g.add("reply", a.reply, after=["billing", "address"], join="available", dispatch="inline")
    app = g.compile(budget={"tokens": 100.0}, deadline=30)
    spec, loaded = round_trip(app)
    assert spec == {
        "on_error": "continue", "budget": {"tokens": 100.0}, "deadline": 30.0,
        "agents": {
            "classify": {"use": "spec_agents:classify", "dispatch": "thread"},
            "billing": {"use": "spec_agents:billing", "after": "classify", "priority": -3,
                        "on_error": "fail"},
            "address": {"use": "spec_agents:slow_address", "after": "classify", "priority": 0},
            "reply": {"use": "spec_agents:reply", "after": ["billing", "address"],
                      "join": "available", "dispatch": "inline"},
        }}
    assert loaded.describe() == app.describe()
    assert loaded.invoke("billing x") == app.invoke("billing x")


POLICIES = {
    "retry-int": {"retry": 2},
    "retry": {"retry": cp.Retry(max_attempts=4, initial_backoff=0.0, multiplier=1.5,
                                max_backoff=1, jitter=0)},
    "retry-on-classes": {"retry": cp.Retry(retry_on=(ValueError, cp.AgentTimeout, a.Flaky))},
    "retry-on-class": {"retry": cp.Retry(retry_on=a.Flaky)},
    "retry-on-predicate": {"retry": cp.Retry(retry_on=a.is_value_error)},
    "timeout": {"timeout": 2.5},
    "fallback": {"fallback": a.other},
    "fallback-pattern": {"fallback": cp.sequential(a.other, a.exclaim)},
    "breaker-named": {"breaker": cp.CircuitBreaker("spec-crm", failures=3, window=10)},
    "breaker-own": {"breaker": cp.CircuitBreaker(failures=2, reset_after=5)},
    "limit-named": {"limits": cp.Limit("spec-llm", max_concurrent=2)},
    "limit-own": {"limits": cp.Limit(per_second=50, burst=5)},
    "limits": {"limits": [cp.Limit("spec-llm", max_concurrent=2), cp.Limit(max_concurrent=9)]},
    "review-reviewer": {"review": cp.Review(below=0.9, reviewer=a.approve_all)},
    "review-approvers": {"review": cp.Review(below=0.9, reviewer=a.approve_as_lead,
                                             approvers=("support-leads", "managers"))},
    "everything": {"retry": 3, "timeout": 5, "fallback": a.other,
                   "breaker": cp.CircuitBreaker("spec-crm", failures=3, window=10),
                   "limits": cp.Limit("spec-llm", max_concurrent=2),
                   "review": cp.Review(reviewer=a.approve_all)},
}


@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize("where", ["add", "policy", "member"])
def test_every_policy_round_trips(name: str, where: str) -> None:
    """On Graph.add, on a cp.policy() agent, and on a pattern's member."""
    options = POLICIES[name]
    if where == "member":
        app = cp.parallel(b=cp.policy(a.billing, **options), o=a.other)
    else:
        g = cp.Graph().add("classify", a.classify)
        if where == "add":
            g.add("billing", a.billing, after="classify", **options)
        else:
            g.add("billing", cp.policy(a.billing, **options), after="classify")
        app = g.compile()
    spec, loaded = round_trip(app)
    assert loaded.invoke("billing now") == app.invoke("billing now")
    written = spec["branches"]["b"] if where == "member" else spec["agents"]["billing"]
    assert set(options) <= set(written)


def test_review_approvers_round_trip_and_are_enforced(tmp_path: Path) -> None:
    g = cp.Graph().add("draft", a.unsure,
                       review=cp.Review(below=0.5, approvers=["support-leads"]))
    app = g.compile(store=tmp_path / "a.db")
    spec = app.to_spec()
    assert spec["agents"]["draft"]["review"] == {"below": 0.5, "approvers": ["support-leads"]}
    loaded = cp.load(spec, allow=["spec_agents"], store=tmp_path / "a.db")
    assert loaded.to_spec() == spec
    with pytest.raises(cp.NeedsReview) as paused:
        loaded.invoke("x")
    with pytest.raises(cp.ReviewRefused):
        loaded.resume(paused.value.run_key, cp.approve(by="sam", role="sales"))
    assert loaded.resume(paused.value.run_key, cp.approve(by="lee", role="support-leads")) \
        == cp.Result("unsure", confidence=0.2)


def test_review_approvers_from_yaml(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "g.yaml"
    path.write_text("agents:\n  draft:\n    use: spec_agents:unsure\n"
                    "    review: {below: 0.8, approvers: [support-leads]}\n")
    app = cp.load(path, allow=["spec_agents"], store=tmp_path / "a.db")
    assert app._gates()["draft"].approvers == ("support-leads",)


def test_review_without_reviewer_round_trips_with_a_store(tmp_path: Path) -> None:
    g = cp.Graph().add("draft", a.unsure, review=cp.Review(below=0.5))
    app = g.compile(store=tmp_path / "a.db")
    spec, loaded = round_trip(app, store=tmp_path / "b.db")
    assert spec["agents"]["draft"]["review"] == {"below": 0.5}
    with pytest.raises(cp.NeedsReview):
        loaded.invoke("x")
    # Without a store it loads (it may be nested in a durable graph), but cannot pause.
    with pytest.raises(cp.AgentError, match="needs a store"):
        cp.load(spec, allow=ALLOW).invoke("x")


def test_shared_limits_and_breakers_are_declared_once_and_shared() -> None:
    spec = {
        "breakers": {"spec-shared-crm": {"failures": 2}},
        "limits": {"spec-shared-llm": {"max_concurrent": 1}},
        "agents": {
            "billing": {"use": "spec_agents:billing", "breaker": "spec-shared-crm",
                        "limits": "spec-shared-llm"},
            "address": {"use": "spec_agents:address", "breaker": "spec-shared-crm",
                        "limits": ["spec-shared-llm", {"per_second": 100}]},
            "nested": {"pattern": "parallel", "branches": {
                "x": {"use": "spec_agents:yes", "limits": "spec-shared-llm"}}},
        }}
    assert_valid(spec)
    app = cp.load(spec, allow=ALLOW)
    specs = {node.name: node.policed for node in app._specs}
    breaker = cp.CircuitBreaker("spec-shared-crm", failures=2)  # the same, process-wide
    limit = cp.Limit("spec-shared-llm", max_concurrent=1)
    assert specs["billing"].breaker is specs["address"].breaker is breaker
    assert specs["billing"].limits[0] is specs["address"].limits[0] is limit
    assert specs["address"].limits[1] is not limit
    assert app.to_spec() == spec
    # Loading the spec again shares them with the first graph.
    again = cp.load(spec, allow=ALLOW)
    assert {n.name: n.policed for n in again._specs}["billing"].breaker is breaker


def test_an_unnamed_breaker_shared_by_two_agents_stays_shared() -> None:
    breaker = cp.CircuitBreaker(failures=4)
    g = cp.Graph().add("x", a.billing, breaker=breaker).add("y", a.address, breaker=breaker)
    spec, loaded = round_trip(g.compile())
    assert spec["breakers"] == {breaker.name: {"failures": 4}}
    policed = {n.name: n.policed for n in loaded._specs}
    assert policed["x"].breaker is policed["y"].breaker


def test_nesting_a_pattern_inside_a_graph_inside_a_pattern() -> None:
    inner = cp.Graph(on_error="continue")
    inner.add("shout", cp.sequential(a.upper, cp.parallel(e=a.exclaim, u=a.upper)))
    inner.add("tail", a.reply, after="shout", retry=2)
    outer = cp.parallel(graph=inner.compile(), plain=a.yes,
                        merge=cp.judge(cp.sequential(a.first_value, a.exclaim)))
    spec, loaded = round_trip(outer)
    graph = spec["branches"]["graph"]["graph"]
    assert graph["on_error"] == "continue"
    assert graph["agents"]["shout"]["pattern"] == "sequential"
    assert graph["agents"]["shout"]["agents"][1]["pattern"] == "parallel"
    assert loaded.invoke("hi") == outer.invoke("hi")


def test_runnable_objects_are_named_by_their_module_level_name() -> None:
    app = cp.sequential(a.drafter, a.upper)
    spec, loaded = round_trip(app)
    assert spec["agents"] == ["spec_agents:drafter", "spec_agents:upper"]
    assert loaded.invoke("x") == "DRAFTED(X)"


def test_name_and_description_are_kept() -> None:
    spec = {"name": "triage", "description": "Sorts messages.",
            "agents": {"c": {"use": "spec_agents:classify"}}}
    assert cp.load(spec, allow=ALLOW).to_spec() == spec
    pattern = {"name": "votes", "pattern": "consensus", "agents": ["spec_agents:yes"]}
    assert cp.load(pattern, allow=ALLOW).to_spec() == pattern


def test_to_spec_names_every_agent_that_cannot_be_imported() -> None:
    g = cp.Graph()
    g.add("lam", a.lambda_agent)
    g.add("local", a.make_local(), after="lam")
    g.add("ok", a.upper, after="local", fallback=lambda x: x)
    with pytest.raises(cp.SpecError) as caught:
        g.compile().to_spec()
    error = caught.value
    assert error.source == "to_spec()"
    assert [p.path for p in error.problems] == ["agents.lam", "agents.local",
                                                "agents.ok.fallback"]
    assert "is a lambda" in error.problems[0].problem
    assert "defined inside a function" in error.problems[1].problem
    assert "define it at module level" in error.hint


def test_to_spec_refuses_private_names() -> None:
    with pytest.raises(cp.SpecError, match="private name"):
        cp.Graph().add("p", a._private_agent).compile().to_spec()


# ---- files ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_files_round_trip(tmp_path: Path, suffix: str) -> None:
    app = cp.sequential(a.upper, cp.parallel(e=a.exclaim, merge=a.first_value))
    path = tmp_path / f"graph{suffix}"
    cp.dump(app, path)
    text = path.read_text()
    data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    assert data == app.to_spec()
    loaded = cp.load(str(path), allow=ALLOW)
    assert loaded.to_spec() == app.to_spec()
    assert cp.load(path, allow=ALLOW).invoke("hi") == app.invoke("hi") == "HI!"


def test_the_issue_spec_loads_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "triage.yaml"
    path.write_text(
        "# triage.yaml\n"
        "name: triage\n"
        "agents:\n"
        '  classify: {use: "spec_agents:classify"}\n'
        '  billing:  {use: "spec_agents:billing",  after: classify, retry: {max_attempts: 3},'
        " timeout: 20}\n"
        '  address:  {use: "spec_agents:address",  after: classify, priority: 10}\n'
        '  reply:    {use: "spec_agents:reply",    after: [billing, address], review: {below: 0.8,'
        ' reviewer: "spec_agents:approve_all"}}\n')
    app = cp.load(path, allow=["spec_*"])
    assert app.invoke("billing") == "address=address(billing) + billing=billing(billing)"
    assert app.describe()["nodes"][2]["priority"] == 10


def test_missing_pyyaml_says_how_to_install_it(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("agents: {a: {use: 'spec_agents:upper'}}\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ImportError, match=r'pip install "counterpoint\[yaml\]"'):
        cp.load(path, allow=ALLOW)


# ---- the allowlist ----------------------------------------------------------------------


@pytest.fixture
def side_effect_module(tmp_path: Path, monkeypatch: Any) -> Path:
    """A module whose import writes a marker file."""
    marker = tmp_path / "imported.marker"
    (tmp_path / "spec_side_effect.py").write_text(
        f"with open({str(marker)!r}, 'w') as marker:\n    marker.write('imported')\n"
        "def agent(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("spec_side_effect", None)


def test_a_module_outside_the_allowlist_is_never_imported(side_effect_module: Path) -> None:
    spec = {"agents": {"ok": {"use": "spec_agents:upper"},
                       "evil": {"use": "spec_side_effect:agent", "after": "ok"},
                       "shell": {"use": "os:system", "after": "ok"}}}
    with pytest.raises(cp.SpecError) as caught:
        cp.load(spec, allow=ALLOW)
    assert not side_effect_module.exists()
    assert "spec_side_effect" not in sys.modules
    assert [p.path for p in caught.value.problems] == ["agents.evil.use", "agents.shell.use"]
    assert "which the allowlist does not allow" in caught.value.problem
    assert "add 'spec_side_effect' (or a pattern matching it) to allow=" in caught.value.hint


def test_nothing_is_imported_when_any_reference_is_refused(side_effect_module: Path) -> None:
    """One disallowed reference refuses the spec before the allowed modules are
    imported too."""
    spec = {"agents": {"a": {"use": "spec_side_effect:agent"},
                       "b": {"use": "os.path:join"}}}
    with pytest.raises(cp.SpecError, match=r"agents\.b\.use"):
        cp.load(spec, allow=["spec_side_effect"])
    assert not side_effect_module.exists()
    app = cp.load({"agents": {"a": {"use": "spec_side_effect:agent"}}},
                  allow=["spec_side_effect"])
    assert side_effect_module.exists()
    assert app.invoke(3) == 3


def test_deny_by_default() -> None:
    with pytest.raises(cp.SpecError, match=r"nothing may be imported until you pass allow="):
        cp.load({"agents": {"a": "spec_agents:upper"}})


@pytest.mark.parametrize(("module", "allow", "allowed"), [
    ("support", ["support"], True),
    ("support.agents", ["support"], False),
    ("support", ["support.*"], False),
    ("support.agents", ["support.*"], True),
    ("support.agents.billing", ["support.*"], True),
    ("supportive", ["support*"], True),
    ("support.agents", ["support.agent?"], True),
    ("other", ["support", "support.*"], False),
    ("os", [], False),
])
def test_allowlist_patterns(module: str, allow: list[str], allowed: bool) -> None:
    from counterpoint.specs import is_allowed

    assert is_allowed(module, allow) is allowed


@pytest.mark.parametrize("allow", ["spec_agents", None, [""], [3], [" x"]])
def test_a_bad_allowlist_is_the_callers_error(allow: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="allow"):
        cp.load({"agents": {"a": "spec_agents:upper"}}, allow=allow)


# ---- the schema and the example ---------------------------------------------------------


def test_the_published_schema_is_generated_from_the_grammar() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), \
        "run: python scripts/gen_spec_schema.py"
    jsonschema.Draft202012Validator.check_schema(cp.spec_schema())
    assert cp.spec_schema() == json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def test_the_schema_refuses_what_the_loader_refuses() -> None:
    bad = [
        {"agents": {}},
        {"agents": {"a": {"use": "no-colon"}}},
        {"agents": {"a": {"use": "m:_private"}}},
        {"agents": {"a": {"use": "m:f", "retry": {"max_attempts": 0}}}},
        {"agents": {"a": {"use": "m:f", "colour": 1}}},
        {"agents": {"a": {"pattern": "parallel"}}},
        {"pattern": "loop", "worker": "m:f"},
        {"agents": {"a": {"pattern": "sequential", "agents": ["m:f"], "after": "x",
                          "graph": {"agents": {"b": "m:f"}}}}},
    ]
    for spec in bad:
        assert not VALIDATOR.is_valid(spec), spec


def spec_files() -> list[Path]:
    return sorted([*EXAMPLES.glob("*.yaml"), *EXAMPLES.glob("*.json"),
                   *(ROOT / "docs").glob("*.yaml")])


@pytest.mark.parametrize("path", spec_files(), ids=lambda p: p.name)
def test_every_spec_in_the_repository_validates(path: Path) -> None:
    assert_valid(yaml.safe_load(path.read_text()))


def test_the_customer_message_spec_matches_the_example_graph(monkeypatch: Any) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import customer_message

    app = cp.load(EXAMPLES / "customer_message.yaml", allow=["customer_message"])
    assert app.agents == customer_message.build_graph().agents
    assert app.describe()["nodes"] == customer_message.build_graph().describe()["nodes"]
    assert app.invoke(customer_message.MESSAGE) == \
        customer_message.run_sequentially(customer_message.MESSAGE)


def test_the_customer_message_spec_runs_with_one_command() -> None:
    result = subprocess.run([sys.executable, str(EXAMPLES / "run_spec.py")],
                            capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    assert "Dear Dana Whitfield" in result.stdout
    assert "1. Delivery address: Your parcel was intercepted" in result.stdout


def doc_specs() -> list[tuple[str, str]]:
    blocks = []
    for path in (ROOT / "docs" / "specs.md", ROOT / "README.md"):
        for index, block in enumerate(path.read_text().split("```yaml\n")[1:]):
            blocks.append((f"{path.name}#{index}", block.split("```")[0]))
    return blocks


@pytest.mark.parametrize(("name", "text"), doc_specs(), ids=[n for n, _ in doc_specs()])
def test_the_specs_in_the_docs_validate(name: str, text: str) -> None:
    assert_valid(yaml.safe_load(text))
