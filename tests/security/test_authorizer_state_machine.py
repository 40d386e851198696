"""The Authorizer as a state machine, checked step by step against plain cedarpy.

State: a policy directory that is reloaded between several versions (and
broken ones, which must leave the last good version in force), the end user
bound with nested ``acting_as`` blocks (as an EntityUID or an Entity with its
own attributes), and the mode (enforce or shadow). Steps decide single
requests (sync and async), batches with explicit principals, filters over
inline resources, and guarded tool calls.

The reference model evaluates every request with ``cedarpy.is_authorized``
given the version's policy *text* and the entities directly (stored entities,
overridden by the request's own): no slicing, no pre-parsed handles, no
agentauthz code. Decisions must be identical, the determining policy ids too,
every decision must produce one audit event naming the version in force, and
the mode must only change whether a denied call goes ahead.

Hypothesis runs 60 programs of up to 30 steps (about 1,800 decisions checked).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import cedarpy
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import agentauthz as az
from agentauthz.testing import capture_decisions
from tests.strategies import (
    STATE_MACHINE_ACTIONS,
    STATE_MACHINE_DOCS,
    STATE_MACHINE_USERS,
    state_machine_contexts,
    state_machine_resources,
)

U = az.EntityUID

VERSIONS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "owners-and-admins": ("""
@id("read-public") permit(principal, action == Action::"read", resource) when { resource.public };
@id("owner-all") permit(principal, action, resource)
  when { resource has owner && resource.owner == principal };
@id("admins") permit(principal in Group::"admins", action, resource);
@id("no-write-frozen") forbid(principal, action == Action::"write", resource)
  when { resource has frozen && resource.frozen };
@id("mfa-delete") forbid(principal, action == Action::"delete", resource)
  unless { context has mfa && context.mfa };
""", [
        {"uid": {"type": "User", "id": "alice"}, "attrs": {"dept": "hr", "level": 3},
         "parents": [{"type": "Group", "id": "admins"}]},
        {"uid": {"type": "User", "id": "bob"}, "attrs": {"dept": "eng", "level": 1}, "parents": []},
        {"uid": {"type": "Doc", "id": "d1"}, "attrs": {"public": True, "owner": {"__entity": {
            "type": "User", "id": "bob"}}, "level": 1, "dept": "eng"}, "parents": []},
        {"uid": {"type": "Doc", "id": "d2"}, "attrs": {"public": False, "frozen": True, "owner": {
            "__entity": {"type": "User", "id": "carol"}}, "level": 2, "dept": "hr"},
         "parents": [{"type": "Folder", "id": "shared"}]},
    ]),
    "departments": ("""
@id("dept-read") permit(principal, action in [Action::"read", Action::"share"], resource)
  when { principal.dept == resource.dept };
@id("level-write") permit(principal, action == Action::"write", resource)
  when { principal.level >= resource.level };
@id("shared-folder") permit(principal, action, resource in Folder::"shared");
@id("no-bob") forbid(principal == User::"bob", action, resource);
@id("big-context") forbid(principal, action, resource) when { context.level > 3 };
""", [
        {"uid": {"type": "User", "id": "bob"}, "attrs": {"dept": "eng", "level": 5}, "parents": []},
        {"uid": {"type": "User", "id": "carol"}, "attrs": {"dept": "hr", "level": 2},
         "parents": [{"type": "Group", "id": "staff"}]},
        {"uid": {"type": "Doc", "id": "d1"}, "attrs": {"dept": "hr", "level": 1}, "parents": [
            {"type": "Folder", "id": "shared"}]},
        {"uid": {"type": "Doc", "id": "d3"}, "attrs": {"dept": "eng", "level": 4}, "parents": []},
    ]),
    "deny-all": ("", []),
    "allow-unless": ("""
@id("all") permit(principal, action, resource);
@id("ctx") forbid(principal, action, resource) when { context has level && context.level > 3 };
@id("erroring-forbid") forbid(principal, action, resource) when { resource.level > 100 };
@id("staff-no-share") forbid(principal in Group::"staff", action == Action::"share", resource);
""", [
        {"uid": {"type": "User", "id": "carol"}, "attrs": {}, "parents": [{"type": "Group", "id": "staff"}]},
        {"uid": {"type": "Doc", "id": "d2"}, "attrs": {"level": 200}, "parents": []},
    ]),
}
BROKEN = {
    "parse-error": "permit(principal, action resource);",
    "duplicate-id": '@id("x") permit(principal, action, resource);\n'
                    '@id("x") forbid(principal, action, resource);',
    "over-deep": "permit(principal, action, resource) when { " + "(" * 250 + "true" + ")" * 250 + " };",
}


def reference(version: str, request: az.Request, given: list[az.Entity]) -> tuple[bool, tuple[str, ...]]:
    """Cedar's answer on the version's text, the stored entities overridden by the given ones."""
    text, stored = VERSIONS[version]
    overridden = {entity.uid for entity in given}
    entities = [e for e in stored if az.EntityUID.from_cedar(e["uid"]) not in overridden]
    entities += [entity.to_cedar() for entity in given]
    action = request.action if isinstance(request.action, az.EntityUID) else U("Action", request.action)
    result = cedarpy.is_authorized(
        {"principal": request.principal.to_cedar(), "action": action.to_cedar(),
         "resource": request.resource.to_cedar(), "context": request.to_cedar()["context"]},
        text, json.dumps(entities))
    ids = _policy_ids(text)
    reasons = tuple(sorted(ids.get(r, r) for r in result.diagnostics.reasons))
    allowed = result.decision == cedarpy.Decision.Allow
    if allowed and _failed_effects(text, result.diagnostics.errors) - {"permit"}:
        return False, ()  # policy_errors="deny" (the default): a failed forbid denies
    return allowed, reasons


def _failed_effects(text: str, errors: list[str]) -> set[str]:
    """The effects of the policies cedarpy's errors name (``error while evaluating policy `policyN```)."""
    document = json.loads(cedarpy.policies_to_json_str(text))
    effects = {positional: body["effect"] for positional, body in document.get("staticPolicies", {}).items()}
    return {effects.get(match, "unknown")
            for error in errors for match in re.findall(r"evaluating policy `([^`]*)`", error)} or (
        {"unknown"} if errors else set())


