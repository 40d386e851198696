"""Helpers for testing applications and policies that use agentauthz.

Example:
    >>> import agentauthz as az
    >>> from agentauthz.testing import capture_decisions
    >>> authz = az.Authorizer.from_text('permit(principal, action, resource);')
    >>> with capture_decisions() as events, authz.acting_as(az.EntityUID("User", "a")):
    ...     _ = authz.authorize(action="read", resource=az.EntityUID("Doc", "d"))
    >>> [e.decision for e in events]
    ['allow']
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from agentauthz._audit import AuditEvent, capture_events
from agentauthz._avp_server import Fault, LocalVerifiedPermissions

__all__ = ["Fault", "LocalVerifiedPermissions", "capture_decisions"]


@contextmanager
def capture_decisions() -> Iterator[list[AuditEvent]]:
    """Collect the audit event of every decision made while the block runs, by any Authorizer."""
    with capture_events() as events:
        yield events
