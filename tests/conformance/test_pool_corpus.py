"""The Cedar corpus decided through worker processes (issue 18, row 8): Cedar's decisions, unchanged.

``LocalEngine(store, processes=2, process_batch=1)`` sends every batch to two
worker processes holding the same store. Each hand-written corpus file must come
out exactly as Cedar decided it: decision, determining policies and errors (the
workers rebuild the store, its policy ids and entities included; entities given
per call are covered by tests/engines/test_process_pool.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import agentauthz as az

if TYPE_CHECKING:
    from tests.conformance.conftest import CorpusCase

pytestmark = pytest.mark.corpus


def test_handwritten_file_decided_by_worker_processes_matches_cedar(handwritten_case: CorpusCase) -> None:
    store = handwritten_case.store(validate=False)
    requests = [az.Request.from_cedar(data) for data in handwritten_case.requests]
    engine = az.LocalEngine(store, processes=2, process_batch=1)
    try:
        assert engine.start_processes(timeout=120)
        decisions = engine.decide(requests)
        assert engine._processes is not None
        assert engine._processes.decided_by_workers > 0 or len(requests) == 1  # the first chunk: a worker's
    finally:
        engine.close()

    mismatches = handwritten_case.mismatches(decisions, check_errors=True)
    assert not mismatches, handwritten_case.report(mismatches)
