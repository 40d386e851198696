"""Sync a policy store directory with an Amazon Verified Permissions policy store, both ways.

``plan_push`` compares a :class:`~agentauthz.PolicyStore` with what a policy
store holds (schema, templates, static policies, template-linked policies) and
``apply_push`` makes the store match; ``pull`` writes a store back to files.
``read_store`` is pull's one reader (also of :class:`~agentauthz.SyncedEngine`'s
copies); ``list_store`` lists a store cheaply, to tell whether it changed.
Our ids ride in AVP as the ``agentauthz:<id>`` description and the
``name/<id>`` name (:mod:`agentauthz.avp._wire`), so a second push finds
everything unchanged. The client is any boto3 ``verifiedpermissions`` client
(this module never imports boto3).

Example:
    >>> import agentauthz as az
    >>> from agentauthz.testing import LocalVerifiedPermissions
    >>> store = az.PolicyStore.from_text('@id("all") permit(principal, action, resource);')
    >>> with LocalVerifiedPermissions() as server:
    ...     target = server.add_store()
    ...     plan = plan_push(store, server.client(), target)
    ...     [(c.action, c.kind, c.id) for c in apply_push(plan, server.client())]
    [('create', 'policy', 'all')]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import cedarpy

from agentauthz._errors import ConfigurationError, EngineError, PolicyError
from agentauthz._model import EntityUID
from agentauthz._model import _escape as escape
from agentauthz.avp import _wire as shapes
from agentauthz.policy._schema_json import schema_json_text
from agentauthz.policy._store import PolicyStore, TemplateLink, truncate

__all__ = [
    "Change",
    "Listing",
    "PullResult",
    "PulledStore",
    "PushPlan",
    "apply_push",
    "list_store",
    "plan_push",
    "pull",
    "read_store",
]

Kind = Literal["schema", "template", "policy", "link"]
Action = Literal["create", "update", "delete", "unchanged", "extra"]
_PAGE = 50
_ORDER: dict[str, int] = {"schema": 0, "template": 1, "policy": 2, "link": 3}


@dataclass(frozen=True)
class Change:
    """One difference between the directory and the policy store.

    Attributes:
        kind: ``schema``, ``template``, ``policy`` (static) or ``link`` (template-linked).
        id: our id (``schema`` for the schema; the AVP id for items agentauthz did not write).
        action: ``create``, ``update``, ``delete``, ``unchanged``, or ``extra``
            (in the store only; deleted with ``prune``).
        reason: why it is an update or extra.
        avp_id: the item's id in AVP, when it exists there.
    """

    kind: Kind
    id: str
    action: Action
    reason: str = ""
    avp_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form for ``--json`` output."""
        out: dict[str, Any] = {"kind": self.kind, "id": self.id, "action": self.action}
        if self.reason:
            out["reason"] = self.reason
        if self.avp_id:
            out["avpId"] = self.avp_id
        return out


@dataclass
class _Remote:
    schema: str | None = None
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)   # our id -> item (+ statement)
    statics: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    template_ours: dict[str, str] = field(default_factory=dict)         # AVP template id -> our id
    duplicates: list[str] = field(default_factory=list)                 # our ids held by several items


@dataclass
class PushPlan:
    """What a push would change, in the order it applies."""

    policy_store_id: str
    store: PolicyStore
    changes: list[Change]
    prune: bool
    remote: _Remote = field(repr=False)

    def counts(self) -> dict[str, int]:
        """Changes per action (``create``, ``update``, ``delete``, ``unchanged``, ``extra``)."""
        counts = dict.fromkeys(("create", "update", "delete", "unchanged", "extra"), 0)
        for change in self.changes:
            counts[change.action] += 1
        return counts

    @property
    def pending(self) -> list[Change]:
        """The changes a push makes (not unchanged, not extra)."""
        return [c for c in self.changes if c.action in ("create", "update", "delete")]


# -- reading the store ------------------------------------------------------------------------


def _call(client: Any, operation: str, *, service: str = "Verified Permissions", **params: Any) -> Any:
    """One call, its failure translated into an EngineError naming the service, operation and error code."""
    try:
        return getattr(client, operation)(**params)
    except Exception as exc:
        raise _failed(_operation_name(operation), exc, service) from exc


