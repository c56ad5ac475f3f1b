"""Malformed specs: each one is refused with a SpecError naming the file, the path
inside the spec and the fix; a fuzzer checks that no mutation of a valid spec crashes
the loader, imports a module outside the allowlist or evaluates code."""

from __future__ import annotations

import builtins
import copy
import json
import math
import pickle
import random
import sys
from pathlib import Path
from typing import Any

import pytest
import spec_agents  # noqa: F401  (imported once, as the loader would)
import yaml

import counterpoint as cp

ALLOW = ["spec_agents"]
DELETE = object()

BASE: dict[str, Any] = {
    "name": "triage",
    "breakers": {"crm": {"failures": 3}},
    "limits": {"llm": {"max_concurrent": 2}},
    "agents": {
        "classify": {"use": "spec_agents:classify"},
        "billing": {"use": "spec_agents:billing", "after": "classify",
                    "retry": {"max_attempts": 3}, "timeout": 20, "breaker": "crm",
                    "limits": "llm"},
        "address": {"use": "spec_agents:address", "after": "classify", "priority": 10},
        "reply": {"use": "spec_agents:reply", "after": ["billing", "address"],
                  "review": {"below": 0.8, "reviewer": "spec_agents:approve_all"}},
    },
}


def edit(*changes: tuple[str, Any]) -> dict[str, Any]:
    """BASE with ``("agents.billing.timeout", value)`` changes (DELETE removes a key)."""
    spec = copy.deepcopy(BASE)
    for dotted, value in changes:
        *parents, last = dotted.split(".")
        node = spec
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return spec


def test_the_base_spec_is_valid() -> None:
    app = cp.load(BASE, allow=ALLOW)
    assert app.invoke("billing address") == \
        "address=address(billing address) + billing=billing(billing address)"


