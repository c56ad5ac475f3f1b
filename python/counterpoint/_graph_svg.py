"""The picture of a compiled graph (``CompiledGraph.draw()``): SVG drawn from its plan
in pure Python, readable from five agents to hundreds.

Agents are rounded boxes (name, then declared priority and policies in small type);
nested graphs and patterns are labelled boxes around their agents; edges run top to
bottom, dashed out of an agent that routes, and a loop's edge back to its start runs up
the right side of its box. Every box and edge has a ``<title>`` (the browser's hover
text) with the agent's full path and everything known about it. Styling is in
attributes, not a stylesheet, so that several pictures in one notebook never restyle
each other and sanitizers keep it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ._graph import CompiledGraph, register_graph_drawer
from ._layout import Block, Item, Point, layout, place, repeat_route, route
from ._picture import GraphPicture
from ._plan_view import DrawnEdge, Plan, PlanPart, drawn_edges, firsts, lasts, plan_view
from ._svg import clip, escape, text_width

FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
NAME_SIZE = 13.0
NOTE_SIZE = 11.0
LABEL_SIZE = 12.0
TEXT_PAD = 12.0  # left and right of a box's text
MAX_TEXT = 220.0  # longer names and notes are cut short (the hover text has them whole)
NOTE_LINES = 2  # lines of priority and policies under a name, at most
BOX_HEIGHT = 30.0  # with the name alone
NOTE_HEIGHT = 14.0  # more for each line of notes
TERMINAL = (64.0, 22.0)  # the start and end markers
MARGIN = 16.0
CLUSTER_PAD = 12.0
CLUSTER_TOP = 32.0  # room for the label
REPEAT_ROOM = 24.0  # beside and below a repeating graph, for its edge back
ARROW = 8.0
CORNER = 6.0  # radius of an edge's turns

# Okabe-Ito hues (distinguishable with every common colour-vision deficiency), darkened
# where they draw lines or text on light fills; all text meets WCAG AA contrast.
INK = "#1f2933"
MUTED = "#52606d"
BOX_FILL, BOX_LINE = "#eaf2fb", "#0072b2"
ROUTER_FILL, ROUTER_LINE = "#fdf1e3", "#b35c00"
CLUSTER_FILLS = ("#f5f7fa", "#eceff4", "#e3e8ef")
CLUSTER_LINE = "#8795a4"
REPEAT_LINE = "#8a4f9e"
EDGE_LINE = "#4f5d6b"
TERMINAL_FILL = "#3e4c59"


@dataclass
class _Scene:
    """The boxes made for a plan's parts, and the block made for each graph."""

    boxes: dict[PlanPart, Item] = field(default_factory=dict)
    clusters: list[tuple[PlanPart, Item, int]] = field(default_factory=list)  # + depth
    blocks: dict[Plan, Block] = field(default_factory=dict)


def draw_graph(graph: CompiledGraph) -> GraphPicture:
    """The picture of ``graph`` (see :meth:`CompiledGraph.draw`)."""
    plan = plan_view(graph)
    scene = _Scene()
    top = _block(plan, scene, 0)
    start, end = Item(*TERMINAL), Item(*TERMINAL, last=True)
    count = len(top.items)
    index = {part.name: i for i, part in enumerate(plan.parts)}
    top.items += [start, end]
    top.edges += [(count, index[name]) for name in plan.entries]
    top.edges += [(index[name], count + 1) for name in plan.sinks]
    top.pad_top = top.pad_bottom = top.pad_side = MARGIN
    layout(top)
    place(top)

    edges = [_edge(route(start, scene.boxes[first], top), "start", first.path, "data")
             for name in plan.entries for first in firsts(plan.by_name[name])]
    edges += [_drawn_edge(edge, scene) for edge in drawn_edges(plan)]
    edges += [_edge(route(scene.boxes[last], end, top), last.path, "end", "data")
              for name in plan.sinks for last in lasts(plan.by_name[name])]
    clusters = sorted(scene.clusters, key=lambda cluster: cluster[2])  # outer ones first
    agents = sum(1 for _ in plan.leaves())
    width, height = round(top.width), round(top.height)
    title = f"Graph of {agents} agent{'s' if agents != 1 else ''}"
    svg = "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{title}" '
        f'font-family="{escape(FONT)}" style="max-width:100%;height:auto">',
        f"<title>{title}</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        '<g class="clusters">',
        *(_cluster(part, item, depth) for part, item, depth in clusters),
        '</g>\n<g class="edges">', *edges,
        '</g>\n<g class="labels">',
        *(_cluster_label(part, item, depth) for part, item, depth in clusters),
        '</g>\n<g class="nodes">',
        *(_node(part, item) for part, item in scene.boxes.items()),
        _terminal(start, "start"), _terminal(end, "end"),
        "</g>\n</svg>",
    ])
    return GraphPicture(svg, float(width), float(height), title)


