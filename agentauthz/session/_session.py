"""Sessions, their configuration and the facts they give policies (see :mod:`agentauthz.session`)."""

from __future__ import annotations

import decimal as _decimal
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from agentauthz._errors import ConfigurationError, IdentityError, InvalidValueError
from agentauthz._identity import bound_identity, bound_session, no_end_user
from agentauthz._model import Decision, Entity, EntityUID, ExtensionValue, decimal, to_cedar_value
from agentauthz.session._approvals import ApprovalConfig, ApprovalRequest
from agentauthz.session._provenance import (
    APPROVED,
    USER,
    Provenance,
    ProvenanceStore,
    ResultLabel,
    source_keys,
)
from agentauthz.session._stores import (
    Approval,
    CallRecord,
    MemorySessionStore,
    Number,
    SessionSnapshot,
    SessionStore,
    SQLiteSessionStore,
    foreign_session,
)

__all__ = [
    "SESSION_KEY",
    "Approval",
    "CallRecord",
    "MemorySessionStore",
    "SQLiteSessionStore",
    "Session",
    "SessionConfig",
    "SessionFacts",
    "SessionSnapshot",
    "SessionStore",
    "ToolCall",
    "call_key",
    "current_session",
    "session_record_type",
]

SESSION_KEY = "agentauthz_session"
"""Default key of the session (an id or a :class:`Session`) in an integration's config."""

LabelsOf = str | Sequence[str] | Callable[[Entity], Iterable[str]]
Refusal = Callable[[EntityUID, str, "Session"], None]
"""Told (end user, operation, session) when a session refuses an end user who does not own it."""

_logger = logging.getLogger("agentauthz")
# Settling (completing or releasing) a call that ran is retried this many times; if the store
# still fails the call stays in flight, and keeps counting.
_SETTLE_ATTEMPTS = 3
_SETTLE_BACKOFF = 0.02

_LONG_MAX = 2**63 - 1
_LONG_MIN = -(2**63)
_DECIMAL_MAX = _decimal.Decimal("922337203685477.5807")
_DECIMAL_MIN = _decimal.Decimal("-922337203685477.5808")
_QUANTUM = _decimal.Decimal("0.0001")

#: Attributes of ``context.session`` agentauthz fills, with their Cedar JSON-schema types
#: (``calls``, ``window_calls`` and ``totals`` get one attribute per tool action).
FIXED_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "seen": {"type": "Set", "element": {"type": "String"}},
    "actions": {"type": "Set", "element": {"type": "String"}},
    "last_action": {"type": "String"},
    "last_actions": {"type": "Set", "element": {"type": "String"}},
    "approved": {"type": "Boolean"},
}
KEYED_ATTRIBUTES = ("calls", "window_calls", "totals")


@dataclass(frozen=True)
class SessionConfig:
    """How an Authorizer records sessions.

    Attributes:
        store: where sessions live; default: a :class:`MemorySessionStore` of
            the Authorizer. Use :class:`SQLiteSessionStore` when several
            processes of one host serve one conversation, and
            :class:`~agentauthz.session.DynamoDBSessionStore` for a fleet.
        labels: the resource attribute(s) whose values are the labels recorded
            in ``seen`` (a String or Set<String> attribute each), or a callable
            of the resource Entity returning its labels. Default ``"labels"``.
        window: length of the sliding window of ``window_calls``.
        history: how many of the latest calls ``last_actions`` covers.
        lease: deprecated and ignored: an in-flight call counts until it
            completes or is released, however long that takes (a crashed
            call's outcome is unknown; letting it lapse allowed a second call
            past a limit).
        sums: tool arguments to add up per action name, besides those the
            guards declare (``{"issue_refund": ["amount"]}``).
        reads: tool actions whose completed calls record their resource's
            labels in ``seen`` (``{"read_document"}``), like the retrieval filter.
        schema: the schema that shapes ``context.session`` when the engine
            has none of its own (Verified Permissions): text or JSON.
        clock: seconds since the epoch (tests pass a fake clock).
        max_attempts: decisions of one call before it is denied when its
            session keeps changing under it.
        approvals: how calls held for a person's approval are approved
            (:class:`~agentauthz.session._approvals.ApprovalConfig`; see
            ``docs/approvals.md``).
        provenance: where the values of tool arguments came from
            (:class:`~agentauthz.session.Provenance`: the tools whose calls
            carry ``context.provenance``, the labels of tool results); None
            records none. Needs a store that keeps provenance (memory, SQLite).
    """

    store: SessionStore | None = None
    labels: LabelsOf = "labels"
    window: timedelta = timedelta(hours=1)
    history: int = 10
    lease: timedelta | None = None
    sums: Mapping[str, Sequence[str]] = field(default_factory=dict)
    reads: Collection[str] = ()
    schema: str | Mapping[str, Any] | None = None
    clock: Callable[[], float] = time.time
    max_attempts: int = 200
    approvals: ApprovalConfig = field(default_factory=ApprovalConfig)
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        if self.history < 0:
            raise ConfigurationError("SessionConfig.history must be 0 or more")
        if self.window <= timedelta(0):
            raise ConfigurationError("SessionConfig.window must be positive")
        if self.lease is not None:
            warnings.warn("SessionConfig.lease is ignored: an in-flight call counts until it completes "
                          "or is released", DeprecationWarning, stacklevel=3)
        if self.max_attempts < 1:
            raise ConfigurationError("SessionConfig.max_attempts must be at least 1")
        if not isinstance(self.approvals, ApprovalConfig):
            raise ConfigurationError("SessionConfig.approvals takes an ApprovalConfig")
        if self.store is not None and not isinstance(self.store, SessionStore):
            raise ConfigurationError(
                f"{type(self.store).__name__} does not implement the SessionStore protocol")
        if self.provenance is not None and not isinstance(self.provenance, Provenance):
            raise ConfigurationError("SessionConfig.provenance takes an agentauthz.session.Provenance")
        if self.provenance is not None and self.store is not None and not isinstance(
                self.store, ProvenanceStore):
            raise ConfigurationError(
                f"{type(self.store).__name__} keeps no provenance (add_provenance/provenance): "
                "SessionConfig.provenance needs a store that does")


