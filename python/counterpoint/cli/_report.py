"""How a run that ran is reported: by ``run`` and by the ``runs`` commands that resume
one (``resume``, ``approve``, ``reject``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._errors import NeedsInput, NeedsReview
from .._events import Event
from .._results import InputRequest, ReviewRequest, value_of
from .._run import RunResult
from ._common import command, spec_words
from ._exits import NEEDS_REVIEW, OK, classify, one_line
from ._output import Output, duration, jsonable, preview, result_text


class Context:
    """What a follow-up command needs to repeat: the store and the spec."""

    def __init__(self, store: str | None, spec: str | None, allow: list[str] | None) -> None:
        self.store = store
        self.spec = spec
        self.allow = allow


def review_commands(run_key: str, context: Context) -> dict[str, str]:
    """The commands that approve or reject a paused run."""
    common = ["--store", context.store or "STORE", *spec_words(context.spec, context.allow)]
    return {
        "approve": command("counterpoint", "runs", "approve", run_key, *common,
                           "--as", "NAME", "--role", "ROLE"),
        "reject": command("counterpoint", "runs", "reject", run_key, *common,
                          "--reason", "TEXT"),
    }


def answer_command(run_key: str, context: Context, agent: str | None = None) -> str:
    """The command that answers a paused run's question and resumes it."""
    common = ["--store", context.store or "STORE", *spec_words(context.spec, context.allow)]
    target = ["--agent", agent] if agent is not None else []
    return command("counterpoint", "runs", "answer", run_key, *target, "--answer", "JSON",
                   *common)


def questions_doc(pending: Sequence[InputRequest]) -> list[dict[str, Any]]:
    return [{"agent": p.agent, "question": jsonable(p.question)} for p in pending]


def pending_doc(pending: Sequence[ReviewRequest]) -> list[dict[str, Any]]:
    return [{"agent": p.agent, "reason": p.reason, "confidence": p.confidence,
             "output": jsonable(value_of(p.output))} for p in pending]


def result_doc(result: RunResult, context: Context) -> dict[str, Any]:
    """A run's JSON document."""
    doc: dict[str, Any] = {
        "status": result.status,
        "run_key": result.run_key,
        "output": jsonable(result.output),
        "elapsed": result.elapsed,
        "usage": result.usage,
        "agents": {
            name: {"status": o.status, "started": o.started, "finished": o.finished,
                   "duration": o.duration, "output": jsonable(o.output), "error": o.error,
                   "reason": o.reason, "confidence": o.confidence, "restored": o.restored}
            for name, o in result.agents.items()},
        "pending_reviews": pending_doc(result.pending_reviews),
        "pending_inputs": questions_doc(result.pending_inputs),
        "error": None,
    }
    if result.error is not None:
        _, kind, fields = classify(result.error)
        doc["error"] = {"message": one_line(result.error, kind), "kind": kind,
                        "type": type(result.error).__name__, **fields}
    if result.status == "needs_review" and result.run_key is not None:
        doc["commands"] = review_commands(result.run_key, context)
    if result.status == "needs_input" and result.run_key is not None:
        doc["commands"] = {"answer": answer_command(result.run_key, context)}
    return doc


def report_result(result: RunResult, out: Output, context: Context) -> int:
    """Prints a run's result and returns the exit code: 0, or that of its error."""
    if result.status == "needs_review" and result.run_key is not None:
        if out.json:
            out.document(result_doc(result, context))
        else:
            print_review(out, result.run_key, result.pending_reviews, context)
        return NEEDS_REVIEW
    if result.status == "needs_input" and result.run_key is not None:
        if out.json:
            out.document(result_doc(result, context))
        else:
            print_questions(out, result.run_key, result.pending_inputs, context)
            if result.pending_reviews:
                print_review(out, result.run_key, result.pending_reviews, context)
        return NEEDS_REVIEW
    if result.error is not None:
        if out.json:
            out.document(result_doc(result, context))
        raise _with_run_key(result.error, result.run_key)
    if out.json:
        out.document(result_doc(result, context))
    else:
        out.line(result_text(result.output))
        where = f"; run {result.run_key} in {context.store}" if result.run_key else ""
        out.note(f"{result.status} in {duration(result.elapsed)} "
                 f"({len(result.agents)} agents{where})")
    return OK


