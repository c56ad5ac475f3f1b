"""Exit codes of the command line, and the one mapping from exceptions to them."""

from __future__ import annotations

from typing import Any

from .._errors import (
    AgentError,
    BudgetExceeded,
    CounterpointError,
    GraphError,
    NeedsInput,
    NeedsReview,
    RunCancelled,
    RunTimeout,
    SpecError,
    StoreError,
)
from ._output import jsonable

OK = 0
RUN_FAILED = 1        # an agent failed; the run failed, was cancelled or timed out; audit tampered
USAGE = 2             # bad arguments (argparse's own code)
NEEDS_REVIEW = 3      # the run paused for a person: a review decision or an answer
BAD_SPEC = 4          # the spec cannot be read, parsed, allowed, imported or built
STORE = 5             # the store cannot be used, the run key is unknown, or the run is not
                      # in the state the command needs
REVIEW_REFUSED = 6    # the reviewer's role may not decide this review
INTERNAL = 70         # a bug (EX_SOFTWARE): an exception nothing above expected
INTERRUPTED = 130     # Ctrl-C (128 + SIGINT)

EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    an agent failed, or the run failed, was cancelled or timed out
       (audit --verify: the audit log was tampered with)
  2    usage error (bad arguments or input)
  3    the run needs review (paused; approve or reject it)
  4    bad spec (file missing or unreadable, invalid, refused by --allow, cannot be built)
  5    store problem (cannot open or read it, unknown run key, run not in the needed state)
  6    review refused (the reviewer's role is not among the gate's approvers)
  70   internal error (a bug: run with --debug and report the traceback)
  130  interrupted (Ctrl-C)"""


class CommandError(Exception):
    """A failure the command line reports as one line, with its exit code.

    Attributes:
        code: The exit code.
        kind: A short machine-readable name (the ``"kind"`` of the JSON error).
        fields: Extra facts for the JSON error (a run key, a file, ...).
    """

    def __init__(self, message: str, code: int, kind: str, **fields: Any) -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind
        self.fields = fields


def classify(exc: BaseException) -> tuple[int, str, dict[str, Any]]:
    """The exit code, kind and JSON fields for an exception that ended a command."""
    if isinstance(exc, CommandError):
        return exc.code, exc.kind, dict(exc.fields)
    if isinstance(exc, NeedsInput):
        return NEEDS_REVIEW, "needs_input", {
            "run_key": exc.run_key,
            "pending": [{"agent": p.agent, "question": jsonable(p.question)}
                        for p in exc.pending]}
    if isinstance(exc, NeedsReview):
        return NEEDS_REVIEW, "needs_review", {
            "run_key": exc.run_key,
            "pending": [{"agent": p.agent, "reason": p.reason, "confidence": p.confidence}
                        for p in exc.pending]}
    if isinstance(exc, AgentError):
        return RUN_FAILED, "agent_failed", {"agent": exc.agent}
    if isinstance(exc, RunTimeout):
        return RUN_FAILED, "timed_out", {}
    if isinstance(exc, RunCancelled):
        return RUN_FAILED, "cancelled", {}
    if isinstance(exc, BudgetExceeded):
        return RUN_FAILED, "budget_exceeded", {"usage": exc.usage}
    if isinstance(exc, SpecError):
        return BAD_SPEC, "spec", {
            "source": exc.source, "path": exc.path, "problem": exc.problem, "hint": exc.hint,
            "line": exc.line, "column": exc.column,
            "problems": [p._asdict() for p in exc.problems]}
    if isinstance(exc, GraphError):
        return BAD_SPEC, "graph", {"node": exc.node}
    if isinstance(exc, StoreError):
        return STORE, "store", {}
    # The governance API's ReviewRefused is both; matching on that keeps this module
    # free of names that only some versions define.
    if isinstance(exc, CounterpointError) and isinstance(exc, PermissionError):
        return REVIEW_REFUSED, "review_refused", {}
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED, "interrupted", {}
    return INTERNAL, "internal", {"type": type(exc).__name__}


def one_line(exc: BaseException, kind: str) -> str:
    """The exception's message as one line: a SpecError's further problems are counted
    (``--json`` lists them), an unexpected exception is named as the bug it is."""
    if kind == "internal":
        return (f"internal error ({type(exc).__name__}: {_first_line(str(exc))}); this is a "
                "bug in counterpoint: run again with --debug for the traceback and report it")
    if kind == "interrupted":
        return str(exc) or "interrupted"
    text = str(exc)
    if isinstance(exc, SpecError) and len(exc.problems) > 1:
        return (f"{_first_line(text)} (and {len(exc.problems) - 1} more problem(s); "
                "--json lists them all)")
    return _first_line(text) if "\n" not in text else "; ".join(
        part.strip() for part in text.splitlines() if part.strip())


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""