class Session:
    """One conversation's recorded facts; bound with ``authz.session(session_id)``.

    A session belongs to one end user, its *owner*: the one whose decision or
    write created it. Each operation acts for ``owner`` when the handle names
    one, otherwise for the end user bound with ``authz.acting_as``; an end user
    who does not own the stored session is refused with IdentityError.

    Attributes:
        id: the session id (the application's conversation id).
        store: where its facts live.
        config: the recording settings of the Authorizer that opened it.
        owner: the end user this handle acts for, or None for the bound one.
        on_refusal: told when the session refuses an end user (the Authorizer
            that opens a session records an audit event).

    Example:
        >>> s = Session("c-9", MemorySessionStore(), owner=EntityUID("User", "alice"))
        >>> _ = s.approve("issue_refund", EntityUID("Order", "o-1"), arguments={"amount": 40})
        >>> s.see("pii")
        >>> s.state().approvals[0].resource, sorted(s.state().seen), s.state().owner
        ('Order::"o-1"', ['pii'], 'User::"alice"')
        >>> Session("c-9", s.store, owner=EntityUID("User", "mallory")).state()
        Traceback (most recent call last):
        agentauthz._errors.IdentityError: session 'c-9': the session belongs to another end user
    """

    def __init__(self, session_id: str, store: SessionStore, config: SessionConfig | None = None, *,
                 owner: EntityUID | Entity | None = None, on_refusal: Refusal | None = None) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise ConfigurationError("a session id must be a non-empty string")
        if owner is not None and not isinstance(owner, (EntityUID, Entity)):
            raise IdentityError(f"a session's owner is an EntityUID or Entity, not {type(owner).__name__}")
        self.id = session_id
        self.store = store
        self.config = config or SessionConfig()
        self.owner: EntityUID | None = owner.uid if isinstance(owner, Entity) else owner
        self.on_refusal = on_refusal

    def __repr__(self) -> str:
        return f"Session({self.id!r})"

    def acting_for(self) -> EntityUID:
        """The end user operations act for: ``owner``, else the bound end user.

        Raises:
            IdentityError: neither is there.
        """
        if self.owner is not None:
            return self.owner
        identity = bound_identity.get()
        if identity is None:
            raise no_end_user(
                f"session {self.id!r} acts for an end user: bind one, or give the Session its owner")
        return identity.uid

    def refuse(self, principal: EntityUID, operation: str) -> IdentityError:
        """Tell ``on_refusal`` that ``principal`` was refused; the error to raise."""
        if self.on_refusal is not None:
            self.on_refusal(principal, operation, self)
        return foreign_session(self.id)

    def belongs_to(self, snapshot: SessionSnapshot, principal: EntityUID) -> bool:
        """Whether ``principal`` may use this session as ``snapshot`` shows it.

        True for its recorded owner, and for anyone while nothing is recorded;
        False for another end user, for a session that holds facts but records
        no owner (stored before owners were), and for an end user other than
        the handle's ``owner``.
        """
        if self.owner is not None and self.owner != principal:
            return False
        return snapshot.owner == str(principal) or (
            snapshot.owner is None and snapshot == SessionSnapshot(self.id))

    @contextmanager
    def _writing(self, principal: EntityUID, operation: str) -> Iterator[None]:
        """Audit a write the store refused because the session belongs to another end user."""
        try:
            yield
        except IdentityError:
            raise self.refuse(principal, operation) from None

    def approve(
        self,
        action: str | EntityUID,
        resource: EntityUID | Entity,
        *,
        arguments: Mapping[str, Any] | None = None,
        granted_by: str | None = None,
        expires_in: timedelta | None = None,
        once: bool = False,
    ) -> Approval:
        """Approve one exact call for the session's owner: this action, resource and arguments.

        A request is approved (``context.session.approved``) when its
        principal is the session's owner and its action, resource and complete
        ``context.input`` are the approval's (arguments compared as Cedar
        values). Call it from the application (a human clicked "approve"),
        never from model output.

        Args:
            action: the action name (``"issue_refund"``) or uid.
            resource: the resource the call acts on (``Tool::"issue_refund"``
                for a guarded tool that names none).
            arguments: every argument of the approved call
                (``{"order_id": "o-1", "amount": 4200}``); None or ``{}``
                approves only a call without any.
            granted_by: who approved, kept with the approval.
            expires_in: how long it covers calls; None: until revoked.
            once: it covers one call, admitted in this session (a guarded
                tool's call, ``begin_call``): admitting it uses the approval
                up. What a held call's approval request grants
                (:meth:`agentauthz.Authorizer.approve`).

        Returns:
            The approval, for :meth:`revoke`.

        Raises:
            IdentityError: no end user to act for, or the session is another's.

        Example:
            >>> s = Session("c-1", MemorySessionStore(), owner=EntityUID("User", "carol"))
            >>> s.approve("issue_refund", EntityUID("Tool", "issue_refund"),
            ...           arguments={"order_id": "o-7", "amount": 4200}).arguments
            '{"amount":4200,"order_id":"o-7"}'
        """
        principal = self.acting_for()
        approval = Approval(
            principal=str(principal),
            action=_action_key(action),
            resource=_resource_text(resource),
            arguments=_canonical(arguments or {}),
            granted_by=granted_by,
            expires_at=None if expires_in is None else self.config.clock() + expires_in.total_seconds(),
            once=once,
        )
        with self._writing(principal, "approve"):
            self.store.approve(self.id, approval)
        if arguments:
            self._register(principal, "approve", arguments, (APPROVED,))
        return approval

    def revoke(self, approval: Approval) -> bool:
        """Withdraw an approval; True if it was granted."""
        principal = self.acting_for()
        with self._writing(principal, "revoke"):
            if approval.principal != str(principal):
                raise foreign_session(self.id)
            return self.store.revoke(self.id, approval)

    def see(self, *labels: str) -> None:
        """Record labels of data the application itself showed the agent."""
        for label in labels:
            if not isinstance(label, str):
                raise InvalidValueError(f"a label must be a string, not {type(label).__name__}")
        principal = self.acting_for()
        with self._writing(principal, "see"):
            self.store.add_labels(self.id, labels, owner=str(principal))

    def user_said(self, text: str) -> None:
        """Register what the end user said (their own message): its values carry the label ``user``.

        Call it with the human's message only (integrations do it where they
        see it), never with model output or tool results: whatever it
        registers becomes as trusted as the user. Does nothing unless
        ``SessionConfig.provenance`` is set.

        Raises:
            InvalidValueError: ``text`` is not a string.
            IdentityError: no end user to act for, or the session is another's.

        Example:
            >>> s = Session("c-2", MemorySessionStore(), SessionConfig(provenance=Provenance(tools={"pay"})),
            ...             owner=EntityUID("User", "alice"))
            >>> s.user_said("Pay my rent to DE89 3704 0044 0532 0130 00")
            >>> s.provenance_of("de89370400440532013000"), s.provenance_of("GB33BUKB20201555555555")
            (['user'], [])
        """
        if not isinstance(text, str):
            raise InvalidValueError(f"user_said takes the user's text, not {type(text).__name__}")
        self._register(self.acting_for(), "user_said", text, (USER,))

    def register(self, value: Any, *labels: str) -> None:
        """Register a source: ``value`` (text, or a tool result's structure) with its labels.

        For sources the integrations do not see: an e-mail the application
        fetched itself (``s.register(body, "untrusted")``), a payee list
        (``s.register(payees, "payee")``). Does nothing unless
        ``SessionConfig.provenance`` is set.

        Raises:
            InvalidValueError: no label, or a label that is not a non-empty string.
            IdentityError: no end user to act for, or the session is another's.
        """
        if not labels or not all(isinstance(label, str) and label for label in labels):
            raise InvalidValueError("register needs one or more labels (non-empty strings)")
        self._register(self.acting_for(), "register", value, labels)

    def provenance_of(self, value: str | int) -> list[str]:
        """The labels of the sources ``value`` appears in (what an argument with this value gets)."""
        from agentauthz.session._provenance import value_keys

        config = self.config.provenance
        if config is None or not isinstance(self.store, ProvenanceStore):
            return []
        self.state()  # checks the owner
        found = self.store.provenance(self.id, value_keys(value, config.extractors))
        return sorted(set().union(*found.values())) if found else []

    def _register(self, principal: EntityUID, operation: str, value: Any, labels: Iterable[str],
                  excluded: Any = None) -> None:
        """Register the keys of ``value`` with ``labels``, except those of ``excluded`` (the model's)."""
        config = self.config.provenance
        if config is None:
            return
        if not isinstance(self.store, ProvenanceStore):
            raise ConfigurationError(f"{type(self.store).__name__} keeps no provenance")
        keys = source_keys(value, config.extractors)
        if excluded is not None:
            keys -= source_keys(excluded, config.extractors)
        if not keys:
            return
        chosen = tuple(labels)
        with self._writing(principal, operation):
            self.store.add_provenance(self.id, {key: chosen for key in keys}, owner=str(principal))

    def state(self) -> SessionSnapshot:
        """What is recorded now (completed calls; in-flight ones in ``pending``)."""
        return self._load(self._since())

    def facts(self) -> SessionFacts:
        """The facts decisions see now: completed and in-flight calls together."""
        since = self._since()
        return SessionFacts.of(self._load(since), history=self.config.history, since=since,
                               now=self.config.clock(), single_use=True)

    def _since(self) -> float:
        return self.config.clock() - self.config.window.total_seconds()

    def _load(self, since: float) -> SessionSnapshot:
        principal = self.acting_for()
        snapshot = self.store.load(self.id, since=since, history=self.config.history)
        if not self.belongs_to(snapshot, principal):
            raise self.refuse(principal, "state")
        return snapshot

    def clear(self) -> None:
        """Forget everything recorded for this session (its owner's to clear)."""
        self.state()
        self.store.delete(self.id)


