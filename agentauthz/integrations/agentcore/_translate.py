"""Translate our tool policies into AgentCore Policy's shape, refusing what a gateway cannot decide.

Each policy is read as Cedar's JSON policy form (``cedarpy.policies_to_json_str``),
rewritten node by node and printed back, so nothing is pattern-matched in policy
text. A policy comes out in one of three ways:

* **translated**: the same rule on ``AgentCore::OAuthUser`` / ``AgentCore::Action`` /
  ``AgentCore::Gateway``, reading claims as tags;
* **not applicable**: its scope can match no call to the target's tools (it
  names another action, a document resource, a non-user principal): the
  gateway never sees a request it could decide, so leaving it out changes no
  gateway decision. Each is listed with its reason;
* **refused**: it could decide a gateway call but reads something a gateway
  request does not carry (session facts, resource or entity attributes, an
  unmapped principal attribute, a template slot). Every refusal is reported with
  ``file:line`` and the translation fails as a whole: dropping a ``forbid`` or
  one of its conditions would let calls through that our policies deny.

Reading a tag the token lacks is an error in Cedar, and Cedar ignores a policy
whose evaluation fails: for a ``forbid`` that is an allow. So each condition
that reads claims is guarded by ``hasTag``: when a claim is missing a ``forbid``
applies and a ``permit`` does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cedarpy

from agentauthz._errors import PolicyError
from agentauthz._model import EntityUID
from agentauthz.engines.local import LocalEngine
from agentauthz.integrations.agentcore._limits import limit_problems
from agentauthz.integrations.agentcore._profile import (
    ACTION,
    GATEWAY,
    PRINCIPAL,
    AgentCoreProfile,
    tool_uid,
)
from agentauthz.integrations.agentcore._schema import gateway_schema, validation_problems
from agentauthz.policy._schema_json import schema_json_text
from agentauthz.policy._store import Policy, PolicyStore, policy_mode, truncate
from agentauthz.tools._spec import ToolSpec

__all__ = ["NotApplicable", "TranslatedPolicy", "Translation", "translate"]

Node = dict[str, Any]


class _Refused(Exception):
    """Inside the translator only: why one policy cannot be translated."""


class _NotApplicable(Exception):
    """Inside the translator only: why one policy can match no gateway call."""


@dataclass(frozen=True)
class TranslatedPolicy:
    """One of our policies in AgentCore's shape.

    Attributes:
        id: our policy id (the ``@id``).
        statement: the Cedar statement AgentCore stores (no annotations).
        effect: ``permit`` or ``forbid``.
        shadow: the policy is ``@mode("shadow")``: pushed with ``LOG_ONLY``.
        location: ``file:line`` of the policy it came from.
    """

    id: str
    statement: str
    effect: str
    shadow: bool
    location: str


@dataclass(frozen=True)
class NotApplicable:
    """A policy that can match no call to the gateway target's tools, and why."""

    id: str
    location: str
    reason: str


@dataclass(frozen=True)
class Translation:
    """The outcome of :func:`translate`: what a gateway's policy engine holds, and what was left out.

    Attributes:
        profile: the gateway target it was translated for.
        policies: the translated policies, in the store's order.
        not_applicable: the policies left out (no gateway tool matches them, or
            excluded), each with its reason.
    """

    profile: AgentCoreProfile
    policies: tuple[TranslatedPolicy, ...]
    not_applicable: tuple[NotApplicable, ...]


