"""The command line (counterpoint.cli), driven in subprocesses as users run it:
``python -m counterpoint ...`` with the test environment. Specs are written next to a
copy of cli_agents.py, which the CLI imports from the spec's directory.

The commands built on the governance API (review roles, audit, usage, prune) are
tested in test_cli_review.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.timeout(120)

SIMPLE = """\
name: simple
agents:
  classify: {use: "cli_agents:classify"}
  answer:   {use: "cli_agents:answer", after: classify}
"""
FAILING = """\
agents:
  classify: {use: "cli_agents:classify"}
  boom:     {use: "cli_agents:fail", after: classify}
"""
REVIEW = """\
agents:
  classify: {use: "cli_agents:classify"}
  draft:    {use: "cli_agents:draft", after: classify, review: {below: 0.8}}
  send:     {use: "cli_agents:send", after: draft}
"""
FLAKY = """\
agents:
  classify: {use: "cli_agents:classify"}
  flaky:    {use: "cli_agents:flaky", after: classify}
  answer:   {use: "cli_agents:answer", after: flaky}
"""
NESTED = """\
agents:
  classify: {use: "cli_agents:classify"}
  both:
    pattern: parallel
    branches: {loud: "cli_agents:shout", excited: "cli_agents:exclaim"}
    after: classify
  inner:
    graph:
      agents:
        first:  "cli_agents:shout"
        second: {use: "cli_agents:exclaim", after: first}
    after: classify
  answer: {use: "cli_agents:exclaim", after: [both, inner]}
"""


def cli(*args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``counterpoint ARGS`` in a subprocess (stdin closed unless given)."""
    return subprocess.run(
        [sys.executable, "-m", "counterpoint", *args], cwd=cwd, text=True,
        capture_output=True, timeout=timeout, env=env,
        **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}))


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The error a failed command printed: one line on stderr, no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("counterpoint: error: "), proc.stderr
    return lines[0]