def print_review(out: Output, run_key: str, pending: Sequence[ReviewRequest],
                 context: Context) -> None:
    where = f" (kept in {context.store})" if context.store else ""
    out.line(f"Run {run_key} needs review{where}:")
    out.table(["agent", "confidence", "reason", "output"],
              [[p.agent, "" if p.confidence is None else f"{p.confidence:g}", p.reason,
                preview(value_of(p.output))] for p in pending], indent="  ")
    commands = review_commands(run_key, context)
    out.line("Approve it:")
    out.line(f"  {commands['approve']}")
    out.line("or reject it:")
    out.line(f"  {commands['reject']}")


def print_questions(out: Output, run_key: str, pending: Sequence[InputRequest],
                    context: Context) -> None:
    where = f" (kept in {context.store})" if context.store else ""
    out.line(f"Run {run_key} needs input{where}:")
    out.table(["agent", "question"], [[p.agent, preview(p.question, 80)] for p in pending],
              indent="  ")
    out.line("Answer a question (JSON) and resume the run:")
    agent = pending[0].agent if len(pending) > 1 else None
    out.line(f"  {answer_command(run_key, context, agent)}")


def _with_run_key(error: BaseException, run_key: str | None) -> BaseException:
    """The run's error, its message naming the run key of a durable run."""
    if run_key is None or run_key in str(error):
        return error
    from ._exits import CommandError

    code, kind, fields = classify(error)
    wrapped = CommandError(f"{one_line(error, kind)} (run {run_key})", code, kind,
                           run_key=run_key, **fields)
    wrapped.__cause__ = error
    return wrapped


# ---- events ----------------------------------------------------------------------------

def event_doc(event: Event) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": event.kind, "agent": event.agent, "time": event.time}
    if event.kind in ("finish", "end"):
        doc["output"] = jsonable(event.output)
    if event.message:
        doc["message"] = event.message
    if event.error is not None:
        doc["error"] = f"{type(event.error).__name__}: {event.error}"
    return doc


def event_line(event: Event, width: int = 12) -> str:
    """``  0.012 s  finish  classify  {"intents": ...}``, agent names padded to ``width``."""
    if event.kind == "finish":
        detail = preview(event.output)
    elif event.kind == "end":
        detail = "run succeeded"
    else:
        detail = preview(event.message)
    return f"{event.time:9.3f} s  {event.kind:<6}  {event.agent or '-':<{width}}  {detail}".rstrip()


def stream_failure_doc(exc: BaseException, context: Context) -> dict[str, Any]:
    """The last JSON line of a streamed run that did not succeed."""
    _, kind, fields = classify(exc)
    doc: dict[str, Any] = {"kind": "result", "status": _STATUS_OF.get(kind, "failed"),
                           "error": {"message": one_line(exc, kind), "kind": kind, **fields}}
    if isinstance(exc, NeedsReview):
        doc["run_key"] = exc.run_key
        doc["pending_reviews"] = pending_doc(exc.pending)
        if exc.run_key is not None:
            doc["commands"] = review_commands(exc.run_key, context)
    if isinstance(exc, NeedsInput):
        doc["run_key"] = exc.run_key
        doc["pending_inputs"] = questions_doc(exc.pending)
        doc["pending_reviews"] = pending_doc(exc.reviews)
        if exc.run_key is not None:
            doc["commands"] = {"answer": answer_command(exc.run_key, context)}
    return doc


_STATUS_OF = {"needs_review": "needs_review", "needs_input": "needs_input",
              "timed_out": "timed_out",
              "cancelled": "cancelled", "budget_exceeded": "failed"}