def _block(plan: Plan, scene: _Scene, depth: int) -> Block:
    items = []
    for part in plan.parts:
        if part.inner is None:
            item = scene.boxes[part] = Item(*_box_size(part))
        else:
            inner = _block(part.inner, scene, depth + 1)
            inner.pad_top, inner.pad_side = CLUSTER_TOP, CLUSTER_PAD
            inner.pad_bottom = CLUSTER_PAD + (REPEAT_ROOM / 2 if part.repeats else 0.0)
            inner.extra_right = REPEAT_ROOM if part.repeats else 0.0
            inner.min_width = min(text_width(_cluster_text(part), LABEL_SIZE),
                                  2 * MAX_TEXT) + 2 * CLUSTER_PAD
            item = Item(inner=inner)
            scene.clusters.append((part, item, depth))
        items.append(item)
    index = {part.name: i for i, part in enumerate(plan.parts)}
    edges = [(index[name], index[part.name]) for part in plan.parts for name in part.after]
    block = scene.blocks[plan] = Block(items, edges)
    return block


def _box_size(part: PlanPart) -> tuple[float, float]:
    notes = _note_lines(part)
    text = max([text_width(part.name, NAME_SIZE),
                *(text_width(line, NOTE_SIZE) for line in notes)])
    width = min(text, MAX_TEXT) + 2 * TEXT_PAD
    return max(width, 72.0), BOX_HEIGHT + NOTE_HEIGHT * len(notes)


def _note_lines(part: PlanPart) -> list[str]:
    """The agent's declared priority and policies, as many to a line as fit in
    :data:`MAX_TEXT`, on :data:`NOTE_LINES` lines at most (the last cut short)."""
    lines: list[str] = []
    for note in part.notes.split(" · ") if part.notes else []:
        joined = f"{lines[-1]} · {note}" if lines else note
        if lines and (text_width(joined, NOTE_SIZE) <= MAX_TEXT or len(lines) == NOTE_LINES):
            lines[-1] = joined
        else:
            lines.append(note)
    return [clip(line, NOTE_SIZE, MAX_TEXT) for line in lines]


def _cluster_text(part: PlanPart) -> str:
    return " · ".join(filter(None, [part.name, part.notes, "↻ repeats" if part.repeats
                                    else ""]))


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _hover(part: PlanPart) -> str:
    """Everything the picture knows about an agent, for its ``<title>``."""
    lines = [part.path]
    if part.priority:
        inherited = " (inherited)" if part.declared_priority is None else ""
        lines.append(f"priority {part.priority}{inherited}")
    if part.policies:
        lines.append(" · ".join(part.policies))
    if part.join != "all":
        lines.append(f"join: {part.join}")
    if part.on_error != "fail":
        lines.append(f"on error: {part.on_error}")
    if part.routes:
        lines.append("routes: only the agents it picks run")
    if part.repeats:
        lines.append("repeats: may run its graph again after it ends")
    return "\n".join(lines)


def _node(part: PlanPart, item: Item) -> str:
    fill, line = (ROUTER_FILL, ROUTER_LINE) if part.routes else (BOX_FILL, BOX_LINE)
    text_x = _number(item.cx)
    notes = _note_lines(part)
    name_y = item.y + (19.5 if not notes else 18.0)
    texts = [f'<text x="{text_x}" y="{_number(name_y)}" text-anchor="middle" '
             f'font-size="{NAME_SIZE:g}" fill="{INK}">'
             f"{escape(clip(part.name, NAME_SIZE, MAX_TEXT))}</text>"]
    texts += [f'<text x="{text_x}" y="{_number(name_y + 16.0 + NOTE_HEIGHT * index)}" '
              f'text-anchor="middle" font-size="{NOTE_SIZE:g}" fill="{MUTED}">'
              f"{escape(line)}</text>" for index, line in enumerate(notes)]
    return (f'<g class="node" data-path="{escape(part.path)}"><title>{escape(_hover(part))}'
            f'</title><rect x="{_number(item.x)}" y="{_number(item.y)}" '
            f'width="{_number(item.width)}" height="{_number(item.height)}" rx="6" '
            f'fill="{fill}" stroke="{line}" stroke-width="1.5"/>{"".join(texts)}</g>')


def _cluster(part: PlanPart, item: Item, depth: int) -> str:
    line = REPEAT_LINE if part.repeats else CLUSTER_LINE
    return (f'<g class="cluster" data-path="{escape(part.path)}"><title>'
            f'{escape(_hover(part))}</title><rect x="{_number(item.x)}" '
            f'y="{_number(item.y)}" width="{_number(item.width)}" '
            f'height="{_number(item.height)}" rx="8" fill="{_cluster_fill(depth)}" '
            f'stroke="{line}" stroke-width="1.2"/></g>')


def _cluster_fill(depth: int) -> str:
    return CLUSTER_FILLS[depth % len(CLUSTER_FILLS)]


