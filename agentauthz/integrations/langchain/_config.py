"""The end user and session an application puts in ``RunnableConfig["configurable"]``.

One reading for every LangChain path (tools, middleware, retrievers): the end user
must be an :class:`~agentauthz.EntityUID` or :class:`~agentauthz.Entity` the
application built (a string there could come from a client and is refused), the
session an id or a :class:`~agentauthz.session.Session`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from agentauthz._errors import ConfigurationError, IdentityError
from agentauthz._identity import no_end_user as core_no_end_user
from agentauthz._model import Entity, EntityUID
from agentauthz.session._session import SESSION_KEY, Session

if TYPE_CHECKING:
    from agentauthz._authorizer import Authorizer

__all__ = [
    "INJECTED_KEY",
    "PRINCIPAL_KEY",
    "SESSION_KEY",
    "bound_from_config",
    "configured_principal",
    "configured_session",
    "no_end_user",
    "supplied_from_config",
]

PRINCIPAL_KEY = "agentauthz_principal"
"""Default key of the end user in ``RunnableConfig["configurable"]``."""

INJECTED_KEY = "agentauthz_injected"
"""Key of the application's tool arguments (``Annotated[T, az.Injected]``) in
``RunnableConfig["configurable"]``: a mapping from argument name to value, for every tool."""


def no_end_user(key: str) -> str:
    """The message of every LangChain path refused for want of an end user (a custom key named)."""
    if key == PRINCIPAL_KEY:
        return str(core_no_end_user())
    return str(core_no_end_user(f"this LangChain path reads RunnableConfig['configurable'][{key!r}]"))


def configured_principal(config: Mapping[str, Any] | None, key: str) -> Entity | EntityUID | None:
    """The end user the application put in ``config["configurable"][key]``, if any."""
    configurable = (config or {}).get("configurable")
    if not isinstance(configurable, Mapping):
        return None
    value = configurable.get(key)
    if value is None:
        return None
    if not isinstance(value, (Entity, EntityUID)):
        # A string or dict could come from a client (e.g. a LangGraph server request);
        # the principal is a value the application built, never parsed from text.
        raise IdentityError(
            f"RunnableConfig['configurable'][{key!r}] must be an EntityUID or Entity set by "
            f"the application, not {type(value).__name__}"
        )
    return value


def configured_session(config: Mapping[str, Any] | None, key: str) -> str | Session | None:
    """The session the application put in ``config["configurable"][key]``, if any."""
    configurable = (config or {}).get("configurable")
    if not isinstance(configurable, Mapping):
        return None
    value = configurable.get(key)
    if value is None or isinstance(value, (str, Session)):
        return value
    raise ConfigurationError(
        f"RunnableConfig['configurable'][{key!r}] must be a session id string or a Session, "
        f"not {type(value).__name__}")


@contextmanager
def bound_from_config(authz: Authorizer, config: Mapping[str, Any] | None, key: str,
           session_key: str = SESSION_KEY) -> Iterator[None]:
    """Bind the configured end user and session for the block, or keep what is bound.

    Raises:
        IdentityError: the configured end user is not an Entity or EntityUID,
            conflicts with the bound one, or, when the block needs an end user
            and none is bound, with :func:`no_end_user`'s message (naming both
            ways to bind one, and keeping the audited refusal's ``decision``).
    """
    with authz.bound_to(configured_principal(config, key),
                        source=f"RunnableConfig['configurable'][{key!r}]"), \
            authz.session_bound_to(configured_session(config, session_key),
                                   source=f"RunnableConfig['configurable'][{session_key!r}]"):
        try:
            yield
        except IdentityError as exc:
            if authz.identity is not None:  # bound: refused for another reason (a foreign session)
                raise
            # Nothing ran without an end user (every decision needs one), so this is the refusal
            # for want of one: said the same on every LangChain path, with both ways to bind a user.
            raise IdentityError(no_end_user(key), decision=exc.decision) from exc


def supplied_from_config(config: Mapping[str, Any] | None, names: tuple[str, ...]) -> dict[str, Any]:
    """The values of the application's arguments ``names`` in ``config["configurable"][INJECTED_KEY]``.

    Raises:
        ConfigurationError: the entry is there but is not a mapping by argument name.
    """
    if not names:
        return {}
    configurable = (config or {}).get("configurable")
    given = configurable.get(INJECTED_KEY) if isinstance(configurable, Mapping) else None
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise ConfigurationError(f"RunnableConfig['configurable'][{INJECTED_KEY!r}] must map argument "
                                 "names to the values the application supplies")
    return {name: given[name] for name in names if name in given}
