"""Pictures of compiled graphs, drawn offline: ``app.draw()`` (SVG: valid XML, every
agent once, nested patterns as labelled boxes, edges by kind, priorities and policies,
a 200-agent fan-out that stays readable), ``app.to_mermaid()``, how Jupyter shows a
graph, ``GraphPicture.save()``, ``plan_edges()``, with and without langchain-core, and
the picture as headless Chromium renders it."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

import counterpoint as cp
from counterpoint._plan_view import plan_edges, policies_of
from counterpoint._spec import NodeSpec

SVG = "{http://www.w3.org/2000/svg}"


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


def report(parts: Any) -> str:
    return str(parts)


def draft(brief: Any) -> str:
    return "draft"


def evaluate(review: Any) -> bool:
    return True


def plan_tasks(task: Any) -> list[Any]:
    return []


def words(text: str) -> list[str]:
    return text.split()


def triage_app() -> cp.CompiledGraph:
    review = cp.parallel(security=security, perf=perf)
    triage = cp.router(classify, routes={"bug": bug, "feature": feature})
    return (cp.Graph()
            .add("prepare", prepare)
            .add("review", review, after="prepare")
            .add("triage", triage, after="prepare")
            .add("report", report, after=["review", "triage"])
            .compile())


def every_pattern_app() -> cp.CompiledGraph:
    """A parallel review, a supervisor, a fan-out, a loop, and a graph added as an agent."""
    team = cp.supervisor(plan_tasks, workers={"coder": bug}, synthesizer=report)
    inner = cp.Graph().add("first", prepare).add("second", report, after="first").compile()
    return (cp.Graph()
            .add("prepare", prepare)
            .add("review", cp.parallel(security=security, perf=perf), after="prepare")
            .add("team", team, after="prepare")
            .add("research", cp.fan_out(bug, over=words), after="team")
            .add("refine", cp.loop(draft, evaluate, max_iterations=3),
                 after=["review", "research"])
            .add("sub", inner, after="refine")
            .compile())


EVERY_PATTERN_AGENTS = [
    "prepare",
    "review/security", "review/perf", "review/merge",
    "team/input", "team/planner", "team/dispatch", "team/brief", "team/synthesizer",
    "research/fan_out",
    "refine/loop/state", "refine/loop/brief", "refine/loop/worker", "refine/loop/review",
    "refine/loop/evaluator", "refine/loop/outcome",
    "sub/first", "sub/second",
]


def parse(picture: cp.GraphPicture) -> ElementTree.Element:
    return ElementTree.fromstring(picture.svg)


def groups(svg: ElementTree.Element, kind: str) -> list[ElementTree.Element]:
    return [g for g in svg.iter(f"{SVG}g") if g.get("class") == kind]


def box(group: ElementTree.Element) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a group's rectangle."""
    rect = group.find(f"{SVG}rect")
    assert rect is not None
    x, y = float(rect.get("x", 0)), float(rect.get("y", 0))
    return x, y, x + float(rect.get("width", 0)), y + float(rect.get("height", 0))


def texts(group: ElementTree.Element) -> list[str]:
    return [text.text or "" for text in group.iter(f"{SVG}text")]


def hover(group: ElementTree.Element) -> str:
    title = group.find(f"{SVG}title")
    assert title is not None and title.text
    return title.text


def edges(svg: ElementTree.Element) -> Counter[tuple[str, str, str]]:
    return Counter((g.get("data-source", ""), g.get("data-target", ""), g.get("data-kind", ""))
                   for g in groups(svg, "edge"))


def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside(inner: tuple[float, ...], outer: tuple[float, ...]) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and \
        inner[2] <= outer[2] and inner[3] <= outer[3]


# ---- the SVG ----------------------------------------------------------------------------


