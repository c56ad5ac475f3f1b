"""A compiled graph's plan as a Mermaid flowchart (``CompiledGraph.to_mermaid()``)."""

from __future__ import annotations

from ._graph import CompiledGraph, register_mermaid_writer
from ._plan_view import Plan, PlanPart, drawn_edges, firsts, lasts, plan_view

# Mermaid reads these in a quoted label; its entity codes (#quot; ...) stand for them.
_ENTITIES = {"&": "#amp;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "#": "#35;"}


def _text(text: str) -> str:
    return "".join(_ENTITIES.get(char, char) for char in text.replace("\n", " "))


def _label(part: PlanPart) -> str:
    """The agent's name, and on a second line its priority and policies, if any."""
    notes = part.notes
    return '"' + _text(part.name) + (f"<br/>{_text(notes)}" if notes else "") + '"'


class _Chart:
    def __init__(self) -> None:
        self.lines = ["flowchart TD", '    __start__(["start"])']
        self.ids: dict[PlanPart, str] = {}  # drawn node -> its Mermaid id
        self.count = 0

    def new_id(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def add(self, plan: Plan, depth: int) -> None:
        indent = "    " * depth
        for part in plan.parts:
            if part.inner is None:
                node_id = self.ids[part] = self.new_id("n")
                self.lines.append(f"{indent}{node_id}[{_label(part)}]")
            else:
                self.lines.append(f"{indent}subgraph {self.new_id('g')} [{_label(part)}]")
                self.add(part.inner, depth + 1)
                self.lines.append(f"{indent}end")


def to_mermaid(graph: CompiledGraph) -> str:
    """A Mermaid flowchart of ``graph``'s plan: ``__start__`` to the entries, the sinks
    to ``__end__``, nested graphs and patterns as subgraphs, routed edges dotted, a
    repeating graph's edge back from its sinks to its entries dotted and labelled
    ``again``; priorities and policies under the agents' names."""
    plan = plan_view(graph)
    chart = _Chart()
    chart.add(plan, 1)
    chart.lines.append('    __end__(["end"])')
    ids = chart.ids
    edges = [f"    __start__ --> {ids[first]}" for name in plan.entries
             for first in firsts(plan.by_name[name])]
    for edge in drawn_edges(plan):
        arrow = "-. again .->" if edge.repeat else "-.->" if edge.conditional else "-->"
        edges.append(f"    {ids[edge.source]} {arrow} {ids[edge.target]}")
    edges += [f"    {ids[last]} --> __end__" for name in plan.sinks
              for last in lasts(plan.by_name[name])]
    return "\n".join(chart.lines + edges)


register_mermaid_writer(to_mermaid)
