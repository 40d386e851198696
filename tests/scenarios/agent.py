"""A scripted agent run: the model follows its script, injected steps included; the policies decide.

The scripted model does the user's task, then obeys the instruction it read in a tool result
(the attacker's calls). Each call goes through the guarded tool exactly as a model's would.
A call held for approval (``az.ApprovalRequired``) goes to the *human*, who approves the
calls they asked for (``authz.approve``) and declines the rest; an approved call is made
again and must then run. Every denial is also decided again, independently, with
``context.session.approved`` set: a held call must be one an approval lets run, a refused
call one it does not.

What a run reports about each call comes from what happened, not from what was decided: an
injected call "ran" when the tool's body changed the world.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import agentauthz as az
from agentauthz._entities import referenced_uids
from tests.scenarios.assistant import Assistant, build
from tests.scenarios.world import Channel, Event, File, World, WorldEntities

ALICE = az.EntityUID("User", "alice")


@dataclass(frozen=True)
class Call:
    """One tool call the scripted model emits."""

    tool: str
    args: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.tool}({json.dumps(self.args, sort_keys=True)})"


@dataclass(frozen=True)
class Scenario:
    """A user task, the content that carries the injection, and the script the model follows.

    Attributes:
        id: short name (``bank-bill-new-iban``).
        kind: the scenario class (a row of the table).
        task: what the user asked.
        plant: puts the scenario's content (the injected text inside it) into the world.
        injection: the attacker's text, verbatim as planted.
        user_calls: the calls that do the user's task, in order.
        injected_calls: the calls the injection asks for; the model makes them after the task.
    """

    id: str
    kind: str
    task: str
    plant: Callable[[World], None]
    injection: str
    user_calls: tuple[Call, ...]
    injected_calls: tuple[Call, ...]


class Outcome(StrEnum):
    RAN = "ran"                  # the tool ran on the first attempt
    APPROVED = "approved"        # held (ApprovalRequired), the human approved, then it ran
    HELD = "held"                # held (ApprovalRequired); the human declined, so it did not run
    REFUSED = "refused"          # denied (AccessDenied): no approval is asked
    FAILED = "failed"            # an approved call that was denied again


@dataclass
class CallResult:
    call: Call
    by_user: bool
    outcome: Outcome
    reasons: tuple[str, ...] = ()
    changed_world: bool = False
    returned: str | None = None
    #: for a denied call, whether the same request with ``context.session.approved`` is allowed
    approval_would_admit: bool | None = None


@dataclass
class RunResult:
    scenario: Scenario
    calls: list[CallResult] = field(default_factory=list)
    decisions: int = 0
    grants: int = 0
    audit_events: int = 0
    approval_events: list[str] = field(default_factory=list)
    engines: set[str] = field(default_factory=set)
    changes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def user(self) -> list[CallResult]:
        return [c for c in self.calls if c.by_user]

    @property
    def injected(self) -> list[CallResult]:
        return [c for c in self.calls if not c.by_user]


def base_world() -> World:
    """What every run starts from: the user's files, channels and calendar (scenarios add the rest)."""
    world = World()
    world.files.update({
        "q3-budget.xlsx": File("q3-budget.xlsx", "alice", "Q3 budget: travel 18,400; events 9,950; "
                                                          "salaries (see HR)", confidential=True),
        "draft-old-notes.txt": File("draft-old-notes.txt", "alice", "old meeting notes"),
        "trip-notes.md": File("trip-notes.md", "alice", "Lisbon trip: hotel near Alfama"),
        "team-photo.jpg": File("team-photo.jpg", "alice", "<jpeg>"),
        "customer-list.csv": File("customer-list.csv", "alice", "name,email,phone\n...", confidential=True),
    })
    world.channels.update({
        "general": Channel("general", internal=True, members={"alice", "bob", "carol"}),
        "launch": Channel("launch", internal=True, members={"alice", "bob"}),
        "partner-acme": Channel("partner-acme", internal=False,
                                members={"alice", "bob", "tom.baker@partner-agency.example"}),
        "vendors": Channel("vendors", internal=False, members={"alice", "sales@vendorhub.example"}),
    })
    world.events["ev-standup"] = Event("ev-standup", "alice@corp.example", "Standup", "2026-12-07T09:00",
                                       "Daily standup")
    world.transactions.append({"date": "2026-12-01", "amount": 3200, "party": "Corp GmbH", "memo": "Salary"})
    return world


