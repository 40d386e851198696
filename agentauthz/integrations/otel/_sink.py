"""The OpenTelemetry audit sink: a span and metrics for every audit event.

Every decision produces exactly one audit event (:mod:`agentauthz._audit`), so
a sink sees every decision path: ``authorize``, ``@guard``, the LangChain,
Bedrock, MCP and Strands integrations, ``filter`` and the retrievers. A
decision's span is made when its event arrives, backdated by the event's
``elapsed_us``, under whatever span is current: the operation's span (a tool
call, a filter; see :func:`~agentauthz._audit.operation_scope`), else the agent
framework's own span.

Spans and metrics carry types, ids of policies, outcomes and timings; never a
principal's or resource's id, never an attribute value, never an error's text.
"""

from __future__ import annotations

import contextvars
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import metrics, trace
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        'agentauthz.integrations.otel needs opentelemetry-api: pip install "agentauthz[otel]"'
    ) from _missing

from agentauthz._audit import AuditEvent, Operation, current_operation
from agentauthz.session._admission import STORE_FAILED

__all__ = ["SCOPE", "OpenTelemetrySink"]

SCOPE = "agentauthz"
"""Instrumentation scope name of the tracer and the meter."""

# GenAI semantic conventions (https://opentelemetry.io/docs/specs/semconv/gen-ai/).
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_TOOL = "gen_ai.tool.name"
EXECUTE_TOOL = "execute_tool"
# The policy a denial is counted under when no policy determined it (nothing permitted it).
NO_POLICY = "(none)"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("agentauthz")
    except Exception:  # a checkout without metadata
        return "0"


def _type_of(uid_text: str | None) -> str:
    """``User::"alice"`` -> ``User`` (only the type: an id may be personal data).

    A type holds no ``"``, so the text before the first ``::"`` is the type;
    text that is no uid (a name recorded as written) gives ``""``.
    """
    entity_type, quote, _ = (uid_text or "").partition('::"')
    return entity_type if quote else ""


