"""Push translated policies to an AgentCore policy engine, pull them back, and diff: idempotent, as for AVP.

The client is any boto3 ``bedrock-agentcore-control`` client (this module never
imports boto3). Each pushed policy carries our id in its description
(``agentauthz:<id>``, as on Verified Permissions) and a name derived from it
(:func:`~agentauthz.integrations.agentcore.policy_names`), so a second push
finds everything unchanged. ``@mode("shadow")`` policies are pushed with
``enforcementMode="LOG_ONLY"`` (logged, never enforced: our shadow mode), others
``ACTIVE``. Every call's failure becomes an :class:`~agentauthz.EngineError`
naming the operation and the service's error code.

Order matters while a push runs, since each policy takes effect on its own:
forbids are created and updated before permits, and on deletion permits go
before forbids; with ``wait`` each phase is ACTIVE (or gone) before the next
starts, so a half-applied push never allows more than both ends do. A renamed
policy is created before the old one is deleted.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cedarpy

from agentauthz._errors import ConfigurationError, EngineError, PolicyError
from agentauthz.avp._sync import _call, _code, _failed, _normal, _pages, _with_id
from agentauthz.avp._wire import DESCRIPTION_PREFIX
from agentauthz.integrations.agentcore._limits import limit_problems, policy_description, policy_names
from agentauthz.integrations.agentcore._translate import TranslatedPolicy, Translation
from agentauthz.policy._store import truncate

__all__ = ["PolicyChange", "PullResult", "PushPlan", "apply_push", "plan_push", "policy_engine_id", "pull"]

SERVICE = "AgentCore Policy"
Change = Literal["create", "update", "replace", "delete", "unchanged", "extra"]
_ENGINE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]*-[a-z0-9_]{10}")
_FAILED = ("CREATE_FAILED", "UPDATE_FAILED", "DELETE_FAILED")


@dataclass(frozen=True)
class PolicyChange:
    """One difference between the translated policies and a policy engine.

    Attributes:
        id: our policy id (the AgentCore name for policies agentauthz did not write).
        action: ``create``; ``update`` (statement or enforcement mode, or the
            last update failed); ``replace`` (the name changed, which AgentCore
            cannot update: the new policy is created, then the old one deleted;
            or the last create failed: deleted, then created); ``delete``;
            ``unchanged``; ``extra`` (in the engine only: deleted with ``prune``).
        reason: why it is an update, a replacement or extra.
        policy_id: AgentCore's id of the policy, when it exists there (after
            :func:`apply_push`: the id of the policy it created, for a create or
            a replacement).
        effect: ``permit`` or ``forbid`` (``forbid`` when a remote statement does not parse).
        renamed: a replacement whose new policy has another name (created before the old one goes).
    """

    id: str
    action: Change
    reason: str = ""
    policy_id: str | None = None
    effect: str = "forbid"
    renamed: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON form for ``--json`` output."""
        out: dict[str, Any] = {"id": self.id, "action": self.action}
        if self.reason:
            out["reason"] = self.reason
        if self.policy_id:
            out["policyId"] = self.policy_id
        return out


@dataclass(frozen=True)
class PushPlan:
    """What a push would change; nothing is changed until :func:`apply_push`.

    Attributes:
        policy_engine_id: the policy engine compared with.
        changes: every difference, unchanged and extra policies included.
        wanted: the translated policies by our id.
    """

    policy_engine_id: str
    changes: tuple[PolicyChange, ...]
    wanted: Mapping[str, TranslatedPolicy]

    def counts(self) -> dict[str, int]:
        """Changes per action."""
        counts = dict.fromkeys(("create", "update", "replace", "delete", "unchanged", "extra"), 0)
        for change in self.changes:
            counts[change.action] += 1
        return counts

    @property
    def pending(self) -> list[PolicyChange]:
        """The changes a push makes, in the order it makes them (forbids first, permit deletions first)."""
        writes = [c for c in self.changes if c.action in ("create", "update", "replace")]
        deletes = [c for c in self.changes if c.action == "delete"]
        return (sorted(writes, key=lambda c: c.effect != "forbid")
                + sorted(deletes, key=lambda c: c.effect == "forbid"))


