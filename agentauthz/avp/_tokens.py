"""End users identified by verified JWTs, mapped to Cedar the way Verified Permissions maps them.

An application whose users sign in with Amazon Cognito or another OpenID
Connect (OIDC) provider holds ID or access tokens. Amazon Verified Permissions
(AVP) decides such requests itself (``IsAuthorizedWithToken``) through an
*identity source*; :class:`TokenIdentity` does the same locally, for the
embedded engine, the Bedrock Agents handler's ``verify_token`` hook, and the
local AVP endpoint (which uses this very code, so both paths map a token alike).

Verification: the signature against the app-supplied JWKS (a dict or a
callable returning one; no network here), an asymmetric algorithm only
(``none`` and HMAC are refused), issuer, audience (``aud`` of an ID token,
``client_id`` of a Cognito access token, ``aud`` of an OIDC access token),
expiry (and ``nbf``), and ``token_use`` (Cognito: ``id`` or ``access``, as the
token is presented; OIDC: checked when the claim is there). Any failure raises
:class:`~agentauthz.IdentityError`; nothing here ever yields an identity for a
token that did not verify.

Mapping (the AVP user guide's "Mapping Amazon Cognito tokens to schema" and
"Mapping OIDC tokens to schema"):

* principal ``<principal type>::"<prefix>|<claim>"``: the prefix is the user
  pool id for Cognito (claim ``sub``), the identity source's ``entityIdPrefix``
  for OIDC (claim ``principalIdClaim``, default ``sub``; no prefix, no ``|``);
* the group claim (``cognito:groups``, or the OIDC ``groupClaim``: a JSON list,
  one name, or space-separated names) -> parents ``<group type>::"<prefix>|<group>"``;
* ID token: the other claims -> attributes of the principal, names as they are
  (``principal["cognito:username"]``);
* access token: the other claims -> ``context.token`` (``context.token.scope``
  is a set: the space-separated ``scope`` claim is split).

With a schema, only the attributes it declares are kept and each is converted
to its declared type (a space-separated string to ``Set<String>``, a string to
an entity reference or extension value); without one, JSON values map to the
Cedar value of the same shape and claims with none (floats, nulls) are left out.

PyJWT is imported on first use; without it the constructor raises ImportError
naming ``pip install "agentauthz[jwt]"``.

Example:
    >>> identity = TokenIdentity.cognito(user_pool_id="us-east-1_Example", client_ids=["app"],
    ...                                  jwks={"keys": []}, principal_entity_type="App::User")
    >>> identity.issuer
    'https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example'
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from agentauthz._errors import ConfigurationError, IdentityError
from agentauthz._extras import install_hint, optional_import
from agentauthz._identity import Agent
from agentauthz._model import Entity, EntityUID
from agentauthz.policy._schema_types import EXTENSION_CONSTRUCTORS, SchemaTypes

if TYPE_CHECKING:
    from agentauthz._authorizer import Authorizer
    from agentauthz._identity import Identity

__all__ = ["ClaimMapper", "TokenIdentity", "TokenType", "VerifiedToken", "acting_with_token", "bound_token"]

TokenType = Literal["identity", "access"]
Jwks = Mapping[str, Any]
JwksSource = Jwks | Callable[[], Jwks]

COGNITO_GROUPS = "cognito:groups"
DEFAULT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
_REFUSED_ALGORITHMS = frozenset({"none", "HS256", "HS384", "HS512"})
_TOKEN_USE = {"identity": "id", "access": "access"}
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
#: What :func:`claim_value` returns for a claim without a safe Cedar form.
DROP: Any = object()
# Ask the JWKS source again for an unknown key id at most this often.
_JWKS_REFRESH_SECONDS = 60.0


def _jwt() -> Any:
    jwt = optional_import("jwt", extra="jwt", needed_by="token verification")
    algorithms = optional_import("jwt.algorithms", extra="jwt", needed_by="token verification")
    if not getattr(algorithms, "has_crypto", False):
        raise ImportError(f"token verification needs PyJWT with cryptography: {install_hint('jwt')}")
    return jwt


def cognito_issuer(user_pool_id: str) -> str:
    """``https://cognito-idp.<region>.amazonaws.com/<user pool id>`` (the region prefixes the pool id)."""
    region, sep, rest = user_pool_id.partition("_")
    if not sep or not region or not rest:
        raise ConfigurationError(f"{user_pool_id!r} is not a user pool id like us-east-1_AbCdEf123")
    return f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"


def user_pool_id_from_arn(arn: str) -> str:
    """The user pool id at the end of a user pool ARN."""
    prefix, _, pool = arn.rpartition("userpool/")
    if not prefix or not pool:
        raise ConfigurationError(f"{arn!r} is not a Cognito user pool ARN")
    return pool


# -- claims -> Cedar ------------------------------------------------------------------------

