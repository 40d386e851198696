"""Synthetic policy stores for benchmarks: RBAC, ABAC, owner and forbid policies over four actions."""

from __future__ import annotations

import random
from dataclasses import dataclass

import agentauthz as az

ACTIONS = ("read", "write", "share", "delete")
DEPARTMENTS = ("hr", "finance", "eng", "sales", "legal")

SCHEMA = """
entity Group;
entity User in [Group] = { department: String, clearance: Long };
entity Folder;
entity Document in [Folder] = { department: String, classification: Long, owner: User };
action read, write, share, delete appliesTo {
  principal: User, resource: Document, context: { mfa?: Bool }
};
"""


@dataclass(frozen=True)
class Workload:
    """Policy text, schema, entities and requests for one benchmark case."""

    policies: str
    schema: str
    entities: list[az.Entity]
    requests: list[az.Request]


def _policy(index: int, rng: random.Random, groups: int, folders: int) -> str:
    action = ACTIONS[index % len(ACTIONS)]
    kind = index % 5
    if kind == 0:
        return (f'@id("rbac-{index}") permit(principal in Group::"g{rng.randrange(groups)}", '
                f'action == Action::"{action}", resource in Folder::"f{rng.randrange(folders)}");')
    if kind == 1:
        dept = rng.choice(DEPARTMENTS)
        return (f'@id("abac-{index}") permit(principal, action == Action::"{action}", resource) '
                f'when {{ principal.department == "{dept}" && resource.department == "{dept}" '
                f'&& principal.clearance >= resource.classification }};')
    if kind == 2:
        return (f'@id("owner-{index}") permit(principal, action == Action::"{action}", resource) '
                f'when {{ resource.owner == principal && resource.classification <= {index % 4} }};')
    if kind == 3:
        return (f'@id("forbid-{index}") forbid(principal, action == Action::"{action}", resource) '
                f'when {{ resource.classification > principal.clearance + {index % 3} }};')
    return (f'@id("mfa-{index}") forbid(principal, action == Action::"{action}", '
            f'resource in Folder::"f{rng.randrange(folders)}") unless {{ context has mfa && context.mfa }};')


def build(policy_count: int, entity_count: int, request_count: int = 200, seed: int = 7) -> Workload:
    """A deterministic workload with ``policy_count`` policies and about ``entity_count`` entities."""
    rng = random.Random(seed)
    groups = max(2, entity_count // 50)
    folders = max(2, entity_count // 50)
    users = max(2, (entity_count - groups - folders) // 2)
    documents = max(2, entity_count - groups - folders - users)
    policies = "\n".join(_policy(i, rng, groups, folders) for i in range(policy_count))
    entities: list[az.Entity] = [az.Entity(uid=az.EntityUID("Group", f"g{i}")) for i in range(groups)]
    entities += [az.Entity(uid=az.EntityUID("Folder", f"f{i}")) for i in range(folders)]
    entities += [
        az.Entity(
            uid=az.EntityUID("User", f"u{i}"),
            attrs={"department": rng.choice(DEPARTMENTS), "clearance": rng.randrange(5)},
            parents=[az.EntityUID("Group", f"g{rng.randrange(groups)}")],
        )
        for i in range(users)
    ]
    entities += [
        az.Entity(
            uid=az.EntityUID("Document", f"d{i}"),
            attrs={
                "department": rng.choice(DEPARTMENTS),
                "classification": rng.randrange(5),
                "owner": az.EntityUID("User", f"u{rng.randrange(users)}"),
            },
            parents=[az.EntityUID("Folder", f"f{rng.randrange(folders)}")],
        )
        for i in range(documents)
    ]
    requests = [
        az.Request(
            principal=az.EntityUID("User", f"u{rng.randrange(users)}"),
            action=az.EntityUID("Action", rng.choice(ACTIONS)),
            resource=az.EntityUID("Document", f"d{rng.randrange(documents)}"),
            context={"mfa": True} if rng.random() < 0.5 else {},
        )
        for _ in range(request_count)
    ]
    return Workload(policies=policies, schema=SCHEMA, entities=entities, requests=requests)
