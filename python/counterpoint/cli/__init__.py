"""The ``counterpoint`` command line: run graph specs, inspect and decide stored runs,
draw graphs, read audit logs and usage.

``main(argv)`` is the console script's entry point (``counterpoint = counterpoint.cli:main``);
``python -m counterpoint`` runs it too. Nothing imports this package but those two: the
library never pays for it. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Any, NoReturn

from .._graph import CompiledGraph, register_compiled_class
from ._exits import EXIT_CODES_HELP, USAGE, classify, one_line
from ._output import Output, dumps

__all__ = ["main"]

DESCRIPTION = """\
Orchestrate AI agents from the command line: run graph specs (YAML or JSON), inspect,
resume and review stored runs, draw graphs, read audit logs and usage.

examples:
  counterpoint run triage.yaml --input @ticket.json --store runs.db --allow 'support.*'
  counterpoint runs list --store runs.db --status needs_review
  counterpoint runs approve RUN_KEY --store runs.db --spec triage.yaml --allow 'support.*' \\
      --as alice --role support-leads --note "refund ok"
  counterpoint audit RUN_KEY --store runs.db --verify
  counterpoint usage --store runs.db --by agent --since 7d

Every command takes --json (one JSON document on stdout; errors as JSON on stderr) and
--debug (tracebacks). Errors are one line on stderr. See docs/cli.md."""


class _Formatter(argparse.HelpFormatter):
    """Keeps text that is laid out by hand (it has line breaks: examples, the exit-code
    table) as it is, and wraps the rest."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """Reports usage errors through main (one line, or JSON with --json) instead of
    printing and exiting itself."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see: {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    from . import audit, graph, prune, review, run, runs, usage
    from ._common import add_output_flags

    parser = _Parser(prog="counterpoint", description=DESCRIPTION, epilog=EXIT_CODES_HELP,
                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"counterpoint {_version()}")
    parser.add_argument("--json", action="store_true", default=False,
                        help="print one JSON document (errors: JSON on stderr)")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="print the traceback of an error")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    run.add_parser(commands)
    runs_parser = commands.add_parser(
        "runs", help="list, show, resume, approve, reject and prune stored runs",
        description="The runs a store keeps.")
    add_output_flags(runs_parser)
    group = runs_parser.add_subparsers(dest="runs_command", metavar="ACTION",
                                       parser_class=_Parser)
    group.required = True
    runs.add_parsers(group)
    review.add_parsers(group)
    prune.add_parser(group)
    graph.add_parser(commands)
    audit.add_parser(commands)
    usage.add_parser(commands)
    for sub in [*commands.choices.values(), *group.choices.values()]:
        sub.epilog = EXIT_CODES_HELP
        sub.formatter_class = _Formatter
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("counterpoint")
    except PackageNotFoundError:
        return "unknown"


def program() -> int:
    """The ``counterpoint`` program (the console script, ``python -m counterpoint``):
    :func:`main` on the process's arguments, in a process of its own."""
    # A command-line process never hands its graphs to LangChain code, so compile()
    # builds plain CompiledGraphs: with langchain-core installed, a run would otherwise
    # first import it, which takes longer than most runs (seconds on a loaded machine).
    register_compiled_class(lambda: CompiledGraph)
    return main()


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit code (see ``counterpoint --help``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # Before the arguments are parsed, a usage error is reported as --json asks if the
    # flag is anywhere on the line.
    out = Output(json_mode="--json" in argv, debug="--debug" in argv)
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        return _fail(out, exc, USAGE, "usage", {})
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    out = Output(json_mode=args.json, debug=args.debug)
    try:
        code: int = args.handler(args, out)
        return code
    except BrokenPipeError:
        # The reader went away (`counterpoint runs list | head`): not an error to report.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - every error is one line
        code, kind, fields = classify(exc)
        return _fail(out, exc, code, kind, fields)


def _fail(out: Output, exc: BaseException, code: int, kind: str, fields: dict[str, Any]) -> int:
    if out.debug and not isinstance(exc, _UsageError):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    message = one_line(exc, kind)
    if out.json:
        sys.stderr.write(dumps({"error": message, "kind": kind, "exit_code": code, **fields})
                         + "\n")
    else:
        sys.stderr.write(f"counterpoint: error: {message}\n")
    sys.stderr.flush()
    return code