def _failed(operation: str, exc: BaseException, service: str = "Verified Permissions") -> EngineError:
    return EngineError(f"{service} {operation} failed: {_code(exc) or type(exc).__name__}: "
                       f"{truncate(str(exc), 300)}")


def _code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, Mapping) else None
    code = error.get("Code") if isinstance(error, Mapping) else None
    return str(code) if code else None


def _pages(client: Any, operation: str, key: str, *, service: str = "Verified Permissions",
           **params: Any) -> Iterator[dict[str, Any]]:
    """Every item of a paginated list operation (``nextToken``), ``_PAGE`` per call."""
    token: str | None = None
    while True:
        extra = {"nextToken": token} if token else {}
        page = _call(client, operation, service=service, maxResults=_PAGE, **params, **extra)
        items = page.get(key) if isinstance(page, Mapping) else None
        # A page without its list, or with something other than items, is no empty store: an answer
        # botocore could not read (a 200 without JSON reads as {}) would otherwise drop every policy.
        if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
            raise EngineError(f"{service} {_operation_name(operation)} answered without a list of {key}")
        yield from (dict(item) for item in items)
        token = page.get("nextToken")
        if not token:
            return


def _template_our_id(item: Mapping[str, Any]) -> str:
    description = item.get("description")
    if isinstance(description, str) and description.startswith(shapes.DESCRIPTION_PREFIX) and len(
            description) > len(shapes.DESCRIPTION_PREFIX):
        return description[len(shapes.DESCRIPTION_PREFIX):]
    name = item.get("name")
    decoded = shapes.id_from_name(name) if isinstance(name, str) else None
    return decoded or str(item.get("policyTemplateId", ""))


@dataclass(frozen=True)
class Listing:
    """What GetSchema, ListPolicyTemplates and ListPolicies say of a policy store.

    Enough to tell whether the store changed: every item carries its
    ``lastUpdatedDate`` (an update changes it; a link is never updated, only
    deleted and created under a new id), and the schema is read whole.

    Attributes:
        schema: the schema as AVP holds it (Cedar JSON text), None when the store has none.
        templates: the ListPolicyTemplates items.
        policies: the ListPolicies items (static and template-linked).
    """

    schema: str | None
    templates: tuple[dict[str, Any], ...]
    policies: tuple[dict[str, Any], ...]

    @cached_property
    def version(self) -> str:
        """sha256 of the whole listing: equal while the store is unchanged."""
        document = json.dumps([self.schema, self.templates, self.policies], sort_keys=True, default=str)
        return hashlib.sha256(document.encode("utf-8")).hexdigest()


def list_store(client: Any, policy_store_id: str) -> Listing:
    """List a policy store: one GetSchema, and ListPolicyTemplates and ListPolicies pages.

    Raises:
        EngineError: a call failed.
    """
    schema: str | None = None
    try:
        answer = client.get_schema(policyStoreId=policy_store_id)
    except Exception as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise _failed("GetSchema", exc) from exc
    else:
        # A store without a schema answers ResourceNotFoundException; an answer without one is broken
        # (read as "no schema", a copy would lose the action groups forbid policies name).
        schema = answer.get("schema") if isinstance(answer, Mapping) else None
        if not isinstance(schema, str) or not schema:
            raise EngineError("Verified Permissions GetSchema answered without a schema")
    return Listing(
        schema=schema,
        templates=tuple(_pages(client, "list_policy_templates", "policyTemplates",
                               policyStoreId=policy_store_id)),
        policies=tuple(_pages(client, "list_policies", "policies", policyStoreId=policy_store_id)),
    )


def _unchanged(item: Mapping[str, Any], before: Mapping[str, Any] | None) -> bool:
    """Whether ``before`` (read earlier) is still the item the listing shows: same ``lastUpdatedDate``."""
    return (before is not None and item.get("lastUpdatedDate") is not None
            and before.get("lastUpdatedDate") == item.get("lastUpdatedDate"))


