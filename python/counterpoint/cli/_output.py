"""What commands print: JSON documents for scripts, tables and key: value blocks for
people, and the humanised times and previews they use."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

PREVIEW_WIDTH = 60


class Output:
    """Where a command writes: ``stdout`` for what it produces (its result, its JSON
    document), ``stderr`` for notes and errors."""

    def __init__(self, *, json_mode: bool = False, debug: bool = False,
                 stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.json = json_mode
        self.debug = debug
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    def document(self, value: Any) -> None:
        """One JSON document (or one JSON line of a stream) on stdout."""
        self.stdout.write(dumps(value) + "\n")
        self.stdout.flush()

    def line(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def note(self, text: str) -> None:
        """A remark for people (never in --json mode): on stderr, so stdout stays the
        command's result."""
        if not self.json:
            self.stderr.write(text + "\n")
            self.stderr.flush()

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[str]],
              indent: str = "") -> None:
        for text in table(headers, rows, indent):
            self.line(text)

    def block(self, pairs: Sequence[tuple[str, str]], indent: str = "") -> None:
        width = max((len(key) for key, _ in pairs), default=0)
        for key, value in pairs:
            self.line(f"{indent}{key + ':':<{width + 1}}  {value}".rstrip())


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], indent: str = "") -> list[str]:
    """Aligned columns under upper-case headers; the last column is not padded."""
    cells_by_row = [list(row) for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells_by_row)])
              for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *cells_by_row]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths)] + row[-1:]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def jsonable(value: Any) -> Any:
    """``value`` as JSON data: dataclasses and named tuples as objects, tuples and sets as
    lists, non-finite floats and anything else JSON has no form for as its ``repr``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return jsonable(value._asdict())
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return repr(value)


def dumps(value: Any) -> str:
    return json.dumps(jsonable(value), ensure_ascii=False)


def preview(value: Any, width: int = PREVIEW_WIDTH) -> str:
    """A one-line preview of an output: strings as they are, anything else as JSON."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else dumps(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def result_text(value: Any) -> str:
    """A run's result as printed: a string as it is, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(jsonable(value), indent=2, ensure_ascii=False)


def duration(seconds: float | None) -> str:
    """``"850 ms"``, ``"1.2 s"``, ``"3m 05s"``, ``"2h 03m"``."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.001 else f"{seconds * 1000:.2f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24:02d}h"


def ago(when: float, now: float | None = None) -> str:
    """How long ago ``when`` (seconds since the epoch) was: ``"3m ago"``."""
    delta = (time.time() if now is None else now) - when
    if delta < 0:
        return "in the future"
    if delta < 5:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{int(delta // size)}{unit} ago"
    return f"{int(delta)}s ago"


def timestamp(when: float) -> str:
    """Local date and time to the second, with the UTC offset."""
    return _dt.datetime.fromtimestamp(when).astimezone().strftime("%Y-%m-%d %H:%M:%S %z")


def iso_utc(when: float) -> str:
    return _dt.datetime.fromtimestamp(when, _dt.timezone.utc).isoformat(timespec="milliseconds")


def number(value: float) -> str:
    return f"{value:g}" if value != int(value) or abs(value) < 1e15 else f"{value:.0f}"
