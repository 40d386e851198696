"""``agentauthz validate``: every problem of a policy store with its column, and warnings.

Errors are what :meth:`PolicyStore.from_directory` reports (parse, schema,
validation, duplicate ids, links, entities), each at ``file:line:col`` (see
:mod:`agentauthz.policy._locate`), and the entities' problems even when the
policies do not load.

Warnings need no schema and never fail the store (unless ``--strict``):

* ``never-applies``: the policy names only actions the schema does not declare
  (requests are checked against the schema, so none can match), or a condition
  is the literal ``when { false }`` / ``unless { true }``;
* ``unlinked-template``: a template with no link never applies;
* ``shadowed``: a permit (or a template link) whose scope lies inside the scope of a
  forbid that has no condition: the forbid overrides it on every request it matches.
  Scopes are compared as written (``==``, ``in``, ``is``, action lists), never through
  the entity hierarchy, so a warning is always right and some shadowing goes unseen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cedarpy

from agentauthz._errors import AuthzError, PolicyError
from agentauthz._model import EntityUID
from agentauthz.policy._locate import Finding, StoreTexts, element_position, locate, locate_problems
from agentauthz.policy._store import Policy, PolicyStore, TemplateLink, entity_problems
from agentauthz.policy._text import DEFAULT_MAX_DEPTH

__all__ = ["Finding", "LintReport", "lint_directory", "locate_problems"]


@dataclass
class LintReport:
    """What :func:`lint_directory` found.

    Attributes:
        errors: problems that keep the store from loading.
        warnings: policies that can never apply or never allow.
        store: the store as loaded (parse-only if validation failed), or None
            when it does not even parse.
        notes: remarks that are neither (e.g. no schema).
    """

    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    store: PolicyStore | None = None
    notes: list[str] = field(default_factory=list)


def lint_directory(path: str | Path, *, validate: bool = True,
                   max_depth: int = DEFAULT_MAX_DEPTH) -> LintReport:
    """Load a store directory and report every problem and warning.

    Args:
        path: the store directory.
        validate: check the policies against the schema (else parse only).
        max_depth: nesting limit passed to the loader.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / "p.cedar").write_text('permit(principal, action, resource) when { false };')
        >>> [(w.location(), w.code) for w in lint_directory(root).warnings]
        [('p.cedar:1:1', 'never-applies')]
    """
    root = Path(path)
    report = LintReport()
    texts = StoreTexts(root)
    try:
        report.store = PolicyStore.from_directory(root, validate=validate, max_depth=max_depth)
    except PolicyError as exc:
        report.errors.extend(locate(problem, texts, max_depth) for problem in exc.problems)
        if validate:
            try:
                report.store = PolicyStore.from_directory(root, validate=False, max_depth=max_depth)
            except PolicyError:
                report.store = None
        if not any(finding.file == "entities.json" for finding in report.errors):
            report.errors.extend(_entity_problems(root, texts, max_depth))
    store = report.store
    if store is None:
        return report
    if store.schema_text is None:
        report.notes.append("no schema: policies are parsed but not type-checked, and requests "
                            "are not validated")
    flagged = {(finding.file, finding.line) for finding in report.errors}
    report.warnings.extend(
        finding for finding in _warnings(store, texts)
        if (finding.file, finding.line) not in flagged)
    return report


# -- locating loader problems ----------------------------------------------------------


# -- entities of a store whose policies failed -------------------------------------------


def _entity_problems(root: Path, texts: StoreTexts, max_depth: int) -> list[Finding]:
    """Entity problems, which the loader reports only once the policies load."""
    try:
        problems = entity_problems(root, max_depth=max_depth)
    except PolicyError as exc:
        problems = list(exc.problems)
    return [locate(problem, texts, max_depth) for problem in problems]


# -- warnings -------------------------------------------------------------------------


def _warnings(store: PolicyStore, texts: StoreTexts) -> list[Finding]:
    """Every warning, policy by policy: never applies, unlinked template, shadowed by a forbid."""
    asts = {policy.id: ast for policy in store.policies if (ast := _ast(policy)) is not None}
    positions = _policy_positions(store)
    return [*_never_applying(store, asts, positions), *_unlinked_templates(store, positions),
            *_shadowed(store, asts, positions, texts)]


def _never_applying(store: PolicyStore, asts: Mapping[str, dict[str, Any]],
                    positions: Mapping[str, dict[str, Any]]) -> list[Finding]:
    """Policies naming only actions the schema lacks, or whose condition is literally never true."""
    found: list[Finding] = []
    declared = set(store.actions)
    for policy in store.policies:
        ast = asts.get(policy.id)
        if ast is None:
            continue
        where = positions[policy.id]
        kind = "template" if policy.is_template else ast["effect"]
        named = _actions_named(ast["action"]) if store.schema_text is not None else []
        unknown = [uid for uid in named if uid not in declared]
        if unknown:
            listed = ", ".join(str(uid) + _did_you_mean(uid, declared) for uid in unknown)
            message = (f"{kind} {policy.id!r} can never apply: the schema declares no action {listed}"
                       if len(unknown) == len(named)
                       else f"{kind} {policy.id!r} names actions the schema does not declare: {listed}")
            found.append(Finding("warning", message, code="never-applies", **where))
        for condition in ast.get("conditions", []):
            if condition.get("body") == {"Value": condition.get("kind") == "unless"}:
                found.append(Finding(
                    "warning",
                    f"{kind} {policy.id!r} can never apply: its condition "
                    f"`{condition.get('kind')} {{ {str(condition.get('kind') == 'unless').lower()} }}` "
                    "is never satisfied",
                    code="never-applies", **where))
                break
    return found


def _unlinked_templates(store: PolicyStore, positions: Mapping[str, dict[str, Any]]) -> list[Finding]:
    linked = {link.template for link in store.links}
    return [Finding("warning", f"template {policy.id!r} has no link: it never applies",
                    code="unlinked-template", **positions[policy.id])
            for policy in store.policies if policy.is_template and policy.id not in linked]


def _shadowed(store: PolicyStore, asts: Mapping[str, dict[str, Any]], positions: Mapping[str, dict[str, Any]],
              texts: StoreTexts) -> list[Finding]:
    """Permits, templates and links whose scope lies inside an unconditional forbid's."""
    found: list[Finding] = []
    forbids = [(policy, asts[policy.id]) for policy in store.policies
               if policy.id in asts and not policy.is_template
               and asts[policy.id]["effect"] == "forbid" and _unconditional(asts[policy.id])]
    shadowed_templates = set()
    for policy in store.policies:
        ast = asts.get(policy.id)
        forbid = _covering_forbid(forbids, ast) if ast is not None and ast["effect"] == "permit" else None
        if forbid is not None:
            subject = "every link of template" if policy.is_template else "permit"
            found.append(Finding(
                "warning",
                f"{subject} {policy.id!r} can never allow: forbid {forbid.id!r} "
                f"({forbid.location}) has the same or a wider scope and no condition",
                code="shadowed", **positions[policy.id]))
            shadowed_templates.add(policy.id)
    for link in store.links:
        template_ast = asts.get(link.template)
        if (template_ast is None or template_ast["effect"] != "permit"
                or link.template in shadowed_templates):
            continue
        forbid = _covering_forbid(forbids, _linked(template_ast, link))
        if forbid is not None:
            position = element_position(link.source, f"link {link.id!r}", texts)
            found.append(Finding(
                "warning",
                f"template link {link.id!r} can never allow: forbid {forbid.id!r} "
                f"({forbid.location}) has the same or a wider scope and no condition",
                file=link.source if texts.text(link.source) is not None else None,
                line=position[0] if position else None, col=position[1] if position else None,
                code="shadowed", policy=link.id))
    return found


