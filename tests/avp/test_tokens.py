"""TokenIdentity: JWT verification (never an identity for a bad token) and AVP's claim mapping."""

from __future__ import annotations

import importlib
import json
import time
from typing import Any

import pytest

import agentauthz as az
from agentauthz.avp._tokens import ClaimMapper, TokenIdentity, group_names
from tests.tokens import (
    CLIENT_ID,
    COGNITO_ISSUER,
    OIDC_ISSUER,
    POOL_ID,
    Issuer,
    ec_key,
    jwk_of,
    rsa_key,
    tampered,
    unsigned,
)

U = az.EntityUID
SCHEMA = """
namespace App {
  entity Group;
  entity Team;
  type Address = { city: String, zip?: String };
  entity User in [Group] = {
    "cognito:username"?: String,
    email?: String,
    level?: Long,
    verified?: Bool,
    roles?: Set<String>,
    address?: Address,
    team?: Team,
    ip?: ipaddr,
  };
  entity Doc;
  action read appliesTo { principal: User, resource: Doc,
                          context: { token?: { scope?: Set<String>, client_id?: String } } };
  action ping appliesTo { principal: User, resource: Doc };
}
"""


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


def cognito(issuer: Issuer, **options: Any) -> TokenIdentity:
    settings: dict[str, Any] = {"user_pool_id": POOL_ID, "client_ids": [CLIENT_ID], "jwks": issuer.jwks,
                                "principal_entity_type": "App::User", "group_entity_type": "App::Group"}
    settings.update(options)
    return TokenIdentity.cognito(**settings)


# -- verification ----------------------------------------------------------------------------


def test_an_id_token_maps_to_the_principal_with_groups_and_attributes(issuer: Issuer) -> None:
    token = issuer.id_token("abc", **{"cognito:username": "alice", "cognito:groups": ["admins", "staff"],
                                      "email": "a@x.test", "weight": 1.5, "nothing": None})
    entity = cognito(issuer).verify(token)
    assert entity.uid == U("App::User", f"{POOL_ID}|abc")
    assert entity.parents == (U("App::Group", f"{POOL_ID}|admins"), U("App::Group", f"{POOL_ID}|staff"))
    attrs = entity.to_cedar()["attrs"]
    assert attrs["cognito:username"] == "alice" and attrs["email"] == "a@x.test"
    assert "cognito:groups" not in attrs and "weight" not in attrs and "nothing" not in attrs
    assert attrs["token_use"] == "id" and attrs["sub"] == "abc"  # without a schema every claim stays


def test_the_identity_is_the_bedrock_verify_token_hook(issuer: Issuer) -> None:
    identity = cognito(issuer)
    assert identity(issuer.id_token("abc")).uid == U("App::User", f"{POOL_ID}|abc")
    from agentauthz.integrations.bedrock import action_group_handler

    authz = az.Authorizer.from_text(
        f'permit (principal in App::Group::"{POOL_ID}|admins", action, resource);', audit=[])
    seen: list[str] = []

    @action_group_handler(authz, verify_token=identity)
    def handler(event: dict[str, Any], context: Any) -> str:
        seen.append(str(authz.current_principal()))
        return "done"

    def event(token: str) -> dict[str, Any]:
        return {"messageVersion": "1.0", "agent": {"name": "a", "id": "A", "alias": "B", "version": "1"},
                "inputText": "", "sessionId": "s", "actionGroup": "g", "function": "f", "parameters": [],
                "sessionAttributes": {"token": token}, "promptSessionAttributes": {}}

    handler(event(issuer.id_token("abc", **{"cognito:groups": ["admins"]})), None)
    handler(event(issuer.id_token("abc", exp=1)), None)
    handler(event(unsigned(issuer.claims("id", "abc", **{"cognito:groups": ["admins"]}))), None)
    assert seen == [f'App::User::"{POOL_ID}|abc"']


