"""What each page of ``agentauthz explore`` shows, computed before any HTML is written.

One function per view, each built on the command line's own functions so the
page and the terminal never disagree: the test bench decides with
:func:`~agentauthz.cli._author.check_request` (the embedded engine), the audit
log replays with :func:`~agentauthz.cli._replay.replay`, who-can-do-what asks
:meth:`LocalEngine.may_allow` (the partial evaluation behind
``permitted_tools``) and runs the store's cases with
:func:`~agentauthz.cli._author.decide_cases`, and store health is
:func:`~agentauthz.policy._lint.lint_directory` (``agentauthz validate``).

Nothing here writes to disk: a scratch edit of a policy file is an override of
its text for one decision (``PolicyStore.from_directory(overrides=...)``).
Values are returned as they are; the templates escape every one of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentauthz._errors import AuthzError, PolicyError
from agentauthz._model import Decision, EntityUID
from agentauthz.cli._author import check_request, decide_cases, load_store, parse_uid_option
from agentauthz.cli._common import UsageError
from agentauthz.cli._replay import Change, ReplayReport, parse_event, replay
from agentauthz.cli._results import CasesRun, RequestCheckResult
from agentauthz.policy._files import read_text, schema_files, store_files
from agentauthz.policy._lint import LintReport, lint_directory
from agentauthz.policy._schema_types import EXTENSION_CONSTRUCTORS, SchemaTypes
from agentauthz.policy._store import PolicyStore, truncate
from agentauthz.policy._text import DEFAULT_MAX_BYTES
from agentauthz.testing._cases import erring_policies

__all__ = [
    "ActionChoice",
    "AuditFilter",
    "AuditLog",
    "AuditRow",
    "BenchForm",
    "BenchResult",
    "PolicyPlace",
    "WhoCan",
    "action_choices",
    "decide_bench",
    "entity_choices",
    "places",
    "read_audit",
    "store_file",
    "store_health",
    "who_can",
]

#: The resource type of a tool that acts on no document (the Authorizer's default ``tool_entity_type``).
TOOL_TYPE = "Tool"
_DATA_FILES = ("entities.json", "template-links.json", "linked")


# -- the store's vocabulary -----------------------------------------------------------------


@dataclass(frozen=True)
class ActionChoice:
    """An action the schema declares, with what the test bench offers for it.

    Attributes:
        uid: Cedar text of the action.
        principals, resources: entity types it applies to.
        fields: ``(path, type, required)`` of each context attribute.
        skeleton: JSON text of a context with every required attribute.
    """

    uid: str
    principals: tuple[str, ...]
    resources: tuple[str, ...]
    fields: tuple[tuple[str, str, bool], ...]
    skeleton: str


def action_choices(store: PolicyStore) -> list[ActionChoice]:
    """The actions of the store's schema (or, without one, the actions its policies name)."""
    types = SchemaTypes.from_schema(store)
    if types.document is None:
        return [ActionChoice(str(uid), (), (), (), "{}") for uid in store.actions]
    choices = []
    for uid in types.actions():
        context = types.context(uid) or {}
        namespace = uid.type.rpartition("::")[0]
        fields: list[tuple[str, str, bool]] = []
        skeleton = _fields(types, context, namespace, "context", fields, depth=0)
        choices.append(ActionChoice(str(uid), tuple(types.applies_to(uid, "principal")),
                                    tuple(types.applies_to(uid, "resource")), tuple(fields),
                                    json.dumps(skeleton, indent=2)))
    return choices


def _fields(types: SchemaTypes, declared: Mapping[str, Any], namespace: str, path: str,
            out: list[tuple[str, str, bool]], depth: int) -> Any:
    """The sample value of a resolved type; its attributes listed in ``out``."""
    kind = declared.get("type")
    if kind == "Record" and depth < 8:
        sample = {}
        for name, attribute in (declared.get("attributes") or {}).items():
            resolved = types.resolve(attribute, namespace) or {}
            required = attribute.get("required", True) is not False
            out.append((f"{path}.{name}", _type_name(types, resolved, namespace), required))
            if required:  # an optional attribute is listed, its insides are not: the sample leaves it out
                sample[name] = _fields(types, resolved, namespace, f"{path}.{name}", out, depth + 1)
        return sample
    if kind == "Entity":
        return {"__entity": {"type": declared.get("name"), "id": ""}}
    if kind == "Extension":
        return {"__extn": {"fn": EXTENSION_CONSTRUCTORS.get(str(declared.get("name")), ""), "arg": ""}}
    return {"Long": 0, "Boolean": False, "Set": []}.get(str(kind), "")