def _covering_forbid(forbids: list[tuple[Policy, dict[str, Any]]], ast: Mapping[str, Any]) -> Policy | None:
    return next((forbid for forbid, forbid_ast in forbids if _scope_covers(forbid_ast, ast)), None)


def _policy_positions(store: PolicyStore) -> dict[str, dict[str, Any]]:
    return {policy.id: {"file": policy.source, "line": policy.line, "col": policy.column, "policy": policy.id}
            for policy in store.policies}


def _ast(policy: Policy) -> dict[str, Any] | None:
    try:
        data = json.loads(cedarpy.policies_to_json_str(policy.text))
    except (ValueError, TypeError):
        return None
    for group in ("staticPolicies", "templates"):
        for ast in data.get(group, {}).values():
            if isinstance(ast, dict):
                return ast
    return None


def _uid(value: Any) -> EntityUID | None:
    try:
        return EntityUID.from_cedar(value)
    except AuthzError:
        return None


def _actions_named(constraint: Mapping[str, Any]) -> list[EntityUID]:
    values: Iterable[Any] = ()
    if "entity" in constraint:
        values = [constraint["entity"]]
    elif "entities" in constraint:
        values = constraint["entities"]
    return [uid for uid in (_uid(value) for value in values) if uid is not None]


def _did_you_mean(uid: EntityUID, declared: set[EntityUID]) -> str:
    same = sorted(str(other) for other in declared if other.id == uid.id and other != uid)
    return f" (did you mean {' or '.join(same)}?)" if same else ""


