"""The end user of a Bedrock Agents call, from what the application set and the model cannot write.

Only the trusted part of an event names the user: ``sessionAttributes`` (set
by the application that calls ``InvokeAgent``), ``sessionId``, ``agent`` and
``messageVersion``. :class:`Identify` reads it with the application's
``principal=`` callable, or verifies the token stored there with its
``verify_token=``; anything else (no user, an exception, a rejected token,
an awaitable to a sync handler) is no user, and the call is refused.
"""

from __future__ import annotations

import copy
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from agentauthz._authorizer import Authorizer
from agentauthz._errors import ConfigurationError, IdentityError
from agentauthz._identity import Identity
from agentauthz._model import Entity, EntityUID

__all__ = [
    "Identify",
    "Principal",
    "PrincipalOf",
    "SessionOf",
    "TokenVerifier",
    "bound_user",
    "checked",
    "event_session_id",
    "session_bound",
    "trusted",
]

_log = logging.getLogger("agentauthz")

Principal: TypeAlias = Entity | EntityUID
PrincipalOf: TypeAlias = Callable[[dict[str, Any]], "Entity | EntityUID | None"]
SessionOf: TypeAlias = bool | Callable[[dict[str, Any]], "str | None"]

# Parts of a Lambda event the application or Bedrock set; the model writes none of them.
_TRUSTED_KEYS = ("messageVersion", "agent", "sessionId", "sessionAttributes")
_BEARER = re.compile(r"bearer\s+", re.I)


class TokenVerifier(Protocol):
    """Turns a token the application put in the session attributes into the end user.

    Any callable ``token -> Entity | EntityUID`` fits (a function, or an object
    with ``__call__`` such as the library's JWT verifier). It must check the
    signature, issuer, audience and expiry, and raise on any problem: a raise
    (of any exception) denies the call. It may return an awaitable when the
    handler is async.

    Example:
        >>> import agentauthz as az
        >>> def verify(token: str) -> az.EntityUID:
        ...     if token != "valid-demo-token":
        ...         raise ValueError("bad token")
        ...     return az.EntityUID("User", "alice")
        >>> verify("valid-demo-token")
        EntityUID(type='User', id='alice')
    """

    def __call__(self, token: str, /) -> Entity | EntityUID | Awaitable[Entity | EntityUID]:
        """Verify ``token``; return the end user or raise."""
        ...


def trusted(event: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of the event the model cannot write: session attributes, session and agent ids.

    ``inputText``, ``parameters``, ``requestBody`` and ``promptSessionAttributes``
    are left out, so a principal callable cannot read them even by mistake.
    """
    return {key: copy.deepcopy(event[key]) for key in _TRUSTED_KEYS if key in event}


def _token(event: Mapping[str, Any], attribute: str) -> str | None:
    attributes = event.get("sessionAttributes")
    token = attributes.get(attribute) if isinstance(attributes, Mapping) else None
    if not isinstance(token, str):
        return None
    token = _BEARER.sub("", token.strip(), count=1).strip()
    return token or None


def checked(value: Any) -> Principal | None:
    if value is None or isinstance(value, (Entity, EntityUID)):
        return value
    raise IdentityError(
        f"the end user must be an Entity or EntityUID built by the application, not {type(value).__name__}"
    )


@dataclass(frozen=True)
class Identify:
    """How the end user is read from an event: ``principal=`` or ``verify_token=``, never both."""

    principal: PrincipalOf | None
    verify_token: TokenVerifier | None
    token_attribute: str

    @classmethod
    def build(cls, principal: PrincipalOf | None, verify_token: TokenVerifier | None,
              token_attribute: str) -> Identify:
        """Check the options that name the end user (of
        :func:`~agentauthz.integrations.bedrock.action_group_handler`).

        Raises:
            ConfigurationError: neither or both of ``principal``/``verify_token``,
                a hook that is not callable, or an empty ``token_attribute``.
        """
        if (principal is None) == (verify_token is None):
            raise ConfigurationError(
                "action_group_handler needs exactly one of principal= (a trusted session attribute) "
                "or verify_token= (a token verifier)"
            )
        for name, hook in (("principal", principal), ("verify_token", verify_token)):
            if hook is not None and not callable(hook):
                raise ConfigurationError(f"{name}= must be callable")
        if not isinstance(token_attribute, str) or not token_attribute:
            raise ConfigurationError("token_attribute must be a non-empty string")
        return cls(principal, verify_token, token_attribute)

    def first(self, event: Mapping[str, Any]) -> Any:
        """The principal callable's or verifier's answer (possibly an awaitable)."""
        if self.verify_token is not None:
            token = _token(event, self.token_attribute)
            if token is None:
                return None
            return self.verify_token(token)
        assert self.principal is not None
        return self.principal(trusted(event))

    def resolve(self, event: Mapping[str, Any]) -> Principal | None:
        try:
            value = self.first(event)
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()
                raise IdentityError("the identity hook returned an awaitable to a sync handler")
            return checked(value)
        except Exception as exc:  # an invalid or unreadable identity denies; it never raises out
            _log.info("Bedrock agent call refused: no valid end user (%s)", type(exc).__name__)
            return None

    async def aresolve(self, event: Mapping[str, Any]) -> Principal | None:
        try:
            value = self.first(event)
            if inspect.isawaitable(value):
                value = await value
            return checked(value)
        except Exception as exc:  # an invalid or unreadable identity denies; it never raises out
            _log.info("Bedrock agent call refused: no valid end user (%s)", type(exc).__name__)
            return None


def event_session_id(event: Mapping[str, Any]) -> str | None:
    """The event's ``sessionId`` (set by Bedrock, never by the model), or None."""
    session = event.get("sessionId")
    return session if isinstance(session, str) and session else None


@contextmanager
def session_bound(authz: Authorizer, session: SessionOf, event: Mapping[str, Any]) -> Iterator[None]:
    """Bind the session the event belongs to (its ``sessionId`` or what ``session=`` says)."""
    if session is False:
        with authz.session_bound_to(None):
            yield
        return
    session_id = event_session_id(event) if session is True else session(trusted(event))
    if session_id is None:
        raise IdentityError("the event names no session (sessionId) but sessions are on")
    with authz.session_bound_to(session_id, source="the event's session"):
        yield


@contextmanager
def bound_user(authz: Authorizer, principal: Principal | None, correlation_id: str | None,
               source: str) -> Iterator[Identity | None]:
    """Bind the end user for the block; the session id becomes the audit correlation id."""
    with authz.bound_to(principal, source=source, correlation_id=correlation_id) as bound:
        yield bound
