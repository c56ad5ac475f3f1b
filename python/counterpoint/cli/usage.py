"""``counterpoint usage``: calls, failures, tokens, cost and latency from a store
(``cp.usage``)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_output_flags, open_store, parse_when
from ._exits import OK
from ._output import Output, duration, number


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "usage", help="calls, failures, tokens, cost and latency, by agent, graph or run",
        description="Sum what the runs of a store used: calls, failures, tokens, cost and "
                    "latency percentiles, by agent, graph or run.")
    parser.add_argument("--store", metavar="PATH", required=True,
                        help="the run store (SQLite file)")
    parser.add_argument("--by", choices=("agent", "graph", "run"), default="agent",
                        help="what each row sums (default: agent)")
    parser.add_argument("--since", metavar="AGE|DATE",
                        help="only runs since: an age (7d, 12h) or a date (2026-11-01, local "
                             "time)")
    parser.add_argument("--graph", metavar="FINGERPRINT",
                        help="only the runs of the graph with this fingerprint")
    add_output_flags(parser)
    parser.set_defaults(handler=usage_command)


def usage_command(args: argparse.Namespace, out: Output) -> int:
    since = None if args.since is None else parse_when(args.since, "--since")
    from .. import usage as usage_of  # the governance API (counterpoint.usage)

    store = open_store(args.store)
    try:
        rows = usage_of(store, by=args.by, since=since, graph=args.graph, as_frame=False)
    finally:
        store.close()
    if out.json:
        out.document({"by": args.by, "since": since, "rows": [
            {"key": r.key, "calls": r.calls, "failures": r.failures, "tokens": r.tokens,
             "cost": r.cost, "p50_seconds": r.p50_seconds, "p95_seconds": r.p95_seconds}
            for r in rows]})
        return OK
    if not rows:
        out.note(f"no usage recorded in {args.store}" + (" in that period" if since else ""))
        return OK
    out.table([args.by, "calls", "failures", "tokens", "cost", "p50", "p95"],
              [[r.key, str(r.calls), str(r.failures),
                " ".join(f"{name}={number(v)}" for name, v in sorted(r.tokens.items())),
                f"{r.cost:.4f}", duration(r.p50_seconds), duration(r.p95_seconds)]
               for r in rows])
    return OK
