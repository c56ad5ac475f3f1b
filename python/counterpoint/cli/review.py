"""``counterpoint runs approve|reject|answer``: decide a paused run's review, or answer
the question an agent asked, and resume it.

The decision carries the reviewer (``--as``), their role (``--role``) and a note, as
the governance API takes them; the graph's review gate decides whether the role may
decide (``approvers``), and refuses with ``cp.ReviewRefused`` (exit 6) otherwise."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._policies import Decision, approve, reject
from ._common import add_output_flags, add_run_limits, open_store, parse_budget, usage_error
from ._exits import STORE, CommandError
from ._output import Output
from ._report import Context
from .runs import add_resume_flags, add_store_flag, load_run, need_spec, resume_and_report


def add_parsers(runs: Any) -> None:
    for name, verb in (("approve", "Approve"), ("reject", "Reject")):
        parser = runs.add_parser(
            name, help=f"{name} the outputs a paused run awaits review of, and resume it",
            description=f"{verb} every output the run awaits review of, then resume the run "
                        "to its end (it needs the graph: --spec and --allow). The exit "
                        "code is the resumed run's, as for `counterpoint run`.")
        parser.add_argument("run_key", metavar="RUN_KEY")
        add_store_flag(parser)
        add_resume_flags(parser)
        parser.add_argument("--as", dest="reviewer", metavar="NAME",
                            help="who decides (recorded in the audit log)")
        parser.add_argument("--role", metavar="ROLE",
                            help="the reviewer's role, checked against the gate's approvers")
        parser.add_argument("--note", metavar="TEXT", help="a note kept with the decision")
        if name == "approve":
            parser.add_argument("--output", metavar="JSON",
                                help="replace the output under review with this JSON "
                                     "(only when one agent awaits review)")
        else:
            parser.add_argument("--reason", metavar="TEXT",
                                help="why (the rejected agent fails with it)")
        add_run_limits(parser)
        add_output_flags(parser)
        parser.set_defaults(handler=decide_command, verb=name)
    answer = runs.add_parser(
        "answer", help="answer a question a paused run's agent asked, and resume it",
        description="Give the answer to a question an agent asked with cp.interrupt, then "
                    "resume the run (it needs the graph: --spec and --allow). The agent "
                    "runs again and gets the answer; other questions keep waiting. The "
                    "exit code is the resumed run's, as for `counterpoint run`.")
    answer.add_argument("run_key", metavar="RUN_KEY")
    answer.add_argument("--agent", metavar="PATH",
                        help="the asking agent's path (needed when several questions wait)")
    answer.add_argument("--answer", required=True, metavar="JSON",
                        help="the answer, as JSON (quote a string: --answer '\"yes\"')")
    add_store_flag(answer)
    add_resume_flags(answer)
    add_run_limits(answer)
    add_output_flags(answer)
    answer.set_defaults(handler=answer_run)


def answer_run(args: argparse.Namespace, out: Output) -> int:
    spec = need_spec(args, "answering")
    context = Context(args.store, spec, args.allow)
    store = open_store(args.store)
    try:
        asked = [q.agent for q in load_run(store, args.run_key).questions()]
    finally:
        store.close()
    if not asked:
        raise CommandError(f"run {args.run_key} awaits no answer", STORE, "not_pending",
                           run_key=args.run_key)
    agent = args.agent
    if agent is None:
        if len(asked) > 1:
            raise usage_error(f"run {args.run_key} awaits answers from {', '.join(asked)}; "
                              "say which with --agent PATH")
        agent = asked[0]
    elif agent not in asked:
        raise usage_error(f"agent {agent!r} asked nothing in run {args.run_key}; waiting: "
                          f"{', '.join(asked)}")
    try:
        value = json.loads(args.answer)
    except json.JSONDecodeError as exc:
        raise usage_error(f"--answer is not valid JSON ({exc.msg}); quote a string as JSON: "
                          "--answer '\"yes\"'") from None
    return resume_and_report(args, out, context, {agent: value}, parse_budget(args.budget))


def decide_command(args: argparse.Namespace, out: Output) -> int:
    spec = need_spec(args, "approving" if args.verb == "approve" else "rejecting")
    context = Context(args.store, spec, args.allow)
    store = open_store(args.store)
    try:
        stored = load_run(store, args.run_key)
    finally:
        store.close()
    pending = [o.agent for o in stored.outcomes.values() if o.status == "needs_review"]
    if not pending:
        raise CommandError(f"run {args.run_key} awaits no review (status: {stored.status})",
                           STORE, "not_pending", run_key=args.run_key, status=stored.status)
    decision = _decision(args, pending)
    return resume_and_report(args, out, context, decision, parse_budget(args.budget))


def _decision(args: argparse.Namespace, pending: list[str]) -> Decision | dict[str, Decision]:
    who: dict[str, Any] = {key: value for key, value in (
        ("by", args.reviewer), ("role", args.role), ("note", args.note)) if value is not None}
    if args.verb == "reject":
        if args.reason is not None:
            return _each(reject(args.reason, **who), pending)
        return _each(reject(**who), pending)
    if args.output is None:
        return _each(approve(**who), pending)
    if len(pending) > 1:
        raise usage_error(f"--output replaces one output, but run {args.run_key} awaits "
                          f"review of {', '.join(pending)}; approve them as they are, or "
                          "decide each with the Python API (app.resume(key, {agent: ...}))")
    try:
        output = json.loads(args.output)
    except json.JSONDecodeError as exc:
        raise usage_error(f"--output is not valid JSON ({exc.msg}); quote a string as JSON: "
                          "--output '\"new text\"'") from None
    return approve(output, **who)


def _each(decision: Decision, pending: list[str]) -> Decision | dict[str, Decision]:
    """One decision, or the same one for each of several agents awaiting review."""
    return decision if len(pending) == 1 else dict.fromkeys(pending, decision)
