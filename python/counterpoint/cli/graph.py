"""``counterpoint graph SPEC``: the compiled plan as Mermaid, text, SVG or JSON.

Every format is made from the plan as pictures see it (``counterpoint._plan_view``):
nested graphs and the child graphs patterns run expanded in their agent's place, without
needing langchain-core."""

from __future__ import annotations

import argparse
from typing import Any

from .._plan_view import Plan, plan_view
from ._common import add_allow_flag, add_output_flags, load_graph
from ._exits import OK
from ._output import Output

FORMATS = ("mermaid", "ascii", "json", "svg")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "graph", help="draw a spec's compiled plan (Mermaid, text, SVG or JSON)",
        description="Print the plan a spec compiles to: a Mermaid flowchart (paste it in "
                    "Markdown, or render it with mermaid-cli), an indented text outline, an "
                    "SVG picture (redirect it to a .svg file), or JSON (the plan and the "
                    "spec). Nested graphs and patterns are drawn as subgraphs.")
    parser.add_argument("spec", metavar="SPEC", help="the graph spec (.yaml, .yml or .json)")
    add_allow_flag(parser)
    parser.add_argument("--format", "-f", choices=FORMATS, default=None,
                        help="mermaid (default), ascii, svg, json (also with --json)")
    add_output_flags(parser)
    parser.set_defaults(handler=graph_command)


def graph_command(args: argparse.Namespace, out: Output) -> int:
    fmt = args.format or ("json" if out.json else "mermaid")
    app = load_graph(args.spec, args.allow)
    if fmt == "json":
        out.document({"plan": app.describe(), "spec": app.to_spec(),
                      "tree": tree(plan_view(app))})
    elif fmt == "ascii":
        for text in ascii_lines(plan_view(app)):
            out.line(text)
    elif fmt == "svg":
        out.line(app.draw().svg)
    else:
        out.line(app.to_mermaid())
    return OK


def tree(plan: Plan) -> list[dict[str, Any]]:
    """The expanded plan as JSON: each agent's name, path, predecessors and whether it
    routes; a nested graph's agents, entries, sinks and whether it repeats."""
    nodes = []
    for part in plan.parts:
        doc: dict[str, Any] = {"name": part.name, "path": part.path, "after": list(part.after),
                               "routes": part.routes}
        if part.inner is not None:
            doc.update(agents=tree(part.inner), entries=list(part.inner.entries),
                       sinks=list(part.inner.sinks), repeats=part.inner.repeats)
        nodes.append(doc)
    return nodes


# ---- text ------------------------------------------------------------------------------

def ascii_lines(plan: Plan, depth: int = 0) -> list[str]:
    """One line per agent, nested graphs indented under their agent:
    ``reply  <- billing, shipping``."""
    width = max((len(part.name) for part in plan.parts), default=0)
    lines = []
    for part in plan.parts:
        marks = [f"<- {', '.join(part.after)}"] if part.after else []
        if part.routes:
            marks.append("(routes)")
        if part.inner is not None:
            marks.append("(repeats)" if part.repeats else "(nested)")
        text = f"{'  ' * depth}{part.name:<{width}}  {' '.join(marks)}".rstrip()
        lines.append(text)
        if part.inner is not None:
            lines += ascii_lines(part.inner, depth + 1)
    return lines
