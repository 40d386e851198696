"""ToolSpec.from_json_schema on malformed schemas: a ConfigurationError naming the problem, nothing else.

The property, over arbitrary JSON-ish schemas (often close to valid, often
broken somewhere): building a spec either raises ConfigurationError or gives
a spec whose validated arguments round-trip: validating them again (as the
tool's own model would dump them) gives the same arguments, and they have a
Cedar form. A raw pydantic error, KeyError or TypeError is a defect.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz._model import to_cedar_value
from agentauthz.tools._spec import tool_input
from tests.strategies import json_schemas

_NAMES = st.sampled_from(("to", "amount", "tags", "model_config", "_hidden", "schema", ""))
_object_schemas = st.builds(
    lambda properties, extra: {**extra, "type": "object", "properties": properties},
    st.dictionaries(_NAMES, json_schemas, max_size=4),
    st.dictionaries(st.sampled_from(("required", "$defs", "definitions", "additionalProperties")),
                    st.one_of(st.lists(_NAMES, max_size=3), json_schemas,
                              st.dictionaries(st.sampled_from(("a", "b")), json_schemas, max_size=2)),
                    max_size=2),
)
_candidate_arguments = st.dictionaries(
    _NAMES, st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3),
                                   st.sampled_from(("5", "true", "a", "b"))),
                         lambda inner: st.one_of(st.lists(inner, max_size=2),
                                                 st.dictionaries(_NAMES, inner, max_size=2)), max_leaves=4),
    max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=st.one_of(json_schemas, _object_schemas), candidates=st.lists(_candidate_arguments, max_size=4))
def test_from_json_schema_builds_a_round_tripping_spec_or_raises_a_configuration_error(
        schema: Any, candidates: list[dict[str, Any]]) -> None:
    try:
        spec = az.ToolSpec.from_json_schema("tool", schema)
    except az.ConfigurationError as exc:
        assert "tool 'tool'" in str(exc)
        return
    # The Cedar type schema generation declares is the type of context.input. Generation is stricter in
    # places (an enum holding null): no schema then, so nothing to disagree with.
    with contextlib.suppress(az.ConfigurationError):
        assert az.mcp_input_type({"name": "tool", "inputSchema": schema}) == spec.input_type
    for candidate in candidates:
        try:
            arguments = spec.arguments(candidate)
        except az.InvalidValueError:
            continue
        dumped = spec.validate(arguments).model_dump(exclude_unset=True)
        assert spec.arguments(dumped) == arguments
        assert spec.arguments(arguments) == arguments
        to_cedar_value(tool_input(arguments))


@pytest.mark.parametrize(("schema", "problem"), [
    ({"type": "object", "$defs": [], "properties": {}}, r"\$defs must be an object"),
    ({"type": "object", "definitions": "x", "properties": {}}, "definitions must be an object"),
    ({"type": "object", "properties": {"n": {"type": "integer", "default": "many"}}},
     "'n': its default does not match its type"),
    ({"type": "object", "properties": {"n": {"type": "integer", "default": 2**70}}},
     "'n': its default does not match its type"),
    ({"type": "object", "properties": {"n": {"type": "thing"}}}, "type 'thing' has no Cedar equivalent"),
    ({"type": "object", "properties": {"n": {"type": {"a": 1}}}}, "type must be a type name"),
    ({"type": "object", "properties": {"n": {"$ref": "#/$defs/n"}}, "$defs": {"n": {"$ref": "#/$defs/n"}}},
     "nests too deeply"),
    ({"type": "object", "properties": {"n": {"$ref": "#/$defs/missing"}}}, "unresolved \\$ref"),
    ({"type": "object", "properties": {"n": {"$ref": "https://example.com/n"}}}, "only local refs"),
    ({"type": "object", "properties": {"n": {"$ref": 5}}}, "unresolved \\$ref"),
    ({"type": "object", "properties": ["n"]}, "properties must be an object"),
    ({"type": "object", "properties": {"n": []}}, "is not a JSON Schema object"),
    ({"type": "object", "properties": {"n": {"type": "string"}}, "required": "n"}, "required must be a list"),
    ({"type": "object", "properties": {"n": {"anyOf": {"type": "string"}}}},
     "anyOf must be a non-empty list"),
    ({"type": "object", "properties": {1: {"type": "string"}}}, "property names must be strings"),
])
def test_a_malformed_schema_is_a_configuration_error_naming_the_problem(schema: Any, problem: str) -> None:
    with pytest.raises(az.ConfigurationError, match=problem):
        az.ToolSpec.from_json_schema("tool", schema)


@pytest.mark.parametrize("schema", [
    {"anyOf": [{"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]}]},
    {"$ref": "#/$defs/args", "$defs": {"args": {"type": "object", "properties": {"to": {"type": "string"}},
                                                "required": ["to"]}}},
    {"allOf": [{"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]}]},
])
def test_a_top_level_wrapper_of_the_arguments_object_is_followed_as_schema_generation_follows_it(
        schema: dict[str, Any]) -> None:
    spec = az.ToolSpec.from_json_schema("tool", schema)
    assert spec.input_type == az.mcp_input_type({"name": "tool", "inputSchema": schema})
    assert spec.arguments({"to": "x"}) == {"to": "x"}


def test_a_top_level_union_of_several_objects_is_a_configuration_error() -> None:
    with pytest.raises(az.ConfigurationError, match="one object schema, not a anyOf of several"):
        az.ToolSpec.from_json_schema("tool", {"anyOf": [{"type": "object"}, {"type": "object"}]})


def test_a_valid_default_is_what_the_policy_sees_when_the_model_leaves_the_argument_out() -> None:
    spec = az.ToolSpec.from_json_schema("tool", {"type": "object", "properties": {
        "n": {"type": "integer", "default": "5"}, "tags": {"type": "array", "items": {"type": "string"},
                                                          "default": ["a"]}}})
    assert spec.arguments({}) == {"n": 5, "tags": ["a"]}
