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

import datetime as _dt
import json
import re
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree

from agentauthz._errors import AuthzError, PolicyError
from agentauthz._model import Decision, Entity, EntityUID, Request, from_cedar_value
from agentauthz._policies import PolicyStore, truncate
from agentauthz.engines.local import LocalEngine

__all__ = [
    "CaseResult",
    "DecisionCase",
    "coverage",
    "erring_policies",
    "load_cases",
    "run_cases",
    "write_junit",
]

Outcome = Literal["allow", "deny"]
TABLE_SUFFIXES = (".toml", ".yaml", ".yml")
_CASE_KEYS = {"name", "description", "principal", "action", "resource", "context", "entities",
              "decision", "reasons", "errors"}
_TOML_CASE = re.compile(r"^[ \t]*\[\[[ \t]*case[ \t]*\]\]", re.M)
_ERRING = re.compile(r"^error while evaluating policy `([^`]*)`")
_BATCH = 100


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
        failures: why it failed; empty when it passed.
    """

    case: DecisionCase
    decision: Decision | None
    failures: tuple[str, ...] = ()

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
        folder = base / expected.upper()
        for path in sorted(folder.rglob("*.json")) if folder.is_dir() else ():
            cases.append(_request_file(path, _relative(path, base), expected))
    folder = base / "cases"
    found = sorted(p for p in folder.rglob("*") if p.suffix in TABLE_SUFFIXES and p.is_file()) \
        if folder.is_dir() else []
    for path in [*found, *(Path(t) for t in tables)]:
        cases.extend(_table_file(path, _relative(path, base)))
    return cases


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _request_file(path: Path, name: str, expected: Outcome) -> DecisionCase:
    case_id = name.removesuffix(".json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        request = Request.from_cedar(data)
    except json.JSONDecodeError as exc:
        return DecisionCase(case_id, name, expected, None, line=exc.lineno,
                            problem=f"{name}:{exc.lineno}: invalid JSON: {exc.msg}")
    except (OSError, UnicodeDecodeError, AuthzError) as exc:
        return DecisionCase(case_id, name, expected, None,
                            problem=f"{name}: {truncate(str(exc))}")
    return DecisionCase(case_id, name, expected, request)


def _table_file(path: Path, name: str) -> list[DecisionCase]:
    def broken(message: str, line: int | None = None) -> list[DecisionCase]:
        where = f"{name}:{line}" if line else name
        return [DecisionCase(name, name, "deny", None, line=line, problem=f"{where}: {message}")]

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return broken(f"cannot read ({exc})")
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
        return broken(truncate(str(exc)))
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
        for start in range(0, len(indices), _BATCH):
            chunk = indices[start: start + _BATCH]
            requests = [_resolved(engine, cases[i].request) for i in chunk]  # type: ignore[arg-type]
            decisions = engine.decide(requests, entities)
            for i, decision in zip(chunk, decisions, strict=True):
                results[i] = CaseResult(cases[i], decision, _compare(cases[i], decision, known))
            if advance is not None:
                advance(len(chunk))
    return [results[index] for index in range(len(cases))]


def _resolved(engine: LocalEngine, request: Request) -> Request:
    if isinstance(request.action, str):
        return request.replace(action=engine.resolve_action(request.action))
    return request


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


# -- reports ----------------------------------------------------------------------------


def write_junit(path: str | Path, suite: str, results: Sequence[CaseResult], *,
                elapsed: float = 0.0, load_error: str | None = None) -> None:
    """Write a JUnit XML report (one ``testcase`` per case; a load error is one ``error``)."""
    failures = sum(1 for result in results if not result.passed)
    tests = len(results) if load_error is None else 1
    root = ElementTree.Element("testsuites")
    element = ElementTree.SubElement(root, "testsuite", {
        "name": suite, "tests": str(tests), "failures": str(failures),
        "errors": "0" if load_error is None else "1", "skipped": "0", "time": f"{elapsed:.3f}",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    if load_error is not None:
        case = ElementTree.SubElement(element, "testcase", {"classname": suite, "name": "load"})
        error = ElementTree.SubElement(case, "error", {"message": load_error.splitlines()[0],
                                                      "type": "PolicyError"})
        error.text = load_error
    for result in results:
        attributes = {"classname": f"{suite}.{result.case.source}", "name": result.case.id}
        case = ElementTree.SubElement(element, "testcase", attributes)
        if not result.passed:
            failure = ElementTree.SubElement(case, "failure", {"message": result.failures[0],
                                                              "type": "DecisionMismatch"})
            failure.text = "\n".join([*result.failures, *_details(result)])
    ElementTree.indent(root)
    ElementTree.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _details(result: CaseResult) -> list[str]:
    lines = []
    request = result.case.request
    if request is not None:
        lines.append(f"request: {request.principal} {request.action} {request.resource}")
    if result.decision is not None:
        lines.append(f"reasons: {', '.join(result.decision.reasons) or '-'}")
        lines.extend(f"error: {error}" for error in result.decision.errors)
    return lines