def current_session() -> Session | None:
    """The session bound in this context (thread or task), if any."""
    return bound_session.get()


@contextmanager
def bind_session(session: Session) -> Iterator[Session]:
    """Bind ``session`` for the block (contextvar: thread- and task-safe)."""
    token = bound_session.set(session)
    try:
        yield session
    finally:
        bound_session.reset(token)


# -- facts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionFacts:
    """The session as a decision sees it: completed and in-flight calls together.

    Attributes:
        seen: labels of the resources read.
        calls: calls per action.
        window_calls: calls per action within the window.
        totals: running sums per action and argument.
        recent: action names of the last calls, oldest first.
        approvals: approvals granted.
    """

    seen: frozenset[str] = frozenset()
    calls: Mapping[str, int] = field(default_factory=dict)
    window_calls: Mapping[str, int] = field(default_factory=dict)
    totals: Mapping[str, Mapping[str, Number]] = field(default_factory=dict)
    recent: tuple[str, ...] = ()
    approvals: tuple[Approval, ...] = ()

    @classmethod
    def of(cls, snapshot: SessionSnapshot, *, history: int, since: float | None = None,
           now: float | None = None, single_use: bool = False) -> SessionFacts:
        """Fold the in-flight calls into the snapshot (``since`` starts the window).

        Approvals expired at ``now`` are left out, and so are single-use ones
        unless ``single_use`` (the facts decide a call the session admits,
        which uses the approval up).
        """
        calls = dict(snapshot.calls)
        window = dict(snapshot.window_calls)
        totals = {action: dict(sums) for action, sums in snapshot.totals.items()}
        pending = snapshot.pending
        for call in pending:
            calls[call.action] = calls.get(call.action, 0) + 1
            if since is None or call.at >= since:
                window[call.action] = window.get(call.action, 0) + 1
            bucket = totals.setdefault(call.action, {}) if call.sums else None
            for name, value in call.sums.items():
                assert bucket is not None
                bucket[name] = bucket.get(name, 0) + value
        timeline = sorted([*snapshot.history, *pending], key=lambda call: call.at)
        recent = tuple(call.action for call in timeline[-history:]) if history else ()
        approvals = tuple(approval for approval in snapshot.approvals
                          if (now is None or approval.live(now)) and (single_use or not approval.once))
        return cls(snapshot.seen, calls, window, totals, recent, approvals)


