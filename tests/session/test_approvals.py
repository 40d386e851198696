"""Human approval as an outcome: held calls, grants bound to one exact call, single use, expiry, audit."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import agentauthz as az
from agentauthz.session import (
    ApprovalConfig,
    ApprovalRequest,
    CallRecord,
    MemorySessionStore,
    SessionConfig,
    SQLiteSessionStore,
)
from tests.strategies import approval_cases

ROOT = Path(__file__).resolve().parents[2]
ALICE, MALLORY = az.EntityUID("User", "alice"), az.EntityUID("User", "mallory")

SCHEMA = """
entity User;
entity Tool;
action refund, lookup appliesTo {
  principal: User, resource: Tool,
  context: { input: { to: String, amount: Long }, session: { approved: Bool } }
};
"""

POLICIES = """
@id("allow-all") permit(principal, action == Action::"refund", resource);
@id("big-refunds") @approval("required")
forbid(principal, action == Action::"refund", resource)
when { context.input.amount > 100 && !context.session.approved };
@id("never-to-mallory")
forbid(principal, action == Action::"refund", resource) when { context.input.to == "mallory" };
@id("huge-refunds-need-review") @approval("required")
forbid(principal, action == Action::"refund", resource)
unless { context.session.approved || context.input.amount < 10000 };
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Tools:
    """An Authorizer with a guarded ``refund`` that records what ran."""

    def __init__(self, *, store: Any = None, approver: Any = None, clock: Clock | None = None,
                 policies: str = POLICIES, mode: str = "enforce", is_async: bool = False) -> None:
        self.sink = az.MemorySink()
        self.clock = clock or Clock()
        config = SessionConfig(store=store, clock=self.clock,
                               approvals=ApprovalConfig(approver=approver, expires_in=timedelta(minutes=5)))
        self.authz = az.Authorizer.from_text(policies, schema=SCHEMA, audit=[self.sink], sessions=config,
                                             mode=mode)  # type: ignore[arg-type]
        self.ran: list[tuple[str, int]] = []
        lock = threading.Lock()

        if is_async:
            @self.authz.guard(action="refund")
            async def refund(to: str, amount: int) -> str:
                with lock:
                    self.ran.append((to, amount))
                return "refunded"
        else:
            @self.authz.guard(action="refund")
            def refund(to: str, amount: int) -> str:  # type: ignore[misc]
                with lock:
                    self.ran.append((to, amount))
                return "refunded"

        self.refund: Callable[..., Any] = refund

    def held(self, to: str, amount: int) -> ApprovalRequest:
        with pytest.raises(az.ApprovalRequired) as caught:
            self.refund(to, amount)
        return caught.value.approval


def test_a_call_denied_by_an_approval_policy_is_held_with_its_exact_request() -> None:
    tools = Tools()
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        request = tools.held("bob", 500)
    assert tools.ran == []
    assert (request.principal, request.action, request.resource) == (
        ALICE, az.EntityUID("Action", "refund"), az.EntityUID("Tool", "refund"))
    assert request.arguments == {"to": "bob", "amount": 500}
    assert request.why == ("big-refunds",) and request.session_id == "c1"
    assert request.expires_at == tools.clock.now + 300
    assert request.expiry.timestamp() == request.expires_at
    assert "bob" in request.describe() and "big-refunds" in request.describe()
    assert request.to_json()["arguments"] == {"to": "bob", "amount": 500}


def test_an_approval_required_is_an_access_denied_carrying_the_denial() -> None:
    tools = Tools()
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"), pytest.raises(az.AccessDenied) as caught:
        tools.refund("bob", 500)
    assert isinstance(caught.value, az.ApprovalRequired)
    assert caught.value.decision.reasons == ("big-refunds",) and not caught.value.decision.allowed


