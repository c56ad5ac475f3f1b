"""TimelinePicture: the run timeline as an SVG Gantt chart (valid XML, one bar per span,
tooltips, skipped markers, the critical path outlined, a legend and a header), saved as
SVG or HTML, readable at 5 and at 200 agents; on hand-made timelines and real runs."""

from __future__ import annotations

import itertools
import pickle
import xml.etree.ElementTree as ET

import pytest
from timeline_runs import (
    attempt,
    durable_app,
    edges_of,
    fan_out_join,
    lane,
    nested_run,
    run_timeline,
    timeline,
)

import counterpoint as cp
from counterpoint._critical_path import critical_path
from counterpoint._stored_timeline import timeline_from_store
from counterpoint._timeline import Timeline
from counterpoint._timeline_picture import TimelinePicture

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def _with(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    """Elements ``tag`` whose class list has ``cls``."""
    return [e for e in root.iter(f"{SVG}{tag}") if cls in e.get("class", "").split()]


def _label(element: ET.Element) -> str:
    """An element's own text, without its tooltip's."""
    return (element.text or "") + "".join(child.tail or "" for child in element)


def _title(element: ET.Element) -> str:
    title = element.find(f"{SVG}title")
    assert title is not None, ET.tostring(element)
    return title.text or ""


def _sample() -> Timeline:
    return timeline(
        4.0,
        lane("plan", 0.0, 1.0, attempt(0.0, 1.0)),
        lane("search", 1.1, 3.0,
             ("queued", 1.1, 1.4, 0, "", "llm"),
             attempt(1.4, 1.8, 1, "failed", "ValueError: <rate limited> & \"retry\""),
             ("backoff", 1.8, 2.0, 1, "", "ValueError: rate limited"),
             attempt(2.0, 2.5, 2, "timed_out", "timed out after 0.5s"),
             ("fallback", 2.5, 2.7, 0, "succeeded"),
             ("review", 2.7, 3.0, 0, "", "confidence 0.3 < 0.5"),
             after=["plan"]),
        lane("review", 1.1, 3.5, attempt(1.1, 3.5), after=["plan"]),
        lane("review/security", 1.2, 3.4, attempt(1.2, 3.4)),
        lane("review/style", 1.2, 2.0, attempt(1.2, 2.0, 1, "cancelled")),
        lane("publish", None, None, status="skipped", after=["search"],
             message="a predecessor failed"),
        status="failed",
    )


def test_the_svg_is_valid_xml_with_one_bar_per_span():
    run = _sample()
    picture = TimelinePicture(run)
    root = _parse(picture.svg)
    width, height = int(root.get("width")), int(root.get("height"))
    assert root.get("viewBox") == f"0 0 {width} {height}"
    bars = _with(root, "rect", "span")
    assert len(bars) == sum(len(lane.spans) for lane in run.lanes) == 10
    kinds = sorted(bar.get("class").split()[1] for bar in bars)
    assert kinds == sorted(span.kind for span in run.spans)
    # Attempts coloured by how they ended; waits and fallbacks by kind: all different.
    fills = {" ".join(bar.get("class").split()[1:3]): bar.get("fill") for bar in bars
             if "nested" not in bar.get("class")}
    assert sorted(fills) == ["attempt cancelled", "attempt failed", "attempt succeeded",
                             "attempt timed_out", "backoff", "fallback succeeded", "queued",
                             "review"]
    assert len(set(fills.values())) == len(fills)


def test_every_bar_has_a_tooltip():
    root = _parse(TimelinePicture(_sample()).svg)
    for bar in _with(root, "rect", "span"):
        assert "start " in _title(bar) and "duration " in _title(bar)
    titles = [_title(bar) for bar in _with(root, "rect", "span")]
    assert "search: attempt 1 (failed)\nstart 1.400 s, duration 400.0 ms\n" \
           "ValueError: <rate limited> & \"retry\"" in titles
    assert "search: queued\nstart 1.100 s, duration 300.0 ms\nlimit llm" in titles
    assert any(t.startswith("search: backoff after attempt 1\n") for t in titles)
    assert any(t.startswith("search: review\n") and t.endswith("confidence 0.3 < 0.5")
               for t in titles)
    assert any(t.startswith("search: fallback (succeeded)\n") for t in titles)


def test_skipped_agents_are_markers_with_their_reason():
    root = _parse(TimelinePicture(_sample()).svg)
    (marker,) = _with(root, "path", "skip")
    assert _title(marker) == "publish: skipped: a predecessor failed"


def test_nested_agents_are_indented_under_a_bracket():
    root = _parse(TimelinePicture(_sample()).svg)
    labels = {_label(e): e for e in _with(root, "text", "lane-label")}
    assert list(labels) == ["plan", "search", "review", "security", "style", "publish"]
    assert float(labels["security"].get("x")) > float(labels["review"].get("x"))
    assert _title(labels["security"]).startswith("review/security: succeeded")
    (bracket,) = _with(root, "rect", "nested")
    assert bracket.get("fill-opacity") and bracket.get("stroke")
    assert _title(bracket).startswith("review: attempt 1")
    # Rows follow one another at a fixed height.
    ys = [float(labels[name].get("y")) for name in labels]
    assert [b - a for a, b in itertools.pairwise(ys)] == [20.0] * 5


def test_the_critical_path_is_outlined_and_its_agents_bold():
    run = _sample()
    path = critical_path(run)
    root = _parse(TimelinePicture(run).svg)
    outlines = _with(root, "rect", "critical")
    assert len(outlines) == sum(1 for s in path.segments if s.agent is not None)
    bold = {_label(e) for e in _with(root, "text", "lane-label") if e.get("font-weight")}
    assert path.agents == ("plan", "review", "review/security")
    assert bold == {"plan", "review", "security"}
    strip = _with(root, "rect", "path-segment")
    assert [s.get("class").split()[1] for s in strip] == [s.cause for s in path.segments]


def test_header_legend_and_axis():
    picture = TimelinePicture(_sample())
    root = _parse(picture.svg)
    texts = ["".join(e.itertext()) for e in root.iter(f"{SVG}text")]
    assert texts[0] == (f"Run 7 \u00b7 failed \u00b7 4.000 s elapsed \u00b7 parallel speed-up "
                      f"{critical_path(_sample()).speedup:.2f}\u00d7")
    assert "critical path: plan \u2192 review \u2192 review/security" in texts[1]
    assert [e.text for e in _with(root, "text", "legend")] == [
        "attempt succeeded", "attempt failed", "attempt timed out", "attempt cancelled",
        "queued", "backoff", "review", "fallback", "engine overhead (critical path)",
        "nested graph", "skipped", "on the critical path"]
    ticks = [t for t in texts if t.endswith(" s") and t[0].isdigit()]
    assert ticks[0] == "0.0 s" and ticks[-1] == "4.0 s"
    assert picture.summary.startswith("Run 7 failed in 4.000 s, 6 agents, parallel speed-up")


def test_the_legend_lists_what_the_picture_shows():
    root = _parse(TimelinePicture(timeline(1.0, lane("a", 0.0, 1.0, attempt(0.0, 1.0)))).svg)
    assert [e.text for e in _with(root, "text", "legend")] == ["attempt succeeded", "engine overhead (critical path)",
                      "on the critical path"]


def test_text_is_escaped():
    nasty = "<b>&\"'\x1b[31m"
    run = timeline(1.0, lane(f"a{nasty}", 0.0, 1.0, attempt(0.0, 1.0, 1, "failed", nasty),
                             status="failed", message=nasty),
                   status=nasty)
    picture = TimelinePicture(run)
    root = _parse(picture.svg)
    (bar,) = _with(root, "rect", "span")
    assert _title(bar).endswith("<b>&\"'\ufffd[31m")
    assert "<b>" not in picture.svg
    ET.fromstring(f"<html>{picture._repr_html_()}</html>")


def test_save_svg_and_html(tmp_path):
    picture = TimelinePicture(_sample())
    picture.save(tmp_path / "run.svg")
    saved = (tmp_path / "run.svg").read_text(encoding="utf-8")
    assert saved.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert ET.parse(tmp_path / "run.svg").getroot().tag == f"{SVG}svg"
    picture.save(str(tmp_path / "run.html"))
    page = (tmp_path / "run.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and picture.svg in page
    assert picture._repr_svg_() == picture.svg
    assert picture.svg in picture._repr_html_()
    assert picture.summary.split(",")[0] in picture._repr_html_()
    with pytest.raises(ValueError, match=r"as '.*run\.png': give a path ending in \.svg "
                                         r"or \.html"):
        picture.save(tmp_path / "run.png")
    with pytest.raises(TypeError, match="TimelinePicture needs a Timeline"):
        TimelinePicture([])  # type: ignore[arg-type]


def test_readable_at_5_and_at_200_agents():
    def chain(count: int) -> Timeline:
        lanes = [lane(f"agent-{i:03d}", i * 0.01, i * 0.01 + 0.5, attempt(i * 0.01, i * 0.01 + 0.5),
                      after=[f"agent-{i - 1:03d}"] if i else [])
                 for i in range(count)]
        return timeline(count * 0.01 + 0.5, *lanes)

    small, large = (_parse(TimelinePicture(chain(n)).svg) for n in (5, 200))
    assert small.get("width") == large.get("width")      # the rows grow, not the width
    # 20 px a lane, and the axis' labels again below the lanes of a tall picture.
    assert int(large.get("height")) - int(small.get("height")) == 195 * 20 + 24
    ticks = [e.text for e in _with(large, "text", "tick-label")]
    assert len(ticks) == 2 * len(set(ticks))
    assert len(_with(large, "rect", "span")) == 200
    labels = _with(large, "text", "lane-label")
    assert len({label.get("y") for label in labels}) == 200
    assert all(_label(label).startswith("agent-") for label in labels)


def test_long_names_are_cut_with_the_full_path_in_the_tooltip():
    name = "a-very-long-agent-name-" * 6
    root = _parse(TimelinePicture(timeline(1.0, lane(name, 0.0, 1.0, attempt(0.0, 1.0)))).svg)
    (label,) = _with(root, "text", "lane-label")
    assert _label(label).endswith("\u2026") and len(_label(label)) < len(name)
    assert _title(label).startswith(name)


def test_untimed_restored_and_running_lanes():
    run = timeline(
        2.0,
        lane("restored", 0.0, 0.0, restored=True),
        lane("running", 0.5, None, attempt(0.5, 2.0, 1, "running"), status="running"),
        lane("unknown", None, None, status="failed", message="boom"),
        status="running",
    )
    root = _parse(TimelinePicture(run).svg)
    (restored,) = _with(root, "rect", "restored")
    assert "restored from a checkpoint" in _title(restored)
    (running,) = _with(root, "rect", "running")
    assert running.get("class") == "span attempt running"
    (untimed,) = _with(root, "circle", "untimed")
    assert _title(untimed) == "unknown: failed; no times recorded\nboom"


def test_the_picture_pickles():
    picture = TimelinePicture(_sample())
    picture.svg  # noqa: B018 - computed before pickling, as in a notebook
    copy = pickle.loads(pickle.dumps(picture))
    assert copy == picture and copy.svg == picture.svg


def test_real_runs():
    app = fan_out_join()
    run = run_timeline(app, "x", edges_of(app))
    root = _parse(TimelinePicture(run).svg)
    assert len(_with(root, "rect", "span")) == len(run.lanes) == 6
    assert {_label(e) for e in _with(root, "text", "lane-label")} == {
        "a", "b1", "b2", "b3", "b4", "join"}
    nested = run_timeline(nested_run(), "x")
    root = _parse(TimelinePicture(nested).svg)
    assert len(_with(root, "rect", "nested")) == 1
    assert len(_with(root, "rect", "span")) == len(nested.spans)


def test_a_stored_run(tmp_path):
    store = cp.SQLiteStore(tmp_path / "runs.db")
    app = durable_app(store)
    record = app.run("x")
    picture = TimelinePicture(timeline_from_store(store, record.run_key, edges=edges_of(app)))
    root = _parse(picture.svg)
    assert picture.summary.startswith(f"Run {record.run_key} succeeded in ")
    assert [bar.get("class") for bar in _with(root, "rect", "span")
            if "backoff" in bar.get("class")] == ["span backoff"] * 2
    (skipped,) = _with(root, "path", "skip")
    assert _title(skipped).startswith("after_broken: skipped")
    store.close()
