"""Identity sources and the ``*WithToken`` operations of the local Verified Permissions endpoint.

A mixin of the endpoint's backend (:mod:`agentauthz.avp._backend`): identity
sources are kept per policy store like AVP keeps them (``CreateIdentitySource``,
``GetIdentitySource``, ``ListIdentitySources``, ``UpdateIdentitySource``,
``DeleteIdentitySource``), and ``IsAuthorizedWithToken`` /
``BatchIsAuthorizedWithToken`` verify the token and map it with
:class:`~agentauthz.TokenIdentity` built from the identity source, so the
endpoint and the embedded emulation map a token with the same code.

The endpoint cannot fetch a provider's keys: the JWKS of each issuer is given
to :class:`~agentauthz.testing.LocalVerifiedPermissions` (``jwks=``, or
``add_identity_source``). A token whose issuer has no identity source, no
known keys, or that fails verification is refused with ``ValidationException``
(the message says why, never what the token holds).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentauthz._errors import AuthzError, IdentityError
from agentauthz.avp import _wire as shapes
from agentauthz.avp._service import (
    ServiceError,
    invalid,
    json_member,
    new_id,
    not_found,
    one_of,
    paginate,
    required_string,
    timestamp,
    with_next_token,
)
from agentauthz.policy._store import truncate

if TYPE_CHECKING:
    from agentauthz.avp._tokens import TokenIdentity, TokenType, VerifiedToken

__all__ = ["IdentitySourceOperations", "JwksRegistry"]

JwksRegistry = Mapping[str, Any] | Callable[[str], Any]
"""Issuer -> JWKS (a dict or a callable returning one), or a callable ``issuer -> JWKS``."""

IDENTITY_OPERATIONS = (
    "CreateIdentitySource", "GetIdentitySource", "ListIdentitySources", "UpdateIdentitySource",
    "DeleteIdentitySource", "IsAuthorizedWithToken", "BatchIsAuthorizedWithToken",
)
_USER_POOL_ARN = re.compile(
    r"arn:[a-zA-Z0-9-]+:cognito-idp:([a-zA-Z0-9-]+):(\d{12}):userpool/([\w-]+_[0-9a-zA-Z]+)")
_TYPE_NAME = re.compile(r"(?:[_a-zA-Z][_a-zA-Z0-9]*::)*[_a-zA-Z][_a-zA-Z0-9]*")
_DEFAULT_PRINCIPAL_TYPE = "AWS::Cognito"


@dataclass
class _IdentitySource:
    id: str
    store_id: str
    principal_entity_type: str
    configuration: dict[str, Any]
    created: str
    updated: str
    verifiers: dict[int, TokenIdentity] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        cognito = self.configuration.get("cognitoUserPoolConfiguration")
        if cognito is not None:
            return str(cognito["issuer"])
        return str(self.configuration["openIdConnectConfiguration"]["issuer"])

    def detail(self) -> dict[str, Any]:
        return {"principalEntityType": self.principal_entity_type,
                "configuration": json.loads(json.dumps(self.configuration))}




def _configuration(raw: Any, *, update: bool = False) -> dict[str, Any]:
    """Validate a Configuration (or UpdateConfiguration) union; returns the detail form AVP answers."""
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise invalid("configuration must set exactly one of cognitoUserPoolConfiguration, "
                       "openIdConnectConfiguration")
    ((member, body),) = raw.items()
    if not isinstance(body, Mapping):
        raise invalid(f"{member} must be a structure")
    if member == "cognitoUserPoolConfiguration":
        arn = body.get("userPoolArn")
        match = _USER_POOL_ARN.fullmatch(arn) if isinstance(arn, str) else None
        if match is None:
            raise invalid("userPoolArn must be a Cognito user pool ARN")
        region, pool = match.group(1), match.group(3)
        detail: dict[str, Any] = {
            "userPoolArn": arn, "clientIds": _strings(body.get("clientIds"), "clientIds"),
            "issuer": f"https://cognito-idp.{region}.amazonaws.com/{pool}"}
        group = body.get("groupConfiguration")
        if group is not None:
            detail["groupConfiguration"] = {"groupEntityType": _type_name(group, "groupEntityType")}
        return {member: detail}
    if member == "openIdConnectConfiguration":
        issuer = body.get("issuer")
        if not isinstance(issuer, str) or not issuer.startswith("https://") or len(issuer) > 2048:
            raise invalid("issuer must be an https:// URL of at most 2048 characters")
        oidc: dict[str, Any] = {"issuer": issuer}
        prefix = body.get("entityIdPrefix")
        if prefix is not None:
            if not isinstance(prefix, str) or not 1 <= len(prefix) <= 100:
                raise invalid("entityIdPrefix must be 1 to 100 characters")
            oidc["entityIdPrefix"] = prefix
        group = body.get("groupConfiguration")
        if group is not None:
            claim = group.get("groupClaim") if isinstance(group, Mapping) else None
            if not isinstance(claim, str) or not claim:
                raise invalid("groupConfiguration.groupClaim is required")
            oidc["groupConfiguration"] = {"groupClaim": claim,
                                          "groupEntityType": _type_name(group, "groupEntityType")}
        selection = body.get("tokenSelection")
        if not isinstance(selection, Mapping) or len(selection) != 1 or next(iter(selection)) not in (
                "accessTokenOnly", "identityTokenOnly"):
            raise invalid("tokenSelection must set exactly one of accessTokenOnly, identityTokenOnly")
        ((kind, chosen),) = selection.items()
        chosen = chosen if isinstance(chosen, Mapping) else {}
        key = "clientIds" if kind == "identityTokenOnly" else "audiences"
        claim = chosen.get("principalIdClaim", "sub")
        if not isinstance(claim, str) or not claim:
            raise invalid("principalIdClaim must be a claim name")
        oidc["tokenSelection"] = {kind: {key: _strings(chosen.get(key), key), "principalIdClaim": claim}}
        return {member: oidc}
    raise invalid(f"unknown configuration member {member!r}")


def _strings(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise invalid(f"{name} must be a list of strings")
    return list(value)


def _type_name(group: Any, key: str) -> str:
    value = group.get(key) if isinstance(group, Mapping) else None
    if not isinstance(value, str) or not _TYPE_NAME.fullmatch(value) or len(value) > 200:
        raise invalid(f"{key} must be an entity type name")
    return value


class IdentitySourceOperations:
    """The identity-source and ``*WithToken`` operations of the local endpoint's backend."""

    lock: threading.RLock
    stores: dict[str, Any]

    # -- state -------------------------------------------------------------------------

    def _sources(self, store_id: str) -> dict[str, _IdentitySource]:
        state: dict[str, dict[str, _IdentitySource]] = self.__dict__.setdefault("identity_sources", {})
        return state.setdefault(store_id, {})

    def set_jwks(self, jwks: JwksRegistry | None) -> None:
        """Signing keys by issuer (a mapping), or a callable ``issuer -> JWKS`` for any issuer."""
        if jwks is None or callable(jwks):
            self.__dict__["_jwks_fallback"] = jwks
        elif isinstance(jwks, Mapping):
            self.__dict__.setdefault("_jwks_by_issuer", {}).update(jwks)
        else:
            raise TypeError("jwks must map issuers to JWKS, or be a callable issuer -> JWKS")

    def register_jwks(self, issuer: str, jwks: Any) -> None:
        """Add (or replace) the JWKS (a dict or a callable returning one) of one issuer."""
        self.__dict__.setdefault("_jwks_by_issuer", {})[issuer] = jwks

    def _jwks_for(self, issuer: str) -> Any:
        known = self.__dict__.get("_jwks_by_issuer", {}).get(issuer)
        if known is not None:
            return known
        fallback = self.__dict__.get("_jwks_fallback")
        if fallback is None:
            return None
        return lambda: fallback(issuer)

    # -- operations ----------------------------------------------------------------------

    def add_identity_source(self, store: Any, configuration: Any,
                            principal_entity_type: Any) -> _IdentitySource:
        """Create an identity source in a store (validated like CreateIdentitySource)."""
        detail = _configuration(configuration)
        principal_type = principal_entity_type if principal_entity_type is not None else (
            _DEFAULT_PRINCIPAL_TYPE)
        if not isinstance(principal_type, str) or not 1 <= len(principal_type) <= 200:
            raise invalid("principalEntityType must be 1 to 200 characters")
        now = timestamp()
        source = _IdentitySource(id=new_id("IS"), store_id=store.id,
                                 principal_entity_type=principal_type, configuration=detail,
                                 created=now, updated=now)
        with self.lock:
            sources = self._sources(store.id)
            if any(other.issuer == source.issuer for other in sources.values()):
                raise ServiceError(
                    "ConflictException", "an identity source for this issuer exists",
                    resources=[{"resourceId": store.id, "resourceType": "IDENTITY_SOURCE"}])
            sources[source.id] = source
        return source

    def CreateIdentitySource(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store: Any = self.store(body)  # type: ignore[attr-defined]
        source = self.add_identity_source(store, body.get("configuration"), body.get("principalEntityType"))
        return {"policyStoreId": store.id, "identitySourceId": source.id, "createdDate": source.created,
                "lastUpdatedDate": source.updated}

    def _source(self, body: Mapping[str, Any]) -> tuple[Any, _IdentitySource]:
        store: Any = self.store(body)  # type: ignore[attr-defined]
        source_id = required_string(body, "identitySourceId")
        source = self._sources(store.id).get(source_id)
        if source is None:
            raise not_found("IDENTITY_SOURCE", source_id)
        return store, source

    def _source_out(self, source: _IdentitySource) -> dict[str, Any]:
        out: dict[str, Any] = {"policyStoreId": source.store_id, "identitySourceId": source.id,
                               "principalEntityType": source.principal_entity_type,
                               "createdDate": source.created, "lastUpdatedDate": source.updated,
                               "configuration": json.loads(json.dumps(source.configuration))}
        cognito = source.configuration.get("cognitoUserPoolConfiguration")
        if cognito is not None:  # the deprecated details member, as AVP still answers it
            out["details"] = {"clientIds": list(cognito["clientIds"]), "userPoolArn": cognito["userPoolArn"],
                              "discoveryUrl": cognito["issuer"], "openIdIssuer": "COGNITO"}
        return out

    def GetIdentitySource(self, body: Mapping[str, Any]) -> dict[str, Any]:
        _, source = self._source(body)
        return self._source_out(source)

    def UpdateIdentitySource(self, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            _, source = self._source(body)
            update = body.get("updateConfiguration")
            if update is not None:
                source.configuration = _configuration(update, update=True)
            if body.get("principalEntityType") is not None:
                principal_type = body["principalEntityType"]
                if not isinstance(principal_type, str) or not 1 <= len(principal_type) <= 200:
                    raise invalid("principalEntityType must be 1 to 200 characters")
                source.principal_entity_type = principal_type
            source.updated = timestamp()
            source.verifiers.clear()
        return {"policyStoreId": source.store_id, "identitySourceId": source.id,
                "createdDate": source.created, "lastUpdatedDate": source.updated}

    def DeleteIdentitySource(self, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            store, source = self._source(body)
            del self._sources(store.id)[source.id]
        return {}

    def ListIdentitySources(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store: Any = self.store(body)  # type: ignore[attr-defined]
        with self.lock:
            sources = list(self._sources(store.id).values())
        filters = body.get("filters") or []
        wanted = {f.get("principalEntityType") for f in filters if isinstance(f, Mapping)} - {None}
        if wanted:
            sources = [s for s in sources if s.principal_entity_type in wanted]
        page, token = paginate(sources, body)
        answer: dict[str, Any] = with_next_token(
            {"identitySources": [self._source_out(s) for s in page]}, token)
        return answer

    # -- authorization with a token ------------------------------------------------------

    def _verified(self, store: Any, body: Mapping[str, Any]) -> VerifiedToken:
        from agentauthz.avp._tokens import TokenIdentity

        given = [(kind, body.get(key)) for kind, key in (("identity", "identityToken"),
                                                         ("access", "accessToken")) if body.get(key)]
        if len(given) != 1:
            raise invalid("give exactly one of identityToken, accessToken")
        kind_name, token = given[0]
        kind: TokenType = "identity" if kind_name == "identity" else "access"
        if not isinstance(token, str):
            raise invalid("the token must be a string")
        issuer = _unverified_issuer(token)
        with self.lock:
            source = next((s for s in self._sources(store.id).values() if s.issuer == issuer), None)
        if source is None:
            raise invalid("the token's issuer is not an identity source of this policy store")
        verifier = source.verifiers.get(store.version)
        if verifier is None:
            jwks = self._jwks_for(issuer)
            if jwks is None:
                raise invalid("no signing keys are known for this identity source's issuer "
                               "(give LocalVerifiedPermissions its JWKS)")
            schema = json.loads(store.schema_json) if store.schema_json else None
            try:
                verifier = TokenIdentity.from_identity_source(source.detail(), jwks=jwks, schema=schema)
            except AuthzError as exc:
                raise invalid(f"identity source unusable: {exc}") from exc
            source.verifiers.clear()
            source.verifiers[store.version] = verifier
        try:
            return verifier.verify_token(token, token_type=kind)
        except IdentityError as exc:
            raise invalid(f"the {kind} token is invalid: {exc}") from None

    def _token_entities(self, store: Any, body: Mapping[str, Any], verified: VerifiedToken) -> Any:
        import cedarpy
        entities: list[Any] = []
        if body.get("entities") is not None:
            definition = one_of(body, "entities", ("entityList", "cedarJson"))
            if "entityList" in definition:
                if not isinstance(definition["entityList"], list):
                    raise invalid("entityList must be a list")
                entities = [shapes.cedar_entity(item) for item in definition["entityList"]]
            else:
                entities = json_member(definition["cedarJson"], list, "entities cedarJson")
        principal = verified.principal.to_cedar()
        token_entity = verified.entity.to_cedar()
        merged: list[Any] = []
        found = False
        for entity in entities:
            uid = entity.get("uid") if isinstance(entity, dict) else None
            if isinstance(uid, dict) and shapes.is_action_type(str(uid.get("type", ""))):
                raise invalid("entities may hold only principals and resources, not actions "
                               "(actions come from the schema)")
            if uid == principal:
                if verified.token_type == "identity":
                    raise invalid("the principal comes from the identity token: do not also "
                                   "send it in entities")
                found = True
                parents = list(entity.get("parents") or [])
                parents += [p for p in token_entity["parents"] if p not in parents]
                entity = {**entity, "parents": parents}
            merged.append(entity)
        if not found:
            merged.append(token_entity)
        try:
            return cedarpy.Entities.from_json_str(json.dumps(merged), store.schema)
        except ValueError as exc:
            raise invalid(f"entities rejected: {truncate(str(exc))}") from exc

    def _token_request(self, item: Mapping[str, Any], verified: VerifiedToken) -> dict[str, Any]:
        for key in ("action", "resource"):
            if not isinstance(item.get(key), Mapping):
                raise invalid(f"this endpoint needs an {key} in every request")
        request: dict[str, Any] = self._request(  # type: ignore[attr-defined]
            {**item, "principal": {"entityType": verified.principal.type,
                                   "entityId": verified.principal.id}})
        if verified.token_type == "access":
            from agentauthz._model import EntityUID

            action = EntityUID(request["action"]["type"], request["action"]["id"])
            token = verified.token_context(action)
            if token is not None:
                context = dict(request.get("context") or {})
                if "token" in context:
                    raise invalid("the context already has a 'token' attribute: the access token's "
                                   "claims go there")
                context["token"] = token
                request["context"] = context
        return request

    def IsAuthorizedWithToken(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store: Any = self.store(body)  # type: ignore[attr-defined]
        verified = self._verified(store, body)
        request = self._token_request(body, verified)
        entities = self._token_entities(store, body, verified)
        answer: dict[str, Any] = self._evaluate(store, [request], entities)[0]  # type: ignore[attr-defined]
        answer["principal"] = {"entityType": verified.principal.type, "entityId": verified.principal.id}
        return answer

    def BatchIsAuthorizedWithToken(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store: Any = self.store(body)  # type: ignore[attr-defined]
        items = body.get("requests")
        limit = shapes.BATCH_LIMIT
        if not isinstance(items, list) or not 1 <= len(items) <= limit:
            raise invalid(f"requests must hold 1 to {limit} requests")
        if not all(isinstance(item, Mapping) for item in items):
            raise invalid("every request must be a structure")
        verified = self._verified(store, body)
        requests = [self._token_request(item, verified) for item in items]
        entities = self._token_entities(store, body, verified)
        answers = self._evaluate(store, requests, entities)  # type: ignore[attr-defined]
        return {"principal": {"entityType": verified.principal.type, "entityId": verified.principal.id},
                "results": [{"request": dict(item), **answer}
                            for item, answer in zip(items, answers, strict=True)]}


def _unverified_issuer(token: str) -> str:
    """The ``iss`` a token claims (to pick its identity source; verification follows)."""
    import base64

    parts = token.split(".")
    if len(parts) != 3:
        raise invalid("the token is not a JWT")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):
        raise invalid("the token's payload does not parse") from None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    if not isinstance(issuer, str):
        raise invalid("the token has no issuer")
    return issuer
