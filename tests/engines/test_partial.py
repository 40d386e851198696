"""Partial evaluation on small entity handles (issue 18, scaling of ``permitted_tools``).

``LocalEngine.may_allow`` gives Cedar's partial evaluation only the entities its
request can reach and the action groups it can meet, since the evaluation costs
time with every entity of the handle (with N tools, the schema adds N actions).
The result must be the one of the whole stored handle: same decision, same
residual policies, same errors.
"""

from __future__ import annotations

import json

import cedarpy
from hypothesis import HealthCheck, given, settings

import agentauthz as az
from tests.strategies import SlicingCase, slicing_cases


def _partial(request: dict[str, object], policies: object, entity_set: object, schema: object) -> object:
    result = cedarpy.is_authorized_partial(request, policies, entity_set, schema=schema)
    return (result.decision, json.dumps(result.residuals, sort_keys=True), sorted(result.diagnostics.errors),
            sorted(result.diagnostics.reasons))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(slicing_cases())
def test_partial_evaluation_on_the_reached_entities_equals_the_whole_handle(case: SlicingCase) -> None:
    try:
        store = az.PolicyStore.from_text(case.policies, schema=case.schema, entities=case.entities,
                                         links=case.links, validate=False)
    except az.PolicyError:
        return
    engine = az.LocalEngine(store)
    snapshot = store.snapshot
    try:
        whole = engine.entity_set(snapshot, case.call_entities)
    except ValueError:
        return
    given_entities = {entity.uid: entity for entity in case.call_entities
                      if snapshot.entity_index.get(entity.uid) != entity}
    partial = engine._partial_entities(snapshot)
    for request in case.requests:
        action = request.action if isinstance(request.action, az.EntityUID) else az.EntityUID(
            "Action", request.action)
        for resource in (request.resource, None):
            small = partial.handle(request.principal, action, resource, given_entities)
            assert small is not None  # a few entities: always within the budget
            query: dict[str, object] = {"principal": str(request.principal), "action": str(action),
                                        "context": None}
            if resource is not None:
                query["resource"] = str(resource)
            assert _partial(query, snapshot.policy_set, small, snapshot.schema) == _partial(
                query, snapshot.policy_set, whole, snapshot.schema), (query, case.policies)


def test_a_record_the_schema_reads_as_an_entity_keeps_its_meaning_in_the_small_handle() -> None:
    # Written without __entity, {type, id} is an entity only because the schema says so; the small
    # handle is parsed without the schema, from Cedar's explicit form of the stored values.
    schema = ("entity Group; entity User in [Group]; entity Doc = { team: Group };\n"
              "action read, write appliesTo { principal: User, resource: Doc };")
    store = az.PolicyStore.from_text(
        '@id("team") permit(principal, action == Action::"read", resource) '
        "when { principal in resource.team };",
        schema=schema,
        entities=[az.Entity.from_cedar({"uid": {"type": "Doc", "id": "d"},
                                        "attrs": {"team": {"type": "Group", "id": "g"}}}),
                  az.Entity(uid=az.EntityUID("User", "alice"), parents=[az.EntityUID("Group", "g")]),
                  az.Entity(uid=az.EntityUID("User", "bob"))])
    engine = az.LocalEngine(store)
    read = az.EntityUID("Action", "read")
    assert engine.may_allow(az.EntityUID("User", "alice"), read, az.EntityUID("Doc", "d"))
    assert not engine.may_allow(az.EntityUID("User", "bob"), read, az.EntityUID("Doc", "d"))


def test_action_groups_of_the_schema_reach_the_small_handle() -> None:
    actions = ", ".join(f"tool_{i}" for i in range(300))
    schema = (f"entity User; entity Tool;\naction tools;\naction {actions} in [tools] "
              "appliesTo { principal: User, resource: Tool, context: { n: Long } };")
    store = az.PolicyStore.from_text(
        '@id("group") permit(principal, action in Action::"tools", resource) when { context.n < 3 };',
        schema=schema, entities=[az.Entity(uid=az.EntityUID("User", "alice"))])
    engine = az.LocalEngine(store)
    alice = az.EntityUID("User", "alice")
    for name in ("tool_0", "tool_299"):
        action = az.EntityUID("Action", name)
        assert engine.may_allow(alice, action, az.EntityUID("Tool", name))
        handle = engine._partial_entities(store.snapshot).handle(alice, action, None, {})
        # The user, the tool's action and its group: not the other 299 actions.
        assert handle is not None and len(handle) == 3
    assert not engine.may_allow(alice, az.EntityUID("Action", "tools"), az.EntityUID("Tool", "tool_0"))


def test_permitted_tools_hides_exactly_the_tools_no_call_of_which_can_be_allowed_among_many() -> None:
    tools = [f"tool_{i}" for i in range(200)]
    schema = ("entity Group; entity User in [Group]; entity Tool;\naction " + ", ".join(tools)
              + " appliesTo { principal: User, resource: Tool, context: { input: { n: Long } } };")
    policies = "\n".join(
        f'@id("p{i}") permit(principal in Group::"g{i % 3}", action == Action::"{name}", resource) '
        "when { context.input.n < 5 };" for i, name in enumerate(tools))
    store = az.PolicyStore.from_text(policies, schema=schema, entities=[
        az.Entity(uid=az.EntityUID("Group", "g1")),
        az.Entity(uid=az.EntityUID("User", "alice"), parents=[az.EntityUID("Group", "g1")])])
    authz = az.Authorizer(az.LocalEngine(store))

    def tool(n: int) -> int:
        return n

    guarded = [authz.guard(action=name, name=name)(tool) for name in tools]
    with authz.acting_as(az.EntityUID("User", "alice")):
        shown = authz.permitted_tools(guarded)
    assert [guarded.index(item) for item in shown] == [i for i in range(200) if i % 3 == 1]
