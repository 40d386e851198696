"""Entity providers: where the Authorizer finds the entities a request needs."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, overload, runtime_checkable

from agentauthz._model import _LONG_MAX, _LONG_MIN, MAX_VALUE_DEPTH, Entity, EntityUID, ExtensionValue

__all__ = ["EntityProvider", "StaticEntityProvider", "StoredEntities", "canonical_key", "referenced_uids"]


@runtime_checkable
class EntityProvider(Protocol):
    """Looks entities up by uid. Unknown uids are simply left out of the answer."""

    def get_entities(self, uids: Collection[EntityUID]) -> Sequence[Entity]:
        """Return the entities among ``uids`` that exist."""
        ...


class StaticEntityProvider:
    """An in-memory provider over a fixed list of entities.

    Example:
        >>> alice = Entity(uid=EntityUID("User", "alice"))
        >>> StaticEntityProvider([alice]).get_entities([alice.uid, EntityUID("User", "x")])
        [Entity(...)]
    """

    def __init__(self, entities: Iterable[Entity]) -> None:
        self._index: dict[EntityUID, Entity] = {entity.uid: entity for entity in entities}

    def get_entities(self, uids: Collection[EntityUID]) -> list[Entity]:
        """The known entities among ``uids``."""
        return [self._index[uid] for uid in uids if uid in self._index]

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[Entity]:
        return iter(self._index.values())


def referenced_uids(value: Any) -> Iterable[EntityUID]:
    """Every EntityUID inside a Python value (attributes, records, sets, context)."""
    if isinstance(value, EntityUID):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from referenced_uids(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from referenced_uids(item)
    elif isinstance(value, ExtensionValue) and value.args:
        for item in value.args:
            yield from referenced_uids(item)


def entity_slice(provider: EntityProvider, roots: Iterable[EntityUID],
                 known: Mapping[EntityUID, Entity] | None = None) -> list[Entity]:
    """The entities reachable from ``roots`` through parents and attribute references.

    ``known`` entities (given with the request) are used as they are and not fetched.
    """
    found: dict[EntityUID, Entity] = dict(known or {})
    seen: set[EntityUID] = set()
    frontier = [uid for uid in roots]
    while frontier:
        wanted = [uid for uid in dict.fromkeys(frontier) if uid not in seen]
        seen.update(wanted)
        missing = [uid for uid in wanted if uid not in found]
        for entity in provider.get_entities(missing) if missing else ():
            found.setdefault(entity.uid, entity)
        frontier = []
        for uid in wanted:
            reached = found.get(uid)
            if reached is None:
                continue
            frontier.extend(reached.parents)
            frontier.extend(referenced_uids(reached.attrs))
            if reached.tags:
                frontier.extend(referenced_uids(reached.tags))
    return [found[uid] for uid in seen if uid in found] + [
        entity for uid, entity in found.items() if uid not in seen
    ]


#: Levels of parents the entities given with one call may form among themselves. Cedar works out
#: every entity's ancestors when it parses entities, at a cost growing faster than the chain (a
#: chain of 3,000 given entities took seconds); Verified Permissions allows an entity 99
#: transitive parents per request, so 100 levels is what both engines accept.
MAX_GIVEN_DEPTH = 100


def given_depth(given: Mapping[EntityUID, Entity], limit: int = MAX_GIVEN_DEPTH) -> int:
    """The longest chain of parents among ``given`` (an entity with no given parent is 1 deep).

    Only parents that are themselves in ``given`` count; a cycle is not followed
    round. Counting stops past ``limit``: ``limit + 1`` means "too deep".

    Example:
        >>> chain = [Entity(uid=EntityUID("G", str(i)), parents=[EntityUID("G", str(i + 1))])
        ...          for i in range(5)]
        >>> given_depth({entity.uid: entity for entity in chain})
        5
        >>> given_depth({entity.uid: entity for entity in chain}, limit=3)
        4
    """
    if not given:
        return 0
    if {parent for entity in given.values() for parent in entity.parents}.isdisjoint(given):
        return 1  # the usual case: given entities hang from stored ones
    depth: dict[EntityUID, int] = {}  # 0 while an entity is on the walk's path
    deepest = 0
    for root in given:
        if root in depth:
            continue
        depth[root] = 0
        # Frames of the walk: [entity, its parents still to visit, longest chain above it so far].
        path: list[list[Any]] = [[root, iter(given[root].parents), 1]]
        while path:
            frame = path[-1]
            for parent in frame[1]:
                if parent not in given:
                    continue
                known = depth.get(parent)
                if known is None:
                    if len(path) >= limit:  # the path with this parent is already past the limit
                        return limit + 1
                    depth[parent] = 0
                    path.append([parent, iter(given[parent].parents), 1])
                    break
                frame[2] = max(frame[2], 1 + known)  # a cycle back onto the path adds nothing
                if len(path) - 1 + frame[2] > limit:
                    return limit + 1
            else:
                path.pop()
                depth[frame[0]] = frame[2]
                deepest = max(deepest, frame[2])
                if path:
                    below = path[-1]
                    below[2] = max(below[2], 1 + frame[2])
                    if len(path) - 1 + below[2] > limit:
                        return limit + 1
    return deepest


# -- stored entities: Cedar JSON kept once, an Entity built on first access -------------------------

#: A uid as a plain ``(type, id)`` pair: the key of the stored index (cheaper than an EntityUID).
UidKey = tuple[str, str]

_ENTITY_KEYS = frozenset({"uid", "attrs", "parents", "tags"})
_RESERVED = frozenset({"__entity", "__extn", "__expr"})
# Containers nested at most this deep count as canonical; deeper ones are checked by building the
# Entity (whose limit, MAX_VALUE_DEPTH, then decides), so this check never accepts more.
_CANONICAL_DEPTH = MAX_VALUE_DEPTH - 2


def canonical_key(item: Any) -> UidKey | None:
    """The ``(type, id)`` of a Cedar JSON entity already in the form :class:`Entity` writes, else None.

    Canonical means ``Entity.from_cedar(item).cedar == item``: ``uid``, ``attrs`` and
    ``parents`` present, ``{"type", "id"}`` uids, values Cedar JSON that converts
    to itself. None says only "not shown canonical": the caller then builds the
    Entity, which accepts or refuses the item as it always did. This check is the
    fast path of loading many entities, so it never accepts what ``Entity.from_cedar``
    would refuse or change.

    Example:
        >>> canonical_key({"uid": {"type": "User", "id": "a"}, "attrs": {}, "parents": []})
        ('User', 'a')
        >>> canonical_key({"uid": {"type": "User", "id": "a"}}) is None  # attrs and parents left out
        True
    """
    if type(item) is not dict or not _ENTITY_KEYS.issuperset(item):
        return None
    key = _uid_key(item.get("uid"))
    attrs = item.get("attrs")
    parents = item.get("parents")
    if key is None or type(attrs) is not dict or type(parents) is not list:
        return None
    if not _canonical_record(attrs, 0):
        return None
    for parent in parents:
        if _uid_key(parent) is None:
            return None
    if "tags" in item and (type(item["tags"]) is not dict or not _canonical_record(item["tags"], 0)):
        return None
    return key


def _uid_key(value: Any) -> UidKey | None:
    if type(value) is not dict or len(value) != 2:
        return None
    kind, name = value.get("type"), value.get("id")
    if type(kind) is not str or not kind or type(name) is not str:
        return None
    return kind, name


def _canonical_record(record: dict[str, Any], depth: int) -> bool:
    if not _RESERVED.isdisjoint(record):
        return False
    for value in record.values():
        kind = type(value)
        if kind is str or kind is bool:
            continue
        if kind is int:
            if not _LONG_MIN <= value <= _LONG_MAX:
                return False
            continue
        if not _canonical_value(value, depth + 1):
            return False
    return True


def _canonical_value(value: Any, depth: int) -> bool:
    kind = type(value)
    if kind is str or kind is bool:
        return True
    if kind is int:
        return bool(_LONG_MIN <= value <= _LONG_MAX)
    if depth > _CANONICAL_DEPTH:
        return False
    if kind is list:
        return all(_canonical_value(item, depth + 1) for item in value)
    if kind is not dict:
        return False  # null, floats: Entity.from_cedar says why
    if len(value) == 1 and "__entity" in value:
        return _uid_key(value["__entity"]) is not None
    if len(value) == 1 and "__extn" in value:
        body = value["__extn"]
        if type(body) is not dict or type(body.get("fn")) is not str or len(body) != 2:
            return False
        if "arg" in body:
            return _canonical_value(body["arg"], depth + 1)
        args = body.get("args")
        return type(args) is list and all(_canonical_value(item, depth + 1) for item in args)
    return _canonical_record(value, depth)


class StoredEntities(Sequence[Entity]):
    """The entities of a store, kept once as their Cedar JSON; each :class:`Entity` is built on first use.

    A store of a million entities would otherwise hold the graph twice in Python
    (an ``Entity`` with its attributes as Python values and as Cedar JSON) besides
    cedarpy's own. The index holds positions by type, then id (the strings of the
    parsed JSON: no object is made per entity). Entities built are kept, so each
    is built once.

    Args:
        cedar: canonical Cedar JSON of each entity (see :func:`canonical_key`), read-only.
        positions: the position of each uid in ``cedar``, by type then id.
        built: entities already built, by position (those a caller gave, or that were checked).
        duplicate: the first uid found twice, as ``(position, first position)``, for the loader to refuse.
        rewritten: whether some entity was read in another form than its canonical JSON.

    Example:
        >>> stored = StoredEntities.of([Entity(uid=EntityUID("User", "a"))])
        >>> stored.get(EntityUID("User", "a")).uid.id, len(stored), stored.get(EntityUID("User", "b"))
        ('a', 1, None)
    """

    __slots__ = ("_built", "_cedar", "_positions", "by_uid", "duplicate", "rewritten")

    def __init__(self, cedar: list[dict[str, Any]], positions: dict[str, dict[str, int]],
                 built: dict[int, Entity] | None = None,
                 duplicate: tuple[int, int] | None = None, rewritten: bool = False) -> None:
        self._cedar = cedar
        self._positions = positions
        self._built: dict[int, Entity] = built if built is not None else {}
        self.duplicate = duplicate
        self.rewritten = rewritten
        self.by_uid: Mapping[EntityUID, Entity] = _ByUid(self)

    @classmethod
    def of(cls, entities: Iterable[Entity]) -> StoredEntities:
        """The given entities (kept as they are: nothing is copied or rebuilt)."""
        given = list(entities)
        positions: dict[str, dict[str, int]] = {}
        duplicate = None
        for position, entity in enumerate(given):
            of_type = positions.get(entity.uid.type)
            if of_type is None:
                of_type = positions[entity.uid.type] = {}
            first = of_type.setdefault(entity.uid.id, position)
            if first != position and duplicate is None:
                duplicate = (position, first)
        return cls([entity.cedar for entity in given], positions, dict(enumerate(given)), duplicate)

    @classmethod
    def from_json(cls, data: list[Any], problem: Any) -> StoredEntities:
        """The entities of a parsed JSON array, checked as :meth:`Entity.from_cedar` checks them.

        Items already canonical are kept as they are; any other is built as an
        Entity (its Cedar JSON kept instead), and one that cannot be is refused.

        Args:
            data: the parsed array.
            problem: called with the position and the error (any exception) of an item
                that is no entity; it returns the exception to raise.
        """
        cedar: list[dict[str, Any]] = []
        positions: dict[str, dict[str, int]] = {}
        built: dict[int, Entity] = {}
        duplicate = None
        for position, item in enumerate(data):
            key = canonical_key(item)
            if key is None:
                try:
                    entity = Entity.from_cedar(item)
                except Exception as exc:
                    raise problem(position, exc) from exc
                built[position] = entity
                item = entity.cedar
                key = (entity.uid.type, entity.uid.id)
            cedar.append(item)
            of_type = positions.get(key[0])
            if of_type is None:
                of_type = positions[key[0]] = {}
            first = of_type.setdefault(key[1], position)
            if first != position and duplicate is None:
                duplicate = (position, first)
        return cls(cedar, positions, built, duplicate, rewritten=bool(built))

    @property
    def cedar(self) -> Sequence[dict[str, Any]]:
        """The Cedar JSON of every entity, in load order (shared: read-only by convention)."""
        return self._cedar

    def document(self) -> str:
        """The entities as one Cedar JSON document, ordered by uid and keys sorted (equal content,
        equal text: what the store's fingerprint hashes, and what cedarpy parses)."""
        ordered = [self._cedar[of_type[name]] for kind, of_type in sorted(self._positions.items())
                   for name in sorted(of_type)]
        return json.dumps(ordered, sort_keys=True)

    def key_of(self, position: int) -> UidKey:
        """The ``(type, id)`` of the entity at ``position``."""
        uid = self._cedar[position]["uid"]
        return uid["type"], uid["id"]

    def parent_keys(self) -> Iterator[tuple[UidKey, list[UidKey]]]:
        """Each entity's ``(type, id)`` with its parents', read from the JSON (no Entity built)."""
        for item in self._cedar:
            uid = item["uid"]
            yield (uid["type"], uid["id"]), [(parent["type"], parent["id"]) for parent in item["parents"]]

    def position(self, uid: EntityUID) -> int | None:
        """Where the entity with this uid is, or None."""
        of_type = self._positions.get(uid.type)
        return None if of_type is None else of_type.get(uid.id)

    def get(self, uid: EntityUID) -> Entity | None:
        """The stored entity with this uid, or None."""
        position = self.position(uid)
        return None if position is None else self._entity(position)

    def _entity(self, position: int) -> Entity:
        entity = self._built.get(position)
        if entity is None:
            # Canonical JSON (checked at load) always builds; concurrent builders agree.
            entity = self._built.setdefault(position, Entity.from_cedar(self._cedar[position]))
        return entity

    def __len__(self) -> int:
        return len(self._cedar)

    @overload
    def __getitem__(self, index: int) -> Entity: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Entity, ...]: ...

    def __getitem__(self, index: int | slice) -> Entity | tuple[Entity, ...]:
        if isinstance(index, slice):
            return tuple(self._entity(position) for position in range(len(self._cedar))[index])
        if index < 0:
            index += len(self._cedar)
        if not 0 <= index < len(self._cedar):
            raise IndexError("stored entity index out of range")
        return self._entity(index)

    def __iter__(self) -> Iterator[Entity]:
        for position in range(len(self._cedar)):
            yield self._entity(position)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (StoredEntities, tuple, list)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StoredEntities({len(self)} entities)"


class _ByUid(Mapping[EntityUID, Entity]):
    """The stored entities by uid (a view: nothing is copied)."""

    __slots__ = ("_stored",)

    def __init__(self, stored: StoredEntities) -> None:
        self._stored = stored

    def __getitem__(self, uid: EntityUID) -> Entity:
        entity = self._stored.get(uid) if isinstance(uid, EntityUID) else None
        if entity is None:
            raise KeyError(uid)
        return entity

    def get(self, uid: EntityUID, default: Any = None) -> Any:
        entity = self._stored.get(uid) if isinstance(uid, EntityUID) else None
        return default if entity is None else entity

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, EntityUID) and self._stored.position(uid) is not None

    def __iter__(self) -> Iterator[EntityUID]:
        stored = self._stored
        for position in range(len(stored)):
            yield EntityUID(*stored.key_of(position))

    def __len__(self) -> int:
        return len(self._stored)