def translate(store: PolicyStore, profile: AgentCoreProfile, *, exclude: Iterable[str] = ()) -> Translation:
    """Translate a store's policies for one gateway target.

    Args:
        store: our policies (shadow ones become ``LOG_ONLY`` policies).
        profile: the gateway, its target's tools and the claim mapping.
        exclude: ids of policies you keep off the gateway on purpose (e.g.
            session rules enforced in process in front of it): listed in
            ``not_applicable`` as excluded, never translated.

    Returns:
        The translated policies and those that cannot match a gateway call.

    Raises:
        PolicyError: one problem per policy that could decide a gateway call but
            cannot be expressed there (``file:line: policy 'id': reason``), or
            per excluded id the store does not have.

    Example:
        >>> import agentauthz as az
        >>> from agentauthz.integrations.agentcore import AgentCoreProfile
        >>> spec = az.ToolSpec.from_json_schema("issue_refund", {"type": "object", "properties": {
        ...     "amount": {"type": "integer"}}, "required": ["amount"]})
        >>> store = az.PolicyStore.from_text(
        ...     '@id("small") permit(principal, action == Action::"issue_refund", resource) '
        ...     'when { context.input.amount <= 500 };')
        >>> arn = "arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/gw-1"
        >>> print(translate(store, AgentCoreProfile(arn, "Refunds", [spec])).policies[0].statement)
        permit (
          principal,
          action == AgentCore::Action::"Refunds___issue_refund",
          resource ==
            AgentCore::Gateway::"arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/gw-1"
        )
        when { ((context.input).amount) <= 500 };
    """
    translator = _Translator(store, profile)
    translated: list[TranslatedPolicy] = []
    skipped: list[NotApplicable] = []
    problems: list[str] = list(translator.problems)
    excluded = set(exclude)
    problems += [f"excluded policy {truncate(i, 80)!r} is not in the store"
                 for i in sorted(excluded - {p.id for p in store.policies})]
    for policy in store.policies:
        if policy.id in excluded:
            skipped.append(NotApplicable(policy.id, policy.location, "excluded: kept off the gateway"))
            continue
        try:
            translated.append(translator.policy(policy, _parse(policy)))
        except _NotApplicable as exc:
            skipped.append(NotApplicable(policy.id, policy.location, str(exc)))
        except _Refused as exc:
            problems.append(f"{policy.location}: policy {truncate(policy.id, 80)!r}: {exc}")
    if not problems:
        problems = _deployment_problems(translated, profile)
    if problems:
        raise PolicyError(problems)
    return Translation(profile, tuple(translated), tuple(skipped))


def _deployment_problems(translated: Sequence[TranslatedPolicy], profile: AgentCoreProfile) -> list[str]:
    """What AgentCore would refuse: a statement its generated schema rejects, or a broken limit."""
    schema = gateway_schema(profile)
    invalid = validation_problems({p.id: p.statement for p in translated}, schema)
    problems = [f"{p.location}: policy {truncate(p.id, 80)!r}: does not validate against the schema "
                f"AgentCore generates from the tools: {truncate('; '.join(invalid[p.id]), 300)}"
                for p in translated if p.id in invalid]
    return problems + limit_problems(translated)


def _parse(policy: Policy) -> Node:
    """The policy's JSON form (each policy parsed alone: positions are not ids)."""
    try:
        document = json.loads(cedarpy.policies_to_json_str(policy.text))
    except ValueError as exc:  # cedarpy writes Cedar's JSON form to a depth of about 128 only
        raise _Refused("the policy is nested too deeply for Cedar's JSON policy form") from exc
    bodies = [*document.get("staticPolicies", {}).values(), *document.get("templates", {}).values()]
    body: Node = bodies[0]
    return body


def _uid(node: Mapping[str, Any]) -> EntityUID:
    return EntityUID(str(node["type"]), str(node["id"]))


def _entity_value(node: Any) -> EntityUID | None:
    """The uid of an entity literal expression (``{"Value": {"__entity": ...}}``), else None."""
    if isinstance(node, Mapping) and isinstance(node.get("Value"), Mapping) and "__entity" in node["Value"]:
        return _uid(node["Value"]["__entity"])
    return None


def _var(node: Any) -> str | None:
    return node.get("Var") if isinstance(node, Mapping) and isinstance(node.get("Var"), str) else None


