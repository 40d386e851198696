"""The DynamoDB session store: what only it has (pages, time to live, failures) and a fleet of processes.

The store contract it shares with the memory and SQLite stores runs in test_sqlite_store.py. Every
test talks to a real DynamoDB-compatible server on 127.0.0.1 (moto in server mode, see conftest.py),
or to botocore's Stubber for the answers a local server cannot give (throttling, access denied).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings

import agentauthz as az
from agentauthz.session import (
    Approval,
    CallRecord,
    DynamoDBSessionStore,
    MemorySessionStore,
    SessionConfig,
    SessionStore,
    create_table,
)
from agentauthz.session._dynamodb import TABLE_DEFINITION, TTL_ATTRIBUTE, map_dynamodb_errors
from agentauthz.testing import LocalDynamoDB, capture_decisions
from tests.strategies import session_store_operations

ROOT = Path(__file__).resolve().parents[2]
ALICE = az.EntityUID("User", "alice")
OWNER = str(ALICE)

RULES = """
@id("all") permit(principal, action, resource);
@id("refund-cap") forbid(principal, action == Action::"refund", resource)
when { context has session && context.input.amount > 50 - context.session.totals.refund.amount };
"""


def store_on(client: Any, table: str, **options: Any) -> DynamoDBSessionStore:
    return DynamoDBSessionStore(table, client=client, **options)


def items(client: Any, table: str) -> list[dict[str, Any]]:
    return client.scan(TableName=table, ConsistentRead=True)["Items"]  # type: ignore[no-any-return]


def complete_calls(store: SessionStore, count: int, *, session: str = "s", start: float = 0.0) -> None:
    for index in range(count):
        version = store.load(session, since=0.0, history=0).version
        assert store.admit(session, CallRecord(f"c{index}", "ping", 'Tool::"ping"', start + index,
                                               {"n": 1}, external_id=f"tc{index}"),
                           owner=OWNER, version=version) == "admitted"
        assert store.complete(session, f"c{index}", now=start + index)


# -- the table ----------------------------------------------------------------------------------


def test_create_table_makes_the_keys_and_turns_time_to_live_on(dynamodb_client: Any) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb_client, name)
    table = dynamodb_client.describe_table(TableName=name)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["KeySchema"] == TABLE_DEFINITION["KeySchema"]
    assert dynamodb_client.describe_time_to_live(TableName=name)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED", "AttributeName": TTL_ATTRIBUTE}
    with pytest.raises(az.EngineError, match="ResourceInUseException"):
        create_table(dynamodb_client, name)


def test_the_cloudformation_resource_in_the_deploying_guide_is_the_table_create_table_makes() -> None:
    page = (ROOT / "docs" / "deploying.md").read_text(encoding="utf-8")
    [template] = [block for block in re.findall(r"```yaml\n(.*?)```", page, re.S)
                  if "AWS::DynamoDB::Table" in block]
    [resource] = yaml.safe_load(template)["Resources"].values()
    properties = resource["Properties"]
    assert resource["Type"] == "AWS::DynamoDB::Table"
    assert properties["AttributeDefinitions"] == TABLE_DEFINITION["AttributeDefinitions"]
    assert properties["KeySchema"] == TABLE_DEFINITION["KeySchema"]
    assert properties["BillingMode"] == TABLE_DEFINITION["BillingMode"]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}


# -- same answers as the in-memory store ----------------------------------------------------------


def apply(store: SessionStore, session: str, operations: list[tuple[Any, ...]]) -> list[object]:
    """Run the operations on a store; the answers, in order."""
    answers: list[object] = []
    for step, operation in enumerate(operations):
        kind, *arguments = operation
        if kind == "admit":
            index, external_id, action, amount = arguments
            version = store.load(session, since=0.0, history=0).version
            record = CallRecord(f"k{index}", action, 'Tool::"t"', float(step), {"amount": amount},
                                frozenset({action}), external_id)
            answers.append(store.admit(session, record, owner=OWNER, version=version))
        elif kind == "complete":
            answers.append(store.complete(session, f"k{arguments[0]}", now=float(step)))
        elif kind == "release":
            answers.append(store.release(session, f"k{arguments[0]}"))
        elif kind == "labels":
            answers.append(store.add_labels(session, arguments[0], owner=OWNER))
        elif kind == "approve":
            answers.append(store.approve(session, Approval(OWNER, arguments[0], 'Tool::"t"', "{}")))
        else:
            answers.append(store.revoke(session, Approval(OWNER, arguments[0], 'Tool::"t"', "{}")))
    return answers


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=session_store_operations)
def test_any_sequence_of_operations_answers_and_loads_as_the_memory_store_does(
        dynamodb_client: Any, dynamodb_table: str, operations: list[tuple[Any, ...]]) -> None:
    memory = MemorySessionStore()
    dynamodb = store_on(dynamodb_client, dynamodb_table, page_size=2)
    session = uuid.uuid4().hex
    assert apply(dynamodb, session, operations) == apply(memory, session, operations)
    for since, history in ((0.0, 10), (5.0, 2), (12.0, 0)):
        assert dynamodb.load(session, since=since, history=history) == memory.load(
            session, since=since, history=history)


# -- bounded items ---------------------------------------------------------------------------------


def test_completed_calls_move_to_pages_and_windows_and_histories_still_count_them_all(
        dynamodb_client: Any, dynamodb_table: str) -> None:
    store = store_on(dynamodb_client, dynamodb_table, page_size=10)
    complete_calls(store, 45)
    stored = [item["sk"]["S"] for item in items(dynamodb_client, dynamodb_table)]
    assert len([key for key in stored if "#page#" in key]) >= 3  # the head kept at most 10 completed calls
    moved = len(stored) - 1 - len([key for key in stored if "#page#" in key])
    assert moved % 2 == 0 and moved >= 2 * 35  # a marker per key and per external id of each moved call
    snapshot = store.load("s", since=3.0, history=40)
    assert snapshot.calls == {"ping": 45} and snapshot.totals == {"ping": {"n": 45}}
    assert snapshot.window_calls == {"ping": 42}  # completed at 3..44, across pages and head
    assert [record.call_id for record in snapshot.history] == [f"c{i}" for i in range(5, 45)]
    version = snapshot.version
    old = CallRecord("c0", "ping", 'Tool::"ping"', 99.0, external_id="tc0")  # its call is in a page now
    assert store.admit("s", old, owner=OWNER, version=version) == "completed"


def test_a_session_too_large_for_one_item_is_refused_never_cut(dynamodb_client: Any,
                                                               dynamodb_table: str) -> None:
    store = store_on(dynamodb_client, dynamodb_table)
    store.add_labels("s", [f"label-{i:06d}-{'x' * 40}" for i in range(4000)], owner=OWNER)
    before = store.load("s", since=0.0, history=0)
    with pytest.raises(az.EngineError, match="no longer fits one DynamoDB item"):
        store.add_labels("s", [f"more-{i:06d}-{'y' * 40}" for i in range(4000)], owner=OWNER)
    assert store.load("s", since=0.0, history=0) == before  # nothing was written, nothing dropped


# -- approvals and provenance ---------------------------------------------------------------------

def test_a_single_use_approval_is_used_up_by_exactly_one_call(dynamodb_client: Any,
                                                               dynamodb_table: str) -> None:
    store = store_on(dynamodb_client, dynamodb_table)
    grant = Approval(OWNER, "pay", 'Tool::"pay"', "{}", once=True)
    store.approve("s", grant)
    version = store.load("s", since=0.0, history=0).version
    first = CallRecord("k1", "pay", 'Tool::"pay"', 1.0, approval=grant.key)
    second = CallRecord("k2", "pay", 'Tool::"pay"', 1.0, approval=grant.key)
    assert store.admit("s", first, owner=OWNER, version=version) == "admitted"
    snapshot = store.load("s", since=0.0, history=0)
    assert snapshot.approvals == ()
    assert store.admit("s", second, owner=OWNER, version=snapshot.version) == "changed"  # decide again
    assert [record.call_id for record in store.load("s", since=0.0, history=0).pending] == ["k1"]


def test_granting_the_same_call_on_other_terms_replaces_the_grant(dynamodb_client: Any,
                                                                  dynamodb_table: str) -> None:
    store = store_on(dynamodb_client, dynamodb_table)
    lasting = Approval(OWNER, "pay", 'Tool::"pay"', "{}")
    store.approve("s", lasting)
    version = store.load("s", since=0.0, history=0).version
    store.approve("s", Approval(OWNER, "pay", 'Tool::"pay"', "{}", "bob"))  # same terms: nothing changes
    assert store.load("s", since=0.0, history=0).version == version
    once = Approval(OWNER, "pay", 'Tool::"pay"', "{}", expires_at=50.0, once=True)
    store.approve("s", once)
    assert store.load("s", since=0.0, history=0).approvals == (once,)


APPROVAL_SCHEMA = """
entity User;
entity Tool;
action refund appliesTo { principal: User, resource: Tool,
  context: { input: { to: String, amount: Long }, session: { approved: Bool } } };
