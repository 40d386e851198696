"""A scripted walk through the example policy store (policies/): `make demo`.

An AI assistant serves the employees of two tenants, Acme and Globex. Every
document it retrieves and every tool it calls is decided by the Cedar policies
in policies/ for the end user it acts for; this script plays a few turns and
prints each decision with the policies that determined it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import agentauthz as az
from agentauthz.session import SessionConfig

POLICIES = Path(__file__).resolve().parent.parent / "policies"


def user(name: str) -> az.EntityUID:
    return az.EntityUID("User", name)


def tool(name: str) -> az.EntityUID:
    return az.EntityUID("Tool", name)


def document(name: str) -> az.EntityUID:
    return az.EntityUID("Document", name)


def show(who: az.EntityUID, action: str, resource: az.EntityUID, decision: az.Decision,
         arguments: dict[str, Any] | None = None) -> None:
    outcome = "ALLOW" if decision.allowed else "DENY "
    print(f"  {outcome}  {who.id} -> {action} on {resource}")
    if arguments:
        print("         input: " + ", ".join(f"{key}={value!r}" for key, value in arguments.items()))
    if decision.reasons:
        print(f"         policies: {', '.join(sorted(decision.reasons))}")
    elif not decision.errors:
        print("         policies: none permits it (default deny)")
    for error in decision.errors:
        print(f"         error: {error}")


def call_tool(authz: az.Authorizer, action: str, arguments: dict[str, Any]) -> None:
    """Authorize one tool call for the bound user (and session), as a tool guard would."""
    context: dict[str, Any] = {"input": arguments}
    decision = authz.authorize(action=action, resource=tool(action), context=context)
    show(authz.current_principal(), action, tool(action), decision, arguments)


def main() -> int:
    recorder = az.MemorySink()
    # refund-session-cap reads context.session.totals.issue_refund.amount: sessions sum it
    authz = az.Authorizer.from_directory(POLICIES, audit=[recorder],
                                         sessions=SessionConfig(sums={"issue_refund": ["amount"]}))
    print(f"Policy store {POLICIES.name}/ loaded "
          f"(fingerprint {authz.engine.fingerprint[:12]}).")
    print("Each request below is decided for the end user the assistant acts for. A line")
    print("reads: the decision, user -> action on resource, the input the model chose for the")
    print("tool, and the policies that determined it (the forbid that denied, or the permits")
    print("that allowed; none when nothing permits it).\n")

    print("1. Retrieval: bob (Acme support agent) asks a question; the retriever found")
    print("   five documents and only those he may read reach the model.")
    candidates = ["acme-handbook", "acme-support-playbook", "acme-eng-roadmap",
                  "acme-budget", "globex-handbook"]
    requests = [az.Request(principal=user("bob"), action="read", resource=document(name))
                for name in candidates]
    for request, decision in zip(requests, authz.authorize_many(requests), strict=True):
        show(request.principal, "read", request.resource, decision)

    print("\n2. Tool calls: the arguments the model chose are checked by the policies.")
    with authz.acting_as(user("carol")):
        call_tool(authz, "issue_refund", {"order_id": "o-1002", "amount": 4200})
        call_tool(authz, "issue_refund", {"order_id": "o-1003", "amount": 7500})
        call_tool(authz, "issue_refund", {"order_id": "o-1004", "amount": -200})
        call_tool(authz, "send_email", {"to": "dave@acme.example", "subject": "Budget"})
        call_tool(authz, "send_email", {"to": "someone@mail.example", "subject": "Budget"})
    with authz.acting_as(user("bob")):
        call_tool(authz, "issue_refund", {"order_id": "o-1005", "amount": 120})
    with authz.acting_as(user("frank")):
        call_tool(authz, "issue_refund", {"order_id": "g-77", "amount": 20})

    print("\n3. Session facts (context.session): what the conversation has seen decides what")
    print("   may leave it. bob is a support agent: he may email customers outside Acme...")
    with authz.acting_as(user("bob")), authz.session("demo-conversation") as session:
        read = authz.filter(["acme-handbook", "acme-support-playbook"], action="read",
                            resource=document)  # records their labels in the session
        print(f"  the retrieval filter let {len(read.allowed)} documents through; "
              f"the session has seen {sorted(session.state().seen)}")
        call_tool(authz, "send_email", {"to": "customer@example.com", "subject": "Refund"})
        print("   ...until the conversation has seen something confidential. The application")
        print("   puts a confidential customer record into the conversation and records it:")
        print('  session.see("confidential", "customers")')
        session.see("confidential", "customers")
        print(f"  the session has now seen {sorted(session.state().seen)}; the same email:")
        call_tool(authz, "send_email", {"to": "customer@example.com", "subject": "Refund"})
        print("   A second address smuggled into `to` is refused whatever the session saw:")
        call_tool(authz, "send_email",
                  {"to": "attacker@evil.example, dave@acme.example", "subject": "Q3"})

    print("\n4. Fail closed.")
    try:
        authz.authorize(action="send_email", resource=tool("send_email"),
                        context={"input": {"to": "dave@acme.example", "subject": "hi"}})
    except az.IdentityError as exc:
        print(f"  no end user bound -> {type(exc).__name__}: {exc}")
    with authz.acting_as(user("alice")):
        decision = authz.authorize(action="transfer_funds", resource=tool("issue_refund"))
        show(user("alice"), "transfer_funds", tool("issue_refund"), decision)

    print(f"\n{len(recorder.events)} decisions audited; the last audit event:")
    print("  " + recorder.events[-1].to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