def test_granting_lets_exactly_that_call_run_once() -> None:
    tools = Tools()
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        approval = tools.authz.approve(tools.held("bob", 500), granted_by="supervisor")
        assert approval.once and approval.granted_by == "supervisor"
        tools.held("bob", 501)  # other arguments: still held
        tools.held("carol", 500)
        assert tools.refund("bob", 500) == "refunded"
        tools.held("bob", 500)  # used up
    assert tools.ran == [("bob", 500)]


def test_a_grant_covers_neither_another_session_nor_another_end_user() -> None:
    tools = Tools()
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        request = tools.held("bob", 500)
    tools.authz.approve(request)
    with tools.authz.acting_as(ALICE), tools.authz.session("c2"):
        tools.held("bob", 500)
    with tools.authz.acting_as(MALLORY), tools.authz.session("c1"), pytest.raises(az.IdentityError):
        tools.refund("bob", 500)
    with tools.authz.acting_as(MALLORY), tools.authz.session("m1"):
        tools.held("bob", 500)
    assert tools.ran == []


def test_an_approval_request_cannot_be_granted_into_another_users_session() -> None:
    tools = Tools()
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        tools.refund("bob", 5)  # the session is alice's now
        request = tools.held("bob", 500)
    forged = ApprovalRequest(**{**request.__dict__, "principal": MALLORY})
    with pytest.raises(az.IdentityError):
        tools.authz.approve(forged)


def test_a_grant_expires_with_its_request() -> None:
    tools = Tools()
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        tools.authz.approve(tools.held("bob", 500))
        tools.clock.now += 301
        tools.held("bob", 500)
        late = tools.held("bob", 500)
        tools.clock.now += 301
        with pytest.raises(az.ConfigurationError, match="expired"):
            tools.authz.approve(late)
        tools.held("bob", 500)
    assert tools.ran == []


def test_a_grant_made_again_after_expiry_covers_the_call_again() -> None:
    tools = Tools()
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        tools.authz.approve(tools.held("bob", 500))
        tools.clock.now += 301
        tools.authz.approve(tools.held("bob", 500))
        assert tools.refund("bob", 500) == "refunded"


def test_a_denial_by_any_non_approvable_forbid_stays_a_plain_denial() -> None:
    tools = Tools()
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"), pytest.raises(az.AccessDenied) as caught:
        tools.refund("mallory", 500)
    assert not isinstance(caught.value, az.ApprovalRequired)
    assert set(caught.value.decision.reasons) == {"big-refunds", "never-to-mallory"}
    assert not any(event.extra.get("approval") for event in tools.sink.events)


def test_a_denial_because_no_permit_matched_is_not_approvable() -> None:
    policies = POLICIES.replace('permit(principal, action == Action::"refund", resource)',
                                'permit(principal, action == Action::"refund", resource) when { false }')
    tools = Tools(policies=policies)
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        for amount in (5, 500):
            with pytest.raises(az.AccessDenied) as caught:
                tools.refund("bob", amount)
            assert not isinstance(caught.value, az.ApprovalRequired)
    assert tools.ran == []


def test_without_a_session_an_approvable_call_is_plainly_denied_and_does_not_run() -> None:
    tools = Tools()
    with tools.authz.acting_as(ALICE), pytest.raises(az.AccessDenied) as caught:
        tools.refund("bob", 500)
    assert not isinstance(caught.value, az.ApprovalRequired) and tools.ran == []


def test_in_shadow_mode_nothing_is_held() -> None:
    tools = Tools(mode="shadow")
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        assert tools.refund("bob", 500) == "refunded"


def test_a_single_use_grant_covers_no_bare_decision_nor_a_decision_without_running() -> None:
    tools = Tools()
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        tools.authz.approve(tools.held("bob", 500))
        assert not tools.authz.authorize_tool_call("refund", {"to": "bob", "amount": 500}).allowed
        assert not tools.authz.begin_tool_call("refund", {"to": "bob", "amount": 500},
                                               record=False).admits
        assert tools.refund("bob", 500) == "refunded"  # still there for the call itself


