"""The Cedar project's hand-written integration tests, all of them, through agentauthz.

They exercise decimal and ip extension functions, multiple policies and the
example use cases over the sandbox schemas and entities in ``sample-data/``;
the paths inside each test are relative to the corpus folder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import agentauthz as az

if TYPE_CHECKING:
    from tests.conformance.conftest import CorpusCase

pytestmark = pytest.mark.corpus


def test_handwritten_file_decisions_reasons_and_errors_match_cedar(
        handwritten_case: CorpusCase) -> None:
    decisions = handwritten_case.decide()

    mismatches = handwritten_case.mismatches(decisions, check_errors=True)
    assert not mismatches, handwritten_case.report(mismatches)


def test_handwritten_policy_store_validation_verdict_matches_corpus(
        handwritten_case: CorpusCase) -> None:
    if handwritten_case.should_validate:
        handwritten_case.store(validate=True)
    else:
        with pytest.raises(az.PolicyError):
            handwritten_case.store(validate=True)


def test_handwritten_decisions_are_the_same_with_entities_given_per_call(
        handwritten_case: CorpusCase) -> None:
    store = handwritten_case.store(validate=False, with_entities=False)
    entities = [az.Entity.from_cedar(data) for data in handwritten_case.entities]
    requests = [az.Request.from_cedar(data) for data in handwritten_case.requests]

    decisions = az.LocalEngine(store).decide(requests, entities)

    mismatches = handwritten_case.mismatches(decisions, check_errors=True)
    assert not mismatches, handwritten_case.report(mismatches)