def policy_engine_id(client: Any, name_or_id: str, *, create: bool = False) -> str:
    """The id of a policy engine given its id or its name; with ``create``, made when no engine has the name.

    Raises:
        ConfigurationError: no policy engine has that name (and ``create`` is off).
        EngineError: listing or creating engines failed.
    """
    if _ENGINE_ID.fullmatch(name_or_id):
        return name_or_id
    for engine in _pages(client, "list_policy_engines", "policyEngines", service=SERVICE):
        if engine.get("name") == name_or_id:
            return str(engine["policyEngineId"])
    if not create:
        raise ConfigurationError(f"no AgentCore policy engine is named {truncate(name_or_id, 60)!r}")
    made = _call(client, "create_policy_engine", service=SERVICE, name=name_or_id,
                 description="Cedar policies pushed by agentauthz")
    return str(made["policyEngineId"])


def _remote(client: Any, engine_id: str) -> list[dict[str, Any]]:
    return list(_pages(client, "list_policies", "policies", service=SERVICE, policyEngineId=engine_id))


def _our_id(item: Mapping[str, Any]) -> str | None:
    description = item.get("description")
    if isinstance(description, str) and description.startswith(DESCRIPTION_PREFIX) and len(
            description) > len(DESCRIPTION_PREFIX):
        return description[len(DESCRIPTION_PREFIX):]
    return None


def _statement(item: Mapping[str, Any]) -> str:
    definition = item.get("definition") or {}
    body = definition.get("cedar") or definition.get("policy") or {}
    return str(body.get("statement", ""))


def _effect(statement: str) -> str:
    """``permit`` or ``forbid`` of a statement; an unreadable one counts as a forbid (deleted last)."""
    try:
        parsed = json.loads(cedarpy.policies_to_json_str(statement))
        [policy] = parsed["staticPolicies"].values()
        return "permit" if policy.get("effect") == "permit" else "forbid"
    except (ValueError, KeyError, TypeError):
        return "forbid"


def _mode(policy: TranslatedPolicy) -> str:
    return "LOG_ONLY" if policy.shadow else "ACTIVE"


def plan_push(translation: Translation, client: Any, policy_engine: str, *, prune: bool = False) -> PushPlan:
    """Compare translated policies with what a policy engine holds; nothing is changed.

    Raises:
        PolicyError: a policy breaks one of AgentCore's limits (checked before any call).
        EngineError: the policy engine could not be read.
    """
    problems = limit_problems(translation.policies)
    if problems:
        raise PolicyError(problems)
    names = policy_names(p.id for p in translation.policies)
    wanted = {p.id: p for p in translation.policies}
    remote: dict[str, dict[str, Any]] = {}
    changes: list[PolicyChange] = []
    for item in _remote(client, policy_engine):
        ours = _our_id(item)
        if ours is None or ours not in wanted or ours in remote:
            label = ours or str(item.get("name", item.get("policyId")))
            changes.append(PolicyChange(label, "delete" if prune else "extra", "not in the translation",
                                        str(item["policyId"]), _effect(_statement(item))))
        else:
            remote[ours] = item
    for our_id, policy in sorted(wanted.items()):
        changes.append(_change(policy, names[our_id], remote.get(our_id)))
    return PushPlan(policy_engine, tuple(changes), wanted)


