"""The guarded call's precompiled plan (issue 18, row 1): the fast path decides what plain cedarpy decides.

A guarded call outside a session is decided as ``authorize`` decides it; scalar
arguments skip the model walk. Decisions, the values the tool receives and the
one audit event per call must not change.
"""

from __future__ import annotations

import asyncio
import enum
import json
from typing import Any

import cedarpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentauthz as az

SCHEMA = """
entity User = { level: Long };
entity Tool;
action lookup appliesTo { principal: User, resource: Tool,
  context: { input: { query: String, limit: Long, exact: Bool, colour: String } } };
"""

POLICIES = """
@id("short") permit(principal, action == Action::"lookup", resource == Tool::"lookup")
when { context.input.limit <= principal.level && context.input.query like "a*" };
@id("exact-red") permit(principal, action == Action::"lookup", resource)
when { context.input.exact && context.input.colour == "red" };
@id("no-zero") forbid(principal, action, resource) when { context.input.limit == 0 };
"""

USER = az.Entity(uid=az.EntityUID("User", "u"), attrs={"level": 5})


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


def _guarded(sink: az.MemorySink) -> tuple[az.Authorizer, Any, list[dict[str, Any]]]:
    authz = az.Authorizer.from_text(POLICIES, schema=SCHEMA, entities=[USER], audit=[sink])
    received: list[dict[str, Any]] = []

    @authz.guard(action="lookup", on_deny="message")
    def lookup(query: str, limit: int, exact: bool = False, colour: str = "blue") -> str:
        received.append({"query": query, "limit": limit, "exact": exact, "colour": colour})
        return "ran"

    return authz, lookup, received


def _cedarpy_allows(arguments: dict[str, Any]) -> bool:
    request = {"principal": {"type": "User", "id": "u"}, "action": {"type": "Action", "id": "lookup"},
               "resource": {"type": "Tool", "id": "lookup"}, "context": {"input": arguments}}
    entities = json.dumps([USER.cedar])
    return cedarpy.is_authorized(request, POLICIES, entities, schema=SCHEMA).allowed


arguments = st.fixed_dictionaries({
    "query": st.sampled_from(["a", "abc", "b", "", "a*"]),
    "limit": st.integers(min_value=-2, max_value=8),
    "exact": st.booleans(),
    "colour": st.sampled_from(["red", "blue", Colour.RED, Colour.BLUE]),
})


@settings(max_examples=150, deadline=None)
@given(arguments)
def test_guarded_call_outside_a_session_decides_as_plain_cedarpy(call: dict[str, Any]) -> None:
    sink = az.MemorySink()
    authz, lookup, received = _guarded(sink)
    validated = {**call, "colour": call["colour"].value if isinstance(call["colour"], Colour)
                 else call["colour"]}
    with authz.acting_as(USER):
        result = lookup(**call)
    assert (result == "ran") is _cedarpy_allows(validated)
    assert len(sink.events) == 1
    assert (sink.events[0].decision == "allow") is (result == "ran")
    if result == "ran":
        assert received == [validated]
        assert all(type(value) in (str, int, bool) for value in received[0].values())


@settings(max_examples=60, deadline=None)
@given(arguments)
def test_guarded_call_decides_alike_inside_and_outside_a_session(call: dict[str, Any]) -> None:
    authz, lookup, _ = _guarded(az.MemorySink())
    with authz.acting_as(USER):
        outside = lookup(**call)
        with authz.session("conversation"):
            inside = lookup(**call)
    assert outside == "ran" or outside.startswith("Tool 'lookup' is not permitted")
    assert (outside == "ran") is (inside == "ran")


def test_async_guarded_call_outside_a_session_decides_and_audits_once() -> None:
    sink = az.MemorySink()
    authz = az.Authorizer.from_text(POLICIES, schema=SCHEMA, entities=[USER], audit=[sink])

    @authz.guard(action="lookup")
    async def lookup(query: str, limit: int, exact: bool = False, colour: str = "blue") -> str:
        return "ran"

    async def calls() -> None:
        with authz.acting_as(USER):
            assert await lookup("abc", 3) == "ran"
            with pytest.raises(az.AccessDenied):
                await lookup("abc", 0)

    asyncio.run(calls())
    assert [event.decision for event in sink.events] == ["allow", "deny"]


def test_guarded_call_with_an_integer_beyond_64_bits_is_an_audited_refusal() -> None:
    sink = az.MemorySink()
    authz, lookup, received = _guarded(sink)
    with authz.acting_as(USER):
        refusal = lookup("abc", 2**70)
    assert refusal.startswith("Tool 'lookup' was not called: its arguments do not match")
    assert received == []
    assert len(sink.events) == 1 and sink.events[0].decision == "deny"


def test_guarded_call_without_a_bound_user_is_refused_before_the_arguments() -> None:
    sink = az.MemorySink()
    _, lookup, received = _guarded(sink)
    with pytest.raises(az.IdentityError):
        lookup("abc", 3)
    assert received == []
    assert len(sink.events) == 1 and sink.events[0].decision == "deny"
