"""What each policy-author command found, before it is written in any format.

A command (:mod:`agentauthz.cli._author`) computes one of these results; a
renderer writes it: :mod:`agentauthz.cli._render` as text (plain, or colors and
tables on a terminal) or as one JSON document, :mod:`agentauthz.cli._junit` as
a JUnit report. Each result knows its exit code and its JSON form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentauthz._errors import PolicyError
from agentauthz._model import Decision, Request
from agentauthz.cli._common import EXIT_OK, EXIT_PROBLEMS
from agentauthz.cli._replay import ReplayReport
from agentauthz.policy._format import FormatResult
from agentauthz.policy._lint import LintReport
from agentauthz.policy._store import PolicyStore
from agentauthz.testing._cases import CaseResult

__all__ = [
    "CasesRun",
    "CommandResult",
    "FormatRun",
    "ReplayRun",
    "RequestCheckResult",
    "StoreCheck",
    "store_summary",
]


class CommandResult(Protocol):
    """What every command result offers its renderers."""

    @property
    def exit_code(self) -> int:
        """0 when the command found nothing wrong, 1 otherwise."""
        ...

    def to_json(self) -> dict[str, Any]:
        """The result as one JSON document."""
        ...


def _status(failed: bool) -> int:
    return EXIT_PROBLEMS if failed else EXIT_OK


@dataclass(frozen=True)
class StoreCheck:
    """``agentauthz validate``: the store's problems and warnings.

    Attributes:
        label: the directory as the user named it.
        report: what linting the store found.
        strict: warnings fail the run too.
    """

    label: str
    report: LintReport
    strict: bool = False

    @property
    def failed(self) -> bool:
        """Errors, or warnings under ``--strict``."""
        return bool(self.report.errors) or (self.strict and bool(self.report.warnings))

    @property
    def exit_code(self) -> int:
        return _status(self.failed)

    def to_json(self) -> dict[str, Any]:
        report = self.report
        return {"directory": self.label, "ok": not self.failed,
                "errors": [finding.to_json() for finding in report.errors],
                "warnings": [finding.to_json() for finding in report.warnings],
                "notes": report.notes}


@dataclass(frozen=True)
class CasesRun:
    """``agentauthz test``: the decision cases of a store, decided and compared.

    Attributes:
        label: the directory as the user named it.
        results: one per case, in order (empty when the store did not load).
        elapsed: seconds, loading included.
        missing: ``(id, location)`` of policies that determined no case; None
            when coverage was not asked for.
        store: the store the cases ran on; None when it did not load.
        load_error: why the store did not load.
        quiet: list only the failing cases (text only).
    """

    label: str
    results: Sequence[CaseResult] = ()
    elapsed: float = 0.0
    missing: Sequence[tuple[str, str]] | None = None
    store: PolicyStore | None = None
    load_error: PolicyError | None = None
    quiet: bool = False

    @property
    def failed(self) -> list[CaseResult]:
        """The cases that did not pass."""
        return [result for result in self.results if not result.passed]

    @property
    def exit_code(self) -> int:
        return _status(self.load_error is not None or bool(self.failed))

    def to_json(self) -> dict[str, Any]:
        if self.load_error is not None:
            return {"directory": self.label, "ok": False, "error": str(self.load_error),
                    "problems": list(self.load_error.problems)}
        failed = len(self.failed)
        return {"directory": self.label, "ok": not failed, "passed": len(self.results) - failed,
                "failed": failed, "seconds": round(self.elapsed, 4),
                "cases": [result.to_json() for result in self.results],
                "never_determining": [{"id": pid, "location": where} for pid, where in self.missing or ()]}


@dataclass(frozen=True)
class RequestCheckResult:
    """``agentauthz check``: one decision and why.

    Attributes:
        request: the request as decided (action resolved).
        decision: the embedded engine's decision.
        invalid: why Cedar cannot build the request (it is then denied), or None.
        warnings: what looks wrong without being an error (an action no policy names).
        milliseconds: time the decision took.
        policies: ``(id, location, text)`` of each determining policy.
        expect: the decision ``--expect`` asked for, if any.
    """

    request: Request
    decision: Decision
    invalid: str | None
    warnings: Sequence[str]
    milliseconds: float
    policies: Sequence[tuple[str, str, str]]
    expect: str | None = None

    @property
    def unexpected(self) -> bool:
        """The decision is not the one ``--expect`` asked for."""
        return self.expect is not None and self.decision.outcome != self.expect

    @property
    def exit_code(self) -> int:
        # A request Cedar cannot build is denied, but that is no answer to "is this allowed?".
        return _status(bool(self.invalid) or self.unexpected)

    def to_json(self) -> dict[str, Any]:
        decision = self.decision
        return {"request": self.request.to_cedar(), "decision": decision.outcome,
                "invalid_request": self.invalid, "warnings": list(self.warnings),
                "reasons": list(decision.reasons), "errors": list(decision.errors),
                "milliseconds": round(self.milliseconds, 3),
                "policies": [{"id": pid, "location": where, "text": text}
                             for pid, where, text in self.policies]}


@dataclass(frozen=True)
class FormatRun:
    """``agentauthz format``: what Cedar's formatter changed, or would.

    Attributes:
        label: the directory as the user named it.
        results: one per policy file.
        check: nothing was written (``--check``).
        written: the files rewritten.
        diff: show the changes as a unified diff (text only).
    """

    label: str
    results: Sequence[FormatResult]
    check: bool
    written: Sequence[str] = field(default_factory=list)
    diff: bool = False

    @property
    def changed(self) -> list[FormatResult]:
        """Files whose formatted text differs."""
        return [result for result in self.results if result.changed]

    @property
    def refused(self) -> list[FormatResult]:
        """Files left as they are because formatting would change their meaning or comments."""
        return [result for result in self.results if result.problem is not None]

    @property
    def exit_code(self) -> int:
        return _status(bool(self.refused) or (self.check and bool(self.changed)))

    def to_json(self) -> dict[str, Any]:
        return {"directory": self.label, "ok": not self.exit_code, "check": self.check,
                "changed": [result.file for result in self.changed], "written": list(self.written),
                "refused": [{"file": result.file, "problem": result.problem} for result in self.refused],
                "unchanged": [r.file for r in self.results if not r.changed and r.problem is None]}


@dataclass(frozen=True)
class ReplayRun:
    """``agentauthz replay``: recorded decisions decided again by candidate policies.

    Attributes:
        audit: the audit log as named (``-`` for stdin).
        label: the candidate store directory as named.
        report: the counts and examples.
        elapsed: seconds.
        fail_on_flip: a flipped decision fails the run.
    """

    audit: str
    label: str
    report: ReplayReport
    elapsed: float
    fail_on_flip: bool = False

    @property
    def exit_code(self) -> int:
        return _status(self.fail_on_flip and bool(self.report.flips))

    def to_json(self) -> dict[str, Any]:
        return {"audit": self.audit, "policies": self.label, "seconds": round(self.elapsed, 4),
                **self.report.to_json()}


def store_summary(store: PolicyStore) -> str:
    """``3 policies, 1 template, 2 links, 5 entities, schema``.

    Example:
        >>> store_summary(PolicyStore.from_text("permit(principal, action, resource);"))
        '1 policy, 0 templates, 0 links, 0 entities, no schema'
    """
    templates = sum(1 for policy in store.policies if policy.is_template)
    parts = [plural(len(store.policies) - templates, "policy", "policies"), plural(templates, "template"),
             plural(len(store.links), "link"), plural(len(store.entities), "entity", "entities"),
             "schema" if store.schema_text is not None else "no schema"]
    return ", ".join(parts)


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 file``, ``2 files``."""
    return f"{count} {word}" if count == 1 else f"{count} {words or word + 's'}"
