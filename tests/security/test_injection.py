"""Attack class: injection through entity ids and values.

Ids and values reach Cedar as structured ``{type, id}`` JSON, never as text
spliced into a policy or a request, so quotes, ``::``, newlines, Cedar syntax
and Unicode confusables are data: each id names exactly one entity. Values
cannot smuggle Cedar JSON escapes (``__entity``, ``__extn``, ``__expr``) from
user data, huge sets and records decide in bounded time, and deeply nested
arguments are refused with the library's own error, never a crash or a
RecursionError.

Cases tried:

* hostile and confusable ids, each as principal, resource and context string,
  against every other id of the list: 45 ids x 3 positions = 135 cases
  (each checking 45 requests), plus a Hypothesis property over pairs of ids: 150 examples
* confusable principals with a stored entity (group membership): 10
* entity types that are not Cedar names: 6
* empty and over-long ids: 2 (9 requests)
* reserved Cedar JSON keys in user data, by entry point: 13
* huge sets, records, parent lists and ids: 5; per-request parent chains past the depth limit
  (refused in bounded time) and at it (decided): 3
* deeply nested values and arguments, by entry point: 10
* tool argument names authorization could not see (LangChain JSON schemas): 3
* an argument type that contains itself: 1
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from pydantic import BaseModel

import agentauthz as az
from agentauthz._entities import MAX_GIVEN_DEPTH
from agentauthz.testing import capture_decisions
from tests.security.support import run_isolated
from tests.strategies import TRICKY_IDS, cedar_string_literal, entity_ids

U = az.EntityUID


def permit_all() -> az.Authorizer:
    return az.Authorizer.from_text("permit(principal, action, resource);", audit=[])

#: Look-alikes of "alice" and other near-misses: every one is a different principal.
CONFUSABLES = (
    "alice",
    "\u0430lice",  # Cyrillic a
    "al\u0456ce",  # Cyrillic i
    "ali\u0441e",  # Cyrillic es
    "\uff41lice",  # fullwidth a
    "alice\u200b",  # zero-width space
    "\u200dalice",  # zero-width joiner
    "Alice",
    "alice ",
    " alice",
    "alic\u0435",  # Cyrillic ie
    "a\u0301lice",  # combining acute (NFD)
    "\u00e1lice",  # precomposed a-acute (NFC)
    "al\u0131ce",  # dotless i
    "alice\x00",
    "ali\u00adce",  # soft hyphen
    "alice\u202e",  # right-to-left override
    "admin",
    "\u0430dmin",
)
IDS = tuple(dict.fromkeys((*TRICKY_IDS, *CONFUSABLES)))


def _exact_policies(target: str) -> str:
    literal = cedar_string_literal(target)
    return (
        f'@id("principal") permit(principal == User::{literal}, action == Action::"as_principal", '
        "resource);\n"
        f'@id("resource") permit(principal, action == Action::"as_resource", resource == Doc::{literal});\n'
        f'@id("context") permit(principal, action == Action::"as_context", resource) '
        f"when {{ context.account == {literal} }};"
    )


def _request(position: str, candidate: str) -> az.Request:
    if position == "principal":
        return az.Request(U("User", candidate), "as_principal", U("Doc", "d"))
    if position == "resource":
        return az.Request(U("User", "u"), "as_resource", U("Doc", candidate))
    return az.Request(U("User", "u"), "as_context", U("Doc", "d"), {"account": candidate})


@pytest.mark.parametrize("position", ["principal", "resource", "context"])
@pytest.mark.parametrize("target", IDS, ids=[repr(i)[1:-1][:24] or "empty" for i in IDS])
def test_an_id_matches_exactly_itself_and_nothing_that_looks_like_it(target: str, position: str) -> None:
    authz = az.Authorizer.from_text(_exact_policies(target), audit=[])
    decisions = authz.authorize_many([_request(position, candidate) for candidate in IDS])
    allowed = [candidate for candidate, d in zip(IDS, decisions, strict=True) if d.allowed]
    assert allowed == [target]
    assert all(not d.errors for d in decisions)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entity_ids, entity_ids)
def test_any_two_ids_are_two_principals(first: str, second: str) -> None:
    authz = az.Authorizer.from_text(_exact_policies(first), audit=[])
    first_decision, second_decision = authz.authorize_many(
        [_request("principal", first), _request("principal", second)])
    assert first_decision.allowed
    assert second_decision.allowed == (first == second)


@pytest.mark.parametrize("lookalike", [c for c in CONFUSABLES if c != "alice"][:10])
def test_a_lookalike_principal_does_not_inherit_the_real_users_groups(lookalike: str) -> None:
    stored = [az.Entity(uid=U("User", "alice"), parents=[U("Group", "admins")])]
    authz = az.Authorizer.from_text('permit(principal in Group::"admins", action, resource);',
                                    entities=stored, audit=[])
    assert authz.authorize(principal=U("User", "alice"), action="x", resource=U("Doc", "d")).allowed
    decision = authz.authorize(principal=U("User", lookalike), action="x", resource=U("Doc", "d"))
    assert not decision.allowed


@pytest.mark.parametrize("entity_type", [
    'User" || true || "', "Us\u0435r", "User::", "1User", "User\n", "User::\"admin\"::X",
])
def test_an_entity_type_that_is_no_cedar_name_is_denied_not_parsed(entity_type: str) -> None:
    authz = permit_all()
    decision = authz.authorize(principal=U(entity_type, "a"), action="x", resource=U("Doc", "d"))
    assert not decision.allowed
    assert decision.errors


def test_the_empty_id_is_an_id_like_any_other() -> None:
    authz = az.Authorizer.from_text(_exact_policies(""), audit=[])
    decisions = authz.authorize_many([_request("principal", c) for c in ("", " ", "\0", '""', "\u200b")])
    assert [d.allowed for d in decisions] == [True, False, False, False, False]


def test_over_long_ids_decide_exactly_in_bounded_time() -> None:
    target = "a" * 300_000
    store = az.PolicyStore.from_text(_exact_policies(target), max_bytes=4_000_000)
    authz = az.Authorizer(az.LocalEngine(store), audit=[])
    lengths = [300_000, 299_999, 300_001, 3_000_000]
    started = time.perf_counter()
    decisions = authz.authorize_many([_request("principal", "a" * n) for n in lengths])
    assert [d.allowed for d in decisions] == [True, False, False, False]
    assert time.perf_counter() - started < 5


# -- reserved Cedar JSON keys in user data -------------------------------------------------------

ESCAPE = {"__entity": {"type": "User", "id": "admin"}}
EXTN = {"__extn": {"fn": "ip", "arg": "10.0.0.1"}}


def _through_langchain_json_schema() -> Any:
    pytest.importorskip("langchain_core")
    from langchain_core.tools import StructuredTool

    from agentauthz.integrations.langchain import PRINCIPAL_KEY, authorize_tools

    authz = permit_all()
    schema = {"type": "object", "required": ["owner"], "properties": {"owner": {
        "type": "object", "properties": {"__entity": {"type": "object", "properties": {
            "type": {"type": "string"}, "id": {"type": "string"}}}}}}}
    tool = StructuredTool.from_function(func=lambda **kw: "ran", name="t", description="t",
                                        args_schema=schema)
    [safe] = authorize_tools([tool], authz)
    return safe.invoke({"owner": ESCAPE}, config={"configurable": {PRINCIPAL_KEY: U("User", "u")}})


def _through_bedrock(value: str, kind: str = "object") -> Any:
    from agentauthz.integrations.bedrock import action_group_handler

    authz = permit_all()

    @action_group_handler(authz, principal=lambda e: U("User", e["sessionAttributes"]["userId"]))
    def handler(event: dict[str, Any], context: Any) -> str:
        return "ran"

    event = {"messageVersion": "1.0", "actionGroup": "g", "function": "f",
             "sessionAttributes": {"userId": "u"},
             "parameters": [{"name": "p", "type": kind, "value": value}]}
    response = handler(event, None)
    return response["response"]["functionResponse"]


RESERVED: dict[str, Callable[[], Any]] = {
    "entity-attribute": lambda: az.Entity(uid=U("Doc", "d"), attrs={"owner": ESCAPE}),
    "entity-top-level-attribute": lambda: az.Entity(uid=U("Doc", "d"), attrs=dict(ESCAPE)),
    "entity-set-element": lambda: az.Entity(uid=U("Doc", "d"), attrs={"readers": [ESCAPE]}),
    "entity-tag": lambda: az.Entity(uid=U("Doc", "d"), tags={"t": EXTN}),
    "context": lambda: az.Request(U("User", "u"), "x", U("Doc", "d"), {"owner": ESCAPE}),
    "context-expr": lambda: az.Request(U("User", "u"), "x", U("Doc", "d"), {"e": {"__expr": "true"}}),
    "context-nested": lambda: az.Request(U("User", "u"), "x", U("Doc", "d"), {"a": {"b": [{"c": EXTN}]}}),
    "authorize-context": lambda: permit_all()
    .authorize(principal=U("User", "u"), action="x", resource=U("Doc", "d"), context={"owner": ESCAPE}),
    "cedar-json-escape-with-extra-keys": lambda: az.Entity.from_cedar(
        {"uid": {"type": "Doc", "id": "d"}, "attrs": {"owner": {**ESCAPE, "note": "x"}}}),
    "cedar-json-context-escape-with-extra-keys": lambda: az.Request.from_cedar(
        {"principal": 'User::"u"', "action": 'Action::"x"', "resource": 'Doc::"d"',
         "context": {"o": {**EXTN, "x": 1}}}),
    "langchain-json-schema-argument": _through_langchain_json_schema,
}


@pytest.mark.parametrize("entry", sorted(RESERVED))
def test_reserved_cedar_json_keys_in_user_data_are_refused(entry: str) -> None:
    # InvalidValueError for a value; ConfigurationError for a tool whose schema declares such a key.
    with pytest.raises((az.InvalidValueError, az.ConfigurationError)) as raised:
        RESERVED[entry]()
    message = str(raised.value)
    assert "__entity" in message or "__extn" in message or "__expr" in message or "escape" in message


@pytest.mark.parametrize("value", [json.dumps(ESCAPE), json.dumps({"inner": [EXTN]})])
def test_reserved_keys_in_bedrock_object_parameters_are_refused(value: str) -> None:
    with capture_decisions() as events:
        response = _through_bedrock(value)
    assert response["responseState"] == "REPROMPT"
    assert "was not called" in response["responseBody"]["TEXT"]["body"]
    [refusal] = events
    assert refusal.decision == "deny" and "reserved" in refusal.errors[0]


def test_text_that_spells_an_escape_stays_a_string() -> None:
    authz = az.Authorizer.from_text(
        'permit(principal, action, resource) when { context.owner == principal };', audit=[])
    decision = authz.authorize(principal=U("User", "admin"), action="x", resource=U("Doc", "d"),
                               context={"owner": json.dumps(ESCAPE)})
    assert not decision.allowed


# -- huge values ------------------------------------------------------------------------------------

HUGE_POLICIES = """
permit(principal, action == Action::"set", resource) when { context.s.contains("needle") };
permit(principal, action == Action::"record", resource) when { context.r has k19999 };
permit(principal, action == Action::"attribute", resource) when { principal.tags.contains("needle") };
permit(principal, action == Action::"parents", resource) when { principal in Group::"g" };
"""


@pytest.mark.parametrize("case", ["set", "record", "attribute", "parents", "no-needle"])
def test_huge_sets_records_and_parent_lists_decide_in_bounded_time(case: str) -> None:
    authz = az.Authorizer.from_text(HUGE_POLICIES, audit=[])
    many = [f"x{i}" for i in range(100_000)]
    principal: az.EntityUID | az.Entity = U("User", "u")
    context: dict[str, Any] = {}
    action = case
    if case == "set":
        context = {"s": [*many, "needle"]}
    elif case == "no-needle":
        action, context = "set", {"s": many}
    elif case == "record":
        context = {"r": {f"k{i}": i for i in range(20_000)}}
    elif case == "attribute":
        principal = az.Entity(uid=U("User", "u"), attrs={"tags": [*many, "needle"]})
    else:
        principal = az.Entity(uid=U("User", "u"),
                              parents=[*(U("Group", f"g{i}") for i in range(20_000)), U("Group", "g")])
    started = time.perf_counter()
    decision = authz.authorize(principal=principal, action=action, resource=U("Doc", "d"), context=context)
    assert decision.allowed == (case != "no-needle")
    assert time.perf_counter() - started < 5


def test_a_long_per_request_parent_chain_is_refused_in_bounded_time() -> None:
    # Cedar works out every given entity's ancestors, at a cost growing faster than the chain
    # (3,000 chained groups took ~5 s to decide, 800 ~8 s on the merge path): refused instead.
    code = """
        import agentauthz as az
        U = az.EntityUID
        authz = az.Authorizer.from_text('permit(principal in Group::"top", action, resource);', audit=[])
        chain = [az.Entity(uid=U("Group", f"g{i}"), parents=[U("Group", f"g{i + 1}")]) for i in range(3000)]
        chain.append(az.Entity(uid=U("Group", "g3000"), parents=[U("Group", "top")]))
        user = az.Entity(uid=U("User", "u"), parents=[U("Group", "g0")])
        decision = authz.authorize(principal=user, action="x", resource=U("Doc", "d"), entities=chain)
        print(decision.allowed, any("more than 100 levels" in error for error in decision.errors))
    """
    try:
        outcome = run_isolated(code, timeout=2.5)
    except subprocess.TimeoutExpired:
        pytest.fail("3,000 chained parent entities took more than 2.5 s to refuse")
    assert outcome.stdout.strip() == "False True", outcome.stderr


@pytest.mark.parametrize(("levels", "allowed"), [(MAX_GIVEN_DEPTH, True), (MAX_GIVEN_DEPTH + 1, False)])
def test_a_per_request_parent_chain_is_decided_up_to_the_depth_limit(levels: int, allowed: bool) -> None:
    authz = az.Authorizer.from_text('permit(principal in Group::"top", action, resource);', audit=[])
    groups = [U("Group", f"g{i}") for i in range(levels - 1)]  # the user is the first level
    parents = [*groups[1:], U("Group", "top")]
    chain = [az.Entity(uid=uid, parents=[parent]) for uid, parent in zip(groups, parents, strict=True)]
    user = az.Entity(uid=U("User", "u"), parents=[groups[0]])
    decision = authz.authorize(principal=user, action="x", resource=U("Doc", "d"), entities=chain)
    assert decision.allowed is allowed
    assert bool(decision.errors) is not allowed


# -- deeply nested values and arguments ------------------------------------------------------------


def _deep_dict(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth):
        node["a"] = {}
        node = node["a"]
    return root


def _deep_list(depth: int) -> list[Any]:
    root: list[Any] = []
    node = root
    for _ in range(depth):
        child: list[Any] = []
        node.append(child)
        node = child
    return root


def _guarded_list_tool() -> Any:
    authz = permit_all()

    @authz.guard
    def tag(items: list[list[str]]) -> str:
        return "ran"

    with authz.acting_as(U("User", "u")):
        return tag(items=_deep_list(50_000))


def _langchain_nested_argument() -> Any:
    pytest.importorskip("langchain_core")
    from langchain_core.tools import StructuredTool

    from agentauthz.integrations.langchain import PRINCIPAL_KEY, authorize_tools

    authz = permit_all()
    strings = {"type": "array", "items": {"type": "string"}}
    schema = {"type": "object", "required": ["items"],
              "properties": {"items": {"type": "array", "items": strings}}}
    tool = StructuredTool.from_function(func=lambda **kw: "ran", name="t", description="t",
                                        args_schema=schema)
    [safe] = authorize_tools([tool], authz, on_deny="raise")
    # LangChain itself renders the input with str() before any wrapper runs, and a model's JSON
    # cannot nest past json.loads' own limit: 900 levels is what can arrive.
    return safe.invoke({"items": _deep_list(900)},
                       config={"configurable": {PRINCIPAL_KEY: U("User", "u")}})


NESTED: dict[str, Callable[[], Any]] = {
    "request-context": lambda: az.Request(U("User", "u"), "x", U("Doc", "d"), {"d": _deep_dict(20_000)}),
    "entity-attributes": lambda: az.Entity(uid=U("Doc", "d"), attrs={"d": _deep_dict(20_000)}),
    "entity-from-cedar": lambda: az.Entity.from_cedar({"uid": {"type": "Doc", "id": "d"},
                                                       "attrs": {"d": _deep_list(20_000)}}),
    "request-from-cedar": lambda: az.Request.from_cedar(
        {"principal": 'User::"u"', "action": 'Action::"x"', "resource": 'Doc::"d"',
         "context": {"d": _deep_dict(20_000)}}),
    "authorize-context": lambda: permit_all().authorize(
        principal=U("User", "u"), action="x", resource=U("Doc", "d"), context={"d": _deep_list(20_000)}),
    "guarded-tool-argument": _guarded_list_tool,
    "langchain-tool-argument": _langchain_nested_argument,
}


@pytest.mark.parametrize("entry", sorted(NESTED))
def test_deeply_nested_values_are_refused_cleanly(entry: str) -> None:
    with pytest.raises(az.AuthzError):
        NESTED[entry]()


@pytest.mark.parametrize(("kind", "value"), [
    ("array", "[" * 100_000 + "]" * 100_000),
    ("object", '{"a":' * 100_000 + "1" + "}" * 100_000),
    ("array", "[" * 200 + "]" * 200),
])
def test_deeply_nested_json_in_bedrock_parameters_is_refused_cleanly(kind: str, value: str) -> None:
    response = _through_bedrock(value, kind)
    assert response["responseState"] == "REPROMPT"


@pytest.mark.parametrize("name", ["_amount", "__entity", "model_config"])
def test_a_tool_argument_authorization_could_not_see_is_refused_when_wrapping(name: str) -> None:
    """pydantic drops such names from a model: the argument would reach the tool unauthorized."""
    pytest.importorskip("langchain_core")
    from langchain_core.tools import StructuredTool

    from agentauthz.integrations.langchain import authorize_tools

    authz = az.Authorizer.from_text(
        "forbid(principal, action, resource) when { context.input has amount && context.input.amount > 100 };"
        "permit(principal, action, resource);", audit=[])
    schema = {"type": "object", "required": [name], "properties": {name: {"type": "integer"}}}
    tool = StructuredTool.from_function(func=lambda **kw: "paid", name="pay", description="Pay.",
                                        args_schema=schema)
    with pytest.raises(az.ConfigurationError, match="cannot be authorized"):
        authorize_tools([tool], authz)


class _Node(BaseModel):
    name: str
    child: _Node | None = None


def test_an_argument_type_that_contains_itself_is_refused_when_decorating() -> None:
    authz = permit_all()

    def walk(node: _Node) -> str:
        return node.name

    with pytest.raises(az.ConfigurationError, match="contains itself"):
        authz.guard(walk)
