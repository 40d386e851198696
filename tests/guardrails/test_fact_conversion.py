"""The guardrail fact converted to Cedar JSON once per assessment (``_model.CedarRecord``).

A request carries ``context.guardrail.input`` as the assessment's record, whose
Cedar JSON was worked out when the assessment was first used: it must be, byte
for byte, what converting the fact with the request would give, and nothing may
change it afterwards.
"""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz._model import MAX_VALUE_DEPTH, CedarRecord, Request, to_cedar_value
from agentauthz.guardrails._detector import Source
from agentauthz.guardrails._guardrail import INPUT_FACT_TYPE, Assessment
from tests.strategies import attribute_maps, fact_findings

USER, TOOL = az.EntityUID("User", "u"), az.EntityUID("Tool", "send")
ATTRIBUTES = sorted(INPUT_FACT_TYPE["attributes"])


def _request(fact: Any) -> Request:
    return Request(USER, "send", TOOL, {"input": {"body": "hi"}, "guardrail": {"input": fact}})


@settings(max_examples=200, deadline=None)
@given(findings=fact_findings, available=st.booleans(), omitted=st.sets(st.sampled_from(ATTRIBUTES)))
def test_the_fact_converted_once_is_exactly_the_fact_converted_with_each_request(
        findings: list[az.Finding], available: bool, omitted: set[str]) -> None:
    assessment = Assessment(tuple(findings), available, "t")
    record = assessment.input_record(frozenset(omitted))
    fact = assessment.fact(omitted)
    once, per_request = _request(record), _request(fact)
    assert once.cedar_context == per_request.cedar_context
    assert json.dumps(once.cedar_context) == json.dumps(per_request.cedar_context)  # key order too
    assert once.to_cedar() == per_request.to_cedar()
    assert dict(record) == {name: tuple(value) if isinstance(value, list) else value
                            for name, value in fact.items()}
    assert assessment.input_record(frozenset(omitted)) is record  # built once, shared by every call


@settings(max_examples=200, deadline=None)
@given(value=attribute_maps)
def test_a_cedar_record_converts_exactly_like_its_value(value: dict[str, Any]) -> None:
    record = CedarRecord(value)
    assert record.cedar == to_cedar_value(value)
    assert _request(record).cedar_context == _request(value).cedar_context
    assert json.dumps(_request(record).cedar_context) == json.dumps(_request(value).cedar_context)


@pytest.mark.parametrize("value", [
    {"n": 2**63}, {"n": -(2**63) - 1}, {"__entity": "x"}, {"f": 1.5}, {"l": ["a", 1.5]}, {1: "a"},
    {"o": object()}, {"e": az.Entity(uid=USER)},
])
def test_a_value_without_a_cedar_form_is_refused_as_conversion_refuses_it(value: dict[Any, Any]) -> None:
    with pytest.raises(az.InvalidValueError) as expected:
        to_cedar_value(value)
    with pytest.raises(az.InvalidValueError) as refused:
        CedarRecord(value)
    assert str(refused.value) == str(expected.value)


def test_absent_attributes_and_lists_of_other_values_convert_as_conversion_does() -> None:
    value = {"gone": None, "mixed": ["a", 1, True], "uid": USER, "deep": {"x": [["y"]]}}
    record = CedarRecord(value)
    assert record.cedar == to_cedar_value(value) == {
        "mixed": ["a", 1, True], "uid": {"__entity": {"type": "User", "id": "u"}}, "deep": {"x": [["y"]]}}
    assert record["gone"] is None and record["mixed"] == ("a", 1, True)


@pytest.mark.parametrize("levels", [MAX_VALUE_DEPTH - 3, MAX_VALUE_DEPTH - 2, MAX_VALUE_DEPTH - 1,
                                    MAX_VALUE_DEPTH])
def test_a_record_placed_deep_is_refused_exactly_where_its_value_would_be(levels: int) -> None:
    def nested(inner: Any) -> dict[str, Any]:
        context: dict[str, Any] = {"fact": inner}
        for _ in range(levels):
            context = {"a": context}
        return context

    value = {"pii": ["EMAIL"], "level": 1}
    outcomes = []
    for fact in (value, CedarRecord(value)):
        try:
            outcomes.append(Request(USER, "send", TOOL, nested(fact)).cedar_context)
        except az.InvalidValueError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]
    assert levels < MAX_VALUE_DEPTH - 1 or isinstance(outcomes[0], str)  # the deep end is reached


def test_a_cedar_record_cannot_be_changed_so_its_cedar_json_never_goes_stale() -> None:
    record = CedarRecord({"pii": ["EMAIL"], "available": True, "nested": {"x": ["y"]}})
    for change in (lambda: record.__setitem__("available", False), lambda: record.pop("pii"),
                   lambda: record.update(pii=[]), lambda: record.clear(), lambda: record.popitem(),
                   lambda: record.setdefault("topics", []), lambda: record.__delitem__("pii"),
                   lambda: record["nested"].__setitem__("x", [])):
        with pytest.raises(TypeError):
            change()
    assert not hasattr(record["pii"], "append")  # a tuple: the set cannot grow in place
    assert record.cedar == {"pii": ["EMAIL"], "available": True, "nested": {"x": ["y"]}}


def test_a_cedar_record_survives_copy_and_pickle_with_its_cedar_json() -> None:
    record = CedarRecord({"pii": ["EMAIL"], "nested": {"x": ["y"]}})
    for copied in (copy.copy(record), copy.deepcopy(record), pickle.loads(pickle.dumps(record))):
        assert type(copied) is CedarRecord and copied == record and copied.cedar == record.cedar


class Fixed:
    """A detector answering the same findings for every text."""

    name = "fixed"

    def __init__(self, findings: Sequence[Any]) -> None:
        self.findings = findings
        self.calls = 0

    def detect(self, text: str, *, source: Source) -> Sequence[Any]:
        self.calls += 1
        return self.findings

    async def adetect(self, text: str, *, source: Source) -> Sequence[Any]:
        return self.detect(text, source=source)


def test_texts_with_the_same_findings_share_one_assessment_and_other_findings_do_not() -> None:
    detector = Fixed([az.Finding("pii", "EMAIL")])
    guardrail = az.Guardrail(detector, cache_size=0)
    first, second = guardrail.assess("a", "INPUT"), guardrail.assess("b", "INPUT")
    assert detector.calls == 2 and first is second
    detector.findings = [az.Finding("pii", "PHONE")]
    third = guardrail.assess("c", "INPUT")
    assert third is not first and third.fact()["pii"] == ["PHONE"] and first.fact()["pii"] == ["EMAIL"]


def test_findings_that_cannot_be_compared_make_the_fact_unavailable_never_clean() -> None:
    unhashable = az.Finding("pii", ["EMAIL"])  # type: ignore[arg-type]  # a detector's bug
    assessment = az.Guardrail(Fixed([unhashable])).assess("text", "INPUT")
    assert assessment.available is False and assessment.fact()["available"] is False
    with pytest.raises(az.GuardrailUnavailable):
        az.Guardrail(Fixed([unhashable]), on_error="raise").assess("text", "INPUT")


@pytest.mark.parametrize("kind", ["AVAILABLE", "PII", "Available"])
def test_a_content_finding_named_like_another_attribute_of_the_fact_changes_nothing_else(kind: str) -> None:
    fact = Assessment((az.Finding("content", kind, "HIGH"),), True, "t").fact()
    assert fact["available"] is True and fact["pii"] == []
    assert fact == Assessment((), True, "t").fact()