"""
APPROVAL_POLICIES = """
@id("allow-all") permit(principal, action == Action::"refund", resource);
@id("big-refunds") @approval("required")
forbid(principal, action == Action::"refund", resource)
when { context.input.amount > 100 && !context.session.approved };
"""


def test_one_single_use_grant_runs_one_of_many_parallel_calls(dynamodb_client: Any,
                                                              dynamodb_table: str) -> None:
    store = store_on(dynamodb_client, dynamodb_table)
    authz = az.Authorizer.from_text(APPROVAL_POLICIES, schema=APPROVAL_SCHEMA, audit=[],
                                    sessions=SessionConfig(store=store))
    ran: list[int] = []

    @authz.guard(action="refund")
    def refund(to: str, amount: int) -> str:
        ran.append(amount)
        return "refunded"

    with authz.acting_as(ALICE), authz.session("race"):
        with pytest.raises(az.ApprovalRequired) as held:
            refund("bob", 500)
        authz.approve(held.value.approval)
        (grant,) = store.load("race", since=0.0, history=0).approvals
        assert grant.once and grant.expires_at is not None  # kept as granted

    def call(_: int) -> str:
        with authz.acting_as(ALICE), authz.session("race"):
            try:
                return refund("bob", 500)
            except az.ApprovalRequired:
                return "held"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(call, range(12)))
    assert outcomes.count("refunded") == 1 and ran == [500]
    assert store.load("race", since=0.0, history=0).approvals == ()  # used up


def test_approvals_keep_every_field_they_are_granted_with(dynamodb_client: Any, dynamodb_table: str) -> None:
    store = store_on(dynamodb_client, dynamodb_table)
    grant = Approval(OWNER, "pay", 'Order::"o-1"', '{"order":"o-1"}', "ann")
    store.approve("s", grant)
    assert store.load("s", since=0.0, history=0).approvals == (grant,)


def test_provenance_is_recorded_per_key_for_the_owner_only(dynamodb_client: Any, dynamodb_table: str) -> None:
    store = store_on(dynamodb_client, dynamodb_table)
    store.add_provenance("s", {"v1": ["user"], "v2": ["tool:search"]}, owner=OWNER)
    version = store.load("s", since=0.0, history=0).version
    store.add_provenance("s", {"v1": ["user"]}, owner=OWNER)  # nothing new: no new version
    assert store.load("s", since=0.0, history=0).version == version
    store.add_provenance("s", {"v1": ["payee"]}, owner=OWNER)
    assert store.provenance("s", ["v1", "v2", "v3"]) == {"v1": frozenset({"user", "payee"}),
                                                         "v2": frozenset({"tool:search"})}
    with pytest.raises(az.IdentityError):
        store.add_provenance("s", {"v1": ["user"]}, owner='User::"mallory"')
    assert store.provenance("nobody", ["v1"]) == {}


# -- time to live and deletion ----------------------------------------------------------------------


def test_every_item_carries_its_expiry_and_an_expired_session_reads_as_new(
        dynamodb_client: Any, dynamodb_table: str) -> None:
    now = [1_000_000.0]
    store = store_on(dynamodb_client, dynamodb_table, ttl=timedelta(hours=1), page_size=2,
                     clock=lambda: now[0])
    complete_calls(store, 4)
    stored = items(dynamodb_client, dynamodb_table)
    assert len(stored) >= 6  # head, pages, markers
    assert {int(item[TTL_ATTRIBUTE]["N"]) for item in stored} <= {1_003_600}
    now[0] += 3601  # DynamoDB deletes expired items within days: expired reads as gone at once
    assert store.load("s", since=0.0, history=5).version == 0
    store.add_labels("s", ["x"], owner='User::"bob"')  # an expired session is anyone's to start again
    snapshot = store.load("s", since=0.0, history=5)
    assert snapshot.owner == 'User::"bob"' and snapshot.calls == {} and snapshot.history == ()
    assert store.admit("s", CallRecord("c0", "ping", 'Tool::"ping"', 1.0, external_id="tc0"),
                       owner='User::"bob"', version=snapshot.version) == "admitted"


def test_without_a_ttl_items_never_expire(dynamodb_client: Any, dynamodb_table: str) -> None:
    store = store_on(dynamodb_client, dynamodb_table, ttl=None)
    complete_calls(store, 1)
    assert all(TTL_ATTRIBUTE not in item for item in items(dynamodb_client, dynamodb_table))


def test_delete_removes_every_item_of_the_session_and_a_new_one_starts_clean(
        dynamodb_client: Any, dynamodb_table: str) -> None:
    store = store_on(dynamodb_client, dynamodb_table, page_size=2)
    complete_calls(store, 5)
    complete_calls(store, 1, session="other")
    store.delete("s")
    assert {item["pk"]["S"] for item in items(dynamodb_client, dynamodb_table)} == {"other"}
    assert store.admit("s", CallRecord("c0", "ping", 'Tool::"ping"', 1.0, external_id="tc0"),
                       owner=OWNER, version=0) == "admitted"  # the old markers are gone with it
    assert store.load("other", since=0.0, history=5).calls == {"ping": 1}


def test_a_write_prepared_before_a_delete_never_overwrites_the_session_started_again(
        dynamodb_client: Any, dynamodb_table: str) -> None:
    store, other = store_on(dynamodb_client, dynamodb_table), store_on(dynamodb_client, dynamodb_table)
    store.add_labels("s", ["old"], owner=OWNER)
    store.admit("s", CallRecord("c0", "ping", 'Tool::"ping"', 1.0), owner=OWNER, version=1)
    version = store.load("s", since=0.0, history=0).version  # this thread's read: version 2
    other.delete("s")
    other.add_labels("s", ["new"], owner=OWNER)
    other.admit("s", CallRecord("c9", "ping", 'Tool::"ping"', 1.0), owner=OWNER, version=1)  # version 2 again
    store.admit("s", CallRecord("c1", "ping", 'Tool::"ping"', 1.0), owner=OWNER, version=version)
    snapshot = store.load("s", since=0.0, history=0)
    assert snapshot.seen == frozenset({"new"})  # the deleted session's facts did not come back...
    assert [call.call_id for call in snapshot.pending] == ["c9", "c1"]  # ...nor replace the new calls


# -- failures deny ---------------------------------------------------------------------------------


def guarded(store: SessionStore, **config: Any) -> tuple[az.Authorizer, Any]:
    authz = az.Authorizer.from_text(RULES, audit=[], sessions=SessionConfig(store=store, **config))

    @authz.guard(sum_arguments=["amount"])
    def refund(order: str, amount: int) -> str:
        return "ok"

    return authz, refund


def stubbed_client() -> tuple[Any, Stubber]:
    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    return client, Stubber(client)


def refused_error(authz: az.Authorizer, refund: Any) -> str:
    """Call the tool once; it must be denied with exactly one audit event. The decision's error."""
    with capture_decisions() as events, authz.acting_as(ALICE), authz.session("s"), pytest.raises(
            az.AccessDenied) as refused:
        refund("o-1", 5)
    assert [event.decision for event in events] == ["deny"]
    [error] = refused.value.decision.errors
    return error


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
def test_a_throttled_load_denies_the_call(code: str) -> None:
    client, stubber = stubbed_client()
    stubber.add_client_error("get_item", service_error_code=code, http_status_code=400)
    with stubber:
        error = refused_error(*guarded(store_on(client, "sessions")))
    assert f"throttled the request ({code})" in error and "EngineError" in error