def _action_ancestors(store: PolicyStore) -> dict[EntityUID, frozenset[EntityUID]]:
    """Each action's action groups, transitively: from the schema, and from action entities' parents."""
    parents: dict[EntityUID, set[EntityUID]] = {}
    for entity in store.entities:
        if entity.uid.type.rpartition("::")[2] == "Action":
            parents.setdefault(entity.uid, set()).update(entity.parents)
    document = json.loads(schema_json_text(store.schema_text)) if store.schema_text is not None else {}
    for namespace, body in document.items():
        default_type = f"{namespace}::Action" if namespace else "Action"
        for name, action in (body.get("actions") or {}).items():
            uid = EntityUID(default_type, name)
            for member in action.get("memberOf") or ():
                member_type = member.get("type") or "Action"
                if namespace and "::" not in member_type:
                    member_type = f"{namespace}::{member_type}"
                parents.setdefault(uid, set()).add(EntityUID(member_type, member["id"]))

    def closure(uid: EntityUID, seen: frozenset[EntityUID]) -> frozenset[EntityUID]:
        found = set(parents.get(uid, ()))
        for parent in parents.get(uid, ()):
            if parent not in seen:
                found |= closure(parent, seen | {parent})
        return frozenset(found)

    return {uid: closure(uid, frozenset({uid})) for uid in parents}


def _entity_attribute_types(store: PolicyStore, entity_type: str) -> dict[str, str | None]:
    """Attribute -> entity type it holds (None for other types) of one schema entity type."""
    if store.schema_text is None:
        return {}
    document = json.loads(schema_json_text(store.schema_text))
    namespace, _, name = entity_type.rpartition("::")
    shape = ((document.get(namespace) or {}).get("entityTypes", {}).get(name) or {}).get("shape") or {}
    entity_types = set((document.get(namespace) or {}).get("entityTypes") or {})
    found: dict[str, str | None] = {}
    for attribute, declared in (shape.get("attributes") or {}).items():
        named = declared.get("name") if declared.get("type") in ("Entity", "EntityOrCommon") else None
        if named is not None and named.rpartition("::")[2] not in entity_types and "::" not in named:
            named = None   # a common or primitive type
        if named is not None and namespace and "::" not in named:
            named = f"{namespace}::{named}"
        found[attribute] = named
    return found


def _declared_entity_types(store: PolicyStore) -> set[str] | None:
    """The schema's entity types, qualified (None without a schema)."""
    if store.schema_text is None:
        return None
    document = json.loads(schema_json_text(store.schema_text))
    return {f"{namespace}::{name}" if namespace else name
            for namespace, body in document.items() for name in body.get("entityTypes") or {}}