def _cluster_label(part: PlanPart, item: Item, depth: int) -> str:
    """A nested graph's label, drawn over the edges that enter it: a halo of the box's
    fill keeps it readable where an edge passes behind it."""
    label = clip(_cluster_text(part), LABEL_SIZE, item.width - 2 * CLUSTER_PAD)
    return (f'<g class="cluster-label" data-path="{escape(part.path)}"><title>'
            f'{escape(_hover(part))}</title><text x="{_number(item.x + CLUSTER_PAD)}" '
            f'y="{_number(item.y + 20.0)}" font-size="{LABEL_SIZE:g}" font-weight="600" '
            f'fill="{INK}" stroke="{_cluster_fill(depth)}" stroke-width="4" '
            f'stroke-linejoin="round" paint-order="stroke">{escape(label)}</text></g>')


def _terminal(item: Item, name: str) -> str:
    return (f'<g class="terminal" data-terminal="{name}"><title>{name} of the run</title>'
            f'<rect x="{_number(item.x)}" y="{_number(item.y)}" width="{_number(item.width)}" '
            f'height="{_number(item.height)}" rx="{_number(item.height / 2)}" '
            f'fill="{TERMINAL_FILL}"/><text x="{_number(item.cx)}" '
            f'y="{_number(item.y + 15.0)}" text-anchor="middle" font-size="11" '
            f'fill="#ffffff">{name}</text></g>')


def _drawn_edge(edge: DrawnEdge, scene: _Scene) -> str:
    source, target = scene.boxes[edge.source], scene.boxes[edge.target]
    if edge.repeat:
        cluster = scene.blocks[edge.graph].owner
        assert cluster is not None
        points = repeat_route(source, target, cluster)
        return _edge(points, edge.source.path, edge.target.path, "repeat")
    points = route(source, target, scene.blocks[edge.graph])
    return _edge(points, edge.source.path, edge.target.path,
                 "route" if edge.conditional else "data")


_EDGE_STYLES = {
    "data": (EDGE_LINE, ""),
    "route": (ROUTER_LINE, ' stroke-dasharray="6 4"'),
    "repeat": (REPEAT_LINE, ' stroke-dasharray="3 3"'),
}
_EDGE_HOVER = {
    "data": "",
    "route": " (routed: only if it is picked)",
    "repeat": " (repeat: runs the graph again)",
}


def _edge(points: list[Point], source: str, target: str, kind: str) -> str:
    color, dashes = _EDGE_STYLES[kind]
    tip_x, tip_y = points[-1]
    # The line stops inside the arrowhead, which ends on the target's top.
    path = _path([*points[:-1], (tip_x, tip_y - ARROW + 1)])
    arrow = (f"M{_number(tip_x - 4.5)},{_number(tip_y - ARROW)} "
             f"L{_number(tip_x + 4.5)},{_number(tip_y - ARROW)} "
             f"L{_number(tip_x)},{_number(tip_y)} Z")
    hover = f"{source} → {target}{_EDGE_HOVER[kind]}"
    return (f'<g class="edge" data-kind="{kind}" data-source="{escape(source)}" '
            f'data-target="{escape(target)}"><title>{escape(hover)}</title>'
            f'<path d="{path}" fill="none" stroke="{color}" stroke-width="1.4"{dashes}/>'
            f'<path d="{arrow}" fill="{color}"/></g>')


def _path(points: list[Point]) -> str:
    """SVG path data through ``points``: straight along axis-parallel stretches (turns
    rounded), elsewhere a curve that leaves and arrives vertically."""
    x, y = points[0]
    data = [f"M{_number(x)},{_number(y)}"]
    for index in range(1, len(points)):
        px, py = points[index - 1]
        nx, ny = points[index]
        axis = _axis(points[index - 1], points[index])
        if axis is None:
            middle = _number((y + ny) / 2)
            data.append(f"C{_number(x)},{middle} {_number(nx)},{middle} "
                        f"{_number(nx)},{_number(ny)}")
            x, y = nx, ny
            continue
        after = points[index + 1] if index + 1 < len(points) else None
        if after is not None and _axis((nx, ny), after) not in (None, axis):
            # A turn between two straight stretches: cut its corner with a curve.
            radius = min(CORNER, _length((px, py), (nx, ny)) / 2,
                         _length((nx, ny), after) / 2)
            bx, by = _towards((nx, ny), (px, py), radius)
            ax, ay = _towards((nx, ny), after, radius)
            data.append(f"L{_number(bx)},{_number(by)} Q{_number(nx)},{_number(ny)} "
                        f"{_number(ax)},{_number(ay)}")
            x, y = ax, ay
        else:
            data.append(f"L{_number(nx)},{_number(ny)}")
            x, y = nx, ny
    return " ".join(data)


def _axis(a: Point, b: Point) -> str | None:
    """"x" for a stretch along the x axis, "y" along the y axis, None for neither."""
    if math.isclose(a[1], b[1]):
        return "x"
    return "y" if math.isclose(a[0], b[0]) else None


def _length(a: Point, b: Point) -> float:
    return abs(a[0] - b[0]) + abs(a[1] - b[1])  # axis-parallel: one term is zero


def _towards(origin: Point, to: Point, distance: float) -> Point:
    length = _length(origin, to) or 1.0
    return (origin[0] + (to[0] - origin[0]) * distance / length,
            origin[1] + (to[1] - origin[1]) * distance / length)


register_graph_drawer(draw_graph)
