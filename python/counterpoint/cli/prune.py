"""``counterpoint runs prune``: delete old runs from a store (``store.prune``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import add_output_flags, open_store, parse_when, usage_error
from ._exits import OK
from ._output import Output, timestamp
from .runs import STATUSES, add_store_flag

# What prune deletes unless --status says otherwise: runs that ended. A paused, an
# interrupted or a running run is work someone may still resume.
ENDED = ("succeeded", "failed", "cancelled", "timed_out")


def add_parser(runs: Any) -> None:
    parser = runs.add_parser(
        "prune", help="delete old runs from a store",
        description="Delete runs (and their outputs) from a store. By default only runs "
                    f"that ended ({', '.join(ENDED)}); name other statuses with --status. "
                    "Asks for confirmation unless --yes (or --json) is given.")
    add_store_flag(parser)
    parser.add_argument("--before", metavar="AGE|DATE",
                        help="only runs last updated before this: an age (7d, 12h, 30m) or a "
                             "date (2026-11-01, local time)")
    parser.add_argument("--status", action="append", choices=STATUSES, metavar="STATUS",
                        help=f"only runs with this status (default: {', '.join(ENDED)}); "
                             "repeatable")
    parser.add_argument("--keep", type=int, metavar="N",
                        help="keep the N newest of the runs --status selects; delete older ones")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    add_output_flags(parser)
    parser.set_defaults(handler=prune_command)


def prune_command(args: argparse.Namespace, out: Output) -> int:
    before = None if args.before is None else parse_when(args.before, "--before")
    statuses = list(args.status or ENDED)
    if args.keep is not None and args.keep < 0:
        raise usage_error(f"--keep {args.keep}: expected a number of runs >= 0")
    store = open_store(args.store)
    try:
        matching = [r for r in store.runs(statuses)[args.keep or 0:]
                    if before is None or r.updated < before]
        if not out.json and not args.yes:
            if not matching:
                out.note(f"no run of {args.store} matches; nothing to delete")
                return OK
            what = f"{len(matching)} run(s) of {args.store} with status {', '.join(statuses)}"
            if before is not None:
                what += f" last updated before {timestamp(before)}"
            if args.keep:
                what += f" (keeping the {args.keep} newest)"
            if not sys.stdin.isatty():
                raise usage_error(f"prune would delete {what}; confirm with --yes (stdin is "
                                  "not a terminal to ask)")
            sys.stderr.write(f"Delete {what}? [y/N] ")
            sys.stderr.flush()
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                out.note("nothing deleted")
                return OK
        deleted = store.prune(before=before, status=statuses, keep=args.keep)
    finally:
        store.close()
    if out.json:
        out.document({"deleted": deleted, "store": args.store, "before": before,
                      "status": statuses, "keep": args.keep})
    else:
        out.line(f"deleted {deleted} run(s) from {args.store}")
    return OK
