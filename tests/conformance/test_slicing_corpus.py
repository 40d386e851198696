"""Policy slicing on the Cedar corpus: the sliced engine decides exactly like the whole set.

``test_corpus.py`` already checks the (sliced) embedded engine against Cedar's
expected decisions; this compares it with unsliced evaluation of the same
store, errors included, request by request and as one batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import agentauthz as az

if TYPE_CHECKING:
    from tests.conformance.conftest import CorpusCase

pytestmark = pytest.mark.corpus


def test_sliced_evaluation_equals_the_whole_set_on_corpus_file(generated_case: CorpusCase) -> None:
    store = generated_case.store(validate=False)
    requests = [az.Request.from_cedar(data) for data in generated_case.requests]
    sliced, whole = az.LocalEngine(store), az.LocalEngine(store, slicing=False)
    expected = whole.decide(requests)

    assert sliced.decide(requests) == expected, generated_case.name
    assert [sliced.decide([request])[0] for request in requests] == expected, generated_case.name
    index = sliced.slice_index()
    assert index is not None and index.unreadable == 0, f"{generated_case.name}: a scope was not read"
