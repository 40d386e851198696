"""A local Amazon Verified Permissions endpoint for tests and development.

:class:`LocalVerifiedPermissions` speaks AVP's wire protocol (``awsJson1_0``:
``POST /`` with ``X-Amz-Target: VerifiedPermissions.<Operation>`` and a JSON
body) on 127.0.0.1, so a real boto3 ``verifiedpermissions`` client, and so
:class:`~agentauthz.VerifiedPermissionsEngine`, can be tested end to end without
AWS. Decisions are made by the embedded Cedar engine (cedarpy).

Like AVP it keeps only policy stores, policies, templates and schemas (never
entities: they travel with each request), generates its own ids, reports
determining policies by those ids, and enforces AVP's request rules (at most 30
requests per batch, all sharing a principal or a resource; identifier lengths)
with ``ValidationException``. Operations it does not implement answer
``UnknownOperationException``.

Fault injection (:meth:`LocalVerifiedPermissions.inject` with a :class:`Fault`)
makes it slow, throttled, failing or lying, to test that a client fails closed.

Example:
    >>> import agentauthz as az
    >>> store = az.PolicyStore.from_text('@id("all") permit(principal, action, resource);')
    >>> with LocalVerifiedPermissions(store) as server:
    ...     server.endpoint_url.startswith("http://127.0.0.1:")
    True
"""

from __future__ import annotations

import importlib
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import cedarpy

from agentauthz._errors import ConfigurationError, PolicyError
from agentauthz.avp import _wire as shapes
from agentauthz.avp._identity_sources import IDENTITY_OPERATIONS, IdentitySourceOperations, JwksRegistry
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
from agentauthz.policy._schema_json import schema_json_text
from agentauthz.policy._store import PolicyStore, truncate

__all__ = ["Fault", "LocalVerifiedPermissions", "serve_directory"]

ValidationMode = Literal["STRICT", "OFF"]
_TARGET_PREFIX = "VerifiedPermissions."
_JSON_TYPE = "application/x-amz-json-1.0"
_POSITIONAL = re.compile(r"\bpolicy(\d+)\b")
_MAX_BODY = 2_000_000


# -- faults ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """Something going wrong at the endpoint, for tests. Build one with the class methods.

    Example:
        >>> Fault.throttling().kind
        'error'
    """

    kind: Literal["delay", "error", "raw", "drop_results", "decision", "echo", "duplicate"]
    seconds: float = 0.0
    code: str = ""
    status: int = 200
    body: bytes = b""
    value: str = ""
    count: int | None = None

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer after ``seconds`` (longer than the client's read timeout: a timeout)."""
        return cls("delay", seconds=seconds)

    @classmethod
    def throttling(cls) -> Fault:
        """``ThrottlingException`` (HTTP 400), which clients retry with backoff."""
        return cls("error", code="ThrottlingException", status=400)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """``InternalServerException`` with this HTTP status."""
        return cls("error", code="InternalServerException", status=status)

    @classmethod
    def error(cls, code: str, status: int = 400) -> Fault:
        """Any modeled error (``AccessDeniedException``, ``ValidationException``, ...)."""
        return cls("error", code=code, status=status)

    @classmethod
    def malformed_json(cls, body: bytes = b'{"decision": "ALLOW", ') -> Fault:
        """HTTP 200 with a body that is not JSON (botocore reads it as ``{}``)."""
        return cls("raw", status=200, body=body)

    @classmethod
    def raw(cls, status: int, body: bytes) -> Fault:
        """Any status and body."""
        return cls("raw", status=status, body=body)

    @classmethod
    def drop_results(cls, count: int | None = None) -> Fault:
        """Leave out the last ``count`` batch results (all when None); IsAuthorized loses its decision."""
        return cls("drop_results", count=count)

    @classmethod
    def decision(cls, value: str = "MAYBE") -> Fault:
        """Answer this decision value (outside AVP's ALLOW/DENY enum, or differently cased)."""
        return cls("decision", value=value)

    @classmethod
    def mismatched_echo(cls) -> Fault:
        """Batch results echo a request that was never sent (a different principal id)."""
        return cls("echo")

    @classmethod
    def duplicate_results(cls) -> Fault:
        """Every batch result twice."""
        return cls("duplicate")


@dataclass
class _Injection:
    operation: str
    fault: Fault
    remaining: int | None


# -- the policy store --------------------------------------------------------------------


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