def _read_remote(client: Any, policy_store_id: str, listing: Listing | None = None,
                 known: _Remote | None = None) -> _Remote:
    """Everything a policy store holds: the listing, and each template's and static policy's statement.

    With ``known`` (an earlier read), the statement of an item whose
    ``lastUpdatedDate`` did not change is taken from it instead of asked again.
    Two items with one of our ids keep the first; the others are counted in
    ``duplicates``.
    """
    listing = listing or list_store(client, policy_store_id)
    remote = _Remote(schema=listing.schema)
    known_templates = {str(item["policyTemplateId"]): item
                       for item in (known.templates.values() if known else ())}
    known_statics = {str(item["policyId"]): item for item in (known.statics.values() if known else ())}
    for item in listing.templates:
        before = known_templates.get(str(item["policyTemplateId"]))
        if _unchanged(item, before):
            assert before is not None
            merged = {**before, **item}
        else:
            detail = _call(client, "get_policy_template", policyStoreId=policy_store_id,
                           policyTemplateId=item["policyTemplateId"])
            merged = {**item, **detail, "statement": _statement(detail, "GetPolicyTemplate")}
        ours = _template_our_id(merged)
        _keep(remote, remote.templates, ours, merged)
        remote.template_ours[merged["policyTemplateId"]] = ours
    for item in listing.policies:
        ours = shapes.our_policy_id(item)
        definition = item.get("definition") or {}
        if "templateLinked" in definition:
            _keep(remote, remote.links, ours, item)
            continue
        before = known_statics.get(str(item["policyId"]))
        if _unchanged(item, before):
            assert before is not None
            statement, description = before.get("statement", ""), before.get("description")
        else:
            detail = _call(client, "get_policy", policyStoreId=policy_store_id, policyId=item["policyId"])
            static = (detail.get("definition") or {}).get("static") or {}
            statement, description = _statement(static, "GetPolicy"), static.get("description")
        _keep(remote, remote.statics, ours, {**item, "statement": statement, "description": description})
    return remote


def _statement(detail: Any, operation: str) -> str:
    """The ``statement`` of a GetPolicy / GetPolicyTemplate answer; an answer without one is an error."""
    statement = detail.get("statement") if isinstance(detail, Mapping) else None
    if not isinstance(statement, str) or not statement.strip():
        raise EngineError(f"Verified Permissions {operation} answered without a statement")
    return statement


def _operation_name(operation: str) -> str:
    """``list_policies`` -> ``ListPolicies``."""
    return "".join(part.capitalize() for part in operation.split("_"))


def _keep(remote: _Remote, items: dict[str, dict[str, Any]], ours: str, item: dict[str, Any]) -> None:
    if ours in items:
        remote.duplicates.append(ours)
    else:
        items[ours] = item


def _normal(statement: str) -> str:
    return "\n".join(line.rstrip() for line in statement.strip().splitlines())


def _identifier(uid: EntityUID | None) -> dict[str, str] | None:
    return None if uid is None else {"entityType": uid.type, "entityId": uid.id}


# -- push ---------------------------------------------------------------------------------------


def plan_push(store: PolicyStore, client: Any, policy_store_id: str, *, prune: bool = False) -> PushPlan:
    """Compare a directory's store with a policy store; nothing is changed.

    Raises:
        PolicyError: the schema cannot be converted, or an id cannot be kept in AVP.
        EngineError: the policy store could not be read.
    """
    _check_ids(store)
    desired_schema = schema_json_text(store.schema_text) if store.schema_text is not None else None
    remote = _read_remote(client, policy_store_id)
    wanted_templates = {p.id: p.text for p in store.enforced_policies if p.is_template}
    wanted_statics = {p.id: p.text for p in store.enforced_policies if not p.is_template}
    changes = _schema_changes(desired_schema, remote.schema)
    replaced = _replaced_templates(wanted_templates, remote.templates)
    changes += _item_changes("template", wanted_templates, remote.templates, "policyTemplateId")
    changes += _item_changes("policy", wanted_statics, remote.statics, "policyId")
    changes += _link_changes(store.enforced_links, remote, replaced)
    changes += _extra_changes(remote, set(wanted_templates), set(wanted_statics),
                              {link.id for link in store.enforced_links}, "delete" if prune else "extra")
    return PushPlan(policy_store_id, store, changes, prune, remote)


