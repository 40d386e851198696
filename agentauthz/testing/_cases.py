"""Decision cases of a policy store, and the runner behind ``agentauthz test`` and ``policy_cases``.

Two formats, both read from the store directory:

* the Cedar examples layout: ``ALLOW/*.json`` and ``DENY/*.json``, each a Cedar
  request (``principal``, ``action``, ``resource`` as ``{"type", "id"}`` or Cedar
  text such as ``User::"alice"``, optional ``context``) that must get that decision;
* decision tables: ``cases/*.toml`` (and ``cases/*.yaml`` / ``*.yml`` with PyYAML,
  from the ``cli`` extra), each an array of ``[[case]]`` tables::

      [defaults]                       # optional: merged into every case
      principal = 'User::"alice"'

      [[case]]
      name = "refund within the finance limit"
      principal = 'User::"carol"'
      action = "issue_refund"          # a bare name is looked up in the schema
      resource = { type = "Tool", id = "issue_refund" }
      context = { input = { order_id = "o-1", amount = 4200 } }
      entities = []                    # Cedar JSON entities laid over the store's
      decision = "allow"               # required: "allow" or "deny"
      reasons = ["refund-finance-limit"]   # optional: exactly these determine it
      errors = []                      # optional: exactly these policies fail to evaluate
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import difflib
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cedarpy

from agentauthz._errors import AuthzError, PolicyError
from agentauthz._model import Decision, Entity, EntityUID, Request, from_cedar_value
from agentauthz.engines._cedarcall import authorize_batch
from agentauthz.engines._reach import entity_refs
from agentauthz.engines.local import LocalEngine
from agentauthz.policy._cedar_checks import first_nonconforming_entity
from agentauthz.policy._files import read_text, store_entry, store_files
from agentauthz.policy._messages import author_message
from agentauthz.policy._schema_types import EXTENSION_CONSTRUCTORS, SchemaTypes
from agentauthz.policy._store import PolicyStore
from agentauthz.policy._text import DEFAULT_MAX_BYTES

__all__ = [
    "CaseResult",
    "DecisionCase",
    "RequestCheck",
    "coverage",
    "erring_policies",
    "load_cases",
    "run_cases",
]

Outcome = Literal["allow", "deny"]
TABLE_SUFFIXES = (".toml", ".yaml", ".yml")
_CASE_KEYS = {"name", "description", "principal", "action", "resource", "context", "entities",
              "decision", "reasons", "errors"}
_TOML_CASE = re.compile(r"^[ \t]*\[\[[ \t]*case[ \t]*\]\]", re.M)
_ERRING = re.compile(r"^error while evaluating policy `([^`]*)`")
_BATCH = 100
# Case files are data the author writes: bounded like policy files, so that a device or a
# sparse file is never read whole.
MAX_CASE_BYTES = 16 * DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class DecisionCase:
    """One request with the decision it must get.

    Attributes:
        id: unique name: ``ALLOW/<file>`` or ``<table file>::<case name>``.
        source: the file it comes from, relative to the store.
        line: line of the case in its file, when known.
        expected: ``"allow"`` or ``"deny"``.
        request: the request; None when the case could not be read (see ``problem``).
        entities: entities laid over the store's for this case.
        reasons: the determining policies it must have, exactly; None: not checked.
        errors: the policies whose evaluation must fail, exactly; None: not checked.
        problem: why the case could not be read.
        description: free text.
    """

    id: str
    source: str
    expected: Outcome
    request: Request | None
    line: int | None = None
    entities: tuple[Entity, ...] = ()
    reasons: frozenset[str] | None = None
    errors: frozenset[str] | None = None
    problem: str | None = None
    description: str = ""

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class CaseResult:
    """What running one case gave.

    Attributes:
        case: the case.
        decision: the decision; None when the case could not run.
        failures: why it failed; empty when it passed. A request Cedar cannot
            build (undeclared action or type, context against the schema),
            or entities that do not conform, fail as ``invalid request: ...``
            whatever decision the case expects.
        warnings: what looks wrong without failing the case (without a
            schema: an action that no policy and no entity names).
    """

    case: DecisionCase
    decision: Decision | None
    failures: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Whether the decision (and reasons, errors if given) are as expected."""
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object."""
        decision = self.decision
        return {
            "id": self.case.id, "source": self.case.source, "line": self.case.line,
            "passed": self.passed, "expected": self.case.expected,
            "decision": decision.outcome if decision else None,
            "reasons": list(decision.reasons) if decision else [],
            "errors": list(decision.errors) if decision else [],
            "failures": list(self.failures),
            "warnings": list(self.warnings),
        }


# -- reading ----------------------------------------------------------------------------


def load_cases(root: str | Path, tables: Iterable[str | Path] = ()) -> list[DecisionCase]:
    """Every decision case of a store: ``ALLOW/``, ``DENY/``, ``cases/`` and extra ``tables``.

    A file that cannot be read becomes a case with a ``problem``, so that it
    fails visibly instead of being skipped.

    Example:
        >>> [case.id for case in load_cases("policies")][:2]
        ['ALLOW/admin_deletes_budget_of_own_tenant', 'ALLOW/confidential_design_read_by_cleared_engineer']
    """
    base = Path(root)
    cases: list[DecisionCase] = []
    outcomes: tuple[Outcome, ...] = ("allow", "deny")
    for expected in outcomes:
        folder_name = expected.upper()
        problems: list[str] = []
        for path in _case_files(base, folder_name, (".json",), problems):
            cases.append(_request_file(path, _relative(path, base), expected))
        cases.extend(DecisionCase(problem.partition(":")[0], folder_name, expected, None, problem=problem)
                     for problem in problems)
    problems = []
    found = _case_files(base, "cases", TABLE_SUFFIXES, problems)
    for path in [*found, *(Path(t) for t in tables)]:
        cases.extend(_table_file(path, _relative(path, base)))
    cases.extend(DecisionCase(problem.partition(":")[0], "cases", "deny", None, problem=problem)
                 for problem in problems)
    return cases


def _case_files(base: Path, folder_name: str, suffixes: tuple[str, ...], problems: list[str]) -> list[Path]:
    """Case files under ``base/folder_name``, of any kind (reading them says what is wrong)."""
    folder = base / folder_name
    try:
        present = store_entry(folder, folder_name)
    except PolicyError as exc:
        problems.extend(exc.problems)
        return []
    if not present:
        return []
    if not folder.is_dir():
        problems.append(f"{folder_name}: not a directory")
        return []
    return store_files(folder, suffixes, problems, label=folder_name)


def _relative(path: Path, base: Path) -> str:
    try:
        # The file's own name, not its symlink target's: a case is named as it is listed.
        return (path.parent.resolve() / path.name).relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _request_file(path: Path, name: str, expected: Outcome) -> DecisionCase:
    case_id = name.removesuffix(".json")
    try:
        data = json.loads(read_text(path, name, MAX_CASE_BYTES))
        request = Request.from_cedar(data)
    except json.JSONDecodeError as exc:
        return DecisionCase(case_id, name, expected, None, line=exc.lineno,
                            problem=f"{name}:{exc.lineno}: invalid JSON: {exc.msg}")
    except PolicyError as exc:
        return DecisionCase(case_id, name, expected, None, problem=str(exc))
    except (RecursionError, AuthzError) as exc:
        return DecisionCase(case_id, name, expected, None,
                            problem=f"{name}: {author_message(str(exc))}")
    return DecisionCase(case_id, name, expected, request)


def _table_file(path: Path, name: str) -> list[DecisionCase]:
    def broken(message: str, line: int | None = None) -> list[DecisionCase]:
        where = f"{name}:{line}" if line else name
        return [DecisionCase(name, name, "deny", None, line=line, problem=f"{where}: {message}")]

    try:
        text = read_text(path, name, MAX_CASE_BYTES)
    except PolicyError as exc:
        return [DecisionCase(name, name, "deny", None, problem=str(exc))]
    lines: list[int | None]
    if path.suffix == ".toml":
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            return broken(f"invalid TOML: {exc}")
        lines = [text.count("\n", 0, m.start()) + 1 for m in _TOML_CASE.finditer(text)]
    else:
        try:
            data, lines = _read_yaml(text)
        except ImportError:
            return broken("YAML decision tables need PyYAML: pip install 'agentauthz[cli]'")
        except ValueError as exc:
            return broken(f"invalid YAML: {exc}")
    if isinstance(data, list):
        data = {"case": data}
    if not isinstance(data, Mapping):
        return broken("expected a table of [[case]] entries")
    unknown = set(data) - {"case", "cases", "defaults"}
    if unknown:
        return broken(f"unknown top-level keys {sorted(unknown)}; expected [[case]] and [defaults]")
    entries = data.get("case", data.get("cases", []))
    defaults = data.get("defaults", {})
    if not isinstance(entries, list) or not isinstance(defaults, Mapping):
        return broken("[[case]] must be an array of tables and [defaults] a table")
    if not entries:
        return broken("no [[case]] entries")
    cases = []
    for index, entry in enumerate(entries):
        line = lines[index] if index < len(lines) else None
        cases.append(_table_case(name, index, line, {**defaults, **entry} if isinstance(
            entry, Mapping) else entry))
    return cases


def _read_yaml(text: str) -> tuple[Any, list[int | None]]:
    import yaml  # type: ignore[import-untyped,unused-ignore]

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from exc
    lines: list[int | None] = []
    items: Any = None
    if isinstance(node, yaml.SequenceNode):
        items = node
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) in ("case", "cases") and isinstance(value, yaml.SequenceNode):
                items = value
    if items is not None:
        lines = [item.start_mark.line + 1 for item in items.value]
    return data, lines


def _table_case(source: str, index: int, line: int | None, entry: Any) -> DecisionCase:
    name = entry.get("name") if isinstance(entry, Mapping) else None
    case_id = f"{source}::{name if isinstance(name, str) and name else f'case {index + 1}'}"
    where = f"{source}:{line}" if line else f"{source} case {index + 1}"

    def broken(message: str) -> DecisionCase:
        return DecisionCase(case_id, source, "deny", None, line=line, problem=f"{where}: {message}")

    if not isinstance(entry, Mapping):
        return broken("a case must be a table")
    unknown = set(entry) - _CASE_KEYS
    if unknown:
        return broken(f"unknown keys {sorted(unknown)} (known: {', '.join(sorted(_CASE_KEYS))})")
    missing = [key for key in ("principal", "action", "resource", "decision") if key not in entry]
    if missing:
        return broken(f"missing {', '.join(missing)}")
    decision = entry["decision"]
    if decision not in ("allow", "deny"):
        return broken(f'decision must be "allow" or "deny", not {decision!r}')
    try:
        action = entry["action"]
        if isinstance(action, str) and '::"' not in action:
            action_value: EntityUID | str = action
        else:
            action_value = EntityUID.from_cedar(action)
        context = entry.get("context", {})
        if not isinstance(context, Mapping):
            raise PolicyError("context must be a table")
        request = Request(
            principal=EntityUID.from_cedar(entry["principal"]),
            action=action_value,
            resource=EntityUID.from_cedar(entry["resource"]),
            context={key: _value(value) for key, value in context.items()},
        )
        raw_entities = entry.get("entities", [])
        if not isinstance(raw_entities, list):
            raise PolicyError("entities must be an array of Cedar JSON entities")
        entities = tuple(Entity.from_cedar(item) for item in raw_entities)
        reasons = _id_set(entry, "reasons")
        errors = _id_set(entry, "errors")
    except AuthzError as exc:
        return broken(author_message(str(exc)))
    description = entry.get("description", "")
    return DecisionCase(case_id, source, decision, request, line=line, entities=entities,
                        reasons=reasons, errors=errors,
                        description=description if isinstance(description, str) else "")


def _id_set(entry: Mapping[str, Any], key: str) -> frozenset[str] | None:
    if key not in entry:
        return None
    value = entry[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyError(f"{key} must be a list of policy ids")
    return frozenset(value)


def _value(value: Any) -> Any:
    """A table value as the Request takes it: escapes read, TOML dates kept for conversion."""
    if isinstance(value, Mapping):
        if len(value) == 1 and ("__entity" in value or "__extn" in value):
            return from_cedar_value(dict(value))
        return {key: _value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_value(item) for item in value]
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.UTC)
    return value


# -- running ----------------------------------------------------------------------------


def run_cases(
    store: PolicyStore,
    cases: Sequence[DecisionCase],
    *,
    advance: Callable[[int], None] | None = None,
) -> list[CaseResult]:
    """Decide every case with the embedded engine and compare; results in case order.

    Cases that share their entity overlay are decided in batches.

    Example:
        >>> store = PolicyStore.from_directory("policies")
        >>> results = run_cases(store, load_cases("policies"))
        >>> all(result.passed for result in results)
        True
    """
    engine = LocalEngine(store)
    check = RequestCheck(store)
    known = {policy.id for policy in store.policies} | {link.id for link in store.links}
    results: dict[int, CaseResult] = {}
    groups: dict[str, list[int]] = {}
    for index, case in enumerate(cases):
        if case.request is None:
            results[index] = CaseResult(case, None, (case.problem or "unreadable case",))
            continue
        key = json.dumps([entity.cedar for entity in case.entities], sort_keys=True)
        groups.setdefault(key, []).append(index)
    if advance is not None and results:
        advance(len(results))
    for indices in groups.values():
        entities = cases[indices[0]].entities
        unusable = check.entities_problem(engine, entities)
        for start in range(0, len(indices), _BATCH):
            chunk = indices[start: start + _BATCH]
            requests = [_resolved(engine, cases[i].request) for i in chunk]  # type: ignore[arg-type]
            decisions = engine.decide(requests, entities)
            invalid = check.problems(requests)
            for i, request, decision, why in zip(chunk, requests, decisions, invalid, strict=True):
                why = why or unusable
                failures = (f"invalid request: {why}",) if why else _compare(cases[i], decision, known)
                results[i] = CaseResult(cases[i], decision, failures,
                                        tuple(check.warnings(request, entities)))
            if advance is not None:
                advance(len(chunk))
    return [results[index] for index in range(len(cases))]


def _resolved(engine: LocalEngine, request: Request) -> Request:
    if isinstance(request.action, str):
        return request.replace(action=engine.resolve_action(request.action))
    return request


class RequestCheck:
    """Whether Cedar can build a store's requests, and in words why not.

    A request that Cedar cannot build (with a schema: an undeclared action,
    a principal or resource type the action does not apply to, a context that
    does not match the declared one) is denied like any other, so a case that
    expects a denial would pass for the wrong reason. This says which part is
    wrong and what the schema expects, with the nearest declared names
    (``did you mean``). Without a schema every request can be built; an
    action that no policy and no entity names is then only worth a warning.

    Args:
        store: the policy store the requests are for.

    Example:
        >>> store = PolicyStore.from_text('permit(principal, action, resource);', schema=(
        ...     'entity User; action read appliesTo { principal: User, resource: User };'))
        >>> RequestCheck(store).problems([Request(EntityUID("User", "a"), EntityUID("Action", "raed"),
        ...                                       EntityUID("User", "b"))])
        ['action Action::"raed" is not declared in the schema (did you mean Action::"read"?)']
    """

    def __init__(self, store: PolicyStore) -> None:
        self.store = store
        snapshot = store.snapshot
        self._schema = snapshot.schema
        self._types = SchemaTypes(None)
        self._nothing: Any = None
        self._actions_only: Any = None
        self._named_actions: set[EntityUID] | None = None
        if self._schema is not None:
            with contextlib.suppress(PolicyError, ValueError):  # else Cedar's own words only
                self._types = SchemaTypes.from_schema(store)
            self._nothing = cedarpy.PolicySet.from_str("")
            self._actions_only = cedarpy.Entities.from_json_str("[]", self._schema)

    def problems(self, requests: Sequence[Request]) -> list[str | None]:
        """For each request (actions resolved), None when Cedar builds it, else why it cannot."""
        if self._schema is None or not requests:
            return [None] * len(requests)
        answers = authorize_batch([_cedar_request(request) for request in requests], self._nothing,
                                  self._actions_only, self._schema)
        found: list[str | None] = []
        for request, answer in zip(requests, answers, strict=True):
            if answer.get("decision") in ("Allow", "Deny"):
                found.append(None)
                continue
            errors = (answer.get("diagnostics") or {}).get("errors") or ["Cedar cannot build it"]
            cedar = author_message(str(errors[0]).removeprefix("failed to build request: "))
            found.append(self.explain(request) or cedar)
        return found

    def entities_problem(self, engine: LocalEngine, entities: Sequence[Entity]) -> str | None:
        """Why entities laid over the store's cannot be used (they do not conform), or None."""
        if not entities:
            return None
        snapshot = self.store.snapshot
        try:
            engine.entity_set(snapshot, entities)
        except (ValueError, AuthzError) as exc:
            schema = snapshot.schema
            culprit = first_nonconforming_entity(entities, schema) if schema is not None else None
            if culprit:
                return f"the entities given do not conform to the schema (first nonconforming: {culprit})"
            return f"the entities given cannot be used: {author_message(str(exc))}"
        return None

    def warnings(self, request: Request, entities: Sequence[Entity] = ()) -> list[str]:
        """Without a schema: the action is named by no policy and no entity (a misspelling?)."""
        action = request.action
        if self._schema is not None or not isinstance(action, EntityUID):
            return []
        named = self._actions_named() | {uid for entity in entities
                                         for uid in (entity.uid, *entity.parents) if _is_action(uid)}
        if action in named:
            return []
        return [f"action {action} is named by no policy and no entity"
                f"{_did_you_mean(action.id, named, str)}: a misspelling? Without a schema it is "
                "simply denied"]

    def _actions_named(self) -> set[EntityUID]:
        if self._named_actions is None:
            found: list[EntityUID] = []
            texts = "\n".join(policy.text for policy in self.store.policies)
            with contextlib.suppress(ValueError, TypeError):  # the store parsed: not expected
                entity_refs(json.loads(cedarpy.policies_to_json_str(texts)), found)
            for entity in self.store.entities:
                found.extend((entity.uid, *entity.parents))
            self._named_actions = {uid for uid in found if _is_action(uid)}
        return self._named_actions

    # -- explanations --------------------------------------------------------------------

    def explain(self, request: Request) -> str | None:
        """Which part of the request the schema refuses, and what it expects; None if unsure."""
        types = self._types
        action = request.action
        if not isinstance(action, EntityUID) or types.document is None:
            return None
        if types.action(action) is None:
            return (f"action {action} is not declared in the schema"
                    f"{_did_you_mean(action.id, types.actions(), str)}")
        for role, uid in (("principal", request.principal), ("resource", request.resource)):
            allowed = types.applies_to(action, role)
            if uid.type in allowed:
                continue
            if not allowed:
                return f"action {action} applies to no {role} type (is it only an action group?)"
            if uid.type not in types.entity_types():
                return (f"{role} type {uid.type} is not declared in the schema"
                        f"{_did_you_mean_name(uid.type, allowed)}")
            return f"{role} type {uid.type} is not one {action} applies to: expected {' or '.join(allowed)}"
        context = types.context(action)
        if context is None:
            return None
        return self._value_problem(request.cedar_context, context, action.type.rpartition("::")[0],
                                   "context", action)

    def _value_problem(self, value: Any, declared: Any, namespace: str, path: str,
                       action: EntityUID) -> str | None:
        resolved = self._types.resolve(declared, namespace)
        if resolved is None:
            return None
        expected = _type_text(resolved, self._types, namespace)
        got = _value_text(value)
        kind = resolved.get("type")
        if kind == "Record":
            if not isinstance(value, dict) or got != "a record":
                return f"{path}: expected {expected}, got {got}"
            attributes = resolved.get("attributes") or {}
            for key in value:
                if key not in attributes:
                    return (f"{path}.{key} is not declared for {action}"
                            f"{_did_you_mean(key, attributes, lambda name: f'{path}.{name}')}")
            for name, attribute in attributes.items():
                if name not in value:
                    if isinstance(attribute, Mapping) and attribute.get("required", True):
                        inner = self._types.resolve(attribute, namespace)
                        wanted = _type_text(inner, self._types, namespace) if inner else "a value"
                        return f"{path}.{name} is missing (expected {wanted})"
                    continue
                problem = self._value_problem(value[name], attribute, namespace, f"{path}.{name}", action)
                if problem:
                    return problem
            return None
        if kind == "Set":
            if not isinstance(value, list):
                return f"{path}: expected {expected}, got {got}"
            for item in value:
                problem = self._value_problem(item, resolved.get("element"), namespace, f"{path}[]", action)
                if problem:
                    return problem
            return None
        if kind == "Extension" and (isinstance(value, str) or _implicit(value, ("fn",))):
            return None  # Cedar reads these as the extension value the schema declares
        if kind == "Entity" and _implicit(value, ("type", "id")):
            got = f"an entity of type {value['type']}"
        return None if got == expected else f"{path}: expected {expected}, got {got}"


