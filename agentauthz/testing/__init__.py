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

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from agentauthz._audit import AuditEvent, capture_events
from agentauthz._errors import PolicyError
from agentauthz._model import Decision
from agentauthz.avp._server import Fault, LocalVerifiedPermissions
from agentauthz.policy._store import PolicyStore
from agentauthz.testing._cases import CaseResult, DecisionCase, load_cases, run_cases
from agentauthz.testing._dynamodb import LocalDynamoDB

__all__ = ["Fault", "LocalDynamoDB", "LocalVerifiedPermissions", "PolicyCase", "capture_decisions",
           "policy_cases"]


@contextmanager
def capture_decisions() -> Iterator[list[AuditEvent]]:
    """Collect the audit event of every decision made while the block runs, by any Authorizer."""
    with capture_events() as events:
        yield events


class _StoreUnderTest:
    """A store directory loaded once, on the first case that needs it."""

    def __init__(self, directory: Path, validate: bool) -> None:
        self.directory = directory
        self.validate = validate
        self._store: PolicyStore | None = None
        self._error: PolicyError | None = None

    def store(self) -> PolicyStore:
        if self._error is not None:
            raise self._error
        if self._store is None:
            try:
                self._store = PolicyStore.from_directory(self.directory, validate=self.validate)
            except PolicyError as exc:
                self._error = exc
                raise
        return self._store


@dataclass(frozen=True)
class PolicyCase:
    """One decision case of a policy store, for ``pytest.mark.parametrize``.

    Attributes:
        id: ``ALLOW/<file>``, ``DENY/<file>`` or ``<table file>::<case name>``
            (also ``str(case)``, so ``ids=str`` names the tests).
        case: the case as read (request, expected decision, reasons, ...).
    """

    id: str
    case: DecisionCase
    _store: _StoreUnderTest = field(repr=False, compare=False)

    def __str__(self) -> str:
        return self.id

    def run(self) -> CaseResult:
        """Decide the case; the store is loaded (once for all its cases) on first use.

        Raises:
            PolicyError: the store does not load.
        """
        return run_cases(self._store.store(), [self.case])[0]

    def check(self) -> Decision:
        """Decide the case and fail unless it is as expected.

        Returns:
            The decision.

        Raises:
            AssertionError: the decision, its reasons or its errors differ (the
                message says how, with the case's file and line).
            PolicyError: the store does not load.
        """
        result = self.run()
        if not result.passed:
            where = self.case.source + (f":{self.case.line}" if self.case.line else "")
            lines = [f"{self.id} ({where})", *result.failures]
            if result.decision is not None:
                lines.extend(f"error: {error}" for error in result.decision.errors)
            raise AssertionError("\n".join(lines))
        assert result.decision is not None
        return result.decision


def policy_cases(directory: str | Path, *, tables: Iterable[str | Path] = (),
                 validate: bool = True) -> list[PolicyCase]:
    """The decision cases of a policy store, as ``agentauthz test`` runs them.

    ``ALLOW/*.json``, ``DENY/*.json`` and ``cases/*.toml`` (``*.yaml``) of the
    store, plus ``tables``. Reading the cases does not load the store: a store
    that fails to load fails each case with its :class:`~agentauthz.PolicyError`,
    and an unreadable case file fails as a case of its own.

    Example:
        >>> cases = policy_cases("policies")
        >>> cases[0].id
        'ALLOW/admin_deletes_budget_of_own_tenant'
        >>> cases[0].check().allowed
        True

    In a test module::

        import pytest
        from agentauthz.testing import policy_cases

        @pytest.mark.parametrize("case", policy_cases("policies"), ids=str)
        def test_policy_decisions(case):
            case.check()
    """
    root = Path(directory)
    under_test = _StoreUnderTest(root, validate)
    return [PolicyCase(case.id, case, under_test) for case in load_cases(root, tables)]