def _check_ids(store: PolicyStore) -> None:
    """Every id must ride in an AVP policy name or description."""
    too_long = [p.id for p in store.enforced_policies
                if shapes.policy_description(p.id) is None and shapes.policy_name(p.id) is None]
    too_long += [link.id for link in store.enforced_links if shapes.policy_name(link.id) is None]
    if too_long:
        raise PolicyError([f"{truncate(i, 80)}: id too long to keep in a Verified Permissions policy "
                           "name or description (at most 139 characters)" for i in too_long])


def _schema_changes(desired: str | None, remote: str | None) -> list[Change]:
    if desired is not None:
        if remote is None:
            return [Change("schema", "schema", "create")]
        if _json(remote) != _json(desired):
            return [Change("schema", "schema", "update", "schema changed")]
        return [Change("schema", "schema", "unchanged")]
    if remote is not None:
        return [Change("schema", "schema", "extra", "no schema in the directory (AVP cannot delete "
                                                    "a schema; it stays)")]
    return []


def _item_changes(kind: Kind, wanted: Mapping[str, str], remote: Mapping[str, dict[str, Any]],
                  id_key: str) -> list[Change]:
    """Templates or static policies of the directory against the store's: by statement, then description."""
    changes: list[Change] = []
    for our_id, text in sorted(wanted.items()):
        item = remote.get(our_id)
        if item is None:
            changes.append(Change(kind, our_id, "create"))
        elif _normal(str(item.get("statement", ""))) != _normal(text):
            changes.append(Change(kind, our_id, "update", "statement changed", item[id_key]))
        elif item.get("description") != shapes.policy_description(our_id):
            changes.append(Change(kind, our_id, "update", "description changed", item[id_key]))
        else:
            changes.append(Change(kind, our_id, "unchanged", avp_id=item[id_key]))
    return changes


def _replaced_templates(wanted: Mapping[str, str], remote: Mapping[str, dict[str, Any]]) -> set[str]:
    """Templates whose slots change: UpdatePolicyTemplate cannot, so they and their links are made again."""
    replaced: set[str] = set()
    for our_id, text in wanted.items():
        if our_id not in remote:
            continue
        statement = str(remote[our_id].get("statement", ""))
        if _normal(statement) != _normal(text) and _slots(statement) != _slots(text):
            replaced.add(our_id)
    return replaced


def _link_changes(links: Iterable[TemplateLink], remote: _Remote, replaced: set[str]) -> list[Change]:
    """Template-linked policies: unchanged only with the same template (not replaced), principal, resource."""
    changes: list[Change] = []
    for link in sorted(links, key=lambda item: item.id):
        item = remote.links.get(link.id)
        if item is None:
            changes.append(Change("link", link.id, "create"))
            continue
        linked = (item.get("definition") or {}).get("templateLinked") or {}
        template_ours = remote.template_ours.get(str(linked.get("policyTemplateId")))
        same = (template_ours == link.template and link.template not in replaced
                and linked.get("principal") == _identifier(link.principal)
                and linked.get("resource") == _identifier(link.resource))
        if same:
            changes.append(Change("link", link.id, "unchanged", avp_id=item["policyId"]))
        else:
            reason = ("template replaced" if link.template in replaced
                      else "template, principal or resource changed")
            changes.append(Change("link", link.id, "update", reason, item["policyId"]))
    return changes


def _extra_changes(remote: _Remote, templates: set[str], statics: set[str], links: set[str],
                   action: Action) -> list[Change]:
    """What the store holds and the directory does not: deleted with ``prune``, else reported."""
    changes = [Change("link", our_id, action, "not in the directory", item["policyId"])
               for our_id, item in sorted(remote.links.items()) if our_id not in links]
    changes += [Change("policy", our_id, action, "not in the directory", item["policyId"])
                for our_id, item in sorted(remote.statics.items()) if our_id not in statics]
    changes += [Change("template", our_id, action, "not in the directory (its links go with it)",
                       item["policyTemplateId"])
                for our_id, item in sorted(remote.templates.items()) if our_id not in templates]
    return changes


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _slots(statement: str) -> tuple[bool, bool]:
    return ("?principal" in statement, "?resource" in statement)


