"""Binding the end user: ``acting_as`` with a principal, a token or verified claims; one error when none is.

* ``authz.acting_as(token=..., identity=...)`` replaces ``acting_with_token(authz, ...)``
  (kept for one release as a deprecated alias that warns and still works);
* ``authz.acting_as(claims=..., identity=...)`` binds the user of a token the
  runtime already verified, mapped exactly as the token would be, without a
  second verification;
* every path that needs an end user and has none raises IdentityError with
  the same message (:data:`agentauthz._identity.NO_END_USER`), naming both
  ways to bind one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest

import agentauthz as az
from agentauthz._identity import NO_END_USER
from agentauthz.avp._tokens import TokenIdentity
from agentauthz.session import Session
from tests.tokens import CLIENT_ID, POOL_ID, Issuer, tampered

U = az.EntityUID
SCHEMA = """
namespace App {
  entity Group;
  entity User in [Group] = { department?: String };
  entity Doc = { department: String };
  action read appliesTo { principal: User, resource: Doc };
}
"""
POLICIES = f"""
@id("admins") permit (principal in App::Group::"{POOL_ID}|admins", action, resource);
@id("department") permit (principal, action, resource)
when {{ principal has department && principal.department == resource.department }};
"""
DOC = az.Entity(uid=U("App::Doc", "roadmap"), attrs={"department": "eng"})


@pytest.fixture(scope="module")
def store() -> az.PolicyStore:
    return az.PolicyStore.from_text(POLICIES, schema=SCHEMA, entities=[DOC])


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture(scope="module")
def identity(issuer: Issuer, store: az.PolicyStore) -> TokenIdentity:
    return TokenIdentity.cognito(user_pool_id=POOL_ID, client_ids=[CLIENT_ID], jwks=issuer.jwks,
                                 principal_entity_type="App::User", group_entity_type="App::Group",
                                 schema=store)


@pytest.fixture
def authz(store: az.PolicyStore) -> az.Authorizer:
    return az.Authorizer(az.LocalEngine(store), audit=[])


def read(authz: az.Authorizer) -> az.Decision:
    return authz.authorize(action="read", resource=DOC.uid)


# -- a token ---------------------------------------------------------------------------------


def test_acting_as_a_token_binds_its_verified_user(authz: az.Authorizer, issuer: Issuer,
                                                   identity: TokenIdentity) -> None:
    token = issuer.id_token("u-ann", department="eng")
    with authz.acting_as(token=token, identity=identity) as bound:
        assert bound.entity == identity.verify(token)
        assert read(authz).reasons == ("department",)
    assert authz.identity is None


def test_acting_as_a_token_that_does_not_verify_binds_nobody(authz: az.Authorizer, issuer: Issuer,
                                                             identity: TokenIdentity) -> None:
    for token in (tampered(issuer.id_token("u-ann", department="eng")), issuer.id_token(exp=1)):
        with pytest.raises(az.IdentityError), authz.acting_as(token=token, identity=identity):
            pytest.fail("a token that does not verify was bound")
    assert authz.identity is None


def test_acting_as_a_token_needs_an_identity_on_an_engine_without_tokens(
    authz: az.Authorizer, issuer: Issuer
) -> None:
    with pytest.raises(az.ConfigurationError, match="cannot decide with tokens"), \
            authz.acting_as(token=issuer.id_token()):
        pytest.fail("an unverified token was bound")


def test_acting_with_token_is_a_deprecated_alias_that_still_binds(authz: az.Authorizer, issuer: Issuer,
                                                                   identity: TokenIdentity) -> None:
    token = issuer.id_token("u-root", **{"cognito:groups": ["admins"]})
    with pytest.warns(DeprecationWarning, match=r"authz\.acting_as\(token=token\)"):
        bound_block = az.acting_with_token(authz, token, identity=identity)
    with bound_block as bound:
        assert bound.uid == U("App::User", f"{POOL_ID}|u-root")
        assert read(authz).reasons == ("admins",)
    with pytest.warns(DeprecationWarning, match="acting_with_token"), pytest.raises(az.IdentityError), \
            az.acting_with_token(authz, tampered(token), identity=identity):
        pytest.fail("a tampered token was bound")


# -- claims a runtime verified ----------------------------------------------------------------


def test_acting_as_verified_claims_binds_what_the_token_would(authz: az.Authorizer, issuer: Issuer,
                                                               identity: TokenIdentity) -> None:
    claims = issuer.claims("id", "u-ann", department="eng", **{"cognito:groups": ["admins"]})
    with authz.acting_as(claims=claims, identity=identity) as from_claims:
        decision = read(authz)
    with authz.acting_as(token=issuer.sign(claims), identity=identity) as from_token:
        assert read(authz).reasons == decision.reasons == ("admins", "department")
    assert from_claims.entity == from_token.entity
    assert from_claims.uid == U("App::User", f"{POOL_ID}|u-ann")


def test_claims_are_mapped_without_a_second_verification(authz: az.Authorizer, issuer: Issuer,
                                                          identity: TokenIdentity) -> None:
    # The runtime verified the token (signature, expiry): the mapping does not check them again.
    claims = issuer.claims("id", "u-ann", department="eng")
    claims["exp"] = 1
    with authz.acting_as(claims=claims, identity=identity):
        assert read(authz).allowed


@pytest.mark.parametrize(("options", "mapped", "error"), [
    ({"claims": {"sub": "u"}}, False, az.ConfigurationError),  # nothing to map them with
    ({"claims": {"sub": "u"}, "principal": U("App::User", "x")}, True, az.ConfigurationError),
    ({"claims": {"sub": "u"}, "token": "a.b.c"}, True, az.ConfigurationError),
    ({"claims": "sub=u"}, True, az.IdentityError),  # not a mapping
    ({"claims": {"email": "x@y.example"}}, True, az.IdentityError),  # names no principal
    ({"claims": {"sub": ["u"]}}, True, az.IdentityError),
    ({"claims": {"sub": "u", "cognito:groups": 7}}, True, az.IdentityError),  # malformed groups
])
def test_claims_that_cannot_bind_a_user_bind_nobody(authz: az.Authorizer, identity: TokenIdentity,
                                                     options: dict[str, Any], mapped: bool,
                                                     error: type[Exception]) -> None:
    with pytest.raises(error), authz.acting_as(**options, identity=identity if mapped else None):
        pytest.fail("claims that cannot bind a user were bound")
    assert authz.identity is None


def test_claims_of_a_token_type_the_identity_refuses_bind_nobody(authz: az.Authorizer, issuer: Issuer,
                                                                 store: az.PolicyStore) -> None:
    ids_only = TokenIdentity.oidc(issuer="https://idp.example.com", client_ids=[CLIENT_ID], jwks=issuer.jwks,
                                  principal_entity_type="App::User", schema=store)  # ID tokens only
    with pytest.raises(az.IdentityError, match="does not accept access tokens"), \
            authz.acting_as(claims={"sub": "u"}, identity=ids_only, token_type="access"):
        pytest.fail("claims of a refused token type were bound")


def test_claims_on_verified_permissions_decide_with_the_mapped_entity(
    issuer: Issuer, identity: TokenIdentity, store: az.PolicyStore
) -> None:
    pytest.importorskip("boto3")
    from agentauthz.testing import LocalVerifiedPermissions

    with LocalVerifiedPermissions(store) as server:
        with az.VerifiedPermissionsEngine(server.policy_store_id, client=server.client()) as engine:
            remote = az.Authorizer(engine, entities=store.entities, audit=[])
            claims = issuer.claims("id", "u-ann", department="eng")
            with remote.acting_as(claims=claims, identity=identity):
                assert read(remote).reasons == ("department",)
        assert server.call_count("IsAuthorized") == 1
        assert server.call_count("IsAuthorizedWithToken") == 0


# -- one message when no end user is bound -------------------------------------------------------


def no_user_paths(authz: az.Authorizer) -> dict[str, Callable[[], Any]]:
    @authz.guard(action="read", resource=lambda args: U("App::Doc", args["doc"]))
    def read_doc(doc: str) -> str:
        return doc

    from agentauthz.retrieval._prefilter import compile_prefilter

    return {
        "authorize": lambda: read(authz),
        "aauthorize": lambda: asyncio.run(authz.aauthorize(action="read", resource=DOC.uid)),
        "filter": lambda: authz.filter([DOC], action="read", resource=lambda doc: doc),
        "afilter": lambda: asyncio.run(authz.afilter([DOC], action="read", resource=lambda doc: doc)),
        "guarded tool": lambda: read_doc("roadmap"),
        "begin_tool_call": lambda: authz.begin_tool_call(read_doc, {"doc": "roadmap"}),
        "authorize_tool_call": lambda: authz.authorize_tool_call(read_doc, {"doc": "roadmap"}),
        "begin_call": lambda: authz.begin_call(action="read", resource=DOC.uid),
        "permitted_tools": lambda: authz.permitted_tools([read_doc]),
        "current_principal": authz.current_principal,
        "compile_prefilter": lambda: compile_prefilter(authz, action="read", resource_type="App::Doc"),
        "session without owner": lambda: Session("c", authz.session_store).state(),
    }


PATHS = ("authorize", "aauthorize", "filter", "afilter", "guarded tool", "begin_tool_call",
         "authorize_tool_call", "begin_call", "permitted_tools", "current_principal", "compile_prefilter",
         "session without owner")


@pytest.mark.parametrize("path", PATHS)
def test_every_path_without_an_end_user_raises_the_same_message(authz: az.Authorizer, path: str) -> None:
    paths = no_user_paths(authz)
    assert set(paths) == set(PATHS)
    with pytest.raises(az.IdentityError) as raised:
        paths[path]()
    assert str(raised.value).startswith(NO_END_USER)


def test_the_message_names_both_ways_to_bind_a_user() -> None:
    assert "authz.acting_as(user)" in NO_END_USER
    assert "RunnableConfig['configurable']['agentauthz_principal']" in NO_END_USER
    assert "principal=" in NO_END_USER


def test_the_langchain_paths_raise_the_same_message_with_their_key(authz: az.Authorizer) -> None:
    pytest.importorskip("langchain")
    from langchain.agents import create_agent
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool

    from agentauthz.integrations.langchain import AuthorizedTool, AuthzMiddleware

    class Model(GenericFakeChatModel):
        def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Model:  # type: ignore[override]
            return self

    @tool
    def read_doc(doc: str) -> str:
        """Read a document."""
        return doc

    wrapped = AuthorizedTool(tool=read_doc, authz=authz, settings=az.ToolSettings(
        action="read", resource=lambda args: U("App::Doc", args["doc"])))
    with pytest.raises(az.IdentityError) as raised:
        wrapped.invoke({"doc": "roadmap"})
    assert str(raised.value).startswith(NO_END_USER)

    agent = create_agent(Model(messages=iter([AIMessage("done")])), tools=[read_doc],
                         middleware=[AuthzMiddleware(authz, principal_key="end_user")])
    with pytest.raises(az.IdentityError) as raised:
        agent.invoke({"messages": [("user", "read the roadmap")]})
    assert str(raised.value).startswith(NO_END_USER)
    assert str(raised.value).endswith("reads RunnableConfig['configurable']['end_user']")