def test_a_throttled_admission_denies_the_call_and_reserves_nothing() -> None:
    client, stubber = stubbed_client()
    stubber.add_response("get_item", {})  # the decision's load (a new session), reused by the admission
    stubber.add_client_error("put_item", service_error_code="ThrottlingException", http_status_code=400)
    with stubber:
        error = refused_error(*guarded(store_on(client, "sessions")))
        stubber.assert_no_pending_responses()
    assert "throttled the request (ThrottlingException)" in error


def test_a_transaction_cancelled_by_throttling_is_a_throttled_request_not_a_lost_race() -> None:
    cancelled = ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                             "CancellationReasons": [{"Code": "None"}, {"Code": "ThrottlingError"}]},
                            "TransactWriteItems")
    with pytest.raises(az.EngineError, match=r"throttled the request \(ThrottlingException\)"), \
            map_dynamodb_errors("sessions"):
        raise cancelled


def test_access_denied_denies_the_call_and_names_the_permissions_needed() -> None:
    client, stubber = stubbed_client()
    stubber.add_client_error("get_item", service_error_code="AccessDeniedException", http_status_code=400,
                             service_message='User x is not authorized; key "secret-value"')
    with stubber:
        error = refused_error(*guarded(store_on(client, "sessions")))
    assert "access denied (AccessDeniedException)" in error and "TransactWriteItems" in error
    assert "secret-value" not in error  # the service's message (it may quote values) is not copied