def _cedar_request(request: Request) -> dict[str, Any]:
    action = request.action
    cedar: dict[str, Any] = {
        "principal": request.principal.to_cedar(),
        "action": (action if isinstance(action, EntityUID) else EntityUID("Action", action)).to_cedar(),
        "resource": request.resource.to_cedar(),
    }
    if request.cedar_context:
        cedar["context"] = json.dumps(request.cedar_context)
    return cedar


def _implicit(value: Any, keys: tuple[str, ...]) -> bool:
    """A record a schema reads as an entity reference (``type``, ``id``) or an extension call (``fn``)."""
    return isinstance(value, dict) and "__entity" not in value and "__extn" not in value and all(
        isinstance(value.get(key), str) for key in keys)


def _is_action(uid: EntityUID) -> bool:
    return uid.type == "Action" or uid.type.endswith("::Action")


def _did_you_mean(name: str, candidates: Iterable[Any], show: Callable[[Any], str]) -> str:
    """`` (did you mean X or Y?)`` for the candidates whose name (an uid's id) is nearest ``name``."""
    by_name: dict[str, list[Any]] = {}
    for candidate in candidates:
        by_name.setdefault(candidate.id if isinstance(candidate, EntityUID) else str(candidate),
                           []).append(candidate)
    close = difflib.get_close_matches(name, list(by_name), n=3, cutoff=0.6)
    shown = [show(candidate) for near in close for candidate in by_name[near]]
    return f" (did you mean {' or '.join(shown)}?)" if shown else ""


