"""The user's own message screened into session labels of its own (``guardrail:user:...``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

import agentauthz as az
from agentauthz.guardrails._guardrail import Assessment
from agentauthz.guardrails._screening import user_labels
from tests.integrations.guardrail_cases import ATTACK, USER, CountingDetector, authorizer
from tests.strategies import screening_findings


@settings(max_examples=100, deadline=None)
@given(screening_findings)
def test_the_users_labels_are_the_assessments_labels_under_a_prefix_of_their_own(
        findings: list[az.Finding]) -> None:
    assessment = Assessment(tuple(findings), True, "any")
    labels = assessment.labels()
    mine = user_labels(assessment)
    assert mine == [f"guardrail:user:{label.removeprefix('guardrail:')}" for label in labels]
    assert not set(mine) & set(labels)  # a policy about documents never reads the user's findings


def test_an_unassessed_message_is_labelled_unavailable_for_the_user() -> None:
    assert user_labels(Assessment((), False, "down")) == ["guardrail:user:unavailable"]


def test_screening_without_a_session_is_a_configuration_error() -> None:
    authz = authorizer()
    with authz.acting_as(USER), pytest.raises(az.ConfigurationError, match="bind a session"):
        authz.screen_user_message(ATTACK, az.LocalDetector())


def test_screening_something_that_is_no_text_is_a_configuration_error() -> None:
    authz = authorizer()
    with authz.acting_as(USER), authz.session("s"), pytest.raises(az.ConfigurationError):
        authz.screen_user_message(b"bytes", az.LocalDetector())  # type: ignore[arg-type]


def test_a_message_is_assessed_once_per_session_and_again_in_another() -> None:
    detector = CountingDetector()
    screen = az.Guardrail(detector)
    authz = authorizer()
    with authz.acting_as(USER):
        for session in ("s-1", "s-1", "s-2"):
            with authz.session(session):
                authz.screen_user_message("hello", screen)
    assert detector.texts == ["hello", "hello"]


def test_the_async_twin_records_the_same_labels() -> None:
    import asyncio

    authz = authorizer()

    async def screen() -> frozenset[str]:
        with authz.acting_as(USER), authz.session("s") as session:
            await authz.ascreen_user_message(ATTACK, az.LocalDetector())
            return session.facts().seen

    assert "guardrail:user:prompt_attack:high" in asyncio.run(screen())
