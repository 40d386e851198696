"""Sessions: what the agent already did and saw, as facts for Cedar policies.

A session is one conversation of an agent. While one is bound
(``with authz.session("conversation-42") as s:``, or an integration's config
key), agentauthz records

* the labels of every resource the agent was allowed to read (the retrieval
  filter records what it lets through; ``SessionConfig(reads=...)`` adds the
  resources of read tools),
* every tool call that was allowed and completed: counts per action, counts in
  a sliding time window, running sums of declared numeric arguments (the total
  refunded), and the last actions,
* approvals granted by the application or a human (:meth:`Session.approve`),

and every request decided in the session carries them as ``context.session``,
so rules that span a conversation are plain Cedar::

    forbid (principal, action == Action::"send_email", resource)
    when { context has session && context.session.seen.contains("confidential") &&
           !(context.input.to like "*@acme.example") };

The record (``agentauthz schema generate`` declares it as the stub's
``Session`` type, with one attribute per tool action)::

    type Session = {
      seen: Set<String>,          // labels of the resources read in the session
      actions: Set<String>,       // actions called (completed or in flight)
      last_action: String,        // the latest of them ("" before the first call)
      last_actions: Set<String>,  // actions among the last N calls (SessionConfig.history)
      approved: Bool,             // an approval of this session covers this request
      calls: { <action>: Long, ... },         // calls per tool action
      window_calls: { <action>: Long, ... },  // ... within SessionConfig.window (1 hour)
      totals: { <action>: { <argument>: Long | decimal } },  // running sums
    };

A request made with no session bound has no ``context.session``: policies test
``context has session``. A schema may declare any subset of these attributes
(and of the actions in ``calls``); the record sent is cut to what the
request's action declares, so the request always conforms.

Counting is exact and never counts a call twice: a call is *in flight* from the
moment it is allowed until its tool returns, and *completed* then. Decisions
see completed and in-flight calls (parallel calls cannot overrun a limit); a
call that is denied, raises, or reports failure is released and never counts;
completing is idempotent by call id, so a retried call id counts once and a
crash between the decision and the completion does not count the call at all
(its in-flight reservation expires after ``SessionConfig.lease``). Each
admission is a compare-and-swap on the session's version: if the session
changed while a call was being decided (a confidential document was read in a
parallel branch, another refund went out), the call is decided again.

Example:
    >>> import agentauthz as az
    >>> authz = az.Authorizer.from_text(
    ...     '@id("at-most-2") forbid(principal, action == Action::"delete", resource)'
    ...     ' when { context has session && context.session.calls has delete &&'
    ...     ' context.session.calls.delete >= 2 };'
    ...     '@id("all") permit(principal, action, resource);', audit=[])
    >>> @authz.guard
    ... def delete(name: str) -> str:
    ...     return f"deleted {name}"
    >>> with authz.acting_as(az.EntityUID("User", "alice")), authz.session("c-1") as s:
    ...     print(delete("a"), delete("b"))
    ...     try:
    ...         delete("c")
    ...     except az.AccessDenied as exc:
    ...         print(exc.decision.reasons)
    ...     print(s.state().calls)
    deleted a deleted b
    ('at-most-2',)
    {'delete': 2}
"""

from __future__ import annotations

import contextvars
import decimal as _decimal
import json
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from agentauthz._errors import ConfigurationError, InvalidValueError
from agentauthz._model import Decision, Entity, EntityUID, ExtensionValue, decimal, to_cedar_value
from agentauthz._session_store import (
    Approval,
    CallRecord,
    MemorySessionStore,
    Number,
    SessionSnapshot,
    SessionStore,
    SQLiteSessionStore,
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
    "current_session",
    "session_record_type",
]

SESSION_KEY = "agentauthz_session"
"""Default key of the session (an id or a :class:`Session`) in an integration's config."""

