"""``agentauthz replay``: recorded decisions decided again by a candidate policy set.

An audit log is one JSON event per line (:class:`~agentauthz.AuditEvent`). Only
events of an Authorizer created with ``record_requests=True`` carry the Cedar
request and the entities it was decided with (``"request": {"request": ...,
"entities": [...]}``); the others are counted as skipped. Each replayed
request is decided by the candidate store's embedded engine, with the recorded
entities laid over the store's own, and compared with the recorded decision.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from agentauthz._errors import AuthzError
from agentauthz._model import Decision, Entity, Request
from agentauthz.engines.local import LocalEngine
from agentauthz.policy._store import PolicyStore, truncate

__all__ = ["Change", "ReplayReport", "replay"]

_BATCH = 100


@dataclass(frozen=True)
class Change:
    """One recorded decision that the candidate policies decide differently.

    Attributes:
        line: line of the event in the audit log.
        principal, action, resource: Cedar text of the request's uids.
        before: the recorded decision (``"allow"`` / ``"deny"``).
        before_reasons: its determining policies.
        after: the candidate's decision.
    """

    line: int
    principal: str
    action: str
    resource: str
    before: str
    before_reasons: tuple[str, ...]
    after: Decision

    @property
    def kind(self) -> str:
        """``allow->deny``, ``deny->allow`` or ``reasons`` (same decision, other policies)."""
        return "reasons" if self.before == self.after.outcome else f"{self.before}->{self.after.outcome}"

    def to_json(self) -> dict[str, Any]:
        """The change as a JSON object."""
        return {"line": self.line, "kind": self.kind, "principal": self.principal,
                "action": self.action, "resource": self.resource,
                "before": {"decision": self.before, "reasons": list(self.before_reasons)},
                "after": {"decision": self.after.outcome, "reasons": list(self.after.reasons),
                          "errors": list(self.after.errors)}}


@dataclass
class ReplayReport:
    """Counts of a replay and the first examples of each kind of change.

    Attributes:
        events: audit events read (non-blank lines).
        replayed: events decided again.
        skipped: events without a recorded request (record_requests was off).
        unreadable: lines that are not audit events or whose request cannot be
            read, as ``(line, why)`` (the first ``examples`` of them).
        unreadable_count: how many such lines in all.
        unchanged: same decision and same determining policies.
        counts: number of changes by kind (``allow->deny``, ``deny->allow``, ``reasons``).
        examples: the first changes of each kind.
    """

    events: int = 0
    replayed: int = 0
    skipped: int = 0
    unreadable: list[tuple[int, str]] = field(default_factory=list)
    unreadable_count: int = 0
    unchanged: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: {"allow->deny": 0, "deny->allow": 0, "reasons": 0})
    examples: dict[str, list[Change]] = field(
        default_factory=lambda: {"allow->deny": [], "deny->allow": [], "reasons": []})

    @property
    def flips(self) -> int:
        """Decisions that would change (allow to deny or deny to allow)."""
        return self.counts["allow->deny"] + self.counts["deny->allow"]

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON object."""
        return {
            "events": self.events, "replayed": self.replayed, "skipped": self.skipped,
            "unreadable": self.unreadable_count, "unchanged": self.unchanged,
            "flips": self.flips, "changes": dict(self.counts),
            "examples": {kind: [change.to_json() for change in changes]
                         for kind, changes in self.examples.items()},
            "unreadable_lines": [{"line": line, "why": why} for line, why in self.unreadable],
        }


@dataclass
class _Pending:
    line: int
    event: dict[str, Any]
    request: Request


