"""Which ``context.session`` facts the configuration produces, and which a schema or policy reads.

agentauthz fills ``context.session`` with what it records (see
:mod:`agentauthz.session._session`). A fact it does not record would reach a policy as
nothing (an optional attribute left out, a ``has`` test that is false) or, for
a declared total, as a zero no call ever adds to: a ``forbid`` over it never
fires and the limit it states is not enforced. So every fact a schema declares
or a policy reads must be one the configuration produces, or the Authorizer
refuses to decide with it (:class:`~agentauthz.ConfigurationError`) and
``validate_tools`` reports it with its location.

Produced facts:

* ``seen``, ``actions``, ``last_action``, ``last_actions``, ``approved``:
  always;
* ``calls.<action>`` and ``window_calls.<action>``: for every action (every
  call agentauthz admits is counted, so a count is exact, zero included);
* ``totals.<action>.<argument>``: only for the arguments the configuration
  sums: ``SessionConfig(sums=...)`` or a guard's ``sum_arguments``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cedarpy

from agentauthz._errors import ConfigurationError
from agentauthz._model import EntityUID
from agentauthz.engines.local import LocalEngine
from agentauthz.policy._store import Policy, PolicySnapshot
from agentauthz.session._session import (
    FIXED_ATTRIBUTES,
    FULL_SHAPE,
    KEYED_ATTRIBUTES,
    SchemaShapes,
    SessionShape,
)

if TYPE_CHECKING:
    from agentauthz.tools._spec import ToolSpec

__all__ = [
    "FactRead",
    "ProducedFacts",
    "SessionSchema",
    "action_name",
    "attributes_read",
    "declared_facts",
    "fixed_snapshot",
    "policy_reads",
    "provenance_problems",
    "schema_reads",
    "unproduced",
]

FactPath = tuple[str, ...]
"""A path below ``context.session``: ``("totals", "issue_refund", "amount")``."""

_RECORDED = (*sorted(FIXED_ATTRIBUTES), *KEYED_ATTRIBUTES)


@dataclass(frozen=True)
class FactRead:
    """A session fact a schema declares or a policy reads.

    Attributes:
        where: ``file:line`` of the policy, or the schema and the action declaring it.
        path: the fact, below ``context.session``.
    """

    where: str
    path: FactPath

    @property
    def name(self) -> str:
        """``context.session.<path>`` as a policy writes it."""
        return ".".join(("context.session", *self.path))


@dataclass(frozen=True)
class ProducedFacts:
    """The facts a configuration fills in ``context.session``.

    Attributes:
        sums: action name -> the arguments summed for it (``totals``); None
            when not known yet (tools register after the Authorizer is built),
            which leaves ``totals`` unchecked.

    Example:
        >>> facts = ProducedFacts.of([], {"issue_refund": ["amount"]})
        >>> facts.problem(("totals", "issue_refund", "amount")) is None
        True
        >>> print(facts.problem(("totals", "issue_refund", "fee")))
        nothing sums argument 'fee' of action 'issue_refund': add it to \
SessionConfig(sums={'issue_refund': ['fee']}) or to the tool's @authz.guard(sum_arguments=['fee'])
    """

    sums: Mapping[str, frozenset[str]] | None = None

    @classmethod
    def of(cls, tools: Iterable[ToolSpec], sums: Mapping[str, Sequence[str]]) -> ProducedFacts:
        """What tools (their ``sum_arguments``) and ``SessionConfig.sums`` produce."""
        found: dict[str, set[str]] = {}
        for spec in tools:
            if spec.sums:
                found.setdefault(action_name(spec.action), set()).update(spec.sums)
        for action, arguments in sums.items():
            found.setdefault(action_name(action), set()).update(arguments)
        return cls({action: frozenset(arguments) for action, arguments in found.items()})

    def problem(self, path: FactPath) -> str | None:
        """Why the configuration never fills ``context.session.<path>`` (None: it does)."""
        head = path[0]
        if head in FIXED_ATTRIBUTES or head in ("calls", "window_calls"):
            return None
        if head != "totals":
            return f"agentauthz records no session fact {head!r} (it records {', '.join(_RECORDED)})"
        if self.sums is None or len(path) < 2:
            return None
        action, arguments = path[1], self.sums.get(path[1], frozenset())
        if len(path) >= 3 and path[2] not in arguments:
            return (f"nothing sums argument {path[2]!r} of action {action!r}: add it to "
                    f"SessionConfig(sums={{{action!r}: [{path[2]!r}]}}) or to the tool's "
                    f"@authz.guard(sum_arguments=[{path[2]!r}])")
        if not arguments:
            return (f"nothing sums an argument of action {action!r}: name them in "
                    f"SessionConfig(sums={{{action!r}: [...]}}) or the tool's "
                    "@authz.guard(sum_arguments=[...])")
        return None


def action_name(action: str | EntityUID) -> str:
    """The action's name (its id): ``'App::Action::"pay"'`` and ``"pay"`` are both ``"pay"``."""
    if isinstance(action, EntityUID):
        return action.id
    return EntityUID.parse(action).id if '::"' in action else action