# (id, spec, path, fragment of the problem, fragment of the hint)
CASES: list[tuple[str, Any, str, str, str]] = [
    ("retry-zero", edit(("agents.billing.retry.max_attempts", 0)),
     "agents.billing.retry.max_attempts", "must be >= 1, got 0", "from 1"),
    ("retry-text", edit(("agents.billing.retry.max_attempts", "three")),
     "agents.billing.retry.max_attempts", "must be an integer, got 'three'", "whole number"),
    ("retry-typo", edit(("agents.billing.retry", {"max_attemps": 3})),
     "agents.billing.retry.max_attemps", "unknown key 'max_attemps' in retry",
     "did you mean 'max_attempts'?"),
    ("retry-jitter", edit(("agents.billing.retry", {"jitter": 2})),
     "agents.billing.retry.jitter", "must be <= 1, got 2", "number >= 0 and <= 1"),
    ("retry-on-typo", edit(("agents.billing.retry", {"retry_on": ["ValueErorr"]})),
     "agents.billing.retry.retry_on[0]", "'ValueErorr' is not a built-in or counterpoint",
     "did you mean 'ValueError'?"),
    ("policy-typo", edit(("agents.billing.retrys", 2)),
     "agents.billing.retrys", "unknown key 'retrys' in an agent", "did you mean 'retry'?"),
    ("timeout-zero", edit(("agents.billing.timeout", 0)),
     "agents.billing.timeout", "must be > 0, got 0", "number > 0"),
    ("timeout-text", edit(("agents.billing.timeout", "20s")),
     "agents.billing.timeout", "must be a number of seconds, got '20s'", "e.g."),
    ("timeout-nan", edit(("agents.billing.timeout", math.nan)),
     "agents.billing.timeout", "must be a finite number", "e.g."),
    ("priority-big", edit(("agents.address.priority", 2**40)),
     "agents.address.priority", "must be <= 2147483647", "integer from -2147483648"),
    ("priority-float", edit(("agents.address.priority", 1.5)),
     "agents.address.priority", "must be an integer, got 1.5", "whole number"),
    ("priority-bool", edit(("agents.address.priority", True)),
     "agents.address.priority", "must be an integer, got True (a boolean)", "whole number"),
    ("dispatch", edit(("agents.address.dispatch", "threads")),
     "agents.address.dispatch", "'threads' (a string) is not one of", "did you mean 'thread'?"),
    ("join", edit(("agents.reply.join", "every")),
     "agents.reply.join", "is not one of 'all', 'any'", "use one of"),
    ("node-on-error", edit(("agents.reply.on_error", "ignore")),
     "agents.reply.on_error", "'ignore' (a string) is not one of", "'inherit'"),
    ("after-unknown", edit(("agents.billing.after", "clasify")),
     "agents.billing.after", "'clasify' is not an agent of this graph",
     "did you mean 'classify'?"),
    ("after-unknown-in-list", edit(("agents.reply.after", ["billing", "adress"])),
     "agents.reply.after[1]", "'adress' is not an agent of this graph",
     "did you mean 'address'?"),
    ("after-type", edit(("agents.reply.after", {"billing": 1})),
     "agents.reply.after", "must be a non-empty string, got a mapping", "text"),
    ("after-itself", edit(("agents.billing.after", "billing")),
     "agents.billing.after", "agent 'billing' comes after itself", "remove it"),
    ("cycle", edit(("agents.classify.after", "reply")),
     "agents.", "the agents form a cycle", "pattern: loop"),
    ("missing-use", edit(("agents.billing", {"after": "classify"})),
     "agents.billing", "the agent is missing `use`", "use: 'module:attribute'"),
    ("use-dotted", edit(("agents.billing.use", "spec_agents.billing")),
     "agents.billing.use", "is not an import path", "write 'spec_agents:billing'"),
    ("use-empty-attr", edit(("agents.billing.use", "spec_agents:")),
     "agents.billing.use", "is not an import path", "module:attribute"),
    ("use-private", edit(("agents.billing.use", "spec_agents:_private_agent")),
     "agents.billing.use", "names the private attribute '_private_agent'", "public"),
    ("use-dunder", edit(("agents.billing.use", "spec_agents:billing.__globals__")),
     "agents.billing.use", "names the private attribute '__globals__'", "public"),
    ("use-number", edit(("agents.billing.use", 7)),
     "agents.billing.use", "must be an import path 'module:attribute'", "e.g."),
    ("use-and-pattern", edit(("agents.billing.pattern", "sequential")),
     "agents.billing", "the agent gives `use` and `pattern`", "keep one"),
    ("agent-not-mapping", edit(("agents.billing", ["spec_agents:billing"])),
     "agents.billing", "an agent must be an import path", "use:"),
    ("pattern-typo", edit(("agents.billing", {"pattern": "paralel", "branches": {}})),
     "agents.billing.pattern", "'paralel' (a string) is not one of",
     "did you mean 'parallel'?"),
    ("pattern-missing-param", edit(("agents.billing", {"pattern": "parallel"})),
     "agents.billing", "parallel is missing `branches`", "add branches:"),
    ("pattern-unknown-param", edit(("agents.billing", {
        "pattern": "loop", "worker": "spec_agents:draft", "evaluator": "spec_agents:evaluate",
        "max_iteration": 3})),
     "agents.billing.max_iteration", "unknown key 'max_iteration'",
     "did you mean 'max_iterations'?"),
    ("member-with-after", edit(("agents.billing", {
        "pattern": "parallel", "branches": {"x": {"use": "spec_agents:yes", "after": "y"}}})),
     "agents.billing.branches.x.after", "unknown key 'after'", "wires an agent into a graph"),
    ("fallback-with-policy", edit(("agents.billing.fallback", {
        "use": "spec_agents:other", "retry": 2})),
     "agents.billing.fallback.retry", "unknown key 'retry'", "a fallback takes no policies"),
    ("merge-policy", edit(("agents.billing", {
        "pattern": "parallel", "branches": {"x": "spec_agents:yes"}, "merge": "majorty"})),
     "agents.billing.merge", "'majorty' (a string) is not one of", "did you mean 'majority'?"),
    ("sequential-empty", edit(("agents.billing", {"pattern": "sequential", "agents": []})),
     "agents.billing.agents", "must list at least 1 of agents", "add agents"),
    ("breaker-unknown", edit(("agents.billing.breaker", "crn")),
     "agents.billing.breaker", "there is no breaker named 'crn'", "did you mean 'crm'?"),
    ("limit-unknown", edit(("agents.billing.limits", ["llm", "gpu"])),
     "agents.billing.limits[1]", "there is no limit named 'gpu'",
     "declare it under the top-level `limits:`"),
    ("breaker-section", edit(("breakers.crm.failures", -1)),
     "breakers.crm.failures", "must be >= 1, got -1", "from 1"),
    ("limit-settings", edit(("limits.llm", {})),
     "limits.llm", "limit needs at least one of `max_concurrent`, `per_second`",
     "add max_concurrent:"),
    ("review-below", edit(("agents.reply.review.below", 1.5)),
     "agents.reply.review.below", "must be <= 1, got 1.5", "number > 0 and <= 1"),
    ("review-reviewer", edit(("agents.reply.review.reviewer", 42)),
     "agents.reply.review.reviewer", "must be an import path 'module:attribute' naming the "
     "reviewer", "e.g."),
    ("review-approvers-string", edit(("agents.reply.review.approvers", "support-leads")),
     "agents.reply.review.approvers", "must be a list of role names, got 'support-leads'",
     "write [role names, ...]"),
    ("review-approvers-empty", edit(("agents.reply.review.approvers", [])),
     "agents.reply.review.approvers", "must list at least 1 of role names", "add role names"),
    ("review-approvers-blank", edit(("agents.reply.review.approvers", ["leads", ""])),
     "agents.reply.review.approvers[1]", "must be a non-empty string, got ''", "write some text"),
    ("review-approvers-number", edit(("agents.reply.review.approvers", [7])),
     "agents.reply.review.approvers[0]", "must be a non-empty string, got 7", "write some text"),
    ("review-approvers-twice", edit(("agents.reply.review.approvers", ["leads", "leads"])),
     "agents.reply.review", "approvers lists a role twice", ""),
    ("agents-list", edit(("agents", [])),
     "agents", "must be a mapping of agents, got a list", "name: value"),
    ("agents-empty", edit(("agents", {})),
     "agents", "must have at least 1 entry", "add agents"),
    ("agents-missing", edit(("agents", DELETE)),
     "", "the graph is missing `agents`", "add agents:"),
    ("agent-name-not-string", edit(("agents", {True: {"use": "spec_agents:upper"}})),
     "agents", "has the name True (a boolean), but names must be non-empty strings",
     "quote the name"),
    ("root-typo", edit(("agent", {})),
     "agent", "unknown key 'agent' in the graph", "did you mean 'agents'?"),
    ("root-on-error", edit(("on_error", "stop")),
     "on_error", "'stop' (a string) is not one of 'fail', 'continue'", "use one of"),
    ("budget", edit(("budget", {"tokens": -5})),
     "budget.tokens", "must be > 0, got -5", "number > 0"),
    ("deadline", edit(("deadline", "soon")),
     "deadline", "must be a number of seconds", "e.g."),
    ("nested-sections", edit(("agents.billing", {"graph": {
        "breakers": {}, "agents": {"x": "spec_agents:upper"}}})),
     "agents.billing.graph.breakers", "unknown key 'breakers' in a nested graph",
     "declared once, at the top level"),
    ("limit-typo", edit(("limits.llm", {"max_concurrency": 2})),
     "limits.llm.max_concurrency", "unknown key 'max_concurrency' in limit",
     "did you mean 'max_concurrent'?"),
    ("root-pattern-typo", {"pattern": "consensus", "agent": ["spec_agents:yes"]},
     "agent", "unknown key 'agent' in the spec", "did you mean 'agents'?"),
    # Found after the checks, while importing and building.
    ("module-missing", edit(("agents.billing.use", "spec_agents_gone:billing")),
     "agents.billing.use", "there is no module 'spec_agents_gone' to import", "sys.path"),
    ("attribute-missing", edit(("agents.billing.use", "spec_agents:bilings")),
     "agents.billing.use", "spec_agents has no attribute 'bilings'",
     "did you mean 'billing'?"),
    ("not-an-agent", edit(("agents.billing.use", "spec_agents:NOT_AN_AGENT")),
     "agents.billing", "agent must be a function, an `async def` function", ""),
    ("quorum-without-quorum-vote", edit(("agents.billing", {
        "pattern": "consensus", "agents": ["spec_agents:yes"], "quorum": 2})),
     "agents.billing", "consensus: quorum= is only used with the 'quorum' policy", ""),
    ("router-priorities", edit(("agents.billing", {
        "pattern": "router", "classify": "spec_agents:classify",
        "routes": {"billing": "spec_agents:billing"}, "priorities": {"shipping": 1}})),
     "agents.billing", "router: priorities names 'shipping'", ""),
]