def test_every_agent_is_drawn_once_as_a_box_in_valid_svg() -> None:
    picture = every_pattern_app().draw()
    svg = parse(picture)
    assert svg.tag == f"{SVG}svg"
    width, height = float(svg.get("width", 0)), float(svg.get("height", 0))
    assert svg.get("viewBox") == f"0 0 {width:g} {height:g}"
    assert (picture.width, picture.height) == (width, height)
    drawn = Counter(g.get("data-path") for g in groups(svg, "node"))
    assert drawn == Counter(EVERY_PATTERN_AGENTS)
    assert {g.get("data-terminal") for g in groups(svg, "terminal")} == {"start", "end"}
    for node in groups(svg, "node"):
        assert inside(box(node), (0, 0, width, height))
        assert texts(node)[0] == node.get("data-path", "").rsplit("/", 1)[-1]
        assert hover(node).startswith(node.get("data-path", ""))


def test_nested_patterns_and_graphs_are_labelled_boxes_around_their_agents() -> None:
    svg = parse(every_pattern_app().draw())
    clusters = {g.get("data-path"): g for g in groups(svg, "cluster")}
    labels = {g.get("data-path"): texts(g) for g in groups(svg, "cluster-label")}
    assert set(clusters) == set(labels) == {"review", "team", "research", "refine",
                                            "refine/loop", "sub"}
    for path, cluster in clusters.items():
        assert labels[path][0].startswith(path.rsplit("/", 1)[-1])
        assert hover(cluster).startswith(path)
        members = [n for n in groups(svg, "node") if n.get("data-path", "").startswith(path + "/")]
        assert members
        assert all(inside(box(member), box(cluster)) for member in members)
    assert inside(box(clusters["refine/loop"]), box(clusters["refine"]))
    # Siblings never overlap.
    tops = [box(clusters[p]) for p in ("review", "team", "research", "refine", "sub")]
    assert not any(overlap(a, b) for a, b in itertools.combinations(tops, 2))


def test_edges_follow_the_plan_and_routes_are_dashed() -> None:
    svg = parse(triage_app().draw())
    assert edges(svg) == Counter({
        ("start", "prepare", "data"): 1,
        ("prepare", "review/security", "data"): 1,
        ("prepare", "review/perf", "data"): 1,
        ("review/security", "review/merge", "data"): 1,
        ("review/perf", "review/merge", "data"): 1,
        ("prepare", "triage/input", "data"): 1,
        ("prepare", "triage/classify", "data"): 1,
        ("triage/input", "triage/route", "data"): 1,
        ("triage/classify", "triage/route", "data"): 1,
        # Only the routes the router picks run.
        ("triage/route", "triage/bug", "route"): 1,
        ("triage/route", "triage/feature", "route"): 1,
        ("triage/bug", "triage/join", "data"): 1,
        ("triage/feature", "triage/join", "data"): 1,
        ("review/merge", "report", "data"): 1,
        ("triage/join", "report", "data"): 1,
        ("report", "end", "data"): 1,
    })
    for edge in groups(svg, "edge"):
        line = edge.find(f"{SVG}path")
        assert line is not None and line.get("d", "").startswith("M")
        assert (line.get("stroke-dasharray") is not None) == (edge.get("data-kind") == "route")


def test_edges_end_on_the_top_of_their_target() -> None:
    svg = parse(triage_app().draw())
    tops = {g.get("data-path"): box(g) for g in groups(svg, "node")}
    for edge in groups(svg, "edge"):
        target = tops.get(edge.get("data-target"))
        if target is None:
            continue  # the end marker
        arrow = edge.findall(f"{SVG}path")[1].get("d", "")
        tip = arrow.split("L")[-1].rstrip(" Z").split(",")
        assert target[0] <= float(tip[0]) <= target[2]
        assert float(tip[1]) == pytest.approx(target[1])


def test_a_loop_is_a_repeating_box_with_an_edge_back_to_its_start() -> None:
    svg = parse(cp.loop(draft, evaluate, max_iterations=3).draw())
    (cluster,) = groups(svg, "cluster")
    (label,) = groups(svg, "cluster-label")
    assert cluster.get("data-path") == label.get("data-path") == "loop"
    assert texts(label) == ["loop · ↻ repeats"] and "repeats" in hover(cluster)
    repeats = [key for key in edges(svg) if key[2] == "repeat"]
    assert repeats == [("loop/outcome", "loop/state", "repeat")]
    assert ("start", "loop/state", "data") in edges(svg)


