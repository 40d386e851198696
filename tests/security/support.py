"""Helpers shared by the attack-class modules: the plain-cedarpy reference and process isolation.

The reference decides a request with ``cedarpy.is_authorized`` given the policy
text and the entities directly (no agentauthz code between), so a test that
compares the library with it catches any divergence the library introduces.

Loads that could crash the interpreter (cedarpy segfaults on deep nesting) run
in a child process: a crash there fails the test instead of killing pytest.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cedarpy

import agentauthz as az
from agentauthz.session import Approval, CallRecord, SessionSnapshot, SessionStore

ROOT = Path(__file__).resolve().parents[2]

#: Values seeded in attributes, context, arguments and tokens; none may reach a log or an error.
SECRETS = (
    "s3cr3t-SSN-078-05-1120",
    "hunter2",  # looks like an identifier: redaction heuristics that keep names must still drop it
    "tok_ABCDEF0123456789",
    "salary=987654",
    "PIN:4242",
)


def reference_allows(
    policies: str,
    request: az.Request,
    entities: Iterable[az.Entity] = (),
    schema: str | None = None,
) -> bool:
    """Cedar's own answer: ``cedarpy.is_authorized`` on the text and the entities, nothing cached."""
    cedar_request, entity_json = _cedar_request(request, entities)
    result = cedarpy.is_authorized(cedar_request, policies, entity_json, schema=schema)
    return bool(result.decision == cedarpy.Decision.Allow)


_FORBID = re.compile(r'\s*(@\w+\("[^"]*"\)\s*)*forbid\b')


def reference_allows_without_failed_forbids(
    policies: str,
    request: az.Request,
    entities: Iterable[az.Entity] = (),
) -> bool:
    """:func:`reference_allows`, and no forbid fails to evaluate (``Authorizer(policy_errors="deny")``).

    Each forbid is evaluated alone beside an unconditional permit, so the
    reference needs neither policy ids nor the library's error parsing. The
    policies are split at ``;`` (none of the test policies holds one in a string).
    """
    entities = list(entities)
    if not reference_allows(policies, request, entities):
        return False
    cedar_request, entity_json = _cedar_request(request, entities)
    for statement in policies.split(";"):
        if _FORBID.match(statement):
            alone = f"permit(principal, action, resource);\n{statement};"
            if cedarpy.is_authorized(cedar_request, alone, entity_json).diagnostics.errors:
                return False
    return True


def _cedar_request(request: az.Request, entities: Iterable[az.Entity]) -> tuple[dict[str, Any], str]:
    action = request.action if isinstance(request.action, az.EntityUID) else az.EntityUID(
        "Action", request.action)
    cedar_request = {
        "principal": request.principal.to_cedar(),
        "action": action.to_cedar(),
        "resource": request.resource.to_cedar(),
        "context": request.to_cedar()["context"],
    }
    return cedar_request, json.dumps([entity.to_cedar() for entity in entities])


@dataclass(frozen=True)
class Isolated:
    """What a child Python process did: exit code (negative: killed by that signal) and output."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def crashed(self) -> bool:
        return self.returncode < 0


def run_isolated(code: str, *, timeout: float = 30.0, cwd: Path | None = None) -> Isolated:
    """Run ``code`` in a fresh interpreter with agentauthz importable.

    A segfault shows as a negative return code; a hang past ``timeout``
    raises ``subprocess.TimeoutExpired`` (the test fails, pytest survives).
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    completed = subprocess.run(  # the code goes on stdin: no limit on its size
        [sys.executable, "-"], input=textwrap.dedent(code),
        capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd or ROOT, check=False,
    )
    return Isolated(completed.returncode, completed.stdout, completed.stderr)


def nested(depth: int, open_: str, close: str, inner: str) -> str:
    """``open_ * depth + inner + close * depth``."""
    return open_ * depth + inner + close * depth


def leaks(texts: Iterable[str], secrets: Sequence[str] = SECRETS) -> list[str]:
    """The secrets that appear in any of ``texts``."""
    joined = "\n".join(texts)
    return [secret for secret in secrets if secret in joined]


def event_texts(events: Iterable[Any], *, without_request: bool = True) -> list[str]:
    """Each audit event as its JSON line, the opted-in ``request`` field left out."""
    out = []
    for event in events:
        data = json.loads(event.to_json())
        if without_request:
            data.pop("request", None)
        out.append(json.dumps(data))
    return out


class FailingStore:
    """The SessionStore protocol over a real store; the operations named in ``failing`` raise.

    ``failing[name] = n`` fails the next ``n`` calls of ``name`` with the error a
    locked SQLite database gives.
    """

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.failing: dict[str, int] = {}

    def _check(self, name: str) -> None:
        if self.failing.get(name, 0) > 0:
            self.failing[name] -= 1
            raise sqlite3.OperationalError("database is locked")

    def load(self, session_id: str, *, since: float, history: int) -> SessionSnapshot:
        self._check("load")
        return self.inner.load(session_id, since=since, history=history)

    def admit(self, session_id: str, call: CallRecord, *, owner: str, version: int) -> Any:
        self._check("admit")
        return self.inner.admit(session_id, call, owner=owner, version=version)

    def complete(self, session_id: str, call_id: str, *, now: float) -> bool:
        self._check("complete")
        return self.inner.complete(session_id, call_id, now=now)

    def release(self, session_id: str, call_id: str) -> None:
        self._check("release")
        self.inner.release(session_id, call_id)

    def add_labels(self, session_id: str, labels: Iterable[str], *, owner: str) -> None:
        self._check("add_labels")
        self.inner.add_labels(session_id, labels, owner=owner)

    def approve(self, session_id: str, approval: Approval) -> None:
        self._check("approve")
        self.inner.approve(session_id, approval)

    def revoke(self, session_id: str, approval: Approval) -> bool:
        self._check("revoke")
        return self.inner.revoke(session_id, approval)

    def delete(self, session_id: str) -> None:
        self._check("delete")
        self.inner.delete(session_id)