def test_the_held_call_the_grant_and_the_run_are_audited() -> None:
    tools = Tools()
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        request = tools.held("bob", 500)
        tools.authz.approve(request, granted_by="supervisor")
        tools.refund("bob", 500)
    held, grant, run = tools.sink.events
    assert (held.decision, held.extra) == ("deny", {"approval": "required", "approval_request": request.id})
    assert held.decision_id == request.decision_id
    assert grant.action == 'Action::"session.approve"' and grant.decision == "allow"
    assert grant.extra["approval"] == "granted" and grant.extra["answered_by"] == "supervisor"
    assert grant.extra["approved_action"] == 'Action::"refund"' and grant.session == "c1"
    # No argument values in the audit trail (the clock and the random ids blanked: they may spell 500).
    recorded = dataclasses.replace(grant, timestamp=0.0, decision_id="",
                                   extra={**grant.extra, "approval_request": ""})
    assert "500" not in recorded.to_json()
    assert (run.decision, run.extra) == ("allow", {"approval": "used"})


def test_one_grant_runs_once_under_parallel_calls() -> None:
    tools = Tools()
    with tools.authz.acting_as(ALICE), tools.authz.session("race"):
        tools.authz.approve(tools.held("bob", 500))
    outcomes: list[str] = []

    def call(_: int) -> None:
        with tools.authz.acting_as(ALICE), tools.authz.session("race"):
            try:
                outcomes.append(tools.refund("bob", 500))
            except az.ApprovalRequired:
                outcomes.append("held")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(call, range(16)))
    assert outcomes.count("refunded") == 1 and outcomes.count("held") == 15
    assert tools.ran == [("bob", 500)]


def test_one_grant_runs_once_under_asyncio() -> None:
    tools = Tools(is_async=True)
    with tools.authz.acting_as(ALICE), tools.authz.session("race"):
        with pytest.raises(az.ApprovalRequired) as caught:
            asyncio.run(tools.refund("bob", 500))
        tools.authz.approve(caught.value.approval)

        async def many() -> list[Any]:
            return await asyncio.gather(*(tools.refund("bob", 500) for _ in range(10)),
                                        return_exceptions=True)

        outcomes = asyncio.run(many())
    assert [o for o in outcomes if o == "refunded"] == ["refunded"]
    assert all(isinstance(o, az.ApprovalRequired) for o in outcomes if o != "refunded")


WORKER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import agentauthz as az
    from agentauthz.session import SessionConfig, SQLiteSessionStore

    authz = az.Authorizer.from_text({policies!r}, schema={schema!r}, audit=[],
                                    sessions=SessionConfig(store=SQLiteSessionStore(sys.argv[1])))

    @authz.guard(action="refund")
    def refund(to: str, amount: int) -> str:
        return "refunded"

    ran = 0
    with authz.acting_as(az.EntityUID("User", "alice")), authz.session("shared"):
        for _ in range(20):
            try:
                refund("bob", 500)
                ran += 1
            except az.ApprovalRequired:
                pass
    print(ran)
