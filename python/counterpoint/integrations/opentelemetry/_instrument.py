"""``cp.instrument()``: every run traced through an OpenTelemetry tracer."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from opentelemetry import trace

from ... import _tracing
from ._spans import RunSpans

# The instrumentation scope of counterpoint's spans.
SCOPE = "counterpoint"
# A graph with no name of its own: its workflow span is "invoke_workflow graph".
DEFAULT_GRAPH_NAME = "graph"


class GraphTracer:
    """Makes each run's spans with one tracer (the ``_tracing.RunTracer`` installed)."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def trace(self, graph: Any, observer: Any) -> RunSpans:
        name = getattr(graph, "name", None)
        return RunSpans(self._tracer, name if isinstance(name, str) and name
                        else DEFAULT_GRAPH_NAME, observer)


def instrument(tracer_provider: Any = None) -> None:
    """Traces every run from now on with OpenTelemetry, per the GenAI semantic conventions.

    Each run (``invoke``, ``ainvoke``, ``run``, ``start``, ``stream``, ``astream``,
    ``batch``, ``abatch``, ``resume``; durable or not; called through LangChain too) makes
    one ``invoke_workflow {graph}`` span, and each agent call one ``invoke_agent {agent
    path}`` span under it (agents of nested graphs under the agent that runs the graph,
    each retry attempt a span of its own). While an agent runs, its span is the current
    span, so spans that other instrumentations (an LLM client's, an HTTP library's)
    make inside it nest under it. See docs/observability-otel.md.

    Calling it again replaces the tracer provider; runs already started keep theirs.

    Args:
        tracer_provider: The ``TracerProvider`` to make spans with; None uses the global
            one (``opentelemetry.trace.set_tracer_provider``), including one set later.

    Raises:
        TypeError: ``tracer_provider`` is not a TracerProvider.
    """
    if tracer_provider is not None and not callable(getattr(tracer_provider, "get_tracer", None)):
        raise TypeError(
            "instrument(tracer_provider=...) takes an OpenTelemetry TracerProvider (an object "
            f"with get_tracer()), got {tracer_provider!r}; pass None to use the global one"
        )
    tracer = trace.get_tracer(SCOPE, version("counterpoint"), tracer_provider=tracer_provider)
    _tracing.set_tracer(GraphTracer(tracer))


def uninstrument() -> None:
    """Stops tracing runs that start from now on; runs in flight finish their traces."""
    _tracing.set_tracer(None)
