"""Requests of a shape that passed the schema check are decided without it, and nothing else is."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import cedarpy
import pytest
from hypothesis import HealthCheck, given, settings

import agentauthz as az
from agentauthz.engines._conformance import KnownShapes, enumerated_types
from agentauthz.policy._schema_json import schema_json_text
from tests.strategies import SHAPES_POLICIES, SHAPES_SCHEMA, shape_request_runs

U = az.EntityUID
ACT = U("Action", "act")
DOC = U("Doc", "d")
ALICE = U("User", "alice")
VALID = {"n": 1, "flag": True, "tags": ["ok"], "who": U("User", "alice"), "address": {"city": "Paris"}}


class CallSpy:
    """Wraps cedarpy's extension function: what each call was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, list[dict[str, Any]]]] = []
        self._real = cedarpy._internal.is_authorized_batch

    def __call__(self, requests: list[dict[str, Any]], policies: Any, entities: Any, schema: Any,
                 verbose: bool) -> Any:
        self.calls.append((schema is not None, requests))
        return self._real(requests, policies, entities, schema, verbose)

    @property
    def checked(self) -> list[bool]:
        """Per call: was the schema passed (so the requests were checked against it)?"""
        return [with_schema for with_schema, _ in self.calls]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[CallSpy]:
    found = CallSpy()
    monkeypatch.setattr(cedarpy._internal, "is_authorized_batch", found)
    yield found


def _engine(schema: str = SHAPES_SCHEMA) -> az.LocalEngine:
    return az.LocalEngine(az.PolicyStore.from_text(SHAPES_POLICIES, schema=schema))


def _request(context: dict[str, Any], principal: az.EntityUID = ALICE) -> az.Request:
    return az.Request(principal, ACT, DOC, context)


def _refused(decision: az.Decision) -> bool:
    return not decision.allowed and any("failed to build request" in error for error in decision.errors)


def test_a_request_of_a_known_shape_is_decided_without_the_schema_check(spy: CallSpy) -> None:
    engine = _engine()
    first = engine.decide([_request(VALID)])[0]
    # Other values, same shape: another user, other numbers, strings and set members.
    second = engine.decide([_request({**VALID, "n": 2, "tags": ["ok", "no"], "who": U("User", "bob")})])[0]
    assert first.allowed and second.allowed
    assert spy.checked == [True, False]


@pytest.mark.parametrize("context", [
    {**VALID, "n": "1"},  # wrong type
    {**VALID, "tags": ["ok", 1]},  # wrong set element
    {**VALID, "who": U("Doc", "d")},  # wrong entity type
    {**VALID, "address": {"city": "Paris", "zip": "75001"}},  # wrong nested type
    {**VALID, "address": {"city": "Paris", "extra": 1}},  # undeclared nested attribute
    {**VALID, "extra": 1},  # undeclared attribute
    {**VALID, "lable": "x"},  # undeclared attribute in place of a declared one of its type
    {key: value for key, value in VALID.items() if key != "flag"},  # required attribute missing
    {**VALID, "hue": U("Color", "green")},  # id outside the enumeration
    {**VALID, "ip": az.decimal("1.5")},  # wrong extension type
], ids=["type", "set-element", "entity-type", "nested-type", "nested-extra", "extra", "renamed",
        "missing", "enum-id", "extension"])
def test_a_nonconforming_request_after_a_known_shape_is_still_refused(
        context: dict[str, Any], spy: CallSpy) -> None:
    engine = _engine()
    for known in ({**VALID, "hue": U("Color", "red")}, {**VALID, "label": "x"}, VALID):
        assert engine.decide([_request(known)])[0].errors == ()
    decision = engine.decide([_request(context)])[0]
    assert _refused(decision), decision
    assert spy.checked[-1] is True


def test_an_enumerated_principal_outside_the_enumeration_is_refused_after_a_valid_one(spy: CallSpy) -> None:
    engine = _engine()
    engine.decide([_request(VALID, U("Color", "blue"))])
    assert engine.decide([_request(VALID, U("Color", "blue"))])[0].reasons == ("paris", "positive")
    assert spy.checked == [True, False]
    assert _refused(engine.decide([_request(VALID, U("Color", "green"))])[0])