class _Backend(IdentitySourceOperations):
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


# -- HTTP --------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: LocalVerifiedPermissions


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: without TCP_NODELAY each answer waits ~40 ms
    # for the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self.close_connection = True
            status, payload = 413, b'{"__type": "ValidationException", "message": "request too large"}'
        else:
            body = self.rfile.read(length)
            status, payload = self.server.owner._answer(self.headers.get("X-Amz-Target", ""), body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", _JSON_TYPE)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-amzn-RequestId", secrets.token_hex(16))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        return


@dataclass(frozen=True)
class Call:
    """One operation the endpoint received: its name and JSON body."""

    operation: str
    body: dict[str, Any]


class LocalVerifiedPermissions:
    """An AVP-compatible endpoint on 127.0.0.1, backed by the embedded Cedar engine.

    Args:
        store: a policy store to seed (its policies, templates, links and schema;
            never its entities). ``policy_store_id`` then names it.
        host: interface to listen on.
        port: TCP port; 0 picks a free one.
        validation_mode: of the seeded store; default ``STRICT`` when it has a
            schema, ``OFF`` otherwise.
        jwks: signing keys for ``*WithToken`` calls: issuer -> JWKS (a dict or a
            callable returning one), or a callable ``issuer -> JWKS``. Identity
            sources are added with ``CreateIdentitySource`` or :meth:`add_identity_source`.

    Example:
        >>> import agentauthz as az
        >>> store = az.PolicyStore.from_text('@id("all") permit(principal, action, resource);')
        >>> with LocalVerifiedPermissions(store) as server:
        ...     sorted(server.policy_ids())
        ['all']
    """

    operations = (
        "IsAuthorized", "BatchIsAuthorized", "GetSchema", "PutSchema", "CreatePolicyStore",
        "GetPolicyStore", "UpdatePolicyStore", "DeletePolicyStore", "ListPolicyStores", "CreatePolicy",
        "GetPolicy", "UpdatePolicy", "DeletePolicy", "ListPolicies", "CreatePolicyTemplate",
        "GetPolicyTemplate", "UpdatePolicyTemplate", "DeletePolicyTemplate", "ListPolicyTemplates",
        *IDENTITY_OPERATIONS,
    )

    def __init__(self, store: PolicyStore | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 validation_mode: ValidationMode | None = None, jwks: JwksRegistry | None = None) -> None:
        self._backend = _Backend()
        self._backend.set_jwks(jwks)
        self._host = host
        self._port = port
        self._http: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._faults: list[_Injection] = []
        self._faults_lock = threading.Lock()
        self._calls: list[Call] = []
        self._seeded: str | None = None
        self._our_ids: dict[str, dict[str, str]] = {}
        if store is not None:
            self._seeded = self.add_store(store, validation_mode=validation_mode)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> LocalVerifiedPermissions:
        """Listen and serve in a background thread (idempotent)."""
        if self._http is None:
            self._stopping.clear()
            http = _HTTPServer((self._host, self._port), _Handler)
            http.owner = self
            self._http = http
            self._thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="agentauthz-local-avp", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; delayed answers are cut short."""
        self._stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalVerifiedPermissions:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``; pass it as a boto3 client's ``endpoint_url``."""
        if self._http is None:
            raise ConfigurationError("the local Verified Permissions endpoint is not started")
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def policy_store_id(self) -> str:
        """Id of the store seeded from the constructor's ``store``."""
        if self._seeded is None:
            raise ConfigurationError("no policy store was seeded: pass a PolicyStore or call add_store")
        return self._seeded

    def client(self, **config: Any) -> Any:
        """A boto3 ``verifiedpermissions`` client for this endpoint (needs the ``aws`` extra).

        ``config`` goes to ``botocore.config.Config`` (e.g. ``read_timeout=1``).
        """
        try:
            boto3 = importlib.import_module("boto3")
            botocore_config = importlib.import_module("botocore.config")
        except ImportError as exc:  # pragma: no cover - the aws extra is a test dependency
            raise ImportError('a boto3 client needs the aws extra: pip install "agentauthz[aws]"') from exc
        return boto3.client(
            "verifiedpermissions", endpoint_url=self.endpoint_url, region_name="us-east-1",
            aws_access_key_id="local", aws_secret_access_key="local",
            config=botocore_config.Config(**config),
        )

    # -- stores --------------------------------------------------------------------------

    def add_store(self, store: PolicyStore | None = None, *, validation_mode: ValidationMode | None = None,
                  description: str | None = None) -> str:
        """Create a policy store in-process (no HTTP) and seed it from ``store``.

        Static policies and templates carry ``agentauthz:<our id>`` descriptions,
        and every policy a ``name/...`` name, as ``agentauthz push`` writes them.

        Returns:
            The new policy store id.

        Raises:
            PolicyError: the schema cannot be put in JSON form, or a policy is refused.
        """
        has_schema = store is not None and store.schema_text is not None
        mode: ValidationMode = validation_mode or ("STRICT" if has_schema else "OFF")
        created = self._backend.create_store(mode, description)
        ours: dict[str, str] = {}
        if store is None:
            self._our_ids[created.id] = ours
            return created.id
        try:
            if store.schema_text is not None:
                self._backend.set_schema(created, schema_json_text(store.schema_text))
            template_ids: dict[str, str] = {}
            # Verified Permissions has no shadow mode: a shadow policy there would be enforced.
            for policy in store.enforced_policies:
                name = shapes.policy_name(policy.id)
                description_text = shapes.policy_description(policy.id)
                if policy.is_template:
                    template = self._backend.add_template(created, policy.text, description_text, name,
                                                          validate=False)
                    template_ids[policy.id] = template.id
                    ours[policy.id] = template.id
                else:
                    ours[policy.id] = self._backend.add_static(created, policy.text, description_text,
                                                               name, validate=False).id
            for link in store.enforced_links:
                principal = _identifier(link.principal)
                resource = _identifier(link.resource)
                ours[link.id] = self._backend.add_link(created, template_ids[link.template], principal,
                                                       resource, shapes.policy_name(link.id)).id
        except ServiceError as exc:
            self._backend.stores.pop(created.id, None)
            raise PolicyError(f"cannot seed the local Verified Permissions store: {exc.message}") from exc
        self._our_ids[created.id] = ours
        return created.id

    def add_identity_source(self, identity: Any, *, policy_store_id: str | None = None) -> str:
        """Add an identity source to a store in-process (no HTTP); returns its id.

        ``identity`` is a :class:`~agentauthz.TokenIdentity` (its description and
        its JWKS are used) or ``CreateIdentitySource`` parameters
        (``configuration``, ``principalEntityType``; register the issuer's keys
        with ``jwks=`` then).

        Raises:
            ConfigurationError: the description is refused.
        """
        store = self._backend.stores.get(policy_store_id or self.policy_store_id)
        if store is None:
            raise ConfigurationError(f"no policy store {policy_store_id!r}")
        if hasattr(identity, "identity_source"):
            self._backend.register_jwks(identity.issuer, identity.jwks)
            identity = identity.identity_source()
        try:
            return self._backend.add_identity_source(
                store, identity.get("configuration"), identity.get("principalEntityType")).id
        except ServiceError as exc:
            raise ConfigurationError(f"identity source refused: {exc.message}") from exc

    def delete_store(self, policy_store_id: str) -> None:
        """Remove a policy store."""
        with self._backend.lock:
            self._backend.stores.pop(policy_store_id, None)
        self._our_ids.pop(policy_store_id, None)

    def policy_ids(self, policy_store_id: str | None = None) -> dict[str, str]:
        """Our policy/template/link ids -> the ids this endpoint generated, for a seeded store."""
        return dict(self._our_ids.get(policy_store_id or self.policy_store_id, {}))

    # -- faults and calls ----------------------------------------------------------------

    def inject(self, operation: str, fault: Fault, *, times: int | None = None) -> None:
        """Make ``operation`` (``"*"`` for every one) fail with ``fault``, ``times`` times or for good.

        Faults apply in the order injected; the first that matches a call is used.

        Example:
            >>> server = LocalVerifiedPermissions()
            >>> server.inject("IsAuthorized", Fault.throttling(), times=2)
        """
        if operation != "*" and operation not in self.operations:
            raise ConfigurationError(f"unknown operation {operation!r}")
        with self._faults_lock:
            self._faults.append(_Injection(operation, fault, times))

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self._faults_lock:
            self._faults.clear()

    @contextmanager
    def faults(self, operation: str, fault: Fault, *, times: int | None = None) -> Iterator[None]:
        """:meth:`inject` for the duration of a block."""
        self.inject(operation, fault, times=times)
        try:
            yield
        finally:
            self.clear_faults()

    @property
    def calls(self) -> list[Call]:
        """Every call received so far, in order."""
        return list(self._calls)

    def call_count(self, operation: str | None = None) -> int:
        """How many calls (of ``operation``) were received."""
        return sum(1 for call in self._calls if operation is None or call.operation == operation)

    def reset_calls(self) -> None:
        """Forget the calls received so far."""
        self._calls.clear()

    def _fault_for(self, operation: str) -> Fault | None:
        with self._faults_lock:
            for injection in self._faults:
                if injection.operation in ("*", operation):
                    if injection.remaining is not None:
                        injection.remaining -= 1
                        if injection.remaining <= 0:
                            self._faults.remove(injection)
                    return injection.fault
        return None

    # -- dispatch ------------------------------------------------------------------------

    def _answer(self, target: str, raw: bytes) -> tuple[int, bytes]:
        operation = target[len(_TARGET_PREFIX):] if target.startswith(_TARGET_PREFIX) else ""
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, RecursionError):
            return _error_body(ServiceError("SerializationException", "body is not JSON"))
        if not isinstance(body, dict):
            return _error_body(ServiceError("SerializationException", "body must be a JSON object"))
        self._calls.append(Call(operation, body))
        fault = self._fault_for(operation) if operation else None
        if fault is not None and fault.kind == "delay":
            if self._stopping.wait(fault.seconds):
                return _error_body(ServiceError("InternalServerException", "endpoint stopping"))
            fault = None
        if fault is not None and fault.kind == "error":
            return _error_body(ServiceError(fault.code, f"injected {fault.code}", fault.status))
        if fault is not None and fault.kind == "raw":
            return fault.status, fault.body
        handler: Callable[[Mapping[str, Any]], dict[str, Any]] | None = (
            getattr(self._backend, operation, None) if operation in self.operations else None)
        if handler is None:
            return _error_body(ServiceError("UnknownOperationException",
                                            f"operation {operation or target!r} is not supported"))
        try:
            answer = handler(body)
        except ServiceError as exc:
            return _error_body(exc)
        except shapes.ShapeError as exc:
            return _error_body(invalid(str(exc)))
        except Exception as exc:  # a bug here must look like a server failure, never an answer
            return _error_body(ServiceError("InternalServerException", f"{type(exc).__name__}: "
                                            f"{truncate(str(exc))}"))
        if fault is not None:
            answer = _distort(answer, fault)
        return 200, json.dumps(answer).encode("utf-8")