def apply_push(plan: PushPlan, client: Any) -> list[Change]:
    """Make the changes of a plan, in order: schema, templates, policies, links, then deletions.

    A static policy whose effect or scope changed (which UpdatePolicy cannot
    do) and a template whose slots changed are deleted and created again; a
    template-linked policy is always re-created (links cannot be updated).

    Returns:
        The changes made.

    Raises:
        EngineError: a call failed (what was done before it stays done; push again).
        PolicyError: the schema cannot be converted.
    """
    push = _Push(plan, client)
    done = [change for change in sorted(plan.pending, key=lambda c: (c.action == "delete", _ORDER[c.kind]))
            if push.apply(change)]
    push.finish()
    return done


class _Push:
    """Makes a plan's changes one by one, keeping the AVP ids of the templates it creates."""

    def __init__(self, plan: PushPlan, client: Any) -> None:
        self.client = client
        self.store_id = plan.policy_store_id
        self.store = plan.store
        self.template_ids = {ours: str(item["policyTemplateId"])
                             for ours, item in plan.remote.templates.items()}
        self.texts = {p.id: p.text for p in plan.store.enforced_policies}
        self.links = {link.id: link for link in plan.store.enforced_links}
        #: Links of templates made again: created after every change (the plan may call them unchanged).
        self.recreate_links: set[str] = set()

    def apply(self, change: Change) -> bool:
        """Make one change; False when there was nothing to do."""
        if change.kind == "schema":
            return self._schema()
        if change.action == "delete":
            assert change.avp_id is not None
            _delete_quietly(self.client, self.store_id, change.avp_id, template=change.kind == "template")
        elif change.kind == "template":
            self._template(change)
        elif change.kind == "policy":
            self._policy(change)
        else:
            self._link(change)
        return True

    def finish(self) -> None:
        """Create the links of replaced templates that no change created."""
        for link_id in sorted(self.recreate_links):
            _create_link(self.client, self.store_id, self.links[link_id], self.template_ids)

    def _schema(self) -> bool:
        if self.store.schema_text is None:
            return False
        _call(self.client, "put_schema", policyStoreId=self.store_id,
              definition={"cedarJson": schema_json_text(self.store.schema_text)})
        return True

    def _template(self, change: Change) -> None:
        text = self.texts[change.id]
        if change.action == "create":
            self.template_ids[change.id] = _create_template(self.client, self.store_id, change.id, text)
            return
        assert change.avp_id is not None
        try:
            _call(self.client, "update_policy_template", policyStoreId=self.store_id,
                  policyTemplateId=change.avp_id, statement=text, **_described(change.id))
        except EngineError as exc:
            if _code(exc.__cause__ or exc) != "ValidationException":
                raise
            # slots changed: a new template (its links are deleted with the old one)
            _call(self.client, "delete_policy_template", policyStoreId=self.store_id,
                  policyTemplateId=change.avp_id)
            self.template_ids[change.id] = _create_template(self.client, self.store_id, change.id, text)
            self.recreate_links.update(link.id for link in self.links.values() if link.template == change.id)

    def _policy(self, change: Change) -> None:
        text = self.texts[change.id]
        if change.action == "create":
            _create_static(self.client, self.store_id, change.id, text)
            return
        assert change.avp_id is not None
        try:
            _call(self.client, "update_policy", policyStoreId=self.store_id, policyId=change.avp_id,
                  definition={"static": {"statement": text, **_described(change.id)}})
        except EngineError as exc:
            if _code(exc.__cause__ or exc) != "ValidationException":
                raise
            # effect, principal or resource changed: UpdatePolicy cannot; replace it
            _call(self.client, "delete_policy", policyStoreId=self.store_id, policyId=change.avp_id)
            _create_static(self.client, self.store_id, change.id, text)

    def _link(self, change: Change) -> None:
        """Links cannot be updated: an updated one is deleted (unless its template took it) and created."""
        if change.action == "update" and change.avp_id and change.id not in self.recreate_links:
            _delete_quietly(self.client, self.store_id, change.avp_id)
        _create_link(self.client, self.store_id, self.links[change.id], self.template_ids)
        self.recreate_links.discard(change.id)


