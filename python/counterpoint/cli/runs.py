"""``counterpoint runs list|show|resume``: the runs a store keeps. The decisions
(``approve``, ``reject``) are in :mod:`.review`, ``prune`` in :mod:`.prune`."""

from __future__ import annotations

import argparse
from typing import Any

from .._results import value_of
from .._store import Store, StoredRun
from ._common import (
    add_allow_flag,
    add_output_flags,
    add_run_limits,
    load_graph,
    open_store,
    parse_budget,
    positive_int,
    usage_error,
)
from ._exits import NEEDS_REVIEW, OK, STORE, CommandError
from ._output import Output, ago, iso_utc, jsonable, preview, timestamp
from ._report import Context, answer_command, questions_doc, report_result, review_commands

STATUSES = ("running", "succeeded", "failed", "cancelled", "timed_out", "needs_review",
            "needs_input", "interrupted")


def add_parsers(runs: Any) -> None:
    listing = runs.add_parser("list", help="list the runs of a store, newest first",
                              description="List the runs of a store, newest first.")
    add_store_flag(listing)
    listing.add_argument("--status", action="append", choices=STATUSES, metavar="STATUS",
                         help=f"only runs with this status ({', '.join(STATUSES)}); repeatable")
    listing.add_argument("--graph", metavar="FINGERPRINT",
                         help="only runs of the graph with this fingerprint (or its prefix)")
    listing.add_argument("--limit", type=positive_int, default=50, metavar="N",
                         help="show at most N runs (default 50; 0: all)")
    add_output_flags(listing)
    listing.set_defaults(handler=list_command)

    show = runs.add_parser("show", help="show one run: status, agents, pending reviews",
                           description="Show one stored run: its status, input, each "
                                       "agent's outcome and what awaits review.")
    show.add_argument("run_key", metavar="RUN_KEY")
    add_store_flag(show)
    add_output_flags(show)
    show.set_defaults(handler=show_command)

    resume = runs.add_parser(
        "resume", help="continue a stored run (interrupted, failed ...)",
        description="Continue a stored run: agents that finished are not run again. "
                    "Resuming needs the graph that started the run: pass its --spec "
                    "and --allow. A run that awaits review needs a decision: runs "
                    "approve or runs reject.")
    resume.add_argument("run_key", metavar="RUN_KEY")
    add_store_flag(resume)
    add_resume_flags(resume)
    resume.add_argument("--force", action="store_true",
                        help="resume a run marked running (its process was killed)")
    add_run_limits(resume)
    add_output_flags(resume)
    resume.set_defaults(handler=resume_command)


def add_store_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="PATH", required=True,
                        help="the run store: a SQLite file, or a postgresql:// URI")


def add_resume_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", metavar="SPEC",
                        help="the spec of the graph that started the run (required)")
    add_allow_flag(parser)


# ---- list -------------------------------------------------------------------------------

def list_command(args: argparse.Namespace, out: Output) -> int:
    store = open_store(args.store)
    try:
        rows = store.runs(args.status)
    finally:
        store.close()
    if args.graph:
        rows = [row for row in rows if row.graph.startswith(args.graph)]
    total = len(rows)
    if args.limit:
        rows = rows[: args.limit]
    if out.json:
        out.document({"runs": [{"run_key": r.run_key, "status": r.status, "graph": r.graph,
                                "created": r.created, "updated": r.updated} for r in rows],
                      "total": total})
        return OK
    if not rows:
        out.note(f"no runs in {args.store}" + (" with that filter" if args.status or args.graph
                                              else ""))
        return OK
    out.table(["run key", "status", "graph", "created", "updated"],
              [[r.run_key, r.status, r.graph, ago(r.created), ago(r.updated)] for r in rows])
    if total > len(rows):
        out.note(f"({total - len(rows)} older run(s) not shown; --limit 0 shows all)")
    return OK


# ---- show -------------------------------------------------------------------------------