def _unconditional(ast: Mapping[str, Any]) -> bool:
    return all(condition.get("body") == {"Value": condition.get("kind") == "when"}
               for condition in ast.get("conditions", []))


def _scope_covers(outer: Mapping[str, Any], inner: Mapping[str, Any]) -> bool:
    return (_entity_covers(outer["principal"], inner["principal"])
            and _action_covers(outer["action"], inner["action"])
            and _entity_covers(outer["resource"], inner["resource"]))


def _entity_covers(outer: Mapping[str, Any], inner: Mapping[str, Any]) -> bool:
    """Whether every entity ``inner`` matches also matches ``outer`` (written scopes only)."""
    op = outer.get("op")
    if op == "All" or (outer == inner and "slot" not in inner):
        return True
    if "slot" in outer or "slot" in inner or "slot" in inner.get("in", {}):
        return False
    inner_op = inner.get("op")
    inner_entity = _uid(inner["entity"]) if "entity" in inner else None
    if op == "is" and "in" not in outer:
        if inner_op == "is":
            return bool(inner.get("entity_type") == outer.get("entity_type"))
        return inner_op == "==" and inner_entity is not None and inner_entity.type == outer.get(
            "entity_type")
    outer_in = _uid(outer.get("entity") if op == "in" else outer.get("in", {}).get("entity"))
    if outer_in is None:
        return False
    if op == "in":
        if inner_op == "==":
            return inner_entity == outer_in
        if inner_op == "is" and "in" in inner:
            return _uid(inner["in"].get("entity")) == outer_in
        return False
    if op == "is":  # is T in E
        if inner_op == "==":
            return inner_entity == outer_in and outer_in.type == outer.get("entity_type")
        return False
    return False


def _action_covers(outer: Mapping[str, Any], inner: Mapping[str, Any]) -> bool:
    op = outer.get("op")
    if op == "All" or outer == inner:
        return True
    if inner.get("op") == "All":
        return False
    named = set(_actions_named(inner))
    if op == "==":
        return inner.get("op") == "==" and named == set(_actions_named(outer))
    if op == "in":
        # `in` is reflexive: `action == a` and `action in [a, b]` both lie in `action in [a, b, c]`.
        return bool(named) and named <= set(_actions_named(outer))
    return False


def _linked(template: Mapping[str, Any], link: TemplateLink) -> dict[str, Any]:
    values = {"?principal": link.principal, "?resource": link.resource}

    def fill(constraint: Mapping[str, Any]) -> dict[str, Any]:
        filled = dict(constraint)
        slot = filled.pop("slot", None)
        if slot is not None and values.get(slot) is not None:
            filled["entity"] = values[slot].to_cedar()  # type: ignore[union-attr]
        if isinstance(filled.get("in"), Mapping):
            filled["in"] = fill(filled["in"])
        return filled

    return {**template, "principal": fill(template["principal"]),
            "resource": fill(template["resource"])}


def report_lines(report: LintReport, root: str | None = None) -> list[str]:
    """``file:line:col: severity: message`` lines, errors first."""
    return [f"{finding.location(root)}: {finding.severity}: {finding.message}"
            for finding in [*report.errors, *report.warnings]]