class ScriptedAgent:
    """Runs one scenario for Alice in its own session and reports what each call did."""

    def __init__(self, scenario: Scenario, store: az.PolicyStore, what_if: az.LocalEngine | None = None,
                 engine: az.Engine | None = None) -> None:
        self.scenario = scenario
        self.what_if = what_if or az.LocalEngine(store)
        self.world = base_world()
        scenario.plant(self.world)
        self.assistant: Assistant = build(self.world, store, engine)
        self.approvable = frozenset(
            policy.id for policy in store.policies if policy.annotations.get("approval") == "required")

    def run(self) -> RunResult:
        result = RunResult(self.scenario)
        authz = self.assistant.authz
        script = [(call, True) for call in self.scenario.user_calls]
        script += [(call, False) for call in self.scenario.injected_calls]
        with authz.acting_as(ALICE), authz.session(f"run-{self.scenario.id}") as session:
            session.user_said(self.scenario.task)  # the application registers the human's message
            for call, by_user in script:
                result.calls.append(self._step(call, by_user, result))
        events = self.assistant.audit.events
        result.audit_events = len(events)
        result.approval_events = [e.extra["approval"] for e in events if "approval" in e.extra]
        result.engines = {e.engine for e in events if "session." not in e.action}  # not the grants
        result.changes = list(self.world.changes)
        return result

    def _step(self, call: Call, by_user: bool, result: RunResult) -> CallResult:
        denied, returned = self._attempt(call, result)
        if denied is None:
            return CallResult(call, by_user, Outcome.RAN, changed_world=self._changed(call),
                              returned=returned)
        reasons, what_if = denied.decision.reasons, self._approval_would_admit()
        if not isinstance(denied, az.ApprovalRequired):
            return CallResult(call, by_user, Outcome.REFUSED, reasons, approval_would_admit=what_if)
        if not by_user:  # the human reads the exact call and declines what they did not ask for
            return CallResult(call, by_user, Outcome.HELD, reasons, approval_would_admit=what_if)
        self.assistant.authz.approve(denied.approval, granted_by="alice")
        result.grants += 1
        again, returned = self._attempt(call, result)
        outcome = Outcome.APPROVED if again is None else Outcome.FAILED
        return CallResult(call, by_user, outcome, reasons, changed_world=self._changed(call),
                          returned=returned, approval_would_admit=what_if)

    def _attempt(self, call: Call, result: RunResult) -> tuple[az.AccessDenied | None, str | None]:
        """Make the call as the model would; the refusal, or what the tool returned."""
        result.decisions += 1
        try:
            return None, str(self.assistant.tools[call.tool](**call.args))
        except az.AccessDenied as denied:
            return denied, None

    def _approval_would_admit(self) -> bool:
        """Would approving the call just denied let it run? Decided again with ``approved`` set.

        Computed apart from the library's own approval probe, from the audit event: only
        forbids annotated ``@approval("required")`` may have denied it, and with the approval
        the same request (same session facts, same entities) must be allowed.
        """
        event = self.assistant.audit.events[-1]
        if not event.reasons or not set(event.reasons) <= self.approvable or event.request is None:
            return False
        request = az.Request.from_cedar(json.loads(json.dumps(event.request["request"])))
        approved = {**request.context, "session": {**request.context["session"], "approved": True}}
        request = az.Request(principal=request.principal, action=request.action, resource=request.resource,
                             context=approved)
        # audit events hold the entities given with a call, not the provider's: fetch them again
        entities = WorldEntities(self.world)
        found = entities.get_entities([request.principal, request.resource])
        found += entities.get_entities(list(referenced_uids([entity.attrs for entity in found])))
        return self.what_if.decide([request], found)[0].allowed

    def _changed(self, call: Call) -> bool:
        return (call.tool, call.args) in self.world.changes


def run_all(scenarios: Sequence[Scenario], store: az.PolicyStore,
            engine: az.Engine | None = None) -> list[RunResult]:
    """Run each scenario in its own world and session, decided by ``store`` (or by ``engine`` over it)."""
    local = az.LocalEngine(store)
    return [ScriptedAgent(scenario, store, local, engine or local).run() for scenario in scenarios]