def _clamp(value: Number, kind: str) -> Any:
    if kind == "decimal":
        number = _decimal.Decimal(value).quantize(_QUANTUM, rounding=_decimal.ROUND_FLOOR)
        return decimal(min(max(number, _DECIMAL_MIN), _DECIMAL_MAX))
    if isinstance(value, _decimal.Decimal):
        if value != value.to_integral_value():
            return decimal(value)  # a decimal sum where a Long is declared: Cedar rejects the request
        value = int(value)
    return min(max(value, _LONG_MIN), _LONG_MAX)


def _kind(value: Number) -> str:
    return "decimal" if isinstance(value, _decimal.Decimal) else "Long"


@dataclass(frozen=True)
class SessionShape:
    """What ``context.session`` declares for one action (None attributes: no schema, send all).

    Attributes:
        attributes: declared attribute names, or None to send every attribute.
        calls: declared action names of ``calls``, or None for every known one.
        window_calls: the same for ``window_calls``.
        totals: declared action -> argument -> ``"Long"``/``"decimal"``, or None.
    """

    attributes: frozenset[str] | None = None
    calls: frozenset[str] | None = None
    window_calls: frozenset[str] | None = None
    totals: Mapping[str, Mapping[str, str]] | None = None


FULL_SHAPE = SessionShape()