def unproduced(reads: Iterable[FactRead], produced: ProducedFacts,
               declared: frozenset[FactPath] | None = None) -> list[str]:
    """One ``where: message`` problem per read of a fact no request carries.

    Args:
        reads: the facts read.
        produced: what the configuration fills.
        declared: with a schema, the facts it declares (:func:`declared_facts`):
            agentauthz cuts the record to them, so a fact it declares for no
            action never reaches a policy either.

    Example:
        >>> reads = [FactRead("policies.cedar:4", ("totals", "grant", "seats"))]
        >>> unproduced(reads, ProducedFacts.of([], {}))[0].split(":")[:3]
        ['policies.cedar', '4', ' context.session.totals.grant.seats is never filled']
    """
    problems = []
    for read in reads:
        reason = produced.problem(read.path)
        if reason is None and declared is not None and read.path not in declared:
            reason = ("the schema declares it in no action's context.session, so no request carries it "
                      "(agentauthz schema generate declares every fact the configuration fills)")
        if reason is not None:
            problems.append(f"{read.where}: {read.name} is never filled: {reason}")
    return problems


class SessionSchema:
    """The session shapes and the fact reads of one policy store version.

    The Authorizer keeps one per store version and checks it against what its
    configuration produces before it builds a ``context.session``.

    Args:
        key: what identifies the version (the store's fingerprint).
        schema: the schema shaping ``context.session``, if any.
        source: where the schema comes from, for messages.
        policies: the policies whose reads are checked.

    Example:
        >>> known = SessionSchema(None, None, "", [])
        >>> known.check(ProducedFacts())
        >>> known.shape(EntityUID("Action", "a")) is FULL_SHAPE
        True
    """

    def __init__(self, key: object, schema: str | Mapping[str, Any] | None, source: str,
                 policies: Iterable[Policy]) -> None:
        self.key = key
        self.shapes = SchemaShapes(schema) if schema is not None else None
        self.declared: frozenset[FactPath] | None = None
        schema_facts: list[FactRead] = []
        if self.shapes is not None:
            schema_facts, self.declared = schema_reads(self.shapes, source), declared_facts(self.shapes)
        self.reads = (*schema_facts, *policy_reads(policies))
        self._passed: ProducedFacts | None = None

    def check(self, produced: ProducedFacts) -> None:
        """Refuse a configuration that leaves a fact read here unfilled.

        Raises:
            ConfigurationError: naming each fact, where it is read, and what would fill it.
        """
        if produced == self._passed:
            return
        problems = unproduced(self.reads, produced, self.declared)
        if problems:
            raise ConfigurationError(
                "context.session facts are read that the session configuration never fills "
                "(Authorizer.validate_tools() lists them too): " + "; ".join(problems))
        self._passed = produced

    def shape(self, action: EntityUID) -> SessionShape | None:
        """What ``context.session`` the action declares (:data:`FULL_SHAPE` without a schema)."""
        return FULL_SHAPE if self.shapes is None else self.shapes.shape(action)


# -- what a schema declares -------------------------------------------------------------------