LabelsOf = str | Sequence[str] | Callable[[Entity], Iterable[str]]

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
            processes serve one conversation.
        labels: the resource attribute(s) whose values are the labels recorded
            in ``seen`` (a String or Set<String> attribute each), or a callable
            of the resource Entity returning its labels. Default ``"labels"``.
        window: length of the sliding window of ``window_calls``.
        history: how many of the latest calls ``last_actions`` covers.
        lease: how long a call stays in flight without completing before it
            stops counting (a crashed process's calls expire).
        sums: tool arguments to add up per action name, besides those the
            guards declare (``{"issue_refund": ["amount"]}``).
        reads: tool actions whose completed calls record their resource's
            labels in ``seen`` (``{"read_document"}``), like the retrieval filter.
        schema: the schema that shapes ``context.session`` when the engine
            has none of its own (Verified Permissions): text or JSON.
        clock: seconds since the epoch (tests pass a fake clock).
        max_attempts: decisions of one call before it is denied when its
            session keeps changing under it.
    """

    store: SessionStore | None = None
    labels: LabelsOf = "labels"
    window: timedelta = timedelta(hours=1)
    history: int = 10
    lease: timedelta = timedelta(minutes=15)
    sums: Mapping[str, Sequence[str]] = field(default_factory=dict)
    reads: Collection[str] = ()
    schema: str | Mapping[str, Any] | None = None
    clock: Callable[[], float] = time.time
    max_attempts: int = 200

    def __post_init__(self) -> None:
        if self.history < 0:
            raise ConfigurationError("SessionConfig.history must be 0 or more")
        if self.window <= timedelta(0) or self.lease <= timedelta(0):
            raise ConfigurationError("SessionConfig.window and .lease must be positive")
        if self.max_attempts < 1:
            raise ConfigurationError("SessionConfig.max_attempts must be at least 1")
        if self.store is not None and not isinstance(self.store, SessionStore):
            raise ConfigurationError(
                f"{type(self.store).__name__} does not implement the SessionStore protocol")


class Session:
    """One conversation's recorded facts; bound with ``authz.session(session_id)``.

    Attributes:
        id: the session id (the application's conversation id).
        store: where its facts live.
        config: the recording settings of the Authorizer that opened it.

    Example:
        >>> s = Session("c-9", MemorySessionStore())
        >>> _ = s.approve(action="issue_refund", resource=EntityUID("Order", "o-1"))
        >>> s.see("pii")
        >>> s.state().approvals[0].resource, sorted(s.state().seen)
        ('Order::"o-1"', ['pii'])
    """

    def __init__(self, session_id: str, store: SessionStore, config: SessionConfig | None = None) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise ConfigurationError("a session id must be a non-empty string")
        self.id = session_id
        self.store = store
        self.config = config or SessionConfig()

    def __repr__(self) -> str:
        return f"Session({self.id!r})"

    def approve(
        self,
        action: str | EntityUID,
        resource: EntityUID | Entity | None = None,
        *,
        arguments: Mapping[str, Any] | None = None,
        granted_by: str | None = None,
    ) -> Approval:
        """Approve calls of ``action`` on ``resource`` for the rest of the session.

        A request is approved (``context.session.approved``) when its action
        and resource are the approval's and its ``context.input`` holds every
        argument value the approval names. Call it from the application (a
        human clicked "approve"), never from model output.

        Args:
            action: the action name (``"issue_refund"``) or uid.
            resource: the resource; None approves any resource of the action.
            arguments: tool arguments the approval is limited to
                (``{"order_id": "o-1"}``), compared as Cedar values.
            granted_by: who approved, kept with the approval.

        Returns:
            The approval, for :meth:`revoke`.

        Example:
            >>> s = Session("c-1", MemorySessionStore())
            >>> s.approve("issue_refund", arguments={"order_id": "o-7"}).arguments
            '{"order_id":"o-7"}'
        """
        approval = Approval(
            action=_action_key(action),
            resource=_resource_text(resource) if resource is not None else None,
            arguments=_canonical(arguments or {}),
            granted_by=granted_by,
        )
        self.store.approve(self.id, approval)
        return approval

    def revoke(self, approval: Approval) -> bool:
        """Withdraw an approval; True if it was granted."""
        return self.store.revoke(self.id, approval)

    def see(self, *labels: str) -> None:
        """Record labels of data the application itself showed the agent."""
        for label in labels:
            if not isinstance(label, str):
                raise InvalidValueError(f"a label must be a string, not {type(label).__name__}")
        self.store.add_labels(self.id, labels)

    def state(self) -> SessionSnapshot:
        """What is recorded now (completed calls; in-flight ones in ``pending``)."""
        now = self.config.clock()
        return self.store.load(self.id, now=now, since=now - self.config.window.total_seconds(),
                               history=self.config.history)

    def facts(self) -> SessionFacts:
        """The facts decisions see now: completed and in-flight calls together."""
        return SessionFacts.of(self.state(), history=self.config.history)

    def clear(self) -> None:
        """Forget everything recorded for this session."""
        self.store.delete(self.id)


_current: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "agentauthz_session", default=None
)


def current_session() -> Session | None:
    """The session bound in this context (thread or task), if any."""
    return _current.get()


@contextmanager
def bind_session(session: Session) -> Iterator[Session]:
    """Bind ``session`` for the block (contextvar: thread- and task-safe)."""
    token = _current.set(session)
    try:
        yield session
    finally:
        _current.reset(token)


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
    def of(cls, snapshot: SessionSnapshot, *, history: int, exclude: str | None = None,
           since: float | None = None) -> SessionFacts:
        """Fold the in-flight calls (but ``exclude``, the call being decided) into the snapshot."""
        calls = dict(snapshot.calls)
        window = dict(snapshot.window_calls)
        totals = {action: dict(sums) for action, sums in snapshot.totals.items()}
        pending = [call for call in snapshot.pending if call.call_id != exclude]
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
        return cls(snapshot.seen, calls, window, totals, recent, snapshot.approvals)


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
        from agentauthz._schemajson import schema_json_text

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

    def _shape(self, action: EntityUID) -> SessionShape | None:
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
        session = (context.get("attributes") or {}).get("session")
        if not isinstance(session, Mapping):
            return None
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


def approval_covers(approval: Approval, action: EntityUID, resource: EntityUID,
                    context: Mapping[str, Any]) -> bool:
    """Whether ``approval`` covers a request (action, resource and the arguments it names)."""
    if approval.action not in (action.id, str(action)):
        return False
    if approval.resource is not None and approval.resource != str(resource):
        return False
    wanted = json.loads(approval.arguments)
    if not wanted:
        return True
    given = context.get("input")
    if not isinstance(given, Mapping):
        return False
    try:
        actual = to_cedar_value({key: given.get(key) for key in wanted}, decimal_floats=True)
    except InvalidValueError:
        return False
    return all(key in actual and actual[key] == value for key, value in wanted.items())


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


class ToolCall:
    """A decided tool call; recorded in the bound session when its block completes.

    ``with call:`` around running the tool: leaving the block normally counts
    the call (unless :meth:`fail` was called), an exception releases it. A
    denied call, or one made without a session, records nothing.

    Attributes:
        decision: the decision (see ``decision.admits``).
        call_id: the call's id in the session.
        session: the session it is recorded in, if any.
        arguments: the validated arguments of a guarded tool's call, as the
            policy evaluated them: run the tool with exactly these.
    """

    def __init__(self, decision: Decision, *, call_id: str, session: Session | None = None,
                 reserved: bool = False) -> None:
        self.decision = decision
        self.call_id = call_id
        self.arguments: dict[str, Any] = {}
        self.session = session
        self._reserved = reserved and session is not None
        self._failed = False
        self._settled = False

    @property
    def admits(self) -> bool:
        """Whether the call may go ahead (the decision admits it)."""
        return self.decision.admits

    def fail(self) -> None:
        """Mark the call failed: leaving the block releases it instead of counting it."""
        self._failed = True

    def complete(self) -> bool:
        """Count the call now; True if this counted it."""
        if self._settled or not self._reserved or self.session is None:
            return False
        self._settled = True
        session = self.session
        return session.store.complete(session.id, self.call_id, now=session.config.clock())

    def release(self) -> None:
        """Drop the call: it never counts."""
        if self._settled or not self._reserved or self.session is None:
            return
        self._settled = True
        self.session.store.release(self.session.id, self.call_id)

    def __enter__(self) -> ToolCall:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: Any) -> None:
        if kind is not None or self._failed:
            self.release()
        else:
            self.complete()

    def __repr__(self) -> str:
        return f"ToolCall({self.call_id!r}, allowed={self.decision.allowed})"


def call_record(call_id: str, action: EntityUID, resource: EntityUID, at: float,
                sums: Mapping[str, Number], labels: Iterable[str] = ()) -> CallRecord:
    """The record of a call about to be admitted."""
    return CallRecord(call_id=call_id, action=action.id, resource=str(resource), at=at,
                      sums=dict(sums), labels=frozenset(labels))