class OpenTelemetrySink:
    """An audit sink that turns each decision into an OpenTelemetry span and metrics.

    Spans (tracer ``agentauthz``):

    * ``agentauthz.decision``, one per decision: ``agentauthz.action``,
      ``agentauthz.principal.type``, ``agentauthz.resource.type``,
      ``agentauthz.decision`` (``allow``/``deny``), ``agentauthz.enforced``,
      ``agentauthz.mode``, ``agentauthz.policy_ids`` (determining policies),
      ``agentauthz.engine``, ``agentauthz.policy_version`` (the policy store's
      fingerprint), ``agentauthz.latency_us``, ``agentauthz.error_count``,
      ``agentauthz.decision_id``; for a tool call also ``gen_ai.tool.name`` and
      ``gen_ai.operation.name`` = ``execute_tool``.
    * ``agentauthz.tool_call`` and ``agentauthz.filter``, around the decisions
      of one tool call or one filter (one per round of an over-fetching
      retriever), with how many were allowed and denied
      (``agentauthz.decisions.allowed``, ``agentauthz.decisions.denied``).
    * ``agentauthz.retrieval``, one per retrieval of an authorized retriever,
      with its counters (``agentauthz.retrieval.rounds``, ``.fetched``,
      ``.returned``, ``.dropped``).

    Metrics (meter ``agentauthz``): ``agentauthz.decisions`` (counter by
    ``agentauthz.decision``, ``agentauthz.engine``, ``agentauthz.mode``),
    ``agentauthz.decision.duration`` (histogram, seconds),
    ``agentauthz.denials`` (counter by ``agentauthz.policy_id``: each
    determining policy of a denial, ``(none)`` when nothing permitted the call),
    ``agentauthz.session_store.errors`` (decisions denied because the session
    store failed).

    Args:
        tracer_provider: where spans go; the global provider when None.
        meter_provider: where metrics go; the global provider when None.

    Example:
        >>> import agentauthz as az
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        >>> spans = InMemorySpanExporter()
        >>> provider = TracerProvider()
        >>> provider.add_span_processor(SimpleSpanProcessor(spans))
        >>> authz = az.Authorizer.from_text('@id("all") permit(principal, action, resource);',
        ...                                 audit=[OpenTelemetrySink(tracer_provider=provider)])
        >>> _ = authz.authorize(principal=az.EntityUID("User", "a"), action="read",
        ...                     resource=az.EntityUID("Doc", "d"))
        >>> span = spans.get_finished_spans()[0]
        >>> span.name, span.attributes["agentauthz.decision"], span.attributes["agentauthz.policy_ids"]
        ('agentauthz.decision', 'allow', ('all',))
    """

    def __init__(self, *, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        version = _version()
        self.tracer = trace.get_tracer(SCOPE, version, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, version, meter_provider=meter_provider)
        self.decisions = meter.create_counter(
            "agentauthz.decisions", unit="{decision}", description="Authorization decisions, by outcome")
        self.duration = meter.create_histogram(
            "agentauthz.decision.duration", unit="s", description="Time of the engine call behind a decision")
        self.denials = meter.create_counter(
            "agentauthz.denials", unit="{decision}", description="Denials, by determining policy")
        self.store_errors = meter.create_counter(
            "agentauthz.session_store.errors", unit="{error}",
            description="Decisions denied because the session store failed")
        # The outcomes counted for the operation span that is open (a filter's allowed and denied items).
        self._outcomes: contextvars.ContextVar[Counter[str] | None] = contextvars.ContextVar(
            "agentauthz_otel_outcomes", default=None)

    @property
    def enabled(self) -> bool:
        """Always True: every decision gets its span and metrics."""
        return True

    def emit(self, event: AuditEvent) -> None:
        """Record one audit event as a span (and, for a decision, metrics)."""
        if event.extra.get("event") == "retrieval":
            self._retrieval(event)
            return
        attributes: dict[str, Any] = {
            "agentauthz.action": event.action,
            "agentauthz.principal.type": _type_of(event.principal),
            "agentauthz.resource.type": _type_of(event.resource),
            "agentauthz.decision": event.decision,
            "agentauthz.enforced": event.enforced,
            "agentauthz.mode": event.mode,
            "agentauthz.policy_ids": event.reasons,
            "agentauthz.engine": event.engine,
            "agentauthz.policy_version": event.fingerprint,
            "agentauthz.latency_us": event.elapsed_us,
            "agentauthz.error_count": len(event.errors),
            "agentauthz.decision_id": event.decision_id,
        }
        operation = current_operation()
        if operation is not None and operation.kind == "tool_call" and operation.name:
            attributes[GEN_AI_OPERATION] = EXECUTE_TOOL
            attributes[GEN_AI_TOOL] = operation.name
        attributes.update(_guardrail_attributes(event.extra.get("guardrail")))
        self._backdated_span("agentauthz.decision", event.elapsed_us, attributes,
                             error="decision_error" if event.errors else None)
        outcome = {"agentauthz.decision": event.decision, "agentauthz.engine": event.engine,
                   "agentauthz.mode": event.mode}
        self.decisions.add(1, outcome)
        counted = self._outcomes.get()
        if counted is not None:
            counted[event.decision] += 1
        self.duration.record(event.elapsed_us / 1e6, outcome)
        if event.decision == "deny":
            for policy in event.reasons or (NO_POLICY,):
                self.denials.add(1, {"agentauthz.policy_id": policy, "agentauthz.engine": event.engine})
        if any(error.startswith(STORE_FAILED) for error in event.errors):
            self.store_errors.add(1, {"agentauthz.engine": event.engine})

    @contextmanager
    def operation(self, operation: Operation) -> Iterator[object]:
        """The span of one tool call or filter: its decisions' spans are its children."""
        attributes: dict[str, Any] = {"agentauthz.operation": operation.kind}
        if operation.kind == "tool_call" and operation.name:
            attributes[GEN_AI_OPERATION] = EXECUTE_TOOL
            attributes[GEN_AI_TOOL] = operation.name
        name = f"agentauthz.{operation.kind}"
        with self.tracer.start_as_current_span(name, attributes=attributes) as span:
            counted: Counter[str] = Counter()
            token = self._outcomes.set(counted)
            try:
                yield span
            finally:
                self._outcomes.reset(token)
                span.set_attribute("agentauthz.decisions.allowed", counted["allow"])
                span.set_attribute("agentauthz.decisions.denied", counted["deny"])

    def _retrieval(self, event: AuditEvent) -> None:
        stats = event.extra.get("retrieval") or {}
        attributes: dict[str, Any] = {
            "agentauthz.action": event.action,
            "agentauthz.principal.type": _type_of(event.principal),
            "agentauthz.retriever": str(event.extra.get("retriever", "")),
            "agentauthz.engine": event.engine,
            "agentauthz.policy_version": event.fingerprint,
        }
        for counter in ("requested", "returned", "fetched", "dropped", "rounds"):
            value = stats.get(counter)
            if isinstance(value, int):
                attributes[f"agentauthz.retrieval.{counter}"] = value
        self._backdated_span("agentauthz.retrieval", event.elapsed_us, attributes)

    def _backdated_span(self, name: str, elapsed_us: int, attributes: dict[str, Any],
                        error: str | None = None) -> None:
        """A span that ended now and lasted ``elapsed_us``, under the current span."""
        end = time.time_ns()
        span = self.tracer.start_span(name, start_time=end - elapsed_us * 1000, attributes=attributes)
        if error is not None:
            span.set_attribute("error.type", error)
        span.end(end_time=end)


def _guardrail_attributes(guardrail: Any) -> dict[str, Any]:
    """The findings on a call's arguments (category:type:confidence, never the text), as span attributes."""
    assessed = guardrail.get("input") if isinstance(guardrail, dict) else None
    if not isinstance(assessed, dict):
        return {}
    findings = [finding for finding in assessed.get("findings", ()) if isinstance(finding, dict)]
    return {
        "agentauthz.guardrail.detector": str(assessed.get("detector", "")),
        "agentauthz.guardrail.available": bool(assessed.get("available")),
        "agentauthz.guardrail.findings": tuple(
            f"{finding.get('category')}:{finding.get('type')}:{finding.get('confidence')}"
            for finding in findings),
    }
