"""Tokens both ways: AVP (*WithToken on the local endpoint) and the embedded engine with TokenIdentity.

The same policies decide the same requests for the same tokens, whether
Verified Permissions verifies and maps the token (through an identity source of
the local endpoint, via boto3 and VerifiedPermissionsEngine) or the application
does (TokenIdentity + LocalEngine). Bad tokens never allow.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Iterator
from typing import Any

import pytest

import agentauthz as az
from agentauthz.avp._tokens import TokenIdentity
from agentauthz.testing import LocalVerifiedPermissions
from tests.tokens import (
    CLIENT_ID,
    COGNITO_ISSUER,
    OIDC_ISSUER,
    POOL_ID,
    Issuer,
    rsa_key,
    tampered,
    unsigned,
)

pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from agentauthz.avp._engine import VerifiedPermissionsEngine

U = az.EntityUID
SCHEMA = """
namespace App {
  entity Group;
  entity User in [Group] = {
    "cognito:username"?: String,
    email?: String,
    department?: String,
    clearance?: Long,
    email_verified?: Bool,
  };
  entity Doc = { department: String, public: Bool };
  type Token = { scope?: Set<String>, client_id?: String };
  action read, delete appliesTo {
    principal: User, resource: Doc,
    context: { token?: Token, reason?: String, input?: { doc: String } },
  };
}
"""
POLICIES = f"""
@id("public-read")
permit (principal, action == App::Action::"read", resource) when {{ resource.public }};

@id("admins-all")
permit (principal in App::Group::"{POOL_ID}|admins", action, resource);

@id("department-read")
permit (principal, action == App::Action::"read", resource)
when {{ principal has department && principal.department == resource.department }};

@id("alice-by-username")
permit (principal, action == App::Action::"delete", resource)
when {{ principal has "cognito:username" && principal["cognito:username"] == "alice" }};

@id("scope-delete")
permit (principal, action == App::Action::"delete", resource)
when {{ context has token && context.token has scope && context.token.scope.contains("docs/delete") }};

@id("no-delete-secret")
forbid (principal, action == App::Action::"delete", resource == App::Doc::"secret")
unless {{ principal in App::Group::"{POOL_ID}|admins" }};

