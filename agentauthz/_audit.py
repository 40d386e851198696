"""Audit events: one per decision, to the ``agentauthz.audit`` logger and any sinks.

Events carry ids and outcomes, never attribute values, unless the application
opts in with ``record_requests=True`` (for ``agentauthz replay``).

The paths that make several decisions for one thing (a tool call, a filter)
run them inside :func:`operation_scope`: the :class:`Operation` is visible to
sinks while its events are emitted (:func:`current_operation`), and a sink with
an ``operation`` method (:class:`OperationSink`, e.g. the OpenTelemetry one)
wraps the whole operation (its span is the parent of the decisions' spans).
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "AuditEvent",
    "AuditSink",
    "LoggingSink",
    "MemorySink",
    "Operation",
    "OperationSink",
    "add_global_sink",
    "annotating",
    "capture_events",
    "current_annotations",
    "current_operation",
    "global_sinks",
    "operation_scope",
    "remove_global_sink",
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


@dataclass(frozen=True)
class Operation:
    """What a group of decisions is for: a tool call, a filter.

    Attributes:
        kind: ``"tool_call"`` (a guarded tool, or a call decided with
            ``begin_call``) or ``"filter"`` (a retrieval filter, one per round of
            an over-fetching retriever).
        name: the tool's name for a tool call; None for a filter.
    """

    kind: Literal["tool_call", "filter"]
    name: str | None = None


@runtime_checkable
class OperationSink(AuditSink, Protocol):
    """A sink that also wraps each operation (a tool call, a filter) around its decisions' events."""

    def operation(self, operation: Operation) -> AbstractContextManager[object]:
        """A context entered while the operation runs. Must not raise; errors are logged and dropped."""
        ...


_operation: contextvars.ContextVar[Operation | None] = contextvars.ContextVar(
    "agentauthz_operation", default=None)


def current_operation() -> Operation | None:
    """The operation whose decisions are being made, if any (for sinks)."""
    return _operation.get()


def operation_scope(sinks: Sequence[AuditSink], operation: Operation) -> AbstractContextManager[None]:
    """Run an operation's decisions: :func:`current_operation` names it, operation sinks wrap it."""
    if not sinks or not any(isinstance(sink, OperationSink) for sink in sinks):
        return _Named(operation)  # nobody wraps it: a guarded call's hot path saves the generator
    return _wrapped(sinks, operation)


class _Named:
    """The scope of an operation that no sink wraps: it only names the operation."""

    __slots__ = ("_operation", "_token")

    def __init__(self, operation: Operation) -> None:
        self._operation = operation

    def __enter__(self) -> None:
        self._token = _operation.set(self._operation)

    def __exit__(self, *exc_info: object) -> None:
        _operation.reset(self._token)


@contextmanager
def _wrapped(sinks: Sequence[AuditSink], operation: Operation) -> Iterator[None]:
    token = _operation.set(operation)
    try:
        with ExitStack() as stack:
            for sink in sinks:
                if isinstance(sink, OperationSink):
                    stack.enter_context(_observed(sink, operation))
            yield
    finally:
        _operation.reset(token)


@contextmanager
def _observed(sink: OperationSink, operation: Operation) -> Iterator[None]:
    """A sink's operation context that can neither fail the call nor swallow what it raises.

    An exception of the call (an :class:`~agentauthz.AccessDenied`) goes on
    whatever the sink's ``__exit__`` returns: a sink never turns a refusal into
    a call that went ahead.
    """
    log = logging.getLogger("agentauthz")
    try:
        context = sink.operation(operation)
        context.__enter__()
    except Exception:  # a sink must not turn a call into a crash
        log.exception("audit sink %r failed", sink)
        yield
        return
    try:
        yield
    except BaseException as exc:
        try:
            context.__exit__(type(exc), exc, exc.__traceback__)  # its answer is ignored: never swallowed
        except Exception:
            log.exception("audit sink %r failed", sink)
        raise
    else:
        try:
            context.__exit__(None, None, None)
        except Exception:
            log.exception("audit sink %r failed", sink)


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


def add_global_sink(sink: AuditSink) -> None:
    """Send the events of every Authorizer to ``sink`` too (once, however often it is added)."""
    global _global_sinks
    with _global_lock:
        if not any(s is sink for s in _global_sinks):
            _global_sinks = (*_global_sinks, sink)


def remove_global_sink(sink: AuditSink) -> None:
    """Stop sending every Authorizer's events to ``sink`` (added by :func:`add_global_sink`)."""
    global _global_sinks
    with _global_lock:
        _global_sinks = tuple(s for s in _global_sinks if s is not sink)


@contextmanager
def capture_events() -> Iterator[list[AuditEvent]]:
    """Collect the audit events of every Authorizer while the block runs."""
    sink = MemorySink()
    add_global_sink(sink)
    try:
        yield sink.events
    finally:
        remove_global_sink(sink)


_annotations: contextvars.ContextVar[Mapping[str, object] | None] = contextvars.ContextVar(
    "agentauthz_audit_annotations", default=None)


def annotating(extra: Mapping[str, object] | None) -> AbstractContextManager[None]:
    """Add ``extra`` to the ``extra`` of every audit event built while the block runs.

    For facts a decision was made with that the request does not show as such
    (a guardrail's findings: categories and scores, never the text). A record
    already annotated is extended, not replaced (``{"guardrail": {"user": ...}}``
    outside, ``{"guardrail": {"input": ...}}`` inside: both are kept).
    """
    return _Annotated(extra) if extra else _NOTHING


_NOTHING = nullcontext()


class _Annotated(AbstractContextManager[None]):  # a class: a generator's set-up costs a guarded call ~2 us
    __slots__ = ("_extra", "_token")

    def __init__(self, extra: Mapping[str, object]) -> None:
        self._extra = extra

    def __enter__(self) -> None:
        current = _annotations.get()
        if not current:
            self._token = _annotations.set(self._extra)
            return
        merged = {key: {**before, **value} if isinstance(before := current.get(key), Mapping)
                  and isinstance(value, Mapping) else value for key, value in self._extra.items()}
        self._token = _annotations.set({**current, **merged})

    def __exit__(self, *exc_info: object) -> None:
        _annotations.reset(self._token)


def current_annotations() -> dict[str, object]:
    """What :func:`annotating` adds to the events built now."""
    current = _annotations.get()
    return dict(current) if current else {}