class _Translator:
    def __init__(self, store: PolicyStore, profile: AgentCoreProfile) -> None:
        self.profile = profile
        self.ancestors = _action_ancestors(store)
        self.attribute_types = _entity_attribute_types(store, profile.principal_type)
        # a bare action name means what it means to the guard: the schema's action of that name
        engine = LocalEngine(store)
        self.tools = {engine.resolve_action(spec.action): spec for spec in profile.tools}
        declared = set(store.actions) if store.schema_text is not None else set(self.tools)
        self.problems = [f"tool {spec.name!r}: the store's schema declares no action {uid} (or declares it "
                         "in several namespaces): its calls would all be denied here"
                         for uid, spec in self.tools.items() if uid not in declared]
        # a scope naming our types is matched against these two: a wrong name would leave policies out
        types = _declared_entity_types(store)
        self.problems += [f"the store's schema declares no entity type {entity_type} "
                          f"(AgentCoreProfile.{option})"
                          for option, entity_type in (("principal_type", profile.principal_type),
                                                      ("tool_type", profile.tool_type))
                          if types is not None and entity_type not in types]

    # -- the scope ------------------------------------------------------------------------------

    def policy(self, policy: Policy, est: Node) -> TranslatedPolicy:
        tools = self._tools_of(est["action"])
        tools = [spec for spec in tools if self._resource_matches(est["resource"], spec)]
        if not tools:
            raise _NotApplicable("its action and resource match no tool of the gateway target")
        if policy.is_template:
            raise _Refused("AgentCore Policy has no templates; link it into static policies first")
        principal, membership = self._principal(est["principal"])
        effect = str(est["effect"])
        conditions = [self._condition(effect, str(c["kind"]), c["body"]) for c in est.get("conditions", ())]
        if membership is not None:
            conditions.insert(0, {"kind": "when", "body": membership})
        out: Node = {"effect": effect, "principal": principal, **self._action_and_resource(est, tools),
                     "conditions": conditions}
        return TranslatedPolicy(policy.id, _statement(out), effect, policy_mode(policy) == "shadow",
                                policy.location)

    def _tools_of(self, scope: Mapping[str, Any]) -> list[ToolSpec]:
        op = scope["op"]
        if op == "All":
            return list(self.profile.tools)
        if op == "==":
            spec = self.tools.get(_uid(scope["entity"]))
            return [spec] if spec is not None else []
        groups = [_uid(e) for e in scope["entities"]] if "entities" in scope else [_uid(scope["entity"])]
        return [spec for uid, spec in self.tools.items()
                if any(g == uid or g in self.ancestors.get(uid, ()) for g in groups)]

    def _resource_matches(self, scope: Mapping[str, Any], spec: ToolSpec) -> bool:
        resource = tool_uid(self.profile, spec)
        op = scope["op"]
        if "slot" in scope:
            return True   # a template: refused once it is known to apply
        if op == "All":
            return True
        if op == "==":
            return _uid(scope["entity"]) == resource
        if op == "is":
            if scope["entity_type"] != resource.type:
                return False
            return "in" not in scope or self._resource_in(scope["in"], resource)
        return self._resource_in(scope, resource)

    @staticmethod
    def _resource_in(scope: Mapping[str, Any], resource: EntityUID) -> bool:
        if "slot" in scope:
            return True
        if _uid(scope["entity"]) == resource:
            return True
        raise _Refused("its resource scope names a resource hierarchy (`resource in ...`); the gateway's "
                       "only resource is the Gateway")

    def _principal(self, scope: Mapping[str, Any]) -> tuple[Node, Node | None]:
        """The principal scope on OAuthUser, and the group test it turns into (if any)."""
        if "slot" in scope or ("in" in scope and "slot" in scope["in"]):
            raise _Refused("AgentCore Policy has no templates")
        op = scope["op"]
        if op == "All":
            return {"op": "All"}, None
        if op == "is":
            self._principal_type(scope["entity_type"])
            if "in" not in scope:
                return {"op": "is", "entity_type": PRINCIPAL}, None
            return {"op": "is", "entity_type": PRINCIPAL}, self._member(_uid(scope["in"]["entity"]))
        uid = _uid(scope["entity"])
        if op == "==" or uid.type == self.profile.principal_type:
            self._principal_type(uid.type)
            return {"op": "==", "entity": {"type": PRINCIPAL, "id": uid.id}}, None
        return {"op": "is", "entity_type": PRINCIPAL}, self._member(uid)

    def _principal_type(self, entity_type: str) -> None:
        if entity_type != self.profile.principal_type:
            raise _NotApplicable(f"its principal is a {entity_type}; gateway principals are OAuth users "
                                 f"({self.profile.principal_type})")

    def _member(self, group: EntityUID) -> Node:
        """``principal in <group>`` as a test of the groups claim (missing claim: in no group)."""
        claim = self.profile.tags.groups.get(group.type)
        if claim is None:
            raise _Refused(f"`principal in {group.type}::...`: no claim holds {group.type} groups "
                           "(TagMapping.groups)")
        quoted = json.dumps(group.id)
        if quoted != f'"{group.id}"' or not group.id:
            raise _Refused(f"group id of type {group.type} needs JSON escaping; a claim test cannot match "
                           "it exactly")
        pattern: list[Any] = ["Wildcard", *({"Literal": c} for c in quoted), "Wildcard"]
        return {"&&": {"left": _has_tag(claim),
                       "right": {"like": {"left": _get_tag(claim), "pattern": pattern}}}}

    def _action_and_resource(self, est: Mapping[str, Any], tools: Sequence[ToolSpec]) -> Node:
        """AgentCore's rule: named actions need ``resource ==`` the gateway; any action needs ``is``."""
        resource_open = est["resource"]["op"] == "All" or (
            est["resource"]["op"] == "is" and "in" not in est["resource"])
        if est["action"]["op"] == "All" and resource_open:
            return {"action": {"op": "All"}, "resource": {"op": "is", "entity_type": GATEWAY}}
        ids = [{"type": ACTION, "id": self.profile.action_id(spec.name)} for spec in tools]
        action = {"op": "==", "entity": ids[0]} if len(ids) == 1 else {"op": "in", "entities": ids}
        return {"action": action,
                "resource": {"op": "==", "entity": {"type": GATEWAY, "id": self.profile.gateway_arn}}}

    # -- the conditions -------------------------------------------------------------------------

    def _condition(self, effect: str, kind: str, body: Any) -> Node:
        rewriter = _Expression(self)
        rewritten = rewriter.expr(body)
        if not rewriter.tags:
            return {"kind": kind, "body": rewritten}
        # a missing claim: the clause lets a forbid apply and keeps a permit from applying
        applies_when_missing = (effect == "forbid") == (kind == "when")
        guard = _all(_has_tag(claim) for claim in sorted(rewriter.tags))
        return {"kind": kind, "body": {"if-then-else": {"if": guard, "then": rewritten,
                                                        "else": {"Value": applies_when_missing}}}}


