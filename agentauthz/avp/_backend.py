"""The operations of the local Verified Permissions endpoint, on policy stores held in memory.

:class:`Backend` answers AVP operations by name with their JSON bodies (the
HTTP server in :mod:`agentauthz.avp._server` dispatches to it): policy stores,
schemas, policies, templates and template links, ``IsAuthorized`` and
``BatchIsAuthorized`` decided by cedarpy, and (mixed in from
:mod:`agentauthz.avp._identity_sources`) identity sources and the
``*WithToken`` operations. Like AVP it generates its own ids, reports
determining policies by them and enforces AVP's request rules with
``ValidationException``. Thread-safe.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import cedarpy

from agentauthz.avp import _wire as shapes
from agentauthz.avp._identity_sources import IDENTITY_OPERATIONS, IdentitySourceOperations
from agentauthz.avp._service import (
    ServiceError,
    invalid,
    json_member,
    new_id,
    not_found,
    one_of,
    paginate,
    required_string,
    timestamp,
    with_next_token,
)
from agentauthz.policy._store import truncate

__all__ = ["OPERATIONS", "Backend", "ValidationMode"]

ValidationMode = Literal["STRICT", "OFF"]
_POSITIONAL = re.compile(r"\bpolicy(\d+)\b")

#: The operations :class:`Backend` answers.
OPERATIONS = (
    "IsAuthorized", "BatchIsAuthorized", "GetSchema", "PutSchema", "CreatePolicyStore",
    "GetPolicyStore", "UpdatePolicyStore", "DeletePolicyStore", "ListPolicyStores", "CreatePolicy",
    "GetPolicy", "UpdatePolicy", "DeletePolicy", "ListPolicies", "CreatePolicyTemplate",
    "GetPolicyTemplate", "UpdatePolicyTemplate", "DeletePolicyTemplate", "ListPolicyTemplates",
    *IDENTITY_OPERATIONS,
)


@dataclass
class _Policy:
    id: str
    type: Literal["STATIC", "TEMPLATE_LINKED"]
    created: str
    updated: str
    statement: str = ""
    description: str | None = None
    template_id: str = ""
    principal: dict[str, str] | None = None
    resource: dict[str, str] | None = None
    name: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Template:
    id: str
    statement: str
    created: str
    updated: str
    description: str | None = None
    name: str | None = None
    slots: tuple[str, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Compiled:
    policy_set: Any
    positional: dict[str, str]


@dataclass
class _Store:
    id: str
    validation_mode: ValidationMode
    description: str | None
    created: str
    updated: str
    policies: dict[str, _Policy] = field(default_factory=dict)
    templates: dict[str, _Template] = field(default_factory=dict)
    schema_json: str | None = None
    schema: Any = None
    schema_created: str = ""
    schema_updated: str = ""
    namespaces: list[str] = field(default_factory=list)
    version: int = 0
    compiled: tuple[int, _Compiled] | None = None

    @property
    def arn(self) -> str:
        return f"arn:aws:verifiedpermissions::123456789012:policy-store/{self.id}"

    def touch(self) -> None:
        self.version += 1
        self.updated = timestamp()


def _summary(statement: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Effect, scope and slots of one Cedar statement, for AVP's policy descriptions."""
    try:
        est = json.loads(cedarpy.policies_to_json_str(statement))
    except ValueError as exc:
        raise invalid(f"policy statement does not parse: {truncate(str(exc))}") from exc
    bodies = list(est.get("staticPolicies", {}).values()) + list(est.get("templates", {}).values())
    if len(bodies) != 1:
        raise invalid(f"a policy statement must hold exactly one policy, not {len(bodies)}")
    body = bodies[0]
    summary: dict[str, Any] = {"effect": "Permit" if body["effect"] == "permit" else "Forbid"}
    slots: list[str] = []
    for role in ("principal", "resource"):
        scope = body.get(role, {})
        entity = scope.get("entity") or (scope.get("in") or {}).get("entity")
        if isinstance(entity, dict):
            summary[role] = {"entityType": entity["type"], "entityId": entity["id"]}
        if "slot" in scope or "slot" in (scope.get("in") or {}):
            slots.append(f"?{role}")
    action = body.get("action", {})
    entities = action.get("entities") or ([action["entity"]] if "entity" in action else [])
    summary["actions"] = [{"actionType": e["type"], "actionId": e["id"]} for e in entities]
    return summary, tuple(slots)