def show_command(args: argparse.Namespace, out: Output) -> int:
    store = open_store(args.store)
    try:
        stored = load_run(store, args.run_key)
    finally:
        store.close()
    pending = [o for o in stored.outcomes.values() if o.status == "needs_review"]
    questions = stored.questions()
    context = Context(args.store, None, None)
    if out.json:
        doc: dict[str, Any] = {
            "run_key": stored.run_key, "status": stored.status, "graph": stored.graph,
            "created": stored.created, "updated": stored.updated,
            "created_utc": iso_utc(stored.created), "updated_utc": iso_utc(stored.updated),
            "input": jsonable(stored.input),
            "agents": {name: {"status": o.status, "output": jsonable(o.output),
                              "message": o.message, "confidence": o.confidence,
                              "usage": o.usage,
                              "routes": None if o.routes is None else list(o.routes)}
                       for name, o in stored.outcomes.items()},
            "pending_reviews": [{"agent": o.agent, "reason": o.message,
                                 "confidence": o.confidence, "output": jsonable(value_of(o.output))}
                                for o in pending],
            "pending_inputs": questions_doc(questions),
        }
        if pending:
            doc["commands"] = review_commands(stored.run_key, context)
        if questions:
            doc.setdefault("commands", {})["answer"] = answer_command(stored.run_key, context)
        out.document(doc)
        return OK
    out.block([
        ("run key", stored.run_key),
        ("status", stored.status),
        ("graph", stored.graph),
        ("created", f"{timestamp(stored.created)} ({ago(stored.created)})"),
        ("updated", f"{timestamp(stored.updated)} ({ago(stored.updated)})"),
        ("input", preview(stored.input, 80)),
    ])
    if stored.outcomes:
        out.line("agents:")
        out.table(["agent", "status", "confidence", "output", "note"],
                  [[o.agent, o.status, "" if o.confidence is None else f"{o.confidence:g}",
                    preview(value_of(o.output), 48), preview(o.message, 48)]
                   for o in stored.outcomes.values()], indent="  ")
    else:
        out.line("agents:   none finished yet")
    if pending:
        commands = review_commands(stored.run_key, context)
        out.line("pending review: " + ", ".join(o.agent for o in pending))
        out.line(f"  approve: {commands['approve']}")
        out.line(f"  reject:  {commands['reject']}")
    if questions:
        out.line("pending questions:")
        out.table(["agent", "question"], [[q.agent, preview(q.question, 80)] for q in questions],
                  indent="  ")
        agent = questions[0].agent if len(questions) > 1 else None
        out.line(f"  answer: {answer_command(stored.run_key, context, agent)}")
    return OK


def load_run(store: Store, run_key: str) -> StoredRun:
    return store.load_run(run_key)  # an unknown key is a StoreError (exit 5)


# ---- resume -----------------------------------------------------------------------------

def need_spec(args: argparse.Namespace, doing: str) -> str:
    if not args.spec:
        raise usage_error(
            f"{doing} a run needs the graph that started it: pass --spec SPEC (and the "
            "--allow patterns it was run with); the store keeps the run's input and "
            "outputs, not its agents")
    return str(args.spec)


def resume_command(args: argparse.Namespace, out: Output) -> int:
    spec = need_spec(args, "resuming")
    budget = parse_budget(args.budget)
    store = open_store(args.store)
    context = Context(args.store, spec, args.allow)
    try:
        stored = load_run(store, args.run_key)
        if any(o.status == "needs_review" for o in stored.outcomes.values()):
            commands = review_commands(args.run_key, context)
            raise CommandError(
                f"run {args.run_key} awaits review; decide it with: {commands['approve']} "
                "(or runs reject)", NEEDS_REVIEW, "needs_review", run_key=args.run_key)
        if stored.questions():
            raise CommandError(
                f"run {args.run_key} awaits input; answer it with: "
                f"{answer_command(args.run_key, context)}", NEEDS_REVIEW, "needs_input",
                run_key=args.run_key)
        if stored.status == "running" and not args.force:
            raise CommandError(
                f"run {args.run_key} is marked running: a process may still be running it "
                "(or was killed). Resume it with --force once you know no process runs it",
                STORE, "running", run_key=args.run_key)
    finally:
        store.close()
    return resume_and_report(args, out, context, None, budget)


def resume_and_report(args: argparse.Namespace, out: Output, context: Context,
                      decision: Any, budget: dict[str, float] | None) -> int:
    """Loads the spec on the store, resumes the run with ``decision`` and reports it."""
    app = load_graph(str(context.spec), context.allow, store=context.store)
    try:
        run = app.start_resumed(args.run_key, decision, budget=budget, deadline=args.deadline)
        return report_result(run.record(), out, context)
    finally:
        assert app.store is not None
        app.store.close()


__all__ = ["STATUSES", "add_parsers"]
