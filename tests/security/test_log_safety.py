"""Attack class: log safety. Attribute values, context, arguments and tokens never reach logs or errors.

Secrets are seeded in principal and resource attributes, stored entities,
context, tool arguments and tokens, and every way of making a decision fail is
tried (type errors, missing attributes, overflow, extension-function errors on
the secret itself, schema violations, tags named by a secret, Verified
Permissions echoing a value back in a ValidationException). None of the secrets
may appear in ``Decision.errors``, audit events (the ``agentauthz.audit``
logger's JSON lines and ``capture_decisions``), any other log record of the
library, refusal texts the model reads, or the messages and tracebacks of the
exceptions the library raises. With ``record_requests=True`` they appear in
the audit event's ``request`` field and nowhere else.

Cases tried:

* 16 failing or succeeding decisions with secrets, each checked on 5 surfaces
  (decision errors, audit JSON through LoggingSink, captured events, other log
  records, AccessDenied/refusal texts): 16 cases
* opting in with record_requests=True: 16 cases (secrets only in ``request``)
* tool arguments that fail validation (guard, LangChain, Bedrock): 3
* tokens rejected by the verifier (Bedrock handler; TokenIdentity): 2
* Verified Permissions errors that echo a value: 2
* load errors of a store whose entities carry secrets (message and traceback): 2; the author's own
  file, so the value at fault is quoted and nothing else
* an erring template link named by its id (not redacted) while the secret is: 2 (sliced, whole set)
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import agentauthz as az
from agentauthz.testing import capture_decisions
from tests.security.support import SECRETS, event_texts, leaks

U = az.EntityUID
SSN, PASSWORD, TOKEN, SALARY, PIN = SECRETS

SCHEMA = """
entity User = { name: String, ssn: String, level: Long };
entity Doc = { owner: User, pin: String };
action read appliesTo { principal: User, resource: Doc, context: { note: String } };
"""

POLICIES = """
@id("typed") permit(principal, action == Action::"typed", resource) when { principal.ssn + 1 > 0 };
@id("missing") permit(principal, action == Action::"missing", resource) when { principal.nothing == 1 };
@id("overflow") permit(principal, action == Action::"overflow", resource)
  when { principal.level + 9223372036854775807 > 0 };
@id("decimal") permit(principal, action == Action::"decimal", resource)
  when { decimal(context.v) > decimal("1.0") };
