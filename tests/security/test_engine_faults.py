"""Attack class: engine faults. A failing backend denies, or keeps the last good policies; it never allows.

Faults: an engine that raises or answers garbage; cedarpy raising inside the
embedded engine; policies whose evaluation errors; Amazon Verified Permissions
timing out, throttling, failing with 5xx, answering malformed JSON, dropping or
duplicating results, answering decisions outside ALLOW/DENY (injected at the
local AVP endpoint and reaching the engine through a real boto3 client); and a
policy directory rewritten with broken content while threads decide.

Every assertion is "no allow that the policies do not give": decisions are
compared with the plain-cedarpy reference, guarded tools must not run, and
filters must return nothing.

Cases tried:

* engine doubles raising 6 kinds of exception x 5 entry points: 30; raising AuthzError: 2;
  answering non-decisions or decisions marked unenforced in enforce mode: 6
* cedarpy's extension function (what LocalEngine calls) raising three ways or answering short,
  misspelled, not JSON, not an object, without diagnostics or with trailing data: 9
* erroring policies vs the reference: Hypothesis, 80 random requests
* AVP: 14 faults x 3 entry points (authorize, guard, filter), less 2 batch-only faults for
  a single call = 40; GetSchema faults: 3;
  Hypothesis, 10 random fault schedules over a mixed allow/deny batch
* reload mid-traffic: 8 threads deciding (about 3,000 decisions) while the directory
  cycles through 2 good and 5 broken versions; a failed reload keeps the old set: 5;
  the audit fingerprint of a decision racing a reload is the version that decided: 1
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import cedarpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz.engines import _cedarcall as _cedarcall
from agentauthz.testing import capture_decisions
from tests.security.support import reference_allows, reference_allows_without_failed_forbids
from tests.strategies import fault_schedules, faulty_contexts

U = az.EntityUID
ALICE = U("User", "alice")
PERMIT_ALL = '@id("all") permit(principal, action, resource);'


class RaisingEngine:
    """An Engine double whose every decision raises ``error``."""

    name = "raising"
    fingerprint = "raising"

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def resolve_action(self, action: str | az.EntityUID) -> az.EntityUID:
        return action if isinstance(action, az.EntityUID) else U("Action", action)

    def decide(self, requests: Sequence[az.Request], entities: Sequence[az.Entity] = ()) -> list[az.Decision]:
        raise self.error

    async def adecide(self, requests: Sequence[az.Request],
                      entities: Sequence[az.Entity] = ()) -> list[az.Decision]:
        raise self.error


class AnsweringEngine(RaisingEngine):
    """An Engine double answering ``answer`` for every request."""

    def __init__(self, answer: Any) -> None:
        super().__init__(RuntimeError("unused"))
        self.answer = answer

    def decide(self, requests: Sequence[az.Request], entities: Sequence[az.Entity] = ()) -> list[Any]:
        return [self.answer for _ in requests]

    async def adecide(self, requests: Sequence[az.Request], entities: Sequence[az.Entity] = ()) -> list[Any]:
        return self.decide(requests, entities)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("cannot render")


EXCEPTIONS = {
    "runtime": RuntimeError("backend exploded"),
    "value": ValueError("bad request `{\"secret\": 1}`"),
    "recursion": RecursionError("maximum recursion depth exceeded"),
    "memory": MemoryError(),
    "os": ConnectionResetError(104, "connection reset"),
    "unprintable": Unprintable(),
}


def _tool_runs(authz: az.Authorizer) -> list[str]:
    ran: list[str] = []

    @authz.guard(action="wipe")
    def wipe() -> str:
        ran.append("ran")
        return "wiped"

    with authz.acting_as(ALICE), contextlib.suppress(az.AuthzError):
        wipe()
    return ran


def _entry(kind: str, authz: az.Authorizer) -> bool:
    """Run one entry point; True when something was let through."""
    with authz.acting_as(ALICE):
        if kind == "authorize":
            return authz.authorize(action="read", resource=U("Doc", "d")).admits
        if kind == "aauthorize":
            return asyncio.run(authz.aauthorize(action="read", resource=U("Doc", "d"))).admits
        if kind == "filter":
            return bool(authz.filter([U("Doc", "d")], action="read", resource=lambda u: u).allowed)
        if kind == "afilter":
            return bool(asyncio.run(authz.afilter([U("Doc", "d")], action="read",
                                                  resource=lambda u: u)).allowed)
    return bool(_tool_runs(authz))


ENTRIES = ("authorize", "aauthorize", "filter", "afilter", "guard")


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("error", sorted(EXCEPTIONS))
def test_an_engine_that_raises_denies_everywhere(error: str, entry: str) -> None:
    authz = az.Authorizer(RaisingEngine(EXCEPTIONS[error]), audit=[])
    with capture_decisions() as events:
        try:
            let_through = _entry(entry, authz)
        except Exception as exc:  # raising is failing closed too, as long as nothing ran
            assert not isinstance(exc, AssertionError)
            let_through = False
    assert not let_through
    assert all(event.decision == "deny" for event in events)


@pytest.mark.parametrize("entry", ["authorize", "guard"])
def test_an_engine_error_propagates_and_nothing_runs(entry: str) -> None:
    authz = az.Authorizer(RaisingEngine(az.EngineError("AVP unreachable")), audit=[])
    if entry == "guard":
        assert _tool_runs(authz) == []
    else:
        with authz.acting_as(ALICE), pytest.raises(az.EngineError):
            authz.authorize(action="read", resource=U("Doc", "d"))


class _Duck:
    allowed = True
    admits = True
    enforced = True
    reasons = ("forged",)
    errors = ()
    outcome = "allow"


GARBAGE = {
    "true": True,
    "string-allow": "allow",
    "dict": {"allowed": True},
    "none": None,
    "duck-typed-decision": _Duck(),
    "unenforced-denial": az.Decision(allowed=False, enforced=False),
}


@pytest.mark.parametrize("answer", sorted(GARBAGE))
def test_an_engine_answering_something_other_than_a_decision_denies(answer: str) -> None:
    authz = az.Authorizer(AnsweringEngine(GARBAGE[answer]), audit=[])
    let_through = []
    for entry in ENTRIES:
        try:
            let_through.append((entry, _entry(entry, authz)))
        except az.AuthzError:
            let_through.append((entry, False))
        except Exception as exc:  # a crash is closed, but say which
            let_through.append((entry, f"raised {type(exc).__name__}"))
    assert all(outcome is False for _, outcome in let_through), let_through


# -- cedarpy failing inside the embedded engine -------------------------------------------------


def _odd_decision(answer: str) -> str:
    """A cedarpy answer whose decision is spelled "ALLOW", not "Allow"."""
    data = json.loads(answer)
    data["decision"] = "ALLOW"
    return json.dumps(data)


@pytest.mark.parametrize("failure", ["raises", "raises-value-error", "raises-type-error", "short-answer",
                                     "odd-decision", "not-json", "not-an-object", "no-diagnostics",
                                     "trailing-data"])
def test_cedarpy_failing_inside_the_local_engine_denies(failure: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # The faults are injected where the engine's calls end: cedarpy's extension function.
    authz = az.Authorizer.from_text(PERMIT_ALL, audit=[])
    real = cedarpy._internal.is_authorized_batch

    def broken(requests: list[Any], *args: Any) -> Any:
        if failure == "raises":
            raise RuntimeError("panic in the evaluator")
        if failure == "raises-value-error":
            raise ValueError('entities `[{"uid": ...}]` do not parse')
        if failure == "raises-type-error":
            raise TypeError("argument 'requests': unexpected shape")
        answers = real(requests, *args)
        if failure == "short-answer":
            return answers[:-1]
        if failure == "not-json":
            return ["Allow" for _ in answers]
        if failure == "not-an-object":
            return ['"Allow"' for _ in answers]
        if failure == "no-diagnostics":
            return ['{"decision": "Allow"}' for _ in answers]
        if failure == "trailing-data":
            return [answer + ' {"decision": "Allow"}' for answer in answers]
        return [_odd_decision(answer) for answer in answers]

    monkeypatch.setattr(cedarpy._internal, "is_authorized_batch", broken)
    # A TypeError makes the engine fall back to cedarpy's public wrapper for good: restored after.
    monkeypatch.setattr(_cedarcall, "_use_private", True)
    with authz.acting_as(ALICE):
        decisions = authz.authorize_many([az.Request(ALICE, "read", U("Doc", f"d{i}")) for i in range(3)])
    assert not any(d.allowed for d in decisions)
    assert all(d.errors for d in decisions) or failure == "odd-decision"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(faulty_contexts, st.sampled_from(("deny", "skip")))
def test_erroring_policies_decide_as_cedar_and_a_failed_forbid_denies_unless_skipped(
    context: dict[str, Any], policy_errors: Literal["deny", "skip"]
) -> None:
    policies = """