def session_record(
    facts: SessionFacts,
    shape: SessionShape,
    *,
    approved: bool,
    actions: Iterable[str] = (),
    sum_kinds: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """The ``context.session`` record for one request, cut to ``shape``.

    Args:
        facts: the session as the decision sees it.
        shape: what the request's action declares.
        approved: whether an approval covers this request.
        actions: action names ``calls``/``window_calls`` hold (as 0) even
            before their first call, when the shape does not list them.
        sum_kinds: action -> argument -> Cedar type of the declared sums, for
            ``totals`` entries not yet summed, when the shape does not list them.

    Example:
        >>> record = session_record(SessionFacts(seen=frozenset({"pii"}), calls={"a": 2}),
        ...                         FULL_SHAPE, approved=False)
        >>> record["seen"], record["calls"], record["last_action"]
        (['pii'], {'a': 2}, '')
    """
    wanted = shape.attributes
    record: dict[str, Any] = {}

    def include(name: str) -> bool:
        return wanted is None or name in wanted

    if include("seen"):
        record["seen"] = sorted(facts.seen)
    if include("actions"):
        record["actions"] = sorted(name for name, n in facts.calls.items() if n > 0)
    if include("last_action"):
        record["last_action"] = facts.recent[-1] if facts.recent else ""
    if include("last_actions"):
        record["last_actions"] = sorted(set(facts.recent))
    if include("approved"):
        record["approved"] = approved
    known = set(actions)
    for name, counts in (("calls", facts.calls), ("window_calls", facts.window_calls)):
        if not include(name):
            continue
        declared: frozenset[str] | None = getattr(shape, name)
        keys = declared if declared is not None else known | set(counts)
        record[name] = {key: min(counts.get(key, 0), _LONG_MAX) for key in sorted(keys)}
    if include("totals"):
        record["totals"] = _totals(facts.totals, shape.totals, sum_kinds or {})
    return record


def _totals(totals: Mapping[str, Mapping[str, Number]], declared: Mapping[str, Mapping[str, str]] | None,
            kinds: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    layout: dict[str, dict[str, str]] = {}
    if declared is not None:
        layout = {action: dict(arguments) for action, arguments in declared.items()}
    else:
        for action, arguments in kinds.items():
            layout.setdefault(action, {}).update(arguments)
        for action, sums in totals.items():
            for argument, value in sums.items():
                layout.setdefault(action, {}).setdefault(argument, _kind(value))
    result: dict[str, Any] = {}
    for action in sorted(layout):
        sums = totals.get(action, {})
        result[action] = {argument: _clamp(sums.get(argument, 0), kind)
                          for argument, kind in sorted(layout[action].items())}
    return result


# -- shapes from a schema ----------------------------------------------------------------------

_BUILTINS = {"Long": "Long", "String": "String", "Bool": "Boolean", "Boolean": "Boolean"}
_EXTENSIONS = ("decimal", "ipaddr", "datetime", "duration")


class SchemaShapes:
    """Reads, per action, what ``context.session`` the schema declares.

    Example:
        >>> shapes = SchemaShapes('entity U; type Session = { seen: Set<String> };'
        ...     'action a appliesTo { principal: U, resource: U, context: { session?: Session } };'
        ...     'action b appliesTo { principal: U, resource: U };')
        >>> sorted(shapes.shape(EntityUID("Action", "a")).attributes), shapes.shape(EntityUID("Action", "b"))
        (['seen'], None)
    """

    def __init__(self, schema: str | Mapping[str, Any]) -> None:
        from agentauthz.policy._schema_json import schema_json_text

        if isinstance(schema, Mapping):
            self.document: dict[str, Any] = json.loads(json.dumps(schema))
        else:
            self.document = json.loads(schema_json_text(schema))
        self._cache: dict[EntityUID, SessionShape | None] = {}

    def shape(self, action: EntityUID) -> SessionShape | None:
        """The session shape of ``action``; None when its context has no ``session``."""
        if action not in self._cache:
            self._cache[action] = self._shape(action)
        return self._cache[action]

    def declared(self) -> Iterator[tuple[EntityUID, SessionShape]]:
        """Every action whose context declares ``session``, with its shape.

        Example:
            >>> shapes = SchemaShapes('entity U; type Session = { seen: Set<String> };'
            ...     'action a appliesTo { principal: U, resource: U, context: { session?: Session } };')
            >>> [str(action) for action, _ in shapes.declared()]
            ['Action::"a"']
        """
        for namespace, body in self.document.items():
            actions = body.get("actions") if isinstance(body, Mapping) else None
            for name in actions if isinstance(actions, Mapping) else ():
                action = EntityUID(f"{namespace}::Action" if namespace else "Action", name)
                shape = self.shape(action)
                if shape is not None:
                    yield action, shape

    def provenance(self, action: EntityUID) -> frozenset[str] | None:
        """The arguments ``context.provenance`` declares for ``action``; None when it declares none.

        Example:
            >>> shapes = SchemaShapes('entity U; action pay appliesTo { principal: U, resource: U, '
            ...     'context: { provenance: { to: Set<String> }, provenance_all: { to: Set<String> } } };')
            >>> sorted(shapes.provenance(EntityUID("Action", "pay")))
            ['to']
        """
        found = self._context_attribute(action, "provenance")
        if found is None:
            return None
        record, namespace = found
        return frozenset(self._resolve(record, namespace).get("attributes") or {})

    def optional_attributes(self, action: EntityUID, *path: str) -> frozenset[str] | None:
        """The attributes of the record ``context.<path>`` of ``action`` the schema declares optional.

        None when the action's context declares no such record.

        Example:
            >>> shapes = SchemaShapes('entity U; action a appliesTo { principal: U, resource: U, '
            ...     'context: { guardrail: { input: { pii?: Set<String>, available: Bool } } } };')
            >>> sorted(shapes.optional_attributes(EntityUID("Action", "a"), "guardrail", "input"))
            ['pii']
        """
        found = self._context_attribute(action, path[0]) if path else None
        if found is None:
            return None
        node, namespace = found
        for name in path[1:]:
            record = self._resolve(node, namespace)
            child = (record.get("attributes") or {}).get(name) if record.get("type") == "Record" else None
            if not isinstance(child, Mapping):
                return None
            node = child
        record = self._resolve(node, namespace)
        if record.get("type") != "Record":
            return None
        return frozenset(name for name, declared in (record.get("attributes") or {}).items()
                         if isinstance(declared, Mapping) and declared.get("required") is False)

    def declares(self, action: EntityUID, name: str) -> bool:
        """Whether ``action``'s context declares attribute ``name``."""
        return self._context_attribute(action, name) is not None

    def _context_attribute(self, action: EntityUID, name: str) -> tuple[Mapping[str, Any], str] | None:
        """The declared type of ``context.<name>`` of ``action`` (and its namespace), if declared."""
        namespace = action.type[: -len("Action")].removesuffix("::") if action.type.endswith(
            "Action") else ""
        body = self.document.get(namespace) or {}
        entry = (body.get("actions") or {}).get(action.id)
        if not isinstance(entry, Mapping):
            return None
        context = (entry.get("appliesTo") or {}).get("context")
        if not isinstance(context, Mapping):
            return None
        context = self._resolve(context, namespace)
        declared = (context.get("attributes") or {}).get(name)
        return (declared, namespace) if isinstance(declared, Mapping) else None

    def _shape(self, action: EntityUID) -> SessionShape | None:
        found = self._context_attribute(action, "session")
        if found is None:
            return None
        session, namespace = found
        session = self._resolve(session, namespace)
        if session.get("type") != "Record":
            return None
        attributes = session.get("attributes") or {}

        def keys(name: str) -> frozenset[str] | None:
            node = attributes.get(name)
            if not isinstance(node, Mapping):
                return None
            return frozenset(self._resolve(node, namespace).get("attributes") or {})

        totals: dict[str, dict[str, str]] | None = None
        if isinstance(attributes.get("totals"), Mapping):
            totals = {}
            per_action = self._resolve(attributes["totals"], namespace).get("attributes") or {}
            for action_name, node in per_action.items():
                arguments = self._resolve(node, namespace).get("attributes") or {}
                totals[action_name] = {
                    argument: "decimal" if self._resolve(kind, namespace).get("name") == "decimal"
                    else "Long"
                    for argument, kind in arguments.items()
                }
        return SessionShape(
            attributes=frozenset(attributes), calls=keys("calls"), window_calls=keys("window_calls"),
            totals=totals,
        )

    def _resolve(self, node: Mapping[str, Any], namespace: str, depth: int = 0) -> dict[str, Any]:
        if depth > 32:
            raise ConfigurationError("schema: common types refer to each other in a cycle")
        kind = node.get("type")
        name = node.get("name") if kind == "EntityOrCommon" else kind
        if kind in ("Record", "Set", "Extension", "Entity") or not isinstance(name, str):
            return dict(node)
        if not name.startswith("__cedar::"):
            common = self._common(name, namespace)
            if common is not None:
                return self._resolve(common, namespace, depth + 1)
        base = name.removeprefix("__cedar::")
        if base in _BUILTINS:
            return {"type": _BUILTINS[base]}
        if base in _EXTENSIONS:
            return {"type": "Extension", "name": base}
        return {"type": "Entity", "name": name}

    def _common(self, name: str, namespace: str) -> Mapping[str, Any] | None:
        if "::" in name:
            space, _, local = name.rpartition("::")
            candidates = [(space, local)]
        else:
            candidates = [(namespace, name), ("", name)]
        for space, local in candidates:
            found = ((self.document.get(space) or {}).get("commonTypes") or {}).get(local)
            if isinstance(found, Mapping):
                return found
        return None


# -- pieces of a call -----------------------------------------------------------------------------


def _action_key(action: str | EntityUID) -> str:
    if isinstance(action, EntityUID):
        return action.id if action.type == "Action" else str(action)
    if not isinstance(action, str) or not action:
        raise InvalidValueError("an approval's action must be a name or an EntityUID")
    if '::"' in action:
        return _action_key(EntityUID.parse(action))
    return action


def _resource_text(resource: EntityUID | Entity) -> str:
    if isinstance(resource, Entity):
        return str(resource.uid)
    if isinstance(resource, EntityUID):
        return str(resource)
    raise InvalidValueError(f"an approval's resource must be an EntityUID, not {type(resource).__name__}")


def _canonical(arguments: Mapping[str, Any]) -> str:
    if not isinstance(arguments, Mapping):
        raise InvalidValueError("an approval's arguments must be a mapping of argument names to values")
    return json.dumps(to_cedar_value(dict(arguments), decimal_floats=True), sort_keys=True,
                      separators=(",", ":"))


def approval_covers(approval: Approval, principal: EntityUID, action: str | EntityUID, resource: EntityUID,
                    context: Mapping[str, Any]) -> bool:
    """Whether ``approval`` covers a request: same principal, action, resource and complete arguments.

    Example:
        >>> alice, tool = EntityUID("User", "alice"), EntityUID("Tool", "refund")
        >>> approval = Approval('User::"alice"', "refund", str(tool), _canonical({"amount": 50}))
        >>> [approval_covers(approval, who, EntityUID("Action", "refund"), tool, {"input": {"amount": n}})
        ...  for who, n in ((alice, 50), (alice, 5000), (EntityUID("User", "mallory"), 50))]
        [True, False, False]
    """
    if approval.principal != str(principal) or approval.action != _action_key(action):
        return False
    if approval.resource != str(resource):
        return False
    given = context.get("input", {})
    if not isinstance(given, Mapping):
        return False
    try:
        return _canonical(given) == approval.arguments
    except InvalidValueError:
        return False


def covering_approval(approvals: Iterable[Approval], principal: EntityUID, action: str | EntityUID,
                      resource: EntityUID, context: Mapping[str, Any]) -> Approval | None:
    """The approval that covers a request, a lasting one before a single-use one (left unused)."""
    covering = [a for a in approvals if approval_covers(a, principal, action, resource, context)]
    return min(covering, key=lambda approval: approval.once, default=None)


def labels_of(entity: Entity, labels: LabelsOf) -> set[str]:
    """The labels of a resource: its label attribute(s) or what the callable returns.

    Example:
        >>> doc = Entity(uid=EntityUID("Doc", "d"), attrs={"labels": ["pii"], "classification": "internal"})
        >>> sorted(labels_of(doc, ["labels", "classification"]))
        ['internal', 'pii']
    """
    if callable(labels):
        return {label for label in labels(entity) if isinstance(label, str)}
    names = (labels,) if isinstance(labels, str) else tuple(labels)
    found: set[str] = set()
    for name in names:
        value = entity.attrs.get(name)
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, (list, tuple, set, frozenset)):
            found.update(item for item in value if isinstance(item, str))
    return found


def summed_value(value: Any, where: str) -> Number | None:
    """A tool argument as a summable number (None when absent).

    Raises:
        InvalidValueError: the value is not a number Cedar can hold.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidValueError(f"{where}: a Bool cannot be summed")
    if isinstance(value, int):
        return value
    if isinstance(value, ExtensionValue) and value.fn == "decimal" and isinstance(value.arg, str):
        return _decimal.Decimal(value.arg)
    if isinstance(value, (float, _decimal.Decimal)):
        extension = to_cedar_value(value, decimal_floats=True)
        return _decimal.Decimal(extension["__extn"]["arg"])
    raise InvalidValueError(f"{where}: only Long and decimal arguments can be summed")


def session_record_type(
    actions: Iterable[str], sums: Mapping[str, Mapping[str, dict[str, Any]]] | None = None
) -> dict[str, Any]:
    """The Cedar JSON-schema record type of ``context.session`` for these tool actions.

    Args:
        actions: tool action names (keys of ``calls`` and ``window_calls``).
        sums: action -> summed argument -> its Cedar type (keys of ``totals``).

    Example:
        >>> record = session_record_type(["refund"], {"refund": {"amount": {"type": "Long"}}})
        >>> sorted(record["attributes"])
        ['actions', 'approved', 'calls', 'last_action', 'last_actions', 'seen', 'totals', 'window_calls']
        >>> record["attributes"]["totals"]["attributes"]["refund"]["attributes"]["amount"]
        {'type': 'Long'}
    """
    names = sorted(set(actions))
    counts = {"type": "Record", "attributes": {name: {"type": "Long"} for name in names}}
    totals = {
        "type": "Record",
        "attributes": {
            action: {"type": "Record",
                     "attributes": {name: dict(kind) for name, kind in sorted(args.items())}}
            for action, args in sorted((sums or {}).items()) if args
        },
    }
    attributes: dict[str, Any] = {
        name: json.loads(json.dumps(kind)) for name, kind in FIXED_ATTRIBUTES.items()}
    attributes["calls"] = counts
    attributes["window_calls"] = json.loads(json.dumps(counts))
    attributes["totals"] = totals
    return {"type": "Record", "attributes": dict(sorted(attributes.items()))}


def call_key() -> str:
    """A new call's key: a random UUID (version 4) in hex, as ``uuid.uuid4().hex`` spells it.

    Built from the 16 random bytes directly: ``uuid4()`` costs a guarded call
    four times as much, for the same 122 random bits.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


class ToolCall:
    """A decided call, counted in the bound session once it completes.

    Settle it in one of two ways:

    * ``with call:`` around running the tool: leaving the block normally
      counts the call (unless :meth:`fail` was called inside it), an
      exception releases it;
    * without a block, for runtimes with separate before and after hooks:
      :meth:`complete` once the tool returned, :meth:`fail` once it raised
      or reported a failure.

    A denied call, or one made without a session, records nothing. A call
    that is begun and never settled stays in flight and keeps counting (its
    outcome is unknown: a crashed process, a lost hook), as does one whose
    settling the store still fails after retries (logged on the
    ``agentauthz`` logger). Settling is no decision: it adds no audit event.

    Attributes:
        decision: the decision (see ``decision.admits``).
        call_id: the key agentauthz gave the call in the session (unique).
        external_id: the id its caller gave it (the model's tool call id), if any.
        session: the session it is recorded in, if any.
        arguments: the validated arguments of a guarded tool's call, as the
            policy evaluated them: run the tool with exactly these.
        approval: when only ``@approval("required")`` forbids denied the call
            and a granted approval would let it run: the request a person
            may grant (:class:`~agentauthz.session._approvals.ApprovalRequest`);
            else None.
        used_approval: the single-use approval the call used up, if any (for
            the application's records, e.g. an "approved" provenance label).
        action: the call's action name (None for a call decided without a session).
        result_label: the tool's own labelling of its results
            (``@authz.guard(provenance=...)``), if any.

    Example:
        >>> import agentauthz as az
        >>> authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[])
        >>> with authz.acting_as(az.EntityUID("User", "u")), authz.session("c") as s:
        ...     call = authz.begin_call(action="ping", resource=az.EntityUID("Tool", "ping"))
        ...     # ... the runtime runs the tool, and its after-hook reports:
        ...     call.complete()
        ...     failed = authz.begin_call(action="ping", resource=az.EntityUID("Tool", "ping"))
        ...     failed.fail()
        ...     s.state().calls
        True
        {'ping': 1}
    """

    def __init__(self, decision: Decision, *, call_id: str | None = None, session: Session | None = None,
                 reserved: bool = False, external_id: str | None = None, action: str | None = None,
                 result_label: ResultLabel | None = None) -> None:
        self.decision = decision
        self._call_id = call_id
        self.external_id = external_id
        self.action = action
        self.result_label = result_label
        self.arguments: dict[str, Any] = {}
        self.approval: ApprovalRequest | None = None
        self.used_approval: Approval | None = None
        self.session = session
        self._reserved = reserved and session is not None
        self._failed = False
        self._settled = False
        self._in_block = False

    @property
    def admits(self) -> bool:
        """Whether the call may go ahead (the decision admits it)."""
        return self.decision.admits

    @property
    def call_id(self) -> str:
        """The call's key: made when first read for a call outside a session (none is stored)."""
        if self._call_id is None:
            self._call_id = call_key()
        return self._call_id

    def fail(self) -> None:
        """The call failed: it never counts.

        Inside ``with call:`` this marks it, and leaving the block releases
        it; outside a block it releases the call now (see :meth:`release`).
        """
        self._failed = True
        if not self._in_block:
            self.release()

    def complete(self) -> bool:
        """Count the call now; True if this counted it (False too when the store kept failing)."""
        if self._settled or not self._reserved or self.session is None:
            return False
        session = self.session
        counted = self._settle("complete", lambda: session.store.complete(
            session.id, self.call_id, now=session.config.clock()))
        return bool(counted)

    def release(self) -> None:
        """Drop the call: it never counts (if the store fails, it stays in flight and counts)."""
        if self._settled or not self._reserved or self.session is None:
            return
        session = self.session
        self._settle("release", lambda: session.store.release(session.id, self.call_id))

    def record_result(self, result: Any) -> None:
        """Register what the tool returned as a source of the session, with the tool's result labels.

        Call it once the tool returned and before its result reaches the model
        (guarded tools and the integrations do). The values of the call's own
        arguments (and the identifiers in them) are not registered from its
        result: the model chose them, and a result echoing them must not lend
        them its label. A result that cannot be
        registered (the store failed) raises: it must not reach the model
        unlabelled. Does nothing without ``SessionConfig.provenance``, or for
        a call that was not admitted.

        Raises:
            InvalidValueError: a labelling function returned no labels.
            IdentityError: the session is another end user's.
        """
        session = self.session
        if session is None or not self.admits or self.action is None:
            return
        config = session.config.provenance
        if config is None:
            return
        labels = config.result_labels(self.action, result, self.result_label)
        if labels:
            # What the model put into the call never takes the result's label from it: a tool
            # labelled "trusted" that echoes its arguments would otherwise launder them.
            session._register(session.acting_for(), "result", result, labels, excluded=self.arguments)

    def _settle(self, step: str, attempt: Callable[[], Any]) -> Any:
        for tried in range(1, _SETTLE_ATTEMPTS + 1):
            try:
                outcome = attempt()
            except Exception:  # the tool already ran: keep its result, keep the call counting
                if tried == _SETTLE_ATTEMPTS:
                    _logger.exception("session %r: could not %s call %s after %d attempts; it stays "
                                      "in flight and keeps counting", self.session.id if self.session
                                      else None, step, self.call_id, tried)
                    return None
                time.sleep(_SETTLE_BACKOFF * tried)
            else:
                self._settled = True
                return outcome
        return None

    def __enter__(self) -> ToolCall:
        self._in_block = True
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: Any) -> None:
        self._in_block = False
        if kind is not None or self._failed:
            self.release()
        else:
            self.complete()

    def __repr__(self) -> str:
        return f"ToolCall({self.call_id!r}, allowed={self.decision.allowed})"


def call_record(call_id: str, action: EntityUID, resource: EntityUID, at: float,
                sums: Mapping[str, Number], labels: Iterable[str] = (),
                external_id: str | None = None, approval: Approval | None = None) -> CallRecord:
    """The record of a call about to be admitted (``approval``: the one it uses, kept if lasting)."""
    return CallRecord(call_id=call_id, action=action.id, resource=str(resource), at=at,
                      sums=dict(sums), labels=frozenset(labels), external_id=external_id,
                      approval=approval.key if approval is not None and approval.once else None)