@pytest.mark.parametrize(("spec", "path", "problem", "hint"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_malformed_spec_is_refused_with_its_path_and_fix(spec: Any, path: str, problem: str,
                                                         hint: str) -> None:
    with pytest.raises(cp.SpecError) as caught:
        cp.load(spec, allow=[*ALLOW, "spec_agents_*"], source="triage.yaml")
    error = caught.value
    assert error.source == "triage.yaml"
    assert error.path.startswith(path) if path.endswith(".") else error.path == path, str(error)
    assert problem in error.problem, str(error)
    assert hint in error.hint, str(error)
    where = f"{path}: " if error.path else ""
    assert str(error).startswith(f"triage.yaml: {where if not path.endswith('.') else ''}")
    assert isinstance(error, cp.GraphError)


def test_there_are_enough_malformed_specs() -> None:
    assert len(CASES) >= 30
    assert len({case[0] for case in CASES}) == len(CASES)


def test_the_message_reads_file_path_problem_fix() -> None:
    with pytest.raises(cp.SpecError) as caught:
        cp.load(edit(("agents.billing.retry.max_attempts", 0)), allow=ALLOW,
                source="triage.yaml")
    assert str(caught.value) == ("triage.yaml: agents.billing.retry.max_attempts: must be "
                                 ">= 1, got 0; use an integer from 1 to 4294967295")


def test_every_problem_of_the_checks_is_reported() -> None:
    spec = edit(("agents.billing.timeout", -1), ("agents.address.priority", "high"),
                ("agents.reply.after", ["billing", "nobody"]), ("agents.extra", {
                    "use": "os:system"}))
    with pytest.raises(cp.SpecError) as caught:
        cp.load(spec, allow=ALLOW, source="t.json")
    error = caught.value
    assert [p.path for p in error.problems] == [
        "agents.billing.timeout", "agents.address.priority", "agents.reply.after[1]"]
    assert str(error).count("\n") == 3
    assert "2 more problem(s) in t.json:\n  agents.address.priority: must be an integer" in \
        str(error)


def test_spec_errors_pickle_with_their_fields() -> None:
    with pytest.raises(cp.SpecError) as caught:
        cp.load(edit(("agents.billing.timeout", -1), ("agents.reply.join", "x")), allow=ALLOW)
    error = caught.value
    copy_ = pickle.loads(pickle.dumps(error))
    assert type(copy_) is cp.SpecError and str(copy_) == str(error)
    for name in ("source", "path", "problem", "hint", "problems", "line", "column", "node"):
        assert getattr(copy_, name) == getattr(error, name)
    assert isinstance(copy_.problems[0], cp.SpecProblem)


def test_an_import_error_is_the_cause(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "spec_broken_module.py").write_text("raise RuntimeError('no config')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(cp.SpecError) as caught:
        cp.load({"agents": {"a": "spec_broken_module:agent"}}, allow=["spec_broken_module"])
    assert caught.value.path == "agents.a"
    assert "importing module 'spec_broken_module' raised RuntimeError: no config" in \
        caught.value.problem
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_a_name_taken_by_another_limit_is_refused() -> None:
    cp.Limit("spec-taken", max_concurrent=5)
    spec = edit(("limits", {"spec-taken": {"max_concurrent": 1}}),
                ("agents.billing.limits", "spec-taken"))
    with pytest.raises(cp.SpecError) as caught:
        cp.load(spec, allow=ALLOW)
    assert caught.value.path == "limits.spec-taken"
    assert "already exists with other settings" in caught.value.problem
    assert "use the same settings or another name" in caught.value.hint


# ---- files ------------------------------------------------------------------------------

FILES = [
    ("bad.json", '{"agents": {"a": {"use": "spec_agents:upper"},}}', 1, 47,
     "invalid JSON: Expecting property name"),
    ("bad.yaml", "agents:\n  a: {use: spec_agents:upper\n  b: 1\n", 3, 4, "invalid YAML"),
    ("dup.yaml", "agents:\n  a: {use: 'spec_agents:upper'}\n  a: {use: 'spec_agents:lower'}\n",
     3, 3, "the key 'a' appears twice"),
    ("dup.json", '{"agents": {"a": "spec_agents:upper", "a": "spec_agents:lower"}}', None,
     None, "the key 'a' appears twice"),
    ("tabs.yaml", "agents:\n\ta: 1\n", 2, 1, "invalid YAML"),
]


@pytest.mark.parametrize(("name", "text", "line", "column", "problem"), FILES,
                         ids=[f[0] for f in FILES])
def test_syntax_errors_give_the_line(tmp_path: Path, name: str, text: str, line: int | None,
                                     column: int | None, problem: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(cp.SpecError) as caught:
        cp.load(path, allow=ALLOW)
    error = caught.value
    assert error.source == str(path)
    assert (error.line, error.column) == (line, column)
    assert problem in error.problem
    if line is not None:
        assert str(error).startswith(f"{path}:{line}:{column}: ")


def test_file_problems(tmp_path: Path) -> None:
    with pytest.raises(cp.SpecError, match="cannot read the spec"):
        cp.load(tmp_path / "missing.yaml", allow=ALLOW)
    (tmp_path / "graph.txt").write_text("{}")
    with pytest.raises(cp.SpecError, match=r"'\.txt' is not a spec file type; name the file"):
        cp.load(tmp_path / "graph.txt", allow=ALLOW)
    (tmp_path / "latin.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(cp.SpecError, match="not UTF-8"):
        cp.load(tmp_path / "latin.yaml", allow=ALLOW)
    (tmp_path / "scalar.yaml").write_text("just text\n")
    with pytest.raises(cp.SpecError, match="a spec must be a mapping, got 'just text'"):
        cp.load(tmp_path / "scalar.yaml", allow=ALLOW)


def test_recursive_and_exploding_yaml_is_refused(tmp_path: Path) -> None:
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("agents:\n  a: &a {pattern: sequential, agents: [*a]}\n")
    with pytest.raises(cp.SpecError, match="nests deeper than"):
        cp.load(recursive, allow=ALLOW)
    lines = ["s0: &s0 {pattern: sequential, agents: ['spec_agents:upper']}"]
    for level in range(1, 20):
        previous = f"*s{level - 1}"
        lines.append(f"s{level}: &s{level} {{pattern: sequential, agents: "
                     f"[{', '.join([previous] * 8)}]}}")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("x-anchors:\n" + "\n".join("  " + line for line in lines) +
                    "\nagents:\n  a: *s19\n")
    with pytest.raises(cp.SpecError, match="more than 20000 values"):
        cp.load(bomb, allow=ALLOW)


# ---- the fuzzer -------------------------------------------------------------------------


@pytest.fixture
def traps(tmp_path: Path, monkeypatch: Any) -> Path:
    """A module on sys.path whose import writes a marker."""
    marker = tmp_path / "imported.marker"
    (tmp_path / "spec_fuzz_trap.py").write_text(
        f"with open({str(marker)!r}, 'w') as marker:\n    marker.write('imported')\n"
        "def agent(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # What the first compile and the first file read import lazily, not for the spec.
    cp.load(BASE, allow=ALLOW)
    b"x".decode("utf-8-sig")
    yield marker
    sys.modules.pop("spec_fuzz_trap", None)


class Evaluated(BaseException):
    """Raised by the trapped eval/exec/compile (a BaseException: no handler of the
    loader may swallow it)."""


def load_trapped(spec: Any, **options: Any) -> cp.CompiledGraph:
    """cp.load with eval, exec and compile replaced by traps while it runs."""

    def evaluated(*args: Any, **kwargs: Any) -> Any:
        raise Evaluated(f"the loader evaluated code: {args!r:.200}")

    saved = {name: getattr(builtins, name) for name in ("eval", "exec", "compile")}
    for name in saved:
        setattr(builtins, name, evaluated)
    try:
        return cp.load(spec, **options)
    finally:
        for name, function in saved.items():
            setattr(builtins, name, function)


JUNK: list[Any] = [
    None, True, 0, -1, 1, 2**70, 0.5, -0.0, math.inf, math.nan, "", "x", "a" * 2000,
    "os:system", "spec_fuzz_trap:agent", "spec_fuzz_trap.sub:agent", "builtins:eval",
    "spec_agents:upper", "spec_agents:_private_agent", "spec_agents:billing.__globals__",
    "spec_agents:nope", "spec_agents:NOT_AN_AGENT", "spec_agents:Drafter", "ValueError",
    "classify", "billing", "crm", "llm", "majority", "sequential", "parallel", "loop",
    "__import__('os').system('touch /tmp/pwned')", "{{7*7}}", "!!python/object:os.system",
    [], {}, [None], ["classify"], ["classify", "classify"], ["billing", "reply"],
    {"use": "os:system"}, {"use": "spec_fuzz_trap:agent"}, {"use": "spec_agents:upper"},
    {"pattern": "parallel", "branches": {"x": "spec_fuzz_trap:agent"}},
    {"pattern": "sequential", "agents": ["spec_agents:upper", {"graph": {"agents": {}}}]},
    {"graph": {"agents": {"x": "spec_agents:upper"}}}, {"max_attempts": 2},
    {"failures": 0}, {"max_concurrent": 1}, {"below": 2}, {"judge": "spec_agents:first_value"},
    {1: 2}, {None: "x"}, {"agents": "x"}, {"": ""},
]
KEYS = ["use", "pattern", "graph", "after", "priority", "dispatch", "join", "on_error",
        "retry", "timeout", "fallback", "breaker", "limits", "review", "agents", "branches",
        "merge", "max_attempts", "retry_on", "below", "reviewer", "name", "x", "", "__class__"]


def _containers(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = []
    if isinstance(value, (dict, list)):
        found.append(path)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            found.extend(_containers(item, (*path, key)))
    return found


def _at(spec: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        spec = spec[key]
    return spec


def mutate(spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    for _ in range(rng.randint(1, 3)):
        container = _at(spec, rng.choice(_containers(spec)))
        keys = list(container) if isinstance(container, dict) else list(range(len(container)))
        action = rng.random()
        if keys and action < 0.45:
            container[rng.choice(keys)] = copy.deepcopy(rng.choice(JUNK))
        elif keys and action < 0.6:
            del container[rng.choice(keys)]
        elif isinstance(container, dict) and action < 0.8:
            container[rng.choice(KEYS)] = copy.deepcopy(rng.choice(JUNK))
        elif isinstance(container, dict) and keys and action < 0.9:
            key = rng.choice(keys)
            if isinstance(key, str):
                typo = key[:-1] if len(key) > 1 and rng.random() < 0.5 else key + "s"
                container[typo] = container.pop(key)
        elif isinstance(container, list):
            container.append(copy.deepcopy(rng.choice(JUNK)))
    return spec


def _assert_safe(marker: Path) -> None:
    assert not marker.exists(), "a module outside the allowlist was imported"
    assert "spec_fuzz_trap" not in sys.modules


def test_fuzzed_specs_fail_only_with_spec_errors(traps: Path) -> None:
    rng = random.Random(20261201)
    outcomes = {"loaded": 0, "refused": 0}
    for case in range(500):
        spec = mutate(BASE, rng)
        try:
            app = load_trapped(spec, allow=ALLOW, source=f"case-{case}")
        except cp.SpecError as exc:
            outcomes["refused"] += 1
            assert str(exc).startswith(f"case-{case}:")
            assert exc.problems and all(isinstance(p, cp.SpecProblem) for p in exc.problems)
            assert "looks like a bug" not in str(exc), f"case {case}: {exc}\n{spec!r:.2000}"
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc}\n{spec!r:.2000}")
        else:
            outcomes["loaded"] += 1
            assert isinstance(app, cp.CompiledGraph)
        _assert_safe(traps)
    assert outcomes["refused"] > 300 and outcomes["loaded"] > 10, outcomes


def test_fuzzed_files_fail_only_with_spec_errors(traps: Path, tmp_path: Path) -> None:
    rng = random.Random(7)
    texts = {".yaml": yaml.safe_dump(BASE, sort_keys=False), ".json": json.dumps(BASE)}
    alphabet = "{}[]:,-'\"&*!#|> \n\tx0.%@`\\"
    for case in range(200):
        suffix = rng.choice(list(texts))
        text = list(texts[suffix])
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(text))
            if rng.random() < 0.5:
                text[position] = rng.choice(alphabet)
            else:
                del text[position]
        path = tmp_path / f"case{case}{suffix}"
        path.write_text("".join(text))
        try:
            load_trapped(path, allow=ALLOW)
        except cp.SpecError as exc:
            assert "looks like a bug" not in str(exc), f"case {case}: {exc}"
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc}\n{''.join(text)}")
        _assert_safe(traps)