def _did_you_mean_name(type_name: str, candidates: Sequence[str]) -> str:
    """Nearest entity type names, compared in full and by their last segment."""
    nearest = _did_you_mean(type_name, candidates, str)
    if nearest:
        return nearest
    last = {candidate.rpartition("::")[2]: candidate for candidate in candidates}
    close = difflib.get_close_matches(type_name.rpartition("::")[2], list(last), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(last[name] for name in close)}?)" if close else ""


_FUNCTION_TYPES = {function: name for name, function in EXTENSION_CONSTRUCTORS.items()} | {
    "offset": "datetime", "toTime": "duration"}


def _type_text(resolved: Mapping[str, Any], types: SchemaTypes, namespace: str) -> str:
    kind = resolved.get("type")
    if kind == "Set":
        element = types.resolve(resolved.get("element"), namespace)
        return f"Set<{_type_text(element, types, namespace) if element else '?'}>"
    if kind == "Record":
        return "a record"
    if kind == "Entity":
        return f"an entity of type {resolved.get('name')}"
    if kind == "Extension":
        return str(resolved.get("name"))
    return str(kind)


def _value_text(value: Any) -> str:
    """What a Cedar JSON value is, in the words of :func:`_type_text`."""
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Long"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "a set"
    if isinstance(value, dict):
        if "__entity" in value:
            inner = value["__entity"]
            return f"an entity of type {inner.get('type') if isinstance(inner, dict) else '?'}"
        if "__extn" in value:
            inner = value["__extn"]
            function = inner.get("fn") if isinstance(inner, dict) else None
            return _FUNCTION_TYPES.get(str(function), f"an extension value ({function})")
        return "a record"
    return type(value).__name__