""")


def test_one_grant_runs_once_across_processes_sharing_a_sqlite_store(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    tools = Tools(store=SQLiteSessionStore(path))
    tools.clock.now = __import__("time").time()
    with tools.authz.acting_as(ALICE), tools.authz.session("shared"):
        tools.authz.approve(tools.held("bob", 500))
    code = WORKER.format(root=str(ROOT), policies=POLICIES, schema=SCHEMA)
    children = [subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(3)]
    ran = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        ran.append(int(out.strip()))
    assert sum(ran) == 1, ran


def test_a_sqlite_store_keeps_expiry_and_single_use(tmp_path: Path) -> None:
    store = SQLiteSessionStore(tmp_path / "s.db")
    tools = Tools(store=store)
    with tools.authz.acting_as(ALICE), tools.authz.session("c1") as session:
        tools.authz.approve(tools.held("bob", 500))
        (kept,) = SQLiteSessionStore(tmp_path / "s.db").load("c1", since=0, history=1).approvals
        assert kept.once and kept.expires_at == tools.clock.now + 300
        assert tools.refund("bob", 500) == "refunded"
        assert session.state().approvals == ()


# -- the approver: a plain callback, sync and async ------------------------------------------------


def test_an_approver_that_grants_runs_the_call_at_once() -> None:
    asked: list[ApprovalRequest] = []
    tools = Tools(approver=lambda request: asked.append(request) or True)
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        assert tools.refund("bob", 500) == "refunded"
        assert tools.refund("bob", 5) == "refunded"  # not held: not asked
    assert [request.arguments for request in asked] == [{"to": "bob", "amount": 500}]
    assert [event.extra.get("approval") for event in tools.sink.events] == [
        "required", "granted", "used", None]


@pytest.mark.parametrize("answer", [False, "yes", 1, {"approved": True}])
def test_an_approver_answer_other_than_true_leaves_the_call_denied(answer: object) -> None:
    tools = Tools(approver=lambda request: answer)
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"), pytest.raises(az.AccessDenied) as caught:
        tools.refund("bob", 500)
    assert not isinstance(caught.value, az.ApprovalRequired) and tools.ran == []
    assert tools.sink.events[-1].extra["approval"] == "refused"


def test_an_approver_answering_none_leaves_the_call_held_for_a_person_later() -> None:
    queued: list[ApprovalRequest] = []
    tools = Tools(approver=lambda request: queued.append(request))
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        request = tools.held("bob", 500)
    assert queued == [request] and tools.ran == []
    assert not any(event.extra.get("approval") == "refused" for event in tools.sink.events)
    tools.authz.approve(request, granted_by="reviewer")
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        assert tools.refund("bob", 500) == "refunded"
    assert len(queued) == 1  # the granted call was not put to the approver again


def test_an_approver_that_fails_grants_nothing_and_its_error_propagates() -> None:
    def broken(request: ApprovalRequest) -> bool:
        raise RuntimeError("review service down")

    tools = Tools(approver=broken)
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"), pytest.raises(RuntimeError):
        tools.refund("bob", 500)
    assert tools.ran == []
    with tools.authz.acting_as(ALICE), tools.authz.session("c1") as session:
        assert session.state().approvals == ()


def test_an_async_approver_answers_async_calls_and_never_sync_ones() -> None:
    async def approve(request: ApprovalRequest) -> bool:
        await asyncio.sleep(0)
        return True

    async_tools = Tools(approver=approve, is_async=True)
    with async_tools.authz.acting_as(ALICE), async_tools.authz.session("c1"):
        assert asyncio.run(async_tools.refund("bob", 500)) == "refunded"
    sync_tools = Tools(approver=approve)
    with sync_tools.authz.acting_as(ALICE), sync_tools.authz.session("c1"), pytest.raises(az.AccessDenied):
        sync_tools.refund("bob", 500)
    assert sync_tools.ran == []


def test_begin_tool_call_asks_the_approver_too() -> None:
    tools = Tools(approver=lambda request: True)
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        call = tools.authz.begin_tool_call("refund", {"to": "bob", "amount": 500})
        assert call.admits and call.used_approval is not None and call.used_approval.once


def test_a_held_call_of_a_message_tool_tells_the_model_it_awaits_approval() -> None:
    tools = Tools()

    @tools.authz.guard(action="refund", name="refund_quietly", on_deny="message")
    def refund_quietly(to: str, amount: int) -> str:
        return "refunded"

    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        text = refund_quietly("bob", 500)
    assert "approval" in text and "big-refunds" not in text


# -- the class: only approvable forbids ever ask a person ------------------------------------------

def forbid(policy_id: str, approvable: bool, condition: str) -> str:
    if approvable:
        return (f'@id("{policy_id}") @approval("required") forbid(principal, action == Action::"refund", '
                f"resource) when {{ {condition} && !context.session.approved }};")
    return (f'@id("{policy_id}") forbid(principal, action == Action::"refund", resource) '
            f"when {{ {condition} }};")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=approval_cases)
def test_a_call_is_held_only_when_approvable_forbids_alone_deny_it_and_granting_would_allow_it(
        case: tuple[list[tuple[str, bool, str]], bool, str, int]) -> None:
    chosen, permit, to, amount = case
    text = "\n".join(forbid(*f) for f in chosen)
    if permit:
        text += '\n@id("allow") permit(principal, action == Action::"refund", resource);'
    tools = Tools(policies=text or 'forbid(principal, action, resource) when { false };')
    applying = [f for f in chosen if (f[2] == "context.input.amount > 100" and amount > 100)
                or (f[2] == 'context.input.to == "bob"' and to == "bob")
                or (f[2] == "context.input.amount > 1000" and amount > 1000)
                or (f[2] == 'context.input.to == "eve"' and to == "eve")]
    with tools.authz.acting_as(ALICE), tools.authz.session("c"):
        try:
            tools.refund(to, amount)
            outcome = "ran"
        except az.ApprovalRequired:
            outcome = "held"
        except az.AccessDenied:
            outcome = "denied"
    if permit and not applying:
        assert outcome == "ran"
    elif permit and all(approvable for _, approvable, _ in applying):
        assert outcome == "held"
    else:
        assert outcome == "denied"
    assert len(tools.ran) == (outcome == "ran")


def test_one_grant_lifts_every_approvable_forbid_that_held_the_call() -> None:
    tools = Tools()
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        request = tools.held("bob", 20000)
        assert request.why == ("big-refunds", "huge-refunds-need-review")
        tools.authz.approve(request)
        assert tools.refund("bob", 20000) == "refunded"


# -- Verified Permissions: approvals are plain context ---------------------------------------------


def test_held_grant_and_run_decide_the_same_on_verified_permissions() -> None:
    pytest.importorskip("boto3")
    from agentauthz.avp._engine import VerifiedPermissionsEngine
    from agentauthz.testing import LocalVerifiedPermissions

    store = az.PolicyStore.from_text(POLICIES, schema=SCHEMA)
    assert store.approvable == {"big-refunds", "huge-refunds-need-review"}
    outcomes: dict[str, list[str]] = {}
    with LocalVerifiedPermissions(store) as server:
        client = server.client(connect_timeout=2, read_timeout=2, retries={"max_attempts": 1})
        with VerifiedPermissionsEngine(server.policy_store_id, client=client) as avp:
            engines: dict[str, az.Engine] = {"local": az.LocalEngine(store), "avp": avp}
            for name, engine in engines.items():
                config = SessionConfig(schema=SCHEMA if name == "avp" else None,
                                       approvals=ApprovalConfig(approvable=store.approvable))
                authz = az.Authorizer(engine, audit=[], sessions=config)

                @authz.guard(action="refund")
                def refund(to: str, amount: int) -> str:
                    return "refunded"

                seen = outcomes.setdefault(name, [])
                with authz.acting_as(ALICE), authz.session("c1"):
                    for to, amount in [("bob", 5), ("bob", 500), ("mallory", 500), ("bob", 500),
                                       ("bob", 20000)]:
                        try:
                            seen.append(refund(to, amount))
                        except az.ApprovalRequired as exc:
                            seen.append("held:" + ",".join(exc.approval.why))
                            if (to, amount) == ("bob", 500) and seen.count(seen[-1]) == 1:
                                authz.approve(exc.approval)
                        except az.AccessDenied as exc:
                            seen.append("denied:" + ",".join(exc.decision.reasons))
    assert outcomes["local"] == outcomes["avp"] == [
        "refunded", "held:big-refunds", "denied:big-refunds,never-to-mallory", "refunded",
        "held:big-refunds,huge-refunds-need-review"]


# -- a rule a person must lift is never skipped ----------------------------------------------------

UNTYPED = """
@id("allow-all") permit(principal, action, resource);
@id("big-refunds") @approval("required")
forbid(principal, action == Action::"refund", resource)
when { context.input.amount > 100 && !context.session.approved };
"""


def test_without_a_schema_or_a_session_an_approvable_forbid_that_cannot_evaluate_denies() -> None:
    authz = az.Authorizer.from_text(UNTYPED, audit=[])
    ran = []

    @authz.guard(action="refund")
    def refund(to: str, amount: int) -> str:
        ran.append(amount)
        return "refunded"

    with authz.acting_as(ALICE):
        decision = authz.authorize(action="refund", resource=az.EntityUID("Tool", "refund"),
                                   context={"input": {"to": "bob", "amount": 500}})
        assert not decision.allowed and any("could not be evaluated" in e for e in decision.errors)
        with pytest.raises(az.AccessDenied) as caught:
            refund("bob", 500)
        assert not isinstance(caught.value, az.ApprovalRequired)
        assert refund("bob", 5) == "refunded"  # the rule did not apply: nothing failed
    with authz.acting_as(ALICE), authz.session("c1"), pytest.raises(az.ApprovalRequired):
        refund("bob", 500)
    assert ran == [5]


def test_a_forbid_listed_approvable_in_the_configuration_is_never_skipped_either() -> None:
    listed = UNTYPED.replace('@approval("required")', "")
    authz = az.Authorizer.from_text(
        listed, audit=[], sessions=SessionConfig(approvals=ApprovalConfig(approvable={"big-refunds"})))
    with authz.acting_as(ALICE):
        assert not authz.authorize(action="refund", resource=az.EntityUID("Tool", "refund"),
                                   context={"input": {"to": "bob", "amount": 500}}).allowed
    skipping = az.Authorizer.from_text(listed, audit=[], policy_errors="skip")  # Cedar's own skip-on-error
    with skipping.acting_as(ALICE):
        assert skipping.authorize(action="refund", resource=az.EntityUID("Tool", "refund"),
                               context={"input": {"to": "bob", "amount": 500}}).allowed


class ForgetfulStore(MemorySessionStore):
    """A store written before single-use approvals: it admits calls without using approvals up."""

    consumes_approvals = False

    def admit(self, session_id: str, call: CallRecord, *, owner: str, version: int) -> Any:
        return super().admit(session_id, dataclasses.replace(call, approval=None), owner=owner,
                             version=version)


def test_a_store_that_cannot_use_approvals_up_never_lets_a_single_use_grant_run() -> None:
    tools = Tools(store=ForgetfulStore())
    with tools.authz.acting_as(ALICE), tools.authz.session("c1"):
        tools.authz.approve(tools.held("bob", 500))
        tools.held("bob", 500)
        tools.held("bob", 500)
    assert tools.ran == []


def test_on_verified_permissions_listed_approvable_forbids_are_never_skipped_without_a_session() -> None:
    pytest.importorskip("boto3")
    from agentauthz.avp._engine import VerifiedPermissionsEngine
    from agentauthz.testing import LocalVerifiedPermissions

    store = az.PolicyStore.from_text(UNTYPED)
    with LocalVerifiedPermissions(store) as server, VerifiedPermissionsEngine(
            server.policy_store_id, client=server.client()) as avp:
        authz = az.Authorizer(avp, audit=[], sessions=SessionConfig(
            approvals=ApprovalConfig(approvable=store.approvable)))
        with authz.acting_as(ALICE):
            decision = authz.authorize(action="refund", resource=az.EntityUID("Tool", "refund"),
                                       context={"input": {"to": "bob", "amount": 500}})
    assert not decision.allowed and any("could not be evaluated" in e for e in decision.errors)