def json_error(proc: subprocess.CompletedProcess[str]) -> dict:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    error = json.loads(lines[0])
    assert error["exit_code"] == proc.returncode
    assert error["error"] and error["kind"]
    return error


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A directory with the test agents and the specs above."""
    shutil.copy(HERE / "cli_agents.py", tmp_path / "cli_agents.py")
    for name, text in [("simple", SIMPLE), ("failing", FAILING), ("review", REVIEW),
                       ("flaky", FLAKY), ("nested", NESTED)]:
        (tmp_path / f"{name}.yaml").write_text(text)
    return tmp_path


def run_args(spec: str, *more: str) -> list[str]:
    return ["run", spec, "--allow", "cli_agents", *more]


# ---- the program -------------------------------------------------------------------------

def test_help_lists_every_command_and_the_exit_codes(tmp_path):
    proc = cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for command in ("run", "runs", "graph", "audit", "usage"):
        assert re.search(rf"^\s+{command}\s", proc.stdout, re.M), command
    for code in ("0", "1", "2", "3", "4", "5", "6", "70"):
        assert re.search(rf"^\s+{code}\s+\S", proc.stdout, re.M), code
    runs = cli("runs", "--help", cwd=tmp_path)
    for action in ("list", "show", "resume", "approve", "reject", "answer", "prune"):
        assert action in runs.stdout


def test_version(tmp_path):
    proc = cli("--version", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.startswith("counterpoint ")


def test_console_script_is_declared_and_resolves_to_the_program():
    with open(REPO / "pyproject.toml", "rb") as handle:
        scripts = tomllib.load(handle)["project"]["scripts"]
    module, _, name = scripts["counterpoint"].partition(":")
    import importlib

    from counterpoint.cli import program

    assert getattr(importlib.import_module(module), name) is program


def test_the_program_never_imports_langchain():
    # compile() builds plain CompiledGraphs in a CLI process, even with langchain-core
    # installed: importing it would cost more than most runs.
    probe = ("import sys\n"
             "from counterpoint.cli import program\n"
             "sys.argv = ['counterpoint', 'graph', sys.argv[1], '--allow', 'customer_message']\n"
             "code = program()\n"
             "assert code == 0, code\n"
             "assert not [m for m in sys.modules if m.startswith('langchain')]\n")
    spec = REPO / "examples" / "customer_message.yaml"
    proc = subprocess.run([sys.executable, "-c", probe, str(spec)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_python_m_counterpoint_cli_works_too(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "counterpoint.cli", "--version"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("counterpoint ")


def test_importing_counterpoint_does_not_import_the_cli(tmp_path):
    code = "import sys, counterpoint; print(any(m.startswith('counterpoint.cli') for m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


@pytest.mark.parametrize("args", [["bogus"], ["run"], ["runs", "list"], ["run", "x.yaml", "--deadline", "-1"]])
def test_usage_errors_exit_2_in_one_line(tmp_path, args):
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    one_error_line(proc)
    proc = cli(*args, "--json", cwd=tmp_path)
    assert proc.returncode == 2
    assert json_error(proc)["kind"] == "usage"
    assert proc.stdout == ""


# ---- run ---------------------------------------------------------------------------------

def test_run_inline_json_prints_the_result(work):
    proc = cli(*run_args("simple.yaml", "--input", '{"text": "I was charged twice"}'), cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "billing: I was charged twice\n"
    assert re.match(r"succeeded in [\d.]+ (ms|s) \(2 agents\)", proc.stderr)


def test_run_json_document(work):
    proc = cli(*run_args("simple.yaml", "--input", '"hello"', "--json"), cwd=work)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "succeeded"
    assert doc["output"] == "other: hello"
    assert doc["run_key"] is None and doc["error"] is None
    assert list(doc["agents"]) == ["classify", "answer"]
    assert doc["agents"]["classify"]["output"] == {"text": "hello", "intent": "other"}
    assert doc["agents"]["answer"]["status"] == "succeeded"
    assert proc.stderr == ""


def test_run_input_from_a_file(work):
    (work / "ticket.json").write_text('{"text": "charged twice", "id": 7}')
    proc = cli(*run_args("simple.yaml", "--input", "@ticket.json"), cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "billing: charged twice\n"


@pytest.mark.parametrize("flag", ["-", "@-"])
def test_run_input_from_stdin(work, flag):
    proc = cli(*run_args("simple.yaml", "--input", flag), cwd=work,
               stdin='{"text": "from stdin"}')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "other: from stdin\n"


def test_run_raw_text_input(work):
    proc = cli(*run_args("simple.yaml", "--input", "-", "--raw"), cwd=work,
               stdin="I was charged twice\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "billing: I was charged twice\n\n"


def test_run_without_input_runs_on_null_and_does_not_read_stdin(work):
    proc = cli(*run_args("simple.yaml"), cwd=work, stdin='{"text": "ignored"}')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "other: None\n"


@pytest.mark.parametrize("value, message", [
    ("{not json", "--input is not valid JSON"),
    ("@missing.json", "no such file 'missing.json'"),
])
def test_run_bad_input_is_a_usage_error(work, value, message):
    proc = cli(*run_args("simple.yaml", "--input", value), cwd=work)
    assert proc.returncode == 2
    assert message in one_error_line(proc)


def test_run_agent_failure_exits_1_in_one_line(work):
    proc = cli(*run_args("failing.yaml", "--input", '"x"'), cwd=work)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "agent 'boom' failed" in line and "the CRM is down" in line
    assert proc.stdout == ""


def test_run_agent_failure_with_debug_prints_the_traceback(work):
    proc = cli(*run_args("failing.yaml", "--input", '"x"', "--debug"), cwd=work)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr
    assert "RuntimeError: the CRM is down" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("counterpoint: error: agent 'boom'")


def test_run_agent_failure_json(work):
    proc = cli(*run_args("failing.yaml", "--input", '"x"', "--json"), cwd=work)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["status"] == "failed"
    assert doc["agents"]["boom"]["status"] == "failed"
    assert doc["error"]["kind"] == "agent_failed" and doc["error"]["agent"] == "boom"
    error = json_error(proc)
    assert error["kind"] == "agent_failed" and error["agent"] == "boom"


def test_run_deadline_exits_1_as_timed_out(work):
    (work / "slow.yaml").write_text('agents:\n  a: {use: "cli_agents:slow"}\n')
    proc = cli(*run_args("slow.yaml", "--deadline", "0.2", "--json"), cwd=work)
    assert proc.returncode == 1
    assert json_error(proc)["kind"] == "timed_out"


def test_run_budget_exits_1_as_budget_exceeded(work):
    (work / "costly.yaml").write_text(
        'agents:\n  a: {use: "cli_agents:costly"}\n  b: {use: "cli_agents:costly", after: a}\n')
    proc = cli(*run_args("costly.yaml", "--input", "1", "--budget", "tokens=100"), cwd=work)
    assert proc.returncode == 1
    assert "spent its budget (tokens=500)" in one_error_line(proc)
    proc = cli(*run_args("costly.yaml", "--budget", "tokens"), cwd=work)
    assert proc.returncode == 2
    assert "NAME=AMOUNT" in one_error_line(proc)


# ---- bad specs ---------------------------------------------------------------------------

def test_missing_spec_file_exits_4(work):
    proc = cli(*run_args("nope.yaml"), cwd=work)
    assert proc.returncode == 4
    assert "nope.yaml: no such spec file" in one_error_line(proc)


def test_invalid_spec_exits_4_naming_the_file_and_the_path(work):
    (work / "bad.yaml").write_text(
        'agents:\n  a: {use: "cli_agents:classify"}\n  b: {use: "cli_agents:answer", after: nobody}\n')
    proc = cli(*run_args("bad.yaml"), cwd=work)
    assert proc.returncode == 4
    line = one_error_line(proc)
    assert "bad.yaml" in line and "agents.b.after" in line and "nobody" in line
    error = json_error(cli(*run_args("bad.yaml", "--json"), cwd=work))
    assert error["kind"] == "spec" and error["source"] == "bad.yaml"
    assert error["path"] == "agents.b.after"
    assert error["problems"][0]["path"] == "agents.b.after"


def test_spec_syntax_error_names_the_line(work):
    (work / "broken.yaml").write_text("agents:\n  a: {use: [\n")
    proc = cli(*run_args("broken.yaml"), cwd=work)
    assert proc.returncode == 4
    assert re.search(r"broken\.yaml:\d+", one_error_line(proc))


def test_spec_with_several_problems_lists_them_with_json(work):
    (work / "two.yaml").write_text('agents:\n  a: {use: "cli_agents:classify", retry: 0, timeout: -1}\n')
    proc = cli(*run_args("two.yaml"), cwd=work)
    assert proc.returncode == 4
    assert "more problem(s); --json lists them all" in one_error_line(proc)
    error = json_error(cli(*run_args("two.yaml", "--json"), cwd=work))
    assert len(error["problems"]) >= 2


def test_spec_refused_by_the_allowlist_says_how_to_allow(work):
    proc = cli("run", "simple.yaml", cwd=work)
    assert proc.returncode == 4
    line = one_error_line(proc)
    assert "'cli_agents'" in line and "--allow" in line


def test_modules_in_the_current_directory_are_importable(work, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("specs")
    (elsewhere / "s.yaml").write_text(SIMPLE)
    proc = cli(*run_args(str(elsewhere / "s.yaml"), "--input", '"hi"'), cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "other: hi\n"


# ---- --stream ----------------------------------------------------------------------------

def test_stream_prints_events_in_order(work):
    proc = cli(*run_args("simple.yaml", "--input", '"charged"', "--stream"), cwd=work)
    assert proc.returncode == 0, proc.stderr
    events = [line.split()[2:4] for line in proc.stdout.splitlines()
              if re.match(r"\s*[\d.]+ s  ", line)]
    assert events == [["start", "classify"], ["finish", "classify"], ["start", "answer"],
                      ["finish", "answer"], ["end", "-"]]
    times = [float(line.split()[0]) for line in proc.stdout.splitlines()
             if re.match(r"\s*[\d.]+ s  ", line)]
    assert times == sorted(times)
    assert proc.stdout.endswith("\nbilling: charged\n")


def test_stream_json_lines(work):
    proc = cli(*run_args("nested.yaml", "--input", '"hi"', "--stream", "--json"), cwd=work)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [(e["kind"], e.get("agent")) for e in lines]
    assert kinds[0] == ("start", "classify")
    assert kinds[-2] == ("end", None)
    assert lines[-1] == {"kind": "result", "status": "succeeded", "output": lines[-2]["output"]}
    for agent in ("classify", "both", "both/loud", "both/excited", "both/merge", "inner",
                  "inner/first", "inner/second", "answer"):
        assert kinds.index(("start", agent)) < kinds.index(("finish", agent))
    assert kinds.index(("finish", "classify")) < kinds.index(("start", "both/loud"))


def test_stream_failure_ends_with_the_error_event(work):
    proc = cli(*run_args("failing.yaml", "--input", '"x"', "--stream", "--json"), cwd=work)
    assert proc.returncode == 1
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[-2]["kind"] == "error" and lines[-2]["agent"] == "boom"
    assert "the CRM is down" in lines[-2]["error"]
    assert lines[-1]["kind"] == "result" and lines[-1]["status"] == "failed"
    assert json_error(proc)["kind"] == "agent_failed"


# ---- review, runs list / show / resume / approve / reject ----------------------------------

def start_review(work: Path, text: str = "where is my parcel", *more: str) -> str:
    proc = cli(*run_args("review.yaml", "--input", json.dumps({"text": text}),
                         "--store", "runs.db", "--json", *more), cwd=work)
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "needs_review"
    return str(doc["run_key"])


def test_run_paused_for_review_exits_3_with_the_approve_command(work):
    proc = cli(*run_args("review.yaml", "--input", '{"text": "where is it"}',
                         "--store", "runs.db"), cwd=work)
    assert proc.returncode == 3, proc.stderr
    key = re.search(r"Run ([0-9a-f]{32}) needs review", proc.stdout).group(1)
    assert re.search(r"^\s+draft\s+0\.4\s+confidence 0\.4 < 0\.8\s+\{\"reply\"", proc.stdout, re.M)
    assert (f"counterpoint runs approve {key} --store runs.db --spec review.yaml "
            "--allow cli_agents") in proc.stdout
    assert f"counterpoint runs reject {key} --store runs.db" in proc.stdout


ASKING = """\
agents:
  classify: cli_agents:classify
  confirm: {use: "cli_agents:confirm", after: classify}
