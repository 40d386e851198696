"""Stores and audit logs the explorer's tests (``agentauthz explore``) open."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import agentauthz as az
from agentauthz.testing import capture_decisions
from tests.policy_stores import EXAMPLE_STORE, copy_example_store

U = az.EntityUID

TOKEN = "test-token-0123456789"

#: (user, action, resource, context, timestamp): the decisions the recorded audit log holds.
CALLS: list[tuple[str, str, az.EntityUID, dict[str, Any], float]] = [
    ("carol", "issue_refund", U("Tool", "issue_refund"), {"input": {"order_id": "o-1", "amount": 4200}},
     1_780_000_000.0),  # 2026-05-28 20:26:40 UTC
    ("carol", "issue_refund", U("Tool", "issue_refund"), {"input": {"order_id": "o-2", "amount": -5}},
     1_780_003_600.0),
    ("alice", "search_documents", U("Tool", "search_documents"), {"input": {"query": "q"}}, 1_780_007_200.0),
    ("bob", "read", U("Document", "acme-handbook"), {}, 1_780_010_800.0),
    ("dave", "issue_refund", U("Tool", "issue_refund"), {"input": {"order_id": "o-3", "amount": 10}},
     1_780_014_400.0),
]

#: Markup in every place a value can reach the page; each sets window.__pwned if it ever runs.
HOSTILE_POLICY = """\
// <script>window.__pwned = "comment"</script>
@id("<img src=x onerror=window.__pwned='id'>")
permit (
  principal == User::"<script>window.__pwned='principal'</script>",
  action == Action::"</script><script>window.__pwned='action'</script>",
  resource
);

@id("<script>window.__pwned='warning'</script>")
forbid (principal, action, resource) when { false };
"""
HOSTILE_SCHEMA = """\
entity User = { note?: String };
entity Doc;
action "</script><script>window.__pwned='action'</script>"
  appliesTo { principal: User, resource: [User, Doc] };
"""
HOSTILE_ENTITIES = [{"uid": {"type": "User", "id": "<script>window.__pwned='principal'</script>"},
                     "attrs": {"note": "<b onmouseover=window.__pwned='attr'>x</b>"}, "parents": []}]
HOSTILE_EVENT = {
    "principal": "User::\"<script>window.__pwned='audit'</script>\"",
    "action": "</td><svg onload=window.__pwned='svg'>", "resource": "Tool::\"x\"", "decision": "deny",
    "enforced": True, "reasons": ["<i>policy</i>"], "errors": [],
    "fingerprint": "f", "engine": "local", "mode": "enforce", "elapsed_us": 1, "correlation_id": "c",
    "timestamp": 1_780_000_000.0,
}
#: Texts of the hostile store and log that the page must show as they are.
HOSTILE_TEXTS = ("<script>window.__pwned = \"comment\"</script>", "<img src=x onerror=window.__pwned='id'>",
                 "<script>window.__pwned='audit'</script>")


def example_store(root: Path) -> Path:
    """A copy of the example store."""
    return copy_example_store(root)


def recorded_audit_log(path: Path) -> Path:
    """The decisions of :data:`CALLS` on the example store, recorded with their requests; one stray line."""
    authz = az.Authorizer.from_directory(EXAMPLE_STORE, audit=[], record_requests=True)
    lines = []
    with capture_decisions() as events:
        for user, action, resource, context, _ in CALLS:
            with authz.acting_as(U("User", user)):
                authz.authorize(action=action, resource=resource, context=context)
    for event, call in zip(events, CALLS, strict=True):
        data = json.loads(event.to_json())
        data["timestamp"] = call[4]
        lines.append(json.dumps(data))
    lines.append("this line is no audit event")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def hostile_store(root: Path) -> tuple[Path, Path]:
    """A store and an audit log whose every value is markup; returns (store, audit log)."""
    root.mkdir(parents=True)
    (root / "policies.cedar").write_text(HOSTILE_POLICY, encoding="utf-8")
    (root / "entities.json").write_text(json.dumps(HOSTILE_ENTITIES), encoding="utf-8")
    (root / "schema.cedarschema").write_text(HOSTILE_SCHEMA, encoding="utf-8")
    audit = root.parent / "hostile-audit.jsonl"
    audit.write_text(json.dumps(HOSTILE_EVENT) + "\n<script>window.__pwned='line'</script>\n",
                     encoding="utf-8")
    return root, audit


def tree_state(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below ``root`` with its bytes and modification time: to prove nothing was written."""
    return {path.relative_to(root).as_posix(): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(root.rglob("*")) if path.is_file()}
