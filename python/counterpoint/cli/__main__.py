"""``python -m counterpoint.cli``."""

from . import program

raise SystemExit(program())
