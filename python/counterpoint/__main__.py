"""``python -m counterpoint``: the command line (see docs/cli.md)."""

from .cli import program

raise SystemExit(program())