class Backend(IdentitySourceOperations):
    """Policy stores and the operations on them; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.stores: dict[str, _Store] = {}

    # -- helpers -----------------------------------------------------------------------

    def store(self, body: Mapping[str, Any]) -> _Store:
        store_id = required_string(body, "policyStoreId")
        store = self.stores.get(store_id)
        if store is None:
            raise not_found("POLICY_STORE", store_id)
        return store

    @staticmethod
    def _find(items: Mapping[str, Any], key: str, kind: str) -> Any:
        found = items.get(key)
        if found is None and key.startswith(shapes.NAME_PREFIX):
            found = next((item for item in items.values() if item.name == key), None)
        if found is None:
            raise not_found(kind, key)
        return found

    @staticmethod
    def _check_name(items: Mapping[str, Any], name: Any, own_id: str | None = None) -> str | None:
        if name is None:
            return None
        if not isinstance(name, str) or not name.startswith(shapes.NAME_PREFIX) or len(
                name) > shapes.NAME_MAX or not re.fullmatch(r"[A-Za-z0-9_/-]+", name):
            raise invalid("name must start with name/ and use only A-Z a-z 0-9 _ - / "
                           f"(at most {shapes.NAME_MAX} characters)")
        for item in items.values():
            if item.name == name and item.id != own_id:
                raise ServiceError("ConflictException", f"name {name} is already used",
                                   resources=[{"resourceId": item.id, "resourceType": "POLICY"}])
        return name

    @staticmethod
    def _check_description(description: Any) -> str | None:
        if description is None:
            return None
        if not isinstance(description, str) or len(description) > shapes.DESCRIPTION_MAX:
            raise invalid(f"description must be a string of at most {shapes.DESCRIPTION_MAX} characters")
        return description

    def _validate(self, store: _Store, statement: str) -> None:
        if store.validation_mode != "STRICT" or store.schema is None:
            return
        result = cedarpy.validate_policies(statement, store.schema)
        if not result.validation_passed:
            messages = "; ".join(truncate(str(error.error), 200) for error in result.errors)
            raise invalid(f"policy fails schema validation: {messages}")

    # -- policy stores -----------------------------------------------------------------

    def create_store(self, mode: ValidationMode, description: str | None) -> _Store:
        now = timestamp()
        store = _Store(id=new_id("PS"), validation_mode=mode, description=description,
                       created=now, updated=now)
        with self.lock:
            self.stores[store.id] = store
        return store

    def CreatePolicyStore(self, body: Mapping[str, Any]) -> dict[str, Any]:
        settings = body.get("validationSettings")
        mode = settings.get("mode") if isinstance(settings, Mapping) else None
        if mode not in ("STRICT", "OFF"):
            raise invalid("validationSettings.mode must be STRICT or OFF")
        store = self.create_store(mode, self._check_description(body.get("description")))
        return {"policyStoreId": store.id, "arn": store.arn, "createdDate": store.created,
                "lastUpdatedDate": store.updated}

    def GetPolicyStore(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(body)
        answer = {"policyStoreId": store.id, "arn": store.arn,
                  "validationSettings": {"mode": store.validation_mode},
                  "createdDate": store.created, "lastUpdatedDate": store.updated,
                  "deletionProtection": "DISABLED", "cedarVersion": "CEDAR_4"}
        if store.description is not None:
            answer["description"] = store.description
        return answer

    def UpdatePolicyStore(self, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            store = self.store(body)
            settings = body.get("validationSettings")
            mode = settings.get("mode") if isinstance(settings, Mapping) else None
            if mode not in ("STRICT", "OFF"):
                raise invalid("validationSettings.mode must be STRICT or OFF")
            store.validation_mode = mode
            if "description" in body:
                store.description = self._check_description(body["description"])
            store.touch()
        return {"policyStoreId": store.id, "arn": store.arn, "createdDate": store.created,
                "lastUpdatedDate": store.updated}

    def DeletePolicyStore(self, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.stores.pop(required_string(body, "policyStoreId"), None)
        return {}

    def ListPolicyStores(self, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            stores = list(self.stores.values())
        page, token = paginate(stores, body)
        items = []
        for store in page:
            item = {"policyStoreId": store.id, "arn": store.arn, "createdDate": store.created,
                    "lastUpdatedDate": store.updated}
            if store.description is not None:
                item["description"] = store.description
            items.append(item)
        return with_next_token({"policyStores": items}, token)

    # -- schema --------------------------------------------------------------------------

    def set_schema(self, store: _Store, schema_json: str) -> None:
        try:
            handle = cedarpy.Schema.from_json_str(schema_json)
            document = json.loads(schema_json)
        except ValueError as exc:
            raise invalid(f"schema does not parse: {truncate(str(exc))}") from exc
        if len(schema_json.encode("utf-8")) > 100_000:
            raise invalid("schema is over the 100,000 byte quota")
        with self.lock:
            now = timestamp()
            store.schema_json = schema_json
            store.schema = handle
            store.schema_created = store.schema_created or now
            store.schema_updated = now
            store.namespaces = sorted(document) if isinstance(document, dict) else []
            store.touch()

    def PutSchema(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(body)
        definition = body.get("definition")
        text = definition.get("cedarJson") if isinstance(definition, Mapping) else None
        if not isinstance(text, str) or not text:
            raise invalid("definition.cedarJson must hold the schema in Cedar's JSON format")
        self.set_schema(store, text)
        return {"policyStoreId": store.id, "namespaces": store.namespaces,
                "createdDate": store.schema_created, "lastUpdatedDate": store.schema_updated}

    def GetSchema(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(body)
        if store.schema_json is None:
            raise not_found("SCHEMA", store.id)
        return {"policyStoreId": store.id, "schema": store.schema_json, "namespaces": store.namespaces,
                "createdDate": store.schema_created, "lastUpdatedDate": store.schema_updated}

    # -- policies ------------------------------------------------------------------------

    def add_static(self, store: _Store, statement: str, description: str | None,
                   name: str | None, *, validate: bool = True) -> _Policy:
        summary, slots = _summary(statement)
        if slots:
            raise invalid("a static policy cannot have slots: create a policy template")
        if len(statement.encode("utf-8")) > 10_000:
            raise invalid("policy is over the 10,000 byte quota")
        if validate:
            self._validate(store, statement)
        now = timestamp()
        policy = _Policy(id=new_id("SP"), type="STATIC", created=now, updated=now,
                         statement=statement, description=description, name=name, summary=summary)
        with self.lock:
            self._check_name(store.policies, name)
            store.policies[policy.id] = policy
            store.touch()
        return policy

    def add_link(self, store: _Store, template_id: str, principal: Any, resource: Any,
                 name: str | None) -> _Policy:
        template = self._find(store.templates, template_id, "POLICY_TEMPLATE")
        values = {"?principal": principal, "?resource": resource}
        for slot, value in values.items():
            if (value is not None) != (slot in template.slots):
                raise invalid(f"template {template.id} {'takes' if slot in template.slots else 'has no'} "
                               f"{slot}")
            if value is not None:
                shapes.cedar_uid(value)
        now = timestamp()
        policy = _Policy(id=new_id("TP"), type="TEMPLATE_LINKED", created=now, updated=now,
                         template_id=template.id, principal=_plain(principal), resource=_plain(resource),
                         name=name, summary={"effect": template.summary["effect"],
                                             "actions": template.summary["actions"]})
        with self.lock:
            self._check_name(store.policies, name)
            store.policies[policy.id] = policy
            store.touch()
        return policy

    def CreatePolicy(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(body)
        definition = one_of(body, "definition", ("static", "templateLinked"))
        name = self._check_name(store.policies, body.get("name"))
        if "static" in definition:
            static = definition["static"]
            policy = self.add_static(store, required_string(static, "statement"),
                                     self._check_description(static.get("description")), name)
        else:
            linked = definition["templateLinked"]
            template_id = required_string(linked, "policyTemplateId")
            policy = self.add_link(store, template_id, linked.get("principal"), linked.get("resource"), name)
        return self._policy_out(store, policy, details=False)

    def _policy_out(self, store: _Store, policy: _Policy, *, details: bool,
                    item: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"policyStoreId": store.id, "policyId": policy.id, "policyType": policy.type,
                               "createdDate": policy.created, "lastUpdatedDate": policy.updated,
                               "effect": policy.summary["effect"], "actions": policy.summary["actions"]}
        principal = policy.principal or policy.summary.get("principal")
        resource = policy.resource or policy.summary.get("resource")
        if principal:
            out["principal"] = principal
        if resource:
            out["resource"] = resource
        if details or item:
            if policy.type == "STATIC":
                static: dict[str, Any] = {} if item else {"statement": policy.statement}
                if policy.description is not None:
                    static["description"] = policy.description
                out["definition"] = {"static": static}
            else:
                linked: dict[str, Any] = {"policyTemplateId": policy.template_id}
                if policy.principal:
                    linked["principal"] = policy.principal
                if policy.resource:
                    linked["resource"] = policy.resource
                out["definition"] = {"templateLinked": linked}
            if policy.name is not None:
                out["name"] = policy.name
        return out

    def GetPolicy(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(body)
        policy = self._find(store.policies, required_string(body, "policyId"), "POLICY")
        return self._policy_out(store, policy, details=True)

    def UpdatePolicy(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(body)
        with self.lock:
            policy: _Policy = self._find(store.policies, required_string(body, "policyId"), "POLICY")
            name = self._check_name(store.policies, body.get("name"), policy.id)
            definition = body.get("definition")
            if definition is not None:
                if policy.type != "STATIC":
                    raise invalid("a template-linked policy changes through its template")
                static = one_of(body, "definition", ("static",))["static"]
                statement = required_string(static, "statement")
                summary, slots = _summary(statement)
                if slots:
                    raise invalid("a static policy cannot have slots")
                for key in ("effect", "principal", "resource"):
                    if summary.get(key) != policy.summary.get(key):
                        raise invalid(f"UpdatePolicy cannot change the {key} of a static policy")
                self._validate(store, statement)
                policy = replace(policy, statement=statement, summary=summary,
                                 description=self._check_description(static.get("description")))
            if name is not None:
                policy = replace(policy, name=name)
            policy.updated = timestamp()
            store.policies[policy.id] = policy
            store.touch()
        return self._policy_out(store, policy, details=False)

    def DeletePolicy(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(body)
        with self.lock:
            policy = self._find(store.policies, required_string(body, "policyId"), "POLICY")
            del store.policies[policy.id]
            store.touch()
        return {}

    def ListPolicies(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(body)
        with self.lock:
            policies = list(store.policies.values())
        wanted = body.get("filter") or {}
        if isinstance(wanted, Mapping):
            if wanted.get("policyType"):
                policies = [p for p in policies if p.type == wanted["policyType"]]
            if wanted.get("policyTemplateId"):
                policies = [p for p in policies if p.template_id == wanted["policyTemplateId"]]
        page, token = paginate(policies, body)
        return with_next_token({"policies": [self._policy_out(store, p, details=False, item=True)
                                         for p in page]}, token)

    # -- templates -----------------------------------------------------------------------

    def add_template(self, store: _Store, statement: str, description: str | None, name: str | None,
                     *, validate: bool = True) -> _Template:
        summary, slots = _summary(statement)
        if not slots:
            raise invalid("a policy template needs ?principal or ?resource")
        if validate:
            self._validate(store, statement)
        now = timestamp()
        template = _Template(id=new_id("PT"), statement=statement, created=now, updated=now,
                             description=description, name=name, slots=slots, summary=summary)
        with self.lock:
            self._check_name(store.templates, name)
            store.templates[template.id] = template
            store.touch()
        return template

    def CreatePolicyTemplate(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(body)
        template = self.add_template(store, required_string(body, "statement"),
                                     self._check_description(body.get("description")),
                                     self._check_name(store.templates, body.get("name")))
        return {"policyStoreId": store.id, "policyTemplateId": template.id,
                "createdDate": template.created, "lastUpdatedDate": template.updated}

    def _template_out(self, store: _Store, template: _Template, *, statement: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"policyStoreId": store.id, "policyTemplateId": template.id,
                               "createdDate": template.created, "lastUpdatedDate": template.updated}
        if statement:
            out["statement"] = template.statement
        if template.description is not None:
            out["description"] = template.description
        if template.name is not None:
            out["name"] = template.name
        return out

    def GetPolicyTemplate(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(body)
        template = self._find(store.templates, required_string(body, "policyTemplateId"), "POLICY_TEMPLATE")
        return self._template_out(store, template, statement=True)

    def UpdatePolicyTemplate(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(body)
        with self.lock:
            template: _Template = self._find(store.templates, required_string(body, "policyTemplateId"),
                                             "POLICY_TEMPLATE")
            statement = required_string(body, "statement")
            summary, slots = _summary(statement)
            if slots != template.slots:
                raise invalid("UpdatePolicyTemplate cannot change the template's slots")
            self._validate(store, statement)
            name = self._check_name(store.templates, body.get("name"), template.id)
            template = replace(template, statement=statement, summary=summary, updated=timestamp(),
                               description=self._check_description(body.get("description")),
                               name=name if name is not None else template.name)
            store.templates[template.id] = template
            store.touch()
        return {"policyStoreId": store.id, "policyTemplateId": template.id,
                "createdDate": template.created, "lastUpdatedDate": template.updated}

    def DeletePolicyTemplate(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(body)
        template_id = required_string(body, "policyTemplateId")
        with self.lock:
            template = self._find(store.templates, template_id, "POLICY_TEMPLATE")
            del store.templates[template.id]
            # Like AVP: the policies linked to the template go with it.
            for policy_id in [p.id for p in store.policies.values() if p.template_id == template.id]:
                del store.policies[policy_id]
            store.touch()
        return {}

    def ListPolicyTemplates(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(body)
        with self.lock:
            templates = list(store.templates.values())
        page, token = paginate(templates, body)
        return with_next_token({"policyTemplates": [self._template_out(store, t, statement=False)
                                                for t in page]}, token)

    # -- authorization -------------------------------------------------------------------

    def compiled(self, store: _Store) -> _Compiled:
        with self.lock:
            if store.compiled is not None and store.compiled[0] == store.version:
                return store.compiled[1]
            statics = [p for p in store.policies.values() if p.type == "STATIC"]
            templates = list(store.templates.values())
            positional: dict[str, str] = {}
            texts: list[str] = []
            items: list[_Policy | _Template] = [*statics, *templates]
            for index, item in enumerate(items):
                positional[f"policy{index}"] = item.id
                texts.append(item.statement)
            policy_set = cedarpy.PolicySet.from_str("\n".join(texts))
            template_position = {item.id: f"policy{len(statics) + i}" for i, item in enumerate(templates)}
            links = []
            for policy in store.policies.values():
                if policy.type == "TEMPLATE_LINKED":
                    values = {slot: {"type": uid["entityType"], "id": uid["entityId"]}
                              for slot, uid in (("?principal", policy.principal),
                                                ("?resource", policy.resource)) if uid}
                    links.append({"template_id": template_position[policy.template_id],
                                  "new_id": policy.id, "values": values})
            if links:
                policy_set = policy_set.with_linked_batch(links)
            compiled = _Compiled(policy_set, positional)
            store.compiled = (store.version, compiled)
            return compiled

    def _request(self, item: Mapping[str, Any]) -> dict[str, Any]:
        for key in ("principal", "action", "resource"):
            if not isinstance(item.get(key), Mapping):
                raise invalid(f"this endpoint needs a {key} in every request")
        request: dict[str, Any] = {
            "principal": shapes.cedar_uid(item["principal"]),
            "action": shapes.cedar_uid(item["action"], action=True),
            "resource": shapes.cedar_uid(item["resource"]),
        }
        context = item.get("context")
        if context is not None:
            definition = one_of(item, "context", ("contextMap", "cedarJson"))
            if "contextMap" in definition:
                values = definition["contextMap"]
                if not isinstance(values, Mapping):
                    raise invalid("contextMap must be a map")
                cedar_context = {key: shapes.cedar_value(value, 1) for key, value in values.items()}
            else:
                cedar_context = json_member(definition["cedarJson"], dict, "context cedarJson")
            if cedar_context:
                request["context"] = cedar_context
        return request

    def _entities(self, store: _Store, body: Mapping[str, Any]) -> Any:
        entities: list[Any] = []
        if body.get("entities") is not None:
            definition = one_of(body, "entities", ("entityList", "cedarJson"))
            if "entityList" in definition:
                if not isinstance(definition["entityList"], list):
                    raise invalid("entityList must be a list")
                entities = [shapes.cedar_entity(item) for item in definition["entityList"]]
            else:
                entities = json_member(definition["cedarJson"], list, "entities cedarJson")
        for entity in entities:
            uid = entity.get("uid") if isinstance(entity, dict) else None
            if isinstance(uid, dict) and shapes.is_action_type(str(uid.get("type", ""))):
                raise invalid("entities may hold only principals and resources, not actions "
                               "(actions come from the schema)")
        try:
            return cedarpy.Entities.from_json_str(json.dumps(entities), store.schema)
        except ValueError as exc:
            raise invalid(f"entities rejected: {truncate(str(exc))}") from exc

    def _evaluate(self, store: _Store, requests: list[dict[str, Any]], entities: Any) -> list[dict[str, Any]]:
        compiled = self.compiled(store)
        results = cedarpy.is_authorized_batch(requests, compiled.policy_set, entities, schema=store.schema)

        def ours(text: str) -> str:
            return _POSITIONAL.sub(lambda m: compiled.positional.get(m.group(0), m.group(0)), text)

        answers = []
        for result in results:
            diagnostics = result.diagnostics
            answers.append({
                "decision": "ALLOW" if result.decision is cedarpy.Decision.Allow else "DENY",
                "determiningPolicies": [{"policyId": compiled.positional.get(reason, reason)}
                                        for reason in diagnostics.reasons],
                "errors": [{"errorDescription": truncate(ours(str(error)), 1000)}
                           for error in diagnostics.errors],
            })
        return answers

    def IsAuthorized(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(body)
        request = self._request(body)
        entities = self._entities(store, body)
        return self._evaluate(store, [request], entities)[0]

    def BatchIsAuthorized(self, body: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store(body)
        items = body.get("requests")
        if not isinstance(items, list) or not 1 <= len(items) <= shapes.BATCH_LIMIT:
            raise invalid(f"requests must hold 1 to {shapes.BATCH_LIMIT} requests")
        if not all(isinstance(item, Mapping) for item in items):
            raise invalid("every request must be a structure")
        principals = {json.dumps(item.get("principal"), sort_keys=True) for item in items}
        resources = {json.dumps(item.get("resource"), sort_keys=True) for item in items}
        if len(principals) > 1 and len(resources) > 1:
            raise invalid("the requests of a batch must all share the principal or all share the resource")
        requests = [self._request(item) for item in items]
        entities = self._entities(store, body)
        answers = self._evaluate(store, requests, entities)
        return {"results": [{"request": dict(item), **answer} for item, answer in zip(items, answers,
                                                                                     strict=True)]}


def _plain(identifier: Any) -> dict[str, str] | None:
    if identifier is None:
        return None
    uid = shapes.cedar_uid(identifier)
    return {"entityType": uid["type"], "entityId": uid["id"]}
