"""What several commands share: reading the run input, loading a spec, opening a store,
reading times, and spelling a follow-up command."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from .._errors import SpecError
from .._graph import CompiledGraph
from .._postgres_store import PostgresStore, is_dsn
from .._sqlite_store import SQLiteStore
from .._store import Store
from ..specs import load
from ._exits import BAD_SPEC, STORE, USAGE, CommandError, classify, one_line


def usage_error(message: str, **fields: Any) -> CommandError:
    return CommandError(message, USAGE, "usage", **fields)


# ---- the run input ---------------------------------------------------------------------

def read_input(value: str | None, *, raw: bool = False) -> Any:
    """The run input ``--input`` names: inline JSON, ``@file`` (its JSON), ``-`` or ``@-``
    (stdin's JSON); with ``raw``, the text itself instead of its JSON. No ``--input``:
    None (stdin is read only when asked for, so a run started by cron or CI with an
    inherited open stdin never waits on it)."""
    if value is None:
        return None
    if value in ("-", "@-"):
        text, where = sys.stdin.read(), "stdin"
    elif value.startswith("@"):
        path = value[1:]
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise usage_error(f"--input {value}: no such file {path!r}") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise usage_error(f"--input {value}: cannot read {path!r} ({reason})") from None
        where = path
    else:
        text, where = value, "--input"
    if raw:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        hint = ("; to pass plain text, add --raw (or quote it as a JSON string: "
                "--input '\"some text\"')")
        raise usage_error(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno} "
                          f"column {exc.colno}){hint}") from None


def parse_budget(entries: list[str] | None) -> dict[str, float] | None:
    """``["tokens=10000", "cost=0.5"]`` as ``{"tokens": 10000.0, "cost": 0.5}``."""
    if not entries:
        return None
    budget: dict[str, float] = {}
    for entry in entries:
        name, sep, amount = entry.partition("=")
        try:
            value = float(amount)
        except ValueError:
            value = -1.0
        if not sep or not name.strip() or not value > 0 or value == float("inf"):
            raise usage_error(f"--budget {entry!r}: expected NAME=AMOUNT with a positive "
                              "amount, e.g. --budget tokens=10000")
        budget[name.strip()] = value
    return budget


# ---- specs -------------------------------------------------------------------------------

def add_import_dirs(spec: Path) -> None:
    """Makes the modules next to the spec and in the current directory importable (the
    spec's allowlist still decides which may be imported). Appended, so they never
    shadow the standard library or installed packages."""
    for directory in (os.getcwd(), str(spec.resolve().parent)):
        if directory not in sys.path:
            sys.path.append(directory)


def load_graph(spec: str, allow: list[str] | None, store: str | None = None) -> CompiledGraph:
    """``cp.load`` of the spec file, failures reported as a bad spec (exit 4)."""
    path = Path(spec)
    if not path.is_file():
        what = "is a directory, not a spec file" if path.is_dir() else "no such spec file"
        raise CommandError(f"{spec}: {what}", BAD_SPEC, "spec", source=spec)
    add_import_dirs(path)
    try:
        return load(path, allow=allow or [], store=store)
    except SpecError as exc:
        if not any("allowlist" in problem.problem for problem in exc.problems):
            raise
        # The message speaks of the Python API's allow=; say how to allow on this line.
        _, kind, fields = classify(exc)
        raise CommandError(f"{one_line(exc, kind)}; on the command line: --allow PATTERN",
                           BAD_SPEC, kind, **fields) from exc
    except ImportError as exc:  # a YAML spec without PyYAML
        raise CommandError(f"{spec}: {exc}", BAD_SPEC, "spec", source=spec) from exc


# ---- stores ------------------------------------------------------------------------------

def open_store(path: str) -> Store:
    """An existing store (inspecting one must not create an empty file), or the
    PostgreSQL database a ``postgresql://`` URI names."""
    if is_dsn(path):
        return PostgresStore(path)
    if not os.path.exists(path):
        raise CommandError(f"no run store at {path}: the file does not exist; pass the "
                           "--store the runs were started with", STORE, "store", store=path)
    return SQLiteStore(path)


# ---- times -------------------------------------------------------------------------------

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, option: str) -> float:
    """``7d``, ``12h``, ``30m`` (that long ago), or a date or date-time (ISO 8601; local
    time unless it names a zone), as seconds since the epoch."""
    match = _AGE.match(text)
    if match:
        return time.time() - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        moment = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise usage_error(f"{option} {text!r}: expected an age such as 7d, 12h or 30m, or a "
                          "date such as 2026-11-01 (or 2026-11-01T09:30)") from None
    return moment.timestamp()  # naive: local time


# ---- follow-up commands ------------------------------------------------------------------

def command(*words: str | None) -> str:
    """A shell command line, each word quoted as needed (None words left out)."""
    return " ".join(shlex.quote(w) for w in words if w is not None)


def spec_words(spec: str | None, allow: list[str] | None) -> list[str | None]:
    """``--spec SPEC --allow PATTERN...`` for a follow-up command."""
    words: list[str | None] = ["--spec", spec or "SPEC"]
    for pattern in allow or ["MODULE"]:
        words += ["--allow", pattern]
    return words


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """``--json`` and ``--debug``, accepted after any command (and before it)."""
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print one JSON document (errors: JSON on stderr)")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="print the traceback of an error")


def add_allow_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow", action="append", metavar="PATTERN", default=[],
                        help="a module the spec may import from, fnmatch-style "
                             "('support.*'); repeatable; nothing is allowed by default")


def add_run_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deadline", type=positive_seconds, metavar="SECONDS",
                        help="end the run as timed out after this many seconds")
    parser.add_argument("--budget", action="append", metavar="NAME=AMOUNT",
                        help="stop starting agents once their reported usage reaches this "
                             "(e.g. tokens=10000); repeatable")


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value