def _described(our_id: str) -> dict[str, str]:
    description = shapes.policy_description(our_id)
    return {"description": description} if description is not None else {}


def _named(our_id: str) -> dict[str, str]:
    name = shapes.policy_name(our_id)
    return {"name": name} if name is not None else {}


def _create_template(client: Any, store_id: str, our_id: str, text: str) -> str:
    answer = _call(client, "create_policy_template", policyStoreId=store_id, statement=text,
                   **_described(our_id), **_named(our_id))
    return str(answer["policyTemplateId"])


def _create_static(client: Any, store_id: str, our_id: str, text: str) -> None:
    _call(client, "create_policy", policyStoreId=store_id,
          definition={"static": {"statement": text, **_described(our_id)}}, **_named(our_id))


def _create_link(client: Any, store_id: str, link: Any, template_ids: Mapping[str, str]) -> None:
    template_id = template_ids.get(link.template)
    if template_id is None:
        raise PolicyError(f"{link.source}: link {link.id!r} names template {link.template!r}, "
                          "which the policy store does not have")
    linked: dict[str, Any] = {"policyTemplateId": template_id}
    if link.principal is not None:
        linked["principal"] = _identifier(link.principal)
    if link.resource is not None:
        linked["resource"] = _identifier(link.resource)
    _call(client, "create_policy", policyStoreId=store_id, definition={"templateLinked": linked},
          **_named(link.id))


def _delete_quietly(client: Any, store_id: str, avp_id: str, *, template: bool = False) -> None:
    try:
        if template:
            client.delete_policy_template(policyStoreId=store_id, policyTemplateId=avp_id)
        else:
            client.delete_policy(policyStoreId=store_id, policyId=avp_id)
    except Exception as exc:
        if _code(exc) == "ResourceNotFoundException":
            return  # gone already (a template's links go with it)
        raise _failed("DeletePolicyTemplate" if template else "DeletePolicy", exc) from exc


# -- pull ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PullResult:
    """What ``pull`` wrote: file paths and how many of each were written."""

    files: tuple[Path, ...]
    policies: int
    templates: int
    links: int
    schema: bool
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class PulledStore:
    """A policy store's content as agentauthz files hold it (what ``pull`` writes).

    Attributes:
        schema: the schema, Cedar JSON text, or None.
        templates: each template's statement, with ``@id("<our id>")``, by our id.
        policies: each static policy's statement, likewise.
        links: ``template-links.json`` entries (``id``, ``template``, ``principal``, ``resource``).
        warnings: statements written as they are (no parse, another ``@id``), and
            ids held by several items (only the first is kept).
        listing: the listing it was read from (its :attr:`Listing.version`).
        renamed: static policies whose statement carries another ``@id``: that
            ``@id`` -> the id Verified Permissions' decisions report (ours).
            They load under their ``@id``; links name a template by the id it
            loads under.
    """

    schema: str | None
    templates: tuple[str, ...]
    policies: tuple[str, ...]
    links: tuple[dict[str, Any], ...]
    warnings: tuple[str, ...]
    listing: Listing
    remote: _Remote = field(repr=False, compare=False)
    renamed: Mapping[str, str] = field(default_factory=dict)


