"""Held calls in Bedrock Agents action-group Lambdas: queued for a person, run once after the grant."""

from __future__ import annotations

from typing import Any

import agentauthz as az
from agentauthz.integrations.bedrock import action_group_handler
from agentauthz.session import ApprovalConfig, ApprovalRequest, SessionConfig
from tests.integrations.bedrock_events import body_of, function_event, refused, session_user

POLICIES = """
@id("refunds") permit(principal, action == Action::"orders__issue_refund", resource);
@id("big-refunds") @approval("required")
forbid(principal, action == Action::"orders__issue_refund", resource)
when { context.input.amount > 100 && !context.session.approved };
@id("no-refunds-to-closed-orders")
forbid(principal, action == Action::"orders__issue_refund", resource)
when { context.input.order_id == "closed" };
"""


def lambda_handler(approver: Any = None) -> tuple[Any, az.Authorizer, list[dict[str, Any]], az.MemorySink]:
    sink = az.MemorySink()
    authz = az.Authorizer.from_text(POLICIES, audit=[sink],
                                    sessions=SessionConfig(approvals=ApprovalConfig(approver=approver)))
    ran: list[dict[str, Any]] = []

    @action_group_handler(authz, principal=session_user, session=True)
    def handler(event: Any, context: Any, invocation: Any) -> str:
        ran.append(dict(invocation.arguments))
        return "refunded"

    return handler, authz, ran, sink


def test_a_held_invocation_reprompts_saying_it_awaits_approval_and_runs_once_granted() -> None:
    queued: list[ApprovalRequest] = []
    handler, authz, ran, _ = lambda_handler(approver=queued.append)
    event = function_event("issue_refund", order_id="o-1", amount=500)
    first = handler(event, None)
    assert refused(first) and "approval" in body_of(first) and "big-refunds" not in body_of(first)
    (request,) = queued
    assert request.arguments == {"order_id": "o-1", "amount": 500} and request.session_id == "session-1"
    assert request.principal == az.EntityUID("User", "bob") and ran == []
    authz.approve(request, granted_by="bob's manager")  # e.g. from the review queue, in another process
    assert body_of(handler(event, None)) == "refunded"
    assert refused(handler(event, None))  # used up
    assert ran == [{"order_id": "o-1", "amount": 500}]


def test_a_grant_covers_only_the_invocation_with_the_same_parameters() -> None:
    queued: list[ApprovalRequest] = []
    handler, authz, ran, _ = lambda_handler(approver=queued.append)
    handler(function_event("issue_refund", order_id="o-1", amount=500), None)
    authz.approve(queued[0])
    assert refused(handler(function_event("issue_refund", order_id="o-1", amount=5000), None))
    assert refused(handler(function_event("issue_refund", order_id="o-2", amount=500), None))
    assert ran == []


def test_a_hard_forbid_is_never_queued_for_approval() -> None:
    queued: list[ApprovalRequest] = []
    handler, _, ran, _ = lambda_handler(approver=queued.append)
    response = handler(function_event("issue_refund", order_id="closed", amount=500), None)
    assert refused(response) and "approval" not in body_of(response) and queued == [] and ran == []


def test_an_approver_that_grants_at_once_runs_the_invocation() -> None:
    handler, _, _, sink = lambda_handler(approver=lambda request: True)
    assert body_of(handler(function_event("issue_refund", order_id="o-1", amount=500), None)) == "refunded"
    assert [e.extra.get("approval") for e in sink.events] == ["required", "granted", "used"]


def test_without_a_session_an_approvable_invocation_is_a_plain_refusal_and_never_runs() -> None:
    authz = az.Authorizer.from_text(POLICIES, audit=[])
    handler = action_group_handler(authz, principal=session_user)(lambda event, context: "refunded")
    response = handler(function_event("issue_refund", order_id="o-1", amount=500), None)
    assert refused(response) and "approval" not in body_of(response)
