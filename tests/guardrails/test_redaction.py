"""The class of the leak: whatever text a detector matched never appears in what the library records."""

from __future__ import annotations

import itertools

from hypothesis import given, settings

import agentauthz as az
from tests.strategies import guardrail_texts

USER = az.EntityUID("User", "u")
SINK = az.MemorySink()
AUTHZ = az.Authorizer.from_text(
    '@id("no-pii") forbid(principal, action, resource) unless { context.guardrail.input.pii.isEmpty() };'
    '@id("p") permit(principal, action, resource);', audit=[SINK], disclose_reasons=True)
GUARDRAIL = az.Guardrail(az.LocalDetector())
SESSIONS = itertools.count()


@AUTHZ.guard(guardrail=GUARDRAIL, on_deny="message")
def echo(body: str) -> str:
    return body


@settings(max_examples=80, deadline=None)
@given(guardrail_texts)
def test_matched_text_never_appears_in_facts_labels_audit_or_refusals(case: tuple[str, str]) -> None:
    text, secret = case
    SINK.clear()
    with AUTHZ.acting_as(USER), AUTHZ.session(f"s{next(SESSIONS)}") as session:
        refusal = echo(text)
        assessment = GUARDRAIL.assess(text, "OUTPUT")
        labels = sorted(session.facts().seen)
    assert assessment.findings and "not permitted" in refusal  # the secret was found and decided on...
    recorded = [*(event.to_json() for event in SINK.events), refusal, repr(assessment.fact()),
                repr(assessment.summary()), *labels]
    assert not any(secret in item for item in recorded)  # ...and is nowhere in what was recorded