def test_a_missing_table_denies_the_call(dynamodb_client: Any) -> None:
    error = refused_error(*guarded(store_on(dynamodb_client, "no-such-table")))
    assert "does not exist" in error


def test_an_unreachable_endpoint_denies_the_call() -> None:
    server = LocalDynamoDB().start()
    client = server.client(config=Config(connect_timeout=0.5, read_timeout=0.5,
                                         retries={"max_attempts": 1, "mode": "standard"}))
    create_table(client, "sessions")
    authz, refund = guarded(store_on(client, "sessions"))
    with authz.acting_as(ALICE), authz.session("s"):
        assert refund("o-1", 5) == "ok"
    server.stop()
    started = time.monotonic()
    error = refused_error(authz, refund)
    assert "is unreachable (EndpointConnectionError)" in error
    assert time.monotonic() - started < 10


def test_an_item_that_is_no_session_denies_the_call(dynamodb_client: Any, dynamodb_table: str) -> None:
    dynamodb_client.put_item(TableName=dynamodb_table, Item={
        "pk": {"S": "s"}, "sk": {"S": "head"}, "version": {"N": "3"}, "state": {"S": "{not json"}})
    error = refused_error(*guarded(store_on(dynamodb_client, dynamodb_table)))
    assert "is not a session this version can read" in error