@id("ip") permit(principal, action == Action::"ip", resource) when { ip(context.v).isLoopback() };
@id("tag") permit(principal, action == Action::"tag", resource) when { principal.getTag(context.v) == 1 };
@id("like") permit(principal, action == Action::"like", resource) when { context.v like "x*" };
@id("set") permit(principal, action == Action::"set", resource) when { context.v.contains(1) };
@id("record") permit(principal, action == Action::"record", resource) when { context.r.missing };
@id("entity") permit(principal, action == Action::"entity", resource) when { context.e.owner == principal };
@id("allow") permit(principal, action == Action::"allow", resource) when { principal.ssn != "" };
@id("deny") forbid(principal, action == Action::"deny", resource) when { resource.pin != "" };
"""


def principal(value: str = PASSWORD) -> az.Entity:
    return az.Entity(uid=U("User", "alice"), attrs={"name": value, "ssn": SSN, "level": 3},
                     tags={"t": SALARY})


RESOURCE = az.Entity(uid=U("Doc", "d"), attrs={"owner": U("User", "alice"), "pin": PIN})

SCENARIOS: dict[str, dict[str, Any]] = {
    "type-error": {"action": "typed"},
    "missing-attribute": {"action": "missing"},
    "overflow": {"action": "overflow"},
    "decimal-of-a-secret": {"action": "decimal", "context": {"v": PASSWORD}},
    "decimal-of-another-secret": {"action": "decimal", "context": {"v": TOKEN}},
    "ip-of-a-secret": {"action": "ip", "context": {"v": SSN}},
    "ip-of-an-identifier": {"action": "ip", "context": {"v": PASSWORD}},
    "tag-named-by-a-secret": {"action": "tag", "context": {"v": PASSWORD}},
    "like-on-a-record": {"action": "like", "context": {"v": {"k": SALARY}}},
    "contains-on-a-string": {"action": "set", "context": {"v": PIN}},
    "record-attribute-missing": {"action": "record", "context": {"r": {"k": SSN}}},
    "missing-entity": {"action": "entity", "context": {"e": U("Doc", "elsewhere")}},
    "allowed": {"action": "allow", "context": {"note": TOKEN}},
    "forbidden": {"action": "deny", "context": {"note": TOKEN}},
    "conflicting-entities": {"action": "allow", "entities": [principal(SALARY)]},
    "schema-violation": {"action": "read", "context": {"note": 5, "extra": SSN}, "schema": True},
}


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="agentauthz")
    yield caplog


def _decide(name: str, *, record: bool = False) -> tuple[az.Decision, list[Any], list[str]]:
    scenario = SCENARIOS[name]
    store = (az.PolicyStore.from_text('permit(principal, action == Action::"read", resource);', schema=SCHEMA)
             if scenario.get("schema") else az.PolicyStore.from_text(POLICIES))
    authz = az.Authorizer(az.LocalEngine(store), audit=[az.LoggingSink()], record_requests=record)
    texts: list[str] = []
    with capture_decisions() as events, authz.acting_as(principal()):
        decision = authz.authorize(action=scenario["action"], resource=RESOURCE,
                                   context=scenario.get("context"), entities=scenario.get("entities", ()))
        if not decision.allowed:
            texts.append(str(az.AccessDenied(decision, subject="tool 'x'")))
            from agentauthz.tools._spec import refusal_message

            texts.append(refusal_message("x", decision))
            texts.append(refusal_message("x", decision, disclose=True))
    return decision, events, texts


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_secrets_reach_no_error_event_log_or_refusal(name: str, logs: pytest.LogCaptureFixture) -> None:
    decision, events, texts = _decide(name)
    assert len(events) == 1
    surfaces = {
        "Decision.errors": list(decision.errors),
        "captured events": event_texts(events, without_request=False),
        "log records": [record.getMessage() for record in logs.records],
        "refusals": texts,
    }
    assert any(r.name == "agentauthz.audit" for r in logs.records)
    for surface, found in surfaces.items():
        assert leaks(found) == [], f"{surface} leak {leaks(found)}: {found}"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_with_record_requests_secrets_appear_only_in_the_request_field(
        name: str, logs: pytest.LogCaptureFixture) -> None:
    decision, events, _ = _decide(name, record=True)
    assert leaks(decision.errors) == []
    assert leaks(event_texts(events)) == []  # everything but `request`
    recorded = json.dumps(events[0].request)
    assert SSN in recorded  # the principal's attributes travel with the request
    audit_lines = [json.loads(r.getMessage()) for r in logs.records if r.name == "agentauthz.audit"]
    assert len(audit_lines) == 1
    assert leaks([json.dumps({k: v for k, v in audit_lines[0].items() if k != "request"})]) == []
    others = [r.getMessage() for r in logs.records if r.name != "agentauthz.audit"]
    assert leaks(others) == []


# -- tool arguments ------------------------------------------------------------------------------


def _guard_invalid() -> list[str]:
    authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[az.LoggingSink()])

    @authz.guard(on_deny="message")
    def transfer(amount: int, memo: str) -> str:
        return "sent"

    texts = []
    with authz.acting_as(principal()):
        texts.append(transfer(amount=SSN, memo=PASSWORD))  # type: ignore[arg-type]
        try:
            authz.authorize_tool_call(transfer, {"amount": PIN, "memo": TOKEN, "extra": SALARY})
        except az.AuthzError as exc:
            texts.extend(traceback.format_exception(exc))
    return texts


def _langchain_invalid() -> list[str]:
    pytest.importorskip("langchain_core")
    from langchain_core.tools import tool

    from agentauthz.integrations.langchain import PRINCIPAL_KEY, authorize_tools

    authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[az.LoggingSink()])

    @tool
    def transfer(amount: int, memo: str) -> str:
        """Send money."""
        return "sent"

    # LangChain validates the model's arguments against the tool's schema before any wrapper
    # runs; its ValidationError quotes the input unless the tool handles validation errors
    # (docs/security.md says so). With that set, the refusal never quotes the arguments.
    transfer.handle_validation_error = True
    [safe] = authorize_tools([transfer], authz)
    answer = safe.invoke({"name": "transfer", "id": "c1", "type": "tool_call",
                          "args": {"amount": SSN, "memo": PASSWORD}},
                         config={"configurable": {PRINCIPAL_KEY: principal().uid}})
    return [str(answer.content)]


def _bedrock_invalid() -> list[str]:
    from agentauthz.integrations.bedrock import action_group_handler

    authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[az.LoggingSink()])

    @action_group_handler(authz, principal=lambda e: U("User", e["sessionAttributes"]["userId"]))
    def handler(event: dict[str, Any], context: Any) -> str:
        return "sent"

    event = {"messageVersion": "1.0", "actionGroup": "bank", "function": "transfer",
             "sessionAttributes": {"userId": "alice"},
             "parameters": [{"name": "amount", "type": "integer", "value": SSN},
                            {"name": "memo", "type": "object", "value": "{" + PASSWORD},
                            {"name": "to", "type": "array", "value": f"[{{{TOKEN}]"},
                            {"name": "rate", "type": "number", "value": SALARY}]}
    return [json.dumps(handler(event, None))]


INVALID_ARGUMENTS: dict[str, Callable[[], list[str]]] = {
    "guard": _guard_invalid, "langchain": _langchain_invalid, "bedrock": _bedrock_invalid,
}


@pytest.mark.parametrize("entry", sorted(INVALID_ARGUMENTS))
def test_invalid_tool_arguments_are_refused_without_echoing_them(
        entry: str, logs: pytest.LogCaptureFixture) -> None:
    with capture_decisions() as events:
        texts = INVALID_ARGUMENTS[entry]()
    assert texts
    assert leaks(texts) == []
    assert leaks(event_texts(events)) == []
    assert leaks(r.getMessage() for r in logs.records) == []


# -- tokens ---------------------------------------------------------------------------------------


def test_a_rejected_token_reaches_no_log_or_refusal(logs: pytest.LogCaptureFixture) -> None:
    from agentauthz.integrations.bedrock import action_group_handler

    authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[az.LoggingSink()])

    def verify(token: str) -> az.EntityUID:
        raise ValueError(f"token {token} has a bad signature")

    @action_group_handler(authz, verify_token=verify)
    def handler(event: dict[str, Any], context: Any) -> str:
        return "ok"

    with capture_decisions() as events:
        response = handler({"messageVersion": "1.0", "actionGroup": "g", "function": "f",
                            "sessionAttributes": {"token": f"Bearer {TOKEN}"}}, None)
    # Session attributes go back to Bedrock unchanged (the protocol); the refusal must not quote them.
    assert leaks([json.dumps(response["response"])]) == []
    assert leaks(event_texts(events)) == []
    assert leaks(r.getMessage() for r in logs.records) == []


def test_token_identity_errors_never_quote_the_token_or_its_claims() -> None:
    pytest.importorskip("jwt")
    try:
        from agentauthz.avp._tokens import TokenIdentity
    except ImportError:  # pragma: no cover
        pytest.skip("agentauthz has no JWT verifier (TokenIdentity)")
    import base64

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    identity = TokenIdentity.cognito(user_pool_id="us-east-1_Pool1", client_ids=["app"], jwks={"keys": []})
    forged = [
        f"{part({'alg': 'RS256', 'kid': TOKEN})}.{part({'sub': SSN, 'pin': PIN})}.c2ln",
        f"{part({'alg': 'none'})}.{part({'sub': SSN, 'name': PASSWORD})}.",
        f"{part({'alg': 'HS256', 'kid': 'k1'})}.{part({'sub': SSN, 'iss': TOKEN})}.c2ln",
        f"{TOKEN}.{SSN}.{PIN}",
    ]
    for token in forged:
        with pytest.raises(az.IdentityError) as raised:
            identity.verify(token)
        assert leaks(traceback.format_exception(raised.value)) == []


# -- Verified Permissions echoing values ---------------------------------------------------------


@pytest.mark.parametrize("message", [
    f"1 validation error detected: Value '{SSN}' at 'context.contextMap.ssn.member.string' failed to "
    "satisfy constraint: Member must have length less than or equal to 10",
    f"2 validation errors detected: Value '{PASSWORD}' at 'entities.entityList.1.member.attributes.name' "
    f"failed to satisfy constraint; Value [{PIN}, x] at 'context.contextMap.pins' failed to satisfy "
    "constraint",
])
def test_avp_validation_errors_that_echo_values_are_redacted(message: str) -> None:
    pytest.importorskip("boto3")
    from agentauthz.avp._engine import VerifiedPermissionsEngine
    from agentauthz.testing import Fault, LocalVerifiedPermissions

    with LocalVerifiedPermissions(az.PolicyStore.from_text("permit(principal, action, resource);")) as server:
        body = json.dumps({"__type": "ValidationException", "message": message}).encode()
        server.inject("*", Fault.raw(400, body))
        engine = VerifiedPermissionsEngine(server.policy_store_id,
                                           client=server.client(retries={"max_attempts": 1}))
        authz = az.Authorizer(engine, audit=[])
        with capture_decisions() as events, authz.acting_as(principal()):
            decisions = authz.authorize_many(
                [az.Request(principal().uid, U("Action", "read"), RESOURCE.uid, {"ssn": SSN})] * 2
                + [az.Request(principal().uid, U("Action", "read"), RESOURCE.uid)], entities=[RESOURCE])
        engine.close()
    assert not any(d.allowed for d in decisions)
    assert all(d.errors for d in decisions)
    assert leaks(error for d in decisions for error in d.errors) == []
    assert leaks(event_texts(events)) == []


# -- load errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("problem", ["nonconforming", "duplicate"])
def test_load_errors_about_entities_quote_only_the_value_at_fault(problem: str, tmp_path: Path) -> None:
    # entities.json is the author's own file: a load error names the entity, the attribute and its
    # expected type, and quotes the value at fault so that it can be fixed (issue 19); no other
    # attribute, in the message or in the chained cause. Decisions stay redacted (above).
    (tmp_path / "schema.cedarschema").write_text(SCHEMA, encoding="utf-8")
    (tmp_path / "p.cedar").write_text('permit(principal, action == Action::"read", resource);',
                                      encoding="utf-8")
    alice = {"uid": {"type": "User", "id": "alice"},
             "attrs": {"name": PASSWORD, "ssn": SSN, "level": TOKEN if problem == "nonconforming" else 1},
             "parents": []}
    twin = {**alice, "attrs": {**alice["attrs"], "name": PIN}}
    entities = [alice, twin] if problem == "duplicate" else [alice]
    (tmp_path / "entities.json").write_text(json.dumps(entities), encoding="utf-8")
    with pytest.raises(az.PolicyError) as raised:
        az.PolicyStore.from_directory(tmp_path)
    at_fault = [TOKEN] if problem == "nonconforming" else []
    assert leaks([str(raised.value)]) == at_fault
    assert leaks(traceback.format_exception(raised.value)) == at_fault, "the chained cause quotes more"
    if problem == "nonconforming":
        assert 'User::"alice"' in str(raised.value) and "`level`" in str(raised.value)


@pytest.mark.parametrize("slicing", [True, False])
def test_an_erring_template_link_is_named_by_its_id_while_the_values_stay_redacted(slicing: bool) -> None:
    # A link id is the policy author's name for a grant, not data: `share-1` must not become
    # `<value>` the way a quoted value does; the secret that made it err must.
    secret = SECRETS[0]
    policies = ('@id("share") permit(principal == ?principal, action, resource) '
                'when { decimal(context.v) > decimal("1.0") };')
    link = az.TemplateLink(id="share-1", template="share", principal=U("User", "u"))
    store = az.PolicyStore.from_text(policies, validate=False, links=[link])
    decision = az.LocalEngine(store, slicing=slicing).decide(
        [az.Request(U("User", "u"), U("Action", "read"), U("Doc", "d"), {"v": secret})])[0]
    assert not decision.allowed
    assert [error.split(":")[0] for error in decision.errors] == ["error while evaluating policy `share-1`"]
    assert not leaks(decision.errors)
