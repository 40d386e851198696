"""Entity providers: where the Authorizer finds the entities a request needs."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from agentauthz._model import Entity, EntityUID, ExtensionValue

__all__ = ["EntityProvider", "StaticEntityProvider", "referenced_uids"]


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