def _type_name(types: SchemaTypes, resolved: Mapping[str, Any], namespace: str, depth: int = 0) -> str:
    kind = str(resolved.get("type", "?"))
    if kind in ("Entity", "Extension"):
        return str(resolved.get("name", kind))
    if kind == "Set" and depth < 8:
        element = types.resolve(resolved.get("element"), namespace) or {}
        return f"Set<{_type_name(types, element, namespace, depth + 1)}>"
    return kind


def entity_choices(store: PolicyStore) -> dict[str, list[str]]:
    """Cedar text of every stored entity's uid, by entity type."""
    found: dict[str, list[str]] = {}
    for entity in store.entities:
        found.setdefault(entity.uid.type, []).append(str(entity.uid))
    return found


# -- the test bench -------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchForm:
    """What the author asked the test bench.

    Attributes:
        principal, action, resource: as typed (Cedar text or Cedar JSON uids; a bare action name).
        context: the context as JSON text.
        scratch_file: the policy file the scratch buffer replaces ("" for none).
        scratch_text: the buffer's text.
    """

    principal: str = ""
    action: str = ""
    resource: str = ""
    context: str = "{}"
    scratch_file: str = ""
    scratch_text: str = ""

    @property
    def asked(self) -> bool:
        """A request was given (else the page only shows the form)."""
        return bool(self.principal or self.action or self.resource)


@dataclass(frozen=True)
class PolicyPlace:
    """A policy that determined (or failed in) a decision, at its lines.

    Attributes:
        id: the store id (a template link's id for a link).
        file: the file holding the policy (the template's for a link), or "" when unknown.
        line, end: first and last line of its text in the file.
        text: its text.
        note: what else to say (``link of 'share'``), or "".
    """

    id: str
    file: str
    line: int
    end: int
    text: str
    note: str = ""

    @property
    def numbered(self) -> list[tuple[int, str]]:
        """``(line number, line)`` of its text."""
        return list(enumerate(self.text.splitlines() or [""], start=self.line))


@dataclass
class BenchResult:
    """The test bench's answer.

    Attributes:
        check: the decision and why; None when no decision could be made.
        problems: why not (an unreadable request, a store that does not load).
        determining, erroring: the policies that determined the decision, and those that failed.
        on_disk: with a scratch edit, the decision of the files as they are.
    """

    check: RequestCheckResult | None = None
    problems: list[str] = field(default_factory=list)
    determining: list[PolicyPlace] = field(default_factory=list)
    erroring: list[PolicyPlace] = field(default_factory=list)
    on_disk: RequestCheckResult | None = None