@id("owner") permit(principal, action, resource) when { resource.owner == principal };
@id("level") permit(principal, action, resource) when { context.level + 1 > resource.level };
@id("ip") permit(principal, action, resource) when { ip(context.ip).isLoopback() };
@id("no-archived") forbid(principal, action, resource) when { resource.archived };
@id("no-big") forbid(principal, action, resource) when { context.amount * 1000 > 1000000 };
"""
    authz = az.Authorizer.from_text(policies, audit=[], policy_errors=policy_errors)
    resource = az.Entity(uid=U("Doc", "d"), attrs={k: v for k, v in {
        "owner": context.pop("owner", None), "level": context.pop("doc_level", None),
        "archived": context.pop("archived", None)}.items() if v is not None})
    request = az.Request(ALICE, "read", resource.uid, context)
    decision = authz.authorize_many([request], entities=[resource])[0]
    reference = reference_allows if policy_errors == "skip" else reference_allows_without_failed_forbids
    assert decision.allowed == reference(policies, request, [resource])


# -- Amazon Verified Permissions faults ---------------------------------------------------------

AVP_POLICIES = """
@id("public") permit(principal, action, resource) when { resource.public };
@id("owner") permit(principal, action, resource) when { resource.owner == principal };
@id("frozen") forbid(principal, action, resource) when { resource has frozen && resource.frozen };
"""


def _avp_faults() -> dict[str, Any]:
    from agentauthz.testing import Fault

    return {
        "timeout": Fault.delay(0.6),
        "throttling": Fault.throttling(),
        "http-500": Fault.server_error(500),
        "http-503": Fault.server_error(503),
        "access-denied": Fault.error("AccessDeniedException"),
        "validation": Fault.error("ValidationException"),
        "malformed-json": Fault.malformed_json(),
        "empty-200": Fault.raw(200, b""),
        "html-502": Fault.raw(502, b"<html>bad gateway</html>"),
        "missing-results": Fault.drop_results(),
        "decision-MAYBE": Fault.decision("MAYBE"),
        "decision-allow-lowercase": Fault.decision("allow"),
        "mismatched-echo": Fault.mismatched_echo(),
        "duplicate-results": Fault.duplicate_results(),
    }


@pytest.fixture(scope="module")
def avp() -> Iterator[Any]:
    pytest.importorskip("boto3")
    from agentauthz.testing import LocalVerifiedPermissions

    with LocalVerifiedPermissions(az.PolicyStore.from_text(AVP_POLICIES)) as server:
        yield server


@pytest.fixture
def server(avp: Any) -> Iterator[Any]:
    avp.clear_faults()
    yield avp
    avp.clear_faults()


def _avp_authz(server: Any) -> az.Authorizer:
    from agentauthz.avp._engine import VerifiedPermissionsEngine

    client = server.client(connect_timeout=1, read_timeout=0.3,
                           retries={"mode": "standard", "max_attempts": 1})
    engine = VerifiedPermissionsEngine(server.policy_store_id, client=client, retry=az.Retry(max_attempts=1))
    return az.Authorizer(engine, audit=[])


def _docs() -> list[az.Entity]:
    return [
        az.Entity(uid=U("Doc", "public"), attrs={"public": True, "owner": U("User", "bob")}),
        az.Entity(uid=U("Doc", "mine"), attrs={"public": False, "owner": ALICE}),
        az.Entity(uid=U("Doc", "frozen"), attrs={"public": True, "owner": ALICE, "frozen": True}),
        az.Entity(uid=U("Doc", "bobs"), attrs={"public": False, "owner": U("User", "bob")}),
    ]


FAULT_NAMES = sorted(_avp_faults())
#: Faults of batch answers only: a single IsAuthorized call (a guarded tool) is not affected.
BATCH_ONLY = ("duplicate-results", "mismatched-echo")


@pytest.mark.parametrize(("fault", "entry"), [
    (fault, entry) for fault in FAULT_NAMES for entry in ("authorize", "guard", "filter")
    if not (entry == "guard" and fault in BATCH_ONLY)])
def test_avp_faults_never_allow(server: Any, fault: str, entry: str) -> None:
    authz = _avp_authz(server)
    docs = _docs()
    # Resolve the schema and policy ids before the fault, so the fault hits the decision itself.
    with authz.acting_as(ALICE):
        assert [d.allowed for d in authz.authorize_many(
            [az.Request(ALICE, U("Action", "read"), d.uid) for d in docs], entities=docs)] == [
            True, True, False, False]
    server.inject("*", _avp_faults()[fault])
    with authz.acting_as(ALICE):
        if entry == "authorize":
            decisions = authz.authorize_many(
                [az.Request(ALICE, U("Action", "read"), d.uid) for d in docs], entities=docs)
            assert not any(d.allowed for d in decisions)
            assert all(d.errors for d in decisions)
        elif entry == "filter":
            assert authz.filter(docs, action=U("Action", "read"), resource=lambda d: d).allowed == []
        else:
            ran: list[str] = []

            @authz.guard(action=U("Action", "read"), resource=docs[1])
            def read() -> str:
                ran.append("ran")
                return "text"

            with pytest.raises(az.AccessDenied):
                read()
            assert ran == []


@pytest.mark.parametrize("fault", ["throttling", "malformed-json", "html-502"])
def test_a_failing_get_schema_leaves_bare_actions_denied(server: Any, fault: str) -> None:
    server.inject("GetSchema", _avp_faults()[fault])
    authz = _avp_authz(server)
    with authz.acting_as(ALICE):
        decision = authz.authorize(action="read", resource=_docs()[0])
    assert not decision.allowed


@settings(max_examples=10, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(schedule=fault_schedules([name for name in FAULT_NAMES if name != "timeout"]))
def test_random_fault_schedules_never_allow_what_policy_denies(server: Any,
                                                                schedule: list[str | None]) -> None:
    server.clear_faults()
    authz = _avp_authz(server)
    docs = _docs()
    faults = _avp_faults()
    from agentauthz.testing import Fault

    for name in schedule:  # one entry per call, in order; None lets that call through untouched
        server.inject("*", Fault.delay(0) if name is None else faults[name], times=1)
    requests = [az.Request(ALICE, U("Action", "read"), d.uid) for d in docs] * 2
    with authz.acting_as(ALICE):
        for batch in (requests, requests[:1], requests[2:5]):
            for request, decision in zip(batch, authz.authorize_many(batch, entities=docs), strict=True):
                if decision.allowed:
                    assert reference_allows(AVP_POLICIES, request, docs), request
    server.clear_faults()


# -- policy reload failing mid-traffic ----------------------------------------------------------

V1 = """
@id("v1-public") permit(principal, action == Action::"read", resource) when { resource.level <= 1 };
@id("v1-no-drafts") forbid(principal, action, resource) when { resource.draft };
"""
V2 = """
@id("v2-owner") permit(principal, action == Action::"read", resource) when { resource.level <= 2 };
@id("v2-no-level-0") forbid(principal, action, resource) when { resource.level == 0 };
"""
BROKEN: dict[str, bytes] = {
    "parse-error": b'permit(principal, action resource);',
    "invalid-utf8": b'permit(principal, action, resource) when { context.s == "\xff" };',
    "over-deep": ("permit(principal, action, resource) when { " + "(" * 300 + "true" + ")" * 300
                  + " };").encode(),
    "duplicate-id": b'@id("x") permit(principal, action, resource);\n'
                    b'@id("x") forbid(principal, action, resource);',
    "unterminated-string": b'permit(principal, action, resource) when { context.s == "oops };',
}


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _resources() -> list[az.Entity]:
    return [az.Entity(uid=U("Doc", f"l{level}-{'draft' if draft else 'final'}"),
                      attrs={"level": level, "draft": draft})
            for level, draft in itertools.product(range(4), (False, True))]


def test_a_reload_failing_mid_traffic_keeps_deciding_with_a_good_version(tmp_path: Path) -> None:
    policy = tmp_path / "policies.cedar"
    _write_atomically(policy, V1.encode())
    store = az.PolicyStore.from_directory(tmp_path)
    authz = az.Authorizer(az.LocalEngine(store), audit=[])
    resources = _resources()
    requests = [az.Request(ALICE, "read", r.uid) for r in resources]
    expected = {
        version: tuple(reference_allows(text, request, resources) for request in requests)
        for version, text in (("v1", V1), ("v2", V2))
    }
    assert expected["v1"] != expected["v2"]
    versions = [V1.encode(), *BROKEN.values(), V2.encode(), BROKEN["parse-error"]]
    stop = threading.Event()
    reloads = {"ok": 0, "refused": 0}
    seen: list[tuple[bool, ...]] = []
    problems: list[str] = []

    def reloader() -> None:
        for content in itertools.cycle(versions):
            if stop.is_set():
                return
            _write_atomically(policy, content)
            try:
                store.reload()
                reloads["ok"] += 1
            except az.PolicyError:
                reloads["refused"] += 1
            time.sleep(0.002)

    def decider() -> None:
        with authz.acting_as(ALICE):
            while not stop.is_set():
                outcome = tuple(d.allowed for d in authz.authorize_many(requests, entities=resources))
                if outcome not in expected.values():
                    problems.append(f"decisions {outcome} match no good version")
                seen.append(outcome)

    threads = [threading.Thread(target=reloader)] + [threading.Thread(target=decider) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join()
    assert problems == []
    assert reloads["refused"] > 10 and reloads["ok"] > 2
    assert set(seen) == set(expected.values())  # both good versions were in use, nothing else
    assert len(seen) > 300


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_refused_reload_keeps_the_old_policies_and_fingerprint(broken: str, tmp_path: Path) -> None:
    policy = tmp_path / "policies.cedar"
    policy.write_text(V1, encoding="utf-8")
    store = az.PolicyStore.from_directory(tmp_path)
    authz = az.Authorizer(az.LocalEngine(store), audit=[])
    before = store.fingerprint
    policy.write_bytes(BROKEN[broken])
    with pytest.raises(az.PolicyError):
        store.reload()
    assert store.fingerprint == before
    resource = _resources()[2]
    with authz.acting_as(ALICE):
        decision = authz.authorize(action="read", resource=resource)
    assert decision.allowed and decision.reasons == ("v1-public",)


class _ReloadingEngine(az.LocalEngine):
    """Reloads its store right after deciding: a reload landing between decision and audit event."""

    def __init__(self, store: az.PolicyStore, policy: Path, next_text: str) -> None:
        super().__init__(store)
        self.policy, self.next_text = policy, next_text

    def decide(self, requests: Sequence[az.Request], entities: Sequence[az.Entity] = ()) -> list[az.Decision]:
        decisions = super().decide(requests, entities)
        self.policy.write_text(self.next_text, encoding="utf-8")
        self.store.reload()
        return decisions


def test_the_audit_fingerprint_is_the_version_that_decided(tmp_path: Path) -> None:
    policy = tmp_path / "policies.cedar"
    policy.write_text(V1, encoding="utf-8")
    store = az.PolicyStore.from_directory(tmp_path)
    v1 = store.fingerprint
    authz = az.Authorizer(_ReloadingEngine(store, policy, V2), audit=[])
    with capture_decisions() as events, authz.acting_as(ALICE):
        decision = authz.authorize(action="read", resource=_resources()[2])
    assert decision.reasons == ("v1-public",)
    assert events[0].fingerprint == v1