"""


def test_run_paused_for_input_then_answered(work):
    (work / "asking.yaml").write_text(ASKING)
    proc = cli(*run_args("asking.yaml", "--input", '{"text": "hello"}', "--store", "runs.db"),
               cwd=work)
    assert proc.returncode == 3, proc.stderr
    key = re.search(r"Run ([0-9a-f]{32}) needs input", proc.stdout).group(1)
    assert re.search(r"^\s+confirm\s+\{.*which tone", proc.stdout, re.M), proc.stdout
    assert (f"counterpoint runs answer {key} --answer JSON --store runs.db --spec asking.yaml "
            "--allow cli_agents") in proc.stdout
    listed = cli("runs", "list", "--store", "runs.db", "--status", "needs_input", cwd=work)
    assert key in listed.stdout
    shown = cli("runs", "show", key, "--store", "runs.db", "--json", cwd=work)
    assert json.loads(shown.stdout)["pending_inputs"] == [
        {"agent": "confirm", "question": {"ask": "which tone?", "text": "hello"}}]
    refused = cli("runs", "resume", key, "--store", "runs.db", "--spec", "asking.yaml",
                  "--allow", "cli_agents", cwd=work)
    assert refused.returncode == 3 and "awaits input" in one_error_line(refused)
    wrong = cli("runs", "answer", key, "--agent", "classify", "--answer", '"warm"', "--store",
                "runs.db", "--spec", "asking.yaml", "--allow", "cli_agents", cwd=work)
    assert wrong.returncode == 2 and "asked nothing" in wrong.stderr
    done = cli("runs", "answer", key, "--answer", '"warm"', "--store", "runs.db", "--spec",
               "asking.yaml", "--allow", "cli_agents", cwd=work)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "warm reply to hello"


def test_run_paused_json(work):
    proc = cli(*run_args("review.yaml", "--input", '{"text": "where"}', "--store", "runs.db",
                         "--json"), cwd=work)
    assert proc.returncode == 3
    doc = json.loads(proc.stdout)
    assert doc["pending_reviews"] == [{"agent": "draft", "reason": "confidence 0.4 < 0.8",
                                       "confidence": 0.4, "output": {"reply": "re: where"}}]
    assert doc["commands"]["approve"].startswith(f"counterpoint runs approve {doc['run_key']}")
    assert proc.stderr == ""


def test_stream_paused_for_review(work):
    proc = cli(*run_args("review.yaml", "--input", '{"text": "where"}', "--store", "runs.db",
                         "--stream", "--json"), cwd=work)
    assert proc.returncode == 3, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert ("review", "draft") in [(e["kind"], e.get("agent")) for e in lines]
    assert lines[-1]["status"] == "needs_review" and lines[-1]["run_key"]


def test_review_gate_without_store_is_a_bad_spec(work):
    proc = cli(*run_args("review.yaml", "--input", '"x"'), cwd=work)
    assert proc.returncode == 4
    assert "store" in one_error_line(proc)


def test_runs_list(work):
    paused = start_review(work)
    done = cli(*run_args("review.yaml", "--input", '{"text": "I was charged"}', "--store",
                         "runs.db"), cwd=work)
    assert done.returncode == 0, done.stderr
    proc = cli("runs", "list", "--store", "runs.db", cwd=work)
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert header.split() == ["run", "key", "status", "graph", "created", "updated"]
    assert len(rows) == 2
    assert any(row.startswith(paused) and "needs_review" in row and "just now" in row
               for row in rows)
    listed = json.loads(cli("runs", "list", "--store", "runs.db", "--status", "needs_review",
                            "--json", cwd=work).stdout)
    assert [r["run_key"] for r in listed["runs"]] == [paused]
    assert listed["total"] == 1
    assert set(listed["runs"][0]) == {"run_key", "status", "graph", "created", "updated"}
    limited = json.loads(cli("runs", "list", "--store", "runs.db", "--limit", "1", "--json",
                             cwd=work).stdout)
    assert len(limited["runs"]) == 1 and limited["total"] == 2
    graph = listed["runs"][0]["graph"]
    by_graph = json.loads(cli("runs", "list", "--store", "runs.db", "--graph", graph[:6],
                              "--json", cwd=work).stdout)
    assert len(by_graph["runs"]) == 2
    none = json.loads(cli("runs", "list", "--store", "runs.db", "--graph", "zzz", "--json",
                          cwd=work).stdout)
    assert none["runs"] == []


def test_runs_list_of_a_missing_store_exits_5_and_creates_nothing(work):
    proc = cli("runs", "list", "--store", "missing.db", cwd=work)
    assert proc.returncode == 5
    assert "no run store at missing.db" in one_error_line(proc)
    assert not (work / "missing.db").exists()


def test_runs_list_of_a_file_that_is_not_a_store_exits_5(work):
    (work / "notes.db").write_text("not a database")
    proc = cli("runs", "list", "--store", "notes.db", "--json", cwd=work)
    assert proc.returncode == 5
    assert json_error(proc)["kind"] == "store"


def test_runs_show(work):
    key = start_review(work)
    proc = cli("runs", "show", key, "--store", "runs.db", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"^run key:\s+{key}$", proc.stdout, re.M)
    assert re.search(r"^status:\s+needs_review$", proc.stdout, re.M)
    assert re.search(r"^created:\s+\d{4}-\d\d-\d\d .*\(just now\)$", proc.stdout, re.M)
    assert re.search(r"^\s+classify\s+succeeded\s", proc.stdout, re.M)
    assert re.search(r"^\s+draft\s+needs_review\s+0\.4\s+\{\"reply\".*confidence 0\.4 < 0\.8$",
                     proc.stdout, re.M)
    assert "pending review: draft" in proc.stdout
    assert f"counterpoint runs approve {key} --store runs.db" in proc.stdout
    doc = json.loads(cli("runs", "show", key, "--store", "runs.db", "--json", cwd=work).stdout)
    assert doc["status"] == "needs_review"
    assert doc["input"] == {"text": "where is my parcel"}
    assert doc["agents"]["draft"]["confidence"] == 0.4
    assert doc["pending_reviews"][0]["agent"] == "draft"
    assert doc["pending_reviews"][0]["output"] == {"reply": "re: where is my parcel"}


def test_runs_show_unknown_key_exits_5(work):
    start_review(work)
    proc = cli("runs", "show", "nokey", "--store", "runs.db", cwd=work)
    assert proc.returncode == 5
    assert "no run 'nokey'" in one_error_line(proc)


def test_approve_resumes_the_run_to_success(work):
    key = start_review(work)
    proc = cli("runs", "approve", key, "--store", "runs.db", "--spec", "review.yaml",
               "--allow", "cli_agents", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "sent re: where is my parcel\n"
    shown = json.loads(cli("runs", "show", key, "--store", "runs.db", "--json", cwd=work).stdout)
    assert shown["status"] == "succeeded"
    assert shown["agents"]["draft"]["message"] == "approved by reviewer"
    again = cli("runs", "approve", key, "--store", "runs.db", "--spec", "review.yaml",
                "--allow", "cli_agents", cwd=work)
    assert again.returncode == 5
    assert "awaits no review (status: succeeded)" in one_error_line(again)


def test_approve_with_a_replacement_output(work):
    key = start_review(work)
    proc = cli("runs", "approve", key, "--store", "runs.db", "--spec", "review.yaml",
               "--allow", "cli_agents", "--output", '{"reply": "fixed"}', "--json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "succeeded" and doc["output"] == "sent fixed"
    assert doc["run_key"] == key


def test_reject_fails_the_reviewed_agent(work):
    key = start_review(work)
    proc = cli("runs", "reject", key, "--store", "runs.db", "--spec", "review.yaml",
               "--allow", "cli_agents", "--reason", "wrong tone", cwd=work)
    assert proc.returncode == 1
    assert "wrong tone" in one_error_line(proc)
    shown = json.loads(cli("runs", "show", key, "--store", "runs.db", "--json", cwd=work).stdout)
    assert shown["status"] == "failed"
    assert shown["agents"]["draft"]["status"] == "failed"
    assert "rejected by reviewer: wrong tone" in shown["agents"]["draft"]["message"]


def test_deciding_needs_the_spec(work):
    key = start_review(work)
    for verb in ("approve", "reject", "resume"):
        proc = cli("runs", verb, key, "--store", "runs.db", cwd=work)
        assert proc.returncode == 2
        assert "needs the graph that started it: pass --spec SPEC" in one_error_line(proc)


def test_resume_of_a_run_awaiting_review_exits_3(work):
    key = start_review(work)
    proc = cli("runs", "resume", key, "--store", "runs.db", "--spec", "review.yaml",
               "--allow", "cli_agents", cwd=work)
    assert proc.returncode == 3
    assert f"counterpoint runs approve {key}" in one_error_line(proc)


def test_resume_a_failed_run(work):
    marker = work / "down"
    marker.write_text("")
    env = {**os.environ, "CLI_FLAKY_MARKER": str(marker)}
    proc = cli(*run_args("flaky.yaml", "--input", '"charged"', "--store", "runs.db"),
               cwd=work, env=env)
    assert proc.returncode == 1
    line = one_error_line(proc)
    key = re.search(r"\(run ([0-9a-f]{32})\)", line).group(1)
    marker.unlink()
    proc = cli("runs", "resume", key, "--store", "runs.db", "--spec", "flaky.yaml",
               "--allow", "cli_agents", "--json", cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["output"] == "billing: charged"
    assert doc["agents"]["classify"]["restored"] is True
    assert doc["agents"]["flaky"]["restored"] is False


def test_resume_with_another_graph_exits_5(work):
    key = start_review(work)
    proc = cli("runs", "approve", key, "--store", "runs.db", "--spec", "simple.yaml",
               "--allow", "cli_agents", cwd=work)
    assert proc.returncode == 5
    assert "different graph" in one_error_line(proc)


def test_prune_asks_for_confirmation_when_it_cannot_ask(work):
    done = cli(*run_args("simple.yaml", "--store", "runs.db"), cwd=work)
    assert done.returncode == 0, done.stderr
    proc = cli("runs", "prune", "--store", "runs.db", cwd=work)
    assert proc.returncode == 2
    assert "confirm with --yes" in one_error_line(proc)
    assert len(json.loads(cli("runs", "list", "--store", "runs.db", "--json",
                              cwd=work).stdout)["runs"]) == 1


def test_runs_and_prune_keep_on_either_store(work, stores):
    store = stores.location()
    for _ in range(3):
        done = cli(*run_args("simple.yaml", "--store", store), cwd=work)
        assert done.returncode == 0, done.stderr
    listed = json.loads(cli("runs", "list", "--store", store, "--json", cwd=work).stdout)
    newest = [run["run_key"] for run in listed["runs"]]
    assert len(newest) == 3
    proc = cli("runs", "prune", "--store", store, "--keep", "1", "--json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["deleted"] == 2
    left = json.loads(cli("runs", "list", "--store", store, "--json", cwd=work).stdout)
    assert [run["run_key"] for run in left["runs"]] == newest[:1]


# ---- graph -------------------------------------------------------------------------------

MERMAID_NODE = re.compile(r'^\s*(\w+)\["(.*)"\]$')
MERMAID_EDGE = re.compile(r"^\s*(\w+) (-->|-\.->|-\. again \.->) (\w+)$")


def test_graph_mermaid_has_every_agent_and_edge(work):
    proc = cli("graph", "nested.yaml", "--allow", "cli_agents", cwd=work)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "flowchart TD"
    nodes = {m.group(1): m.group(2) for m in map(MERMAID_NODE.match, lines) if m}
    assert sorted(nodes.values()) == sorted(
        ["classify", "loud", "excited", "merge", "first", "second", "answer"])
    subgraphs = re.findall(r'^\s*subgraph \w+ \["(\w+)"\]$', proc.stdout, re.M)
    assert subgraphs == ["both", "inner"]
    assert proc.stdout.count("\n    end\n") == 2
    ids = {label: node for node, label in nodes.items()}
    edges = {(m.group(1), m.group(3)) for m in map(MERMAID_EDGE.match, lines) if m}
    expected = [("__start__", "classify"), ("classify", "loud"), ("classify", "excited"),
                ("loud", "merge"), ("excited", "merge"), ("classify", "first"),
                ("first", "second"), ("merge", "answer"), ("second", "answer"),
                ("answer", "__end__")]
    assert edges == {(ids.get(a, a), ids.get(b, b)) for a, b in expected}


def test_graph_ascii_and_json(work):
    proc = cli("graph", "nested.yaml", "--allow", "cli_agents", "--format", "ascii", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "classify",
        "both      <- classify (nested)",
        "  loud",
        "  excited",
        "  merge    <- loud, excited",
        "inner     <- classify (nested)",
        "  first",
        "  second  <- first",
        "answer    <- both, inner",
    ]
    doc = json.loads(cli("graph", "nested.yaml", "--allow", "cli_agents", "--json",
                         cwd=work).stdout)
    assert [n["name"] for n in doc["plan"]["nodes"]] == ["classify", "both", "inner", "answer"]
    assert doc["spec"]["agents"]["both"]["pattern"] == "parallel"
    assert [n["path"] for n in doc["tree"][1]["agents"]] == ["both/loud", "both/excited",
                                                            "both/merge"]


def test_graph_svg_is_the_picture_of_the_graph(work):
    proc = cli("graph", "nested.yaml", "--allow", "cli_agents", "--format", "svg", cwd=work)
    assert proc.returncode == 0, proc.stderr
    svg = ElementTree.fromstring(proc.stdout)
    drawn = [g.get("data-path") for g in svg.iter("{http://www.w3.org/2000/svg}g")
             if g.get("class") == "node"]
    assert sorted(drawn) == sorted(["classify", "both/loud", "both/excited", "both/merge",
                                    "inner/first", "inner/second", "answer"])


def test_graph_of_a_bad_spec_exits_4(work):
    proc = cli("graph", "simple.yaml", cwd=work)
    assert proc.returncode == 4
    one_error_line(proc)


# ---- the example -------------------------------------------------------------------------

def test_the_customer_message_example_runs_with_one_command():
    proc = cli("run", "examples/customer_message.yaml", "--allow", "customer_message",
               "--input", "@examples/inputs/customer_message.json", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Dear Dana Whitfield,")
    assert "42 Harbour Lane" in proc.stdout


# ---- in-process: an unexpected exception, and the helpers ---------------------------------

def test_an_unexpected_exception_is_an_internal_error(work, monkeypatch, capsys):
    from counterpoint import cli as cli_package
    from counterpoint.cli import runs

    def broken(args, out):
        raise KeyError("oops")

    monkeypatch.setattr(runs, "list_command", broken)
    monkeypatch.chdir(work)
    assert cli_package.main(["runs", "list", "--store", "x.db"]) == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "internal error (KeyError: 'oops'); this is a bug in counterpoint" in err
    assert cli_package.main(["runs", "list", "--store", "x.db", "--debug"]) == 70
    assert "Traceback" in capsys.readouterr().err
    assert cli_package.main(["runs", "list", "--store", "x.db", "--json"]) == 70
    assert json.loads(capsys.readouterr().err)["kind"] == "internal"


def test_humanised_times():
    from counterpoint.cli._output import ago, duration

    assert duration(0.0004) == "0.40 ms"
    assert duration(0.25) == "250 ms"
    assert duration(1.234) == "1.2 s"
    assert duration(185) == "3m 05s"
    assert duration(7380) == "2h 03m"
    assert ago(1000.0, now=1002.0) == "just now"
    assert ago(1000.0, now=1030.0) == "30s ago"
    assert ago(1000.0, now=1000.0 + 180) == "3m ago"
    assert ago(1000.0, now=1000.0 + 5 * 3600) == "5h ago"
    assert ago(1000.0, now=1000.0 + 2 * 86400) == "2d ago"


def test_parse_when():
    import time

    from counterpoint.cli._common import parse_when
    from counterpoint.cli._exits import CommandError

    assert abs(parse_when("7d", "--since") - (time.time() - 7 * 86400)) < 5
    assert abs(parse_when("90m", "--since") - (time.time() - 5400)) < 5
    assert parse_when("2026-11-01", "--since") == __import__("datetime").datetime(2026, 11, 1).timestamp()
    assert parse_when("2026-11-01T00:00:00+00:00", "--since") == 1793491200.0
    with pytest.raises(CommandError) as info:
        parse_when("last week", "--since")
    assert info.value.code == 2 and "--since 'last week'" in str(info.value)
