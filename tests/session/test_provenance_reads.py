"""A tracked call's ``context.provenance_all`` carries only the arguments a policy reads, and decides
exactly as with every argument (``SessionAdmission._read_only``); ``context.provenance`` stays whole
(the audit event carries every argument's labels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import agentauthz as az
from agentauthz.session import MemorySessionStore, Provenance, SessionConfig

USER = az.EntityUID("User", "u")
PAY = az.EntityUID("Tool", "pay")
CALLS: list[dict[str, Any]] = [
    {"to": "acct-1@bank.example", "cc": ["acct-2@bank.example", "x@y.example"], "amount": 5},
    {"to": "eve@evil.example", "cc": ["acct-1@bank.example"], "amount": 7},
    {"to": "acct-2@bank.example", "cc": [], "amount": 1},
]


def authorizers(policies: str, folder: Path, policy_errors: str) -> tuple[az.Authorizer, az.Authorizer,
                                                                             az.MemorySink, az.MemorySink]:
    """The policies on a store that cannot reload (trimmed) and on one that can (every argument)."""
    (folder / "policies.cedar").write_text(policies)
    store = MemorySessionStore()
    sinks = az.MemorySink(), az.MemorySink()
    options: dict[str, Any] = {"record_requests": True, "policy_errors": policy_errors}
    trimmed = az.Authorizer.from_text(policies, audit=[sinks[0]], sessions=SessionConfig(
        store=store, provenance=Provenance(tools={"pay"})), **options)
    whole = az.Authorizer.from_directory(folder, audit=[sinks[1]], sessions=SessionConfig(
        store=store, provenance=Provenance(tools={"pay"})), **options)
    return trimmed, whole, sinks[0], sinks[1]


def decide(authz: az.Authorizer, sink: az.MemorySink) -> list[tuple[Any, ...]]:
    answers = []
    with authz.acting_as(USER), authz.session("s") as session:
        session.register(["acct-1@bank.example", "acct-2@bank.example"], "payee")
        for given in CALLS:
            authz.authorize(action="pay", resource=PAY, context={"input": given})
            event = sink.events[-1]
            assert event.request is not None
            context = event.request["request"]["context"]
            answers.append((event.decision, tuple(event.reasons), tuple(event.errors),
                            set(context["provenance"]), set(context["provenance_all"])))
    return answers


def test_a_tracked_call_carries_only_the_arguments_a_policy_reads_in_provenance_all(tmp_path: Path) -> None:
    trimmed, whole, trimmed_sink, whole_sink = authorizers(
        '@id("all") permit(principal, action, resource);\n'
        '@id("payee-only") forbid(principal, action, resource) when '
        '{ !context.provenance_all.to.contains("payee") };', tmp_path, "skip")
    sent = decide(trimmed, trimmed_sink)
    assert [(union, every) for *_, union, every in sent] == [({"to", "cc", "amount"}, {"to"})] * len(CALLS)
    assert set(trimmed_sink.events[-1].extra["provenance"]) == {"to", "cc", "amount"}  # audited whole
    assert [(union, every) for *_, union, every in decide(whole, whole_sink)] \
        == [({"to", "cc", "amount"}, {"to", "cc", "amount"})] * len(CALLS)


@pytest.mark.parametrize("policy_errors", ["skip", "deny"])
@pytest.mark.parametrize("condition", [
    '!context.provenance.to.contains("payee")',
    'context.provenance_all has cc && !context.provenance_all.cc.contains("payee")',
    'context.provenance has amount && context.provenance.amount.isEmpty()',
    "context.provenance.nope.isEmpty()",
    "context.provenance == {}",
    'context.provenance_all == {"to": []}',
    'context.provenance.to.contains("payee") && context.provenance_all == {"to": ["payee"]}',
    '{"a": context.provenance}.a == {"to": []}',
    '(if context.provenance.to.isEmpty() then context.provenance else context.provenance_all) == {}',
    'context has provenance_all && context.provenance_all.to.isEmpty()',
])
def test_the_trimmed_provenance_decides_exactly_as_every_argument(
        condition: str, policy_errors: str, tmp_path: Path) -> None:
    for effect in ("permit", "forbid"):
        folder = tmp_path / effect
        folder.mkdir()
        trimmed, whole, trimmed_sink, whole_sink = authorizers(
            f'@id("all") permit(principal, action, resource);\n'
            f'@id("p") {effect}(principal, action, resource) when {{ {condition} }};', folder, policy_errors)
        ours = decide(trimmed, trimmed_sink)
        reference = decide(whole, whole_sink)
        assert [answer[:3] for answer in ours] == [answer[:3] for answer in reference]