def _change(policy: TranslatedPolicy, name: str, item: Mapping[str, Any] | None) -> PolicyChange:
    if item is None:
        return PolicyChange(policy.id, "create", effect=policy.effect)
    policy_id = str(item["policyId"])
    if item.get("name") != name:
        return PolicyChange(policy.id, "replace", "name changed", policy_id, policy.effect, renamed=True)
    if item.get("status") == "CREATE_FAILED":
        return PolicyChange(policy.id, "replace", "status CREATE_FAILED", policy_id, policy.effect)
    reasons = [f"status {item['status']}"] if item.get("status") == "UPDATE_FAILED" else []
    if _normal(_statement(item)) != _normal(policy.statement):
        reasons.append("statement changed")
    if (item.get("enforcementMode") or "ACTIVE") != _mode(policy):
        reasons.append(f"enforcement mode {item.get('enforcementMode') or 'ACTIVE'} -> {_mode(policy)}")
    if reasons:
        return PolicyChange(policy.id, "update", ", ".join(reasons), policy_id, policy.effect)
    return PolicyChange(policy.id, "unchanged", policy_id=policy_id, effect=policy.effect)


def apply_push(plan: PushPlan, client: Any, *, wait: bool = False, delay: float = 5.0,
               attempts: int = 60) -> list[PolicyChange]:
    """Make a plan's changes and return them, in four phases: forbids written, permits written,
    permits deleted, forbids deleted.

    AgentCore creates, updates and deletes policies asynchronously. With
    ``wait``, each phase is polled (``GetPolicy`` every ``delay`` seconds, at
    most ``attempts`` times) until its policies are ``ACTIVE`` (or gone) before
    the next phase starts, so no permit is written while a forbid it relies on
    is still pending, and a policy the service fails stops the push there.

    Raises:
        EngineError: a call failed, or (with ``wait``) a policy ended
            ``*_FAILED`` or did not settle in time; the message says which
            change failed and which were made before it (they stay made: push
            again to finish).
    """
    done: list[PolicyChange] = []
    names = policy_names(plan.wanted)
    for phase in _phases(plan.pending):
        made: list[PolicyChange] = []
        for change in phase:
            try:
                made.append(_apply(change, plan, names, client))
            except EngineError as exc:
                raise _stopped(change, [*done, *made], exc) from exc
        done += made
        if wait:
            try:
                _settle(client, plan.policy_engine_id, made, delay, attempts)
            except EngineError as exc:
                raise _stopped(phase[0], done, exc) from exc
    return done


def _phases(pending: Sequence[PolicyChange]) -> list[list[PolicyChange]]:
    """Consecutive changes of the same kind (write or delete) and effect."""
    phases: list[list[PolicyChange]] = []
    for change in pending:
        key = (change.action == "delete", change.effect)
        if phases and (phases[-1][0].action == "delete", phases[-1][0].effect) == key:
            phases[-1].append(change)
        else:
            phases.append([change])
    return phases


def _stopped(change: PolicyChange, done: Sequence[PolicyChange], exc: EngineError) -> EngineError:
    made = ", ".join(f"{c.action} {c.id}" for c in done) or "none"
    return EngineError(f"AgentCore push stopped at {change.action} {truncate(change.id, 80)!r} "
                       f"(changes made before it: {truncate(made, 300)}): {exc}")


def _apply(change: PolicyChange, plan: PushPlan, names: Mapping[str, str], client: Any) -> PolicyChange:
    """Make one change; the change with the id of the policy it created, if any."""
    engine = plan.policy_engine_id
    if change.action == "delete":
        _delete(client, engine, change.policy_id)
        return change
    policy = plan.wanted[change.id]
    if change.action == "update":
        _call(client, "update_policy", service=SERVICE, policyEngineId=engine, policyId=change.policy_id,
              definition={"cedar": {"statement": policy.statement}},
              description={"optionalValue": policy_description(policy.id)},
              validationMode="FAIL_ON_ANY_FINDINGS", enforcementMode=_mode(policy))
        return change
    if change.action == "replace" and not change.renamed:   # same name: the failed one must go first
        _delete(client, engine, change.policy_id)
    created = _create(policy, engine, names, client)
    if change.action == "replace" and change.renamed:        # the new one exists before the old one goes
        _delete(client, engine, change.policy_id)
    return dataclasses.replace(change, policy_id=created)


