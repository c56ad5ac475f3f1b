"""Layered layout of nested graphs, top to bottom, in pure Python (no graphviz).

A :class:`Block` is one graph: boxes of a given size and the edges between them, a box
being either a node or another block (a nested graph), laid out first and then placed
as one box. In each block:

1. Layers: each box one layer below the lowest box it follows (longest path). An edge
   that spans several layers passes through the ones between, in a lane of its own.
2. Order: a few sweeps down and up sort each layer by the mean position of each box's
   neighbours in the layer before (barycenters), keeping the order with the fewest
   crossings.
3. Rows: a layer wider than :data:`MAX_ROW_WIDTH` (a fan-out to 200 workers) wraps into
   rows of equal cells, so pictures grow downwards at a fixed text size; edges reach
   the boxes of later rows through the gaps between the cells.
4. Across: boxes move towards their neighbours' mean position, as near as the order and
   the gaps allow (an exact least-squares fit: isotonic regression).

Edges are routed as point lists (:func:`route`, :func:`repeat_route`): out of the source
at its bottom, into the target at its top, so every edge ends pointing down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

Point = tuple[float, float]

LAYER_GAP = 44.0  # between layers: room for the edges that cross between them
NODE_GAP = 18.0  # between the boxes of a layer
LANE_GAP = 10.0  # between an edge passing through a layer and what is beside it
ROW_GAP = 24.0  # between the rows of a wrapped layer
MAX_ROW_WIDTH = 1280.0  # a layer wider than this wraps into rows
ABOVE = 8.0  # how far above a layer edges turn towards a box of a later row
SWEEPS = 4


@dataclass(eq=False)
class Item:
    """A box to place: a node of the given size, or the block ``inner``."""

    width: float = 0.0
    height: float = 0.0
    inner: Block | None = None
    last: bool = False  # placed in the block's last layer (for a box nothing follows)
    # Set by layout(); x and y are absolute after place().
    layer: int = 0
    row: int = 0
    x: float = 0.0
    y: float = 0.0
    channel: float = 0.0  # in a wrapped layer, x of the gap right of the box's cell
    parent: Block | None = None

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def bottom(self) -> float:
        return self.y + self.height


@dataclass(eq=False)
class Layer:
    """Where a layer of a block sits: its top and bottom, and those of each of its rows
    (one row unless it wraps)."""

    top: float = 0.0
    bottom: float = 0.0
    rows: list[tuple[float, float]] = field(default_factory=list)


@dataclass(eq=False)
class Block:
    """One graph to lay out: ``items`` and ``edges`` between them, as index pairs
    (before, after), acyclic. The paddings leave room around the laid-out boxes (for a
    nested graph's label, and ``extra_right`` for a repeat edge)."""

    items: list[Item]
    edges: list[tuple[int, int]]
    pad_top: float = 0.0
    pad_side: float = 0.0
    pad_bottom: float = 0.0
    extra_right: float = 0.0
    min_width: float = 0.0
    # Set by layout(); absolute after place().
    width: float = 0.0
    height: float = 0.0
    x: float = 0.0
    y: float = 0.0
    layers: list[Layer] = field(default_factory=list)
    # The points an edge spanning several layers passes through, by its index pair.
    passages: dict[tuple[int, int], list[Point]] = field(default_factory=dict)
    owner: Item | None = None


@dataclass(eq=False)
class _Slot:
    """A place in a layer: an item, or an edge passing through (a lane, no width)."""

    item: Item | None
    width: float
    layer: int
    up: list[_Slot] = field(default_factory=list)
    down: list[_Slot] = field(default_factory=list)
    x: float = 0.0  # center
    pos: int = 0


def layout(block: Block) -> None:
    """Lays out ``block`` and every block nested in it, each relative to its own top
    left corner; :func:`place` then makes the coordinates absolute."""
    for item in block.items:
        item.parent = block
        if item.inner is not None:
            item.inner.owner = item
            layout(item.inner)
            item.width, item.height = item.inner.width, item.inner.height
    layers, lanes = _layers(block)
    _order(layers)
    grids = [_wrap(slots) for slots in layers]
    _assign_x(layers, grids)
    _assign_y(block, layers, grids)
    block.passages = {
        key: [point for lane in chain for point in
              ((lane.x, block.layers[lane.layer].top), (lane.x, block.layers[lane.layer].bottom))]
        for key, chain in lanes.items()}


def place(block: Block, x: float = 0.0, y: float = 0.0) -> None:
    """Moves a laid-out ``block`` (and what is in it) so that its corner is at (x, y)."""
    block.x, block.y = x, y
    for layer in block.layers:
        layer.top += y
        layer.bottom += y
        layer.rows = [(top + y, bottom + y) for top, bottom in layer.rows]
    block.passages = {key: [(px + x, py + y) for px, py in points]
                      for key, points in block.passages.items()}
    for item in block.items:
        item.x += x
        item.y += y
        item.channel += x
        if item.inner is not None:
            place(item.inner, item.x, item.y)


_Lanes = dict[tuple[int, int], list["_Slot"]]


def _layers(block: Block) -> tuple[list[list[_Slot]], _Lanes]:
    """Layers of slots, and the lanes of each edge that spans several layers; sets each
    item's layer."""
    items = block.items
    after: list[list[int]] = [[] for _ in items]
    waiting = [0] * len(items)  # predecessors not yet given a layer
    for source, target in block.edges:
        after[source].append(target)
        waiting[target] += 1
    levels = [0] * len(items)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    while ready:  # Kahn's order: a box's layer is final once all before it have theirs
        index = ready.pop()
        for target in after[index]:
            levels[target] = max(levels[target], levels[index] + 1)
            waiting[target] -= 1
            if waiting[target] == 0:
                ready.append(target)
    deepest = max((lv for lv, item in zip(levels, items) if not item.last), default=-1)
    for index, item in enumerate(items):
        if item.last:
            levels[index] = max(levels[index], deepest + 1)
        item.layer = levels[index]
    slots = [_Slot(item, item.width, layer=level) for item, level in zip(items, levels)]
    layers: list[list[_Slot]] = [[] for _ in range(max(levels, default=-1) + 1)]
    for slot, level in zip(slots, levels):
        layers[level].append(slot)
    lanes: _Lanes = {}
    for source, target in block.edges:
        upper = slots[source]
        for level in range(levels[source] + 1, levels[target]):
            lane = _Slot(None, 0.0, layer=level)
            layers[level].append(lane)
            lanes.setdefault((source, target), []).append(lane)
            upper.down.append(lane)
            lane.up.append(upper)
            upper = lane
        upper.down.append(slots[target])
        slots[target].up.append(upper)
    block.layers = [Layer() for _ in layers]
    return layers, lanes


def _order(layers: list[list[_Slot]]) -> None:
    """Barycenter sweeps; keeps the order with the fewest crossings."""
    _number(layers)
    best = [list(slots) for slots in layers]
    fewest = _crossings(layers)
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        indices = range(1, len(layers)) if downward else range(len(layers) - 2, -1, -1)
        for index in indices:
            slots = layers[index]
            # Slots with no neighbour on that side keep their place.
            slots.sort(key=lambda s: _mean([n.pos for n in (s.up if downward else s.down)],
                                           s.pos))
            for pos, slot in enumerate(slots):
                slot.pos = pos
        count = _crossings(layers)
        if count < fewest:
            fewest, best = count, [list(slots) for slots in layers]
        if fewest == 0:
            break
    layers[:] = best
    _number(layers)


def _number(layers: list[list[_Slot]]) -> None:
    for slots in layers:
        for pos, slot in enumerate(slots):
            slot.pos = pos


def _mean(values: Sequence[float], default: float) -> float:
    return sum(values) / len(values) if values else default


def _crossings(layers: list[list[_Slot]]) -> int:
    """Edge crossings between adjacent layers: inversions of the lower ends, with the
    edges sorted by their upper ends (a Fenwick tree, n log n)."""
    total = 0
    for upper, lower in pairwise(layers):
        ends = sorted((slot.pos, below.pos) for slot in upper for below in slot.down)
        tree = [0] * (len(lower) + 1)
        for seen, (_, pos) in enumerate(ends):
            # Edges seen so far whose lower end is right of this one's cross it.
            index, not_right = pos + 1, 0
            while index > 0:
                not_right += tree[index]
                index -= index & -index
            total += seen - not_right
            index = pos + 1
            while index <= len(lower):
                tree[index] += 1
                index += index & -index
    return total


@dataclass
class _Grid:
    """How a wrapped layer's boxes sit: ``columns`` cells of ``cell`` width per row."""

    columns: int
    cell: float


def _wrap(slots: list[_Slot]) -> _Grid | None:
    boxes = [slot for slot in slots if slot.item is not None]
    if len(boxes) < 2 or _packed_width(slots) <= MAX_ROW_WIDTH:
        return None
    cell = max(slot.width for slot in boxes)
    columns = max(1, int((MAX_ROW_WIDTH + NODE_GAP) // (cell + NODE_GAP)))
    rows = math.ceil(len(boxes) / columns)
    return _Grid(math.ceil(len(boxes) / rows), cell)  # rows as even as they can be


def _gap(left: _Slot, right: _Slot) -> float:
    """Least distance between the centers of two neighbouring slots."""
    gap = NODE_GAP if left.item is not None and right.item is not None else LANE_GAP
    return (left.width + right.width) / 2 + gap


def _packed_width(slots: list[_Slot]) -> float:
    return sum(slot.width for slot in slots) + sum(
        _gap(a, b) - (a.width + b.width) / 2 for a, b in pairwise(slots))


def _assign_x(layers: list[list[_Slot]], grids: list[_Grid | None]) -> None:
    for slots, grid in zip(layers, grids):
        if grid is None:
            x = -_packed_width(slots) / 2
            for index, slot in enumerate(slots):
                if index:
                    x += _gap(slots[index - 1], slot)
                else:
                    x += slot.width / 2
                slot.x = x
        else:
            _place_grid(slots, grid)
    for sweep in range(2 * SWEEPS):
        downward = sweep % 2 == 0
        order = list(zip(layers, grids))
        for slots, grid in order if downward else reversed(order):
            if grid is not None:
                continue  # a grid stays centered
            wanted = [_mean([n.x for n in (s.up if downward else s.down)], s.x)
                      for s in slots]
            for slot, x in zip(slots, _fit(wanted, [_gap(a, b) for a, b in
                                                    pairwise(slots)])):
                slot.x = x


def _place_grid(slots: list[_Slot], grid: _Grid) -> None:
    """Boxes in rows of equal cells centered on 0; the lanes of edges passing through
    the layer right of the cells."""
    boxes = [slot for slot in slots if slot.item is not None]
    width = grid.columns * grid.cell + (grid.columns - 1) * NODE_GAP
    left = -width / 2
    for index, slot in enumerate(boxes):
        row, column = divmod(index, grid.columns)
        cell_left = left + column * (grid.cell + NODE_GAP)
        slot.x = cell_left + grid.cell / 2
        assert slot.item is not None
        slot.item.row = row
        slot.item.channel = cell_left + grid.cell + NODE_GAP / 2
    x = left + width + NODE_GAP / 2
    for slot in slots:
        if slot.item is None:
            x += LANE_GAP
            slot.x = x


def _fit(wanted: list[float], gaps: list[float]) -> list[float]:
    """The positions nearest ``wanted`` (least squares) with ``x[i+1] - x[i] >= gaps[i]``:
    shifted by the running sum of the gaps, it is an isotonic regression, solved by
    pooling adjacent violators."""
    offsets = [0.0]
    for gap in gaps:
        offsets.append(offsets[-1] + gap)
    pools: list[list[float]] = []  # [mean, count]
    for value, offset in zip(wanted, offsets):
        pools.append([value - offset, 1])
        while len(pools) > 1 and pools[-2][0] > pools[-1][0]:
            mean, count = pools.pop()
            previous = pools[-1]
            previous[0] = (previous[0] * previous[1] + mean * count) / (previous[1] + count)
            previous[1] += count
    fitted = [mean for mean, count in pools for _ in range(int(count))]
    return [value + offset for value, offset in zip(fitted, offsets)]


def _assign_y(block: Block, layers: list[list[_Slot]], grids: list[_Grid | None]) -> None:
    """Layers top to bottom; sets the block's size and every item's corner."""
    spans = [(slot.x - slot.width / 2, slot.x + slot.width / 2)
             for slots in layers for slot in slots]
    # The gaps beside a grid's last column carry edges too.
    spans += [(slot.item.channel,) * 2 for slots, grid in zip(layers, grids)
              if grid is not None for slot in slots if slot.item is not None]
    left = min((a for a, _ in spans), default=0.0)
    right = max((b for _, b in spans), default=0.0)
    inner = max(right - left, block.min_width - 2 * block.pad_side - block.extra_right)
    block.width = inner + 2 * block.pad_side + block.extra_right
    shift = block.pad_side + (inner - (right - left)) / 2 - left
    y = block.pad_top
    for layer, slots, grid in zip(block.layers, layers, grids):
        layer.top = y
        boxes = [slot for slot in slots if slot.item is not None]
        rows = math.ceil(len(boxes) / grid.columns) if grid is not None else 1
        for row in range(rows):
            in_row = [s for s in boxes if s.item is not None and s.item.row == row]
            height = max((s.item.height for s in in_row if s.item is not None), default=0.0)
            for slot in in_row:
                assert slot.item is not None
                slot.item.x = slot.x - slot.width / 2 + shift
                slot.item.y = y
                if grid is not None:
                    slot.item.channel += shift
            layer.rows.append((y, y + height))
            y += height + (ROW_GAP if row < rows - 1 else 0.0)
        layer.bottom = y
        for slot in slots:
            slot.x += shift
        y += LAYER_GAP
    block.height = (y - LAYER_GAP if layers else y) + block.pad_bottom


def _chain(leaf: Item, block: Block) -> list[Item]:
    """``leaf`` and the items around it, up to the one in ``block``."""
    chain = [leaf]
    while chain[-1].parent is not block:
        owner = chain[-1].parent.owner if chain[-1].parent is not None else None
        if owner is None:
            raise ValueError("the item is not inside the block")
        chain.append(owner)
    return chain


def _exit(chain: list[Item], x: float) -> list[Point]:
    """From the bottom of ``chain[0]`` out of each box around it, to below its layer.

    Out of a wrapped layer's row with rows below, an edge leaves sideways to the gap
    beside the box's cell: leaving downwards, it would look like an edge into the box
    below, which edges enter from the same gap."""
    points: list[Point] = []
    for item in chain:
        assert item.parent is not None
        layer = item.parent.layers[item.layer]
        if item.row < len(layer.rows) - 1:
            if item.inner is None:
                y = item.y + item.height / 2
                points.append((item.x + item.width, y))
            else:  # along the bottom margin inside the nested block
                y = item.bottom - item.inner.pad_bottom / 2
                points.append((x, y))
            points.append((item.channel, y))
            x = item.channel
        else:
            points.append((x, item.bottom))
        points.append((x, layer.bottom))
    return points


def _entry(chain: list[Item], x: float) -> list[Point]:
    """From above the layer of ``chain[-1]`` into each box, to the top of ``chain[0]``
    at ``x``."""
    points: list[Point] = []
    for item in reversed(chain):
        assert item.parent is not None
        layer = item.parent.layers[item.layer]
        if item.row:  # a wrapped layer's later row: down the gap beside its cell
            y = layer.rows[item.row][0] - ROW_GAP / 2
            points += [(item.channel, layer.top - ABOVE), (item.channel, y), (x, y)]
        points.append((x, item.y))
    return points


def route(source: Item, target: Item, block: Block) -> list[Point]:
    """The points of an edge from the box ``source`` to the box ``target``, both in
    ``block`` or nested in its items (which an edge of ``block`` joins)."""
    out, into = _chain(source, block), _chain(target, block)
    key = (block.items.index(out[-1]), block.items.index(into[-1]))
    return _distinct([*_exit(out, source.cx), *block.passages.get(key, []),
                      *_entry(into, target.cx)])


def repeat_route(source: Item, target: Item, cluster: Item) -> list[Point]:
    """The points of an edge from the box ``source`` back up to the box ``target``,
    both in the block of ``cluster``: below its last layer, up its right side, and
    down into ``target`` from above its first layer. It leaves and enters right of the
    boxes' middles, where edges of the data do not."""
    block = cluster.inner
    assert block is not None
    low = block.y + block.height - block.pad_bottom / 2
    high = block.y + block.pad_top - ABOVE
    side = block.x + block.width - (block.pad_side + block.extra_right) / 2
    out = _exit(_chain(source, block), source.x + source.width * 0.75)
    into = _entry(_chain(target, block), target.x + target.width * 0.75)
    return _distinct([*out, (out[-1][0], low), (side, low), (side, high),
                      (into[0][0], high), *into])


def _distinct(points: list[Point]) -> list[Point]:
    """Without points that repeat the one before, nor ones in line between two others."""
    kept: list[Point] = []
    for point in points:
        if kept and math.isclose(kept[-1][0], point[0]) and math.isclose(kept[-1][1], point[1]):
            continue
        if len(kept) >= 2 and _in_line(kept[-2], kept[-1], point):
            kept[-1] = point
        else:
            kept.append(point)
    return kept


def _in_line(a: Point, b: Point, c: Point) -> bool:
    """``b`` lies on the axis-parallel segment from ``a`` to ``c``."""
    if math.isclose(a[0], b[0]) and math.isclose(b[0], c[0]):
        return min(a[1], c[1]) <= b[1] <= max(a[1], c[1])
    if math.isclose(a[1], b[1]) and math.isclose(b[1], c[1]):
        return min(a[0], c[0]) <= b[0] <= max(a[0], c[0])
    return False
