"""Attack class: verified token claims that carry Cedar JSON escapes (security review, finding 6).

A claim is data the identity provider signed, not Cedar syntax. Without a
schema an object claim ``{"__entity": {...}}`` or ``{"__extn": {...}}`` became
an entity reference or an extension value (``principal.profile ==
Role::"admin"`` allowed), and with a schema Cedar also reads ``{type, id}`` /
``{fn, arg}`` records, extra keys ignored, as references and calls. Every path
that turns claims into Cedar (principal attributes of an ID token,
``context.token`` of an access token; TokenIdentity, acting_as(token=...), the
local Verified Permissions endpoint's identity source) now goes through one
function, :func:`agentauthz.avp._tokens.claim_value`, which leaves out keys starting
``__`` at any depth and records of those implicit shapes, and makes an entity
reference or extension value only where the schema declares one, from a string.

Cases tried: 12 hostile claim shapes x (ID-token attribute, access-token
context) x (TokenIdentity with no schema, with the schema; evaluated by a store
without and with a schema) = 96, through verify + LocalEngine; the same 12 as
ID and access tokens through acting_as(token=...): 24 and through the local AVP
endpoint (IsAuthorizedWithToken) with and without a schema: 48; Hypothesis,
150 examples each: any JSON claims mapped without a schema hold no escape, no
implicit shape and no reference; mapped with a schema, every reference or
extension value sits where the schema declares one and is the claim's own
string; and a policy set that allows on any smuggled reference never allows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import agentauthz as az
from agentauthz.avp._tokens import TokenIdentity
from tests.strategies import hostile_claims
from tests.tokens import CLIENT_ID, POOL_ID, Issuer

U = az.EntityUID
ADMIN = {"type": "Role", "id": "admin"}
LOOPBACK = {"fn": "ip", "arg": "127.0.0.1"}

#: Claim values that must never become the entity Role::"admin" or the address 127.0.0.1.
HOSTILE: dict[str, Any] = {
    "entity-escape": {"__entity": ADMIN},
    "entity-escape-with-extra-key": {"__entity": ADMIN, "note": "x"},
    "extension-escape": {"__extn": LOOPBACK},
    "expr-escape": {"__expr": 'Role::"admin"'},
    "implicit-entity": ADMIN,
    "implicit-entity-with-extra-key": {**ADMIN, "note": "x"},
    "implicit-extension": LOOPBACK,
    "implicit-extension-args": {"fn": "ip", "args": ["127.0.0.1"]},
    "in-a-list": [{"__entity": ADMIN}],
    "implicit-in-a-list": [ADMIN],
    "nested": {"a": {"b": {"__entity": ADMIN}}},
    "implicit-nested": {"a": {"b": ADMIN}},
}

SCHEMA = """
entity Role;
entity Group;
entity User in [Group] = {
  profile?: Role,
  net?: ipaddr,
  roles?: Set<Role>,
  deep?: { a?: { b?: Role } },
  any?: { note?: String },
};
entity Doc;
type Token = { profile?: Role, net?: ipaddr, roles?: Set<Role>, deep?: { a?: { b?: Role } } };
action read appliesTo { principal: User, resource: Doc, context: { token?: Token } };
"""
# Each permit allows exactly when a claim became the entity Role::"admin" or a loopback address.
ESCAPE_POLICIES = """
@id("profile") permit (principal, action, resource)
when { principal has profile && principal.profile == Role::"admin" };
@id("net") permit (principal, action, resource)
when { principal has net && principal.net.isLoopback() };
@id("roles") permit (principal, action, resource)
when { principal has roles && principal.roles.contains(Role::"admin") };
@id("deep") permit (principal, action, resource)
when { principal has deep && principal.deep has a && principal.deep.a has b
       && principal.deep.a.b == Role::"admin" };
@id("token-profile") permit (principal, action, resource)
when { context has token && context.token has profile && context.token.profile == Role::"admin" };
@id("token-net") permit (principal, action, resource)
when { context has token && context.token has net && context.token.net.isLoopback() };
@id("token-roles") permit (principal, action, resource)
when { context has token && context.token has roles && context.token.roles.contains(Role::"admin") };
@id("token-deep") permit (principal, action, resource)
when { context has token && context.token has deep && context.token.deep has a
       && context.token.deep.a has b && context.token.deep.a.b == Role::"admin" };