@id("oidc-staff")
permit (principal in App::Group::"corp|staff", action == App::Action::"read", resource);
"""
DOCS = [
    az.Entity(uid=U("App::Doc", "handbook"), attrs={"department": "hr", "public": True}),
    az.Entity(uid=U("App::Doc", "roadmap"), attrs={"department": "eng", "public": False}),
    az.Entity(uid=U("App::Doc", "secret"), attrs={"department": "eng", "public": False}),
]
READ, DELETE = U("App::Action", "read"), U("App::Action", "delete")


@pytest.fixture(scope="module")
def store() -> az.PolicyStore:
    return az.PolicyStore.from_text(POLICIES, schema=SCHEMA, entities=DOCS)


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture(scope="module")
def identity(issuer: Issuer, store: az.PolicyStore) -> TokenIdentity:
    return TokenIdentity.cognito(user_pool_id=POOL_ID, client_ids=[CLIENT_ID], jwks=issuer.jwks,
                                 principal_entity_type="App::User", group_entity_type="App::Group",
                                 schema=store)


@pytest.fixture(scope="module")
def server(store: az.PolicyStore, identity: TokenIdentity) -> Iterator[LocalVerifiedPermissions]:
    with LocalVerifiedPermissions(store) as local:
        local.add_identity_source(identity)
        yield local


@pytest.fixture
def engine(server: LocalVerifiedPermissions) -> Iterator[VerifiedPermissionsEngine]:
    server.reset_calls()
    server.clear_faults()
    client = server.client(connect_timeout=2, read_timeout=2, retries={"max_attempts": 2})
    with VerifiedPermissionsEngine(server.policy_store_id, client=client) as avp:
        yield avp


def id_tokens(issuer: Issuer) -> dict[str, str]:
    return {
        "admin": issuer.id_token("u-admin", **{"cognito:groups": ["admins"], "email": "root@x.test"}),
        "alice-eng": issuer.id_token("u-alice", **{"cognito:username": "alice", "department": "eng",
                                                    "email_verified": True, "clearance": 2,
                                                    "cognito:groups": ["staff"], "iss_extra": 1.5}),
        "bob-hr": issuer.id_token("u-bob", **{"cognito:username": "bob", "department": "hr",
                                               "custom:tier": "gold"}),
        "nobody": issuer.id_token("u-nobody"),
    }


def access_tokens(issuer: Issuer) -> dict[str, str]:
    return {
        "deleter": issuer.access_token("u-carol", scope="openid docs/delete"),
        "reader": issuer.access_token("u-dave", scope="openid"),
        "admin": issuer.access_token("u-erin", scope="openid", **{"cognito:groups": ["admins"]}),
    }


def requests_for(principal: az.EntityUID) -> list[az.Request]:
    return [az.Request(principal=principal, action=action, resource=doc.uid, context=context)
            for action, doc, context in itertools.product(
                (READ, DELETE), DOCS, ({}, {"reason": "audit"}))]


def local_decisions(identity: TokenIdentity, store: az.PolicyStore, token: str,
                    token_type: str) -> list[az.Decision]:
    verified = identity.verify_token(token, token_type=token_type)  # type: ignore[arg-type]
    requests = [r.replace(context=verified.context(r.action, r.context))  # type: ignore[arg-type]
                for r in requests_for(verified.principal)]
    return az.LocalEngine(store).decide(requests, [verified.entity])


# -- parity ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["identity", "access"])
def test_same_decisions_through_avp_with_token_and_locally_with_token_identity(
    kind: str, issuer: Issuer, identity: TokenIdentity, store: az.PolicyStore,
    engine: VerifiedPermissionsEngine,
) -> None:
    tokens = id_tokens(issuer) if kind == "identity" else access_tokens(issuer)
    compared = allowed = 0
    for name, token in tokens.items():
        principal = engine.token_principal(token, kind)  # type: ignore[arg-type]
        assert principal == identity.verify_token(token, token_type=kind).principal  # type: ignore[arg-type]
        remote = engine.decide_with_token(token, requests_for(principal), store.entities,
                                          token_type=kind)  # type: ignore[arg-type]
        local = local_decisions(identity, store, token, kind)
        for request, got, want in zip(requests_for(principal), remote, local, strict=True):
            assert (got.allowed, got.reasons) == (want.allowed, want.reasons), (name, request)
            assert not got.errors and not want.errors, (name, got.errors, want.errors)
            compared += 1
            allowed += got.allowed
    assert compared == len(tokens) * 12
    assert 0 < allowed < compared  # both outcomes are exercised


def test_claims_reach_policies_as_avp_maps_them(
    issuer: Issuer, store: az.PolicyStore, engine: VerifiedPermissionsEngine
) -> None:
    tokens = id_tokens(issuer)
    cases = [
        (tokens["admin"], "identity", DELETE, "secret", ("admins-all",)),            # group -> parent
        (tokens["alice-eng"], "identity", DELETE, "roadmap", ("alice-by-username",)),  # colon claim
        (tokens["alice-eng"], "identity", READ, "roadmap", ("department-read",)),      # transient claim
        (tokens["bob-hr"], "identity", READ, "roadmap", ()),
        (access_tokens(issuer)["deleter"], "access", DELETE, "roadmap", ("scope-delete",)),  # context.token
        (access_tokens(issuer)["deleter"], "access", DELETE, "secret", ("no-delete-secret",)),
    ]
    for token, kind, action, doc, reasons in cases:
        principal = engine.token_principal(token, kind)  # type: ignore[arg-type]
        [decision] = engine.decide_with_token(
            token, [az.Request(principal=principal, action=action, resource=U("App::Doc", doc))],
            store.entities, token_type=kind)  # type: ignore[arg-type]
        assert decision.reasons == reasons, (doc, decision)
        assert decision.allowed == (reasons[:1] != ("no-delete-secret",) and bool(reasons))


def test_principal_id_is_pool_and_sub(issuer: Issuer, engine: VerifiedPermissionsEngine) -> None:
    assert engine.token_principal(issuer.id_token("abc-123")) == U("App::User", f"{POOL_ID}|abc-123")


# -- the Authorizer, same call shapes ------------------------------------------------------


def test_authorizer_with_a_bound_token_uses_with_token_calls(
    issuer: Issuer, identity: TokenIdentity, store: az.PolicyStore, engine: VerifiedPermissionsEngine,
    server: LocalVerifiedPermissions,
) -> None:
    token = id_tokens(issuer)["alice-eng"]
    remote = az.Authorizer(engine, entities=store.entities, audit=[])
    local = az.Authorizer(az.LocalEngine(store), audit=[])
    with remote.acting_as(token=token) as bound:
        assert bound.uid == U("App::User", f"{POOL_ID}|u-alice")
        got = [remote.authorize(action="read", resource=doc.uid) for doc in DOCS]
        got_many = remote.authorize_many(requests_for(bound.uid))
        filtered = remote.filter(DOCS, action="read", resource=lambda d: d)
    entity = identity.verify(token)
    with local.acting_as(entity):
        want = [local.authorize(action="read", resource=doc.uid) for doc in DOCS]
        # authorize_many takes each request's principal as given: its entity goes along explicitly
        want_many = local.authorize_many(requests_for(bound.uid), entities=[entity])
    assert [(d.allowed, d.reasons) for d in got] == [(d.allowed, d.reasons) for d in want]
    assert [(d.allowed, d.reasons) for d in got_many] == [(d.allowed, d.reasons) for d in want_many]
    assert [d.uid.id for d in filtered.allowed] == ["handbook", "roadmap", "secret"]
    assert server.call_count("IsAuthorized") == server.call_count("BatchIsAuthorized") == 0
    assert server.call_count("IsAuthorizedWithToken") >= 3
    # outside the block: the engine decides without the token again, and nobody is bound
    with pytest.raises(az.IdentityError):
        remote.authorize(action="read", resource=DOCS[0].uid)


def test_acting_as_a_token_verifies_locally_too_when_given_the_identity(
    issuer: Issuer, identity: TokenIdentity, store: az.PolicyStore, engine: VerifiedPermissionsEngine,
) -> None:
    remote = az.Authorizer(engine, entities=store.entities, audit=[])
    with remote.acting_as(token=id_tokens(issuer)["admin"], identity=identity) as bound:
        assert bound.entity is not None and bound.entity.parents == (U("App::Group", f"{POOL_ID}|admins"),)
        assert remote.authorize(action="delete", resource=U("App::Doc", "secret")).reasons == ("admins-all",)
    with pytest.raises(az.IdentityError), remote.acting_as(token=tampered(issuer.id_token()),
                                                            identity=identity):
        pytest.fail("a tampered token was bound")


def test_acting_as_a_token_on_the_local_engine(issuer: Issuer, identity: TokenIdentity,
                                               store: az.PolicyStore) -> None:
    local = az.Authorizer(az.LocalEngine(store), audit=[])
    with pytest.raises(az.ConfigurationError), local.acting_as(token=issuer.id_token()):
        pass
    with local.acting_as(token=id_tokens(issuer)["admin"], identity=identity):
        assert local.authorize(action="delete", resource=U("App::Doc", "secret")).allowed
    with pytest.raises(az.IdentityError), local.acting_as(token=issuer.id_token(exp=1), identity=identity):
        pass


def test_async_decisions_with_a_bound_token(issuer: Issuer, store: az.PolicyStore,
                                            engine: VerifiedPermissionsEngine) -> None:
    remote = az.Authorizer(engine, entities=store.entities, audit=[])
    token = id_tokens(issuer)["admin"]
    principal = engine.token_principal(token)

    async def run() -> tuple[az.Decision, az.Decision]:
        with remote.acting_as(token=token):
            decision = await remote.aauthorize(action="delete", resource=U("App::Doc", "secret"))
        [again] = await engine.adecide_with_token(
            token, [az.Request(principal=principal, action=DELETE, resource=U("App::Doc", "secret"))],
            store.entities)
        return decision, again

    decision, again = asyncio.run(run())
    assert decision.reasons == ("admins-all",)
    assert again.allowed


def test_guarded_tool_with_a_token(issuer: Issuer, store: az.PolicyStore,
                                   engine: VerifiedPermissionsEngine) -> None:
    remote = az.Authorizer(engine, entities=store.entities, audit=[])

    @remote.guard(action=DELETE, resource=lambda args: U("App::Doc", args["doc"]))
    def delete(doc: str) -> str:
        return f"deleted {doc}"

    with remote.acting_as(token=id_tokens(issuer)["alice-eng"]):
        assert delete("roadmap") == "deleted roadmap"
        with pytest.raises(az.AccessDenied):
            delete("secret")


# -- bad tokens never allow ------------------------------------------------------------------


def bad_tokens(issuer: Issuer) -> dict[str, str]:
    other_key = rsa_key("attacker")
    good = issuer.claims("id", "u-admin", **{"cognito:groups": ["admins"]})
    public_pem = issuer.key.public_key().public_bytes(
        encoding=__import__("cryptography.hazmat.primitives.serialization", fromlist=["x"]).Encoding.PEM,
        format=__import__("cryptography.hazmat.primitives.serialization", fromlist=["x"])
        .PublicFormat.SubjectPublicKeyInfo)
    return {
        "bad signature": issuer.sign(good, key=other_key),
        "tampered payload": tampered(issuer.sign(good)),
        "wrong issuer": issuer.sign({**good, "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other"}),
        "wrong audience": issuer.sign({**good, "aud": "another-client"}),
        "expired": issuer.sign({**good, "exp": good["iat"] - 10}),
        "wrong token_use": issuer.sign({**good, "token_use": "access"}),
        "no token_use": issuer.sign({k: v for k, v in good.items() if k != "token_use"}),
        "alg none": unsigned(good),
        "HS256 with the public key": _hs256(good, public_pem),
        "unknown kid": issuer.sign(good, headers={"kid": "k-unknown"}),
        "not yet valid": issuer.sign({**good, "nbf": good["iat"] + 3600}),
        "no exp": issuer.sign({k: v for k, v in good.items() if k != "exp"}),
        "garbage": "not.a.jwt",
    }


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def part(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    signing = f"{part({'alg': 'HS256', 'typ': 'JWT', 'kid': 'k1'})}.{part(claims)}"
    signature = base64.urlsafe_b64encode(hmac.new(secret, signing.encode(), hashlib.sha256).digest())
    return f"{signing}.{signature.decode().rstrip('=')}"


def test_bad_tokens_are_identity_errors_locally(issuer: Issuer, identity: TokenIdentity) -> None:
    for name, token in bad_tokens(issuer).items():
        with pytest.raises(az.IdentityError) as error:
            identity.verify(token)
        assert token not in str(error.value), name


def test_bad_tokens_never_allow_through_avp(
    issuer: Issuer, store: az.PolicyStore, engine: VerifiedPermissionsEngine, server: LocalVerifiedPermissions
) -> None:
    admin = U("App::User", f"{POOL_ID}|u-admin")
    requests = [az.Request(principal=admin, action=DELETE, resource=U("App::Doc", "secret"))] * 2 + [
        az.Request(principal=admin, action=READ, resource=U("App::Doc", "roadmap"))]
    for name, token in bad_tokens(issuer).items():
        decisions = engine.decide_with_token(token, requests, store.entities)
        assert not any(d.allowed for d in decisions), name
        assert all(d.errors for d in decisions), name
    # the same request with the good token is allowed: the failures above are the token's
    good = issuer.id_token("u-admin", **{"cognito:groups": ["admins"]})
    assert all(d.allowed for d in engine.decide_with_token(good, requests, store.entities))


def test_bad_token_raises_engine_error_with_on_error_raise(issuer: Issuer, server: LocalVerifiedPermissions,
                                                           store: az.PolicyStore) -> None:
    with VerifiedPermissionsEngine(server.policy_store_id, client=server.client(), on_error="raise") as avp:
        principal = U("App::User", f"{POOL_ID}|user-1")
        with pytest.raises(az.EngineError):
            avp.decide_with_token(issuer.id_token(exp=1), [
                az.Request(principal=principal, action=READ, resource=U("App::Doc", "handbook"))])


def test_a_decision_for_another_principal_is_denied(issuer: Issuer, store: az.PolicyStore,
                                                    engine: VerifiedPermissionsEngine) -> None:
    token = id_tokens(issuer)["admin"]
    someone = U("App::User", f"{POOL_ID}|someone-else")
    [decision] = engine.decide_with_token(
        token, [az.Request(principal=someone, action=READ, resource=U("App::Doc", "handbook"))],
        store.entities)
    assert not decision.allowed
    assert "not to the request's principal" in decision.errors[0]


def test_a_request_for_another_principal_is_denied_even_beside_the_token_user_s_own(
    issuer: Issuer, store: az.PolicyStore, engine: VerifiedPermissionsEngine
) -> None:
    token = id_tokens(issuer)["admin"]
    admin = engine.token_principal(token)
    someone = U("App::User", f"{POOL_ID}|someone-else")
    secret = U("App::Doc", "secret")
    # every order and mix of the token's user and another principal asking the same thing
    for principals in itertools.product((admin, someone), repeat=3):
        decisions = engine.decide_with_token(
            token, [az.Request(principal=p, action=DELETE, resource=secret) for p in principals],
            store.entities)
        assert [d.allowed for d in decisions] == [p == admin for p in principals], principals
        assert all("not to the request's principal" in d.errors[0]
                   for p, d in zip(principals, decisions, strict=True) if p != admin)


def test_token_principal_needs_an_identity_source_for_the_issuer(engine: VerifiedPermissionsEngine) -> None:
    other = Issuer(issuer="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other")
    with pytest.raises(az.IdentityError):
        engine.token_principal(other.id_token())
    with pytest.raises(az.IdentityError):
        engine.token_principal("nope")


# -- requests on the wire -----------------------------------------------------------------


def test_batches_of_thirty_share_the_token(issuer: Issuer, store: az.PolicyStore,
                                           engine: VerifiedPermissionsEngine,
                                           server: LocalVerifiedPermissions) -> None:
    token = issuer.id_token("u-batch", department="eng")
    principal = engine.token_principal(token)
    requests = [az.Request(principal=principal, action=READ, resource=U("App::Doc", f"d{i}"))
                for i in range(65)]
    entities = [az.Entity(uid=r.resource, attrs={"department": "eng" if i % 2 else "hr", "public": False})
                for i, r in enumerate(requests)]
    decisions = engine.decide_with_token(token, requests, entities)
    assert [d.allowed for d in decisions] == [bool(i % 2) for i in range(65)]
    assert server.call_count("BatchIsAuthorizedWithToken") == math.ceil(65 / 30)
    sent = [call.body for call in server.calls if call.operation == "BatchIsAuthorizedWithToken"]
    assert all("principal" not in item for body in sent for item in body["requests"])
    assert all(body["identityToken"] == token for body in sent)


def test_principal_entity_is_not_sent_with_an_identity_token(
    issuer: Issuer, store: az.PolicyStore, engine: VerifiedPermissionsEngine, server: LocalVerifiedPermissions
) -> None:
    token = id_tokens(issuer)["admin"]
    principal = engine.token_principal(token)
    stale = az.Entity(uid=principal, attrs={"department": "eng"})
    [decision] = engine.decide_with_token(
        token, [az.Request(principal=principal, action=READ, resource=U("App::Doc", "roadmap"))],
        [*store.entities, stale])
    assert decision.reasons == ("admins-all",)
    [call] = [c.body for c in server.calls if c.operation == "IsAuthorizedWithToken"]
    sent = {item["identifier"]["entityId"] for item in call["entities"]["entityList"]}
    assert principal.id not in sent


def test_access_token_principal_entity_may_carry_attributes(
    issuer: Issuer, store: az.PolicyStore, engine: VerifiedPermissionsEngine
) -> None:
    token = access_tokens(issuer)["reader"]
    principal = engine.token_principal(token, "access")
    entity = az.Entity(uid=principal, attrs={"department": "eng"})
    [decision] = engine.decide_with_token(
        token, [az.Request(principal=principal, action=READ, resource=U("App::Doc", "roadmap"))],
        [*store.entities, entity], token_type="access")
    assert decision.reasons == ("department-read",)


# -- identity sources on the endpoint -------------------------------------------------------


def test_identity_source_operations(server: LocalVerifiedPermissions) -> None:
    client = server.client()
    store_id = server.add_store()
    created = client.create_identity_source(
        policyStoreId=store_id, principalEntityType="App::User",
        configuration={"openIdConnectConfiguration": {
            "issuer": OIDC_ISSUER, "entityIdPrefix": "corp",
            "groupConfiguration": {"groupClaim": "groups", "groupEntityType": "App::Group"},
            "tokenSelection": {"accessTokenOnly": {"audiences": ["api"], "principalIdClaim": "email"}}}})
    source_id = created["identitySourceId"]
    got = client.get_identity_source(policyStoreId=store_id, identitySourceId=source_id)
    oidc = got["configuration"]["openIdConnectConfiguration"]
    assert oidc["tokenSelection"]["accessTokenOnly"] == {"audiences": ["api"], "principalIdClaim": "email"}
    assert got["principalEntityType"] == "App::User"
    cognito = client.create_identity_source(
        policyStoreId=store_id, principalEntityType="App::Other",
        configuration={"cognitoUserPoolConfiguration": {
            "userPoolArn": "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_Abc",
            "clientIds": ["c1"]}})
    detail = client.get_identity_source(policyStoreId=store_id, identitySourceId=cognito["identitySourceId"])
    assert detail["configuration"]["cognitoUserPoolConfiguration"]["issuer"] == (
        "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Abc")
    first = client.list_identity_sources(policyStoreId=store_id, maxResults=1)
    second = client.list_identity_sources(policyStoreId=store_id, maxResults=1, nextToken=first["nextToken"])
    assert len(first["identitySources"]) == len(second["identitySources"]) == 1
    assert "nextToken" not in second
    only = client.list_identity_sources(policyStoreId=store_id,
                                        filters=[{"principalEntityType": "App::Other"}])
    assert [s["identitySourceId"] for s in only["identitySources"]] == [cognito["identitySourceId"]]
    client.update_identity_source(
        policyStoreId=store_id, identitySourceId=source_id, principalEntityType="App::Person",
        updateConfiguration={"openIdConnectConfiguration": {
            "issuer": OIDC_ISSUER, "tokenSelection": {"accessTokenOnly": {"audiences": ["api2"]}}}})
    updated = client.get_identity_source(policyStoreId=store_id, identitySourceId=source_id)
    assert updated["principalEntityType"] == "App::Person"
    assert updated["configuration"]["openIdConnectConfiguration"]["tokenSelection"] == {
        "accessTokenOnly": {"audiences": ["api2"], "principalIdClaim": "sub"}}
    client.delete_identity_source(policyStoreId=store_id, identitySourceId=source_id)
    with pytest.raises(ClientError) as missing:
        client.get_identity_source(policyStoreId=store_id, identitySourceId=source_id)
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    for configuration in ({"openIdConnectConfiguration": {"issuer": "http://plain", "tokenSelection": {
                              "identityTokenOnly": {"clientIds": ["a"]}}}},
                          {"cognitoUserPoolConfiguration": {"userPoolArn": "arn:nope"}},
                          {"openIdConnectConfiguration": {"issuer": OIDC_ISSUER, "entityIdPrefix": "p" * 101,
                                                          "tokenSelection": {"accessTokenOnly": {}}}}):
        with pytest.raises(ClientError) as refused:
            client.create_identity_source(policyStoreId=store_id, configuration=configuration,
                                          principalEntityType="App::User")
        assert refused.value.response["Error"]["Code"] == "ValidationException"
    server.delete_store(store_id)


def test_oidc_access_tokens_with_prefix_and_space_separated_groups(store: az.PolicyStore) -> None:
    oidc = Issuer(issuer=OIDC_ISSUER, cognito=False)
    identity = TokenIdentity.oidc(issuer=OIDC_ISSUER, jwks=oidc.jwks, audiences=["api"],
                                  principal_entity_type="App::User", entity_id_prefix="corp",
                                  group_claim="groups", group_entity_type="App::Group", schema=store)
    token = oidc.sign({**oidc.claims(sub="u-9"), "aud": "api", "groups": "staff contractors",
                       "scope": "docs/delete"})
    with LocalVerifiedPermissions(store) as local:
        local.add_identity_source(identity)
        with VerifiedPermissionsEngine(local.policy_store_id, client=local.client()) as avp:
            principal = avp.token_principal(token, "access")
            assert principal == U("App::User", "corp|u-9")
            requests = [az.Request(principal=principal, action=action, resource=U("App::Doc", "roadmap"))
                        for action in (READ, DELETE)]
            remote = avp.decide_with_token(token, requests, store.entities, token_type="access")
            # an ID token is refused by an access-token-only identity source
            refused = avp.decide_with_token(token, requests, store.entities, token_type="identity")
    verified = identity.verify_token(token)
    assert verified.groups == (U("App::Group", "corp|staff"), U("App::Group", "corp|contractors"))
    local_engine = az.LocalEngine(store)
    want = local_engine.decide([r.replace(context=verified.context(r.action)) for r in requests],
                               [verified.entity])
    assert [(d.allowed, d.reasons) for d in remote] == [(d.allowed, d.reasons) for d in want]
    assert [d.reasons for d in remote] == [("oidc-staff",), ("scope-delete",)]
    assert not any(d.allowed for d in refused)


def test_endpoint_without_keys_for_the_issuer_refuses(store: az.PolicyStore, issuer: Issuer) -> None:
    with LocalVerifiedPermissions(store) as local:
        client = local.client()
        client.create_identity_source(
            policyStoreId=local.policy_store_id, principalEntityType="App::User",
            configuration={"cognitoUserPoolConfiguration": {
                "userPoolArn": f"arn:aws:cognito-idp:us-east-1:123456789012:userpool/{POOL_ID}",
                "clientIds": [CLIENT_ID], "groupConfiguration": {"groupEntityType": "App::Group"}}})
        with pytest.raises(ClientError) as refused:
            client.is_authorized_with_token(
                policyStoreId=local.policy_store_id, identityToken=issuer.id_token(),
                action={"actionType": "App::Action", "actionId": "read"},
                resource={"entityType": "App::Doc", "entityId": "handbook"})
        assert "no signing keys" in refused.value.response["Error"]["Message"]
    with LocalVerifiedPermissions(store, jwks={COGNITO_ISSUER: issuer.jwks}) as local:
        client = local.client()
        client.create_identity_source(
            policyStoreId=local.policy_store_id, principalEntityType="App::User",
            configuration={"cognitoUserPoolConfiguration": {
                "userPoolArn": f"arn:aws:cognito-idp:us-east-1:123456789012:userpool/{POOL_ID}",
                "clientIds": [CLIENT_ID], "groupConfiguration": {"groupEntityType": "App::Group"}}})
        answer = client.is_authorized_with_token(
            policyStoreId=local.policy_store_id,
            identityToken=issuer.id_token(**{"cognito:groups": ["admins"]}),
            action={"actionType": "App::Action", "actionId": "delete"},
            resource={"entityType": "App::Doc", "entityId": "secret"},
            entities={"entityList": [{"identifier": {"entityType": "App::Doc", "entityId": "secret"},
                                      "attributes": {"department": {"string": "eng"},
                                                     "public": {"boolean": False}}}]})
        assert answer["decision"] == "ALLOW"
        assert answer["principal"] == {"entityType": "App::User", "entityId": f"{POOL_ID}|user-1"}


def test_with_token_requests_validate_against_botocore(server: LocalVerifiedPermissions,
                                                       issuer: Issuer) -> None:
    client = server.client()
    with pytest.raises(ClientError) as both:
        client.is_authorized_with_token(
            policyStoreId=server.policy_store_id, identityToken=issuer.id_token(),
            accessToken=issuer.access_token(), action={"actionType": "App::Action", "actionId": "read"},
            resource={"entityType": "App::Doc", "entityId": "handbook"})
    assert "exactly one" in both.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as too_many:
        client.batch_is_authorized_with_token(
            policyStoreId=server.policy_store_id, identityToken=issuer.id_token(),
            requests=[{"action": {"actionType": "App::Action", "actionId": "read"},
                       "resource": {"entityType": "App::Doc", "entityId": f"d{i}"}} for i in range(31)])
    assert too_many.value.response["Error"]["Code"] == "ValidationException"