def bad(issuer: Issuer) -> dict[str, str]:
    good = issuer.claims("id", "abc")
    return {
        "bad signature": issuer.sign(good, key=rsa_key("attacker")),
        "tampered": tampered(issuer.sign(good)),
        "wrong issuer": issuer.sign({**good, "iss": OIDC_ISSUER}),
        "wrong audience": issuer.sign({**good, "aud": "other"}),
        "audience list without ours": issuer.sign({**good, "aud": ["x", "y"]}),
        "expired": issuer.sign({**good, "exp": int(time.time()) - 1}),
        "not yet valid": issuer.sign({**good, "nbf": int(time.time()) + 600}),
        "access token_use": issuer.sign({**good, "token_use": "access"}),
        "no token_use": issuer.sign({k: v for k, v in good.items() if k != "token_use"}),
        "alg none": unsigned(good),
        "unknown kid": issuer.sign(good, headers={"kid": "nope"}),
        "no exp": issuer.sign({k: v for k, v in good.items() if k != "exp"}),
        "no sub": issuer.sign({k: v for k, v in good.items() if k != "sub"}),
        "empty sub": issuer.sign({**good, "sub": ""}),
        "PS256 for an RS256 key": issuer.sign(good, alg="PS256"),
        "two parts": "abc.def",
        "not base64": "###.###.###",
    }


@pytest.mark.parametrize("name", list(bad(Issuer())))
def test_bad_tokens_raise_identity_error(issuer: Issuer, name: str) -> None:
    token = bad(issuer)[name]
    with pytest.raises(az.IdentityError) as error:
        cognito(issuer).verify(token)
    assert token not in str(error.value)
    assert "abc" not in str(error.value)  # no claim values in messages