def _delete(client: Any, engine: str, policy_id: str | None) -> None:
    _call(client, "delete_policy", service=SERVICE, policyEngineId=engine, policyId=policy_id)


def _create(policy: TranslatedPolicy, engine: str, names: Mapping[str, str], client: Any) -> str:
    answer = _call(client, "create_policy", service=SERVICE, policyEngineId=engine, name=names[policy.id],
                   definition={"cedar": {"statement": policy.statement}},
                   description=policy_description(policy.id), validationMode="FAIL_ON_ANY_FINDINGS",
                   enforcementMode=_mode(policy))
    return str(answer["policyId"])


def _settle(client: Any, engine: str, changes: Sequence[PolicyChange], delay: float, attempts: int) -> None:
    """Poll until written policies are ACTIVE and deleted ones gone; a *_FAILED status is an error."""
    pending = {str(c.policy_id): c for c in changes if c.policy_id}
    for attempt in range(attempts):
        for policy_id, change in list(pending.items()):
            try:
                item = client.get_policy(policyEngineId=engine, policyId=policy_id)
            except Exception as exc:
                if change.action == "delete" and _code(exc) == "ResourceNotFoundException":
                    del pending[policy_id]
                    continue
                raise _failed("get_policy", exc, SERVICE) from exc
            status = item.get("status")
            if status in _FAILED:
                reasons = "; ".join(str(r) for r in item.get("statusReasons") or ()) or "no reason given"
                raise EngineError(f"AgentCore policy {truncate(change.id, 80)!r} is {status}: "
                                  f"{truncate(reasons, 300)}")
            if status == "ACTIVE" and change.action != "delete":
                del pending[policy_id]
        if not pending:
            return
        if attempt + 1 < attempts:
            time.sleep(delay)
    late = ", ".join(c.id for c in pending.values())
    raise EngineError(f"AgentCore policies did not settle in time: {truncate(late, 200)}")


@dataclass(frozen=True)
class PullResult:
    """What :func:`pull` wrote."""

    path: Path | None
    policies: int
    shadow: int
    warnings: tuple[str, ...] = ()


def pull(client: Any, policy_engine: str, out_dir: str | Path) -> PullResult:
    """Write a policy engine's Cedar policies to ``<out_dir>/policies.cedar``.

    Each statement carries ``@id`` (ours from the description, else the
    AgentCore name) and ``@mode("shadow")`` when it is ``LOG_ONLY``, so
    loading the directory reproduces what the engine enforces and logs.
    Non-Cedar (Dogwood) policies and policies whose creation failed (the
    engine does not enforce them) are not written; each is named in a warning.
    ``out_dir`` must be empty or absent.

    Raises:
        ConfigurationError: ``out_dir`` holds files already.
        EngineError: the policy engine could not be read.
    """
    root = Path(out_dir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigurationError(f"{root}: not an empty directory (pull never overwrites files)")
    blocks: list[str] = []
    warnings: list[str] = []
    shadow = 0
    for item in sorted(_remote(client, policy_engine), key=lambda i: _our_id(i) or str(i.get("name"))):
        label = _our_id(item) or str(item.get("name"))
        if "cedar" not in (item.get("definition") or {}):
            warnings.append(f"{label}: not a Cedar policy (Dogwood or generated); not written")
            continue
        if item.get("status") == "CREATE_FAILED":
            warnings.append(f"{label}: status CREATE_FAILED (the engine does not enforce it); not written")
            continue
        if item.get("status") in _FAILED:
            warnings.append(f"{label}: status {item['status']}; written as the engine reports it")
        text, _, warning = _with_id(_statement(item), label)
        if warning:
            warnings.append(warning)
        if item.get("enforcementMode") == "LOG_ONLY":
            text = f'@mode("shadow")\n{text}'
            shadow += 1
        blocks.append(text)
    root.mkdir(parents=True, exist_ok=True)
    path = None
    if blocks:
        path = root / "policies.cedar"
        path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return PullResult(path, len(blocks), shadow, tuple(warnings))
