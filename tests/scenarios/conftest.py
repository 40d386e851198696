"""The scenario runs, made once per test session and shared by the scenario tests."""

from __future__ import annotations

import pytest

import agentauthz as az
from tests.scenarios.agent import RunResult, run_all
from tests.scenarios.assistant import POLICIES
from tests.scenarios.catalog import SCENARIOS
from tests.scenarios.report import unguarded_store


@pytest.fixture(scope="session")
def scenario_store() -> az.PolicyStore:
    return az.PolicyStore.from_directory(POLICIES)


@pytest.fixture(scope="session")
def guarded(scenario_store: az.PolicyStore) -> dict[str, RunResult]:
    """Every scenario decided by the scenario policies, by id."""
    return {r.scenario.id: r for r in run_all(SCENARIOS, scenario_store)}


@pytest.fixture(scope="session")
def unguarded() -> dict[str, RunResult]:
    """Every scenario decided by the permits alone (the control), by id."""
    return {r.scenario.id: r for r in run_all(SCENARIOS, unguarded_store())}