def schema_reads(schema: str | Mapping[str, Any] | SchemaShapes, source: str) -> list[FactRead]:
    """The session facts each action of a schema declares in ``context.session``.

    Example:
        >>> [r.name for r in schema_reads('entity U; type Session = { risk: Long };'
        ...     'action a appliesTo { principal: U, resource: U, context: { session?: Session } };',
        ...     "schema.cedarschema")]
        ['context.session.risk']
    """
    shapes = schema if isinstance(schema, SchemaShapes) else SchemaShapes(schema)
    declaring: dict[FactPath, list[EntityUID]] = {}
    for action, shape in shapes.declared():
        paths: list[FactPath] = [(name,) for name in shape.attributes or () if name != "totals"]
        paths += [("totals", total, argument)
                  for total, arguments in (shape.totals or {}).items() for argument in arguments]
        for path in paths:
            declaring.setdefault(path, []).append(action)
    reads = []
    for path, actions in sorted(declaring.items()):
        more = f" and {len(actions) - 1} more" if len(actions) > 1 else ""
        reads.append(FactRead(f"{source}: declared for action {actions[0]}{more}", path))
    return reads


def declared_facts(schema: str | Mapping[str, Any] | SchemaShapes) -> frozenset[FactPath]:
    """Every session fact (and each of its prefixes) some action of the schema declares.

    Example:
        >>> sorted(declared_facts('entity U; type Session = { calls: { a: Long } };'
        ...     'action a appliesTo { principal: U, resource: U, context: { session?: Session } };'))
        [('calls',), ('calls', 'a')]
    """
    shapes = schema if isinstance(schema, SchemaShapes) else SchemaShapes(schema)
    found: set[FactPath] = set()
    for _, shape in shapes.declared():
        found.update((name,) for name in shape.attributes or ())
        for name in ("calls", "window_calls"):
            found.update((name, key) for key in getattr(shape, name) or ())
        for total, arguments in (shape.totals or {}).items():
            found.add(("totals", total))
            found.update(("totals", total, argument) for argument in arguments)
    return frozenset(found)


# -- what policies read -----------------------------------------------------------------------


def policy_reads(policies: Iterable[Policy]) -> list[FactRead]:
    """The ``context.session`` paths each policy reads (``.`` or ``has``), longest paths only.

    A path reached through ``if ... then context.session else ...`` counts too;
    Cedar has no other way to name a record attribute.

    Example:
        >>> from agentauthz.policy._store import PolicyStore
        >>> store = PolicyStore.from_text('forbid(principal, action, resource) when {'
        ...     ' context has session && context.session.totals.grant.seats > 10 };')
        >>> [r.name for r in policy_reads(store.policies)]
        ['context.session.totals.grant.seats']
    """
    reads: list[FactRead] = []
    for policy in policies:
        if "session" not in policy.text and "\\u" not in policy.text:  # most never name it (escapes may)
            continue
        try:
            document = json.loads(cedarpy.policies_to_json_str(policy.text))
        except (ValueError, TypeError):  # the store parsed it; nothing to add
            continue
        paths = {path[1:] for path in _context_paths_read(document)
                 if len(path) > 1 and path[0] == "session"}
        longest = {path for path in paths
                   if not any(other[:len(path)] == path and other != path for other in paths)}
        reads.extend(FactRead(policy.location, path) for path in sorted(longest))
    return reads


