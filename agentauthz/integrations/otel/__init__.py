"""OpenTelemetry: a span and metrics for every authorization decision (extra ``otel``).

``pip install "agentauthz[otel]"`` (``opentelemetry-api`` only; the application
configures the SDK and its exporters as it already does).

:func:`instrument` sends the audit events of every Authorizer to an
:class:`OpenTelemetrySink`: every decision, on every path (``authorize``,
``@guard``, LangChain, Bedrock, MCP, Strands, ``filter``, the retrievers), is a
span under the span that is current (a LangChain or Strands tool span, the
agent's own), and counts in the metrics. Give the sink to one Authorizer
instead with ``Authorizer(..., audit=[OpenTelemetrySink()])``.

Without this module imported nothing changes: ``import agentauthz`` never
imports OpenTelemetry.

Example:
    >>> import agentauthz as az
    >>> sink = instrument()      # the global tracer and meter providers
    >>> authz = az.Authorizer.from_text("permit(principal, action, resource);")
    >>> authz.authorize(principal=az.EntityUID("User", "a"), action="read",
    ...                 resource=az.EntityUID("Doc", "d")).allowed
    True
    >>> uninstrument()
"""

from __future__ import annotations

import threading
from typing import Any

from agentauthz._audit import add_global_sink, remove_global_sink
from agentauthz.integrations.otel._sink import SCOPE, OpenTelemetrySink

__all__ = ["SCOPE", "OpenTelemetrySink", "instrument", "uninstrument"]

_lock = threading.Lock()
_installed: OpenTelemetrySink | None = None


def instrument(*, tracer_provider: Any = None, meter_provider: Any = None) -> OpenTelemetrySink:
    """Trace and measure the decisions of every Authorizer (replaces an earlier :func:`instrument`).

    Args:
        tracer_provider: where spans go; the global provider when None.
        meter_provider: where metrics go; the global provider when None.

    Returns:
        The sink now receiving every Authorizer's audit events.
    """
    global _installed
    sink = OpenTelemetrySink(tracer_provider=tracer_provider, meter_provider=meter_provider)
    with _lock:
        if _installed is not None:
            remove_global_sink(_installed)
        add_global_sink(sink)
        _installed = sink
    return sink


def uninstrument() -> None:
    """Stop what :func:`instrument` started (nothing when it was not called)."""
    global _installed
    with _lock:
        if _installed is not None:
            remove_global_sink(_installed)
            _installed = None
