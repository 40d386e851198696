"""Placing a policy that failed to evaluate on Verified Permissions: permit or forbid.

Under ``policy_errors="deny"`` an allow that came with evaluation errors stands only
if every error names a permit (a failed permit can only withhold an allow). AVP
names the failed policy in ``errors[].errorDescription``, which botocore's model
and the API reference document only as "The error description" (a string, marked
sensitive). Its text is Cedar's display of the error, which changed between Cedar
versions: 4.x ``error while evaluating policy `id`: ...`` (what cedarpy and our
local endpoint write), 3.x ``while evaluating policy `id`: ...``, 2.x
``error occurred while evaluating policy `id`: ...``. Each places the policy by the
effect ListPolicies gives its AVP id; any other text places nothing and denies.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest

import agentauthz as az
from agentauthz.testing import LocalVerifiedPermissions

boto3 = pytest.importorskip("boto3")
from botocore.stub import Stubber  # type: ignore[import-untyped]  # noqa: E402

from agentauthz.avp._engine import VerifiedPermissionsEngine  # noqa: E402

STORE_ID = "PSEXAMPLEabcdefg111111"
U = az.EntityUID
READ = dict(principal=U("User", "alice"), action=U("Action", "read"), resource=U("Doc", "d1"))

#: Cedar's displays of a policy evaluation error, newest first.
DISPLAYS = (
    "error while evaluating policy `{id}`: record does not have the attribute `level`",
    "while evaluating policy `{id}`: record does not have the attribute `level`",
    "error occurred while evaluating policy `{id}`: record does not have the attribute `level`",
)


def answer(decision: str, *errors: str) -> dict[str, Any]:
    determining = [{"policyId": "SPallow"}] if decision == "ALLOW" else []
    return {"decision": decision, "determiningPolicies": determining,
            "errors": [{"errorDescription": error} for error in errors]}


def listed(effects: dict[str, str]) -> dict[str, Any]:
    return {"policies": [
        {"policyStoreId": STORE_ID, "policyId": policy_id, "policyType": "STATIC", "effect": effect,
         "definition": {"static": {"description": f"agentauthz:ours-{policy_id}"}},
         "createdDate": dt.datetime(2024, 1, 1), "lastUpdatedDate": dt.datetime(2024, 1, 1)}
        for policy_id, effect in effects.items()]}


@pytest.fixture
def client() -> Any:
    return boto3.client("verifiedpermissions", region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x")


@pytest.fixture
def stubber(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub


def decide(client: Any, stubber: Stubber, error: str, effect: str,
           policy_errors: Any = "deny") -> az.Decision:
    stubber.add_response("is_authorized", answer("ALLOW", error))
    stubber.add_response("list_policies", listed({"SPallow": "Permit", "SPfailed": effect}))
    with VerifiedPermissionsEngine(STORE_ID, client=client, batching=az.Batching(max_workers=1)) as engine:
        return az.Authorizer(engine, audit=[], policy_errors=policy_errors).authorize(**READ)


@pytest.mark.parametrize("display", DISPLAYS)
def test_a_failed_permit_in_any_cedar_display_lets_the_allow_stand(
        client: Any, stubber: Stubber, display: str) -> None:
    decision = decide(client, stubber, display.format(id="SPfailed"), "Permit")
    assert decision.allowed
    assert decision.errors[0].startswith("error while evaluating policy `ours-SPfailed`: ")


@pytest.mark.parametrize("display", DISPLAYS)
def test_a_failed_forbid_in_any_cedar_display_denies_the_allow(
        client: Any, stubber: Stubber, display: str) -> None:
    decision = decide(client, stubber, display.format(id="SPfailed"), "Forbid")
    assert not decision.allowed


@pytest.mark.parametrize("error", [
    "policy `SPfailed` could not be evaluated",            # names a policy, not in a Cedar display
    "evaluation failed",                                   # names none
    "entity `User::\"x\"` while evaluating policy `SPfailed`: not found",  # the display not at the start
    "error while evaluating policy `SPunknown`: x",        # a policy the listing does not show
])
def test_an_error_that_cannot_be_placed_denies_the_allow(client: Any, stubber: Stubber, error: str) -> None:
    decision = decide(client, stubber, error, "Permit")
    assert not decision.allowed


def test_the_local_endpoint_writes_cedars_display_with_the_avp_policy_id() -> None:
    store = az.PolicyStore.from_text(
        '@id("levels") permit(principal, action, resource) when { resource.level > 1 };', validate=False)
    with LocalVerifiedPermissions(store) as server:
        client = server.client()
        answered = client.is_authorized(
            policyStoreId=server.policy_store_id, principal={"entityType": "User", "entityId": "alice"},
            action={"actionType": "Action", "actionId": "read"},
            resource={"entityType": "Doc", "entityId": "d1"},
            entities={"entityList": [{"identifier": {"entityType": "Doc", "entityId": "d1"},
                                      "attributes": {}}]})
        avp_ids = {item["policyId"] for item in client.list_policies(
            policyStoreId=server.policy_store_id)["policies"]}
    [error] = [item["errorDescription"] for item in answered["errors"]]
    found = re.match(r"error while evaluating policy `([A-Za-z0-9_-]+)`: ", error)
    assert found is not None, error
    assert found.group(1) in avp_ids and found.group(1) != "levels"  # AVP's own id, as AVP answers


@pytest.mark.parametrize("error", [
    "error occurred while evaluating policy `SPfailed`: x",   # an older Cedar display of the forbid
    "evaluation failed",                                     # a text that places no policy at all
])
def test_with_policy_errors_skip_an_approvable_forbid_that_may_have_failed_still_denies(
        client: Any, stubber: Stubber, error: str) -> None:
    from agentauthz.session import ApprovalConfig, SessionConfig

    stubber.add_response("is_authorized", answer("ALLOW", error))
    stubber.add_response("list_policies", listed({"SPallow": "Permit", "SPfailed": "Forbid"}))
    sessions = SessionConfig(approvals=ApprovalConfig(approvable={"ours-SPfailed"}))
    with VerifiedPermissionsEngine(STORE_ID, client=client, batching=az.Batching(max_workers=1)) as engine:
        decision = az.Authorizer(engine, audit=[], policy_errors="skip", sessions=sessions).authorize(**READ)
    assert not decision.allowed