def _policy_ids(text: str) -> dict[str, str]:
    """cedarpy's positional ids (policyN) -> the @id annotations, read from the text by cedarpy."""
    if not text.strip():
        return {}
    document = json.loads(cedarpy.policies_to_json_str(text))
    out = {}
    for positional, body in document.get("staticPolicies", {}).items():
        out[positional] = (body.get("annotations") or {}).get("id", positional)
    return out


class AuthorizerMachine(RuleBasedStateMachine):
    """One Authorizer over a directory store, driven by random programs."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="agentauthz-machine-"))
        self.version = "owners-and-admins"
        self._write(self.version)
        self.store = az.PolicyStore.from_directory(self.root)
        self.authz = az.Authorizer(az.LocalEngine(self.store), audit=[])
        self.bindings: list[tuple[AbstractContextManager[Any], az.Entity | az.EntityUID]] = []
        self.decisions = 0
        self.ran: list[str] = []

        @self.authz.guard(action="write", resource=lambda args: U("Doc", args["doc"]))
        def edit(doc: str, level: int) -> str:
            self.ran.append(doc)
            return "edited"

        self.edit = edit

    def _write(self, version: str, broken: str | None = None) -> None:
        for path in self.root.glob("*"):
            path.unlink()
        if broken is not None:
            (self.root / "policies.cedar").write_text(BROKEN[broken], encoding="utf-8")
            return
        text, entities = VERSIONS[version]
        (self.root / "policies.cedar").write_text(text, encoding="utf-8")
        if entities:
            (self.root / "entities.json").write_text(json.dumps(entities), encoding="utf-8")

    # -- state changes ---------------------------------------------------------------------------

    @rule(version=st.sampled_from(sorted(VERSIONS)))
    def reload(self, version: str) -> None:
        self._write(version)
        self.store.reload()
        self.version = version

    @rule(broken=st.sampled_from(sorted(BROKEN)))
    def reload_broken(self, broken: str) -> None:
        before = self.store.fingerprint
        self._write(self.version, broken)
        with pytest.raises(az.PolicyError):
            self.store.reload()
        assert self.store.fingerprint == before
        self._write(self.version)  # the directory goes back to what is in force

    @rule(user=st.sampled_from(STATE_MACHINE_USERS), as_entity=st.booleans(),
          attrs=st.fixed_dictionaries({}, optional={"dept": st.sampled_from(["hr", "eng"]),
                                                    "level": st.integers(0, 5)}))
    def bind(self, user: str, as_entity: bool, attrs: dict[str, Any]) -> None:
        principal: az.Entity | az.EntityUID = (
            az.Entity(uid=U("User", user), attrs=attrs) if as_entity else U("User", user))
        manager = self.authz.acting_as(principal)
        manager.__enter__()
        self.bindings.append((manager, principal))

    @precondition(lambda self: bool(self.bindings))
    @rule()
    def unbind(self) -> None:
        manager, _ = self.bindings.pop()
        manager.__exit__(None, None, None)

    @rule(mode=st.sampled_from(["enforce", "shadow"]))
    def switch_mode(self, mode: str) -> None:
        self.authz.mode = mode  # type: ignore[assignment]

    # -- decisions -------------------------------------------------------------------------------

    def _bound(self) -> tuple[az.EntityUID | None, list[az.Entity]]:
        if not self.bindings:
            return None, []
        principal = self.bindings[-1][1]
        if isinstance(principal, az.Entity):
            return principal.uid, [principal]
        return principal, []

    def _check(self, request: az.Request, given: list[az.Entity], decision: az.Decision) -> None:
        allowed, reasons = reference(self.version, request, given)
        assert decision.allowed == allowed, (self.version, request, given, decision)
        assert decision.reasons == reasons, (self.version, request, decision)
        assert decision.enforced == (self.authz.mode == "enforce")
        assert decision.admits == (allowed or self.authz.mode == "shadow")
        self.decisions += 1

    def _check_events(self, events: list[az.AuditEvent], count: int,
                      principals: list[az.EntityUID]) -> None:
        assert len(events) == count
        for event, principal in zip(events, principals, strict=True):
            assert event.fingerprint == self.store.fingerprint
            assert event.principal == str(principal)
            assert event.mode == self.authz.mode

    @rule(action=st.sampled_from(STATE_MACHINE_ACTIONS), resource=state_machine_resources,
          context=state_machine_contexts, use_async=st.booleans())
    def authorize(self, action: str, resource: az.Entity | az.EntityUID, context: dict[str, Any],
                  use_async: bool) -> None:
        principal, given = self._bound()
        if principal is None:
            with pytest.raises(az.IdentityError):
                self.authz.authorize(action=action, resource=resource, context=context)
            return
        if isinstance(resource, az.Entity):
            given = [*given, resource]
        with capture_decisions() as events:
            if use_async:
                decision = asyncio.run(self.authz.aauthorize(action=action, resource=resource,
                                                             context=context))
            else:
                decision = self.authz.authorize(action=action, resource=resource, context=context)
        uid = resource.uid if isinstance(resource, az.Entity) else resource
        self._check(az.Request(principal, action, uid, context), given, decision)
        self._check_events(events, 1, [principal])

    @rule(batch=st.lists(st.tuples(st.sampled_from(STATE_MACHINE_USERS),
                                   st.sampled_from(STATE_MACHINE_ACTIONS),
                                   st.sampled_from(STATE_MACHINE_DOCS), state_machine_contexts),
                         min_size=1, max_size=12))
    def authorize_many(self, batch: list[tuple[str, str, str, dict[str, Any]]]) -> None:
        requests = [az.Request(U("User", user), action, U("Doc", doc), context)
                    for user, action, doc, context in batch]
        with capture_decisions() as events:
            decisions = self.authz.authorize_many(requests)
        for request, decision in zip(requests, decisions, strict=True):
            self._check(request, [], decision)
        self._check_events(events, len(requests), [r.principal for r in requests])

    @precondition(lambda self: bool(self.bindings))
    @rule(items=st.lists(state_machine_resources, min_size=1, max_size=10),
          action=st.sampled_from(STATE_MACHINE_ACTIONS))
    def filter(self, items: list[az.Entity | az.EntityUID], action: str) -> None:
        principal, given = self._bound()
        assert principal is not None
        result = self.authz.filter(items, action=action, resource=lambda item: item)
        # Items naming one uid with different content are dropped as a conflict, never decided,
        # unless the uid is stored: then the stored entity decides and item content is ignored.
        contents: dict[az.EntityUID, set[str]] = {}
        for item in items:
            if isinstance(item, az.Entity):
                contents.setdefault(item.uid, set()).add(json.dumps(item.cedar, sort_keys=True))
        stored = {json.dumps(e["uid"], sort_keys=True): json.dumps(az.Entity.from_cedar(e).cedar,
                                                                   sort_keys=True)
                  for e in VERSIONS[self.version][1]}
        expected = []
        for item in items:
            uid = item.uid if isinstance(item, az.Entity) else item
            known = stored.get(json.dumps(uid.to_cedar(), sort_keys=True))
            if known is None and len(contents.get(uid, set())) > 1:
                continue
            inline = [] if known is not None else [
                e for e in items if isinstance(e, az.Entity) and e.uid == uid][:1]
            allowed, _ = reference(self.version, az.Request(principal, action, uid), [*given, *inline])
            if allowed or self.authz.mode == "shadow":
                expected.append(item)
        assert result.allowed == expected, (self.version, principal, action)
        self.decisions += len(items)

    @rule(doc=st.sampled_from(STATE_MACHINE_DOCS), level=st.integers(0, 5))
    def call_tool(self, doc: str, level: int) -> None:
        principal, given = self._bound()
        self.ran.clear()
        if principal is None:
            with pytest.raises(az.IdentityError):
                self.edit(doc=doc, level=level)
            assert self.ran == []
            return
        allowed, _ = reference(self.version, az.Request(principal, "write", U("Doc", doc),
                                                        {"input": {"doc": doc, "level": level}}), given)
        try:
            self.edit(doc=doc, level=level)
            went_ahead = True
        except az.AccessDenied:
            went_ahead = False
        assert went_ahead == (allowed or self.authz.mode == "shadow")
        assert self.ran == ([doc] if went_ahead else [])
        self.decisions += 1

    @invariant()
    def store_is_a_good_version(self) -> None:
        text, _ = VERSIONS[self.version]
        assert [p.text for p in self.store.policies] == [
            p.text for p in az.PolicyStore.from_text(text).policies]

    def teardown(self) -> None:
        while self.bindings:
            self.unbind()
        shutil.rmtree(self.root, ignore_errors=True)
        assert self.authz.identity is None


TestAuthorizerMachine = AuthorizerMachine.TestCase
TestAuthorizerMachine.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