def decide_bench(root: Path, form: BenchForm, *, validate: bool = True) -> BenchResult:
    """Decide the bench's request with the store (and the scratch buffer laid over one file).

    Every failure is a result with its problems, never an exception: the page shows them.
    """
    result = BenchResult()
    try:
        principal = parse_uid_option(form.principal, "principal")
        resource = parse_uid_option(form.resource, "resource")
        context = json.loads(form.context or "{}")
        if not isinstance(context, dict):
            raise UsageError("context: expected a JSON object")
        if not form.action.strip():
            raise UsageError("action: pick an action")
        overrides = {form.scratch_file: form.scratch_text} if form.scratch_file else None
        store = load_store(root, validate=validate, overrides=overrides)
        result.check = check_request(store, principal, form.action.strip(), resource, context, [])
        if overrides:
            result.on_disk = check_request(load_store(root, validate=validate), principal,
                                           form.action.strip(), resource, context, [])
    except json.JSONDecodeError as exc:
        result.problems.append(f"context: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
        return result
    except PolicyError as exc:
        result.problems.extend(exc.problems)
        return result
    except (UsageError, AuthzError, RecursionError) as exc:
        result.problems.append(truncate(str(exc), 2000))
        return result
    decision = result.check.decision
    result.determining = places(store, decision.reasons)
    result.erroring = places(store, sorted(erring_policies(decision) & _policy_ids(store)))
    return result


def _policy_ids(store: PolicyStore) -> set[str]:
    return {policy.id for policy in store.policies} | {link.id for link in store.links}


def places(store: PolicyStore, ids: Iterable[str]) -> list[PolicyPlace]:
    """Where each policy (or template link) of ``ids`` is written."""
    links = {link.id: link for link in store.links}
    found = []
    for policy_id in ids:
        link = links.get(policy_id)
        try:
            policy = store.policy(link.template if link else policy_id)
        except KeyError:
            found.append(PolicyPlace(policy_id, "", 0, 0, "", "not in the current policies"))
            continue
        note = f"link of {link.template!r} in {link.source}" if link else ""
        found.append(PolicyPlace(policy_id, policy.source, policy.line,
                                 policy.line + policy.text.count("\n"), policy.text, note))
    return found


def store_file(root: Path, name: str, store: PolicyStore | None) -> str:
    """The text of one file of the store, by its name relative to the store.

    Only the store's own files are served: its policy files, its schema and its data files.

    Raises:
        UsageError: ``name`` is no file of the store.
        PolicyError: the file cannot be read.
    """
    allowed = {path.name for path in schema_files(root)}
    allowed.update(name for name in _DATA_FILES if (root / name).is_file())
    if store is not None:
        allowed.update(policy.source for policy in store.policies)
    else:
        allowed.update(path.relative_to(root).as_posix() for path in store_files(root, (".cedar",), []))
    if name not in allowed:
        raise UsageError(f"{truncate(name, 120)}: not a file of this store")
    return read_text(root / name, name, DEFAULT_MAX_BYTES)


# -- the audit log --------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRow:
    """One audit event as the log page lists it.

    Attributes:
        source: index of its file among the loaded ones.
        line: its line in that file.
        event: the event as read.
        change: with a what-if replay, how the current policies decide it differently
            (``allow->deny``, ``deny->allow``, ``reasons``), "" when they agree; None without replay.
    """

    source: int
    line: int
    event: Mapping[str, Any]
    change: str | None = None

    def text(self, key: str) -> str:
        """A field of the event as text ("" when absent)."""
        value = self.event.get(key)
        return "" if value is None else str(value)

    @property
    def reasons(self) -> list[str]:
        """Its determining policies."""
        reasons = self.event.get("reasons")
        return [str(reason) for reason in reasons] if isinstance(reasons, list) else []

    @property
    def when(self) -> str:
        """Its time, ISO 8601 in UTC ("" when the event has none)."""
        stamp = self.event.get("timestamp")
        if not isinstance(stamp, (int, float)) or isinstance(stamp, bool):
            return ""
        try:
            return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S")
        except (OverflowError, OSError, ValueError):
            return ""


@dataclass(frozen=True)
class AuditFilter:
    """What the log page shows: substrings of user, action and policy, a decision, a time range.

    ``since`` and ``until`` are ISO 8601 times (UTC), such as ``2026-12-06T08:00``.
    """

    user: str = ""
    action: str = ""
    decision: str = ""
    policy: str = ""
    since: str = ""
    until: str = ""

    def keeps(self, row: AuditRow) -> bool:
        """Whether the row passes every filter given."""
        when = row.when.replace(" ", "T")
        return ((not self.user or self.user in row.text("principal"))
                and (not self.action or self.action in row.text("action"))
                and (not self.decision or self.decision == row.text("decision"))
                and (not self.policy or any(self.policy in reason for reason in row.reasons))
                and (not self.since or (bool(when) and when >= self.since))
                and (not self.until or (bool(when) and when <= self.until)))


@dataclass
class AuditLog:
    """The loaded audit files.

    Attributes:
        files: the files' names (without their folders: the page shows them).
        rows: every event, file by file.
        unreadable: ``(file, line, why)`` of lines that are no audit event.
        replays: with a what-if replay, its report per file.
    """

    files: list[str]
    rows: list[AuditRow] = field(default_factory=list)
    unreadable: list[tuple[str, int, str]] = field(default_factory=list)
    replays: list[ReplayReport] = field(default_factory=list)

    def row(self, source: int, line: int) -> AuditRow | None:
        """The event at ``line`` of file number ``source``."""
        return next((row for row in self.rows if row.source == source and row.line == line), None)

    @property
    def counts(self) -> dict[str, int]:
        """Changes of a replay by kind, over every file."""
        total = {"allow->deny": 0, "deny->allow": 0, "reasons": 0}
        for report in self.replays:
            for kind, count in report.counts.items():
                total[kind] += count
        return total

    @property
    def skipped(self) -> int:
        """Events a replay could not decide again (no recorded request)."""
        return sum(report.skipped for report in self.replays)


def read_audit(paths: Sequence[Path], *, against: PolicyStore | None = None) -> AuditLog:
    """Read the audit files; with ``against``, replay them on that store (a what-if).

    A file that cannot be read is reported among the unreadable lines (line 0).
    """
    log = AuditLog([path.name for path in paths])
    for source, path in enumerate(paths):
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            log.unreadable.append((path.name, 0, f"cannot read ({exc.strerror})"))
            continue
        changes: dict[int, str] = {}
        if against is not None:
            report = replay(lines, against, examples=len(lines))
            log.replays.append(report)
            changes = {change.line: change.kind for change in _all_changes(report)}
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            event, why = parse_event(line)
            if event is None:
                log.unreadable.append((path.name, number, why))
                continue
            change = None if against is None else changes.get(number, "")
            log.rows.append(AuditRow(source, number, event, change))
    return log


def _all_changes(report: ReplayReport) -> Iterable[Change]:
    for changes in report.examples.values():
        yield from changes


# -- who can do what ------------------------------------------------------------------------


@dataclass
class WhoCan:
    """Who may do what, by partial evaluation, and how well the cases cover the policies.

    Attributes:
        user: the user asked about, and the actions they could ever be allowed
            (``(action, allowed)``; a request that cannot be built counts as never).
        action: the action asked about, and ``(principal, its groups, allowed)``.
        cases: the store's decision cases, decided (None: the store has none).
        by_policy: for each policy id, the cases it determined.
        problems: why something could not be answered.
    """

    user: str = ""
    actions: list[tuple[str, bool]] = field(default_factory=list)
    action: str = ""
    principals: list[tuple[str, list[str], bool]] = field(default_factory=list)
    cases: CasesRun | None = None
    by_policy: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def who_can(root: Path, user: str, action: str) -> WhoCan:
    """What ``user`` may ever do, who may ever do ``action``, and the cases' coverage."""
    from agentauthz.engines.local import LocalEngine

    answer = WhoCan(user=user, action=action)
    try:
        store = load_store(root)
    except PolicyError as exc:
        answer.problems.extend(exc.problems)
        return answer
    engine = LocalEngine(store)
    choices = action_choices(store)
    try:
        if user:
            principal = parse_uid_option(user, "user")
            answer.actions = [(choice.uid, _may(engine, principal, choice)) for choice in choices]
        if action:
            chosen = next((choice for choice in choices if choice.uid == action), None)
            if chosen is None:
                raise UsageError(f"{truncate(action, 120)}: not an action of the schema")
            kinds = set(chosen.principals)
            answer.principals = [
                (str(entity.uid), [str(parent) for parent in entity.parents],
                 _may(engine, entity.uid, chosen))
                for entity in store.entities if entity.uid.type in kinds]
    except UsageError as exc:
        answer.problems.append(str(exc))
    _coverage(root, answer)
    return answer


def _may(engine: Any, principal: EntityUID, choice: ActionChoice) -> bool:
    """Whether some request of ``principal`` for the action could be allowed (errors: never)."""
    action = EntityUID.parse(choice.uid)
    # A tool that acts on no document is the resource Tool::"<name>"; any other resource is left unknown.
    resource = EntityUID(TOOL_TYPE, action.id) if TOOL_TYPE in choice.resources else None
    try:
        return bool(engine.may_allow(principal, action, resource, []))
    except Exception:  # a failing evaluation shows nothing as permitted, as permitted_tools hides the tool
        return False


def _coverage(root: Path, answer: WhoCan) -> None:
    try:
        run = decide_cases(root, tables=[], validate=True, coverage_wanted=True)
    except UsageError:
        return  # no cases: nothing to cover
    answer.cases = run
    for result in run.results:
        for reason in _reasons(result.decision):
            answer.by_policy.setdefault(reason, []).append(result.case.id)


def _reasons(decision: Decision | None) -> tuple[str, ...]:
    return decision.reasons if decision is not None else ()


# -- store health ---------------------------------------------------------------------------


def store_health(root: Path) -> LintReport:
    """``agentauthz validate``: the store's problems and warnings, located."""
    return lint_directory(root)