def erring_policies(decision: Decision) -> set[str]:
    """Ids of the policies whose evaluation failed; other errors are kept whole."""
    found = set()
    for error in decision.errors:
        match = _ERRING.match(error)
        found.add(match.group(1) if match else error)
    return found


def _compare(case: DecisionCase, decision: Decision, known: set[str]) -> tuple[str, ...]:
    failures = []
    if decision.outcome != case.expected:
        failures.append(f"expected {case.expected}, got {decision.outcome}")
    if case.reasons is not None and set(decision.reasons) != case.reasons:
        failures.append(f"expected reasons {sorted(case.reasons)}, got {sorted(decision.reasons)}")
        strangers = sorted(case.reasons - known)
        if strangers:
            failures.append(f"not policies of the store: {strangers}")
    if case.errors is not None:
        erring = erring_policies(decision)
        if erring != case.errors:
            failures.append(f"expected erring policies {sorted(case.errors)}, got {sorted(erring)}")
    return tuple(failures)


def coverage(store: PolicyStore, results: Iterable[CaseResult]) -> list[tuple[str, str]]:
    """Policies and links that determined no case: ``(id, location)`` in store order.

    A template counts as covered when one of its links determined a case.
    """
    determining: set[str] = set()
    for result in results:
        if result.decision is not None:
            determining.update(result.decision.reasons)
    linked_templates = {link.template for link in store.links if link.id in determining}
    missing = []
    for policy in store.policies:
        covered = policy.id in linked_templates if policy.is_template else policy.id in determining
        if not covered:
            missing.append((policy.id, policy.location))
    for link in store.links:
        if link.id not in determining:
            missing.append((link.id, f"{link.source} (link of {link.template!r})"))
    return missing
