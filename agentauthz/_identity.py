"""The end user an agent acts for: one contextvar, bound by :meth:`Authorizer.acting_as`.

Kept apart from the Authorizer so that every wing (sessions, integrations) reads
the bound end user without importing the Authorizer.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from agentauthz._model import Entity, EntityUID

__all__ = ["Identity", "bound_identity"]


@dataclass(frozen=True)
class Identity:
    """The end user an agent acts for, as bound by :meth:`Authorizer.acting_as`."""

    uid: EntityUID
    entity: Entity | None
    correlation_id: str | None


bound_identity: contextvars.ContextVar[Identity | None] = contextvars.ContextVar(
    "agentauthz_identity", default=None
)
