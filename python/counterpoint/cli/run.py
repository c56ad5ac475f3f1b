"""``counterpoint run SPEC``: load a spec and run it once."""

from __future__ import annotations

import argparse
from typing import Any

from .._errors import GraphError, NeedsInput, NeedsReview
from .._graph import CompiledGraph
from .._plan_view import plan_view
from ._common import (
    add_allow_flag,
    add_output_flags,
    add_run_limits,
    command,
    load_graph,
    parse_budget,
    read_input,
    spec_words,
)
from ._exits import INTERRUPTED, NEEDS_REVIEW, OK, CommandError
from ._output import Output, result_text
from ._report import (
    Context,
    event_doc,
    event_line,
    print_questions,
    print_review,
    report_result,
    stream_failure_doc,
)

DESCRIPTION = """\
Load a graph spec (YAML or JSON) and run it once on an input.

The input is JSON: inline (--input '{"text": "hi"}'), from a file (--input @ticket.json)
or from stdin (--input -). --raw passes the text itself instead. Without --input the
input is null; stdin is only read when asked for.

Modules next to the spec and in the current directory are importable; the spec may
import only the modules --allow names."""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "run", help="run a graph spec once", description=DESCRIPTION)
    parser.add_argument("spec", metavar="SPEC", help="the graph spec (.yaml, .yml or .json)")
    parser.add_argument("--input", "-i", metavar="JSON|@FILE|-",
                        help="the run input: inline JSON, @file.json, or - for stdin")
    parser.add_argument("--raw", action="store_true",
                        help="take the input as plain text instead of JSON")
    add_allow_flag(parser)
    parser.add_argument("--store", metavar="PATH",
                        help="make the run durable in this SQLite file (created if missing); "
                             "needed to pause for review and to resume")
    parser.add_argument("--stream", action="store_true",
                        help="print each agent event as it happens (JSON lines with --json)")
    add_run_limits(parser)
    add_output_flags(parser)
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace, out: Output) -> int:
    data = read_input(args.input, raw=args.raw)
    budget = parse_budget(args.budget)
    app = load_graph(args.spec, args.allow, store=args.store)
    context = Context(args.store, args.spec, args.allow)
    pausing = [spec.name for spec in app._specs if spec.pauses_for_review]
    if pausing and app.store is None:
        # A run of this command is the outermost: it could pause but never be resumed.
        raise GraphError(
            f"agent '{pausing[0]}': its review gate pauses runs for a human, which needs a "
            "store to keep them; pass --store runs.db or give the Review a reviewer",
            pausing[0])
    try:
        if args.stream:
            return _stream(app, data, budget, args.deadline, out, context)
        run = app.start(data, budget=budget, deadline=args.deadline)
        try:
            result = run.record()
        except KeyboardInterrupt:
            raise _interrupted(run.run_key, context) from None
        return report_result(result, out, context)
    finally:
        if app.store is not None:
            app.store.close()


def _stream(app: CompiledGraph, data: Any, budget: dict[str, float] | None,
            deadline: float | None, out: Output, context: Context) -> int:
    output: Any = None
    width = max((len(part.path) for part in plan_view(app).walk()), default=8)
    try:
        for event in app.stream(data, stream_mode="events", budget=budget, deadline=deadline):
            if out.json:
                out.document(event_doc(event))
            else:
                out.line(event_line(event, width))
            if event.kind == "end":
                output = event.output
    except KeyboardInterrupt:
        raise _interrupted(None, context) from None
    except (NeedsReview, NeedsInput) as exc:  # paused for a person: a result, not an error
        if out.json:
            out.document(stream_failure_doc(exc, context))
        elif exc.run_key is not None:
            out.line()
            if isinstance(exc, NeedsInput):
                print_questions(out, exc.run_key, exc.pending, context)
            else:
                print_review(out, exc.run_key, exc.pending, context)
        return NEEDS_REVIEW
    except Exception as exc:
        if out.json:
            out.document(stream_failure_doc(exc, context))
        raise
    if out.json:
        out.document({"kind": "result", "status": "succeeded", "output": output})
    else:
        out.line()
        out.line(result_text(output))
    return OK


def _interrupted(run_key: str | None, context: Context) -> CommandError:
    if run_key is None:
        return CommandError("interrupted (Ctrl-C); the run was cancelled", INTERRUPTED,
                            "interrupted")
    resume = command("counterpoint", "runs", "resume", run_key, "--store", context.store,
                     *spec_words(context.spec, context.allow))
    return CommandError(f"interrupted (Ctrl-C); resume the run with: {resume}", INTERRUPTED,
                        "interrupted", run_key=run_key)

