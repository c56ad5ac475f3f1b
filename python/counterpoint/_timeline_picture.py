"""The run timeline as a picture: an SVG Gantt chart that renders offline.

One row per agent (a nested graph's agents indented under the agent that runs it), one
bar per stretch of its time coloured by kind and outcome, skipped agents as markers, the
critical path outlined, and a strip at the top showing where the critical path's time
went. Every bar has a hover tooltip. Rows have a fixed height, so a run of 200 agents
gives a tall picture rather than unreadable slivers.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

from ._critical_path import AGENT, CAUSES, OVERHEAD, CriticalPath, critical_path
from ._svg import escape
from ._timeline import ATTEMPT, BACKOFF, FALLBACK, QUEUED, REVIEW, AgentLane, Span, Timeline
from ._timeline_lanes import lane_rows, never_started_at, work_spans

# Geometry, in px.
_ROW = 20            # one lane
_BAR = 12            # a bar within it
_PLOT = 760          # the time axis' width
_MARGIN = 12
_HEADER = 46         # two lines of text
_AXIS = 24           # tick labels
_INDENT = 12         # per nesting level
_AXIS_AGAIN = 25     # lanes beyond which the axis' labels are repeated below them
_CHAR = 6.6          # average width of one 11 px character
_LABEL_MIN, _LABEL_MAX = 110, 290
_FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"

# Colours (readable for common colour-vision deficiencies: status differs in lightness too).
_STATUS_COLOURS = {
    "succeeded": "#2e8b57",
    "failed": "#c8324a",
    "timed_out": "#e08e0b",
    "cancelled": "#8d8d8d",
    "needs_review": "#7b52ab",
    "needs_input": "#7b52ab",
    "running": "#4f86c6",
}
_KIND_COLOURS = {QUEUED: "#9fb7d6", BACKOFF: "#f2c57c", REVIEW: "#d2b4e6", FALLBACK: "#1f4e79"}
_CAUSE_COLOURS = {AGENT: "#2e8b57", QUEUED: _KIND_COLOURS[QUEUED],
                  BACKOFF: _KIND_COLOURS[BACKOFF], REVIEW: _KIND_COLOURS[REVIEW],
                  OVERHEAD: "#d9d9d9"}
_OTHER = "#b0b0b0"
_RESTORED = "#c7c7c7"
_CRITICAL = "#111111"
_GRID = "#e6e6e6"
_BAND = "#f6f7f9"

# Characters XML 1.0 does not allow (an agent's error message may carry terminal codes).
@dataclass(frozen=True)
class TimelinePicture:
    """A run's timeline drawn as an SVG Gantt chart (Jupyter shows it inline).

    Attributes:
        timeline: The run's :class:`~counterpoint._timeline.Timeline`.
    """

    timeline: Timeline

    def __post_init__(self) -> None:
        if not isinstance(self.timeline, Timeline):
            raise TypeError(f"TimelinePicture needs a Timeline (a run's timeline data), got "
                            f"{type(self.timeline).__name__}")

    @functools.cached_property
    def critical(self) -> CriticalPath:
        """The run's critical path, as highlighted in the picture."""
        return critical_path(self.timeline)

    @functools.cached_property
    def svg(self) -> str:
        """The picture as an SVG document (without an XML declaration, so it can be
        inlined in HTML)."""
        return _Drawing(self.timeline, self.critical).render()

    @property
    def summary(self) -> str:
        """One line: the run's status, elapsed time, speed-up and critical path."""
        return _summary(self.timeline, self.critical)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the picture to ``path``: an ``.svg`` file, or an ``.html`` page (the
        picture and its summary line)."""
        name = os.fsdecode(os.fspath(path))
        suffix = os.path.splitext(name)[1].lower()
        if suffix == ".svg":
            text = '<?xml version="1.0" encoding="UTF-8"?>\n' + self.svg
        elif suffix in (".html", ".htm"):
            title = _text(f"Timeline: {_run_name(self.timeline)}")
            text = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}'
                    f"</title></head><body>{self._repr_html_()}</body></html>\n")
        else:
            raise ValueError(f"cannot save a timeline picture as {name!r}: give a path "
                             "ending in .svg or .html")
        with open(name, "w", encoding="utf-8") as handle:
            handle.write(text)

    def _repr_svg_(self) -> str:
        return self.svg

    def _repr_html_(self) -> str:
        return (f'<div><p style="font-family:{_text(_FONT)};font-size:12px;color:#555555;'
                f'margin:4px 0">'
                f"{_text(self.summary)}</p>{self.svg}</div>")


def _text(value: object) -> str:
    """Text made safe for XML content and attribute values."""
    return escape(str(value))


def _seconds(value: float) -> str:
    if abs(value) < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.3f} s"


def _chain(agents: tuple[str, ...], most: int = 8) -> str:
    if len(agents) <= most:
        return " \u2192 ".join(agents) or "(no agent)"
    shown = [*agents[: most - 2], "\u2026", agents[-1]]
    return " \u2192 ".join(shown) + f" ({len(agents)} agents)"


def _run_name(timeline: Timeline) -> str:
    """``Run 3``; a stored run (run id 0) by its key, a durable one by both."""
    if not timeline.run_key:
        return f"Run {timeline.run_id}"
    if timeline.run_id == 0:
        return f"Run {timeline.run_key}"
    return f"Run {timeline.run_id} ({timeline.run_key})"


def _summary(timeline: Timeline, path: CriticalPath) -> str:
    shares = ", ".join(f"{cause} {100 * path.share(cause):.0f} %" for cause in CAUSES
                       if path.by_cause[cause] > 0)
    return (f"{_run_name(timeline)} {timeline.status} in {_seconds(path.elapsed)}, "
            f"{len(timeline.lanes)} agents, parallel speed-up {path.speedup:.2f}\u00d7; "
            f"critical path {_chain(path.agents)}" + (f" ({shares})" if shares else ""))


def _ticks(span: float) -> tuple[list[float], int, bool]:
    """Tick times over [0, span] at a round step, the decimals to show, and whether to
    label them in milliseconds."""
    raw = span / 8
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    in_ms = span < 1
    unit_step = step * 1000 if in_ms else step
    decimals = max(0, -math.floor(math.log10(unit_step) + 1e-9))
    count = int(span / step + 1e-9)
    return [i * step for i in range(count + 1)], decimals, in_ms


def _colour(span: Span) -> str:
    if span.kind == ATTEMPT:
        return _STATUS_COLOURS.get(span.status, _OTHER)
    return _KIND_COLOURS.get(span.kind, _OTHER)


def _span_title(span: Span) -> str:
    what = span.kind if span.kind != ATTEMPT else f"attempt {span.attempt}"
    if span.kind == BACKOFF:
        what = f"backoff after attempt {span.attempt}"
    if span.status:
        what += f" ({span.status})"
    lines = [f"{span.agent}: {what}",
             f"start {_seconds(span.start)}, duration {_seconds(span.duration)}"]
    if span.detail:
        lines.append(("limit " if span.kind == QUEUED else "") + span.detail)
    return "\n".join(lines)


class _Drawing:
    """Lays out and writes one SVG."""

    def __init__(self, timeline: Timeline, path: CriticalPath) -> None:
        self.timeline = timeline
        self.path = path
        self.rows = lane_rows(timeline)
        self.row_of = {lane.agent: i for i, (lane, _) in enumerate(self.rows)}
        self.lane_of = {lane.agent: lane for lane, _ in self.rows}
        self.parents = {lane.parent for lane in timeline.lanes}
        ends = [lane.end for lane in timeline.lanes if lane.end is not None]
        self.span = max([timeline.elapsed, *ends, 0.0]) or 1.0
        widest = max((_INDENT * depth + _CHAR * len(_leaf(lane.agent, depth))
                      for lane, depth in self.rows), default=0.0)
        self.label_width = int(min(_LABEL_MAX, max(_LABEL_MIN, widest + 2 * _MARGIN)))
        self.left = self.label_width
        self.width = self.left + _PLOT + 2 * _MARGIN
        # Top down: header, legend, time axis, the critical path's strip, the lanes, and
        # for a tall picture the axis' labels again below them.
        self.legend = self._legend_items()
        self.legend_top = _HEADER
        self.top = self.legend_top + self._legend_height() + _AXIS
        self.first_row = self.top + _ROW + 6
        self.rows_end = self.first_row + _ROW * len(self.rows)
        self.axis_below = len(self.rows) > _AXIS_AGAIN
        self.height = math.ceil(self.rows_end + (_AXIS if self.axis_below else 0) + _MARGIN)
        self.out: list[str] = []

    def x(self, t: float) -> float:
        return self.left + max(0.0, min(t, self.span)) / self.span * _PLOT

    def render(self) -> str:
        out = self.out
        out.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
                   f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" '
                   f'font-family="{_text(_FONT)}" font-size="11" '
                   f'class="counterpoint-timeline" role="img">')
        out.append(f"<title>{_text(_summary(self.timeline, self.path))}</title>")
        out.append(f'<rect x="0" y="0" width="{self.width}" height="{self.height}" '
                   'fill="#ffffff"/>')
        self._header()
        self._bands()
        self._axis()
        self._strip()
        for index, (lane, depth) in enumerate(self.rows):
            self._lane(index, lane, depth)
        self._critical_outlines()
        self._draw_legend()
        out.append("</svg>")
        return "\n".join(out)

    def _row_y(self, index: int) -> float:
        return self.first_row + index * _ROW

    def _header(self) -> None:
        t, path = self.timeline, self.path
        status = _STATUS_COLOURS.get(t.status, "#333333")
        self.out.append(
            f'<text x="{_MARGIN}" y="18" font-size="14" font-weight="bold" fill="#222222">'
            f"{_text(_run_name(t))} \u00b7 "
            f'<tspan fill="{status}">{_text(t.status)}</tspan> \u00b7 '
            f"{_text(_seconds(path.elapsed))} elapsed \u00b7 parallel speed-up "
            f"{path.speedup:.2f}\u00d7</text>")
        shares = ", ".join(f"{cause} {_seconds(path.by_cause[cause])} "
                           f"({100 * path.share(cause):.0f} %)"
                           for cause in CAUSES if path.by_cause[cause] > 0)
        self.out.append(
            f'<text x="{_MARGIN}" y="36" fill="#444444">{len(t.lanes)} agents \u00b7 '
            f"critical path: {_text(_chain(path.agents, 6))}"
            + (f" \u00b7 {_text(shares)}" if shares else "") + "</text>")

    def _bands(self) -> None:
        """Alternate rows shaded, so a bar can be followed to its label at 200 rows."""
        for index in range(0, len(self.rows), 2):
            self.out.append(f'<rect x="0" y="{self._row_y(index)}" width="{self.width}" '
                            f'height="{_ROW}" fill="{_BAND}"/>')

    def _axis(self) -> None:
        ticks, decimals, in_ms = _ticks(self.span)
        for tick in ticks:
            x = self.x(tick)
            label = f"{tick * 1000:.{decimals}f} ms" if in_ms else f"{tick:.{decimals}f} s"
            self.out.append(f'<line class="tick" x1="{x:.2f}" y1="{self.top - 4}" '
                            f'x2="{x:.2f}" y2="{self.rows_end}" stroke="{_GRID}" '
                            'stroke-width="1"/>')
            labels_at = [self.top - 8] + ([self.rows_end + 16] if self.axis_below else [])
            for y in labels_at:
                self.out.append(f'<text class="tick-label" x="{x:.2f}" y="{y}" '
                                f'text-anchor="middle" fill="#555555">{_text(label)}</text>')
        self.out.append(f'<line x1="{self.left}" y1="{self.top - 4}" x2="{self.left + _PLOT}" '
                        f'y2="{self.top - 4}" stroke="#999999" stroke-width="1"/>')

    def _strip(self) -> None:
        """The critical path's time by cause, as one bar over the whole run."""
        y = self.top + (_ROW - _BAR) / 2
        self.out.append(f'<text x="{_MARGIN}" y="{self.top + 14}" font-weight="bold" '
                        'fill="#222222">critical path</text>')
        for segment in self.path.segments:
            x0, x1 = self.x(segment.start), self.x(segment.end)
            who = segment.agent or "engine"
            title = (f"{who}: {segment.cause}\nstart {_seconds(segment.start)}, "
                     f"duration {_seconds(segment.duration)}")
            self.out.append(
                f'<rect class="path-segment {segment.cause}" x="{x0:.2f}" y="{y:.2f}" '
                f'width="{max(0.5, x1 - x0):.2f}" height="{_BAR}" '
                f'fill="{_CAUSE_COLOURS[segment.cause]}"><title>{_text(title)}</title></rect>')

    def _lane(self, index: int, lane: AgentLane, depth: int) -> None:
        y = self._row_y(index)
        on_path = lane.agent in self.path.agents
        label = _leaf(lane.agent, depth)
        room = int((self.label_width - _MARGIN - _INDENT * depth - 8) / _CHAR)
        if len(label) > room:
            label = label[: max(1, room - 1)] + "\u2026"
        weight = ' font-weight="bold"' if on_path else ""
        title = f"{lane.agent}: {lane.status}"
        if lane.duration is not None:
            title += f", {_seconds(lane.duration)}"
        if lane.message:
            title += f"\n{lane.message}"
        self.out.append(
            f'<text class="lane-label{" critical" if on_path else ""}" '
            f'x="{_MARGIN + _INDENT * depth}" y="{y + 14}" fill="#222222"{weight}>'
            f"<title>{_text(title)}</title>{_text(label)}</text>")
        bar_y = y + (_ROW - _BAR) / 2
        nested = lane.agent in self.parents
        if lane.start is None:
            self._marker(lane, y)
            return
        if lane.restored and not lane.spans:
            x = self.x(lane.start)
            self.out.append(
                f'<rect class="restored" x="{x:.2f}" y="{bar_y:.2f}" width="4" '
                f'height="{_BAR}" fill="{_RESTORED}"><title>'
                f"{_text(f'{lane.agent}: restored from a checkpoint ({lane.status})')}"
                "</title></rect>")
            return
        for span in work_spans(lane):
            self._bar(span, bar_y, nested)

    def _bar(self, span: Span, y: float, nested: bool) -> None:
        x0, x1 = self.x(span.start), self.x(span.end)
        colour = _colour(span)
        status = f" {span.status}" if span.status else ""
        title = f"<title>{_text(_span_title(span))}</title>"
        if nested and span.kind == ATTEMPT:
            # The agent's nested graph: a bracket around its agents' rows below.
            self.out.append(
                f'<rect class="span attempt{status} nested" x="{x0:.2f}" y="{y + 2:.2f}" '
                f'width="{max(1.0, x1 - x0):.2f}" height="{_BAR - 4}" fill="{colour}" '
                f'fill-opacity="0.18" stroke="{colour}" stroke-width="1.5">{title}</rect>')
            return
        self.out.append(
            f'<rect class="span {span.kind}{status}" x="{x0:.2f}" y="{y:.2f}" '
            f'width="{max(1.0, x1 - x0):.2f}" height="{_BAR}" fill="{colour}">{title}</rect>')

    def _marker(self, lane: AgentLane, y: float) -> None:
        """An agent that never started: skipped (with why), or one the timeline knows
        only by its outcome."""
        at = never_started_at(lane, self.lane_of)
        x, cy = self.x(at), y + _ROW / 2
        if lane.status == "skipped":
            title = f"{lane.agent}: skipped" + (f": {lane.message}" if lane.message else "")
            self.out.append(
                f'<path class="skip" d="M{x - 5:.2f},{cy - 5:.2f} L{x + 5:.2f},{cy + 5:.2f} '
                f'M{x - 5:.2f},{cy + 5:.2f} L{x + 5:.2f},{cy - 5:.2f}" stroke="#666666" '
                f'stroke-width="2"><title>{_text(title)}</title></path>')
            # Its label to the right of the cross, or to the left near the picture's edge.
            right = x + 9 + 60 <= self.width - _MARGIN
            self.out.append(f'<text x="{x + 9 if right else x - 9:.2f}" y="{y + 14}" '
                            f'text-anchor="{"start" if right else "end"}" fill="#666666" '
                            'font-style="italic">skipped</text>')
            return
        title = f"{lane.agent}: {lane.status}; no times recorded" + (
            f"\n{lane.message}" if lane.message else "")
        colour = _STATUS_COLOURS.get(lane.status, _OTHER)
        self.out.append(
            f'<circle class="untimed" cx="{x + 5:.2f}" cy="{cy:.2f}" r="4" fill="none" '
            f'stroke="{colour}" stroke-width="2"><title>{_text(title)}</title></circle>')

    def _critical_outlines(self) -> None:
        for segment in self.path.segments:
            if segment.agent is None or segment.agent not in self.row_of:
                continue
            y = self._row_y(self.row_of[segment.agent]) + (_ROW - _BAR) / 2 - 2
            x0, x1 = self.x(segment.start), self.x(segment.end)
            self.out.append(
                f'<rect class="critical" x="{x0:.2f}" y="{y:.2f}" '
                f'width="{max(1.0, x1 - x0):.2f}" height="{_BAR + 4}" fill="none" '
                f'stroke="{_CRITICAL}" stroke-width="1.5" pointer-events="none"/>')

    def _legend_items(self) -> list[tuple[str, str, str]]:
        """(label, colour, shape) of each legend entry: what the picture shows."""
        spans = [span for lane, _ in self.rows for span in work_spans(lane)]
        statuses = {span.status for span in spans if span.kind == ATTEMPT}
        kinds = {span.kind for span in spans}
        items = [(f"attempt {status.replace('_', ' ')}", colour, "bar")
                 for status, colour in _STATUS_COLOURS.items() if status in statuses]
        items += [(kind, colour, "bar") for kind, colour in _KIND_COLOURS.items()
                  if kind in kinds]
        items.append(("engine overhead (critical path)", _CAUSE_COLOURS[OVERHEAD], "bar"))
        lanes = [lane for lane, _ in self.rows]
        if any(lane.agent in self.parents for lane in lanes):
            items.append(("nested graph", _STATUS_COLOURS["succeeded"], "bracket"))
        if any(lane.restored and not lane.spans for lane in lanes):
            items.append(("restored", _RESTORED, "bar"))
        if any(lane.start is None and lane.status == "skipped" for lane in lanes):
            items.append(("skipped", "#666666", "cross"))
        items.append(("on the critical path", _CRITICAL, "outline"))
        return items

    def _legend_positions(self) -> list[tuple[float, float]]:
        x, y, positions = float(_MARGIN), 0.0, []
        for label, _, _ in self.legend:
            width = 22 + _CHAR * len(label) + 14
            if x + width > self.width - _MARGIN and x > _MARGIN:
                x, y = float(_MARGIN), y + 18
            positions.append((x, y))
            x += width
        return positions

    def _legend_height(self) -> float:
        positions = self._legend_positions()
        return (positions[-1][1] if positions else 0.0) + 18

    def _draw_legend(self) -> None:
        for (label, colour, shape), (x, dy) in zip(self.legend, self._legend_positions()):
            y = self.legend_top + dy
            if shape == "bar":
                self.out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="16" height="10" '
                                f'fill="{colour}"/>')
            elif shape == "bracket":
                self.out.append(f'<rect x="{x:.1f}" y="{y + 1:.1f}" width="16" height="8" '
                                f'fill="{colour}" fill-opacity="0.18" stroke="{colour}" '
                                'stroke-width="1.5"/>')
            elif shape == "outline":
                self.out.append(f'<rect x="{x:.1f}" y="{y - 1:.1f}" width="16" height="12" '
                                f'fill="none" stroke="{colour}" stroke-width="1.5"/>')
            else:
                self.out.append(f'<path d="M{x + 3:.1f},{y:.1f} L{x + 13:.1f},{y + 10:.1f} '
                                f'M{x + 3:.1f},{y + 10:.1f} L{x + 13:.1f},{y:.1f}" '
                                f'stroke="{colour}" stroke-width="2"/>')
            self.out.append(f'<text class="legend" x="{x + 20:.1f}" y="{y + 9:.1f}" '
                            'fill="#333333">'
                            f"{_text(label)}</text>")


def _leaf(path: str, depth: int) -> str:
    """A nested agent's label: its own name, as its parent's row is right above."""
    return path.rsplit("/", 1)[-1] if depth else path
