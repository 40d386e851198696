"""The end user of an MCP request, from its verified access token (see :mod:`agentauthz.integrations.mcp`)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from agentauthz._errors import IdentityError
from agentauthz._model import Entity, EntityUID

if TYPE_CHECKING:
    from agentauthz.avp._tokens import TokenIdentity

__all__ = ["DEFAULT_PRINCIPAL_TYPE", "PrincipalOf", "token_principal"]

#: Entity type of the end user when neither ``principal=`` nor ``identity=`` maps the token.
DEFAULT_PRINCIPAL_TYPE = "User"

#: Maps a verified access token (``fastmcp.server.auth.AccessToken``) to the end user.
PrincipalOf: TypeAlias = Callable[[Any], "Entity | EntityUID | Awaitable[Entity | EntityUID]"]


async def token_principal(token: Any, *, principal: PrincipalOf | None = None,
                          identity: TokenIdentity | None = None) -> Entity | EntityUID:
    """The end user a verified access token names.

    * ``principal=``: the application's mapping of the token (sync or async).
    * ``identity=``: a :class:`~agentauthz.TokenIdentity` maps the verified
      claims as an AVP identity source would (principal type, id prefix,
      groups); the token's ``iss`` must be the identity's issuer.
    * neither: ``User::"<sub>"``.

    The user always comes from the subject (``sub``) or the mapping, never
    from ``client_id``: that names the application, and FastMCP sets it to
    the subject when the token has no ``client_id``/``azp`` claim.

    Raises:
        IdentityError: no token, a token with no usable subject, a subject
            that differs between the token and its claims, an issuer that is
            not the identity's, or a mapping that failed or returned something
            other than an Entity or EntityUID. Messages hold no claim values.
    """
    if token is None:
        raise IdentityError("the MCP request carries no verified access token (is the server's auth= set?)")
    if principal is not None:
        return await _mapped(principal, token)
    claims = dict(getattr(token, "claims", None) or {})
    subject = _subject(token, claims)
    if identity is None:
        return EntityUID(DEFAULT_PRINCIPAL_TYPE, subject)
    if claims.get("iss") != identity.issuer:
        raise IdentityError("the access token's issuer is not the issuer of the configured identity")
    kind = identity.token_types[0] if len(identity.token_types) == 1 else "access"
    return identity.map_claims({**claims, "sub": subject}, kind).entity


async def _mapped(principal: PrincipalOf, token: Any) -> Entity | EntityUID:
    try:
        found = principal(token)
        if inspect.isawaitable(found):
            found = await found
    except IdentityError:
        raise
    except Exception as exc:  # a failing mapping refuses the request, never allows it
        raise IdentityError(f"principal= failed to map the access token: {type(exc).__name__}") from None
    if not isinstance(found, (Entity, EntityUID)):
        raise IdentityError(f"principal= must return an EntityUID or Entity, not {type(found).__name__}")
    return found


def _subject(token: Any, claims: dict[str, Any]) -> str:
    subject = getattr(token, "subject", None)
    claimed = claims.get("sub")
    if subject is not None and claimed is not None and subject != claimed:
        raise IdentityError("the access token's subject differs from its sub claim")
    found = subject if subject is not None else claimed
    if not isinstance(found, str) or not found:
        raise IdentityError("the access token names no subject (sub): map it with principal=")
    return found