@pytest.mark.parametrize("options", [{"ttl": timedelta(0)}, {"page_size": 0}, {"max_attempts": 0}])
def test_settings_that_cannot_work_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(az.ConfigurationError):
        DynamoDBSessionStore("sessions", client=object(), **options)


def test_a_store_without_a_client_builds_one_with_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    store = DynamoDBSessionStore("sessions")
    assert store.client.meta.service_model.service_name == "dynamodb"
    assert store.client.meta.region_name == "eu-west-1"


# -- a fleet: processes and threads on one session --------------------------------------------------

FLEET_WORKER = textwrap.dedent("""
    import os, sys, threading
    sys.path.insert(0, {root!r})
    import agentauthz as az
    from agentauthz.session import DynamoDBSessionStore, SessionConfig
    from agentauthz.testing import LocalDynamoDB

    endpoint, table, mode, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    import boto3
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    # a small page size: completed calls move to pages while the processes race
    store = DynamoDBSessionStore(table, client=client, page_size=8)
    authz = az.Authorizer.from_text({rules!r}, audit=[], sessions=SessionConfig(store=store))

    @authz.guard(sum_arguments=["amount"])
    def refund(order: str, amount: int) -> str:
        return "ok"

    alice = az.EntityUID("User", "alice")
    if mode == "crash":
        with authz.acting_as(alice), authz.session("shared"):
            call = authz.begin_tool_call("refund", {{"order": "o-1", "amount": 7}}, call_id="tc-crash")
            assert call.admits
            print("decided", flush=True)
            os._exit(3)  # killed between the decision and the completion

    allowed = []
    lock = threading.Lock()

    def work(thread):
        mine = 0
        with authz.acting_as(alice), authz.session("shared"):
            for index in range(count):
                try:
                    refund(f"o{{os.getpid()}}-{{thread}}-{{index}}", 2)
                    mine += 1
                except az.AccessDenied:
                    pass
        with lock:
            allowed.append(mine)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(sum(allowed))
""")