"""
ATTRIBUTES = ("profile", "net", "roles", "deep")
READ = U("Action", "read")
DOC = U("Doc", "d")


def _stores() -> dict[str, az.PolicyStore]:
    return {"no-schema": az.PolicyStore.from_text(ESCAPE_POLICIES),
            "schema": az.PolicyStore.from_text(ESCAPE_POLICIES, schema=SCHEMA)}


STORES = _stores()


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


def _identity(issuer: Issuer, schema: az.PolicyStore | None) -> TokenIdentity:
    return TokenIdentity.cognito(user_pool_id=POOL_ID, client_ids=[CLIENT_ID], jwks=issuer.jwks,
                                 principal_entity_type="User", group_entity_type="Group", schema=schema)


def _claims(name: str) -> dict[str, Any]:
    """The hostile value under every attribute a policy tests, and as top-level keys."""
    value = HOSTILE[name]
    return {**{attribute: value for attribute in ATTRIBUTES},
            **(value if isinstance(value, dict) else {})}


def _signed(issuer: Issuer, token_type: str, claims: dict[str, Any]) -> str:
    if token_type == "identity":
        return issuer.id_token("u1", **claims)
    return issuer.access_token("u1", **claims)


def _decide(store: az.PolicyStore, entity: az.Entity, context: dict[str, Any]) -> az.Decision:
    request = az.Request(entity.uid, READ, DOC, context)
    return az.LocalEngine(store).decide([request], [entity])[0]


@pytest.mark.parametrize(("mapper", "evaluator"), [
    ("no-schema", "no-schema"), ("no-schema", "schema"), ("schema", "schema"), ("schema", "no-schema")])
@pytest.mark.parametrize("token_type", ["identity", "access"])
@pytest.mark.parametrize("shape", list(HOSTILE))
def test_hostile_claims_never_become_references_or_extension_values(
        issuer: Issuer, shape: str, token_type: str, mapper: str, evaluator: str) -> None:
    identity = _identity(issuer, STORES["schema"] if mapper == "schema" else None)
    claims = _claims(shape)
    token = _signed(issuer, token_type, claims)

    verified = identity.verify_token(token, token_type=token_type)  # type: ignore[arg-type]
    decision = _decide(STORES[evaluator], verified.entity, verified.context(READ))

    assert not decision.allowed, (decision.reasons, verified.entity.cedar, verified.token_context(READ))
    assert not _references(verified.entity.attrs) and not _references(verified.context(READ))


@pytest.mark.parametrize("token_type", ["identity", "access"])
@pytest.mark.parametrize("shape", list(HOSTILE))
def test_acting_as_a_token_binds_a_principal_without_smuggled_references(
        issuer: Issuer, shape: str, token_type: str) -> None:
    identity = _identity(issuer, None)
    claims = _claims(shape)
    token = _signed(issuer, token_type, claims)
    authz = az.Authorizer(az.LocalEngine(STORES["no-schema"]), audit=[])

    with authz.acting_as(token=token, identity=identity, token_type=token_type):  # type: ignore[arg-type]
        context = identity.verify_token(token, token_type=token_type).context(READ)  # type: ignore[arg-type]
        decision = authz.authorize(action=READ, resource=DOC, context=context)

    assert not decision.allowed


# -- the local Verified Permissions endpoint maps tokens with its identity source ----------------------


@pytest.fixture(scope="module", params=["no-schema", "schema"])
def endpoint(request: pytest.FixtureRequest, issuer: Issuer) -> Iterator[tuple[Any, Any]]:
    pytest.importorskip("boto3")
    from agentauthz.avp._engine import VerifiedPermissionsEngine
    from agentauthz.testing import LocalVerifiedPermissions

    store = STORES[request.param]
    with LocalVerifiedPermissions(store) as server:
        server.add_identity_source(_identity(issuer, store if request.param == "schema" else None))
        client = server.client(connect_timeout=2, read_timeout=2, retries={"max_attempts": 1})
        with VerifiedPermissionsEngine(server.policy_store_id, client=client) as engine:
            yield engine, store


@pytest.mark.parametrize("token_type", ["identity", "access"])
@pytest.mark.parametrize("shape", list(HOSTILE))
def test_the_local_avp_endpoint_maps_hostile_claims_to_data(
        endpoint: tuple[Any, Any], issuer: Issuer, shape: str, token_type: str) -> None:
    engine, _ = endpoint
    claims = _claims(shape)
    token = _signed(issuer, token_type, claims)
    principal = engine.token_principal(token, token_type)

    decisions = engine.decide_with_token(token, [az.Request(principal, READ, DOC)], token_type=token_type)

    assert [decision.allowed for decision in decisions] == [False]


def test_a_legitimate_string_claim_becomes_the_reference_the_schema_declares(issuer: Issuer) -> None:
    # The control: our own mapping makes references where the schema says so, from strings.
    identity = _identity(issuer, STORES["schema"])
    verified = identity.verify_token(issuer.id_token("u1", profile="admin", net="127.0.0.1"),
                                     token_type="identity")

    assert verified.entity.attrs["profile"] == U("Role", "admin")
    assert _decide(STORES["schema"], verified.entity, {}).allowed


# -- properties: any claims ---------------------------------------------------------------------------


def _references(value: Any) -> list[Any]:
    """Entity references and extension values in a Python value (attributes or a context)."""
    if isinstance(value, az.EntityUID | az.ExtensionValue):
        return [value]
    if isinstance(value, dict):
        return list(itertools.chain.from_iterable(_references(item) for item in value.values()))
    if isinstance(value, list | tuple | set | frozenset):
        return list(itertools.chain.from_iterable(_references(item) for item in value))
    return []


def _escapes(value: Any) -> list[Any]:
    """Objects of Cedar JSON that a schema could read as anything but a record."""
    found: list[Any] = []
    if isinstance(value, dict):
        keys = set(value)
        if any(str(key).startswith("__") for key in keys) or {"type", "id"} <= keys or (
                "fn" in keys and keys & {"arg", "args"}):
            found.append(value)
        for item in value.values():
            found.extend(_escapes(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_escapes(item))
    return found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(claims=hostile_claims())
def test_claims_mapped_without_a_schema_are_plain_data(claims: dict[str, Any]) -> None:
    identity = _IDENTITIES["no-schema"]
    claims = {**claims, "sub": "u1"}

    entity = identity.map_claims(claims, "identity").entity
    token = identity.map_claims(claims, "access").token_context(READ)

    attrs = entity.cedar["attrs"]
    # The attributes map is no value (it may hold `type` and `id`); each attribute is one.
    assert not any(name.startswith("__") for name in attrs)
    assert [escape for value in attrs.values() for escape in _escapes(value)] == []
    assert _escapes(token) == []  # context.token is a value
    assert _references(entity.attrs) == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(claims=hostile_claims(keys=ATTRIBUTES))
def test_claims_mapped_with_a_schema_make_references_only_where_declared_from_strings(
        claims: dict[str, Any]) -> None:
    identity = _IDENTITIES["schema"]
    claims = {**claims, "sub": "u1"}

    entity = identity.map_claims(claims, "identity").entity
    token = identity.map_claims(claims, "access").token_context(READ) or {}

    for attrs in (entity.cedar["attrs"], token):
        for path, reference in _cedar_references(attrs):
            declared = DECLARED.get(path.replace("[]", ""))
            assert declared is not None, (path, reference)
            kind, name = declared
            assert kind in reference
            assert name in (reference[kind].get("type"), reference[kind].get("fn"))
            assert isinstance(reference[kind].get("id", reference[kind].get("arg")), str)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(claims=hostile_claims(keys=(*ATTRIBUTES, "__entity", "type", "id", "fn", "arg")))
def test_no_claims_smuggle_an_allow_past_the_escape_policies(claims: dict[str, Any]) -> None:
    claims = {**claims, "sub": "u1"}
    for (mapper, identity), (evaluator, store) in itertools.product(_IDENTITIES.items(), STORES.items()):
        for token_type in ("identity", "access"):
            verified = identity.map_claims(claims, token_type)  # type: ignore[arg-type]
            if "schema" in (mapper, evaluator) and _legitimate(claims):
                # A string claim where the schema declares Role or ipaddr: the claim's own value, typed
                # by the schema (our mapping, or Cedar's reading of a string as an ipaddr).
                continue
            decision = _decide(store, verified.entity, verified.context(READ))
            assert not decision.allowed, (mapper, evaluator, token_type, decision.reasons)


#: Where the schema declares a reference or an extension value: path -> (escape, type or function).
DECLARED = {
    "profile": ("__entity", "Role"), "net": ("__extn", "ip"), "roles": ("__entity", "Role"),
    "deep.a.b": ("__entity", "Role"),
}


def _cedar_references(value: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(value, dict):
        if "__entity" in value or "__extn" in value:
            yield path, value
            return
        for key, item in value.items():
            yield from _cedar_references(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            yield from _cedar_references(item, f"{path}[]")


def _legitimate(claims: dict[str, Any]) -> bool:
    """Claims that *are* Role::"admin" or a loopback address as the schema types them (strings)."""
    deep = claims.get("deep")
    inner = deep.get("a") if isinstance(deep, dict) else None
    return (claims.get("profile") == "admin" or isinstance(claims.get("net"), str)
            or (isinstance(claims.get("roles"), list) and "admin" in claims["roles"])
            or (isinstance(claims.get("roles"), str) and "admin" in claims["roles"].split())
            or (isinstance(inner, dict) and inner.get("b") == "admin"))


_IDENTITIES = {"no-schema": _identity(Issuer(), None), "schema": _identity(Issuer(), STORES["schema"])}
