"""A run's result as an HTML table, as Jupyter shows a :class:`RunResult`.

The markup uses inline styles only (a ``<style>`` block in a notebook output would
restyle the whole notebook), coloured badges readable on light and dark themes, and no
entity beyond XML's own, so the output is well-formed XML as well as HTML. Everything
that comes from a run (names, outputs, errors, usage names) is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any, Protocol

from ._results import confidence_of, value_of

# Badge colours by status, the timeline picture's where it has the status; white text
# on each stays readable on light and dark themes.
_STATUS_COLOURS = {
    "succeeded": "#2e8b57",
    "failed": "#c8324a",
    "timed_out": "#e08e0b",
    "needs_review": "#7b52ab",
    "needs_input": "#7b52ab",
    "running": "#4f86c6",
    "cancelled": "#8d8d8d",
    "interrupted": "#8d8d8d",
    "skipped": "#5f6b7a",
    "not_started": "#a5a5a5",
}
_UNKNOWN_COLOUR = "#455a64"
# Longer texts are cut, with the whole text in a tooltip.
_NOTE_CHARS = 120
_OUTPUT_CHARS = 60
# Above this many agents the rows scroll inside a box instead of lengthening the page.
_SCROLL_ROWS = 40
# Short inline styles: a notebook's own table style (JupyterLab aligns every cell right)
# is overridden only where it matters, and 200 agents stay a small output.
_CELL = "padding:2px 8px;text-align:left;vertical-align:top"
_NUMBER_CELL = "padding:2px 8px;text-align:right;vertical-align:top;white-space:nowrap"
_ROW = "border-bottom:1px solid #8884"


class AgentRow(Protocol):
    """What the table reads of an agent's outcome (an :class:`AgentOutcome`)."""

    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def output(self) -> Any: ...
    @property
    def error(self) -> str: ...
    @property
    def started(self) -> float | None: ...
    @property
    def duration(self) -> float | None: ...
    @property
    def usage(self) -> Mapping[str, float]: ...
    @property
    def reason(self) -> str: ...
    @property
    def confidence(self) -> float | None: ...
    @property
    def restored(self) -> bool: ...
    @property
    def attempts(self) -> int: ...


class RunRecord(Protocol):
    """What the table reads of a run (a :class:`RunResult`)."""

    @property
    def run_id(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def output(self) -> Any: ...
    @property
    def error(self) -> BaseException | None: ...
    @property
    def agents(self) -> Mapping[str, AgentRow]: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def usage(self) -> Mapping[str, float]: ...
    @property
    def budget_exhausted(self) -> bool: ...
    @property
    def run_key(self) -> str | None: ...


def run_table(run: RunRecord) -> str:
    """The run as an HTML table: a header (status, elapsed, run key, usage, output or
    error), then one row per agent."""
    agents = list(run.agents.values())
    # (heading, numeric): numbers are aligned right, under their heading.
    headings = [("agent", False), ("status", False), ("time", True), ("started at", True),
                ("attempts", True), ("confidence", True), ("usage", False),
                ("output", False), ("error / reason", False)]
    head = "".join(f'<th style="{_NUMBER_CELL if numeric else _CELL}">{heading}</th>'
                   for heading, numeric in headings)
    rows = "".join(_row(agent) for agent in agents)
    table = (f'<table style="border-collapse:collapse;font-size:0.9em;margin-top:4px">'
             f'<thead><tr style="{_ROW}">{head}</tr></thead>'
             f"<tbody>{rows}</tbody></table>")
    if len(agents) > _SCROLL_ROWS:
        table = f'<div style="max-height:32em;overflow:auto">{table}</div>'
    return f'<div style="font-family:sans-serif">{_header(run)}{table}</div>'


def _header(run: RunRecord) -> str:
    parts = [f"<strong>Run {run.run_id}</strong>", _badge(run.status),
             f"<span>{_seconds(run.elapsed)}</span>"]
    if run.run_key is not None:
        parts.append(f"<span>{_label('key')} <code>{_escape(run.run_key)}</code></span>")
    if run.usage:
        parts.append(f"<span>{_label('usage')} {_usage(run.usage)}</span>")
    if run.budget_exhausted:
        parts.append("<span>budget exhausted</span>")
    line = f'<div style="display:flex;gap:12px;align-items:center;flex-wrap:wrap">' \
           f"{''.join(parts)}</div>"
    if run.error is not None:
        detail = f"{type(run.error).__name__}: {run.error}"
        line += f'<div style="margin-top:2px">{_cut(detail, _NOTE_CHARS)}</div>'
    elif run.output is not None:
        output = _cut(repr(value_of(run.output)), _NOTE_CHARS)
        line += f'<div style="margin-top:2px">{_label("output")} <code>{output}</code></div>'
    return line


def _row(agent: AgentRow) -> str:
    status = _badge(agent.status)
    if agent.restored:
        status += ' <span title="restored from the store">restored</span>'
    cells = [
        f'<td style="{_CELL}"><code>{_escape(agent.name)}</code></td>',
        f'<td style="{_CELL}">{status}</td>',
        _number(_seconds(agent.duration)),
        _number("" if agent.started is None else f"+{_seconds(agent.started)}"),
        _number(str(agent.attempts) if agent.attempts else ""),  # 0: it never ran
        _number(_confidence(agent)),
        f'<td style="{_CELL}">{_usage(agent.usage)}</td>',
        f'<td style="{_CELL}">{_output(agent)}</td>',
        f'<td style="{_CELL}">{_cut(agent.error or agent.reason, _NOTE_CHARS)}</td>',
    ]
    return f'<tr style="{_ROW}">{"".join(cells)}</tr>'


def _output(agent: AgentRow) -> str:
    if agent.status != "succeeded" and agent.output is None:
        return ""
    return f"<code>{_cut(repr(value_of(agent.output)), _OUTPUT_CHARS)}</code>"


def _confidence(agent: AgentRow) -> str:
    """The confidence that sent it to review, else the one it reported with its output."""
    confidence = agent.confidence
    if confidence is None and agent.output is not None:
        confidence = confidence_of(agent.output)
    return "" if confidence is None else f"{confidence:.2f}"


def _badge(status: str) -> str:
    colour = _STATUS_COLOURS.get(status, _UNKNOWN_COLOUR)
    return (f'<span style="background:{colour};color:#fff;border-radius:4px;'
            f'padding:0 6px;white-space:nowrap">{_escape(status)}</span>')


def _number(text: str) -> str:
    return f'<td style="{_NUMBER_CELL}">{text}</td>'


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def _cut(text: str, limit: int) -> str:
    """``text`` escaped, cut to ``limit`` characters with the whole in a tooltip."""
    if len(text) <= limit:
        return _escape(text)
    return f'<span title="{_escape(text)}">{_escape(text[:limit - 1])}…</span>'


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1.0:
        return f"{value * 1000:.1f} ms"
    if value < 60.0:
        return f"{value:.2f} s"
    minutes, seconds = divmod(value, 60.0)
    return f"{int(minutes)} min {seconds:04.1f} s"


def _usage(usage: Mapping[str, float]) -> str:
    # A line breaks between entries, never inside one.
    return " · ".join(f'<span style="white-space:nowrap">{_escape(name)} {_quantity(amount)}'
                      "</span>" for name, amount in usage.items())


def _label(text: str) -> str:
    return f'<span style="opacity:0.7">{text}</span>'


def _quantity(amount: float) -> str:
    if float(amount).is_integer():
        return f"{int(amount):,}"
    return f"{amount:.4g}"

