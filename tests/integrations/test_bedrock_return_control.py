"""Return of control: every invocation input of an InvokeAgent `returnControl` payload is
authorized; denied ones come back as `returnControlInvocationResults` that botocore's
bedrock-agent-runtime model accepts in the next InvokeAgent call's `sessionState`."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

import agentauthz as az
from agentauthz.integrations.bedrock import (
    ActionInvocation,
    ReturnControlAuthorization,
    aauthorize_return_control,
    authorize_return_control,
)

botocore = pytest.importorskip("botocore")
boto3 = pytest.importorskip("boto3")

from botocore.model import Shape  # noqa: E402
from botocore.stub import Stubber  # noqa: E402
from botocore.validate import ParamValidator  # noqa: E402

POLICY = """
@id("search-anyone")
permit (principal, action == Action::"search", resource);

@id("refund-limit")
permit (principal, action == Action::"refund", resource)
when { context.input.amount <= 500 };

@id("orders-read")
permit (principal, action == Action::"orders-api__GET /orders/{orderId}", resource)
when { context.input.orderId like "o-*" };

@id("no-deletes")
forbid (principal, action == Action::"orders-api__DELETE /orders/{orderId}", resource);

@id("carol-closes")
permit (principal == User::"carol", action == Action::"close_account", resource);
"""


def model() -> Any:
    return botocore.session.get_session().get_service_model("bedrock-agent-runtime")


def validate(params: dict[str, Any], shape: Shape) -> None:
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()


def parameter(name: str, kind: str, value: str) -> dict[str, str]:
    return {"name": name, "type": kind, "value": value}


def function_input(function: str, *parameters: dict[str, str], group: str = "tools",
                   **extra: Any) -> dict[str, Any]:
    return {"functionInvocationInput": {
        "actionGroup": group, "function": function, "parameters": list(parameters),
        "actionInvocationType": "RESULT", **extra,
    }}


def api_input(method: str, path: str, *parameters: dict[str, str],
              body: list[dict[str, str]] | None = None, group: str = "orders-api",
              **extra: Any) -> dict[str, Any]:
    member: dict[str, Any] = {
        "actionGroup": group, "apiPath": path, "httpMethod": method, "parameters": list(parameters),
        "actionInvocationType": "RESULT", **extra,
    }
    if body is not None:
        member["requestBody"] = {"content": {"application/json": {"properties": body}}}
    return {"apiInvocationInput": member}


PAYLOAD: dict[str, Any] = {
    "invocationId": "79e0feaa-c6f7-49bf-814d-b7c498505172",
    "invocationInputs": [
        function_input("search", parameter("query", "string", "refund policy")),
        function_input("refund", parameter("order_id", "string", "o-1"),
                       parameter("amount", "integer", "900")),
        function_input("refund", parameter("order_id", "string", "o-2"),
                       parameter("amount", "integer", "abc")),
        api_input("GET", "/orders/{orderId}", parameter("orderId", "string", "o-7")),
        api_input("DELETE", "/orders/{orderId}", parameter("orderId", "string", "o-7")),
        api_input("POST", "/refunds", body=[parameter("amount", "number", "12.5")]),
        function_input("close_account", parameter("userId", "string", "carol"), agentId="AGENT12345",
                       collaboratorName="billing"),
    ],
}


def action(invocation_input: dict[str, Any]) -> str:
    """Function inputs use the function name; API inputs the group-qualified operation."""
    if "function" in invocation_input:
        return str(invocation_input["function"])
    group, method, path = (invocation_input[k] for k in ("actionGroup", "httpMethod", "apiPath"))
    return f"{group}__{method} {path}"


@pytest.fixture
def recorder() -> az.MemorySink:
    return az.MemorySink()


@pytest.fixture
def authz(recorder: az.MemorySink) -> az.Authorizer:
    return az.Authorizer.from_text(POLICY, audit=[recorder])


@pytest.fixture
def decided(authz: az.Authorizer) -> ReturnControlAuthorization:
    return authorize_return_control(authz, PAYLOAD, az.EntityUID("User", "bob"), action=action)


def test_the_sample_payload_matches_botocores_return_control_shape() -> None:
    validate(PAYLOAD, model().shape_for("ReturnControlPayload"))


def test_each_invocation_input_is_decided(
    decided: ReturnControlAuthorization, recorder: az.MemorySink
) -> None:
    assert decided.invocation_id == PAYLOAD["invocationId"]
    assert [i.operation for i in decided.allowed] == ["search", "GET /orders/{orderId}"]
    assert [(i.operation, i.status) for i in decided.denied] == [
        ("refund", "denied"),
        ("refund", "invalid"),
        ("DELETE /orders/{orderId}", "denied"),
        ("POST /refunds", "denied"),
        ("close_account", "denied"),
    ]
    search, order = decided.allowed
    assert search.arguments == {"query": "refund policy"} and search.principal == az.EntityUID("User", "bob")
    assert order.arguments == {"orderId": "o-7"} and order.decision is not None
    assert order.decision.reasons == ("orders-read",)
    # One audit event per input: the malformed one never reached Cedar, and its refusal is audited.
    assert len(recorder.events) == 7
    assert {e.principal for e in recorder.events} == {'User::"bob"'}
    assert [i.decision.id for i in (*decided.allowed, *decided.denied) if i.decision] != []
    assert {e.decision_id for e in recorder.events} == {
        i.decision.id for i in (*decided.allowed, *decided.denied) if i.decision is not None}


def test_denied_results_have_the_shapes_invoke_agent_expects(decided: ReturnControlAuthorization) -> None:
    over, malformed, delete, post, close = decided.results
    over_id = decided.denied[0].decision.id if decided.denied[0].decision else ""
    assert over == {"functionResult": {
        "actionGroup": "tools", "function": "refund",
        "responseBody": {"TEXT": {"body": "Tool 'refund' is not permitted for this user "
                                          f"(decision {over_id}). Do not retry it."}},
        "responseState": "REPROMPT",
    }}
    assert malformed["functionResult"]["responseState"] == "REPROMPT"
    text = malformed["functionResult"]["responseBody"]["TEXT"]["body"]
    assert text.startswith("Tool 'refund' was not called") and "amount" not in text
    api = delete["apiResult"]
    assert (api["actionGroup"], api["apiPath"], api["httpMethod"], api["httpStatusCode"]) == (
        "orders-api", "/orders/{orderId}", "DELETE", 403)
    assert api["responseState"] == "REPROMPT"
    body = json.loads(api["responseBody"]["application/json"]["body"])
    assert body == {"error": "forbidden", "decision_id": decided.denied[2].decision.id,  # type: ignore[union-attr]
                    "message": body["message"]}
    assert body["decision_id"] in body["message"]
    assert "no-deletes" not in body["message"] and "o-7" not in body["message"]
    assert decided.denied[2].decision.reasons == ("no-deletes",)  # type: ignore[union-attr]
    assert post["apiResult"]["httpStatusCode"] == 403
    assert close["functionResult"]["agentId"] == "AGENT12345"


def test_a_principal_in_the_parameters_is_ignored(authz: az.Authorizer) -> None:
    """close_account is carol's; bob's agent passes userId=carol as a parameter."""
    decided = authorize_return_control(authz, PAYLOAD, az.EntityUID("User", "bob"), action=action)
    assert "close_account" in [i.operation for i in decided.denied]
    as_carol = authorize_return_control(authz, PAYLOAD, az.EntityUID("User", "carol"), action=action)
    assert "close_account" in [i.operation for i in as_carol.allowed]


def test_session_state_validates_against_invoke_agent(decided: ReturnControlAuthorization) -> None:
    search, order = decided.allowed
    state = decided.session_state(
        [search.result("3 documents"), order.result({"status": "shipped"})],
        sessionAttributes={"userId": "bob"},
    )
    assert state["invocationId"] == PAYLOAD["invocationId"]
    assert len(state["returnControlInvocationResults"]) == 7
    assert state["returnControlInvocationResults"][-1] == {"apiResult": {
        "actionGroup": "orders-api", "apiPath": "/orders/{orderId}", "httpMethod": "GET",
        "httpStatusCode": 200, "responseBody": {"application/json": {"body": '{"status": "shipped"}'}},
    }}
    request = {"agentId": "AGENT12345", "agentAliasId": "TSTALIASID", "sessionId": "session-1",
               "sessionState": state}
    validate(request, model().operation_model("InvokeAgent").input_shape)


def test_session_state_goes_through_a_real_client_call(decided: ReturnControlAuthorization) -> None:
    client = boto3.client("bedrock-agent-runtime", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
    state = decided.session_state([i.result("ok") for i in decided.allowed])
    request = {"agentId": "AGENT12345", "agentAliasId": "TSTALIASID", "sessionId": "session-1",
               "sessionState": state}
    with Stubber(client) as stubber:
        stubber.add_client_error("invoke_agent", service_error_code="ThrottlingException",
                                 expected_params=request)
        # botocore validates the parameters against its model before the stub answers.
        with pytest.raises(botocore.exceptions.ClientError, match="ThrottlingException"):
            client.invoke_agent(**request)
        stubber.assert_no_pending_responses()


def test_an_invalid_result_is_caught_by_the_same_validation() -> None:
    """The check above is not vacuous: a result with a wrong type fails it."""
    broken = {"returnControlInvocationResults": [{"functionResult": {"function": "x", "responseState": 3}}]}
    request = {"agentId": "AGENT12345", "agentAliasId": "TSTALIASID", "sessionId": "session-1",
               "sessionState": broken}
    report = ParamValidator().validate(request, model().operation_model("InvokeAgent").input_shape)
    assert report.has_errors()
    problems = report.generate_report()
    assert "actionGroup" in problems and "responseState" in problems
    assert "sessionId" not in problems


def test_unpacks_as_results_and_allowed(authz: az.Authorizer) -> None:
    results, allowed = authorize_return_control(authz, PAYLOAD, az.EntityUID("User", "bob"), action=action)
    assert len(results) == 5 and all(isinstance(i, ActionInvocation) for i in allowed)
    assert [i.function or i.api_path for i in allowed] == ["search", "/orders/{orderId}"]


def test_the_stream_event_wrapping_the_payload_is_accepted(authz: az.Authorizer) -> None:
    decided = authorize_return_control(authz, {"returnControl": PAYLOAD}, az.EntityUID("User", "bob"),
                                       action=action)
    assert len(decided.allowed) == 2


def test_user_confirmation_inputs_are_answered_with_deny(authz: az.Authorizer) -> None:
    payload = {"invocationId": "i", "invocationInputs": [
        function_input("refund", parameter("order_id", "string", "o"),
                       parameter("amount", "integer", "900"), actionInvocationType="USER_CONFIRMATION"),
    ]}
    [result] = authorize_return_control(authz, payload, az.EntityUID("User", "bob"), action=action).results
    assert result["functionResult"]["confirmationState"] == "DENY"
    state = {"invocationId": "i", "returnControlInvocationResults": [result]}
    validate({"agentId": "AGENT12345", "agentAliasId": "TSTALIASID", "sessionId": "session-1",
              "sessionState": state},
             model().operation_model("InvokeAgent").input_shape)


def test_default_action_and_resource(authz: az.Authorizer, recorder: az.MemorySink) -> None:
    payload = {"invocationId": "i", "invocationInputs": [function_input("search", group="kb")]}
    decided = authorize_return_control(authz, payload, az.EntityUID("User", "bob"))
    assert decided.denied[0].action == "kb__search"
    assert (recorder.events[-1].action, recorder.events[-1].resource) == ('Action::"kb__search"',
                                                                         'Tool::"kb__search"')


def test_principal_from_acting_as_or_refused(authz: az.Authorizer) -> None:
    with authz.acting_as(az.EntityUID("User", "bob")):
        assert len(authorize_return_control(authz, PAYLOAD, action=action).allowed) == 2
        with pytest.raises(az.IdentityError):
            authorize_return_control(authz, PAYLOAD, az.EntityUID("User", "carol"), action=action)
    with pytest.raises(az.IdentityError):
        authorize_return_control(authz, PAYLOAD, action=action)
    with pytest.raises(az.IdentityError):
        authorize_return_control(authz, PAYLOAD, "bob", action=action)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "payload",
    [{}, {"invocationInputs": "x"}, {"invocationInputs": [{"somethingElse": {}}]},
     {"invocationInputs": [{"functionInvocationInput": {"function": "f"}}]}, []],
)
def test_malformed_payloads_raise(authz: az.Authorizer, payload: Any) -> None:
    with pytest.raises(az.InvalidValueError):
        authorize_return_control(authz, payload, az.EntityUID("User", "bob"))


def test_tools_option_reuses_guard_specs(authz: az.Authorizer) -> None:
    @authz.guard
    def refund(order_id: str, amount: int) -> str:
        return "..."

    decided = authorize_return_control(authz, PAYLOAD, az.EntityUID("User", "bob"), action=action,
                                       tools=[refund])
    statuses = [(i.operation, i.status) for i in (*decided.allowed, *decided.denied)]
    assert ("refund", "denied") in statuses and ("refund", "invalid") in statuses


def test_async_twin(authz: az.Authorizer) -> None:
    bob = az.EntityUID("User", "bob")
    decided = asyncio.run(aauthorize_return_control(authz, PAYLOAD, bob, action=action))
    sync = authorize_return_control(authz, PAYLOAD, az.EntityUID("User", "bob"), action=action)
    ids = re.compile(r"[0-9a-f]{32}")
    assert ids.sub("<id>", json.dumps(decided.results)) == ids.sub("<id>", json.dumps(sync.results))
    assert [i.operation for i in decided.allowed] == [i.operation for i in sync.allowed]