class _Expression:
    """Rewrites one condition; collects the claims it reads with getTag."""

    def __init__(self, translator: _Translator) -> None:
        self.translator = translator
        self.tags: set[str] = set()

    def expr(self, node: Any) -> Any:
        if not isinstance(node, Mapping) or len(node) != 1:
            raise _Refused("unexpected policy form")
        [(op, body)] = node.items()
        special = getattr(self, _HANDLERS.get(op, ""), None)
        if special is not None:
            result: Any = special(body)
            return result
        return {op: self._children(body)}

    def _children(self, body: Any) -> Any:
        if isinstance(body, list):
            return [self.expr(item) for item in body]
        if isinstance(body, Mapping):
            return {key: (value if key in ("attr", "pattern", "entity_type") else self.expr(value))
                    for key, value in body.items()}
        raise _Refused("unexpected policy form")

    def _value(self, value: Any) -> Node:
        if _mentions_entity(value):
            raise _Refused("it compares with an entity literal; a gateway request has no entities but the "
                           "user, the action and the Gateway")
        return {"Value": value}

    def _variable(self, name: str) -> Node:
        reasons = {
            "principal": "it uses the principal as an entity (only mapped attributes and groups translate)",
            "resource": "it reads the resource; the gateway's only resource is the Gateway",
            "action": "it reads the action in a condition",
            "context": "it uses the whole context",
        }
        raise _Refused(reasons.get(name, f"it reads {name}"))

    def _slot(self, body: Any) -> Node:
        raise _Refused("AgentCore Policy has no templates")

    def _attribute(self, body: Mapping[str, Any]) -> Node:
        left, attr = body["left"], body["attr"]
        if _var(left) == "principal":
            claim = self._claim(attr)
            self.tags.add(claim)
            return _get_tag(claim)
        if _var(left) == "context":
            if attr != "input":
                raise _Refused(f"it reads context.{attr}; a gateway request carries context.input only "
                               "(session facts and other context do not reach AgentCore)")
            return {".": {"left": left, "attr": attr}}
        if _var(left) == "resource":
            self._variable("resource")
        return {".": {"left": self.expr(left), "attr": attr}}

    def _has(self, body: Mapping[str, Any]) -> Node:
        left, attr = body["left"], body["attr"]
        if _var(left) == "principal":
            return _has_tag(self._claim(attr))
        if _var(left) == "context":
            if attr != "input":
                raise _Refused(f"it tests context has {attr}; a gateway request carries context.input only "
                               "(session facts and other context do not reach AgentCore)")
            return {"has": {"left": left, "attr": attr}}
        return {"has": {"left": self.expr(left), "attr": attr}}

    def _claim(self, attribute: str) -> str:
        claim = self.translator.profile.tags.attributes.get(attribute)
        if claim is None:
            raise _Refused(f"it reads principal.{attribute}, which no claim holds (TagMapping.attributes)")
        return claim

    def _equal(self, body: Mapping[str, Any], op: str = "==") -> Node:
        for mine, other in ((body["left"], body["right"]), (body["right"], body["left"])):
            uid = _entity_value(other)
            if uid is None:
                continue
            if _var(mine) == "principal":
                if uid.type != self.translator.profile.principal_type:
                    raise _Refused(f"it compares the principal with a {uid.type}")
                user = {"__entity": {"type": PRINCIPAL, "id": uid.id}}
                return {op: {"left": mine, "right": {"Value": user}}}
            attribute = self._entity_attribute(mine)
            if attribute is not None:
                declared = self.translator.attribute_types.get(attribute)
                if declared != uid.type:
                    raise _Refused(f"principal.{attribute} is compared with a {uid.type}, but the schema "
                                   f"declares it {declared or 'not an entity'}")
                self.tags.add(self._claim(attribute))
                return {op: {"left": _get_tag(self._claim(attribute)), "right": {"Value": uid.id}}}
        return {op: self._children(body)}

    def _not_equal(self, body: Mapping[str, Any]) -> Node:
        return self._equal(body, "!=")

    @staticmethod
    def _entity_attribute(node: Any) -> str | None:
        if isinstance(node, Mapping) and "." in node and _var(node["."]["left"]) == "principal":
            return str(node["."]["attr"])
        return None

    def _in(self, body: Mapping[str, Any]) -> Node:
        group = _entity_value(body["right"])
        if _var(body["left"]) == "principal" and group is not None:
            if group.type == self.translator.profile.principal_type:
                return self._equal(body)
            return self.translator._member(group)
        return {"in": self._children(body)}

    def _is(self, body: Mapping[str, Any]) -> Node:
        if _var(body["left"]) == "principal" and "in" not in body:
            if body["entity_type"] != self.translator.profile.principal_type:
                raise _Refused(f"it tests principal is {body['entity_type']}")
            return {"is": {"left": body["left"], "entity_type": PRINCIPAL}}
        raise _Refused("it tests the type of an entity other than the principal")

    def _tag(self, body: Any) -> Node:
        raise _Refused("it reads tags of our entities; AgentCore's tags are the token's claims "
                       "(map attributes with TagMapping)")

    def _record(self, body: Mapping[str, Any]) -> Node:
        return {"Record": {key: self.expr(value) for key, value in body.items()}}


