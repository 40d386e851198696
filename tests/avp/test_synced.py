"""SyncedEngine: a Verified Permissions policy store copied into the process and decided embedded.

Everything runs against the local endpoint (``LocalVerifiedPermissions``) through a
real boto3 client; changes to the store are made through that client, as an
operator's ``push`` would make them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz.testing import LocalVerifiedPermissions

pytest.importorskip("boto3")
from agentauthz.avp._faults import Fault
from agentauthz.avp._synced import SyncedEngine

POLICIES = """
@id("readers") permit(principal, action == Action::"read", resource);
@id("templ") permit(principal == ?principal, action == Action::"write", resource == ?resource);
"""
LINKS = [az.TemplateLink(id="alice-d1", template="templ", principal=az.EntityUID("User", "alice"),
                         resource=az.EntityUID("Doc", "d1"))]
LISTING = ["GetSchema", "ListPolicyTemplates", "ListPolicies"]
NO_BOB = '@id("no-bob") forbid(principal == User::"bob", action, resource);'
NO_CAROL = '@id("no-carol") forbid(principal == User::"carol", action, resource);'


def read(user: str = "alice", doc: str = "d1") -> az.Request:
    return az.Request(principal=az.EntityUID("User", user), action="read", resource=az.EntityUID("Doc", doc))


def write(user: str = "alice", doc: str = "d1") -> az.Request:
    return az.Request(principal=az.EntityUID("User", user), action="write", resource=az.EntityUID("Doc", doc))


@pytest.fixture
def server() -> Iterator[LocalVerifiedPermissions]:
    store = az.PolicyStore.from_text(POLICIES, links=LINKS)
    with LocalVerifiedPermissions(store) as endpoint:
        yield endpoint


@pytest.fixture
def client(server: LocalVerifiedPermissions) -> Any:
    return server.client()


def add_forbid(client: Any, server: LocalVerifiedPermissions, statement: str) -> str:
    answer = client.create_policy(policyStoreId=server.policy_store_id,
                                  definition={"static": {"statement": statement}})
    return str(answer["policyId"])


def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_the_copy_decides_policies_templates_and_links_of_the_store(
        server: LocalVerifiedPermissions, client: Any) -> None:
    with SyncedEngine(server.policy_store_id, client=client, refresh_interval=None) as engine:
        decisions = engine.decide([read(), write(), write(doc="d2")])
    assert [(d.allowed, d.reasons) for d in decisions] == [
        (True, ("readers",)), (True, ("alice-d1",)), (False, ())]


def test_refresh_picks_up_a_policy_added_to_the_store(server: LocalVerifiedPermissions, client: Any) -> None:
    with SyncedEngine(server.policy_store_id, client=client, refresh_interval=None) as engine:
        assert engine.decide([read("bob")])[0].allowed
        policy_id = add_forbid(client, server, NO_BOB)
        assert engine.decide([read("bob")])[0].allowed  # not yet refreshed
        assert engine.refresh() is True
        decision = engine.decide([read("bob")])[0]
    # Created without an agentauthz name: decisions name it by its AVP id, as the remote engine does.
    assert (decision.allowed, decision.reasons) == (False, (policy_id,))


def test_refresh_picks_up_an_updated_statement_and_a_deleted_policy(
        server: LocalVerifiedPermissions, client: Any) -> None:
    policy_id = add_forbid(client, server, '@id("no-bob") forbid(principal, action, resource) '
                                           'when { principal == User::"bob" };')
    with SyncedEngine(server.policy_store_id, client=client, refresh_interval=None) as engine:
        assert not engine.decide([read("bob")])[0].allowed
        client.update_policy(policyStoreId=server.policy_store_id, policyId=policy_id, definition={
            "static": {"statement": '@id("no-bob") forbid(principal, action, resource) '
                                    'when { principal == User::"carol" };'}})
        assert engine.refresh() is True
        assert engine.decide([read("bob")])[0].allowed
        assert not engine.decide([read("carol")])[0].allowed
        client.delete_policy(policyStoreId=server.policy_store_id, policyId=policy_id)
        assert engine.refresh() is True
        assert engine.decide([read("carol")])[0].allowed


def test_the_background_refresh_swaps_in_a_changed_store(
        server: LocalVerifiedPermissions, client: Any) -> None:
    with SyncedEngine(server.policy_store_id, client=client, refresh_interval=0.05, max_age=5) as engine:
        before = engine.fingerprint
        add_forbid(client, server, '@id("no-bob") forbid(principal == User::"bob", action, resource);')
        assert eventually(lambda: not engine.decide([read("bob")])[0].allowed)
        assert engine.fingerprint != before
        assert engine.decide([read("alice")])[0].allowed


def test_a_check_of_an_unchanged_store_lists_it_and_reads_no_statement(
        server: LocalVerifiedPermissions, client: Any) -> None:
    with SyncedEngine(server.policy_store_id, client=client, refresh_interval=None) as engine:
        server.reset_calls()
        assert engine.refresh() is False
    assert [call.operation for call in server.calls] == LISTING


def test_a_refresh_reads_only_the_statements_that_changed(
        server: LocalVerifiedPermissions, client: Any) -> None:
    with SyncedEngine(server.policy_store_id, client=client, refresh_interval=None) as engine:
        add_forbid(client, server, '@id("no-bob") forbid(principal == User::"bob", action, resource);')
        server.reset_calls()
        assert engine.refresh() is True
    assert [call.operation for call in server.calls] == [*LISTING, "GetPolicy"]


def test_decisions_make_no_call_to_verified_permissions(
        server: LocalVerifiedPermissions, client: Any) -> None:
    sink = az.MemorySink()
    with SyncedEngine(server.policy_store_id, client=client, refresh_interval=None) as engine:
        authz = az.Authorizer(engine, audit=[sink])
        server.reset_calls()
        for index in range(1000):
            authz.authorize(principal=az.EntityUID("User", f"u{index % 7}"), action="read",
                            resource=az.EntityUID("Doc", f"d{index}"))
    assert server.call_count() == 0
    assert len(sink.events) == 1000
    assert {event.engine for event in sink.events} == {"avp-synced"}


def test_a_failed_refresh_keeps_the_copy_until_max_age_then_every_decision_is_denied_and_audited(
        server: LocalVerifiedPermissions, client: Any) -> None:
    sink = az.MemorySink()
    with SyncedEngine(server.policy_store_id, client=server.client(retries={"max_attempts": 1}),
                      refresh_interval=0.05, max_age=1.5) as engine:
        server.inject("ListPolicies", Fault.server_error(500))
        authz = az.Authorizer(engine, audit=[sink])
        assert authz.authorize(principal=az.EntityUID("User", "alice"), action="read",
                               resource=az.EntityUID("Doc", "d1")).allowed
        assert eventually(lambda: engine.last_error is not None)
        assert "ListPolicies" in str(engine.last_error)
        assert engine.decide([read()])[0].allowed  # the old copy is still in use
        assert eventually(lambda: not engine.decide([read()])[0].allowed)
        stale = authz.authorize(principal=az.EntityUID("User", "alice"), action="read",
                                resource=az.EntityUID("Doc", "d1"))
        assert not stale.allowed
        assert "max_age" in stale.errors[0] and "ListPolicies" in stale.errors[0]
        assert sink.events[-1].decision == "deny" and sink.events[-1].errors == stale.errors
        assert not engine.may_allow(az.EntityUID("User", "alice"), az.EntityUID("Action", "read"), None)
        server.clear_faults()
        assert eventually(lambda: engine.decide([read()])[0].allowed)
        assert engine.last_error is None


def test_a_copy_without_background_checks_goes_stale_after_max_age() -> None:
    store = az.PolicyStore.from_text('@id("all") permit(principal, action, resource);')
    with LocalVerifiedPermissions(store) as server, SyncedEngine(
            server.policy_store_id, client=server.client(), refresh_interval=None, max_age=1.0) as engine:
        engine.refresh()  # a busy machine may take a while to build the engine: confirm the copy now
        assert engine.decide([read()])[0].allowed
        time.sleep(1.2)
        assert not engine.decide([read()])[0].allowed
        engine.refresh()
        assert engine.decide([read()])[0].allowed


@pytest.mark.parametrize("operation", ["GetSchema", "ListPolicyTemplates", "ListPolicies", "GetPolicy",
                                       "GetPolicyTemplate"])
def test_an_unreadable_answer_never_becomes_an_empty_copy(operation: str) -> None:
    # A 200 without JSON reads as {} in botocore: taken as "no policies", a lost forbid would allow.
    text = POLICIES + '@id("no-bob") forbid(principal == User::"bob", action, resource);'
    schema = """entity User; entity Doc; action read, write appliesTo { principal: User, resource: Doc };"""
    store = az.PolicyStore.from_text(text, links=LINKS, schema=schema)
    with LocalVerifiedPermissions(store) as server:
        client = server.client(retries={"max_attempts": 1})
        with server.faults(operation, Fault.malformed_json(b"not json")), pytest.raises(az.EngineError):
            SyncedEngine(server.policy_store_id, client=client, refresh_interval=None)
        with SyncedEngine(server.policy_store_id, client=client, refresh_interval=None) as engine:
            add_forbid(client, server, NO_CAROL)
            [template] = client.list_policy_templates(policyStoreId=server.policy_store_id)["policyTemplates"]
            client.update_policy_template(  # so that the refresh reads the template again
                policyStoreId=server.policy_store_id, policyTemplateId=template["policyTemplateId"],
                statement=POLICIES.strip().splitlines()[1])
            with server.faults(operation, Fault.malformed_json(b"not json")), pytest.raises(az.EngineError):
                engine.refresh()
            assert not engine.decide([read("bob")])[0].allowed  # the old copy, whole
            assert engine.refresh() is True
            assert not engine.decide([read("carol")])[0].allowed


def test_a_store_holding_a_shadow_policy_is_refused_because_verified_permissions_enforces_it() -> None:
    with LocalVerifiedPermissions(az.PolicyStore.from_text(POLICIES, links=LINKS)) as server:
        client = server.client()
        add_forbid(client, server, '@id("trial") @mode("shadow") forbid(principal, action, resource);')
        with pytest.raises(az.EngineError, match="shadow"):
            SyncedEngine(server.policy_store_id, client=client, refresh_interval=None)


def test_decisions_during_refreshes_see_one_whole_copy(server: LocalVerifiedPermissions, client: Any) -> None:
    # A forbid and the permit it overrides change together: a decision mixing copies would allow bob.
    with SyncedEngine(server.policy_store_id, client=client, refresh_interval=None) as engine:
        seen: set[tuple[bool, tuple[str, ...]]] = set()
        forbids: set[str] = set()
        done = threading.Event()

        def decide() -> None:
            while not done.is_set():
                decision = engine.decide([read("bob")])[0]
                seen.add((decision.allowed, decision.reasons))

        worker = threading.Thread(target=decide)
        worker.start()
        try:
            for _ in range(5):
                policy_id = add_forbid(client, server,
                                       '@id("no-bob") forbid(principal == User::"bob", action, resource);')
                forbids.add(policy_id)
                engine.refresh()
                client.delete_policy(policyStoreId=server.policy_store_id, policyId=policy_id)
                engine.refresh()
        finally:
            done.set()
            worker.join()
    assert seen <= {(True, ("readers",))} | {(False, (policy_id,)) for policy_id in forbids}


def test_bad_timings_are_configuration_errors(server: LocalVerifiedPermissions, client: Any) -> None:
    with pytest.raises(az.ConfigurationError, match="max_age"):
        SyncedEngine(server.policy_store_id, client=client, max_age=0)
    with pytest.raises(az.ConfigurationError, match="refresh_interval"):
        SyncedEngine(server.policy_store_id, client=client, refresh_interval=60, max_age=30)


def test_close_stops_the_background_checks(server: LocalVerifiedPermissions, client: Any) -> None:
    engine = SyncedEngine(server.policy_store_id, client=client, refresh_interval=0.05, max_age=5)
    engine.close()
    server.reset_calls()
    time.sleep(0.2)
    assert server.call_count() == 0


def test_the_engine_is_exported_at_the_top_level() -> None:
    assert az.SyncedEngine is SyncedEngine


def test_a_bare_action_name_resolves_as_the_remote_engine_resolves_it() -> None:
    schema = """namespace Shop {
      entity User; entity Doc;
      action read appliesTo { principal: User, resource: Doc };
    }"""
    store = az.PolicyStore.from_text('@id("r") permit(principal, action == Shop::Action::"read", resource);',
                                     schema=schema)
    with LocalVerifiedPermissions(store) as server, SyncedEngine(
            server.policy_store_id, client=server.client(), refresh_interval=None) as engine:
        remote = az.VerifiedPermissionsEngine(server.policy_store_id, client=server.client())
        for name in ("read", "write", 'Other::Action::"x"'):
            assert engine.resolve_action(name) == remote.resolve_action(name)
        request = az.Request(principal=az.EntityUID("Shop::User", "a"), action=engine.resolve_action("read"),
                             resource=az.EntityUID("Shop::Doc", "d"))
        assert engine.decide([request])[0].reasons == remote.decide([request])[0].reasons == ("r",)
        remote.close()


def test_a_policy_created_in_verified_permissions_with_its_own_id_reports_the_remote_engines_id() -> None:
    # Created in the console or by another tool: no agentauthz name, an @id of its own. AVP's decisions
    # name its policy id; the copy's must too, or audit trails and parity differ by engine.
    template = ('@id("share") permit(principal == ?principal, action == Action::"read", '
                'resource == ?resource);')
    with LocalVerifiedPermissions(az.PolicyStore.from_text('@id("all") permit(principal, action, resource) '
                                                           'when { principal == User::"carol" };')) as server:
        client = server.client()
        store_id = server.policy_store_id
        add_forbid(client, server, '@id("no-bob") forbid(principal == User::"bob", action, resource);')
        add_forbid(client, server, 'forbid(principal == User::"dan", action, resource);')
        created = client.create_policy_template(policyStoreId=store_id, statement=template)
        template_id = created["policyTemplateId"]
        client.create_policy(policyStoreId=store_id, definition={"templateLinked": {
            "policyTemplateId": template_id, "principal": {"entityType": "User", "entityId": "erin"},
            "resource": {"entityType": "Doc", "entityId": "d"}}})
        remote = az.VerifiedPermissionsEngine(store_id, client=client)
        with SyncedEngine(store_id, client=client, refresh_interval=None) as engine:
            requests = [read(user, "d") for user in ("bob", "carol", "dan", "erin")]
            expected = [(d.allowed, d.reasons) for d in remote.decide(requests)]
            assert [(d.allowed, d.reasons) for d in engine.decide(requests)] == expected
        remote.close()
    assert expected[0][1] != ("no-bob",) and expected[3][0]  # AVP's ids; the link decides erin


_USERS = ("alice", "bob", "carol")
_CHANGE = st.tuples(st.sampled_from(["add-permit", "add-forbid", "update", "delete", "none"]),
                    st.sampled_from(_USERS), st.sampled_from(["read", "write"]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(_CHANGE, min_size=1, max_size=6))
def test_after_every_refresh_the_copy_decides_as_verified_permissions(
        server: LocalVerifiedPermissions, client: Any, changes: list[tuple[str, str, str]]) -> None:
    # Any sequence of policy changes made in the store: each refresh leaves a copy that decides every
    # request as the remote engine does, with the same determining policies.
    store_id = server.add_store(az.PolicyStore.from_text(POLICIES, links=LINKS))
    requests = [read(user) for user in _USERS] + [write(user) for user in _USERS]
    created: list[str] = []
    remote = az.VerifiedPermissionsEngine(store_id, client=client)
    try:
        with SyncedEngine(store_id, client=client, refresh_interval=None) as engine:
            for kind, user, action in changes:
                scope = f'principal == User::"{user}", action == Action::"{action}", resource'
                if kind in ("add-permit", "add-forbid"):
                    effect = "permit" if kind == "add-permit" else "forbid"
                    answer = client.create_policy(policyStoreId=store_id, definition={
                        "static": {"statement": f"{effect}({scope});"}})
                    created.append(answer["policyId"])
                elif kind == "update" and created:
                    policy_id = created[-1]
                    old = client.get_policy(policyStoreId=store_id, policyId=policy_id)
                    statement = old["definition"]["static"]["statement"].rstrip(";")
                    client.update_policy(policyStoreId=store_id, policyId=policy_id, definition={
                        "static": {"statement": f"{statement} when {{ principal has retired }};"}})
                elif kind == "delete" and created:
                    client.delete_policy(policyStoreId=store_id, policyId=created.pop(0))
                engine.refresh()
                mine = [(d.allowed, d.reasons) for d in engine.decide(requests)]
                assert mine == [(d.allowed, d.reasons) for d in remote.decide(requests)]
    finally:
        remote.close()
        server.delete_store(store_id)