def provenance_problems(policies: Iterable[Policy], tracked: Iterable[str] | None) -> list[str]:
    """One ``where: message`` per policy reading ``context.provenance`` that no request would carry.

    A ``forbid`` whose condition reads an attribute the request lacks errs, and
    an erring policy does not apply: the rule would silently never refuse. So a
    policy that reads ``context.provenance`` or ``context.provenance_all`` needs
    ``SessionConfig.provenance`` (``tracked`` is its ``tools``; None: not set),
    and one scoped to actions (``action == ...``, ``action in [...]``) needs
    each of them tracked. A policy that tests ``context has provenance`` (or
    ``provenance_all``) says itself what applies without it, and is left alone.

    Example:
        >>> from agentauthz.policy._store import PolicyStore
        >>> store = PolicyStore.from_text('forbid(principal, action == Action::"pay", resource) when {'
        ...     ' !context.provenance.to.contains("user") };')
        >>> provenance_problems(store.policies, {"pay"}), len(provenance_problems(store.policies, {"send"}))
        ([], 1)
    """
    names = None if tracked is None else set(tracked)
    problems = []
    for policy in policies:
        if "provenance" not in policy.text:
            continue
        try:
            document = json.loads(cedarpy.policies_to_json_str(policy.text))
        except (ValueError, TypeError):  # the store parsed it; nothing to add
            continue
        for body in (document.get("staticPolicies") or {}).values():
            if not any(path and path[0] in ("provenance", "provenance_all")
                       for path in _context_paths_read(body.get("conditions"))):
                continue
            if _tests_context_has(body.get("conditions"), ("provenance", "provenance_all")):
                continue
            if names is None:
                problems.append(f"{policy.location}: reads context.provenance, but SessionConfig.provenance "
                                "is not set: no request carries it, and the policy never applies")
                continue
            untracked = sorted(set(_scoped_actions(body.get("action"))) - names) if "*" not in names else []
            if untracked:
                problems.append(f"{policy.location}: reads context.provenance for action(s) "
                                f"{', '.join(untracked)} that Provenance.tools does not track")
    return problems


def _tests_context_has(document: Any, names: tuple[str, ...]) -> bool:
    """Whether an EST tests ``context has <name>`` for one of ``names``."""
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, Mapping):
            test = node.get("has")
            if (isinstance(test, Mapping) and test.get("attr") in names
                    and test.get("left") == {"Var": "context"}):
                return True
            stack.extend(node.values())
    return False


def _scoped_actions(scope: Any) -> list[str]:
    """The action names a policy's action scope names (``==`` or ``in [...]``); none when unscoped."""
    if not isinstance(scope, Mapping):
        return []
    if scope.get("op") == "in" and "entities" in scope:
        entities = scope["entities"]
    else:
        entities = [scope.get("entity")] if scope.get("op") == "==" else []
    return [entity["id"] for entity in entities or ()
            if isinstance(entity, Mapping) and isinstance(entity.get("id"), str)]


def _context_paths_read(document: Any) -> set[FactPath]:
    """Every ``context.a.b...`` path an EST reads with ``.`` or ``has``."""
    found: set[FactPath] = set()
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, Mapping):
            continue
        if _access(node) is None:
            stack.extend(node.values())
            continue
        chain, bottom = _chain(node)
        found.update((*root, *chain) for root in _values_of(bottom))
        stack.append(bottom)
    return found