_HANDLERS = {"Value": "_value", "Var": "_variable", "Slot": "_slot", "Unknown": "_slot", ".": "_attribute",
             "has": "_has", "==": "_equal", "!=": "_not_equal", "in": "_in", "is": "_is",
             "getTag": "_tag", "hasTag": "_tag", "Record": "_record"}


def _mentions_entity(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "__entity" in value or any(_mentions_entity(v) for v in value.values())
    if isinstance(value, list):
        return any(_mentions_entity(v) for v in value)
    return False


def _get_tag(claim: str) -> Node:
    return {"getTag": {"left": {"Var": "principal"}, "right": {"Value": claim}}}


def _has_tag(claim: str) -> Node:
    return {"hasTag": {"left": {"Var": "principal"}, "right": {"Value": claim}}}


def _all(tests: Iterable[Node]) -> Node:
    nodes = list(tests)
    result = nodes[0]
    for node in nodes[1:]:
        result = {"&&": {"left": result, "right": node}}
    return result


def _statement(est: Node) -> str:
    document = json.dumps({"staticPolicies": {"policy0": est}, "templates": {}, "templateLinks": []})
    try:
        return str(cedarpy.format_policies(cedarpy.policies_from_json_str(document))).strip()
    except ValueError as exc:  # cedarpy reads Cedar's JSON form to a depth of about 128 only
        raise _Refused("the translated policy is nested too deeply for Cedar's JSON policy form (split a "
                       "long chain of || or && into several policies)") from exc
