"""A RunResult as an HTML table in Jupyter (RunResult._repr_html_)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import counterpoint as cp
from counterpoint._run import AgentOutcome

SCRIPT = "<script>alert('x')</script>"


def _parse(html: str) -> ET.Element:
    """The table as XML: it uses no entity beyond XML's own, so it parses as such."""
    return ET.fromstring(f"<root>{html}</root>")


def _rows(root: ET.Element) -> dict[str, list[str]]:
    """Each body row's cell texts, by agent name (the first cell)."""
    rows = {}
    for row in root.iter("tr"):
        cells = ["".join(cell.itertext()) for cell in row.findall("td")]
        if cells:
            rows[cells[0]] = cells
    return rows


def _headings(root: ET.Element) -> list[str]:
    return ["".join(th.itertext()) for th in root.iter("th")]


def _column(root: ET.Element, agent: str, heading: str) -> str:
    return _rows(root)[agent][_headings(root).index(heading)]


def _tags(root: ET.Element) -> set[str]:
    return {element.tag for element in root.iter()}


def test_a_succeeded_run_has_a_header_and_a_row_per_agent():
    app = (cp.Graph()
           .add("plan", lambda x: cp.Result(x + 1, confidence=0.9,
                                             usage={"tokens": 1200, "cost": 0.0042}))
           .add("write", lambda x: SCRIPT, after="plan")
           .compile())
    result = app.run(1)
    html = result._repr_html_()
    root = _parse(html)
    assert _headings(root) == ["agent", "status", "time", "started at", "attempts",
                               "confidence", "usage", "output", "error / reason"]
    rows = _rows(root)
    assert list(rows) == ["plan", "write"]
    assert _column(root, "plan", "status") == "succeeded"
    assert _column(root, "plan", "output") == "2"  # the value, not the Result
    assert _column(root, "plan", "confidence") == "0.90"
    assert _column(root, "plan", "usage") == "tokens 1,200 · cost 0.0042"
    assert _column(root, "plan", "started at").startswith("+")
    assert _column(root, "plan", "time").endswith(("µs", "ms", "s"))
    # The header: the run, its status and its usage totals.
    text = "".join(root.itertext())
    assert f"Run {result.run_id}" in text and "succeeded" in text
    assert "usage tokens 1,200 · cost 0.0042" in text


def test_outputs_and_errors_are_escaped():
    ok = cp.Graph().add("write", lambda x: SCRIPT).compile().run(1)._repr_html_()

    def fail(x):
        raise ValueError(SCRIPT)

    failed = cp.Graph().add("write", fail).compile().run(1)._repr_html_()
    for html in (ok, failed):
        assert "<script" not in html
        root = _parse(html)
        assert "script" not in _tags(root)
        assert SCRIPT in "".join(root.itertext())  # shown as text, not run


def test_agent_names_and_usage_names_are_escaped():
    outcome = AgentOutcome(name="<b>x</b>", status="succeeded", output=1, started=0.0,
                           finished=0.1, usage={"<i>tokens</i>": 3})
    result = cp.RunResult(run_id=1, status="succeeded", output=1, error=None,
                          agents={outcome.name: outcome}, elapsed=0.1,
                          usage={"<i>tokens</i>": 3})
    root = _parse(result._repr_html_())
    assert not {"b", "i"} & _tags(root)
    assert _column(root, "<b>x</b>", "usage") == "<i>tokens</i> 3"


def test_a_failed_run_shows_the_error_and_the_agents_that_never_ran():
    def fetch(x):
        raise ConnectionError("upstream said no")

    app = (cp.Graph()
           .add("fetch", fetch)
           .add("summarize", lambda x: x, after="fetch")
           .compile())
    root = _parse(app.run(1)._repr_html_())
    text = "".join(root.itertext())
    assert "failed" in text and "AgentError: agent 'fetch' failed" in text
    assert _column(root, "fetch", "status") == "failed"
    assert _column(root, "fetch", "error / reason") == "ConnectionError: upstream said no"
    assert _column(root, "summarize", "status") == "not_started"
    assert _column(root, "summarize", "time") == ""
    assert _column(root, "summarize", "started at") == ""


def test_skipped_and_needs_review_agents_show_their_reasons(tmp_path):
    app = (cp.Graph()
           .add("triage", lambda x: cp.route(x, ["billing"]))
           .add("billing", lambda x: cp.Result("refund", confidence=0.3),
                after="triage", review=cp.Review(below=0.5))
           .add("shipping", lambda x: x, after="triage")
           .compile(store=str(tmp_path / "runs.db")))
    result = app.run(1)
    assert result.status == "needs_review"
    root = _parse(result._repr_html_())
    assert _column(root, "billing", "status") == "needs_review"
    assert _column(root, "billing", "confidence") == "0.30"
    assert _column(root, "billing", "error / reason") == "confidence 0.3 < 0.5"
    assert _column(root, "shipping", "status") == "skipped"
    assert _column(root, "shipping", "error / reason") == "not routed to"
    # A durable run's key is in the header.
    assert result.run_key is not None
    assert result.run_key in "".join(root.itertext())


def test_statuses_get_coloured_badges():
    statuses = ["succeeded", "failed", "timed_out", "skipped", "needs_review", "cancelled",
                "not_started", "running"]
    agents = {status: AgentOutcome(name=status, status=status) for status in statuses}
    result = cp.RunResult(run_id=7, status="failed", output=None, error=None, agents=agents)
    root = _parse(result._repr_html_())
    colours = {}
    for row in root.iter("tr"):
        cells = row.findall("td")
        if cells:
            badge = cells[1].find("span")
            assert badge is not None and badge.text == "".join(cells[0].itertext())
            colours[badge.text] = badge.get("style")
    assert len(set(colours.values())) >= 6  # the statuses tell apart at a glance


def test_long_errors_are_cut_with_the_whole_text_in_a_tooltip():
    message = "x" * 300 + "<end>"
    outcome = AgentOutcome(name="a", status="failed", error=message)
    result = cp.RunResult(run_id=1, status="failed", output=None, error=None,
                          agents={"a": outcome})
    root = _parse(result._repr_html_())
    cell = _rows(root)["a"][-1]
    assert len(cell) < 200 and cell.endswith("…")
    [tip] = [span for span in root.iter("span") if span.get("title")]
    assert tip.get("title") == message


def test_attempts_count_retries():
    calls = []

    def flaky(x):
        calls.append(x)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return x

    app = (cp.Graph(on_error="continue")
           .add("fetch", flaky, retry=cp.Retry(max_attempts=3, initial_backoff=0.001))
           .add("broken", lambda x: 1 / 0)
           .add("after", lambda x: x, after="broken")
           .compile())
    root = _parse(app.run(1)._repr_html_())
    assert _column(root, "fetch", "attempts") == "3"
    assert _column(root, "broken", "attempts") == "1"
    assert _column(root, "after", "status") == "skipped"
    assert _column(root, "after", "attempts") == ""  # it never ran


def test_two_hundred_agents_scroll_in_a_box():
    agents = {f"agent{k}": AgentOutcome(name=f"agent{k}", status="succeeded", output=k,
                                        started=k / 1000, finished=k / 1000 + 0.5)
              for k in range(200)}
    result = cp.RunResult(run_id=1, status="succeeded", output=None, error=None,
                          agents=agents, elapsed=75.0)
    html = result._repr_html_()
    root = _parse(html)
    assert len(_rows(root)) == 200
    assert "overflow:auto" in html
    assert "1 min 15.0 s" in "".join(root.itertext())
