"""Loading many stored entities (issue 18, row 3): each entity kept once, as Cedar JSON.

The store keeps the parsed JSON of ``entities.json`` and builds an ``Entity`` only
when one is used; cedarpy parses the file itself when every entity in it is
already canonical. These tests hold the fast path to what loading always did:
build every ``Entity`` with ``Entity.from_cedar`` (refusing what it refuses),
refuse a uid given twice, and have cedarpy parse the entities' JSON.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import cedarpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz._entities import StoredEntities, canonical_key
from agentauthz._model import MAX_VALUE_DEPTH
from agentauthz.policy._cedar_checks import entity_handle
from agentauthz.policy._messages import author_message
from tests.strategies import hostile_claims, stored_entity_items

SCHEMA = "entity Group; entity User in [Group] = { dept: String };\n" \
         "action read appliesTo { principal: User, resource: Group };\n"
PERMIT = 'permit(principal, action, resource) when { principal in Group::"eng" };'


def _store_dir(root: Path, entities: Any, *, schema: str | None = None) -> Path:
    (root / "p.cedar").write_text(PERMIT)
    if schema is not None:
        (root / "schema.cedarschema").write_text(schema)
    (root / "entities.json").write_text(entities if isinstance(entities, str) else json.dumps(entities))
    return root


def _reference(items: Any, schema: Any) -> tuple[str, Any]:
    """What loading did before the entities were kept as JSON: an Entity per item, then cedarpy."""
    if not isinstance(items, list):
        return "error", "entities.json: expected a JSON array of entities"
    entities = []
    for index, item in enumerate(items):
        try:
            entities.append(az.Entity.from_cedar(item))
        except az.AuthzError as exc:
            return "error", f"entities.json: entity #{index}: {author_message(str(exc))}"
    seen: dict[az.EntityUID, int] = {}
    for position, entity in enumerate(entities):
        if entity.uid in seen:
            return "error", (f"entities.json: entity #{position} {entity.uid}: the same entity uid appears "
                             f"more than once (first as #{seen[entity.uid]})")
        seen[entity.uid] = position
    try:
        entity_handle(entities, schema, "entities.json")
    except az.PolicyError as exc:
        return "error", str(exc)
    return "loaded", entities


def _unlocated(problem: str) -> str:
    """A problem without the line and column loading adds (the reference has no file to look in).

    Also without Cedar's reason why an entity does not conform: of several wrong
    attributes it names one, not always the same one.
    """
    problem = re.sub(r"(first nonconforming entity: #\d+ \S+?): .*\)$", r"\1)", problem)
    return re.sub(r"^entities\.json(?::\d+)*: ", "entities.json: ", problem)


def _graph(handle: Any) -> list[Any]:
    """The entities of a cedarpy handle in one order (parents are a set: cedarpy writes them in any order)."""
    def key(value: Any) -> str:
        return json.dumps(value, sort_keys=True)

    entities = [{**entity, "parents": sorted(entity.get("parents", []), key=key)}
                for entity in json.loads(str(handle))]
    return sorted(entities, key=lambda entity: key(entity["uid"]))


# -- the canonical check: never accepts what Entity.from_cedar would refuse or rewrite ------------


@settings(max_examples=200, deadline=None)
@given(stored_entity_items())
def test_an_item_called_canonical_is_exactly_the_json_its_entity_writes(item: Any) -> None:
    key = canonical_key(item)
    if key is None:
        return
    entity = az.Entity.from_cedar(item)  # must not raise
    assert entity.cedar == item
    assert key == (entity.uid.type, entity.uid.id)


@pytest.mark.parametrize("item", [
    {"uid": {"type": "User", "id": "a"}, "attrs": {"x": 1.5}, "parents": []},
    {"uid": {"type": "User", "id": "a"}, "attrs": {"x": None}, "parents": []},
    {"uid": {"type": "User", "id": "a"}, "attrs": {"x": 2**63}, "parents": []},
    {"uid": {"type": "User", "id": "a"}, "attrs": {"__entity": {"type": "User", "id": "b"}}, "parents": []},
    {"uid": {"type": "User", "id": "a"}, "attrs": {"r": {"__expr": "1"}}, "parents": []},
    {"uid": {"type": "User", "id": "a"}, "attrs": {}, "parents": [], "extra": 1},
    {"uid": {"type": "User", "id": "a"}, "attrs": {}, "parents": [], "tags": None},
    {"uid": {"__entity": {"type": "User", "id": "a"}}, "attrs": {}, "parents": []},
    {"uid": 'User::"a"', "attrs": {}, "parents": []},
    {"uid": {"type": "User", "id": "a"}},
    {"uid": {"type": "User", "id": "a"}, "attrs": {}, "parents": ['Group::"g"']},
])
def test_an_item_entity_from_cedar_refuses_or_rewrites_is_not_canonical(item: Any) -> None:
    assert canonical_key(item) is None


def test_values_nested_near_the_depth_limit_are_left_to_entity_from_cedar() -> None:
    value: Any = 1
    for _ in range(MAX_VALUE_DEPTH):
        value = [value]
    item = {"uid": {"type": "User", "id": "a"}, "attrs": {"deep": value}, "parents": []}
    assert canonical_key(item) is None


# -- loading: what the old loader accepted and refused, and nothing else -----------------------------


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(stored_entity_items(), max_size=6), st.booleans())
def test_loading_entities_accepts_and_refuses_exactly_as_building_each_entity_did(
        items: list[Any], with_schema: bool) -> None:
    schema_text = SCHEMA if with_schema else None
    schema = cedarpy.Schema.from_str(SCHEMA) if with_schema else None
    outcome, expected = _reference(items, schema)
    with tempfile.TemporaryDirectory() as folder:
        root = _store_dir(Path(folder), items, schema=schema_text)
        if outcome == "error":
            with pytest.raises(az.PolicyError) as info:
                az.PolicyStore.from_directory(root)
            assert _unlocated(str(info.value)) == _unlocated(expected)
            return
        store = az.PolicyStore.from_directory(root)
    assert list(store.entities) == expected
    assert len(store.snapshot.entity_index) == len(expected)
    for entity in expected:
        assert store.snapshot.entity_index[entity.uid] == entity
    assert _graph(store.snapshot.entity_set) == _graph(entity_handle(expected, schema, "entities.json"))


@settings(max_examples=60, deadline=None)
@given(hostile_claims())
def test_attributes_of_any_json_load_only_when_their_entity_builds(attrs: dict[str, Any]) -> None:
    item = {"uid": {"type": "User", "id": "a"}, "attrs": attrs, "parents": []}
    outcome, expected = _reference([item], None)
    with tempfile.TemporaryDirectory() as folder:
        root = _store_dir(Path(folder), [item])
        if outcome == "error":
            with pytest.raises(az.PolicyError):
                az.PolicyStore.from_directory(root)
            return
        assert list(az.PolicyStore.from_directory(root).entities) == expected


def test_a_duplicated_uid_is_refused_naming_both_positions(tmp_path: Path) -> None:
    items = [{"uid": {"type": "User", "id": str(i)}, "attrs": {}, "parents": []} for i in range(5)]
    items.append({"uid": {"__entity": {"type": "User", "id": "2"}}, "attrs": {}, "parents": []})
    with pytest.raises(az.PolicyError) as info:
        az.PolicyStore.from_directory(_store_dir(tmp_path, items))
    assert 'entities.json:1:' in str(info.value)
    assert 'entity #5 User::"2": the same entity uid appears more than once (first as #2)' in str(info.value)


def test_a_duplicated_key_inside_an_entity_is_read_as_python_reads_it(tmp_path: Path) -> None:
    # Cedar refuses a key given twice; Python keeps the last: the store decides on what Python read.
    text = '[{"uid": {"type": "User", "id": "a"}, "attrs": {"dept": "x", "dept": "eng"}, "parents": []}]'
    store = az.PolicyStore.from_directory(_store_dir(tmp_path, text))
    assert store.entities[0].attrs == {"dept": "eng"}
    assert json.loads(str(store.snapshot.entity_set))[0]["attrs"] == {"dept": "eng"}


def test_parents_that_are_not_stored_load_and_count_as_ancestors(tmp_path: Path) -> None:
    items = [{"uid": {"type": "User", "id": "a"}, "attrs": {}, "parents": [{"type": "Group", "id": "eng"}]}]
    store = az.PolicyStore.from_directory(_store_dir(tmp_path, items))
    authz = az.Authorizer(az.LocalEngine(store))
    decision = authz.authorize(principal=az.EntityUID("User", "a"), action="read",
                               resource=az.EntityUID("Group", "x"))
    raw = cedarpy.is_authorized({"principal": 'User::"a"', "action": 'Action::"read"',
                                 "resource": 'Group::"x"', "context": {}}, PERMIT, json.dumps(items))
    assert decision.allowed is (raw.decision == cedarpy.Decision.Allow) is True


def test_a_bad_entities_file_on_reload_leaves_the_loaded_version(tmp_path: Path) -> None:
    good = [{"uid": {"type": "User", "id": "a"}, "attrs": {"dept": "eng"}, "parents": []}]
    store = az.PolicyStore.from_directory(_store_dir(tmp_path, good, schema=SCHEMA))
    before = store.snapshot
    for bad in ([*good, *good], [{"uid": {"type": "User", "id": "b"}, "attrs": {"dept": 1}, "parents": []}],
                [{"uid": {"type": "User", "id": "b"}, "attrs": {"dept": 1.5}, "parents": []}], "[{"):
        (tmp_path / "entities.json").write_text(bad if isinstance(bad, str) else json.dumps(bad))
        with pytest.raises(az.PolicyError) as info:
            store.reload()
        assert str(info.value).startswith("entities.json")
        assert store.snapshot is before


def test_entities_are_built_when_used_and_then_kept(tmp_path: Path) -> None:
    items = [{"uid": {"type": "User", "id": str(i)}, "attrs": {"dept": "eng"}, "parents": []}
             for i in range(3)]
    store = az.PolicyStore.from_directory(_store_dir(tmp_path, items))
    stored = store.entities
    assert isinstance(stored, StoredEntities)
    assert list(stored.cedar) == items  # the parsed JSON, not a copy rebuilt from entities
    first = stored.get(az.EntityUID("User", "1"))
    assert first is stored[1] is store.snapshot.entity_index[az.EntityUID("User", "1")]
    assert az.EntityUID("User", "9") not in store.snapshot.entity_index
    assert stored.get(az.EntityUID("User", "9")) is None
    assert list(store.snapshot.entity_index) == [az.EntityUID("User", str(i)) for i in range(3)]
    assert stored[-1].uid.id == "2" and [entity.uid.id for entity in stored[:2]] == ["0", "1"]


def test_the_same_file_gives_the_same_fingerprint_and_a_changed_entity_another(tmp_path: Path) -> None:
    items = [{"uid": {"type": "User", "id": "a"}, "attrs": {"dept": "eng"}, "parents": []}]
    one = az.PolicyStore.from_directory(_store_dir(tmp_path, items))
    assert az.PolicyStore.from_directory(tmp_path).fingerprint == one.fingerprint
    items[0]["attrs"] = {"dept": "hr"}
    assert az.PolicyStore.from_directory(_store_dir(tmp_path, items)).fingerprint != one.fingerprint


def test_entities_given_as_text_in_any_order_give_one_fingerprint() -> None:
    entities = [az.Entity(uid=az.EntityUID("User", name), attrs={"dept": "eng"}) for name in "abc"]
    one = az.PolicyStore.from_text(PERMIT, entities=entities)
    assert az.PolicyStore.from_text(PERMIT, entities=entities[::-1]).fingerprint == one.fingerprint
    assert az.PolicyStore.from_text(PERMIT, entities=entities[:2]).fingerprint != one.fingerprint


@pytest.mark.parametrize("parents", [None, 5, "Group::\"eng\"", {"type": "Group", "id": "eng"}])
def test_parents_that_are_not_an_array_are_refused_naming_the_entity(tmp_path: Path, parents: Any) -> None:
    items = [{"uid": {"type": "User", "id": "a"}, "attrs": {}, "parents": parents}]
    with pytest.raises(az.PolicyError) as info:
        az.PolicyStore.from_directory(_store_dir(tmp_path, items))
    assert _unlocated(str(info.value)) == "entities.json: entity #0: entity parents must be a JSON array"


# -- the collector is paused while a store loads, and restored whatever happens --------------------


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path, enabled: bool) -> None:
    import gc

    items = [{"uid": {"type": "User", "id": "a"}, "attrs": {}, "parents": []}]
    root = _store_dir(tmp_path, items)
    was = gc.isenabled()
    try:
        if not enabled:
            gc.disable()
        az.PolicyStore.from_directory(root)
        assert gc.isenabled() is enabled
        (root / "entities.json").write_text("[{")
        with pytest.raises(az.PolicyError):
            az.PolicyStore.from_directory(root)
        assert gc.isenabled() is enabled
        with pytest.raises(az.PolicyError):
            az.PolicyStore.from_text("permit(")
        assert gc.isenabled() is enabled
    finally:
        if was:
            gc.enable()


def test_concurrent_loads_restore_the_collector_once_all_are_done(tmp_path: Path) -> None:
    import gc
    import threading

    items = [{"uid": {"type": "User", "id": str(i)}, "attrs": {}, "parents": []} for i in range(2000)]
    root = _store_dir(tmp_path, items)
    assert gc.isenabled()
    errors: list[BaseException] = []

    def load() -> None:
        try:
            for _ in range(3):
                az.PolicyStore.from_directory(root)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert gc.isenabled()
