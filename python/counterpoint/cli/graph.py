"""``counterpoint graph SPEC``: the compiled plan as Mermaid, text or JSON.

The picture is made from the plan itself (``describe()``), nested graphs and the child
graphs patterns run expanded as subgraphs, by the conventions LangChain's ``get_graph()``
reads too (``patterns._drawing_hooks``), without needing langchain-core."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from .._graph import CompiledGraph
from ..patterns._drawing_hooks import child_graph, drawn_agents, routes
from ._common import add_allow_flag, add_output_flags, load_graph, usage_error
from ._exits import OK
from ._output import Output

FORMATS = ("mermaid", "ascii", "json", "svg")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "graph", help="draw a spec's compiled plan (Mermaid, text or JSON)",
        description="Print the plan a spec compiles to: a Mermaid flowchart (paste it in "
                    "Markdown, or render it with mermaid-cli), an indented text outline, or "
                    "JSON (the plan and the spec). Nested graphs and patterns are drawn as "
                    "subgraphs.")
    parser.add_argument("spec", metavar="SPEC", help="the graph spec (.yaml, .yml or .json)")
    add_allow_flag(parser)
    parser.add_argument("--format", "-f", choices=FORMATS, default=None,
                        help="mermaid (default), ascii, json (also with --json); svg is not "
                             "available yet")
    add_output_flags(parser)
    parser.set_defaults(handler=graph_command)


def graph_command(args: argparse.Namespace, out: Output) -> int:
    fmt = args.format or ("json" if out.json else "mermaid")
    if fmt == "svg":
        raise usage_error(
            "--format svg needs the observability work (SVG pictures of graphs), which this "
            "version does not have yet; print --format mermaid and render it, e.g. with "
            "mermaid-cli: counterpoint graph SPEC > g.mmd && mmdc -i g.mmd -o g.svg")
    app = load_graph(args.spec, args.allow)
    if fmt == "json":
        out.document({"plan": app.describe(), "spec": app.to_spec(),
                      "tree": [node.as_dict() for node in plan_of(app)]})
    elif fmt == "ascii":
        for text in ascii_lines(plan_of(app)):
            out.line(text)
    else:
        out.line(mermaid(app))
    return OK


@dataclass
class Node:
    """One agent of a plan; ``inner`` is the graph drawn in its place, if any."""

    name: str
    path: str
    after: list[str]
    routes: bool = False
    inner: list[Node] | None = None
    entries: list[str] = field(default_factory=list)
    sinks: list[str] = field(default_factory=list)
    repeats: bool = False

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "path": self.path, "after": self.after,
                               "routes": self.routes}
        if self.inner is not None:
            doc.update(agents=[n.as_dict() for n in self.inner], entries=self.entries,
                       sinks=self.sinks, repeats=self.repeats)
        return doc


def plan_of(graph: CompiledGraph, prefix: str = "",
            outer: tuple[CompiledGraph, ...] = ()) -> list[Node]:
    """The plan's agents in topological order, nested graphs expanded."""
    outer = (*outer, graph)
    nodes = []
    for item, agent in drawn_agents(graph):
        node = Node(item["name"], prefix + item["name"], list(item["after"]), routes(agent))
        child, repeats = child_graph(agent)
        if child is not None and all(child is not g for g in outer):
            child_plan = child.describe()
            node.inner = plan_of(child, node.path + "/", outer)
            node.entries = list(child_plan["entries"])
            node.sinks = list(child_plan["sinks"])
            node.repeats = repeats
        nodes.append(node)
    return nodes


def paths(nodes: list[Node]) -> list[str]:
    """Every agent path of a plan, as run events name them (``"both/loud"``)."""
    return [p for n in nodes for p in [n.path, *paths(n.inner or [])]]


# ---- Mermaid ---------------------------------------------------------------------------

def _label(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


class _Mermaid:
    def __init__(self) -> None:
        self.lines = ["flowchart TD", '    __start__(["start"])']
        self.edges: list[str] = []
        self.ids: dict[str, str] = {}  # agent path -> node id
        self.count = 0

    def new_id(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def add(self, nodes: list[Node], depth: int) -> None:
        indent = "    " * depth
        for node in nodes:
            if node.inner is None:
                node_id = self.ids[node.path] = self.new_id("n")
                self.lines.append(f"{indent}{node_id}[{_label(node.name)}]")
            else:
                self.lines.append(f"{indent}subgraph {self.new_id('g')} [{_label(node.name)}]")
                self.add(node.inner, depth + 1)
                self.lines.append(f"{indent}end")

    def firsts(self, node: Node) -> list[str]:
        """Ids of the drawn nodes an edge into ``node`` reaches."""
        if node.inner is None:
            return [self.ids[node.path]]
        by_name = {n.name: n for n in node.inner}
        return [i for name in node.entries for i in self.firsts(by_name[name])]

    def lasts(self, node: Node) -> list[str]:
        """Ids of the drawn nodes an edge out of ``node`` leaves from."""
        if node.inner is None:
            return [self.ids[node.path]]
        by_name = {n.name: n for n in node.inner}
        return [i for name in node.sinks for i in self.lasts(by_name[name])]

    def connect(self, nodes: list[Node]) -> None:
        by_name = {n.name: n for n in nodes}
        for node in nodes:
            for name in node.after:
                before = by_name[name]
                arrow = " -.-> " if before.routes else " --> "
                self.edges += [f"    {a}{arrow}{b}" for a in self.lasts(before)
                               for b in self.firsts(node)]
            if node.inner is not None:
                self.connect(node.inner)
                if node.repeats:
                    self.edges += [f"    {a} -. again .-> {b}" for a in self.lasts(node)
                                   for b in self.firsts(node)]


def mermaid(graph: CompiledGraph) -> str:
    """A Mermaid flowchart of the plan: ``__start__`` to the entries, the sinks to
    ``__end__``, nested graphs as subgraphs, routed edges dotted."""
    nodes = plan_of(graph)
    chart = _Mermaid()
    chart.add(nodes, 1)
    chart.lines.append('    __end__(["end"])')
    described = graph.describe()
    by_name = {n.name: n for n in nodes}
    chart.edges += [f"    __start__ --> {i}" for name in described["entries"]
                    for i in chart.firsts(by_name[name])]
    chart.connect(nodes)
    chart.edges += [f"    {i} --> __end__" for name in described["sinks"]
                    for i in chart.lasts(by_name[name])]
    return "\n".join(chart.lines + chart.edges)


# ---- text ------------------------------------------------------------------------------

def ascii_lines(nodes: list[Node], depth: int = 0) -> list[str]:
    """One line per agent, nested graphs indented under their agent:
    ``reply  <- billing, shipping``."""
    width = max((len(n.name) for n in nodes), default=0)
    lines = []
    for node in nodes:
        marks = [f"<- {', '.join(node.after)}"] if node.after else []
        if node.routes:
            marks.append("(routes)")
        if node.inner is not None:
            marks.append("(repeats)" if node.repeats else "(nested)")
        text = f"{'  ' * depth}{node.name:<{width}}  {' '.join(marks)}".rstrip()
        lines.append(text)
        if node.inner is not None:
            lines += ascii_lines(node.inner, depth + 1)
    return lines
