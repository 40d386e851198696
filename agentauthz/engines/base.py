"""The protocol every authorization backend implements.

An engine decides a batch of fully resolved requests against one policy-store
version and never raises for a request it cannot decide: that request comes
back as a denying :class:`~agentauthz.Decision` with the error attached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from agentauthz._model import Decision, Entity, EntityUID, Request

__all__ = ["Engine"]


@runtime_checkable
class Engine(Protocol):
    """A backend that turns Cedar requests into decisions.

    Implementations: :class:`~agentauthz.LocalEngine` (embedded cedarpy),
    :class:`~agentauthz.VerifiedPermissionsEngine` (Amazon Verified Permissions) and
    :class:`~agentauthz.SyncedEngine` (a Verified Permissions policy store decided embedded).
    """

    name: str
    """Short name written in audit events (``"local"``, ``"avp"``)."""

    @property
    def fingerprint(self) -> str:
        """Identifies the policy version decisions are made against."""
        ...

    def resolve_action(self, action: str | EntityUID) -> EntityUID:
        """Turn a bare action name (``"read"``) into the schema's action uid."""
        ...

    def decide(self, requests: Sequence[Request], entities: Sequence[Entity] = ()) -> list[Decision]:
        """Decide each request, in order; ``entities`` are added to the engine's own for this call.

        ``requests`` is any sequence: ``Authorizer.filter`` passes a ``SharedRequests`` whose
        requests are built when read (an engine needing a list makes one).
        Never raises for a request it cannot decide: that request is denied with its error.
        """
        ...

    async def adecide(
        self, requests: Sequence[Request], entities: Sequence[Entity] = ()
    ) -> list[Decision]:
        """Async twin of :meth:`decide`."""
        ...
