"""OpenTelemetry tracing of counterpoint runs, per the GenAI semantic conventions.

``cp.instrument()`` (or :func:`instrument` here) makes every run report an
``invoke_workflow`` span and an ``invoke_agent`` span per agent call to the application's
``TracerProvider``. It needs opentelemetry-api (``pip install "counterpoint[otel]"``);
nothing of it is imported until then. See docs/observability-otel.md.
"""

from ._instrument import instrument, uninstrument

__all__ = ["instrument", "uninstrument"]
