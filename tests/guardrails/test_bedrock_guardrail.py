"""BedrockGuardrail against a real bedrock-runtime client with botocore's Stubber.

The Stubber checks each ``apply_guardrail`` call against the expected
parameters and each canned response against the service model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import agentauthz as az
from agentauthz.integrations.bedrock import BedrockGuardrail
from tests.guardrails.responses import (
    CANARY,
    CLEAN,
    content,
    grounding,
    pii,
    regex,
    response,
    topic,
    words,
)


@pytest.fixture
def client() -> Any:
    return boto3.client("bedrock-runtime", region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x")


@pytest.fixture
def stubber(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def expected(text: str, source: str = "INPUT") -> dict[str, Any]:
    return {"guardrailIdentifier": "gr-1", "guardrailVersion": "3", "source": source,
            "content": [{"text": {"text": text}}], "outputScope": "FULL"}


def found(client: Any, stubber: Stubber, answer: dict[str, Any]) -> list[tuple[str, str, str]]:
    stubber.add_response("apply_guardrail", answer, expected("some text"))
    findings = BedrockGuardrail("gr-1", "3", client=client).detect("some text", source="INPUT")
    return [(finding.category, finding.type, finding.confidence) for finding in findings]


def test_prompt_attack_filter_becomes_a_prompt_attack_finding_with_its_confidence(
        client: Any, stubber: Stubber) -> None:
    assert found(client, stubber, response(content("PROMPT_ATTACK", "MEDIUM"))) == [
        ("prompt_attack", "PROMPT_ATTACK", "MEDIUM")]


def test_content_filters_become_content_findings(client: Any, stubber: Stubber) -> None:
    assert found(client, stubber, response(content("HATE", "LOW", detected=False))) == [
        ("content", "HATE", "LOW")]


def test_pii_entities_become_pii_findings_of_their_type_only_when_detected(
        client: Any, stubber: Stubber) -> None:
    answer = response(pii("EMAIL", "US_SOCIAL_SECURITY_NUMBER"), pii("NAME", detected=False))
    assert found(client, stubber, answer) == [
        ("pii", "EMAIL", "HIGH"), ("pii", "US_SOCIAL_SECURITY_NUMBER", "HIGH")]


def test_regexes_topics_and_words_become_findings_named_by_configuration_not_by_match(
        client: Any, stubber: Stubber) -> None:
    answer = response(regex("ticket-id"), topic("investment-advice"), topic("medical", detected=False),
                      words())
    assert found(client, stubber, answer) == [
        ("regex", "ticket-id", "HIGH"), ("topic", "investment-advice", "HIGH"),
        ("word", "CUSTOM", "HIGH"), ("word", "PROFANITY", "HIGH")]


def test_grounding_scores_are_kept_and_a_score_below_threshold_is_a_high_finding(
        client: Any, stubber: Stubber) -> None:
    stubber.add_response("apply_guardrail", response(grounding(0.2), grounding(0.9)), expected("t", "OUTPUT"))
    findings = BedrockGuardrail("gr-1", "3", client=client).detect("t", source="OUTPUT")
    assert [(f.type, f.confidence, f.score) for f in findings] == [
        ("GROUNDING", "HIGH", 0.2), ("GROUNDING", "NONE", 0.9)]


def test_a_clean_answer_has_no_findings(client: Any, stubber: Stubber) -> None:
    assert found(client, stubber, CLEAN) == []


def test_the_matched_text_is_in_no_finding(client: Any, stubber: Stubber) -> None:
    stubber.add_response("apply_guardrail", response(pii("EMAIL"), regex("r"), words()), expected("x"))
    findings = BedrockGuardrail("gr-1", "3", client=client).detect("x", source="INPUT")
    assert CANARY not in repr(findings)
    assessment = az.Guardrail(az.LocalDetector()).assess("", "INPUT")  # the empty text: no call
    assert assessment.available and assessment.findings == ()


@pytest.mark.parametrize("code,status", [
    ("ThrottlingException", 429), ("ValidationException", 400), ("AccessDeniedException", 403),
    ("ServiceUnavailableException", 503), ("ResourceNotFoundException", 404),
])
def test_service_errors_are_guardrail_unavailable_naming_the_code_not_the_text(
        client: Any, stubber: Stubber, code: str, status: int) -> None:
    stubber.add_client_error("apply_guardrail", service_error_code=code, http_status_code=status,
                             expected_params=expected(CANARY))
    with pytest.raises(az.GuardrailUnavailable) as raised:
        BedrockGuardrail("gr-1", "3", client=client).detect(CANARY, source="INPUT")
    assert code in str(raised.value)
    assert CANARY not in str(raised.value)
    assert isinstance(raised.value, az.EngineError)


@pytest.mark.parametrize("answer", [{}, {"assessments": "no"}, {"assessments": [{"contentPolicy": {
    "filters": [{"type": "HATE", "confidence": "EXTREME", "action": "NONE"}]}}]}])
def test_an_unreadable_answer_is_guardrail_unavailable(answer: dict[str, Any]) -> None:
    class Answering:
        def apply_guardrail(self, **_: Any) -> dict[str, Any]:
            return answer

    with pytest.raises(az.GuardrailUnavailable):
        BedrockGuardrail("gr-1", "3", client=Answering()).detect("x", source="INPUT")


def test_a_throttled_guardrail_makes_the_fact_unavailable_by_default(client: Any, stubber: Stubber) -> None:
    stubber.add_client_error("apply_guardrail", service_error_code="ThrottlingException",
                             http_status_code=429)
    assessment = az.Guardrail(BedrockGuardrail("gr-1", "3", client=client)).assess("hello", "INPUT")
    assert not assessment.available
    assert assessment.fact()["available"] is False
    assert assessment.labels() == ["guardrail:unavailable"]


def test_a_throttled_guardrail_raises_when_told_to(client: Any, stubber: Stubber) -> None:
    stubber.add_client_error("apply_guardrail", service_error_code="ThrottlingException",
                             http_status_code=429)
    guardrail = az.Guardrail(BedrockGuardrail("gr-1", "3", client=client), on_error="raise")
    with pytest.raises(az.GuardrailUnavailable):
        guardrail.assess("hello", "INPUT")


def test_adetect_answers_as_detect(client: Any, stubber: Stubber) -> None:
    stubber.add_response("apply_guardrail", response(pii("PHONE")), expected("call me"))
    findings = asyncio.run(BedrockGuardrail("gr-1", "3", client=client).adetect("call me", source="INPUT"))
    assert [(f.category, f.type) for f in findings] == [("pii", "PHONE")]


def test_the_detector_name_names_the_guardrail_and_version() -> None:
    assert BedrockGuardrail("gr-1", "3", client=object()).name == "bedrock:gr-1:3"
    assert isinstance(BedrockGuardrail("gr-1", "3", client=object()), az.Detector)
