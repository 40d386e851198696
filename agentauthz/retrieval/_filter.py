"""Retrieval authorization: keep only the items the end user may read.

Items (documents, chunks, search hits) are mapped to Cedar resources by a
callable; each distinct resource is decided once, in batches, and the decision
applies to every item that maps to it. An item whose resource cannot be built
is dropped and counted: an unreadable label never lets an item through.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from agentauthz._model import Decision, Entity, EntityUID, Request, SharedRequests

__all__ = ["FilterResult", "ResourceOf", "RetrievalScope", "group_by_resource"]

T = TypeVar("T")
ResourceOf = Callable[[Any], "EntityUID | Entity | None"]


@dataclass(frozen=True)
class FilterResult(Generic[T]):
    """What a filter kept and removed.

    Attributes:
        allowed: the permitted items, in input order (at most the filter's ``limit``).
        denied: how many items were removed (denied, or no resource could be built).
        decisions: one decision per input item, in input order.
        unresolved: how many of the removed items had no buildable resource.
        withheld: how many permitted items were left out because ``limit``
            items were already kept (neither returned, nor recorded, nor screened).
    """

    allowed: list[T]
    denied: int
    decisions: tuple[Decision, ...] = ()
    unresolved: int = 0
    resources: tuple[EntityUID | None, ...] = field(default=(), repr=False)
    withheld: int = 0


@dataclass(frozen=True)
class RetrievalScope:
    """What the requests of one retrieval share, built once by the Authorizer.

    :meth:`Authorizer.filter` makes its requests with :meth:`request`, and the
    pre-filter compiler compiles with :meth:`unknown_resource_requests`: both
    see the same principal, action, bound entity and context, the bound
    session's ``context.session`` included.

    Attributes:
        principal: the bound end user.
        action: the resolved action.
        entities: the bound end user's entity, when one was bound.
        base: the request for a resource the context does not depend on (its
            resource is a placeholder).
        session_context: the context for a resource, when a session is bound
            and the action declares ``context.session``; None otherwise.
        named_resources: the resources whose context may differ from every
            other resource's (an approval names them): ``context.session.approved``.
    """

    principal: EntityUID
    action: EntityUID
    entities: tuple[Entity, ...]
    base: Request
    session_context: Callable[[EntityUID], dict[str, Any]] | None = None
    named_resources: tuple[EntityUID, ...] = ()

    def request(self, resource: EntityUID) -> Request:
        """The request deciding ``resource``."""
        if self.session_context is None:
            return self.base.replace(resource=resource)
        return Request(principal=self.principal, action=self.action, resource=resource,
                       context=self.session_context(resource))

    def requests(self, resources: list[EntityUID]) -> Sequence[Request]:
        """The requests deciding ``resources``, in order (built when read, when their context is shared)."""
        if self.session_context is None:
            return SharedRequests(self.base, resources)
        return [self.request(resource) for resource in resources]

    def unknown_resource_requests(self, unnamed: EntityUID) -> list[Request]:
        """One request per distinct context a resource may get (resource: a placeholder).

        ``unnamed`` stands for every resource no approval names; each named
        resource is tried as well. One request: the context is the same for
        every resource.
        """
        if self.session_context is None:
            return [self.base]
        found: dict[str, Request] = {}
        for resource in (unnamed, *self.named_resources):
            request = self.request(resource).replace(resource=self.principal)
            found.setdefault(json.dumps(request.cedar_context, sort_keys=True), request)
        return list(found.values())


@dataclass
class ResourceGroups:
    """Items grouped by their resource uid, ready for one decision per uid."""

    uids: list[EntityUID]
    entities: dict[EntityUID, Entity]
    item_uids: list[EntityUID | None]
    errors: dict[int, str]


def group_by_resource(
    items: Sequence[Any],
    resource: ResourceOf,
    stored: Callable[[list[EntityUID]], Mapping[EntityUID, Entity]] | None = None,
) -> ResourceGroups:
    """Build each item's resource; group items by uid; flag items that fail.

    Two items naming one uid with different entity content (metadata that
    disagrees, a spoofing attempt) are both failed: which content to trust
    cannot be decided here. When ``stored`` knows an entity for the uid, the
    item is decided on that stored entity and its own attributes are ignored:
    stored entities are authoritative, document metadata is only as
    trustworthy as its author.
    """
    uids: dict[EntityUID, None] = {}
    entities: dict[EntityUID, Entity] = {}
    item_uids: list[EntityUID | None] = []
    errors: dict[int, str] = {}
    conflicted: set[EntityUID] = set()
    for index, item in enumerate(items):
        try:
            built = resource(item)
        except Exception as exc:  # a label that cannot be read drops the item, never passes it
            built = None
            errors[index] = f"resource could not be built: {type(exc).__name__}"
        if built is None:
            errors.setdefault(index, "resource could not be built: no resource")
            item_uids.append(None)
            continue
        if type(built) is EntityUID:  # the common case first: isinstance of a pydantic model is slower
            uid = built
        elif isinstance(built, Entity):
            uid = built.uid
            known = entities.get(uid)
            if known is not None and known.cedar != built.cedar:
                conflicted.add(uid)
            entities.setdefault(uid, built)
        elif isinstance(built, EntityUID):
            uid = built
        else:
            errors[index] = f"resource callable returned {type(built).__name__}, not Entity/EntityUID"
            item_uids.append(None)
            continue
        uids[uid] = None
        item_uids.append(uid)
    if stored is not None and entities:
        # The engine (or the entity provider) supplies these; the items' versions are dropped.
        for uid in stored(list(entities)):
            entities.pop(uid, None)
            conflicted.discard(uid)
    if not conflicted:
        return ResourceGroups(uids=list(uids), entities=entities, item_uids=item_uids, errors=errors)
    for index, item_uid in enumerate(item_uids):
        if item_uid in conflicted:
            errors[index] = "items for one resource carry different attributes"
            item_uids[index] = None
    return ResourceGroups(
        uids=[uid for uid in uids if uid not in conflicted],
        entities={uid: e for uid, e in entities.items() if uid not in conflicted},
        item_uids=item_uids,
        errors=errors,
    )
