"""Schema generation: one Cedar action per tool, merged into a user-written stub."""

from __future__ import annotations

import datetime as dt
import decimal
import importlib.util
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cedarpy
import pytest

import agentauthz as az
from agentauthz.engines.local import LocalEngine
from agentauthz.session import SessionConfig
from agentauthz.tools._schema import (
    generate_schema,
    mcp_input_type,
    read_mcp_tools,
    tool_specs,
    validate_policies_for_tools,
)

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
GOLDEN = ROOT / "tests" / "golden"
STUB = GOLDEN / "assistant_stub.cedarschema"

LONG = {"type": "Long"}
STRING = {"type": "String"}
BOOL = {"type": "Boolean"}
DECIMAL = {"type": "Extension", "name": "decimal"}

SIMPLE_STUB = "entity User; entity Tool; entity Account;"


def action_entry(schema_json: str, name: str, namespace: str = "") -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(schema_json)[namespace]["actions"][name]
    return entry


def _json_stub(stub: str) -> dict[str, Any]:
    # the simple stubs of these tests: top-level `entity X;` declarations only
    names = [part.split()[1] for part in stub.split(";") if part.strip()]
    return {"": {"entityTypes": {name: {} for name in names}, "actions": {}}}


def mcp(name: str, properties: dict[str, Any], required: list[str] | None = None,
        **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    if required is not None:
        schema["required"] = required
    return {"name": name, "description": f"{name} tool", "inputSchema": schema}


def authorizer() -> az.Authorizer:
    return az.Authorizer.from_text("permit(principal, action, resource);")


@pytest.fixture(scope="module")
def example_tools() -> dict[str, az.ToolSpec]:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from assistant_tools import build_tools
    finally:
        sys.path.remove(str(ROOT / "examples"))
    authz = az.Authorizer.from_directory(POLICIES)
    build_tools(authz)
    return authz.tools


# -- the example tool set (golden) ------------------------------------------------------


def test_example_tools_generate_the_committed_golden_schema(example_tools: dict[str, az.ToolSpec]) -> None:
    generated = generate_schema(STUB.read_text(), tools=example_tools, principal_types=["User"])
    assert generated == (GOLDEN / "assistant_tools.cedarschema").read_text()


def test_golden_schema_parses_and_equals_the_hand_written_example_schema() -> None:
    golden = (GOLDEN / "assistant_tools.cedarschema").read_text()
    hand_written = cedarpy.Schema.from_str((POLICIES / "schema.cedarschema").read_text())
    assert str(cedarpy.Schema.from_str(golden)) == str(hand_written)


def test_example_policies_validate_against_the_generated_schema(
    example_tools: dict[str, az.ToolSpec],
) -> None:
    store = az.PolicyStore.from_directory(POLICIES)
    validate_policies_for_tools(store, example_tools, STUB.read_text(), principal_types=["User"])
    validate_policies_for_tools(store, example_tools, STUB, principal_types=["User"])  # a path


def _store_with(tmp_path: Path, policy: str) -> az.PolicyStore:
    store_dir = tmp_path / "policies"
    shutil.copytree(POLICIES, store_dir)
    (store_dir / "zz_typo.cedar").write_text(
        "// a policy with a typo\n\n@id(\"typo\")\n" + policy, encoding="utf-8")
    # loads: the hand-written schema is not checked here, only the generated one
    return az.PolicyStore.from_directory(store_dir, validate=False)


def test_policy_reading_a_misspelled_argument_fails_validation_with_file_and_line(
    tmp_path: Path, example_tools: dict[str, az.ToolSpec],
) -> None:
    store = _store_with(tmp_path, (
        'permit (principal, action == Action::"issue_refund", resource)\n'
        "when { context.input.ammount <= 10 };\n"))
    with pytest.raises(az.PolicyError) as info:
        validate_policies_for_tools(store, example_tools, STUB, principal_types=["User"])
    assert len(info.value.problems) == 1
    problem = info.value.problems[0]
    # the line and column of the misspelled argument, as `agentauthz validate` prints them
    assert problem.startswith("zz_typo.cedar:5:16: [typo]")
    assert "input.ammount" in problem


def test_policy_naming_a_misspelled_tool_action_fails_validation_with_file_and_line(
    tmp_path: Path, example_tools: dict[str, az.ToolSpec],
) -> None:
    store = _store_with(tmp_path, 'permit (principal, action == Action::"isue_refund", resource);\n')
    with pytest.raises(az.PolicyError) as info:
        validate_policies_for_tools(store, example_tools, STUB, principal_types=["User"])
    assert info.value.problems
    assert all(p.startswith(("zz_typo.cedar:3:1: [typo]", "zz_typo.cedar:4:")) for p in info.value.problems)
    assert 'zz_typo.cedar:4:30: [typo] unrecognized action `Action::"isue_refund"`' in info.value.problems


def test_policy_of_a_tool_that_is_not_registered_fails_validation(
    example_tools: dict[str, az.ToolSpec],
) -> None:
    store = az.PolicyStore.from_directory(POLICIES)
    fewer = {name: spec for name, spec in example_tools.items() if name != "send_email"}
    with pytest.raises(az.PolicyError) as info:
        validate_policies_for_tools(store, fewer, STUB, principal_types=["User"])
    assert any(p.startswith("tools.cedar:") and "send_email" in p for p in info.value.problems)


def test_generating_from_the_full_schema_replaces_its_tool_actions_idempotently(
    example_tools: dict[str, az.ToolSpec],
) -> None:
    full = POLICIES / "schema.cedarschema"
    generated = generate_schema(full, tools=example_tools, principal_types=["User"])
    # the hand-written schema, its comments kept, says what generation says
    assert str(cedarpy.Schema.from_str(generated)) == str(cedarpy.Schema.from_str(full.read_text()))
    assert "// " in generated
    assert generate_schema(generated, tools=example_tools, principal_types=["User"]) == generated


# -- guarded tools ----------------------------------------------------------------------


def test_tool_without_resource_uses_the_tool_entity_type() -> None:
    authz = authorizer()

    @authz.guard
    def add(a: int, b: int = 0) -> int:
        return a + b

    schema = generate_schema(SIMPLE_STUB, tools=[add], principal_types=["User"])
    assert 'action "add" appliesTo {\n  principal: [User],\n  resource: [Tool],' in schema
    entry = action_entry(generate_schema(_json_stub(SIMPLE_STUB), tools=[add],
                                         principal_types=["User"]), "add")
    assert entry["appliesTo"]["context"] == {
        "type": "Record", "attributes": {"input": {"type": "Record", "attributes": {
            "a": LONG, "b": {**LONG, "required": False}}}}}


def test_tool_entity_type_is_configurable() -> None:
    authz = authorizer()

    @authz.guard
    def ping() -> str:
        return "pong"

    schema = generate_schema("entity User; entity Capability;", tools=[ping],
                             principal_types=["User"], tool_type="Capability")
    assert "resource: [Capability]" in schema


def test_tool_with_resource_types_uses_them_and_fixed_resource_its_type() -> None:
    authz = authorizer()

    @authz.guard(resource=lambda args: az.EntityUID("Account", args["source"]),
                 resource_types=["Account"])
    def transfer(source: str, amount: int) -> str:
        return "ok"

    @authz.guard(resource=az.EntityUID("Account", "main"))
    def balance() -> int:
        return 1

    schema = json.loads(generate_schema(_json_stub(SIMPLE_STUB), tools=authz.tools,
                                        principal_types=["User"]))
    assert schema[""]["actions"]["transfer"]["appliesTo"]["resourceTypes"] == ["Account"]
    assert schema[""]["actions"]["balance"]["appliesTo"]["resourceTypes"] == ["Account"]


def test_computed_resource_without_resource_types_is_an_error_naming_the_tool() -> None:
    authz = authorizer()

    @authz.guard(resource=lambda args: az.EntityUID("Account", args["source"]))
    def transfer(source: str) -> str:
        return "ok"

    with pytest.raises(az.ConfigurationError, match=r"tool 'transfer' computes its resource.*resource_types"):
        generate_schema(SIMPLE_STUB, tools=[transfer], principal_types=["User"])


def test_tools_may_be_specs_guarded_functions_or_a_dict_of_them() -> None:
    authz = authorizer()

    @authz.guard
    def one() -> str:
        return "1"

    @authz.guard
    def two() -> str:
        return "2"

    expected = generate_schema(SIMPLE_STUB, tools=authz.tools, principal_types=["User"])
    assert generate_schema(SIMPLE_STUB, tools=[two, one], principal_types=["User"]) == expected
    assert generate_schema(SIMPLE_STUB, tools={"a": one, "b": two}, principal_types=["User"]) == expected
    assert [s.name for s in tool_specs([one, authz.tools["two"]])] == ["one", "two"]


def test_unguarded_function_is_rejected() -> None:
    def plain() -> None:
        return None

    with pytest.raises(az.ConfigurationError, match=r"'plain' is not a guarded tool"):
        generate_schema(SIMPLE_STUB, tools=[plain], principal_types=["User"])


def test_python_extension_types_render_as_cedar_extension_types() -> None:
    authz = authorizer()

    @authz.guard
    def book(when: dt.datetime, stay: dt.timedelta, price: decimal.Decimal, tags: set[str]) -> str:
        return "ok"

    schema = generate_schema(SIMPLE_STUB, tools=[book], principal_types=["User"])
    for line in ("price: decimal", "stay: duration", "tags: Set<String>", "when: datetime"):
        assert line in schema


def test_action_uid_and_custom_action_name_are_used() -> None:
    authz = authorizer()

    @authz.guard(az.EntityUID("Action", "pay"))
    def transfer(amount: int) -> str:
        return "ok"

    @authz.guard("lookup")
    def search(query: str) -> str:
        return "ok"

    schema = generate_schema(SIMPLE_STUB, tools=authz.tools, principal_types=["User"])
    assert 'action "pay"' in schema and 'action "lookup"' in schema
    assert "transfer" not in schema


def test_action_uid_of_another_namespace_is_rejected() -> None:
    authz = authorizer()

    @authz.guard(az.EntityUID("Other::Action", "pay"))
    def transfer(amount: int) -> str:
        return "ok"

    with pytest.raises(az.ConfigurationError, match=r"tool 'transfer': action .* not an action of"):
        generate_schema(SIMPLE_STUB, tools=[transfer], principal_types=["User"])


def test_two_tools_with_one_action_are_rejected() -> None:
    authz = authorizer()

    @authz.guard("act")
    def first() -> str:
        return "1"

    @authz.guard("act")
    def second() -> str:
        return "2"

    with pytest.raises(az.ConfigurationError,
                       match=r"tool 'first' and tool 'second' both map to action 'act'"):
        generate_schema(SIMPLE_STUB, tools=[first, second], principal_types=["User"])


def test_guarded_tool_and_mcp_tool_with_one_name_are_rejected() -> None:
    authz = authorizer()

    @authz.guard
    def search(query: str) -> str:
        return query

    with pytest.raises(az.ConfigurationError, match=r"tool 'search' and MCP tool 'search'"):
        generate_schema(SIMPLE_STUB, tools=[search], mcp_tools=[mcp("search", {})],
                        principal_types=["User"])


def test_output_is_the_same_whatever_the_order_of_the_tools() -> None:
    tools = [mcp("b", {"x": {"type": "string"}}), mcp("a", {"y": {"type": "integer"}})]
    first = generate_schema(SIMPLE_STUB, mcp_tools=tools, principal_types=["User"])
    assert first == generate_schema(SIMPLE_STUB, mcp_tools=tools[::-1], principal_types=["User"])


# -- principals, namespaces, session --------------------------------------------------------


def test_principal_types_default_to_entities_annotated_mcp_principal() -> None:
    stub = '@mcp_principal("User") entity User; @mcp_principal entity Agent; entity Tool;'
    schema = generate_schema(stub, mcp_tools=[mcp("t", {})])
    assert "principal: [User, Agent]" in schema  # in the stub's order


def test_no_principal_types_is_an_error_saying_how_to_name_them() -> None:
    with pytest.raises(az.ConfigurationError, match=r"no principal types.*--principal-type.*@mcp_principal"):
        generate_schema(SIMPLE_STUB, mcp_tools=[mcp("t", {})])


def test_undeclared_entity_types_are_errors_naming_role_and_tool() -> None:
    with pytest.raises(az.ConfigurationError,
                       match=r"entity type 'Person' \(principal type\) is not declared"):
        generate_schema(SIMPLE_STUB, mcp_tools=[mcp("t", {})], principal_types=["Person"])
    with pytest.raises(az.ConfigurationError,
                       match=r"entity type 'Gadget' \(resource type of MCP tool 't'\) is not declared"):
        generate_schema(SIMPLE_STUB, mcp_tools=[mcp("t", {})], principal_types=["User"],
                        tool_type="Gadget")


def test_actions_go_into_the_namespace_the_stub_uses() -> None:
    stub = "namespace Shop { entity User; entity Tool; }"
    schema = generate_schema(stub, mcp_tools=[mcp("buy", {})], principal_types=["User"])
    assert schema.startswith("namespace Shop {")
    assert schema.count("namespace") == 1
    assert '  action "buy" appliesTo {' in schema
    cedarpy.Schema.from_str(schema)


def test_types_may_be_qualified_or_declared_at_the_top_level() -> None:
    stub = "entity Tool; namespace Shop { entity User; }"
    schema = generate_schema(stub, mcp_tools=[mcp("buy", {})], principal_types=["Shop::User"])
    assert "principal: [Shop::User]" in schema and "resource: [Tool]" in schema


def test_explicit_namespace_that_the_stub_lacks_is_created() -> None:
    schema = generate_schema(SIMPLE_STUB, mcp_tools=[mcp("buy", {})], principal_types=["User"],
                             namespace="Agents")
    assert 'namespace Agents {\n  action "buy"' in schema
    entities = json.loads(str(cedarpy.Entities.from_json_str("[]", cedarpy.Schema.from_str(schema))))
    assert [e["uid"] for e in entities] == [{"type": "Agents::Action", "id": "buy"}]


def test_stub_with_several_namespaces_needs_an_explicit_namespace() -> None:
    stub = "namespace A { entity User; entity Tool; } namespace B { entity User; entity Tool; }"
    with pytest.raises(az.ConfigurationError, match=r"namespaces A, B: choose one.*--namespace"):
        generate_schema(stub, mcp_tools=[mcp("t", {})], principal_types=["User"])
    schema = generate_schema(stub, mcp_tools=[mcp("t", {})], principal_types=["User"], namespace="B")
    assert schema.index('action "t"') > schema.index("namespace B")


def test_invalid_namespace_name_is_rejected() -> None:
    with pytest.raises(az.ConfigurationError, match=r"namespace 'a b' is not a Cedar namespace path"):
        generate_schema(SIMPLE_STUB, mcp_tools=[mcp("t", {})], principal_types=["User"], namespace="a b")


def test_session_is_optional_context_when_the_stub_declares_the_session_type() -> None:
    stub = SIMPLE_STUB + " type Session = { seen: Set<String> };"
    with_session = generate_schema(stub, mcp_tools=[mcp("t", {})], principal_types=["User"])
    assert "session?: Session" in with_session
    without = generate_schema(SIMPLE_STUB, mcp_tools=[mcp("t", {})], principal_types=["User"])
    assert "session" not in without
    disabled = generate_schema(stub, mcp_tools=[mcp("t", {})], principal_types=["User"], session_type=None)
    assert "session?" not in disabled


def test_custom_session_type_must_be_declared() -> None:
    stub = SIMPLE_STUB + " type Facts = { seen: Set<String> };"
    schema = generate_schema(stub, mcp_tools=[mcp("t", {})], principal_types=["User"], session_type="Facts")
    assert "session?: Facts" in schema
    with pytest.raises(az.ConfigurationError, match=r"session type 'Fact' is not a common type"):
        generate_schema(stub, mcp_tools=[mcp("t", {})], principal_types=["User"], session_type="Fact")


def test_mcp_context_annotation_adds_a_required_context_attribute_as_upstream() -> None:
    stub = SIMPLE_STUB + ' @mcp_context("request") type RequestInfo = { ip: ipaddr };'
    schema = generate_schema(stub, mcp_tools=[mcp("t", {})], principal_types=["User"])
    assert "request: RequestInfo" in schema


# -- actions the stub already declares ----------------------------------------------------


CONFLICT_STUB = """
entity User; entity Tool;
action tools;
@doc("searches")
action search in [Action::"tools"] appliesTo { principal: User, resource: Tool };
"""


def test_declared_action_is_replaced_keeping_its_groups_and_annotations() -> None:
    schema = generate_schema(CONFLICT_STUB, mcp_tools=[mcp("search", {"q": {"type": "string"}})],
                             principal_types=["User"])
    assert schema.count('action "search"') == 1
    assert '@doc("searches")\naction "search" in [Action::"tools"] appliesTo {' in schema
    assert "q?: String" in schema
    entities = json.loads(str(cedarpy.Entities.from_json_str("[]", cedarpy.Schema.from_str(schema))))
    search = next(e for e in entities if e["uid"]["id"] == "search")
    assert search["parents"] == [{"type": "Action", "id": "tools"}]


def test_declared_action_is_an_error_when_replacing_is_refused() -> None:
    with pytest.raises(az.ConfigurationError,
                       match=r"already declares action 'search' at the top level for MCP tool 'search'"):
        generate_schema(CONFLICT_STUB, mcp_tools=[mcp("search", {})], principal_types=["User"],
                        existing="error")


def test_existing_must_be_replace_or_error() -> None:
    with pytest.raises(az.ConfigurationError, match="existing must be"):
        generate_schema(SIMPLE_STUB, principal_types=["User"], existing="merge")  # type: ignore[arg-type]


def test_action_of_the_same_name_in_another_namespace_is_no_conflict() -> None:
    stub = ("namespace Old { entity User; entity Tool; "
            "action t appliesTo {principal: User, resource: Tool}; }"
            " namespace New { entity User; entity Tool; }")
    schema = generate_schema(stub, mcp_tools=[mcp("t", {})], principal_types=["User"], namespace="New",
                             existing="error")
    actions = json.loads(str(cedarpy.Entities.from_json_str("[]", cedarpy.Schema.from_str(schema))))
    assert sorted(entity["uid"]["type"] for entity in actions) == ["New::Action", "Old::Action"]


# -- stub formats ---------------------------------------------------------------------------


def test_json_stub_gives_json_with_the_actions_merged() -> None:
    stub = {"Shop": {
        "entityTypes": {"User": {}, "Tool": {}},
        "actions": {"group": {}, "buy": {"memberOf": [{"id": "group"}]}},
        "commonTypes": {"Session": {"type": "Record", "attributes": {}}},
    }}
    text = generate_schema(stub, mcp_tools=[mcp("buy", {"n": {"type": "integer"}}, ["n"])],
                           principal_types=["User"])
    document = json.loads(text)
    cedarpy.Schema.from_json_str(text)
    assert document["Shop"]["actions"]["buy"] == {
        "memberOf": [{"id": "group"}],
        "appliesTo": {
            "principalTypes": ["User"],
            "resourceTypes": ["Tool"],
            "context": {"type": "Record", "attributes": {
                "input": {"type": "Record", "attributes": {"n": LONG}},
                "session": {"type": "Session", "required": False},
            }},
        },
    }
    again = generate_schema(json.dumps(stub), mcp_tools=[mcp("buy", {"n": {"type": "integer"}}, ["n"])],
                            principal_types=["User"])
    assert json.loads(again) == document


def test_json_and_text_stubs_give_the_same_schema() -> None:
    text_stub = "namespace S { @mcp_principal entity User; entity Tool; type Session = {seen: Set<String>}; }"
    json_stub = {"S": {"entityTypes": {"User": {"annotations": {"mcp_principal": ""}}, "Tool": {}},
                       "actions": {},
                       "commonTypes": {"Session": {"type": "Record", "attributes": {
                           "seen": {"type": "Set", "element": {"type": "String"}}}}}}}
    tools = [mcp("t", {"a": {"type": "number"}, "b": {"type": "array", "items": {"type": "boolean"}}}, ["b"])]
    from_text = generate_schema(text_stub, mcp_tools=tools)
    from_json = generate_schema(json_stub, mcp_tools=tools)
    # cedarpy renders JSON primitives fully qualified (__cedar::String)
    assert (str(cedarpy.Schema.from_json_str(from_json)).replace("__cedar::", "")
            == str(cedarpy.Schema.from_str(from_text)))


def test_stub_path_is_read_by_its_suffix(tmp_path: Path) -> None:
    (tmp_path / "stub.cedarschema").write_text(SIMPLE_STUB)
    (tmp_path / "stub.cedarschema.json").write_text(json.dumps(_json_stub(SIMPLE_STUB)))
    text = generate_schema(tmp_path / "stub.cedarschema", mcp_tools=[mcp("t", {})], principal_types=["User"])
    assert text.startswith(SIMPLE_STUB)  # the stub as written
    as_json_text = generate_schema(tmp_path / "stub.cedarschema.json", mcp_tools=[mcp("t", {})],
                                   principal_types=["User"])
    assert "t" in json.loads(as_json_text)[""]["actions"]


def test_stub_that_does_not_parse_is_a_policy_error() -> None:
    with pytest.raises(az.PolicyError, match=r"<stub>: .*"):
        generate_schema("entity User", mcp_tools=[mcp("t", {})], principal_types=["User"])
    with pytest.raises(az.PolicyError, match=r"<stub>:1: invalid JSON"):
        generate_schema("{nope", mcp_tools=[mcp("t", {})], principal_types=["User"])


def test_missing_stub_file_is_a_policy_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(az.PolicyError, match=r"missing\.cedarschema: cannot read"):
        generate_schema(tmp_path / "missing.cedarschema", principal_types=["User"])


def test_names_that_are_not_identifiers_are_quoted() -> None:
    tools = [mcp('say "hi"\n', {"to whom": {"type": "string"}, "if": {"type": "integer"}}, ["to whom"])]
    schema = generate_schema(SIMPLE_STUB, mcp_tools=tools, principal_types=["User"])
    parsed = cedarpy.Schema.from_str(schema)
    assert 'action "say \\"hi\\"\\n" appliesTo' in schema
    assert '"to whom": String' in schema and '"if"?: Long' in schema
    entities = json.loads(str(cedarpy.Entities.from_json_str("[]", parsed)))
    assert entities[0]["uid"]["id"] == 'say "hi"\n'


def test_builtin_type_names_the_stub_shadows_are_qualified() -> None:
    stub = SIMPLE_STUB + " type decimal = String; entity ipaddr;"
    schema = generate_schema(stub, mcp_tools=[mcp("t", {"a": {"type": "number"},
                                                         "b": {"type": "string", "format": "ipv4"},
                                                         "c": {"type": "string"}})],
                             principal_types=["User"])
    assert "a?: __cedar::decimal" in schema and "b?: __cedar::ipaddr" in schema and "c?: String" in schema


# -- the stub edited in place (issue 19) ------------------------------------------------------

COMMENTED_STUB = """// the people
@mcp_principal
entity User;   // end users

namespace Shop {
    // tools are resources
    entity Tool;

    @doc("old")
    action "buy" in [Action::"all"] appliesTo { principal: User, resource: Tool };
    action "all";

    // the conversation
    type Session = { seen: Set<String> };
}
"""


def test_the_stubs_comments_order_and_layout_are_kept() -> None:
    schema = generate_schema(COMMENTED_STUB, mcp_tools=[mcp("buy", {}), mcp("sell", {})],
                             principal_types=["User"], namespace="Shop")

    assert schema.startswith("// the people\n@mcp_principal\nentity User;   // end users\n\n"
                             "namespace Shop {\n    // tools are resources\n    entity Tool;\n\n"
                             "    @doc(\"old\")\n"
                             '    action "buy" in [Action::"all"] appliesTo {\n      principal: [User],\n')
    # the replaced action stays before `all`; the new one closes the namespace
    assert schema.index('action "buy"') < schema.index('action "all"') < schema.index(
        "// the conversation") < schema.index('action "sell"')
    assert '\n    // the conversation\n    type Session = {\n      actions: Set<String>,' in schema
    assert schema.endswith('    action "sell" appliesTo {\n      principal: [User],\n'
                           "      resource: [Tool],\n      context: {\n        input: {},\n"
                           "        session?: Session\n      }\n    };\n}\n")
    cedarpy.Schema.from_str(schema)


def test_generation_is_idempotent_on_its_own_output() -> None:
    tools = [mcp("buy", {"n": {"type": "integer"}}), mcp("sell", {})]
    once = generate_schema(COMMENTED_STUB, mcp_tools=tools, principal_types=["User"], namespace="Shop")
    assert generate_schema(once, mcp_tools=tools, principal_types=["User"], namespace="Shop") == once


def test_a_stub_without_tools_is_given_back_as_written() -> None:
    assert generate_schema(COMMENTED_STUB, principal_types=["User"], session_type=None) == COMMENTED_STUB


def _example_schemas() -> list[Path]:
    from tests.policy.test_cedar_examples import EXAMPLES

    return sorted(EXAMPLES.rglob("*.cedarschema")) if EXAMPLES.is_dir() else []


@pytest.mark.parametrize("path", _example_schemas(), ids=lambda path: path.parent.name)
def test_every_upstream_example_schema_is_read_and_kept_as_written(path: Path) -> None:
    from agentauthz.policy._schema_text import read_namespaces

    text = path.read_text(encoding="utf-8")
    spaces = read_namespaces(text)
    target = next((name for name in spaces if name), "")
    entity = sorted(spaces[target].entity_types or spaces[""].entity_types)[0]
    qualified = f"{target}::{entity}" if target and entity in spaces[target].entity_types else entity
    assert generate_schema(text, principal_types=[qualified], session_type=None) == (
        text if text.endswith("\n") else text + "\n")
    schema = generate_schema(text, mcp_tools=[mcp("agentauthz_probe", {})], principal_types=[qualified],
                             tool_type=qualified, session_type=None)
    assert schema.startswith(text.rstrip("\n")[:200])
    declared = json.loads(str(cedarpy.Entities.from_json_str("[]", cedarpy.Schema.from_str(schema))))
    assert "agentauthz_probe" in {entity["uid"]["id"] for entity in declared}


# -- MCP JSON Schema mapping --------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, STRING),
        ({"type": "integer"}, LONG),
        ({"type": "number"}, DECIMAL),
        ({"type": "boolean"}, BOOL),
        ({"type": "string", "format": "date-time"}, {"type": "Extension", "name": "datetime"}),
        ({"type": "string", "format": "date"}, {"type": "Extension", "name": "datetime"}),
        ({"type": "string", "format": "ipv4"}, {"type": "Extension", "name": "ipaddr"}),
        ({"type": "string", "format": "ipv6"}, {"type": "Extension", "name": "ipaddr"}),
        ({"type": "string", "format": "duration"}, {"type": "Extension", "name": "duration"}),
        ({"type": "string", "format": "decimal"}, DECIMAL),
        ({"type": "string", "format": "email"}, STRING),
        ({"type": "string", "enum": ["low", "high"]}, STRING),
        ({"enum": ["low", "high"]}, STRING),
        ({"const": "fixed"}, STRING),
        ({"type": "integer", "enum": [1, 2]}, LONG),
        ({"type": "array", "items": {"type": "string"}}, {"type": "Set", "element": STRING}),
        ({"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
         {"type": "Set", "element": {"type": "Set", "element": LONG}}),
        ({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
          "required": ["a"]},
         {"type": "Record", "attributes": {"a": STRING, "b": {**LONG, "required": False}}}),
        ({"properties": {"a": {"type": "string"}}, "required": ["a"]},
         {"type": "Record", "attributes": {"a": STRING}}),
        ({"type": "object", "properties": {}, "additionalProperties": False},
         {"type": "Record", "attributes": {}}),
        ({"type": "object", "properties": {"a": {"type": "boolean"}}, "additionalProperties": True,
          "required": ["a"]}, {"type": "Record", "attributes": {"a": BOOL}}),
        ({"allOf": [{"type": "integer"}]}, LONG),
    ],
    ids=lambda value: json.dumps(value)[:60] if isinstance(value, dict) and "type" in value
    and value.get("type") not in ("Record",) else None,
)
def test_mcp_property_maps_to_cedar_type(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    record = mcp_input_type(mcp("tool", {"p": schema}, ["p"]))
    assert record == {"type": "Record", "attributes": {"p": expected}}


def test_mcp_properties_not_required_are_optional() -> None:
    record = mcp_input_type(mcp("tool", {"a": {"type": "string"}, "b": {"type": "string"}}, ["a", "ghost"]))
    assert record["attributes"] == {"a": STRING, "b": {**STRING, "required": False}}


@pytest.mark.parametrize("nullable", [
    {"type": ["string", "null"]},
    {"anyOf": [{"type": "string"}, {"type": "null"}]},
    {"oneOf": [{"type": "null"}, {"type": "string"}]},
    {"anyOf": [{"type": "string"}, {"const": None}]},
])
def test_mcp_nullable_property_is_an_optional_attribute(nullable: dict[str, Any]) -> None:
    record = mcp_input_type(mcp("tool", {"p": nullable}, ["p"]))
    assert record["attributes"]["p"] == {**STRING, "required": False}


def test_mcp_local_refs_are_inlined_as_pydantic_writes_them() -> None:
    tool = {"name": "order", "inputSchema": {
        "type": "object",
        "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}},
                              "required": ["city"]},
                  "Item": {"type": "object", "properties": {"sku": {"type": "string"},
                                                            "ship_to": {"$ref": "#/$defs/Address"}},
                           "required": ["sku"]}},
        "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
                       "billing": {"allOf": [{"$ref": "#/$defs/Address"}], "default": None}},
        "required": ["items"],
    }}
    address = {"type": "Record", "attributes": {"city": STRING}}
    assert mcp_input_type(tool) == {"type": "Record", "attributes": {
        "items": {"type": "Set", "element": {"type": "Record", "attributes": {
            "sku": STRING, "ship_to": {**address, "required": False}}}},
        "billing": {**address, "required": False},
    }}