def test_a_batch_with_one_unknown_shape_is_checked_as_a_whole(spy: CallSpy) -> None:
    engine = _engine()
    engine.decide([_request(VALID)])
    decisions = engine.decide([_request(VALID), _request({**VALID, "n": "x"})])
    assert decisions[0].allowed and _refused(decisions[1])
    assert spy.checked == [True, True]


def test_a_reloaded_schema_forgets_the_shapes_the_old_one_accepted(tmp_path: Any, spy: CallSpy) -> None:
    (tmp_path / "policies.cedar").write_text(SHAPES_POLICIES)
    (tmp_path / "schema.cedarschema").write_text(SHAPES_SCHEMA)
    store = az.PolicyStore.from_directory(tmp_path)
    engine = az.LocalEngine(store)
    labelled = _request({**VALID, "label": "x"})
    assert engine.decide([labelled])[0].allowed
    assert engine.decide([labelled])[0].allowed
    (tmp_path / "schema.cedarschema").write_text(SHAPES_SCHEMA.replace("label?: String, ", ""))
    store.reload()
    assert _refused(engine.decide([labelled])[0])
    assert spy.checked == [True, False, True]


def test_without_a_schema_requests_are_decided_as_given(spy: CallSpy) -> None:
    engine = az.LocalEngine(az.PolicyStore.from_text('@id("all") permit(principal, action, resource);'))
    for _ in range(2):
        assert engine.decide([_request({"anything": [1, "two"]})])[0].reasons == ("all",)
    assert spy.checked == [False, False]


def test_shapes_keep_ids_only_for_enumerated_types() -> None:
    shapes = KnownShapes(frozenset({"Color"}))
    red, blue = (_request(VALID, U("Color", name)) for name in ("red", "blue"))
    alice, bob = (_request(VALID, U("User", name)) for name in ("alice", "bob"))
    assert shapes.shape(alice) == shapes.shape(bob)
    assert shapes.shape(red) != shapes.shape(blue)
    assert shapes.shape(_request({**VALID, "hue": U("Color", "red")})) != shapes.shape(
        _request({**VALID, "hue": U("Color", "blue")}))
    none, a, b = (shapes.shape(_request({**VALID, "tags": tags})) for tags in ([], ["a"], ["b"]))
    assert none != a
    assert a == b


def test_enumerated_types_are_read_from_every_namespace_of_the_schema() -> None:
    text = ('namespace Shop { entity Size enum ["s", "m"]; entity Item; } '
            'entity Color enum ["red"]; entity User;')
    assert enumerated_types(schema_json_text(text)) == frozenset({"Shop::Size", "Color"})
    assert enumerated_types(json.dumps({"": {"entityTypes": {"User": {}}, "actions": {}}})) == frozenset()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape_request_runs)
def test_known_shapes_decide_exactly_like_cedar_with_the_schema(runs: list[az.Request]) -> None:
    store = az.PolicyStore.from_text(SHAPES_POLICIES, schema=SHAPES_SCHEMA)
    snapshot = store.snapshot
    engine = az.LocalEngine(store)
    spy = CallSpy()
    accepted = []
    for request in runs:
        reference = cedarpy.is_authorized(request.to_cedar(), snapshot.policy_set, snapshot.entity_set,
                                          schema=snapshot.schema)
        accepted.append(reference.decision is not cedarpy.Decision.NoDecision)
        want = (reference.allowed, sorted(snapshot.ids_by_position[r] for r in reference.diagnostics.reasons),
                bool(reference.diagnostics.errors))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(cedarpy._internal, "is_authorized_batch", spy)
            # Twice: the second time, every accepted shape of the run so far is known.
            for decision in (engine.decide([request])[0], engine.decide([request])[0]):
                assert (decision.allowed, sorted(decision.reasons), bool(decision.errors)) == want, request
    for (with_schema, _), position in zip(spy.calls, [i for i in range(len(runs)) for _ in (0, 1)],
                                          strict=True):
        assert with_schema or accepted[position], runs[position]
    assert any(not with_schema for with_schema, _ in spy.calls) == any(accepted)