def test_hmac_with_the_public_key_as_secret_is_refused(issuer: Issuer) -> None:
    import base64
    import hashlib
    import hmac

    def part(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    jwk = json.dumps(issuer.jwks["keys"][0]).encode()
    signing = f"{part({'alg': 'HS256', 'kid': 'k1'})}.{part(issuer.claims('id', 'abc'))}"
    mac = base64.urlsafe_b64encode(hmac.new(jwk, signing.encode(), hashlib.sha256).digest()).decode()
    with pytest.raises(az.IdentityError, match="algorithm"):
        cognito(issuer).verify(f"{signing}.{mac.rstrip('=')}")


def test_access_tokens_are_checked_against_client_id(issuer: Issuer) -> None:
    identity = cognito(issuer)
    token = issuer.access_token("abc", scope="a b")
    assert identity.verify(token, token_type="access").uid == U("App::User", f"{POOL_ID}|abc")
    with pytest.raises(az.IdentityError, match="token_use"):
        identity.verify(token)  # presented as an ID token
    other = issuer.sign({**issuer.claims("access", "abc"), "client_id": "other"})
    with pytest.raises(az.IdentityError, match="client_id"):
        identity.verify(other, token_type="access")


def test_leeway_and_clock(issuer: Issuer) -> None:
    now = time.time()
    token = issuer.sign({**issuer.claims("id", "abc"), "exp": int(now) + 30})
    assert cognito(issuer).verify(token)
    with pytest.raises(az.IdentityError, match="expired"):
        cognito(issuer, clock=lambda: now + 60).verify(token)
    assert cognito(issuer, clock=lambda: now + 60, leeway=120).verify(token)


def test_jwks_callable_is_asked_again_for_a_new_key(issuer: Issuer) -> None:
    calls: list[int] = []
    rotated = Issuer(kid="k2", key=rsa_key("rotated"))
    documents = [issuer.jwks, {"keys": issuer.jwks["keys"] + rotated.jwks["keys"]}]

    def fetch() -> dict[str, Any]:
        calls.append(1)
        return documents[min(len(calls), 2) - 1]

    identity = cognito(issuer, jwks=fetch)
    identity.verify(issuer.id_token())
    identity.verify(issuer.id_token())
    assert len(calls) == 1
    identity._keys_loaded = 0.0  # a minute later
    assert identity.verify(rotated.id_token("rot")).uid.id == f"{POOL_ID}|rot"
    assert len(calls) == 2
    with pytest.raises(az.IdentityError, match="signing key"):
        identity.verify(issuer.sign(issuer.claims(), headers={"kid": "k3"}))
    assert len(calls) == 2  # not asked again within the minute

    def failing() -> dict[str, Any]:
        raise OSError("network down")

    with pytest.raises(az.IdentityError, match="JWKS"):
        cognito(issuer, jwks=failing).verify(issuer.id_token())


def test_key_rules(issuer: Issuer) -> None:
    jwk = issuer.jwks["keys"][0]
    for keys in ([{**jwk, "use": "enc"}], [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1"}], [{"kid": "k1"}]):
        with pytest.raises(az.IdentityError, match="signing key"):
            cognito(issuer, jwks={"keys": keys}).verify(issuer.id_token())
    with pytest.raises(az.IdentityError, match="algorithm"):
        cognito(issuer, jwks={"keys": [{**jwk, "alg": "RS512"}]}).verify(issuer.id_token())
    without_kid = {k: v for k, v in jwk.items() if k != "kid"}
    import jwt

    token = jwt.encode(issuer.claims(), issuer.key, algorithm="RS256")  # no kid
    assert cognito(issuer, jwks={"keys": [without_kid]}).verify(token)
    with pytest.raises(az.IdentityError, match="keys"):
        cognito(issuer, jwks={"nokeys": []}).verify(issuer.id_token())


def test_elliptic_curve_keys(issuer: Issuer) -> None:
    signer = Issuer(key=ec_key(), kid="ec1")
    identity = cognito(issuer, jwks={"keys": [jwk_of(ec_key(), "ec1", "ES256")]})
    token = signer.sign(signer.claims("id", "ec-user"), alg="ES256")
    assert identity.verify(token).uid.id == f"{POOL_ID}|ec-user"


def test_configuration_errors(issuer: Issuer) -> None:
    with pytest.raises(az.ConfigurationError, match="client_ids"):
        cognito(issuer, client_ids=[])
    with pytest.raises(az.ConfigurationError, match="user pool id"):
        cognito(issuer, user_pool_id="nopool")
    with pytest.raises(az.ConfigurationError, match="asymmetric"):
        TokenIdentity(issuer=COGNITO_ISSUER, principal_entity_type="U", jwks={}, algorithms=["HS256"])
    with pytest.raises(az.ConfigurationError, match="not both"):
        TokenIdentity.oidc(issuer=OIDC_ISSUER, jwks={}, client_ids=["a"], audiences=["b"])
    with pytest.raises(az.ConfigurationError, match="go together"):
        TokenIdentity.oidc(issuer=OIDC_ISSUER, jwks={}, client_ids=["a"], group_claim="groups")
    with pytest.raises(az.ConfigurationError, match="jwks"):
        TokenIdentity(issuer=COGNITO_ISSUER, principal_entity_type="U", jwks="keys")  # type: ignore[arg-type]


def test_missing_pyjwt_names_the_extra(monkeypatch: pytest.MonkeyPatch, issuer: Issuer) -> None:
    real = importlib.import_module

    def without_jwt(name: str, *args: Any) -> Any:
        if name == "jwt" or name.startswith("jwt."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_jwt)
    with pytest.raises(ImportError, match=r'pip install "agentauthz\[jwt\]"'):
        cognito(issuer)


# -- OIDC --------------------------------------------------------------------------------------


def test_oidc_identity_tokens_with_a_chosen_claim_and_no_prefix() -> None:
    oidc = Issuer(issuer=OIDC_ISSUER, cognito=False)
    identity = TokenIdentity.oidc(issuer=OIDC_ISSUER, jwks=oidc.jwks, client_ids=[CLIENT_ID],
                                  principal_id_claim="email", group_claim="roles",
                                  group_entity_type="Role")
    token = oidc.sign(oidc.claims(sub="s1", email="e@x.test", roles="reader writer"))
    entity = identity.verify(token)
    assert entity.uid == U("User", "e@x.test")
    assert entity.parents == (U("Role", "reader"), U("Role", "writer"))
    with pytest.raises(az.IdentityError, match="does not accept access"):
        identity.verify(token, token_type="access")
    with pytest.raises(az.IdentityError, match="token_use"):
        identity.verify(oidc.sign(oidc.claims(email="e@x.test", token_use="access")))
    with pytest.raises(az.IdentityError, match="email"):
        identity.verify(oidc.sign(oidc.claims()))
    numeric = oidc.sign(oidc.claims(email=12345))
    assert identity.verify(numeric).uid == U("User", "12345")


def test_group_claim_formats() -> None:
    assert group_names(["a", "b"]) == ["a", "b"]
    assert group_names("solo") == ["solo"]
    assert group_names("a  b c") == ["a", "b", "c"]
    assert group_names(None) == []
    with pytest.raises(az.IdentityError):
        group_names([1, 2])
    with pytest.raises(az.IdentityError):
        group_names({"a": 1})


def test_identity_source_description_round_trips(issuer: Issuer) -> None:
    for identity in (cognito(issuer), TokenIdentity.oidc(
            issuer=OIDC_ISSUER, jwks=issuer.jwks, audiences=["api"], entity_id_prefix="corp",
            principal_id_claim="uid", group_claim="groups", group_entity_type="G")):
        again = TokenIdentity.from_identity_source(identity.identity_source(), jwks=issuer.jwks)
        for name in ("issuer", "principal_entity_type", "audiences", "token_types", "entity_id_prefix",
                     "principal_id_claim", "group_claim", "group_entity_type", "cognito_rules"):
            assert getattr(again, name) == getattr(identity, name), name
    with pytest.raises(az.ConfigurationError):
        TokenIdentity.from_identity_source({"principalEntityType": "U", "configuration": {}}, jwks={})


def test_unverified_principal_is_only_a_label(issuer: Issuer) -> None:
    identity = cognito(issuer)
    forged = issuer.sign(issuer.claims("id", "mallory"), key=rsa_key("attacker"))
    assert identity.unverified_principal(forged) == U("App::User", f"{POOL_ID}|mallory")
    with pytest.raises(az.IdentityError):
        identity.verify(forged)
    with pytest.raises(az.IdentityError):
        identity.unverified_principal("junk")


# -- mapping with a schema -------------------------------------------------------------------


def test_schema_keeps_declared_attributes_converted_to_their_types(issuer: Issuer) -> None:
    store = az.PolicyStore.from_text('permit (principal, action, resource);', schema=SCHEMA)
    identity = cognito(issuer, schema=store)
    token = issuer.id_token("abc", **{
        "cognito:username": "alice", "email": 7, "level": 3, "verified": True, "roles": "a b",
        "address": {"city": "Oslo", "street": "x"}, "team": "blue", "ip": "10.0.0.1", "extra": "dropped"})
    attrs = identity.verify(token).to_cedar()["attrs"]
    assert attrs == {"cognito:username": "alice", "level": 3, "verified": True, "roles": ["a", "b"],
                     "address": {"city": "Oslo"}, "team": {"__entity": {"type": "App::Team", "id": "blue"}},
                     "ip": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}}}
    # the entity conforms: the embedded engine accepts it
    entity = identity.verify(token)
    decision = az.LocalEngine(store).decide([az.Request(
        principal=entity.uid, action=U("App::Action", "ping"), resource=U("App::Doc", "d"))], [entity])[0]
    assert decision.allowed, decision.errors


def test_access_token_context_follows_the_action(issuer: Issuer) -> None:
    store = az.PolicyStore.from_text('permit (principal, action, resource);', schema=SCHEMA)
    identity = cognito(issuer, schema=store)
    verified = identity.verify_token(issuer.access_token("abc", scope="openid docs/read"),
                                     token_type="access")
    assert verified.entity.to_cedar()["attrs"] == {}
    read = verified.context(U("App::Action", "read"))
    assert read == {"token": {"scope": ["openid", "docs/read"], "client_id": CLIENT_ID}}
    assert verified.context(U("App::Action", "ping")) == {}  # no token in ping's context
    assert verified.token_context(U("App::Action", "read")) == read["token"]
    with pytest.raises(az.IdentityError, match="token"):
        verified.context(U("App::Action", "read"), {"token": "mine"})
    # without a schema every claim goes, scope split
    plain = cognito(issuer).verify_token(issuer.access_token("abc", scope="a b"), token_type="access")
    token = plain.context()["token"]
    assert sorted(token["scope"]) == ["a", "b"] and token["sub"] == "abc"
    # an ID token adds no context
    assert cognito(issuer).verify_token(issuer.id_token()).context(None, {"x": 1}) == {"x": 1}


def test_claim_mapper_details() -> None:
    document = {"": {"entityTypes": {"E": {}, "F": {"shape": {"type": "Rec"}}}, "actions": {},
                     "commonTypes": {"Rec": {"type": "Record", "attributes": {
                         "n": {"type": "Long"}, "s": {"type": "Set", "element": {"type": "Long"}},
                         "d": {"type": "Extension", "name": "decimal"}}}}}}
    mapper = ClaimMapper(document)
    assert mapper.attributes({"a": 1}, "E") == {}
    assert mapper.attributes({"n": 2**70, "s": [1, "x"], "d": "1.5"}, "F") == {
        "d": {"__extn": {"fn": "decimal", "arg": "1.5"}}}
    assert mapper.attributes({"n": True, "s": [1, 2]}, "F") == {"s": [1, 2]}
    assert mapper.attributes({"a": 1}, "Unknown") == {"a": 1}
    assert ClaimMapper(None).attributes({"big": 2**64, "nested": {"x": [1, {"y": 1.0}]}, "ok": [1]}, "E") == {
        "nested": {"x": [1, {}]}, "ok": [1]}
    assert ClaimMapper.from_schema(None).schema is None
    assert ClaimMapper.from_schema('entity E;').schema == {"": {"entityTypes": {"E": {}}, "actions": {}}}