@pytest.mark.parametrize("input_schema", [{"type": "object"}, {"type": "object", "properties": {}}, {}])
def test_mcp_tool_without_arguments_has_an_empty_input_record(input_schema: dict[str, Any]) -> None:
    empty = {"type": "Record", "attributes": {}}
    assert mcp_input_type({"name": "ping", "inputSchema": input_schema}) == empty


@pytest.mark.parametrize(
    ("schema", "path", "fragment"),
    [
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "p", "oneOf of several types"),
        ({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}, "p",
         "anyOf of several types"),
        ({"type": ["string", "integer"]}, "p", "a union of types"),
        ({"type": "object"}, "p", "object without properties"),
        ({"type": "object", "additionalProperties": {"type": "string"}}, "p", "object without properties"),
        ({"type": "array"}, "p", "needs an items schema"),
        ({"type": "array", "items": [{"type": "string"}]}, "p", "needs an items schema"),
        ({"type": "array", "items": {"type": "object"}}, "p[]", "object without properties"),
        ({"description": "anything"}, "p", "has no type"),
        ({}, "p", "has no type"),
        ({"type": "null"}, "p", "type 'null' has no Cedar equivalent"),
        ({"$ref": "https://example.com/x.json"}, "p", "only local $ref"),
        ({"$ref": "#/$defs/Missing"}, "p", "points nowhere"),
        ({"allOf": [{"type": "string"}, {"minLength": 1}]}, "p", "allOf of several schemas"),
        ({"enum": ["a", 1]}, "p", "only strings or only integers"),
        ({"type": "string", "enum": []}, "p", "non-empty list"),
        ({"type": "object", "properties": {"inner": {"type": "object", "properties": {
            "deep": {"oneOf": [{"type": "string"}, {"type": "boolean"}]}}}}}, "p.inner.deep", "oneOf"),
    ],
)
def test_unmappable_mcp_property_is_an_error_naming_tool_and_property_path(
    schema: dict[str, Any], path: str, fragment: str
) -> None:
    with pytest.raises(az.ConfigurationError) as info:
        mcp_input_type(mcp("fetch", {"p": schema}))
    message = str(info.value)
    assert message.startswith(f"MCP tool 'fetch' property '{path}': ")
    assert fragment in message


