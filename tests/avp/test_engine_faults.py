"""Faults at the AVP endpoint never produce an allow.

The local endpoint serves one store that permits everything, so any fault that
leaked through as a decision would show as an allow. Every fault is injected
at the HTTP endpoint and reaches the engine through a real boto3 client:
timeouts, throttling, 5xx, malformed JSON, missing or duplicated results,
mismatched echoes, decisions outside ALLOW/DENY.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import agentauthz as az
from agentauthz.testing import Fault, LocalVerifiedPermissions

pytest.importorskip("boto3")
from agentauthz.avp._engine import VerifiedPermissionsEngine

U = az.EntityUID
SINGLE = [az.Request(principal=U("User", "alice"), action=U("Action", "read"), resource=U("Doc", "d0"))]
BATCH = [az.Request(principal=U("User", "alice"), action=U("Action", "read"), resource=U("Doc", f"d{i}"))
         for i in range(3)]

# (name, fault, whether it can happen to a single IsAuthorized call)
FAULTS: list[tuple[str, Fault, bool]] = [
    ("timeout", Fault.delay(1.0), True),
    ("throttling", Fault.throttling(), True),
    ("http-500", Fault.server_error(500), True),
    ("http-503", Fault.server_error(503), True),
    ("access-denied", Fault.error("AccessDeniedException"), True),
    ("not-found", Fault.error("ResourceNotFoundException"), True),
    ("malformed-json", Fault.malformed_json(), True),
    ("empty-body", Fault.raw(200, b""), True),
    ("html-error-page", Fault.raw(502, b"<html>Bad Gateway</html>"), True),
    ("missing-results", Fault.drop_results(), True),
    ("decision-MAYBE", Fault.decision("MAYBE"), True),
    ("decision-lowercase", Fault.decision("allow"), True),
    ("decision-Allow", Fault.decision("Allow"), True),
    ("mismatched-echo", Fault.mismatched_echo(), False),
    ("duplicate-results", Fault.duplicate_results(), False),
]


@pytest.fixture(scope="module")
def permissive() -> Iterator[LocalVerifiedPermissions]:
    store = az.PolicyStore.from_text('@id("all") permit(principal, action, resource);')
    with LocalVerifiedPermissions(store) as server:
        yield server


@pytest.fixture
def server(permissive: LocalVerifiedPermissions) -> Iterator[LocalVerifiedPermissions]:
    permissive.clear_faults()
    permissive.reset_calls()
    yield permissive
    permissive.clear_faults()


def engine_for(server: LocalVerifiedPermissions, *, on_error: str = "deny", attempts: int = 1,
               read_timeout: float = 0.3, **options: Any) -> VerifiedPermissionsEngine:
    client = server.client(connect_timeout=1, read_timeout=read_timeout,
                           retries={"mode": "standard", "max_attempts": attempts})
    return VerifiedPermissionsEngine(server.policy_store_id, client=client, on_error=on_error,  # type: ignore[arg-type]
                                     **options)


def test_without_faults_everything_is_allowed(server: LocalVerifiedPermissions) -> None:
    with engine_for(server) as engine:
        assert all(d.allowed for d in engine.decide(BATCH + SINGLE))


CASES = [pytest.param(shape, name, fault, id=f"{name}-{shape}")
         for name, fault, single_too in FAULTS for shape in ("single", "batch")
         if shape == "batch" or single_too]


@pytest.mark.parametrize(("shape", "name", "fault"), CASES)
def test_fault_denies_every_request(
    server: LocalVerifiedPermissions, shape: str, name: str, fault: Fault
) -> None:
    requests = SINGLE if shape == "single" else BATCH
    server.inject("*", fault)
    with engine_for(server) as engine:
        decisions = engine.decide(requests)
    assert len(decisions) == len(requests)
    for decision in decisions:
        assert not decision.allowed, name
        assert decision.errors and "Verified Permissions" in decision.errors[0]


@pytest.mark.parametrize(("name", "fault", "single_too"), FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_raises_engine_error_with_on_error_raise(
    server: LocalVerifiedPermissions, name: str, fault: Fault, single_too: bool
) -> None:
    server.inject("*", fault)
    with engine_for(server, on_error="raise") as engine, pytest.raises(az.EngineError) as error:
        engine.decide(BATCH)
    assert "no valid answer" in str(error.value)


def test_transport_failures_keep_the_original_exception(server: LocalVerifiedPermissions) -> None:
    server.inject("*", Fault.server_error(500))
    with engine_for(server, on_error="raise") as engine, pytest.raises(az.EngineError) as error:
        engine.decide(SINGLE)
    assert type(error.value.__cause__).__name__ == "InternalServerException"


def test_one_missing_result_denies_only_that_request(server: LocalVerifiedPermissions) -> None:
    server.inject("BatchIsAuthorized", Fault.drop_results(1))
    with engine_for(server) as engine:
        decisions = engine.decide(BATCH)
    assert [d.allowed for d in decisions] == [True, True, False]
    assert "no result" in decisions[2].errors[0]


def test_throttling_once_is_retried(server: LocalVerifiedPermissions) -> None:
    server.inject("IsAuthorized", Fault.throttling(), times=1)
    with engine_for(server, attempts=2) as engine:
        assert engine.decide(SINGLE)[0].allowed
    assert server.call_count("IsAuthorized") == 2


def test_a_refused_batch_is_retried_request_by_request(server: LocalVerifiedPermissions) -> None:
    server.inject("BatchIsAuthorized", Fault.error("ValidationException"), times=1)
    with engine_for(server) as engine:
        assert all(d.allowed for d in engine.decide(BATCH))
    assert server.call_count("IsAuthorized") == len(BATCH)


def test_the_deadline_bounds_a_client_with_long_timeouts(server: LocalVerifiedPermissions) -> None:
    server.inject("*", Fault.delay(3.0))
    client = server.client()  # botocore's default 60 s read timeout
    with VerifiedPermissionsEngine(server.policy_store_id, client=client,
                                   retry=az.Retry(deadline=0.5)) as engine:
        started = time.monotonic()
        [decision] = engine.decide(SINGLE)
        elapsed = time.monotonic() - started
    assert not decision.allowed and "did not answer within 0.5 s" in decision.errors[0]
    assert elapsed < 2.0


def test_an_unreachable_endpoint_denies() -> None:
    server = LocalVerifiedPermissions(az.PolicyStore.from_text("permit(principal, action, resource);"))
    with server:
        client = server.client(connect_timeout=0.5, retries={"mode": "standard", "max_attempts": 1})
        store_id = server.policy_store_id
    with VerifiedPermissionsEngine(store_id, client=client) as engine:
        [decision] = engine.decide(SINGLE)
    assert not decision.allowed and "failed" in decision.errors[0]


def test_schema_failure_leaves_bare_actions_unresolved_and_denied(server: LocalVerifiedPermissions) -> None:
    server.inject("GetSchema", Fault.server_error(500))
    request = az.Request(principal=U("User", "alice"), action="read", resource=U("Doc", "d0"))
    with engine_for(server) as engine:
        [decision] = engine.decide([request])
    assert not decision.allowed and "could not be resolved" in decision.errors[0]
    assert server.call_count("IsAuthorized") == 0
    with engine_for(server, on_error="raise") as engine, pytest.raises(az.EngineError):
        engine.resolve_action("read")


def test_policy_listing_failure_keeps_avp_ids_as_reasons(server: LocalVerifiedPermissions) -> None:
    server.inject("ListPolicies", Fault.server_error(500))
    with engine_for(server) as engine:
        [decision] = engine.decide(SINGLE)
    assert decision.allowed
    assert decision.reasons == (server.policy_ids()["all"],)


def test_authorizer_over_a_raising_engine_raises(server: LocalVerifiedPermissions) -> None:
    server.inject("*", Fault.decision("MAYBE"))
    with engine_for(server, on_error="raise") as engine:
        authz = az.Authorizer(engine, audit=[])
        with authz.acting_as(U("User", "alice")), pytest.raises(az.EngineError):
            authz.authorize(action=U("Action", "read"), resource=U("Doc", "d0"))


def test_guarded_tool_does_not_run_when_avp_fails(server: LocalVerifiedPermissions) -> None:
    server.inject("*", Fault.throttling())
    ran = []
    with engine_for(server) as engine:
        authz = az.Authorizer(engine, audit=[])

        @authz.guard(action=U("Action", "read"), resource=U("Doc", "d0"))
        def read_doc() -> str:
            ran.append(True)
            return "secret"

        with authz.acting_as(U("User", "alice")), pytest.raises(az.AccessDenied):
            read_doc()
    assert not ran
