"""The Cedar project's generated corpus, decided and validated through agentauthz.

Every request goes through agentauthz's own model (``Entity.from_cedar``,
``Request.from_cedar``, ``PolicyStore.from_text``) and the embedded engine, and
must come out exactly as Cedar decided it: same decision, same determining
policies, same policies failing to evaluate. ``make test`` runs a fixed sample
of the files, ``make conformance`` all of them (see ``conftest.py``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import agentauthz as az
from tests.conformance.conftest import SAMPLE_ENV, sample, selected_generated_names

if TYPE_CHECKING:
    from tests.conformance.conftest import CorpusCase

pytestmark = pytest.mark.corpus

# A validation problem must say where it is: "<text>:<line>: ...".
_LOCATED = re.compile(r"<text>:(\d+): \S")


def test_corpus_file_decisions_reasons_and_errors_match_cedar(generated_case: CorpusCase) -> None:
    decisions = generated_case.decide()

    mismatches = generated_case.mismatches(decisions, check_errors=True)
    assert not mismatches, generated_case.report(mismatches)


def test_corpus_file_decides_the_same_once_its_request_shapes_are_known(generated_case: CorpusCase) -> None:
    # The first round checks each request against the schema and learns the shapes that pass;
    # the second decides those without the check (see agentauthz.engines._conformance).
    engine = az.LocalEngine(generated_case.store(validate=False))
    requests = [az.Request.from_cedar(data) for data in generated_case.requests]
    for _ in range(2):
        decisions = [engine.decide([request])[0] for request in requests]
        mismatches = generated_case.mismatches(decisions, check_errors=True)
        assert not mismatches, generated_case.report(mismatches)


def test_policy_store_validation_verdict_matches_corpus(generated_case: CorpusCase) -> None:
    if generated_case.should_validate:
        generated_case.store(validate=True, with_entities=False)
        return
    with pytest.raises(az.PolicyError) as caught:
        generated_case.store(validate=True, with_entities=False)
    lines = generated_case.policies.count("\n") + 1
    for problem in caught.value.problems:
        located = _LOCATED.match(problem)
        assert located, f"{generated_case.name}: validation problem without a line: {problem}"
        assert 1 <= int(located.group(1)) <= lines, f"{generated_case.name}: {problem}"


def test_corpus_entities_requests_and_uid_text_round_trip_exactly(
        generated_case: CorpusCase) -> None:
    for data in generated_case.entities:
        entity = az.Entity.from_cedar(data)
        assert entity.to_cedar() == data, f"{generated_case.name}: entity {data['uid']}"
        assert az.EntityUID.parse(str(entity.uid)) == entity.uid, generated_case.name
    for index, data in enumerate(generated_case.requests):
        request = az.Request.from_cedar(data)
        expected = {key: data[key] for key in ("principal", "action", "resource", "context")}
        assert request.to_cedar() == expected, f"{generated_case.name}: request {index}"
        for uid in (request.principal, request.resource):
            assert az.EntityUID.parse(str(uid)) == uid, f"{generated_case.name}: request {index}"


# What the sample must contain for `make test` to exercise the corpus's oddities.
_FEATURES = {
    "empty entity id": re.compile(r'"id":\s*""'),
    "namespaced entity type": re.compile(r'"type":\s*"[A-Za-z_][A-Za-z0-9_]*::'),
    "entity tags": re.compile(r'"tags":\s*\{\s*"'),
    "datetime in year 0000": re.compile(r'"0000-\d\d-\d\d'),
}


def test_corpus_sample_covers_empty_ids_namespaces_tags_year_0000_and_invalid_policies(
        selected_generated_files: list[Path]) -> None:
    setting = os.environ.get(SAMPLE_ENV, "").strip().lower()
    if setting not in ("", "all"):
        pytest.skip(f"{SAMPLE_ENV}={setting} is a custom sample; coverage is checked for the "
                    "default sample and for the whole corpus")
    found = dict.fromkeys(_FEATURES, 0)
    invalid = 0
    for test_file in selected_generated_files:
        text = test_file.read_text(encoding="utf-8")
        invalid += not json.loads(text)["shouldValidate"]
        text += test_file.with_suffix(".entities.json").read_text(encoding="utf-8")
        for feature, pattern in _FEATURES.items():
            found[feature] += bool(pattern.search(text))
    missing = [feature for feature, count in found.items() if not count]
    assert not missing, f"the corpus sample has no file with: {', '.join(missing)}"
    assert invalid, "the corpus sample has no file whose policies should fail validation"


def test_default_corpus_sample_is_fixed_spread_and_has_at_least_1000_files(
        generated_corpus_names: tuple[str, ...]) -> None:
    names = generated_corpus_names
    default = sample(names, None)

    assert len(default) >= 1000
    assert default == sorted(set(default)), "sorted, without repeats"
    assert set(default) <= set(names)
    assert default[0] == names[0] and names.index(default[-1]) >= len(names) * 0.99
    assert sample(names, "") == default
    assert sample(names, "all") == list(names)
    assert len(sample(names, "50")) == 50
    with pytest.raises(pytest.UsageError):
        sample(names, "most")
    if not os.environ.get(SAMPLE_ENV, "").strip():
        assert selected_generated_names() == default