def test_recursive_ref_is_an_error() -> None:
    tool = {"name": "tree", "inputSchema": {
        "type": "object", "properties": {"node": {"$ref": "#/$defs/Node"}},
        "$defs": {"Node": {"$ref": "#/$defs/Node"}}}}
    with pytest.raises(az.ConfigurationError, match=r"MCP tool 'tree' property 'node': recursive \$ref"):
        mcp_input_type(tool)


@pytest.mark.parametrize(
    ("tool", "fragment"),
    [
        ({"description": "x", "inputSchema": {}}, 'without a "name"'),
        ({"name": "", "inputSchema": {}}, 'without a "name"'),
        ({"name": "t"}, "MCP tool 't': needs an inputSchema object"),
        ({"name": "t", "inputSchema": {"type": "string"}},
         "MCP tool 't' inputSchema: must be an object schema"),
    ],
)
def test_malformed_mcp_description_is_an_error(tool: dict[str, Any], fragment: str) -> None:
    with pytest.raises(az.ConfigurationError, match=fragment.replace("(", r"\(")):
        mcp_input_type(tool)


@pytest.mark.parametrize("data", [
    [{"name": "a", "inputSchema": {}}],
    {"tools": [{"name": "a", "inputSchema": {}}]},
    {"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "a", "inputSchema": {}}]}},
])
def test_mcp_tool_lists_are_read_in_every_usual_shape(data: Any) -> None:
    assert [tool["name"] for tool in read_mcp_tools(data)] == ["a"]


@pytest.mark.parametrize("data", [{"name": "a"}, "tools", [1]])
def test_mcp_tool_list_of_another_shape_is_an_error(data: Any) -> None:
    with pytest.raises(az.ConfigurationError, match="MCP tools"):
        read_mcp_tools(data)


# -- agreement with cedar-policy-mcp-schema-generator ---------------------------------------

UPSTREAM = "cedar_mcp_schema_generator"
requires_upstream = pytest.mark.skipif(
    importlib.util.find_spec(UPSTREAM) is None,
    reason="cedar-policy-mcp-schema-generator is not installed (pip install 'agentauthz[test]'); "
           "the agreement with the upstream MCP schema generator is not checked",
)
UPSTREAM_CONFIG = {"numbersAsDecimal": True, "objectsAsRecords": True}
AGREEMENT_STUB = """
namespace Server {
  @mcp_principal("User")
  entity User;
  @mcp_resource("McpServer")
  entity McpServer;
  @mcp_context("session")
  type Session = { seen: Set<String> };
}
"""
AGREEMENT_TOOLS: list[dict[str, Any]] = [
    mcp("primitives", {"s": {"type": "string"}, "i": {"type": "integer"}, "n": {"type": "number"},
                       "b": {"type": "boolean"}}, ["s", "n"]),
    mcp("collections", {"tags": {"type": "array", "items": {"type": "string"}},
                        "matrix": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
                        "people": {"type": "array", "items": {"type": "object", "properties": {
                            "name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name"]}}},
        ["tags"]),
    mcp("nested", {"filter": {"type": "object", "properties": {
        "owner": {"type": "string"},
        "range": {"type": "object", "properties": {"from": {"type": "integer"}, "to": {"type": "integer"}},
                  "required": ["from"]},
        "empty": {"type": "object", "properties": {}, "additionalProperties": False}},
        "required": ["owner"], "additionalProperties": True}}, ["filter"]),
    mcp("formats", {"at": {"type": "string", "format": "date-time"},
                    "day": {"type": "string", "format": "date"},
                    "v4": {"type": "string", "format": "ipv4"}, "v6": {"type": "string", "format": "ipv6"},
                    "for": {"type": "string", "format": "duration"},
                    "price": {"type": "string", "format": "decimal"},
                    "mail": {"type": "string", "format": "email"}}, ["at", "v4"]),
    mcp("integer_enum", {"level": {"type": "integer", "enum": [1, 2, 3]}}, ["level"]),
    mcp("required_but_undeclared", {"a": {"type": "string"}}, ["a", "ghost"]),
    {"name": "no_arguments", "description": "x", "inputSchema": {"type": "object"}},
    {"name": "refs", "description": "x", "inputSchema": {
        "type": "object", "$defs": {"Point": {"type": "object", "properties": {
            "x": {"type": "number"}, "y": {"type": "number"}}, "required": ["x", "y"]}},
        "properties": {"at": {"$ref": "#/$defs/Point"},
                       "path": {"type": "array", "items": {"$ref": "#/$defs/Point"}}},
        "required": ["at"]}},
]
_EXTENSIONS = {"decimal", "datetime", "duration", "ipaddr"}
_PRIMITIVE_NAMES = {"String": "String", "Long": "Long", "Bool": "Boolean", "Boolean": "Boolean"}


def _normal(cedar: dict[str, Any], namespace: str, document: dict[str, Any]) -> dict[str, Any]:
    """A Cedar JSON-schema type with common types inlined and names spelled one way."""
    kind = cedar["type"]
    if kind in ("EntityOrCommon", "Entity"):
        return _resolve(cedar["name"], namespace, document)
    if kind in ("Long", "String", "Boolean"):
        return {"type": kind}
    if kind == "Extension":
        return {"type": "Extension", "name": cedar["name"]}
    if kind == "Set":
        return {"type": "Set", "element": _normal(cedar["element"], namespace, document)}
    if kind == "Record":
        attributes = {}
        for name, attribute in cedar["attributes"].items():
            normal = _normal(attribute, namespace, document)
            if attribute.get("required", True) is False:
                normal["required"] = False
            attributes[name] = normal
        return {"type": "Record", "attributes": attributes}
    return _resolve(kind, namespace, document)


def _resolve(name: str, namespace: str, document: dict[str, Any]) -> dict[str, Any]:
    if name in _PRIMITIVE_NAMES:
        return {"type": _PRIMITIVE_NAMES[name]}
    if name in _EXTENSIONS:
        return {"type": "Extension", "name": name}
    space, _, local = name.rpartition("::") if "::" in name else (namespace, "", name)
    common = document.get(space, {}).get("commonTypes", {})
    if local in common:
        return _normal(common[local], space, document)
    return {"type": "Entity", "name": f"{space}::{local}" if space else local}


def _normal_actions(schema_json: str, namespace: str) -> dict[str, Any]:
    document = json.loads(schema_json)
    result = {}
    for name, action in document[namespace]["actions"].items():
        applies = action["appliesTo"]
        result[name] = {
            "principal": sorted(t.rpartition("::")[2] for t in applies["principalTypes"]),
            "resource": sorted(t.rpartition("::")[2] for t in applies["resourceTypes"]),
            "context": _normal(applies["context"], namespace, document),
        }
    return result


def _upstream(tools: list[dict[str, Any]]) -> dict[str, Any]:
    generator = importlib.import_module(UPSTREAM)
    result: dict[str, Any] = generator.generate_schema(AGREEMENT_STUB, tools, config=UPSTREAM_CONFIG)
    return result


def _ours_json(tools: list[dict[str, Any]]) -> str:
    stub = {"Server": {
        "entityTypes": {"User": {"annotations": {"mcp_principal": "User"}},
                        "McpServer": {"annotations": {"mcp_resource": "McpServer"}}},
        "actions": {},
        "commonTypes": {"Session": {"type": "Record", "attributes": {
            "seen": {"type": "Set", "element": {"type": "String"}}},
            "annotations": {"mcp_context": "session"}}},
    }}
    return generate_schema(stub, mcp_tools=tools, tool_type="McpServer")


@requires_upstream
def test_agrees_with_upstream_generator_on_actions_principals_resources_and_context_types() -> None:
    upstream = _upstream(AGREEMENT_TOOLS)
    assert upstream["isOk"], upstream["error"]
    theirs = _normal_actions(upstream["schemaJson"], "Server")
    ours = _normal_actions(_ours_json(AGREEMENT_TOOLS), "Server")
    assert sorted(ours) == sorted(theirs) == sorted(tool["name"] for tool in AGREEMENT_TOOLS)
    for name in theirs:
        assert ours[name] == theirs[name], name


@requires_upstream
def test_text_stub_gives_the_same_actions_as_upstream_generator() -> None:
    ours_text = generate_schema(AGREEMENT_STUB, mcp_tools=AGREEMENT_TOOLS, tool_type="McpServer")
    from_json = str(cedarpy.Schema.from_json_str(_ours_json(AGREEMENT_TOOLS)))
    assert from_json.replace("__cedar::", "") == str(cedarpy.Schema.from_str(ours_text))


@requires_upstream
@pytest.mark.parametrize(
    ("name", "schema"),
    [
        ("string_enum", {"type": "string", "enum": ["a", "b"]}),  # upstream: an enumerated entity type
        ("nullable", {"type": ["string", "null"]}),  # upstream: record of typeChoice0/typeChoice1
    ],
)
def test_documented_divergence_where_we_choose_a_plain_type(name: str, schema: dict[str, Any]) -> None:
    tools = [mcp(name, {"p": schema}, ["p"])]
    upstream = _upstream(tools)
    assert upstream["isOk"], upstream["error"]
    theirs = _normal_actions(upstream["schemaJson"], "Server")[name]["context"]["attributes"]["input"]
    ours = mcp_input_type(tools[0])
    assert ours["attributes"]["p"]["type"] == "String"
    assert theirs != ours


@requires_upstream
@pytest.mark.parametrize(
    ("name", "schema"),
    [
        ("union", {"oneOf": [{"type": "string"}, {"type": "integer"}]}),  # upstream: typeChoice record
        ("free_form", {"type": "object", "additionalProperties": {"type": "string"}}),  # upstream: tags
        ("untyped", {"description": "anything"}),  # upstream: an Unknown entity type
        ("items_missing", {"type": "array"}),  # upstream: Set<Unknown>
    ],
)
def test_documented_divergence_where_upstream_invents_a_type_and_we_refuse(
    name: str, schema: dict[str, Any]
) -> None:
    tools = [mcp(name, {"p": schema}, ["p"])]
    assert _upstream(tools)["isOk"]
    with pytest.raises(az.ConfigurationError, match=f"MCP tool '{name}' property 'p'"):
        mcp_input_type(tools[0])


@requires_upstream
def test_documented_divergence_names_that_are_not_identifiers() -> None:
    tools = [mcp("has-dash", {"with space": {"type": "string"}})]
    assert not _upstream(tools)["isOk"]  # upstream builds type names from tool names
    cedarpy.Schema.from_json_str(_ours_json(tools))


# -- a registered tool the schema lacks (security review, issue 14, finding 12) ------------------

MISSING_TEXT_SCHEMA = """// the store's schema
entity User;
entity Tool;
type Session = { seen: Set<String> };

action search appliesTo {
  principal: [User],
  resource: [Tool],
  context: { input: { query: String }, session?: Session }
};
"""
MISSING_NAMESPACED_SCHEMA = """namespace Shop {
  entity User;
  entity Tool;
  action search appliesTo {
    principal: [User],
    resource: [Tool],
    context: { input: { query: String } }
  };
}
"""
MISSING_JSON_SCHEMA = """{
  "": {
    "entityTypes": {"User": {}, "Tool": {}},
    "actions": {
      "search": {
        "appliesTo": {
          "principalTypes": ["User"],
          "resourceTypes": ["Tool"],
          "context": {"type": "Record", "attributes": {
            "input": {"type": "Record", "attributes": {"query": {"type": "String"}}}}}
        }
      }
    }
  }
}
"""


def _missing_store(tmp_path: Path, schema: str, name: str = "schema.cedarschema") -> Path:
    root = tmp_path / "store"
    root.mkdir()
    (root / name).write_text(schema, encoding="utf-8")
    (root / "policies.cedar").write_text('@id("all") permit(principal, action, resource);\n',
                                         encoding="utf-8")
    return root


def _tools_on(authz: az.Authorizer) -> list[Any]:
    @authz.guard
    def search(query: str) -> str:
        return "results"

    @authz.guard
    def send_email(to: str, subject: str) -> str:
        return "sent"

    @authz.guard(action="delete_all")
    def wipe() -> str:
        return "wiped"

    return [search, send_email, wipe]


def _apply(schema_file: Path, problems: Sequence[str], *, json_member: bool = False) -> None:
    """Add every suggested declaration at its suggested line, as a reader of the message would."""
    lines = schema_file.read_text(encoding="utf-8").splitlines()
    additions = []
    for problem in problems:
        location, _, rest = problem.partition(": tool ")
        line = int(location.rsplit(":", 1)[1])
        declaration = rest.split("add: ", 1)[1]
        additions.append((line, declaration + ("," if json_member else "")))
    for line, declaration in sorted(additions, reverse=True):
        lines.insert(line - 1, declaration)
    schema_file.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize(("schema", "name", "namespace"), [
    (MISSING_TEXT_SCHEMA, "schema.cedarschema", None),
    (MISSING_NAMESPACED_SCHEMA, "schema.cedarschema", "Shop"),
    (MISSING_JSON_SCHEMA, "schema.cedarschema.json", None),
], ids=["text", "namespace", "json"])
def test_validate_tools_names_every_tool_without_a_schema_action_with_the_line_and_declaration_to_add(
    tmp_path: Path, schema: str, name: str, namespace: str | None,
) -> None:
    root = _missing_store(tmp_path, schema, name)
    tool_type = f"{namespace}::Tool" if namespace else "Tool"
    authz = az.Authorizer.from_directory(root, audit=[], tool_entity_type=tool_type)
    tools = _tools_on(authz)
    user = az.EntityUID(f"{namespace}::User" if namespace else "User", "u")
    with authz.acting_as(user):
        assert authz.permitted_tools(tools) == tools[:1]  # the finding: the others silently hidden

    with pytest.raises(az.PolicyError) as report:
        authz.validate_tools(principal_types=["User"])
    problems = report.value.problems
    assert len(problems) == 2  # every missing tool, at once
    expected_line = {"text": 11, "namespace": 9, "json": 5}["json" if name.endswith(".json") else
                                                           "namespace" if namespace else "text"]
    for problem, tool, action in zip(problems, ("send_email", "wipe"), ("send_email", "delete_all"),
                                     strict=True):
        assert problem.startswith(f"{name}:{expected_line}: tool '{tool}' has no action in the schema")
        declaration = (f'"{action}": {{"appliesTo"' if name.endswith(".json")
                       else f'action "{action}" appliesTo {{')
        assert f"add: {declaration}" in problem

    _apply(root / name, problems, json_member=name.endswith(".json"))
    fixed = az.Authorizer.from_directory(root, audit=[], tool_entity_type=tool_type)
    tools = _tools_on(fixed)
    fixed.validate_tools(principal_types=["User"])
    with fixed.acting_as(user):
        assert fixed.permitted_tools(tools) == tools
        assert fixed.authorize_tool_call(tools[1], {"to": "a@b.example", "subject": "s"}).allowed


def test_validate_tools_reports_missing_actions_unfilled_facts_and_invalid_policies_in_one_error(
    tmp_path: Path,
) -> None:
    root = _missing_store(tmp_path, MISSING_TEXT_SCHEMA.replace(
        "seen: Set<String>", "seen: Set<String>, totals: { search: { pages: Long } }"))
    (root / "policies.cedar").write_text(
        '@id("all") permit(principal, action, resource);\n'
        '@id("typo") forbid(principal, action == Action::"search", resource) '
        'when { context.input.querry == "x" };\n', encoding="utf-8")
    store = az.PolicyStore.from_directory(root, validate=False)  # the typo is validate_tools' to find
    authz = az.Authorizer(LocalEngine(store), audit=[], sessions=SessionConfig())
    _tools_on(authz)
    with pytest.raises(az.PolicyError) as report:
        authz.validate_tools(principal_types=["User"])
    problems = report.value.problems
    assert [p.split(":")[0] for p in problems] == ["schema.cedarschema"] * 3 + ["policies.cedar"]
    assert "tool 'send_email' has no action" in problems[0] and "tool 'wipe' has no action" in problems[1]
    assert "context.session.totals.search.pages is never filled" in problems[2]
    assert problems[3].startswith("policies.cedar:2:") and "querry" in problems[3]


def _register_with_guard(authz: az.Authorizer) -> None:
    @authz.guard
    def send_email(to: str, subject: str) -> str:
        return "sent"


def _register_with_authorize_tools(authz: az.Authorizer) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.tools import tool

    from agentauthz.integrations.langchain import authorize_tools

    @tool
    def send_email(to: str, subject: str) -> str:
        """Send an email."""
        return "sent"

    authorize_tools([send_email], authz)


def _register_with_bedrock(authz: az.Authorizer, as_spec: bool) -> None:
    from agentauthz.integrations.bedrock import action_group_handler

    elsewhere = authorizer()  # a tool guarded on another Authorizer: only the handler hands it over

    @elsewhere.guard
    def send_email(to: str, subject: str) -> str:
        return "sent"

    given: Any = elsewhere.tools["send_email"] if as_spec else send_email

    @action_group_handler(authz, principal=lambda event: az.EntityUID("User", "u"), tools=[given])
    def handler(event: dict[str, Any], context: Any) -> str:
        return "done"


REGISTRATIONS = {
    "guard": _register_with_guard,
    "langchain-authorize_tools": _register_with_authorize_tools,
    "bedrock-guarded-tool": lambda authz: _register_with_bedrock(authz, as_spec=False),
    "bedrock-tool-spec": lambda authz: _register_with_bedrock(authz, as_spec=True),
}


@pytest.mark.parametrize("path", sorted(REGISTRATIONS))
def test_every_registration_path_has_its_tool_without_a_schema_action_reported(
    tmp_path: Path, path: str,
) -> None:
    authz = az.Authorizer.from_directory(_missing_store(tmp_path, MISSING_TEXT_SCHEMA), audit=[])
    REGISTRATIONS[path](authz)
    with pytest.raises(az.PolicyError) as report:
        authz.validate_tools(principal_types=["User"])
    assert [p.split(": add: ")[0] for p in report.value.problems] == [
        "schema.cedarschema:11: tool 'send_email' has no action in the schema, "
        "so no call of it can be decided"]