def read_store(client: Any, policy_store_id: str, listing: Listing | None = None,
               earlier: PulledStore | None = None) -> PulledStore:
    """Read a policy store's schema, templates, static policies and links.

    Args:
        client: a boto3 ``verifiedpermissions`` client.
        policy_store_id: the store.
        listing: its listing, when already made (:func:`list_store`).
        earlier: an earlier read of the same store: statements whose item did not
            change (same ``lastUpdatedDate``) are taken from it, not asked again.

    Raises:
        EngineError: the policy store could not be read.
    """
    listing = listing or list_store(client, policy_store_id)
    remote = _read_remote(client, policy_store_id, listing, earlier.remote if earlier else None)
    warnings = [f"{our_id}: several items of the policy store carry this id; only the first is kept"
                for our_id in remote.duplicates]
    texts: dict[str, tuple[str, ...]] = {}
    loaded_as: dict[str, dict[str, str]] = {}  # kind -> our id -> the @id it loads under, when another
    for kind, items in (("templates", remote.templates), ("policies", remote.statics)):
        blocks = []
        for our_id, item in sorted(items.items()):
            text, written, warning = _with_id(str(item.get("statement", "")), our_id)
            if warning:
                warnings.append(warning)
            if written is not None and written != our_id:
                loaded_as.setdefault(kind, {})[our_id] = written
            blocks.append(text)
        texts[kind] = tuple(blocks)
    templates_as = loaded_as.get("templates", {})
    links = []
    for our_id, item in sorted(remote.links.items()):
        linked = (item.get("definition") or {}).get("templateLinked") or {}
        template = remote.template_ours.get(str(linked.get("policyTemplateId")),
                                            str(linked.get("policyTemplateId")))
        template = templates_as.get(template, template)
        entry: dict[str, Any] = {"id": our_id, "template": template}
        for slot in ("principal", "resource"):
            uid = linked.get(slot)
            if isinstance(uid, Mapping):
                entry[slot] = {"type": uid.get("entityType"), "id": uid.get("entityId")}
        links.append(entry)
    renamed = {written: our_id for our_id, written in loaded_as.get("policies", {}).items()}
    return PulledStore(remote.schema, texts["templates"], texts["policies"], tuple(links), tuple(warnings),
                       listing, remote, renamed)


def pull(client: Any, policy_store_id: str, out_dir: str | Path) -> PullResult:
    """Write a policy store as a directory: ``policies.cedar``, ``templates.cedar``,
    ``template-links.json``, ``schema.cedarschema.json``.

    Each statement carries ``@id("<our id>")`` (added when AVP's text has no
    ``@id``), so loading the directory gives the ids the store reports.
    ``out_dir`` must be empty or absent.

    Raises:
        ConfigurationError: ``out_dir`` holds files already.
        EngineError: the policy store could not be read.
    """
    root = Path(out_dir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigurationError(f"{root}: not an empty directory (pull never overwrites files)")
    pulled = read_store(client, policy_store_id)
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write(name: str, text: str) -> None:
        path = root / name
        path.write_text(text, encoding="utf-8")
        written.append(path)

    if pulled.schema is not None:
        document = _json(pulled.schema)
        write("schema.cedarschema.json", (json.dumps(document, indent=2, ensure_ascii=False)
                                          if not isinstance(document, str) else document) + "\n")
    for name, blocks in (("templates.cedar", pulled.templates), ("policies.cedar", pulled.policies)):
        if blocks:
            write(name, "\n\n".join(blocks) + "\n")
    if pulled.links:
        write("template-links.json", json.dumps(list(pulled.links), indent=2, ensure_ascii=False) + "\n")
    return PullResult(tuple(written), len(pulled.policies), len(pulled.templates), len(pulled.links),
                      pulled.schema is not None, pulled.warnings)


def _with_id(statement: str, our_id: str) -> tuple[str, str | None, str | None]:
    """The statement with an ``@id`` annotation naming ``our_id`` (added when missing).

    Returns:
        The text, the ``@id`` it loads under (None when it does not parse), and a warning.
    """
    text = statement.strip()
    try:
        parsed = json.loads(cedarpy.policies_to_json_str(text))
        bodies = [*parsed.get("staticPolicies", {}).values(), *parsed.get("templates", {}).values()]
        annotations = bodies[0].get("annotations") or {} if bodies else {}
    except (ValueError, IndexError):
        return text, None, f"{our_id}: the statement does not parse; written as it is"
    written = annotations.get("id")
    if written is None:
        return f'@id("{escape(our_id)}")\n{text}', our_id, None
    if written != our_id:
        return text, written, f"{our_id}: the statement's @id is {written!r}; it loads under that id"
    return text, written, None