def replay(
    lines: Iterable[str],
    store: PolicyStore,
    *,
    examples: int = 5,
    advance: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Decide recorded requests again with ``store`` and compare.

    Args:
        lines: the audit log, one JSON event per line (a log prefix before the
            first ``{`` is ignored).
        store: the candidate policies.
        examples: how many examples of each kind of change to keep.
        advance: called with the number of lines processed, for progress bars.

    Example:
        >>> import agentauthz as az
        >>> from agentauthz.testing import capture_decisions
        >>> authz = az.Authorizer.from_text('permit(principal, action, resource);',
        ...                                 record_requests=True)
        >>> with capture_decisions() as events, authz.acting_as(az.EntityUID("User", "a")):
        ...     _ = authz.authorize(action="read", resource=az.EntityUID("Doc", "d"))
        >>> candidate = az.PolicyStore.from_text('forbid(principal, action, resource);')
        >>> replay([e.to_json() for e in events], candidate).counts["allow->deny"]
        1
    """
    engine = LocalEngine(store)
    report = ReplayReport()
    pending: list[_Pending] = []
    pending_key: str | None = None
    pending_entities: list[Entity] = []

    def flush() -> None:
        if not pending:
            return
        decisions = engine.decide([item.request for item in pending], pending_entities)
        for item, decision in zip(pending, decisions, strict=True):
            _compare(report, item, decision, examples)
        pending.clear()

    for number, line in _numbered(lines, advance):
        report.events += 1
        event, why = parse_event(line)
        if event is None:
            _unreadable(report, number, why, examples)
            continue
        recorded = event.get("request")
        if recorded is None:
            report.skipped += 1
            continue
        try:
            request, entities = _recorded(recorded)
        except (AuthzError, KeyError, TypeError, ValueError) as exc:
            _unreadable(report, number, f"recorded request: {truncate(str(exc), 160)}", examples)
            continue
        key = json.dumps([entity.cedar for entity in entities], sort_keys=True)
        if key != pending_key or len(pending) >= _BATCH:
            flush()
            pending_key, pending_entities = key, entities
        pending.append(_Pending(number, event, request))
    flush()
    return report


def _numbered(lines: Iterable[str], advance: Callable[[int], None] | None) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(lines, start=1):
        if advance is not None:
            advance(1)
        if line.strip():
            yield number, line


def parse_event(line: str) -> tuple[dict[str, Any] | None, str]:
    """One audit log line as its event, or None and why it is not one."""
    text = line.strip()
    if not text.startswith("{") and "{" in text:
        text = text[text.index("{"):]  # a logging prefix such as "INFO agentauthz.audit "
    try:
        event = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None, "not JSON"
    if not isinstance(event, dict) or event.get("decision") not in ("allow", "deny"):
        return None, "not an audit event (no decision)"
    return event, ""


def _recorded(recorded: Any) -> tuple[Request, list[Entity]]:
    if not isinstance(recorded, dict) or not isinstance(recorded.get("request"), dict):
        raise ValueError('expected {"request": {...}, "entities": [...]}')
    entities = recorded.get("entities") or []
    if not isinstance(entities, list):
        raise ValueError("entities must be a list")
    return Request.from_cedar(recorded["request"]), [Entity.from_cedar(e) for e in entities]


def _unreadable(report: ReplayReport, line: int, why: str, examples: int) -> None:
    report.unreadable_count += 1
    if len(report.unreadable) < examples:
        report.unreadable.append((line, why))


def _compare(report: ReplayReport, item: _Pending, decision: Decision, examples: int) -> None:
    report.replayed += 1
    event = item.event
    before_reasons = tuple(sorted(str(reason) for reason in event.get("reasons") or ()))
    if event["decision"] == decision.outcome and before_reasons == tuple(sorted(decision.reasons)):
        report.unchanged += 1
        return
    request = item.request
    change = Change(line=item.line, principal=str(request.principal), action=str(request.action),
                    resource=str(request.resource), before=event["decision"],
                    before_reasons=before_reasons, after=decision)
    report.counts[change.kind] += 1
    if len(report.examples[change.kind]) < examples:
        report.examples[change.kind].append(change)


def count_lines(stream: TextIO) -> int:
    """Lines in a seekable text stream, which is left at its start."""
    total = sum(1 for _ in stream)
    stream.seek(0)
    return total