# Keys of a JSON object that Cedar reads as something other than a record, where a schema
# declares an entity or extension type: a record holding all of one of these sets (extra keys
# are ignored) or any key starting "__" (__entity, __extn, __expr, and any escape to come).
_IMPLICIT_KEYS = (frozenset({"type", "id"}), frozenset({"fn", "arg"}), frozenset({"fn", "args"}))
_MAX_CLAIM_DEPTH = 32


def claim_value(value: Any, declared: Mapping[str, Any] | None = None, *,
                types: SchemaTypes | None = None, namespace: str = "", depth: int = 0) -> Any:
    """A verified claim as Cedar JSON *data*, or ``DROP`` when it has no safe Cedar form.

    The one conversion of claims to Cedar, for principal attributes and
    ``context.token`` alike. Claims are data: the value is never an entity
    reference or an extension value, except where ``declared`` (a schema
    type) asks for one and the claim is a string, which becomes exactly that.

    Without a declared type, JSON maps to the Cedar value of the same shape;
    floats, nulls and integers past 64 bits are left out, and so is every key
    starting ``__`` (Cedar JSON's escapes ``__entity``, ``__extn``, ``__expr``
    and any to come), at any depth. A record that a schema would read as an
    implicit entity reference or extension call (holding ``type`` and ``id``,
    ``fn`` and ``arg``, or ``fn`` and ``args``) is left out whole. A list with
    an item left out is left out whole. With a declared type, the claim is
    kept only if it has that type (a space-separated string counts as a set
    of strings); a record keeps only the attributes declared.

    Args:
        value: the claim, as decoded from the token's JSON.
        declared: its schema type (resolved or not), or None.
        types: the schema, to resolve ``declared``.
        namespace: the namespace ``declared`` is written in.
        depth: nesting so far; past 32 levels a value is left out.

    Example:
        >>> claim_value({"role": {"__entity": {"type": "Role", "id": "admin"}}, "n": 1.5})
        {'role': {}}
        >>> claim_value({"role": {"type": "Role", "id": "admin"}, "n": 1})
        {'n': 1}
        >>> claim_value("read write", {"type": "Set", "element": {"type": "String"}})
        ['read', 'write']
    """
    if depth > _MAX_CLAIM_DEPTH:
        return DROP
    if declared is None:
        return _shaped_value(value, depth)
    resolved = (types or SchemaTypes(None)).resolve(declared, namespace)
    kind = resolved.get("type") if resolved is not None else None
    if kind == "String":
        return value if isinstance(value, str) else DROP
    if kind == "Long":
        return value if _is_long(value) else DROP
    if kind == "Boolean":
        return value if isinstance(value, bool) else DROP
    if kind == "Set":
        items = value.split() if isinstance(value, str) else value
        if not isinstance(items, list):
            return DROP
        element = resolved.get("element") if resolved is not None else None
        converted = [claim_value(item, element if isinstance(element, Mapping) else {},
                                 types=types, namespace=namespace, depth=depth + 1) for item in items]
        return DROP if any(item is DROP for item in converted) else converted
    if kind == "Record" and isinstance(value, Mapping) and resolved is not None:
        return _declared_record(value, resolved, types, namespace, depth)
    if kind == "Entity" and isinstance(value, str) and value and resolved is not None:
        return {"__entity": {"type": str(resolved.get("name")), "id": value}}
    function = EXTENSION_CONSTRUCTORS.get(str(resolved.get("name"))) if kind == "Extension" and (
        resolved is not None) else None
    if function is not None and isinstance(value, str):
        return {"__extn": {"fn": function, "arg": value}}
    return DROP


def _shaped_value(value: Any, depth: int) -> Any:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if _is_long(value) else DROP
    if depth > _MAX_CLAIM_DEPTH:
        return DROP
    if isinstance(value, list):
        items = [_shaped_value(item, depth + 1) for item in value]
        return DROP if any(item is DROP for item in items) else items
    if isinstance(value, Mapping):
        record = shaped_record(value, depth)
        return DROP if any(shape <= record.keys() for shape in _IMPLICIT_KEYS) else record
    return DROP  # floats, nulls


