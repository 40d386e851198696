"""Authorizer behaviour: identity binding, entity slices, modes, audit, and every deny path."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Sequence

import pytest

import agentauthz as az
from agentauthz.testing import capture_decisions

SCHEMA = """
namespace App {
  entity Group;
  entity User in [Group] = { department: String, clearance: Long };
  entity Document = { department: String, owner: User, secret?: String };
  action read, delete appliesTo { principal: User, resource: Document, context: { mfa?: Bool } };
}
"""

POLICIES = """
@id("same-department-read")
permit(principal, action == App::Action::"read", resource)
when { principal.department == resource.department };

@id("owner-delete")
permit(principal, action == App::Action::"delete", resource)
when { resource.owner == principal && context has mfa && context.mfa };

@id("no-secret-docs-for-low-clearance")
forbid(principal, action, resource)
when { resource has secret && principal.clearance < 3 };
"""

ALICE = az.Entity(
    uid=az.EntityUID("App::User", "alice"),
    attrs={"department": "hr", "clearance": 1},
    parents=[az.EntityUID("App::Group", "staff")],
)
BOB = az.Entity(uid=az.EntityUID("App::User", "bob"), attrs={"department": "eng", "clearance": 5})
HR_DOC = az.Entity(
    uid=az.EntityUID("App::Document", "hr-1"),
    attrs={"department": "hr", "owner": ALICE.uid},
)
SECRET_HR_DOC = az.Entity(
    uid=az.EntityUID("App::Document", "hr-secret"),
    attrs={"department": "hr", "owner": ALICE.uid, "secret": "launch codes 1234"},
)
STAFF = az.Entity(uid=az.EntityUID("App::Group", "staff"))


def make_authz(**options: object) -> az.Authorizer:
    store = az.PolicyStore.from_text(
        POLICIES, schema=SCHEMA, entities=[ALICE, BOB, HR_DOC, SECRET_HR_DOC, STAFF]
    )
    return az.Authorizer(az.LocalEngine(store), **options)  # type: ignore[arg-type]


class RaisingEngine:
    """An engine whose backend blows up, to prove failures deny."""

    name = "raising"
    fingerprint = "none"

    def resolve_action(self, action: str | az.EntityUID) -> az.EntityUID:
        return action if isinstance(action, az.EntityUID) else az.EntityUID("Action", action)

    def decide(self, requests: Sequence[az.Request], entities: Sequence[az.Entity] = ()) -> list[az.Decision]:
        raise RuntimeError("backend down")

    async def adecide(
        self, requests: Sequence[az.Request], entities: Sequence[az.Entity] = ()
    ) -> list[az.Decision]:
        raise RuntimeError("backend down")


class ShortEngine(RaisingEngine):
    """An engine that loses results, to prove a missing result denies."""

    def decide(self, requests: Sequence[az.Request], entities: Sequence[az.Entity] = ()) -> list[az.Decision]:
        return [az.Decision(allowed=True)] * (len(requests) - 1)


class RecordingEngine(RaisingEngine):
    """An engine that records the entities it is sent and allows everything."""

    def __init__(self) -> None:
        self.sent: list[list[az.Entity]] = []

    def decide(self, requests: Sequence[az.Request], entities: Sequence[az.Entity] = ()) -> list[az.Decision]:
        self.sent.append(list(entities))
        return [az.Decision(allowed=True, reasons=("recorded",))] * len(requests)


# -- identity ----------------------------------------------------------------------


def test_authorize_without_bound_principal_raises_identity_error() -> None:
    authz = make_authz()
    with pytest.raises(az.IdentityError, match="acting_as"):
        authz.authorize(action="read", resource=HR_DOC.uid)


def test_missing_identity_is_audited_as_a_denial() -> None:
    authz = make_authz()
    with capture_decisions() as events, pytest.raises(az.IdentityError):
        authz.authorize(action="read", resource=HR_DOC.uid)
    assert [(e.principal, e.decision) for e in events] == [(None, "deny")]


def test_acting_as_binds_principal_for_the_block_only() -> None:
    authz = make_authz()
    with authz.acting_as(ALICE.uid):
        assert authz.authorize(action="read", resource=HR_DOC.uid).allowed
    assert authz.identity is None
    with pytest.raises(az.IdentityError):
        authz.current_principal()


def test_acting_as_rejects_a_plain_string_principal() -> None:
    authz = make_authz()
    with pytest.raises(az.IdentityError), authz.acting_as('App::User::"alice"'):  # type: ignore[arg-type]
        pass


def test_nested_acting_as_restores_the_outer_identity() -> None:
    authz = make_authz()
    with authz.acting_as(ALICE.uid):
        with authz.acting_as(BOB.uid):
            assert authz.current_principal() == BOB.uid
        assert authz.current_principal() == ALICE.uid


def test_bound_entity_travels_with_the_request() -> None:
    engine = RecordingEngine()
    authz = az.Authorizer(engine)
    with authz.acting_as(ALICE):
        authz.authorize(action="read", resource=HR_DOC.uid)
    assert ALICE in engine.sent[0]


def test_concurrent_tasks_never_see_each_others_identity() -> None:
    authz = make_authz()

    async def ask(user: az.Entity) -> tuple[az.EntityUID, bool]:
        with authz.acting_as(user.uid):
            await asyncio.sleep(0)
            decision = await authz.aauthorize(action="read", resource=HR_DOC.uid)
            await asyncio.sleep(0)
            return authz.current_principal(), decision.allowed

    async def main() -> list[tuple[az.EntityUID, bool]]:
        return await asyncio.gather(*(ask(ALICE if i % 2 else BOB) for i in range(50)))

    results = asyncio.run(main())
    for index, (principal, allowed) in enumerate(results):
        expected = ALICE.uid if index % 2 else BOB.uid
        assert principal == expected
        assert allowed is (expected == ALICE.uid)


def test_threads_never_see_each_others_identity() -> None:
    authz = make_authz()
    wrong: list[str] = []

    def work(user: az.Entity, rounds: int) -> None:
        with authz.acting_as(user.uid):
            for _ in range(rounds):
                decision = authz.authorize(action="read", resource=HR_DOC.uid)
                if authz.current_principal() != user.uid or decision.allowed != (user is ALICE):
                    wrong.append(user.uid.id)

    threads = [threading.Thread(target=work, args=(ALICE if i % 2 else BOB, 50)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


# -- decisions ---------------------------------------------------------------------


def test_bare_action_name_resolves_in_the_schema_namespace() -> None:
    authz = make_authz()
    decision = authz.authorize(principal=ALICE.uid, action="read", resource=HR_DOC.uid)
    assert decision.allowed
    assert decision.reasons == ("same-department-read",)


def test_unknown_action_is_denied_with_an_error() -> None:
    authz = make_authz()
    decision = authz.authorize(principal=ALICE.uid, action="launch", resource=HR_DOC.uid)
    assert not decision.allowed
    assert decision.errors


def test_no_matching_permit_denies_without_reasons() -> None:
    decision = make_authz().authorize(principal=BOB.uid, action="read", resource=HR_DOC.uid)
    assert (decision.allowed, decision.reasons, decision.errors) == (False, (), ())


def test_forbid_overrides_permit_and_is_reported() -> None:
    decision = make_authz().authorize(principal=ALICE.uid, action="read", resource=SECRET_HR_DOC.uid)
    assert not decision.allowed
    assert decision.reasons == ("no-secret-docs-for-low-clearance",)


def test_context_is_passed_to_policies() -> None:
    authz = make_authz()
    with authz.acting_as(ALICE.uid):
        assert not authz.authorize(action="delete", resource=HR_DOC.uid).allowed
        assert authz.authorize(action="delete", resource=HR_DOC.uid, context={"mfa": True}).allowed


def test_context_of_the_wrong_type_is_denied_by_the_schema_check() -> None:
    authz = make_authz()
    decision = authz.authorize(
        principal=ALICE.uid, action="delete", resource=HR_DOC.uid, context={"mfa": "yes"}
    )
    assert not decision.allowed
    assert decision.errors


def test_float_in_context_is_rejected_before_evaluation() -> None:
    authz = make_authz()
    with pytest.raises(az.InvalidValueError, match="float"):
        authz.authorize(principal=ALICE.uid, action="read", resource=HR_DOC.uid, context={"x": 1.5})


def test_missing_resource_entity_denies_with_an_evaluation_error() -> None:
    decision = make_authz().authorize(
        principal=ALICE.uid, action="read", resource=az.EntityUID("App::Document", "nope")
    )
    assert not decision.allowed
    assert decision.errors


def test_resource_entity_given_inline_is_used_for_the_decision() -> None:
    fresh = az.Entity(uid=az.EntityUID("App::Document", "new"), attrs={"department": "hr", "owner": BOB.uid})
    decision = make_authz().authorize(principal=ALICE.uid, action="read", resource=fresh)
    assert decision.allowed


def test_inline_entity_overrides_the_stored_one() -> None:
    moved = az.Entity(uid=HR_DOC.uid, attrs={"department": "eng", "owner": ALICE.uid})
    authz = make_authz()
    assert not authz.authorize(principal=ALICE.uid, action="read", resource=moved).allowed
    assert authz.authorize(principal=ALICE.uid, action="read", resource=HR_DOC.uid).allowed


def test_two_different_entities_with_one_uid_deny() -> None:
    other = az.Entity(uid=HR_DOC.uid, attrs={"department": "eng", "owner": ALICE.uid})
    same_uid = az.Entity(uid=HR_DOC.uid, attrs={"department": "hr", "owner": BOB.uid})
    decision = make_authz().authorize(
        principal=ALICE.uid, action="read", resource=other, entities=[same_uid]
    )
    assert not decision.allowed
    assert any("two different entities" in error for error in decision.errors)


def test_authorize_many_keeps_request_order() -> None:
    authz = make_authz()
    requests = [
        az.Request(principal=ALICE.uid, action="read", resource=HR_DOC.uid),
        az.Request(principal=BOB.uid, action="read", resource=HR_DOC.uid),
        az.Request(principal=ALICE.uid, action="read", resource=SECRET_HR_DOC.uid),
        az.Request(principal=ALICE.uid, action="delete", resource=HR_DOC.uid, context={"mfa": True}),
    ]
    assert [d.allowed for d in authz.authorize_many(requests)] == [True, False, False, True]


def test_async_twins_agree_with_sync() -> None:
    authz = make_authz()
    requests = [
        az.Request(principal=user.uid, action=action, resource=doc.uid)
        for user in (ALICE, BOB) for action in ("read", "delete") for doc in (HR_DOC, SECRET_HR_DOC)
    ] * 3
    sync = authz.authorize_many(requests)

    async def main() -> tuple[list[az.Decision], az.Decision]:
        many = await authz.aauthorize_many(requests)
        one = await authz.aauthorize(principal=ALICE.uid, action="read", resource=HR_DOC.uid)
        return many, one

    many, one = asyncio.run(main())
    assert many == sync
    assert one.allowed


# -- fail closed -------------------------------------------------------------------


def test_engine_exception_denies_every_request() -> None:
    authz = az.Authorizer(RaisingEngine())
    decisions = authz.authorize_many(
        [az.Request(principal=ALICE.uid, action="read", resource=HR_DOC.uid)] * 3
    )
    assert [d.allowed for d in decisions] == [False] * 3
    assert all("backend down" in d.errors[0] for d in decisions)


def test_async_engine_exception_denies() -> None:
    authz = az.Authorizer(RaisingEngine())
    decision = asyncio.run(authz.aauthorize(principal=ALICE.uid, action="read", resource=HR_DOC.uid))
    assert not decision.allowed


def test_engine_losing_a_result_denies_the_whole_batch() -> None:
    authz = az.Authorizer(ShortEngine())
    decisions = authz.authorize_many(
        [az.Request(principal=ALICE.uid, action="read", resource=HR_DOC.uid)] * 2
    )
    assert [d.allowed for d in decisions] == [False, False]


def test_failing_entity_provider_denies() -> None:
    class BrokenProvider:
        def get_entities(self, uids: object) -> list[az.Entity]:
            raise ConnectionError("directory unreachable")

    authz = az.Authorizer(az.LocalEngine(az.PolicyStore.from_text("permit(principal, action, resource);")),
                          entities=BrokenProvider())
    decision = authz.authorize(principal=ALICE.uid, action="read", resource=HR_DOC.uid)
    assert not decision.allowed
    assert "directory unreachable" in decision.errors[0]


def test_object_that_is_not_an_engine_is_a_configuration_error() -> None:
    with pytest.raises(az.ConfigurationError):
        az.Authorizer(object())  # type: ignore[arg-type]


def test_unknown_mode_is_a_configuration_error() -> None:
    with pytest.raises(az.ConfigurationError, match="mode"):
        make_authz(mode="audit-only")


def test_evaluation_errors_are_truncated_and_never_dump_entities() -> None:
    many_attrs = {f"attr{i}": "x" * 50 for i in range(200)}
    big = az.Entity(uid=az.EntityUID("Doc", "big"), attrs=many_attrs)
    store = az.PolicyStore.from_text("permit(principal, action, resource) when { resource.missing == 1 };",
                                     entities=[big])
    decision = az.Authorizer(az.LocalEngine(store)).authorize(
        principal=az.EntityUID("User", "u"), action="read", resource=big.uid
    )
    assert not decision.allowed
    assert decision.errors and all(len(e) <= 300 for e in decision.errors)
    assert all("xxxxxxxxxx" not in e for e in decision.errors)


# -- shadow mode -------------------------------------------------------------------


def test_shadow_mode_reports_the_denial_but_admits_the_call() -> None:
    authz = make_authz(mode="shadow")
    with capture_decisions() as events:
        decision = authz.authorize(principal=BOB.uid, action="read", resource=HR_DOC.uid)
    assert (decision.allowed, decision.enforced, decision.admits) == (False, False, True)
    assert (events[0].decision, events[0].mode, events[0].enforced) == ("deny", "shadow", False)


def test_enforce_mode_denial_does_not_admit() -> None:
    decision = make_authz().authorize(principal=BOB.uid, action="read", resource=HR_DOC.uid)
    assert (decision.enforced, decision.admits) == (True, False)


# -- entity providers --------------------------------------------------------------


def test_provider_slice_holds_principal_ancestors_resource_and_references() -> None:
    engine = RecordingEngine()
    unrelated = az.Entity(uid=az.EntityUID("App::User", "zed"), attrs={"department": "x", "clearance": 0})
    authz = az.Authorizer(engine, entities=[ALICE, BOB, HR_DOC, STAFF, unrelated])
    authz.authorize(principal=BOB.uid, action="read", resource=HR_DOC.uid)
    sent = {entity.uid for entity in engine.sent[0]}
    # HR_DOC references ALICE (owner), ALICE's parent is STAFF.
    assert sent == {BOB.uid, HR_DOC.uid, ALICE.uid, STAFF.uid}


def test_provider_entities_decide_on_the_local_engine() -> None:
    store = az.PolicyStore.from_text(POLICIES, schema=SCHEMA)
    authz = az.Authorizer(az.LocalEngine(store), entities=[ALICE, BOB, HR_DOC, SECRET_HR_DOC, STAFF])
    assert authz.authorize(principal=ALICE.uid, action="read", resource=HR_DOC.uid).allowed
    assert not authz.authorize(principal=BOB.uid, action="read", resource=HR_DOC.uid).allowed


# -- audit -------------------------------------------------------------------------


def test_every_decision_emits_one_audit_event_with_the_contract_fields() -> None:
    authz = make_authz()
    with capture_decisions() as events, authz.acting_as(ALICE.uid, correlation_id="conv-7"):
        authz.authorize(action="read", resource=HR_DOC.uid)
        authz.authorize_many([az.Request(principal=BOB.uid, action="read", resource=HR_DOC.uid)] * 2)
    assert len(events) == 3
    event = events[0]
    assert event.principal == 'App::User::"alice"'
    assert event.action == 'App::Action::"read"'
    assert event.resource == 'App::Document::"hr-1"'
    assert (event.decision, event.reasons, event.engine, event.mode) == (
        "allow", ("same-department-read",), "local", "enforce")
    assert event.fingerprint == authz.engine.fingerprint
    assert event.correlation_id == "conv-7"
    assert event.elapsed_us >= 0


def test_audit_events_omit_attribute_values_by_default() -> None:
    authz = make_authz()
    with capture_decisions() as events:
        authz.authorize(principal=ALICE.uid, action="read", resource=SECRET_HR_DOC, context={"mfa": True})
    text = events[0].to_json()
    assert "launch codes" not in text
    assert events[0].request is None


def test_record_requests_puts_request_and_entities_in_the_event() -> None:
    authz = make_authz(record_requests=True)
    with capture_decisions() as events:
        authz.authorize(principal=ALICE.uid, action="delete", resource=HR_DOC.uid, context={"mfa": True})
    recorded = events[0].request
    assert recorded is not None
    assert recorded["request"]["context"] == {"mfa": True}


def test_record_requests_records_the_entities_an_entity_provider_supplied() -> None:
    store = az.PolicyStore.from_text(POLICIES, schema=SCHEMA, entities=[STAFF])
    authz = az.Authorizer(az.LocalEngine(store), entities=az.StaticEntityProvider([ALICE, HR_DOC]),
                          record_requests=True)
    with capture_decisions() as events:
        decision = authz.authorize(principal=ALICE.uid, action="read", resource=HR_DOC.uid)
    recorded = events[0].request
    assert recorded is not None
    uids = {(e["uid"]["type"], e["uid"]["id"]) for e in recorded["entities"]}
    assert {("App::User", "alice"), ("App::Document", "hr-1")} <= uids  # a replay decides as the call did
    assert decision.allowed


def test_logging_sink_writes_one_json_line_per_decision(caplog: pytest.LogCaptureFixture) -> None:
    authz = make_authz()
    with caplog.at_level(logging.INFO, logger="agentauthz.audit"):
        authz.authorize(principal=ALICE.uid, action="read", resource=HR_DOC.uid)
    records = [r for r in caplog.records if r.name == "agentauthz.audit"]
    assert len(records) == 1
    assert json.loads(records[0].getMessage())["decision"] == "allow"


def test_failing_audit_sink_does_not_change_the_decision() -> None:
    class BrokenSink:
        enabled = True

        def emit(self, event: az.AuditEvent) -> None:
            raise OSError("disk full")

    authz = make_authz(audit=[BrokenSink()])
    assert authz.authorize(principal=ALICE.uid, action="read", resource=HR_DOC.uid).allowed
    assert not authz.authorize(principal=BOB.uid, action="read", resource=HR_DOC.uid).allowed


def test_from_directory_builds_a_local_authorizer(tmp_path: object) -> None:
    import pathlib

    root = pathlib.Path(str(tmp_path))
    (root / "all.cedar").write_text('@id("all") permit(principal, action, resource);')
    authz = az.Authorizer.from_directory(root)
    decision = authz.authorize(principal=ALICE.uid, action="x", resource=HR_DOC.uid)
    assert decision.reasons == ("all",)


def test_context_values_never_appear_in_decision_errors() -> None:
    authz = make_authz()
    decision = authz.authorize(
        principal=ALICE.uid, action="delete", resource=HR_DOC.uid, context={"mfa": "sk-live-TOKEN-123"}
    )
    assert not decision.allowed and decision.errors
    assert all("sk-live-TOKEN-123" not in error for error in decision.errors)


def test_attribute_values_never_appear_in_evaluation_errors() -> None:
    leaky = az.Entity(uid=az.EntityUID("Doc", "d"), attrs={"n": "card 4111-1111"})
    authz = az.Authorizer.from_text(
        'permit(principal, action, resource) when { resource.n.lessThan(decimal("1.0")) };',
        entities=[leaky],
    )
    decision = authz.authorize(principal=ALICE.uid, action="read", resource=leaky.uid)
    assert not decision.allowed
    assert all("4111" not in error for error in decision.errors)