def test_priorities_and_policies_are_written_under_the_agents_name() -> None:
    app = (cp.Graph()
           .add("fetch", prepare, priority=5, retry=3, timeout=2,
                limits=cp.Limit("llm-picture", max_concurrent=2),
                breaker=cp.CircuitBreaker("api-picture"))
           .add("draft", draft, after="fetch", review=cp.Review(0.7, reviewer=lambda r: True),
                fallback=draft, timeout=0.5, join="any")
           .add("plain", report, after="draft")
           .compile())
    svg = parse(app.draw())
    nodes = {g.get("data-path"): g for g in groups(svg, "node")}
    # As many to a line as fit, on two lines at most.
    name, *notes = texts(nodes["fetch"])
    assert name == "fetch" and len(notes) == 2
    assert " · ".join(notes) == \
        "priority 5 · retry 3 · timeout 2s · limit llm-picture · breaker api-picture"
    assert texts(nodes["draft"]) == ["draft", "timeout 0.5s · review < 0.7 · fallback"]
    many = cp.Graph().add("many", prepare, priority=1, retry=2, timeout=1, fallback=draft,
                          review=cp.Review(0.5, reviewer=lambda r: True),
                          limits=[cp.Limit(f"limit-of-many-{i}", max_concurrent=1)
                                  for i in range(6)]).compile()
    name, *notes = texts(groups(parse(many.draw()), "node")[0])
    assert len(notes) == 2 and notes[-1].endswith("…")
    assert texts(nodes["plain"]) == ["plain"]  # inherits priority 5: said on hover only
    assert hover(nodes["plain"]) == "plain\npriority 5 (inherited)"
    assert hover(nodes["draft"]).splitlines()[1:] == [
        "priority 5 (inherited)", "timeout 0.5s · review < 0.7 · fallback", "join: any"]
    # Anonymous limits and breakers are named by kind only.
    anonymous = cp.Graph().add("a", prepare, limits=cp.Limit(max_concurrent=1),
                               breaker=cp.CircuitBreaker()).compile()
    assert texts(groups(parse(anonymous.draw()), "node")[0])[1] == "limit · breaker"


def test_executors_are_named_among_the_policies() -> None:
    # Read off the node spec: compiling would start Ray.
    assert policies_of(NodeSpec("embed", prepare, executor=cp.ray(num_cpus=1)), prepare) \
        == ("ray",)
    assert policies_of(NodeSpec("embed", prepare, retry=2,
                                executor=cp.ray_actors(2)), prepare) == ("retry 2",
                                                                         "ray actors 2")


def test_a_fan_out_to_200_agents_wraps_into_rows_at_the_same_text_size() -> None:
    workers = [f"worker_{i:03d}" for i in range(200)]
    graph = cp.Graph().add("split", prepare)
    for name in workers:
        graph.add(name, bug, after="split")
    app = graph.add("merge", report, after=workers).compile()
    picture = app.draw()
    svg = parse(picture)
    assert 600 < picture.width <= 1400
    assert picture.height < 3000
    nodes = {g.get("data-path"): g for g in groups(svg, "node")}
    assert len(nodes) == 202
    boxes = [box(nodes[name]) for name in workers]
    assert not any(overlap(a, b) for a, b in itertools.combinations(boxes, 2))
    rows = sorted({top for _, top, _, _ in boxes})
    assert 10 <= len(rows) <= 25
    assert box(nodes["split"])[3] < rows[0] and box(nodes["merge"])[1] > max(
        bottom for _, _, _, bottom in boxes)
    assert {t.get("font-size") for t in svg.iter(f"{SVG}text")
            if t.text and t.text.startswith("worker_")} == {"13"}
    assert sum(edges(svg).values()) == 1 + 200 + 200 + 1


def test_names_are_escaped() -> None:
    name = 'a <b>&"c\' \x01 日本'
    app = cp.Graph().add(name, prepare).add("next", report, after=name).compile()
    svg = parse(app.draw())  # parses: nothing unescaped, no character XML forbids
    nodes = {g.get("data-path") for g in groups(svg, "node")}
    assert nodes == {'a <b>&"c\' \ufffd 日本', "next"}
    assert "<b>" not in app.draw().svg
    mermaid = app.to_mermaid()
    assert '"a #lt;b#gt;#amp;#quot;c\' \x01 日本"' in mermaid