def shaped_record(claims: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
    """Claims as the attributes of a record, each by its shape (see :func:`claim_value`).

    Keys starting ``__`` are left out. The record itself may hold ``type`` and
    ``id``: as an entity's attributes it is never read as a value.
    """
    record: dict[str, Any] = {}
    for key, item in claims.items():
        name = str(key)
        if name.startswith("__"):
            continue
        converted = _shaped_value(item, depth + 1)
        if converted is not DROP:
            record[name] = converted
    return record


def _declared_record(value: Mapping[str, Any], record: Mapping[str, Any], types: SchemaTypes | None,
                     namespace: str, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, declared in (record.get("attributes") or {}).items():
        # A schema may quote any attribute name; one starting "__" cannot travel in Cedar JSON.
        if name in value and not name.startswith("__") and isinstance(declared, Mapping):
            converted = claim_value(value[name], declared, types=types, namespace=namespace, depth=depth + 1)
            if converted is not DROP:
                out[name] = converted
    return out


def _is_long(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and _LONG_MIN <= value <= _LONG_MAX


class ClaimMapper:
    """Converts claims to Cedar JSON following a Cedar JSON schema, or by shape without one.

    Every conversion goes through :func:`claim_value`: claims never become
    entity references or extension values unless the schema declares one
    (see there).

    Args:
        schema: the policy store schema as a Cedar JSON document (namespace ->
            declarations), or None.
    """

    def __init__(self, schema: Mapping[str, Any] | None = None) -> None:
        self.schema: Mapping[str, Any] | None = schema if schema else None
        self._types = SchemaTypes(self.schema)

    @classmethod
    def from_schema(cls, schema: Any) -> ClaimMapper:
        """From a PolicyStore (its schema), schema text in either format, a JSON document, or None.

        Raises:
            PolicyError: the schema does not parse or convert.
        """
        return cls(SchemaTypes.from_schema(schema).document)

    # -- public ------------------------------------------------------------------------

    def attributes(self, claims: Mapping[str, Any], entity_type: str) -> dict[str, Any]:
        """Principal attributes (Cedar JSON) from ID-token claims."""
        declared = self._types.entity_shape(entity_type)
        if declared is None:
            return shaped_record(claims)
        value = claim_value(dict(claims), declared, types=self._types,
                            namespace=entity_type.rpartition("::")[0])
        return value if isinstance(value, dict) else {}

    def token_context(self, claims: Mapping[str, Any], action: EntityUID | None) -> dict[str, Any] | None:
        """``context.token`` (Cedar JSON) from access-token claims; None when the schema has no place for it.

        Without a schema (or without the action in it) every claim is kept and
        ``scope`` becomes a set of strings.
        """
        if action is None or self._types.action(action) is None:
            scope = claims.get("scope")
            record = claim_value(dict(claims) | ({"scope": scope.split()} if isinstance(scope, str) else {}))
            return record if isinstance(record, dict) else {}
        context = self._types.context(action)
        token = (context.get("attributes") or {}).get("token") if context is not None and context.get(
            "type") == "Record" else None
        if not isinstance(token, Mapping):
            return None
        value = claim_value(dict(claims), token, types=self._types, namespace=action.type.rpartition("::")[0])
        return value if isinstance(value, dict) else None


def group_names(value: Any) -> list[str]:
    """Group names from a group claim: a JSON list, one name, or space-separated names.

    Raises:
        IdentityError: the claim has another shape.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [item for item in value if item]
    raise IdentityError("the token's group claim is neither a string nor a list of strings")


# -- the verified token -----------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedToken:
    """A token that passed verification, mapped to Cedar.

    Attributes:
        token_type: ``"identity"`` or ``"access"``.
        claims: the verified claims, as in the token.
        principal: the principal's uid (``<type>::"<prefix>|<claim>"``).
        groups: the group entities it is a member of (its parents).
        entity: the principal entity: parents = groups; attributes from the
            claims of an ID token, none for an access token.
    """

    token_type: TokenType
    claims: Mapping[str, Any]
    principal: EntityUID
    groups: tuple[EntityUID, ...]
    entity: Entity
    _mapper: ClaimMapper = field(repr=False, compare=False)
    _group_claim: str | None = field(default=None, repr=False, compare=False)

    def context(self, action: EntityUID | None = None,
                context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The request context with the access token's claims under ``token``.

        An ID token adds nothing. With a schema, ``token`` keeps only what the
        action's context declares under ``token`` (and is left out when it
        declares nothing there); pass the resolved action for that.

        Example:
            ``authz.authorize(action="read", resource=doc, context=verified.context(read_uid, {...}))``

        Raises:
            IdentityError: ``context`` already has a ``token`` attribute.
        """
        merged = dict(context or {})
        if self.token_type != "access":
            return merged
        if "token" in merged:
            raise IdentityError("the request context already has a 'token' attribute: "
                                "the access token's claims go there")
        token = self.token_context(action)
        if token is not None:
            from agentauthz._model import from_cedar_value

            merged["token"] = from_cedar_value(token)
        return merged

    def token_context(self, action: EntityUID | None = None) -> dict[str, Any] | None:
        """The access token's ``context.token`` record as Cedar JSON (None for ID tokens, or no place for it).

        See :meth:`context`.
        """
        if self.token_type != "access":
            return None
        claims = {k: v for k, v in self.claims.items() if k != self._group_claim}
        return self._mapper.token_context(claims, action)


# -- the identity ---------------------------------------------------------------------------


class TokenIdentity:
    """Verifies JWTs from one identity provider and maps them to Cedar like an AVP identity source.

    Build one with :meth:`cognito`, :meth:`oidc` or :meth:`from_identity_source`.
    Calling it (or :meth:`verify`) returns the principal entity, so it serves as
    the Bedrock Agents handler's ``verify_token`` hook and with ``acting_as``::

        identity = TokenIdentity.cognito(user_pool_id="us-east-1_Example", client_ids=["app"],
                                         jwks=jwks, principal_entity_type="App::User",
                                         group_entity_type="App::Group", schema=store)
        with authz.acting_as(identity.verify(id_token)):
            authz.authorize(action="read", resource=doc)

    Args:
        issuer: the ``iss`` every token must carry.
        principal_entity_type: entity type of the principal.
        jwks: the provider's JSON Web Key Set (``{"keys": [...]}``), or a
            callable returning it (called again, at most once a minute, for an
            unknown key id).
        audiences: accepted ``aud`` (ID tokens, OIDC access tokens) or
            ``client_id`` (Cognito access tokens) values; empty accepts any, as
            an AVP identity source without client ids does.
        token_types: the token types accepted (Cognito: both; an OIDC identity
            source processes one).
        entity_id_prefix: ``<prefix>|`` before principal and group ids (the user
            pool id for Cognito); None for none.
        principal_id_claim: claim naming the principal (``sub``).
        group_claim: claim listing the groups (``cognito:groups``), or None.
        group_entity_type: entity type of the groups; None maps no groups.
        schema: the policy store's schema (PolicyStore, schema text or JSON
            document): attributes are kept and converted as it declares them.
        cognito: Cognito rules: ``token_use`` required, ``client_id`` is the
            access token's audience.
        algorithms: accepted signature algorithms (never ``none`` or HMAC).
        leeway: seconds of clock skew allowed on ``exp`` and ``nbf``.
        clock: time source (seconds since the epoch), for tests.

    Raises:
        ConfigurationError: inconsistent settings.
        ImportError: PyJWT (with cryptography) is not installed.
    """

    def __init__(
        self,
        *,
        issuer: str,
        principal_entity_type: str,
        jwks: JwksSource,
        audiences: Iterable[str] = (),
        token_types: Iterable[TokenType] = ("identity", "access"),
        entity_id_prefix: str | None = None,
        principal_id_claim: str = "sub",
        group_claim: str | None = None,
        group_entity_type: str | None = None,
        schema: Any = None,
        cognito: bool = False,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        leeway: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._jwt = _jwt()
        if not isinstance(issuer, str) or not issuer:
            raise ConfigurationError("issuer is required")
        if not isinstance(principal_entity_type, str) or not principal_entity_type:
            raise ConfigurationError("principal_entity_type is required")
        refused = sorted(set(algorithms) & _REFUSED_ALGORITHMS)
        if refused or not algorithms:
            raise ConfigurationError(f"algorithms must be asymmetric signature algorithms, not {refused}")
        types = tuple(token_types)
        if not types or any(t not in _TOKEN_USE for t in types):
            raise ConfigurationError("token_types must name 'identity' and/or 'access'")
        if not callable(jwks) and not isinstance(jwks, Mapping):
            raise ConfigurationError("jwks must be a JWKS dict ({'keys': [...]}) or a callable returning one")
        self.issuer = issuer
        self.principal_entity_type = principal_entity_type
        self.audiences = tuple(audiences)
        self.token_types: tuple[TokenType, ...] = types
        self.entity_id_prefix = entity_id_prefix
        self.principal_id_claim = principal_id_claim
        self.group_claim = group_claim
        self.group_entity_type = group_entity_type
        self.cognito_rules = cognito
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self._clock = clock
        self._mapper = ClaimMapper.from_schema(schema)
        self.jwks: JwksSource = jwks
        self._jwks_source = jwks
        self._keys: dict[str | None, tuple[Any, str | None]] = {}
        self._keys_loaded: float | None = None
        self._lock = threading.Lock()

    # -- constructors ------------------------------------------------------------------

    @classmethod
    def cognito(
        cls,
        *,
        user_pool_id: str,
        client_ids: Iterable[str],
        jwks: JwksSource,
        principal_entity_type: str = "User",
        group_entity_type: str | None = None,
        schema: Any = None,
        leeway: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> TokenIdentity:
        """An Amazon Cognito user pool, as an AVP Cognito identity source maps it.

        Principal ``<principal type>::"<user pool id>|<sub>"``, groups from
        ``cognito:groups`` as ``<group type>::"<user pool id>|<group>"``.
        ``jwks`` is the pool's ``/.well-known/jwks.json`` document (fetched by
        the application).

        Raises:
            ConfigurationError: no client id (pass the app clients allowed to
                call), or a malformed user pool id.
        """
        ids = tuple(client_ids)
        if not ids:
            raise ConfigurationError("client_ids must name at least one app client of the user pool")
        return cls(issuer=cognito_issuer(user_pool_id), principal_entity_type=principal_entity_type,
                   jwks=jwks, audiences=ids, entity_id_prefix=user_pool_id, group_claim=COGNITO_GROUPS,
                   group_entity_type=group_entity_type, schema=schema, cognito=True, leeway=leeway,
                   clock=clock)

    @classmethod
    def oidc(
        cls,
        *,
        issuer: str,
        jwks: JwksSource,
        principal_entity_type: str = "User",
        client_ids: Iterable[str] = (),
        audiences: Iterable[str] = (),
        principal_id_claim: str = "sub",
        entity_id_prefix: str | None = None,
        group_claim: str | None = None,
        group_entity_type: str | None = None,
        schema: Any = None,
        leeway: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> TokenIdentity:
        """An OIDC provider, as an AVP OIDC identity source maps it.

        ``client_ids`` selects ID tokens (checked against ``aud``), ``audiences``
        access tokens (checked against ``aud``): an identity source processes
        one token type.

        Raises:
            ConfigurationError: neither or both of client_ids and audiences.
        """
        ids, auds = tuple(client_ids), tuple(audiences)
        if bool(ids) == bool(auds):
            raise ConfigurationError("give client_ids (ID tokens) or audiences (access tokens), not both")
        if (group_claim is None) != (group_entity_type is None):
            raise ConfigurationError("group_claim and group_entity_type go together")
        return cls(issuer=issuer, principal_entity_type=principal_entity_type, jwks=jwks,
                   audiences=ids or auds, token_types=("identity",) if ids else ("access",),
                   entity_id_prefix=entity_id_prefix, principal_id_claim=principal_id_claim,
                   group_claim=group_claim, group_entity_type=group_entity_type, schema=schema,
                   leeway=leeway, clock=clock)

    @classmethod
    def from_identity_source(cls, source: Mapping[str, Any], *, jwks: JwksSource, schema: Any = None,
                             leeway: float = 0.0, clock: Callable[[], float] = time.time) -> TokenIdentity:
        """From an identity source as AVP describes it (GetIdentitySource / ListIdentitySources item).

        ``source`` needs ``principalEntityType`` and ``configuration`` (the
        ``cognitoUserPoolConfiguration`` or ``openIdConnectConfiguration``
        union). Settings follow AVP exactly: no client ids means any audience.

        Raises:
            ConfigurationError: a malformed description.
        """
        principal_type = source.get("principalEntityType")
        configuration = source.get("configuration")
        if not isinstance(principal_type, str) or not isinstance(configuration, Mapping):
            raise ConfigurationError("an identity source needs principalEntityType and configuration")
        cognito = configuration.get("cognitoUserPoolConfiguration")
        oidc = configuration.get("openIdConnectConfiguration")
        if isinstance(cognito, Mapping):
            pool = user_pool_id_from_arn(str(cognito.get("userPoolArn", "")))
            group = cognito.get("groupConfiguration") or {}
            return cls(issuer=str(cognito.get("issuer") or cognito_issuer(pool)),
                       principal_entity_type=principal_type, jwks=jwks,
                       audiences=tuple(cognito.get("clientIds") or ()), entity_id_prefix=pool,
                       group_claim=COGNITO_GROUPS, group_entity_type=group.get("groupEntityType"),
                       schema=schema, cognito=True, leeway=leeway, clock=clock)
        if isinstance(oidc, Mapping):
            selection = oidc.get("tokenSelection") or {}
            kind: TokenType
            if "identityTokenOnly" in selection:
                chosen, kind, key = selection["identityTokenOnly"] or {}, "identity", "clientIds"
            elif "accessTokenOnly" in selection:
                chosen, kind, key = selection["accessTokenOnly"] or {}, "access", "audiences"
            else:
                raise ConfigurationError("an OIDC identity source needs tokenSelection")
            group = oidc.get("groupConfiguration") or {}
            return cls(issuer=str(oidc.get("issuer", "")), principal_entity_type=principal_type, jwks=jwks,
                       audiences=tuple(chosen.get(key) or ()), token_types=(kind,),
                       entity_id_prefix=oidc.get("entityIdPrefix"),
                       principal_id_claim=chosen.get("principalIdClaim") or "sub",
                       group_claim=group.get("groupClaim"), group_entity_type=group.get("groupEntityType"),
                       schema=schema, leeway=leeway, clock=clock)
        raise ConfigurationError("an identity source configuration is cognitoUserPoolConfiguration "
                                 "or openIdConnectConfiguration")

    def identity_source(self, *, account_id: str = "123456789012") -> dict[str, Any]:
        """``CreateIdentitySource`` parameters describing this identity (configuration, principal type).

        For a Cognito identity the user pool ARN is built with ``account_id``.
        """
        if self.cognito_rules:
            pool = self.entity_id_prefix or ""
            region = pool.partition("_")[0]
            config: dict[str, Any] = {
                "userPoolArn": f"arn:aws:cognito-idp:{region}:{account_id}:userpool/{pool}",
                "clientIds": list(self.audiences)}
            if self.group_entity_type:
                config["groupConfiguration"] = {"groupEntityType": self.group_entity_type}
            return {"principalEntityType": self.principal_entity_type,
                    "configuration": {"cognitoUserPoolConfiguration": config}}
        kind = self.token_types[0]
        selection = ({"identityTokenOnly": {"clientIds": list(self.audiences),
                                            "principalIdClaim": self.principal_id_claim}}
                     if kind == "identity" else
                     {"accessTokenOnly": {"audiences": list(self.audiences),
                                          "principalIdClaim": self.principal_id_claim}})
        oidc: dict[str, Any] = {"issuer": self.issuer, "tokenSelection": selection}
        if self.entity_id_prefix:
            oidc["entityIdPrefix"] = self.entity_id_prefix
        if self.group_claim and self.group_entity_type:
            oidc["groupConfiguration"] = {"groupClaim": self.group_claim,
                                          "groupEntityType": self.group_entity_type}
        return {"principalEntityType": self.principal_entity_type,
                "configuration": {"openIdConnectConfiguration": oidc}}

    # -- verification ------------------------------------------------------------------

    def __call__(self, token: str) -> Entity:
        """Same as :meth:`verify`: the ``verify_token`` hook of the Bedrock Agents handler."""
        return self.verify(token)

    def verify(self, token: str, *, token_type: TokenType | None = None) -> Entity:
        """Verify a token and return its principal entity (attributes, groups as parents).

        Raises:
            IdentityError: the token does not verify (signature, algorithm,
                issuer, audience, expiry, token use) or names no principal.
        """
        return self.verify_token(token, token_type=token_type).entity

    def verify_token(self, token: str, *, token_type: TokenType | None = None) -> VerifiedToken:
        """Verify a token and map it: principal, groups, and (access tokens) context claims.

        ``token_type`` defaults to the identity's only type, else ``"identity"``.

        Raises:
            IdentityError: as :meth:`verify`.
        """
        kind: TokenType = token_type or (self.token_types[0] if len(self.token_types) == 1 else "identity")
        if kind not in self.token_types:
            raise IdentityError(f"this identity source does not accept {kind} tokens")
        claims = self._claims(token, kind)
        return self.map_claims(claims, kind)

    def map_claims(self, claims: Mapping[str, Any], token_type: TokenType) -> VerifiedToken:
        """Map claims that were already verified (see :meth:`verify_token`).

        Raises:
            IdentityError: no usable principal claim, or a malformed group claim.
        """
        raw = claims.get(self.principal_id_claim)
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str) or not raw:
            raise IdentityError(f"the token has no usable {self.principal_id_claim!r} claim")
        principal = EntityUID(self.principal_entity_type, self._prefixed(raw))
        groups: tuple[EntityUID, ...] = ()
        if self.group_claim and self.group_entity_type:
            groups = tuple(dict.fromkeys(
                EntityUID(self.group_entity_type, self._prefixed(name))
                for name in group_names(claims.get(self.group_claim))))
        attrs: dict[str, Any] = {}
        if token_type == "identity":
            kept = {k: v for k, v in claims.items() if k != self.group_claim}
            attrs = self._mapper.attributes(kept, self.principal_entity_type)
        entity = Entity.from_cedar({"uid": principal.to_cedar(), "attrs": attrs,
                                    "parents": [group.to_cedar() for group in groups]})
        return VerifiedToken(token_type=token_type, claims=dict(claims), principal=principal, groups=groups,
                             entity=entity, _mapper=self._mapper, _group_claim=self.group_claim)

    def unverified_principal(self, token: str) -> EntityUID:
        """The principal a token *claims*, without verifying it: only for labels, never for decisions.

        Raises:
            IdentityError: the token is not a JWT or names no principal.
        """
        try:
            claims = self._jwt.decode(token, options={"verify_signature": False})
        except Exception as exc:
            raise IdentityError(f"not a JWT: {type(exc).__name__}") from None
        raw = claims.get(self.principal_id_claim) if isinstance(claims, Mapping) else None
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str) or not raw:
            raise IdentityError(f"the token has no usable {self.principal_id_claim!r} claim")
        return EntityUID(self.principal_entity_type, self._prefixed(raw))

    def _prefixed(self, value: str) -> str:
        return f"{self.entity_id_prefix}|{value}" if self.entity_id_prefix else value

    def _claims(self, token: str, kind: TokenType) -> dict[str, Any]:
        jwt = self._jwt
        if not isinstance(token, str) or token.count(".") != 2:
            raise IdentityError("the token is not a signed JWT (header.payload.signature)")
        try:
            header = jwt.get_unverified_header(token)
        except Exception:
            raise IdentityError("the token header does not parse") from None
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise IdentityError(f"token algorithm {str(algorithm)[:20]!r} is not accepted")
        key = self._key(header.get("kid"), algorithm)
        required = ["exp", "iss"]
        try:
            claims = jwt.decode(
                token, key=key, algorithms=[algorithm], issuer=self.issuer, leeway=self.leeway,
                options={"require": required, "verify_aud": False, "verify_iat": False})
        except jwt.ExpiredSignatureError:
            raise IdentityError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise IdentityError("the token is not valid yet (nbf)") from None
        except jwt.InvalidIssuerError:
            raise IdentityError("the token's issuer is not this identity source's") from None
        except jwt.MissingRequiredClaimError as exc:
            raise IdentityError(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise IdentityError("the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise IdentityError(f"the token is invalid: {type(exc).__name__}") from None
        if not isinstance(claims, dict):
            raise IdentityError("the token's payload is not a JSON object")
        # PyJWT checks exp against its own clock; check against ours too (tests move it).
        expiry = claims.get("exp")
        if not isinstance(expiry, int | float) or isinstance(expiry, bool) or (
                expiry + self.leeway <= self._clock()):
            raise IdentityError("the token has expired")
        not_before = claims.get("nbf")
        if isinstance(not_before, int | float) and not isinstance(not_before, bool) and (
                not_before - self.leeway > self._clock()):
            raise IdentityError("the token is not valid yet (nbf)")
        self._check_use(claims, kind)
        self._check_audience(claims, kind)
        return claims

    def _check_use(self, claims: Mapping[str, Any], kind: TokenType) -> None:
        use = claims.get("token_use")
        if use is None and not self.cognito_rules:
            return
        if use != _TOKEN_USE[kind]:
            raise IdentityError(f"the token's token_use is not {_TOKEN_USE[kind]!r} (presented as an "
                                f"{kind} token)")

    def _check_audience(self, claims: Mapping[str, Any], kind: TokenType) -> None:
        if not self.audiences:
            return
        if self.cognito_rules and kind == "access":
            values: list[Any] = [claims.get("client_id")]
        else:
            audience = claims.get("aud")
            values = audience if isinstance(audience, list) else [audience]
        if not any(isinstance(value, str) and value in self.audiences for value in values):
            claim = "client_id" if self.cognito_rules and kind == "access" else "aud"
            raise IdentityError(f"the token's {claim} is not an accepted client of this identity source")

    def _key(self, kid: Any, algorithm: str) -> Any:
        with self._lock:
            if not self._keys or (kid not in self._keys and self._may_refresh()):
                self._load_keys()
            found = self._keys.get(kid)
            if found is None and kid is None and len(self._keys) == 1:
                found = next(iter(self._keys.values()))
        if found is None:
            raise IdentityError("the token's signing key is not in the identity source's JWKS")
        key, declared = found
        if declared is not None and declared != algorithm:
            raise IdentityError("the token's algorithm is not its signing key's")
        return key

    def _may_refresh(self) -> bool:
        return callable(self._jwks_source) and (
            self._keys_loaded is None or time.monotonic() - self._keys_loaded >= _JWKS_REFRESH_SECONDS)

    def _load_keys(self) -> None:
        source = self._jwks_source
        try:
            document = source() if callable(source) else source
        except Exception as exc:
            raise IdentityError(f"cannot get the identity source's JWKS: {type(exc).__name__}") from None
        self._keys_loaded = time.monotonic()
        keys = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(keys, list):
            raise IdentityError("the identity source's JWKS has no 'keys' list")
        loaded: dict[str | None, tuple[Any, str | None]] = {}
        for entry in keys:
            if not isinstance(entry, Mapping) or entry.get("use", "sig") != "sig" or (
                    entry.get("kty") == "oct"):
                continue  # encryption keys and shared secrets never verify a token here
            try:
                jwk = self._jwt.PyJWK(dict(entry))
            except Exception:
                continue  # a key this library cannot use
            kid = entry.get("kid")
            declared = entry.get("alg")
            loaded[kid if isinstance(kid, str) else None] = (
                jwk.key, declared if isinstance(declared, str) else None)
        self._keys = loaded

    def __repr__(self) -> str:
        return (f"TokenIdentity(issuer={self.issuer!r}, principal_entity_type="
                f"{self.principal_entity_type!r}, token_types={self.token_types!r})")


@contextmanager
def bound_token(
    authz: Authorizer,
    *,
    token: str | None = None,
    claims: Mapping[str, Any] | None = None,
    identity: TokenIdentity | None = None,
    token_type: TokenType | None = None,
    correlation_id: str | None = None,
    agent: Agent | None = None,
) -> Iterator[Identity]:
    """Bind the user of a token, or of claims already verified, for the block.

    What ``authz.acting_as(token=...)`` and ``authz.acting_as(claims=...)`` do
    (see :meth:`Authorizer.acting_as`):

    * a token, on :class:`~agentauthz.VerifiedPermissionsEngine`: decisions in
      the block are ``IsAuthorizedWithToken`` / ``BatchIsAuthorizedWithToken``
      calls; the principal bound (for audit events and entity lookups) is the
      one the token names in the store's identity sources, and with
      ``identity`` the token is verified here first too;
    * a token, on any other engine: ``identity`` verifies and maps it, and its
      principal entity is bound;
    * claims: ``identity`` maps them as it maps a verified token's, and the
      principal entity is bound (the runtime verified the token itself).

    The agent acting for the user (:class:`~agentauthz.Agent`) is ``agent``, or
    the one the verified claims name in their ``act`` claim (token exchange);
    both given and different is refused. A token only AVP verifies (no
    ``identity``) is not read here, so its ``act`` claim names no agent.

    Raises:
        IdentityError: the token does not verify (here), or names no principal.
        ConfigurationError: both or neither of ``token`` and ``claims``; claims
            without ``identity``; a token the engine cannot decide with and no
            ``identity`` to verify it.
    """
    if (token is None) == (claims is None):
        raise ConfigurationError("give a token or its verified claims: exactly one")
    kind: TokenType = token_type or (
        identity.token_types[0] if identity is not None and len(identity.token_types) == 1 else "identity")
    if claims is not None:
        if identity is None:
            raise ConfigurationError("claims= needs identity=TokenIdentity(...) to map them to Cedar")
        if not isinstance(claims, Mapping):
            raise IdentityError(f"claims must be the verified token's claims (a mapping), "
                                f"not {type(claims).__name__}")
        if kind not in identity.token_types:
            raise IdentityError(f"this identity source does not accept {kind} tokens")
        mapped = identity.map_claims(claims, kind).entity
        with authz.acting_as(mapped, correlation_id=correlation_id,
                             agent=_acting_agent(claims, agent)) as bound:
            yield bound
        return
    assert token is not None
    principal: Entity | None = None
    if identity is not None:
        verified = identity.verify_token(token, token_type=kind)
        principal, agent = verified.entity, _acting_agent(verified.claims, agent)
    bind = getattr(authz.engine, "bind_token", None)
    if bind is None:
        if principal is None:
            raise ConfigurationError(
                f"{type(authz.engine).__name__} cannot decide with tokens: pass identity=TokenIdentity(...) "
                "to verify the token here")
        with authz.acting_as(principal, correlation_id=correlation_id, agent=agent) as bound:
            yield bound
        return
    with bind(token, kind) as named:
        if principal is not None and principal.uid != named:
            raise IdentityError(f"the token names {named} in the policy store's identity source but "
                                f"{principal.uid} here: the two identity sources differ")
        with authz.acting_as(principal if principal is not None else named,
                             correlation_id=correlation_id, agent=agent) as bound:
            yield bound


def _acting_agent(claims: Mapping[str, Any], given: Agent | None) -> Agent | None:
    """The agent named by ``given`` or by the verified claims' ``act`` claim; both and different: refused.

    Raises:
        IdentityError: the two name different agents, or the ``act`` claim names no actor.
    """
    named = Agent.from_claims(claims, entity_type=given.entity_type if given is not None else "Agent")
    if given is not None and named is not None and named.uid != given.uid:
        raise IdentityError(f"the token's act claim names agent {named.uid}, not {given.uid}")
    return given if given is not None else named


def acting_with_token(
    authz: Authorizer,
    token: str,
    *,
    identity: TokenIdentity | None = None,
    token_type: TokenType | None = None,
    correlation_id: str | None = None,
) -> AbstractContextManager[Identity]:
    """Bind the user of a Cognito/OIDC token for the block, whichever engine decides.

    .. deprecated:: 0.2
        Use ``authz.acting_as(token=token, identity=...)``, which does the same
        (see :meth:`Authorizer.acting_as`). This alias warns with
        DeprecationWarning and goes away in the next release.

    Example:
        ``with authz.acting_as(token=id_token): authz.authorize(action="read", resource=doc)``

    Raises:
        IdentityError: the token does not verify (here), or names no principal.
        ConfigurationError: the engine cannot decide with tokens and no ``identity`` was given.
    """
    warnings.warn("acting_with_token(authz, token) is deprecated: use authz.acting_as(token=token)",
                  DeprecationWarning, stacklevel=2)
    return authz.acting_as(token=token, identity=identity, token_type=token_type,
                           correlation_id=correlation_id)