def _access(node: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for op in (".", "has"):
        body = node.get(op)
        if len(node) == 1 and isinstance(body, Mapping) and isinstance(body.get("attr"), str):
            return body
    return None


def _chain(node: Mapping[str, Any]) -> tuple[FactPath, Any]:
    """The attributes of ``x.a.b`` (or ``x.a has b``), outermost last, and ``x``."""
    body = _access(node)
    assert body is not None
    names = [body["attr"]]
    current = body.get("left")
    while isinstance(current, Mapping) and len(current) == 1 and isinstance(current.get("."), Mapping) \
            and isinstance(current["."].get("attr"), str):
        names.append(current["."]["attr"])
        current = current["."].get("left")
    return tuple(reversed(names)), current


def _values_of(expression: Any) -> Iterator[FactPath]:
    """The ``context`` paths ``expression`` may evaluate to: ``context``, ``context.a``, if-branches."""
    stack: list[tuple[Any, FactPath]] = [(expression, ())]
    while stack:
        node, below = stack.pop()
        if not isinstance(node, Mapping):
            continue
        if node.get("Var") == "context":
            yield below
            continue
        body = node.get(".")
        if len(node) == 1 and isinstance(body, Mapping) and isinstance(body.get("attr"), str):
            stack.append((body.get("left"), (body["attr"], *below)))
            continue
        branch = node.get("if-then-else")
        if len(node) == 1 and isinstance(branch, Mapping):
            stack.append((branch.get("then"), below))
            stack.append((branch.get("else"), below))


# -- which attributes of a context record the policies read ------------------------------------


def fixed_snapshot(engine: object) -> PolicySnapshot | None:
    """The store version that decides every request of ``engine``, when it is known and cannot change.

    Only the embedded engine over a store that cannot reload qualifies: what is
    worked out from that version's policies (which context attributes they read)
    then holds for the request when it is decided. A store that reloads could
    swap in a version reading more between building a request and deciding it.

    Example:
        >>> from agentauthz.policy._store import PolicyStore
        >>> store = PolicyStore.from_text("permit(principal, action, resource);")
        >>> fixed_snapshot(LocalEngine(store)) is store.snapshot, fixed_snapshot(object())
        (True, None)
    """
    if type(engine) is not LocalEngine:
        return None
    store = engine.store
    return None if store.reloadable else store.snapshot


def attributes_read(policies: Iterable[Policy], path: FactPath) -> frozenset[str] | None:
    """The attributes of the record ``context.<path>`` the policies read (``.`` or ``has``).

    None when a policy may use the record, or a record holding it, whole (an
    equality, a literal holding it), or cannot be read: every attribute counts then.

    Example:
        >>> from agentauthz.policy._store import PolicyStore
        >>> store = PolicyStore.from_text('forbid(principal, action, resource) when {'
        ...     ' context.guardrail.input.pii.contains("EMAIL") || context.guardrail.input has topics };')
        >>> sorted(attributes_read(store.policies, ("guardrail", "input")))
        ['pii', 'topics']
        >>> print(attributes_read(PolicyStore.from_text(
        ...     'forbid(principal, action, resource) when { context.guardrail == {} };').policies,
        ...     ("guardrail", "input")))
        None
    """
    found: set[str] = set()
    for policy in policies:
        if "context" not in policy.text:  # a variable's name has no escapes: no context, no reads
            continue
        try:
            document = json.loads(cedarpy.policies_to_json_str(policy.text))
        except Exception:  # unreadable here: assume it reads everything
            return None
        if not _reads(document, path, found):
            return None
    return frozenset(found)


def _reads(document: Any, path: FactPath, found: set[str]) -> bool:
    """Add the attributes of ``context.<path>`` an EST reads to ``found``; False if it may use it whole."""
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, Mapping):
            continue
        if node.get("Var") == "context" and len(node) == 1:
            return False  # the context itself as a value (``context == ...``): it holds the fact
        access = _accessed(node)
        if access is None:
            stack.extend(node.values())
            continue
        operator, body = access
        names = [body["attr"]]
        bottom = body.get("left")
        while (inner := _accessed(bottom)) is not None and inner[0] == ".":
            names.append(inner[1]["attr"])
            bottom = inner[1].get("left")
        names.reverse()
        for root in _values_of(bottom):
            read = (*root, *names)
            if read[:len(path)] == path and len(read) > len(path):
                found.add(read[len(path)])
            elif operator == "." and path[:len(read)] == read:
                return False  # ``context.guardrail.input`` (or above) as a value: compared whole
        stack.extend(_below(bottom))
    return True


def _below(bottom: Any) -> list[Any]:
    """What is left to walk of an access's operand once the context paths it may be are counted.

    A path to ``context`` is done; an ``if`` choosing between records leaves its
    condition and whatever its branches hold besides such paths (an attribute
    chain is followed down to what it reads from: an ``if`` there has a condition too).
    """
    left: list[Any] = []
    pending = [bottom]
    while pending:
        node = pending.pop()
        if node == {"Var": "context"}:
            continue
        access = _accessed(node)
        if access is not None and access[0] == ".":
            pending.append(access[1].get("left"))  # its paths were counted with the access above
            continue
        branch = node.get("if-then-else") if isinstance(node, Mapping) and len(node) == 1 else None
        if isinstance(branch, Mapping):
            left.append(branch.get("if"))
            pending.extend((branch.get("then"), branch.get("else")))
            continue
        left.append(node)
    return left


def _accessed(node: Any) -> tuple[str, Mapping[str, Any]] | None:
    """``(".", body)`` or ``("has", body)`` of an attribute access, else None."""
    if not isinstance(node, Mapping) or len(node) != 1:
        return None
    for operator in (".", "has"):
        body = node.get(operator)
        if isinstance(body, Mapping) and isinstance(body.get("attr"), str):
            return operator, body
    return None
