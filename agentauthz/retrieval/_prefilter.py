"""Pre-filters for retrieval: the store's policies, partially evaluated, as a vector-store filter.

:func:`compile_prefilter` asks Cedar which resources the bound end user could
``action`` by partially evaluating the store's policies with the resource
unknown and everything else as :meth:`Authorizer.filter` sends it (the same
scope builds both: principal, entity, context, the bound session's record).
The residual policies are translated into a small, neutral filter
expression over resource attributes (:class:`Prefilter.expression`), which
renders as an Amazon Bedrock Knowledge Base ``RetrievalFilter``, a Mongo-style
dict (Chroma, Pinecone, MongoDB) or a Python callable over document metadata.

The pre-filter is an optimization: it lets a vector store skip documents the
user can certainly not read, so that the ``k`` results fetched are mostly ones
the user may see, and every document it lets through is still decided by
:meth:`Authorizer.filter`. Only an :attr:`Prefilter.exact` one, rendered with
``to_bedrock(keys, exact=True)``, may stand in for that decision (Bedrock's
``retrieve_and_generate``, which nothing can post-filter).

Soundness: the filter never excludes a document that full authorization would
allow, under the metadata convention below. Where a policy condition cannot be
translated exactly it is over-approximated: inside a ``permit`` an unknown
sub-condition counts as *true*, a ``forbid`` is applied only as far as it is
translated exactly, and when nothing useful remains there is no pre-filter at
all. Errors follow the Authorizer: a permit whose condition errors (a missing
attribute, a type mismatch) does not apply; a forbid whose condition errors
denies (``policy_errors="deny"``, the default), so a document without a
metadata key a forbid reads is excluded, or, with ``policy_errors="skip"``,
the forbid does not apply (Cedar's semantics).

Metadata convention (how a document's metadata relates to its Cedar resource):

* The resource attribute ``a`` is built from the metadata key ``keys.get(a, a)``
  (``keys`` is the mapping given to ``to_bedrock`` / ``to_mongo`` /
  ``to_callable``); a missing key, or the value ``None``, is a missing attribute.
* Values keep their JSON kind: a string is a Cedar ``String``, an integer a
  ``Long``, a boolean a ``Bool``, a list a ``Set``, a dict a record. An
  entity-typed attribute (``resource.owner == principal``) holds the entity's
  *id* as a string (``"alice"`` for ``User::"alice"``); since the id alone does
  not name the type, comparisons with entities are used only where an
  over-approximation is sound (inside permits, never to exclude).
* Hierarchy (``resource in Folder::"x"``) is translated only when
  ``keys[ANCESTORS]`` names a metadata key holding the Cedar text of *every*
  ancestor of the resource, transitively (``['Folder::"x"', 'Folder::"root"']``);
  otherwise it is over-approximated.
* The Bedrock and Mongo renderings also assume each key holds one type, the one
  the policies use it with (a scalar where compared with ``==`` or ``<``, a list
  where read with ``.contains``), as a Cedar schema guarantees. The callable is
  exact for any metadata.

Translated: ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` between a top-level
resource attribute and a string, integer or boolean (values from the principal
and the context are filled in by Cedar); ``S.contains(resource.a)`` with a
literal set (``a in [...]``); ``resource.a.contains(v)``, ``containsAny``,
``containsAll``; ``resource has a``; boolean attributes; ``like`` (matched in
linear time by :func:`like_matches`); ``is`` (with
``resource_type``); ``resource in E`` (with the ancestors convention);
``&&``, ``||``, ``!``, ``if-then-else``. Everything else (nested attributes,
arithmetic, extension functions, tags, ``isEmpty``, comparisons between two
resource attributes) is over-approximated.

The expression and its algebra live in :mod:`agentauthz.retrieval._expr`, the
renderings in :mod:`~agentauthz.retrieval._dialects`, the metadata predicate in
:mod:`~agentauthz.retrieval._predicate` and the translation of residual
policies in :mod:`~agentauthz.retrieval._residuals`; the names above are
importable from here.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections import ChainMap
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import cedarpy

from agentauthz._entities import referenced_uids
from agentauthz._errors import AccessDenied, AuthzError, ConfigurationError
from agentauthz._model import Decision, Entity, EntityUID, Request
from agentauthz.policy._slicing import Slice
from agentauthz.policy._store import PolicySnapshot, truncate
from agentauthz.retrieval._dialects import Presence, bedrock_filter, mongo_filter
from agentauthz.retrieval._expr import (
    ANCESTORS,
    FALSE,
    TRUE,
    And,
    Comparison,
    Const,
    Contains,
    Expr,
    Has,
    In,
    InHierarchy,
    Like,
    Not,
    Or,
    all_of,
    any_of,
    negate,
    nnf,
    present_attributes,
    read_attributes,
    restricted,
)
from agentauthz.retrieval._predicate import MetadataPredicate, allow_all, deny_all, like_matches
from agentauthz.retrieval._residuals import UNKNOWN, Translator, capped

if TYPE_CHECKING:
    from agentauthz._authorizer import Authorizer
    from agentauthz.engines.local import LocalEngine
    from agentauthz.retrieval._filter import RetrievalScope

__all__ = [
    "ALWAYS_ALLOWED",
    "ALWAYS_DENIED",
    "ANCESTORS",
    "FALSE",
    "NO_PREFILTER",
    "TRUE",
    "And",
    "Comparison",
    "Const",
    "Contains",
    "Expr",
    "Has",
    "In",
    "InHierarchy",
    "Like",
    "Not",
    "Or",
    "Prefilter",
    "all_of",
    "any_of",
    "compile_prefilter",
    "like_matches",
    "negate",
]



@dataclass(frozen=True)
class Prefilter:
    """What a vector store may filter on before the documents are authorized.

    A pre-filter never excludes a document the end user may read. Unless it
    is :attr:`exact`, it may keep documents the user may not read: every
    document it lets through must then still be authorized with
    :meth:`Authorizer.filter` (the retrievers always do this). Only an exact
    pre-filter, rendered with ``to_bedrock(keys, exact=True)``, may stand in
    for authorization where nothing can be post-filtered.

    Attributes:
        expression: the filter over resource attributes; ``TRUE`` when there is
            nothing to filter on, ``FALSE`` when nothing can be allowed.
        always_allowed: Cedar allows the action on every resource: no filter needed.
        always_denied: no resource can be allowed: do not search at all.
        exact: the expression keeps exactly the documents the policies allow
            (the metadata convention of this module holding): the partial
            evaluation's upper and lower bounds met. True for the two short cuts;
            False for a pre-filter made by hand, for :data:`NO_PREFILTER` and
            wherever a condition was over-approximated.
        note: why there is no pre-filter, or why it is not exact (for logs).

    Example:
        >>> import agentauthz as az
        >>> authz = az.Authorizer.from_text(
        ...     'permit(principal, action, resource) when { resource.dept == principal.dept };',
        ...     entities=[az.Entity(uid=az.EntityUID("User", "ann"), attrs={"dept": "hr"})])
        >>> with authz.acting_as(az.EntityUID("User", "ann")):
        ...     pre = compile_prefilter(authz, action="read")
        >>> print(pre)
        dept == "hr"
        >>> pre.to_bedrock(keys={"dept": "department"})
        {'equals': {'key': 'department', 'value': 'hr'}}
        >>> pre.to_mongo()
        {'dept': {'$eq': 'hr'}}
        >>> pre.to_callable()({"dept": "eng"})
        False
    """

    expression: Expr = TRUE
    always_allowed: bool = False
    always_denied: bool = False
    exact: bool = False
    note: str = field(default="", compare=False)

    def __str__(self) -> str:
        if self.always_denied:
            return "always denied"
        if self.always_allowed:
            return "always allowed"
        if self.expression == TRUE:
            return f"no pre-filter ({self.note})" if self.note else "no pre-filter"
        return str(self.expression)

    @property
    def attributes(self) -> frozenset[str]:
        """The resource attributes the expression reads.

        Example:
            >>> sorted(Prefilter(all_of(Comparison("a", "==", 1), Not(Has("b")))).attributes)
            ['a', 'b']
        """
        return read_attributes(self.expression)

    @property
    def attributes_present(self) -> frozenset[str]:
        """The attributes every document the expression keeps has (an atom on them must hold).

        Example:
            >>> pre = Prefilter(any_of(Comparison("a", "==", 1), all_of(Comparison("a", "==", 2), Has("b"))))
            >>> sorted(pre.attributes_present)
            ['a']
        """
        return present_attributes(self.expression)

    @property
    def filters(self) -> bool:
        """Whether there is a filter to apply (neither everything nor nothing)."""
        return not isinstance(self.expression, Const)

    def to_bedrock(
        self, keys: Mapping[str, str] | None = None, *, exact: bool = False
    ) -> dict[str, Any] | None:
        """The Bedrock Knowledge Base ``RetrievalFilter`` (for ``vectorSearchConfiguration.filter``).

        By default a superset: it keeps every document the user may read and
        perhaps others, for a caller that authorizes every result. With
        ``exact=True`` it keeps exactly the documents the policies allow, or
        raises: use that where the filter stands in for authorization
        (``retrieve_and_generate``).

        Args:
            keys: Cedar resource attribute -> metadata key (default: the same
                name); ``keys[ANCESTORS]`` names the ancestors list.
            exact: refuse anything but an exact filter.

        Returns:
            The filter. None only when no filter is needed: every document is
            allowed (:attr:`always_allowed`) or, without ``exact``, nothing
            narrows the search (authorize every result).

        Raises:
            AccessDenied: :attr:`always_denied`: no document can be allowed (do not search).
            ConfigurationError: ``exact`` and the filter would keep documents the
                policies do not allow (the message names the construct).

        Example:
            >>> Prefilter(Comparison("level", "<=", 3)).to_bedrock()
            {'lessThanOrEquals': {'key': 'level', 'value': 3}}
        """
        if not self._narrows(exact):
            return None
        return bedrock_filter(self.expression, keys or {}, strict=exact)

    def _narrows(self, exact: bool) -> bool:
        """Whether a store filter narrows the search (refusing what no filter may say)."""
        if self.always_denied:
            raise AccessDenied(Decision(allowed=False), subject="the retrieval")
        if self.always_allowed:
            return False
        if exact and not self.exact:
            raise ConfigurationError(
                "the policies do not translate exactly into a metadata filter: "
                + ("no pre-filter" if not self.filters else "a condition is over-approximated")
                + " (see Prefilter.note)")
        return bool(self.filters)

    def to_mongo(
        self, keys: Mapping[str, str] | None = None, *, ne_matches_missing: bool = True,
        presence: Presence = None, exact: bool = False,
    ) -> dict[str, Any] | None:
        """A Mongo-style filter (``$and``, ``$or``, ``$eq``, ``$ne``, ``$in``, ``$nin``, ``$gt``...).

        For MongoDB, Pinecone, Chroma and stores with the same query language.
        Array fields follow MongoDB: ``{"tags": {"$in": ["x"]}}`` matches a list
        holding ``"x"``. By default a superset: it keeps every document the
        user may read and perhaps others, for a caller that authorizes every
        result. With ``exact=True`` it keeps exactly the documents the policies
        allow, or raises.

        A missing key matters under ``policy_errors="deny"`` (the default): a
        guarded forbid (``resource has x && resource.x == v``) lets documents
        without ``x`` through, an unguarded one does not. Tell the filter what
        the store can say about missing keys:

        * ``presence="null"`` (MongoDB): ``{"x": {"$eq": null}}`` (missing or
          null) and ``{"x": {"$ne": null}}`` (present) test for the key;
        * ``presence="exists"`` (Pinecone; a store holding no null values):
          ``{"x": {"$exists": false}}`` and ``{"x": {"$exists": true}}``;
        * ``presence=None`` (Chroma, which has neither): conditions on a
          missing key are left out (the filter keeps more) or, with
          ``exact=True``, refused.

        Args:
            keys: Cedar resource attribute -> metadata key (default: the same name).
            ne_matches_missing: whether ``$ne`` / ``$nin`` match documents
                without the key (MongoDB, Chroma >= 0.5.12). Pass False for a
                store where they only match documents that have the key.
            presence: how the store tests that a key is there (see above).
            exact: refuse anything but an exact filter.

        Returns:
            The filter, or None when nothing narrows the search (without
            ``exact``) or every document is allowed.

        Raises:
            AccessDenied: :attr:`always_denied`: no document can be allowed (do not search).
            ConfigurationError: ``exact`` and the filter would keep documents the
                policies do not allow (the message names the construct).

        Example:
            >>> Prefilter(Contains("tags", "public")).to_mongo()
            {'tags': {'$in': ['public']}}
            >>> guarded = any_of(Not(Has("cls")), Comparison("cls", "!=", "secret"))  # a guarded forbid
            >>> pre = Prefilter(guarded, exact=True)
            >>> pre.to_mongo(exact=True)
            {'cls': {'$ne': 'secret'}}
            >>> pre.to_mongo(ne_matches_missing=False, presence="exists", exact=True)
            {'$or': [{'cls': {'$exists': False}}, {'cls': {'$ne': 'secret'}}]}
        """
        if not self._narrows(exact):
            return None
        if presence not in ("exists", "null", None):
            raise ConfigurationError(f'presence must be "exists", "null" or None, not {presence!r}')
        return mongo_filter(self.expression, keys or {}, ne_matches_missing=ne_matches_missing,
                            presence=presence, strict=exact)

    def to_callable(self, keys: Mapping[str, str] | None = None) -> Callable[[Mapping[str, Any]], bool]:
        """A predicate over a document's metadata, exact for any metadata.

        Metadata that is not a mapping, or a value the predicate cannot read,
        keeps the document (authorization then decides).

        Example:
            >>> keep = Prefilter(Comparison("owner", "==", EntityUID("User", "ann"))).to_callable()
            >>> keep({"owner": "ann"}), keep({"owner": "bob"}), keep({})
            (True, False, False)
        """
        if self.always_denied:
            return deny_all
        expression = nnf(self.expression)
        if expression == TRUE:
            return allow_all
        return MetadataPredicate(expression, dict(keys or {}))

    def restricted_to(self, attributes: Collection[str], *, ancestors: bool) -> Prefilter:
        """This pre-filter for resources that have only ``attributes`` (and parents only if ``ancestors``).

        For a mapping that builds a resource from a few metadata keys: every
        other attribute is missing (a condition on it is false), and without
        ancestors the resource descends from nothing. Exactness is kept.

        Example:
            >>> pre = Prefilter(any_of(Comparison("dept", "==", "hr"), Comparison("x", "==", 1)), exact=True)
            >>> print(pre.restricted_to({"dept"}, ancestors=False))
            dept == "hr"
        """
        if not self.filters:
            return self
        expression = restricted(self.expression, frozenset(attributes), ancestors)
        if expression == FALSE:
            return ALWAYS_DENIED  # even the superset keeps nothing
        if expression == TRUE and self.exact:
            return ALWAYS_ALLOWED
        return replace(self, expression=expression)

    def to_document_filter(self, keys: Mapping[str, str] | None = None) -> Callable[[Any], bool]:
        """:meth:`to_callable` for objects with a ``.metadata`` mapping (LangChain ``Document``).

        Suits ``InMemoryVectorStore``'s ``filter=``; an object without a
        metadata mapping is kept (authorization then decides).

        Example:
            >>> from types import SimpleNamespace
            >>> keep = Prefilter(Comparison("dept", "==", "hr")).to_document_filter()
            >>> keep(SimpleNamespace(metadata={"dept": "hr"}))
            True
        """
        predicate = self.to_callable(keys)

        def keep(document: Any) -> bool:
            metadata = getattr(document, "metadata", None)
            if not isinstance(metadata, Mapping):
                return not self.always_denied
            return predicate(metadata)

        return keep



#: The action is allowed on every resource: no filter.
ALWAYS_ALLOWED = Prefilter(TRUE, always_allowed=True, exact=True)
#: No resource can be allowed: make no retrieval call.
ALWAYS_DENIED = Prefilter(FALSE, always_denied=True, exact=True)
#: Nothing to filter on (the engine cannot evaluate partially, or nothing translates).
NO_PREFILTER = Prefilter(TRUE)


_POSITIONAL = re.compile(r"policy(\d+)")
_log = logging.getLogger("agentauthz")


def _never_applies(est: Mapping[str, Any]) -> bool:
    """Whether partial evaluation already decided a residual policy away: ``when { false }``.

    Most residuals of a store are these (the policies of other actions, other
    principals): skipping them before translation keeps the compile near the cost
    of the partial evaluation itself.
    """
    for condition in est.get("conditions", ()):
        body = condition.get("body") if isinstance(condition, Mapping) else None
        if isinstance(body, Mapping) and len(body) == 1 and "Value" in body:
            value = body["Value"]
            if value is False and condition.get("kind") == "when":
                return True
            if value is True and condition.get("kind") == "unless":
                return True
    return False


_encode = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode


def _residual_key(est: Mapping[str, Any]) -> str | None:
    """What the translation of a residual reads, as text: equal texts translate alike.

    Policies written from one pattern (one per folder, per group, per level) often
    leave the same residual for a user; it is translated once. None: not JSON.
    """
    try:
        return _encode([est.get("effect"), est.get("principal"), est.get("action"), est.get("resource"),
                        est.get("conditions")])
    except (TypeError, ValueError):
        return None


def _policy_order(item: tuple[str, Any]) -> tuple[int, str]:
    """Residuals in policy order (``policy2`` before ``policy10``), for a stable expression."""
    match = _POSITIONAL.fullmatch(item[0])
    return (int(match.group(1)), "") if match else (1 << 62, item[0])


def _translate(
    result: Any, translator: Translator, store_id: Callable[[str], str], *, forbid_errors_deny: bool
) -> Prefilter:
    permits_up: list[Expr] = []
    permits_low: list[Expr] = []
    forbids_up: list[Expr] = []
    forbids_low: list[Expr] = []
    # A false permit keeps nothing, a false forbid removes nothing: skipped before anything else.
    live = [item for item in result.residuals.items()
            if not (item[1].get("effect") in ("permit", "forbid") and _never_applies(item[1]))]
    translated: set[str] = set()
    for positional, est in sorted(live, key=_policy_order):
        key = _residual_key(est)
        if key is not None:
            if key in translated:
                continue  # the same bounds again: the conjunction or disjunction would drop them
            translated.add(key)
        try:
            bounds = capped(translator.policy(est))
        except RecursionError:
            bounds = UNKNOWN
        if est.get("effect") == "permit":
            permits_up.append(bounds.t_up)
            permits_low.append(bounds.t_low)
        elif est.get("effect") == "forbid" and forbid_errors_deny:
            # Authorizer(policy_errors="deny"): a forbid that errors denies, so it must be false.
            forbids_up.append(bounds.f_up)
            forbids_low.append(bounds.f_low)
        elif est.get("effect") == "forbid":
            # Cedar's semantics: a forbid that errors does not apply, so it must not be true.
            forbids_up.append(negate(bounds.t_low))
            forbids_low.append(negate(bounds.t_up))
        else:
            return Prefilter(note=f"unknown effect in policy {store_id(positional)}")
    # Allowed: some permit true (an erroring permit does not apply) and every forbid let through.
    # In negation normal form, where contradictions and tautologies across policies show.
    upper = nnf(all_of(any_of(*permits_up), *forbids_up))
    lower = nnf(all_of(any_of(*permits_low), *forbids_low))
    if upper == FALSE:
        return ALWAYS_DENIED
    if lower == TRUE:
        return ALWAYS_ALLOWED
    if upper == TRUE:
        return Prefilter(note="no policy condition translates to a filter")
    # The bounds meet: the filter keeps exactly the documents the policies allow.
    return Prefilter(upper, exact=upper == lower)


def compile_prefilter(
    authz: Authorizer,
    *,
    action: str | EntityUID,
    context: Mapping[str, Any] | None = None,
    resource_type: str | None = None,
    entities: Sequence[Entity] = (),
) -> Prefilter:
    """Compile the bound end user's policies for ``action`` into a pre-filter over resource attributes.

    The store's policies are partially evaluated with the resource unknown and
    everything else as :meth:`Authorizer.filter` would send it: the bound end
    user (with the bound entity, if any), ``context``, and in a bound session
    its ``context.session`` record (what was seen, calls, approvals). The
    residual conditions are translated. Where ``context.session.approved``
    differs between resources (an approval names one), the policies are
    compiled for each variant and the results joined (never exact).

    Engines without partial evaluation (AVP) give :data:`NO_PREFILTER`, as do
    failures of the partial evaluation: no filter is always sound, for a
    caller that authorizes every result; such a pre-filter is not
    :attr:`~Prefilter.exact`.

    Args:
        authz: the Authorizer (its engine, entities and bound session).
        action: the action of the retrieval, e.g. ``"read"``.
        context: the context the retrieval will be authorized with (without
            ``session``: the bound session adds it).
        resource_type: the Cedar type of the retrieved resources (e.g.
            ``"Document"``): lets ``is`` and hierarchy conditions translate,
            and limits the partial evaluation to the policies whose scope can
            match such a resource (in a store without template links).
        entities: entities the requests need beyond the Authorizer's own.

    Returns:
        The :class:`Prefilter`.

    Raises:
        IdentityError: no end user is bound.
        ConfigurationError: ``context`` sets ``session`` while a session is bound.

    Example:
        >>> import agentauthz as az
        >>> authz = az.Authorizer.from_text('''
        ...   permit(principal, action, resource) when { resource.level <= 2 };
        ...   forbid(principal, action, resource) when { resource.archived == true };''')
        >>> with authz.acting_as(az.EntityUID("User", "ann")):
        ...     pre = compile_prefilter(authz, action="read")
        >>> print(pre)
        level <= 2 && archived != true
        >>> pre.exact
        True
        >>> pre.to_bedrock()["andAll"][1]
        {'notIn': {'key': 'archived', 'value': [True]}}
    """
    from agentauthz.engines.local import LocalEngine

    engine = authz.engine
    if not isinstance(engine, LocalEngine):
        authz.current_principal()  # no end user: IdentityError, as on every path
        return Prefilter(note=f"the {getattr(engine, 'name', type(engine).__name__)} engine "
                              "has no partial evaluation")
    try:
        scope = authz._retrieval_scope(action, context)
    except AuthzError:
        raise
    except Exception:  # the session store failed (the refusal is audited): nothing may be let through
        return ALWAYS_DENIED
    # Stands for every resource no approval names (a uuid: no approval can name it).
    unnamed = EntityUID(resource_type or "Resource", f"agentauthz-unnamed-{uuid.uuid4()}")
    compiled: list[Prefilter] = []
    for request in scope.unknown_resource_requests(unnamed):
        try:
            compiled.append(_compile_local(authz, engine, request, scope, resource_type, entities))
        except Exception as exc:  # no pre-filter is always sound: authorization still decides
            return Prefilter(note=f"partial evaluation failed: {type(exc).__name__}: "
                                  f"{truncate(str(exc), 200)}")
    return _joined(compiled)


def _joined(compiled: Sequence[Prefilter]) -> Prefilter:
    """The pre-filter keeping what any of ``compiled`` keeps (each holds for some resources)."""
    if len(compiled) == 1:
        return compiled[0]
    if all(pre.always_denied for pre in compiled):
        return ALWAYS_DENIED
    if all(pre.always_allowed for pre in compiled):
        return ALWAYS_ALLOWED
    kept = [pre for pre in compiled if not pre.always_denied]
    expression = any_of(*(pre.expression for pre in kept))
    note = "the context differs between resources (context.session.approved)"
    # Exact only if every variant keeps the same documents: the choice then does not matter.
    exact = all(pre.exact and pre == kept[0] for pre in compiled)
    return Prefilter(expression, exact=exact, note="" if exact else note)


def _compile_local(
    authz: Authorizer,
    engine: Any,
    request: Request,
    scope: RetrievalScope,
    resource_type: str | None,
    entities: Iterable[Entity],
) -> Prefilter:
    given = [*scope.entities, *entities]
    roots = [request.principal, *referenced_uids(request.context)]
    slice_ = authz._entities_for_roots(roots, given)
    snapshot = engine.store.snapshot
    entity_set = engine.entity_set(snapshot, slice_)
    chosen = _scope_slice(engine, snapshot, request.principal, scope.action, resource_type, slice_)
    policy_set, store_id = (snapshot.policy_set, snapshot.store_id) if chosen is None else (
        chosen.policy_set, chosen.store_id)
    result = cedarpy.is_authorized_partial(
        {"principal": str(request.principal), "action": str(scope.action),
         "context": request.cedar_context},
        policy_set, entity_set, schema=snapshot.schema,
    )
    errors = list(result.diagnostics.errors)
    if (errors and authz.policy_errors == "deny"
            and not snapshot.only_permits_failed(errors, store_id=store_id)):
        # A forbid that failed here fails for every resource: filter() denies what it would allow.
        # Not exact: kept documents are decided again where the caller authorizes them.
        return Prefilter(note="a policy that could forbid the retrieval failed to evaluate")
    if result.decision is cedarpy.Decision.Allow:
        return ALWAYS_ALLOWED
    if result.decision is cedarpy.Decision.Deny:
        return ALWAYS_DENIED
    if not result.residuals:
        why = "; ".join(errors) or "no residual policies"
        return Prefilter(note=f"partial evaluation gave no decision: {truncate(why, 200)}")
    # The call's entities over the stored ones, without copying the stored index (O(E) per compile).
    known = ChainMap({entity.uid: entity for entity in slice_}, snapshot.entity_index)
    translator = Translator(principal=request.principal, action=scope.action,
                            context=request.cedar_context, resource_type=resource_type, entities=known)
    return _translate(result, translator, store_id, forbid_errors_deny=authz.policy_errors == "deny")


def _scope_slice(engine: LocalEngine, snapshot: PolicySnapshot, principal: EntityUID, action: EntityUID,
                 resource_type: str | None, given: Sequence[Entity]) -> Slice | None:
    """The policies whose scope can match the user's ``action`` on a ``resource_type`` (None: all).

    As in a decision (:mod:`agentauthz.policy._slicing`), a policy whose scope
    cannot match is false, without an error, for every such resource: leaving it
    out changes no residual, and partial evaluation then costs what the matching
    policies cost. Only with a resource type, and without template links (a
    request's links are picked by its resource, unknown here).
    """
    if resource_type is None or snapshot.links:
        return None
    try:
        index = engine.slice_index(snapshot)
        if index is None:
            return None
        # Only the resource's type is read; the given entities can add the principal's ancestors.
        placeholder = Request(principal, action, EntityUID(resource_type, "agentauthz-unnamed"))
        return index.select(placeholder, index.overlay({entity.uid: entity for entity in given}),
                            resource_known=False)
    except Exception:  # a slicing bug must cost speed, never a filter
        _log.exception("policy slicing failed; partially evaluating every policy")
        return None
