"""Synthetic policy stores for benchmarks.

* :func:`build`: RBAC, ABAC, owner and forbid policies over four document actions.
* :func:`build_tools`: policies spread over tool actions (one action per tool, arguments in
  ``context.input``), as agents call them.
* :func:`share_links`: per-document grants as template links (how AVP users model sharing).
* :func:`documents`: documents with metadata, for retrieval filtering.
"""

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


SHARE_TEMPLATE = (
    '@id("share") permit(principal == ?principal, action == Action::"read", resource == ?resource);'
)


def share_links(workload: Workload, count: int, seed: int = 11) -> list[az.TemplateLink]:
    """``count`` links of :data:`SHARE_TEMPLATE`: a user may read one document each."""
    rng = random.Random(seed)
    users = [e.uid for e in workload.entities if e.uid.type == "User"]
    docs = [e.uid for e in workload.entities if e.uid.type == "Document"]
    return [az.TemplateLink(id=f"share-{i}", template="share", principal=rng.choice(users),
                            resource=rng.choice(docs)) for i in range(count)]


def granted_requests(links: list[az.TemplateLink], count: int, seed: int = 13) -> list[az.Request]:
    """Reads of shared documents by the users they were shared with."""
    rng = random.Random(seed)
    chosen = [rng.choice(links) for _ in range(count)]
    return [az.Request(principal=link.principal, action=az.EntityUID("Action", "read"),
                       resource=link.resource) for link in chosen
            if link.principal is not None and link.resource is not None]


TOOL_SCHEMA_HEAD = """
entity Group;
entity User in [Group] = { department: String, clearance: Long };
entity Tool;
"""


@dataclass(frozen=True)
class ToolWorkload:
    """Tool-call policies over ``tools`` actions, with users, groups and tool calls."""

    policies: str
    schema: str
    entities: list[az.Entity]
    requests: list[az.Request]
    tools: tuple[str, ...]


def _tool_policy(index: int, kind: int, tool: str, rng: random.Random, groups: int) -> str:
    action = f'Action::"{tool}"'
    if kind == 0:
        limit = rng.randrange(100, 5000)
        return (f'@id("{tool}-rbac-{index}") permit(principal in Group::"g{rng.randrange(groups)}", '
                f'action == {action}, resource) when {{ context.input.amount <= {limit} }};')
    if kind == 1:
        dept = rng.choice(DEPARTMENTS)
        return (f'@id("{tool}-abac-{index}") permit(principal, action == {action}, resource) when {{ '
                f'principal.department == "{dept}" && principal.clearance >= {rng.randrange(5)} }};')
    if kind == 2:
        return (f'@id("{tool}-limit-{index}") forbid(principal, action == {action}, resource) when {{ '
                f'context.input.amount > {rng.randrange(1000, 10000)} && principal.clearance < 4 }};')
    return (f'@id("{tool}-dest-{index}") forbid(principal, action == {action}, resource) when {{ '
            f'context.input.target like "*@{rng.choice(DEPARTMENTS)}.example" }};')


def build_tools(policy_count: int = 1000, tool_count: int = 20, entity_count: int = 1000,
                request_count: int = 100, seed: int = 5) -> ToolWorkload:
    """``policy_count`` policies spread evenly over ``tool_count`` tool actions."""
    rng = random.Random(seed)
    tools = tuple(f"tool_{i:02d}" for i in range(tool_count))
    groups = max(2, entity_count // 20)
    users = max(2, entity_count - groups)
    schema = TOOL_SCHEMA_HEAD + "action " + ", ".join(tools) + (
        " appliesTo { principal: User, resource: Tool, "
        "context: { input: { amount: Long, target: String } } };\n")
    # Policy i goes to tool i % tool_count; its kind turns once per round of tools, so every
    # tool holds all four kinds.
    policies = "\n".join(_tool_policy(i, (i // tool_count) % 4, tools[i % tool_count], rng, groups)
                         for i in range(policy_count))
    entities = [az.Entity(uid=az.EntityUID("Group", f"g{i}")) for i in range(groups)]
    entities += [
        az.Entity(uid=az.EntityUID("User", f"u{i}"),
                  attrs={"department": rng.choice(DEPARTMENTS), "clearance": rng.randrange(5)},
                  parents=[az.EntityUID("Group", f"g{rng.randrange(groups)}")])
        for i in range(users)
    ]
    requests = []
    for _ in range(request_count):
        tool = rng.choice(tools)
        requests.append(az.Request(
            principal=az.EntityUID("User", f"u{rng.randrange(users)}"), action=az.EntityUID("Action", tool),
            resource=az.EntityUID("Tool", tool),
            context={"input": {"amount": rng.randrange(10000),
                               "target": f"x@{rng.choice(DEPARTMENTS)}.example"}}))
    return ToolWorkload(policies=policies, schema=schema, entities=entities, requests=requests, tools=tools)


def documents(count: int, workload: Workload, seed: int = 17) -> list[dict[str, object]]:
    """Documents as a vector store would return them: an id and the metadata policies read."""
    rng = random.Random(seed)
    users = [e.uid.id for e in workload.entities if e.uid.type == "User"]
    folders = [e.uid.id for e in workload.entities if e.uid.type == "Folder"]
    return [{"id": f"m{i}", "department": rng.choice(DEPARTMENTS), "classification": rng.randrange(5),
             "owner": rng.choice(users), "folder": rng.choice(folders)} for i in range(count)]


def document_entity(doc: dict[str, object]) -> az.Entity:
    """The Cedar resource of a document, built from its metadata."""
    return az.Entity(
        uid=az.EntityUID("Document", str(doc["id"])),
        attrs={"department": doc["department"], "classification": doc["classification"],
               "owner": az.EntityUID("User", str(doc["owner"]))},
        parents=[az.EntityUID("Folder", str(doc["folder"]))],
    )
