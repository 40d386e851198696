"""Audit events: one per decision, to the ``agentauthz.audit`` logger and any sinks.

Events carry ids and outcomes, never attribute values, unless the application
opts in with ``record_requests=True`` (for ``agentauthz replay``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "AuditEvent",
    "AuditSink",
    "LoggingSink",
    "MemorySink",
    "annotating",
    "capture_events",
    "current_annotations",
    "global_sinks",
]

AUDIT_LOGGER = "agentauthz.audit"


@dataclass(frozen=True)
class AuditEvent:
    """What one decision was and how it was made.

    Attributes:
        principal, action, resource: Cedar text of the uids (``User::"alice"``).
        decision: ``"allow"`` or ``"deny"`` as Cedar decided.
        enforced: False in shadow mode (the call went ahead whatever ``decision`` says).
        reasons: determining policy ids.
        errors: evaluation errors, truncated.
        fingerprint: policy-store fingerprint.
        engine: ``"local"``, ``"avp"``, ...
        mode: ``"enforce"`` or ``"shadow"``.
        elapsed_us: time of the engine call that produced it, in microseconds.
        correlation_id: ties the event to the application's request or conversation.
        timestamp: seconds since the epoch.
        request: the Cedar request with its entities, only when the application opted in.
        extra: integration-specific fields (tool name, retrieval counts, ...).
        shadow: what each ``@mode("shadow")`` policy of the store would have done
            (``{"policy-id": "would deny"}``; see :mod:`agentauthz.engines._shadow`);
            empty when the store has none. Shadow policies never change ``decision``.
        session: id of the session bound when the decision was made, if any.
        decision_id: the decision's opaque id (:attr:`Decision.id`): the id a
            refusal shown to the model names, to find this event from it.
    """

    principal: str | None
    action: str
    resource: str
    decision: str
    enforced: bool
    reasons: tuple[str, ...]
    errors: tuple[str, ...]
    fingerprint: str
    engine: str
    mode: str
    elapsed_us: int
    correlation_id: str
    timestamp: float
    request: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    shadow: dict[str, str] = field(default_factory=dict)
    session: str | None = None
    decision_id: str = ""

    def to_json(self) -> str:
        """One line of JSON (``request``, ``extra``, ``shadow``, ``session``, ``decision_id``: when set)."""
        data = asdict(self)
        for optional in ("request", "extra", "shadow", "session", "decision_id"):
            if not data[optional]:
                del data[optional]
        return json.dumps(data, separators=(",", ":"), default=str)


@runtime_checkable
class AuditSink(Protocol):
    """Receives every audit event. ``enabled`` lets the Authorizer skip building events."""

    @property
    def enabled(self) -> bool:
        """Whether events should be built for this sink at all."""
        ...

    def emit(self, event: AuditEvent) -> None:
        """Record one event. Must not raise; errors are logged and dropped."""
        ...


class LoggingSink:
    """Writes each event as one JSON line at INFO on the ``agentauthz.audit`` logger."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(AUDIT_LOGGER)

    @property
    def enabled(self) -> bool:
        """True when the logger would emit INFO records."""
        return self.logger.isEnabledFor(logging.INFO)

    def emit(self, event: AuditEvent) -> None:
        """Log the event as JSON."""
        self.logger.info(event.to_json())


class MemorySink:
    """Keeps every event in a list (``.events``): for tests, demos and short-lived tools.

    Example:
        >>> import agentauthz as az
        >>> sink = az.MemorySink()
        >>> authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[sink])
        >>> _ = authz.authorize(principal=az.EntityUID("User", "a"), action="read",
        ...                     resource=az.EntityUID("Doc", "d"))
        >>> [event.decision for event in sink.events]
        ['allow']
    """

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Always True: every event is kept."""
        return True

    def emit(self, event: AuditEvent) -> None:
        """Keep the event."""
        with self._lock:
            self.events.append(event)

    def clear(self) -> None:
        """Forget the events kept so far."""
        with self._lock:
            self.events.clear()


_global_lock = threading.Lock()
_global_sinks: tuple[AuditSink, ...] = ()


def global_sinks() -> tuple[AuditSink, ...]:
    """Sinks that receive the events of every Authorizer (test captures)."""
    return _global_sinks


@contextmanager
def capture_events() -> Iterator[list[AuditEvent]]:
    """Collect the audit events of every Authorizer while the block runs."""
    global _global_sinks
    sink = MemorySink()
    with _global_lock:
        _global_sinks = (*_global_sinks, sink)
    try:
        yield sink.events
    finally:
        with _global_lock:
            _global_sinks = tuple(s for s in _global_sinks if s is not sink)


_annotations: ContextVar[Mapping[str, object] | None] = ContextVar("agentauthz_audit_annotations",
                                                                  default=None)


@contextmanager
def annotating(extra: Mapping[str, object] | None) -> Iterator[None]:
    """Add ``extra`` to the ``extra`` of every audit event built while the block runs.

    For facts a decision was made with that the request does not show as such
    (a guardrail's findings: categories and scores, never the text).
    """
    if not extra:
        yield
        return
    token = _annotations.set({**(_annotations.get() or {}), **extra})
    try:
        yield
    finally:
        _annotations.reset(token)


def current_annotations() -> dict[str, object]:
    """What :func:`annotating` adds to the events built now."""
    current = _annotations.get()
    return dict(current) if current else {}
