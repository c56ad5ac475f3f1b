"""Where an instrumentation plugs in to trace runs (``cp.instrument()``).

Compiled graphs read :data:`tracer` once per run: while it is None (the default) every
run keeps its fast path and pays nothing else. ``counterpoint.integrations.opentelemetry``
sets it; nothing here imports that integration or OpenTelemetry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._timeline import Timeline


class RunTrace(Protocol):
    """One run's trace, from just before the run starts to its end."""

    # What observes the run's agent calls: the trace's own observer, combined with the
    # observer the run had anyway (a stream's channel, LangChain callbacks), if any.
    observer: Any

    def started(self, handle: Any, run_key: str | None) -> None:
        """The run started (its agents may already be running, or done)."""

    def ended(self, handle: Any, timeline: Timeline | None) -> None:
        """The run has ended and its caller knows it; ``timeline`` is the engine's record
        of it, if the run kept one (nobody streamed it). Safe to call more than once."""

    def reported(self, report: Any, run_key: str | None,
                 timeline: Timeline | None = None) -> None:
        """A run of a batch ended with ``report`` (a RunReport; no handle is kept) and
        ``timeline``, the engine's record of it, when the batch kept one."""

    def abandoned(self, error: BaseException) -> None:
        """The run could not start, or its caller was interrupted before it ended."""


class RunTracer(Protocol):
    """Makes each run's trace."""

    def trace(self, graph: Any, observer: Any) -> RunTrace:
        """A new trace for a run of ``graph`` that ``observer`` (or None) observes."""


# The tracer of every run started from now on; None: runs are not traced.
tracer: RunTracer | None = None


def set_tracer(new: RunTracer | None) -> None:
    """Traces the runs that start from now on with ``new`` (None: stops tracing them);
    runs in flight keep the tracer they started with."""
    global tracer
    tracer = new