# ---- Mermaid ---------------------------------------------------------------------------


def test_mermaid_draws_nested_patterns_as_subgraphs() -> None:
    text = every_pattern_app().to_mermaid()
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    subgraphs = [line.split('["')[1].rstrip('"]') for line in lines if "subgraph" in line]
    assert subgraphs == ["review", "team", "research", "refine", "loop", "sub"]
    assert text.count(" end\n") == len(subgraphs)
    assert sum(" -. again .-> " in line for line in lines) == 1
    router = triage_app().to_mermaid()
    assert sum(" -.-> " in line for line in router.splitlines()) == 2
    policed = cp.Graph().add("fetch", prepare, retry=3, priority=2).compile().to_mermaid()
    assert '["fetch<br/>priority 2 · retry 3"]' in policed


# ---- the data edges --------------------------------------------------------------------


def test_plan_edges_lists_the_data_edges_at_every_depth() -> None:
    assert plan_edges(triage_app()) == {
        "prepare": (),
        "review": ("prepare",),
        "review/security": (),
        "review/perf": (),
        "review/merge": ("review/security", "review/perf"),
        "triage": ("prepare",),
        "triage/input": (),
        "triage/classify": (),
        "triage/route": ("triage/input", "triage/classify"),
        "triage/bug": ("triage/route",),
        "triage/feature": ("triage/route",),
        "triage/join": ("triage/bug", "triage/feature"),
        "report": ("review", "triage"),
    }
    nested = plan_edges(every_pattern_app())
    assert nested["refine/loop/outcome"] == (
        "refine/loop/state", "refine/loop/worker", "refine/loop/evaluator")
    assert nested["refine/loop"] == () and nested["refine"] == ("review", "research")


# ---- Jupyter and files -----------------------------------------------------------------


def test_a_compiled_graph_shows_as_its_picture_in_jupyter() -> None:
    formatters = pytest.importorskip("IPython.core.formatters")
    app = triage_app()
    picture = app.draw()
    assert app._repr_svg_() == picture.svg == picture._repr_svg_()
    assert picture.svg in app._repr_html_() and app._repr_html_() == picture._repr_html_()
    bundle, _ = formatters.DisplayFormatter().format(app)
    assert bundle["image/svg+xml"] == picture.svg
    assert picture.svg in bundle["text/html"]
    assert bundle["text/plain"] == repr(app)
    assert repr(picture).startswith("GraphPicture(")


def test_runnable_graphs_show_as_their_picture_too() -> None:
    runnables = pytest.importorskip("langchain_core.runnables")
    app = triage_app()
    assert isinstance(app, runnables.Runnable)  # compile() made a RunnableGraph
    assert app._repr_svg_() == app.draw().svg
    assert app.draw().svg in app._repr_html_()


def test_save_writes_svg_or_a_web_page(tmp_path: Path) -> None:
    picture = triage_app().draw()
    svg = picture.save(tmp_path / "graph.svg")
    assert svg.read_text(encoding="utf-8") == picture.svg
    ElementTree.parse(svg)
    page = picture.save(str(tmp_path / "graph.HTML")).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and picture.svg in page
    assert '<meta charset="utf-8">' in page
    with pytest.raises(ValueError, match=r"'graph\.png'.*\*\.svg.*\*\.html"):
        picture.save(tmp_path / "graph.png")


_WITHOUT_LANGCHAIN = """\
import sys
sys.modules['langchain_core'] = None  # seen as not installed, by find_spec and import
import counterpoint as cp
from xml.etree import ElementTree
review = cp.parallel(a=lambda x: x, b=lambda x: x)
app = cp.Graph().add('first', lambda x: x).add('review', review, after='first').compile()
picture = app.draw()
ElementTree.fromstring(picture.svg)
print(type(app).__name__, picture.svg in app._repr_html_(), 'subgraph' in app.to_mermaid())
print(sorted(m for m in sys.modules if m.startswith(('langchain', 'langsmith'))))
"""


def test_pictures_need_no_langchain(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_LANGCHAIN], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["CompiledGraph", "True", "True", "['langchain_core']"]