def run_fleet(endpoint: str, table: str, mode: str, count: int, processes: int) -> list[str]:
    code = FLEET_WORKER.format(root=str(ROOT), rules=RULES)
    children = [subprocess.Popen([sys.executable, "-c", code, endpoint, table, mode, str(count)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(processes)]
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=120)
        outputs.append(out.strip() + ("" if child.returncode in (0, 3) else f" [{err}]"))
    return outputs


def test_four_processes_of_eight_threads_count_exactly_and_never_pass_a_limit(
        local_dynamodb: LocalDynamoDB, dynamodb_client: Any, dynamodb_table: str) -> None:
    allowed = run_fleet(local_dynamodb.endpoint_url, dynamodb_table, "race", 1, processes=4)
    assert sum(int(n) for n in allowed) == 25, allowed  # 32 refunds of 2 race under a cap of 50
    snapshot = store_on(dynamodb_client, dynamodb_table).load("shared", since=0.0, history=100)
    assert snapshot.calls == {"refund": 25} and snapshot.totals == {"refund": {"amount": 50}}
    assert snapshot.pending == ()  # every admitted call completed and counted once
    assert len({record.call_id for record in snapshot.history}) == 25  # read back across pages
    assert any("#page#" in item["sk"]["S"] for item in items(dynamodb_client, dynamodb_table))


def test_a_killed_process_reservation_keeps_counting_until_the_application_releases_it(
        local_dynamodb: LocalDynamoDB, dynamodb_client: Any, dynamodb_table: str) -> None:
    assert run_fleet(local_dynamodb.endpoint_url, dynamodb_table, "crash", 1, processes=1) == ["decided"]
    store = store_on(dynamodb_client, dynamodb_table)
    later = time.time() + timedelta(days=29).total_seconds()  # long past any lease
    authz, _ = guarded(store, clock=lambda: later)
    with authz.acting_as(ALICE), authz.session("shared") as session:
        [crashed] = session.state().pending
        assert crashed.external_id == "tc-crash"
        assert session.facts().totals == {"refund": {"amount": 7}}  # its outcome is unknown: it counts
        with authz.begin_tool_call("refund", {"order": "o-1", "amount": 7}, call_id="tc-crash") as retry:
            assert not retry.admits  # and its id does not run a second time
        with authz.begin_tool_call("refund", {"order": "o-2", "amount": 44}) as over:
            assert not over.admits  # 7 + 44 > 50
        store.release(session.id, crashed.call_id)  # the application knows it never ran
        with authz.begin_tool_call("refund", {"order": "o-1", "amount": 7}, call_id="tc-crash") as again:
            assert again.admits  # its reservation is recovered: the call may run once
        with authz.begin_tool_call("refund", {"order": "o-2", "amount": 43}) as other:
            assert other.admits
        assert session.facts().totals == {"refund": {"amount": 50}}


def test_a_guarded_call_costs_the_table_three_requests(dynamodb_client: Any, dynamodb_table: str) -> None:
    sent: list[str] = []
    dynamodb_client.meta.events.register("before-call.dynamodb", lambda model, **_: sent.append(model.name))
    authz, refund = guarded(store_on(dynamodb_client, dynamodb_table))
    with authz.acting_as(ALICE), authz.session("s"):
        refund("o-1", 5)
        sent.clear()
        refund("o-2", 5)
    # the decision's read; the reservation, written on that read; the completion, written on the reservation
    assert sent == ["GetItem", "PutItem", "PutItem"]
    assert all(item["sk"]["S"] == "head" for item in items(dynamodb_client, dynamodb_table))  # no markers yet