def _identifier(uid: Any) -> dict[str, str] | None:
    return None if uid is None else {"entityType": uid.type, "entityId": uid.id}


def _error_body(error: ServiceError) -> tuple[int, bytes]:
    return error.status, json.dumps({"__type": error.code, "message": error.message,
                                     **error.extra}).encode("utf-8")


def _distort(answer: dict[str, Any], fault: Fault) -> dict[str, Any]:
    results = answer.get("results")
    if fault.kind == "drop_results":
        if isinstance(results, list):
            keep = 0 if fault.count is None else max(0, len(results) - fault.count)
            answer["results"] = results[:keep]
        else:
            answer.pop("decision", None)
    elif fault.kind == "decision":
        for item in results if isinstance(results, list) else [answer]:
            item["decision"] = fault.value
    elif fault.kind == "echo" and isinstance(results, list):
        for item in results:
            principal = item["request"].get("principal") or {}
            item["request"]["principal"] = {**principal,
                                            "entityId": str(principal.get("entityId", "")) + "-other"}
    elif fault.kind == "duplicate" and isinstance(results, list):
        answer["results"] = [item for item in results for _ in range(2)]
    return answer


def serve_directory(path: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                    ready: Callable[[LocalVerifiedPermissions], None] | None = None) -> None:
    """Serve a policy store directory on a local AVP endpoint until interrupted.

    For ``agentauthz serve-avp policies/``: loads the directory, seeds a store,
    calls ``ready(server)`` (e.g. to print ``server.endpoint_url`` and
    ``server.policy_store_id``), then blocks until KeyboardInterrupt.

    Raises:
        PolicyError: the directory does not load.
    """
    store = PolicyStore.from_directory(path)
    with LocalVerifiedPermissions(store, host=host, port=port) as server:
        if ready is not None:
            ready(server)
        try:
            while not server._stopping.wait(3600):
                pass
        except KeyboardInterrupt:
            return
