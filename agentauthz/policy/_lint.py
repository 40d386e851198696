"""``agentauthz validate``: every problem of a policy store with its column, and warnings.

Errors are what :meth:`PolicyStore.from_directory` reports (parse, schema,
validation, duplicate ids, links, entities), given a column here. cedarpy
reports no positions, so the column is computed:

* a problem found by the lexical scan (nesting too deep, an unterminated
  string) is at the token that caused it;
* ``unexpected token `X``` (a syntax error) is at the first occurrence of ``X``
  such that the statement cut right after it fails with the same error: Cedar's
  parser is LR, so every valid prefix of a statement still parses up to its end;
* an error that quotes a name (an attribute, an action, a function, an entity
  type) is at the first occurrence of that name in the statement, outside
  strings and comments;
* anything else is at the start of the statement (its first annotation).

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
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import cedarpy

from agentauthz._errors import AuthzError, PolicyError
from agentauthz._model import EntityUID
from agentauthz.policy._store import Policy, PolicyStore, TemplateLink, _read_text, truncate
from agentauthz.policy._text import _TOKEN, DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, scan

__all__ = ["Finding", "LintReport", "lint_directory", "locate_problems"]

Severity = Literal["error", "warning"]

_LOCATED = re.compile(r"^(?P<file>[^\n]+?):(?P<line>\d+): (?P<message>.*)$", re.S)
_UNLOCATED = re.compile(r"^(?P<file>[^\s:][^:\n]*?): (?P<message>.*)$", re.S)
_LABEL = re.compile(r"^\[[^\]]*\] ")
_FOR_POLICY = re.compile(r"^(\[[^\]]*\] )?for policy, ")
_BACKTICKED = re.compile(r"`([^`]+)`")
_AFTER_COLON = re.compile(r": ([A-Za-z_][A-Za-z0-9_]*)$")
_UNEXPECTED = re.compile(r"^unexpected token `(.+)`$")
_JSON_POSITION = re.compile(r"at line (\d+) column (\d+)")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Finding:
    """One error or warning, located as precisely as it can be.

    Attributes:
        severity: ``"error"`` (the store does not load) or ``"warning"``.
        message: what is wrong.
        file: file relative to the store, when known.
        line: 1-based line, when known.
        col: 1-based column, when known.
        code: short name of a warning kind (``never-applies``, ``unlinked-template``,
            ``shadowed``); None for errors.
        policy: id of the policy concerned, when there is one.
    """

    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None
    col: int | None = None
    code: str | None = None
    policy: str | None = None

    def location(self, root: str | None = None) -> str:
        """``file:line:col`` (as much as known), the file joined to ``root`` if given.

        Example:
            >>> Finding("error", "bad", "a.cedar", 3, 7).location("policies")
            'policies/a.cedar:3:7'
        """
        if self.file is None:
            return root or ""
        path = f"{root.rstrip('/')}/{self.file}" if root else self.file
        parts = [path] + [str(n) for n in (self.line, self.col) if n is not None]
        return ":".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The finding as a JSON object."""
        return {"severity": self.severity, "file": self.file, "line": self.line, "col": self.col,
                "code": self.code, "policy": self.policy, "message": self.message}


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
    texts = _Texts(root)
    try:
        report.store = PolicyStore.from_directory(root, validate=validate, max_depth=max_depth)
    except PolicyError as exc:
        report.errors.extend(_locate(problem, texts, max_depth) for problem in exc.problems)
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


def locate_problems(problems: Iterable[str], root: str | Path,
                    max_depth: int = DEFAULT_MAX_DEPTH) -> list[Finding]:
    """:attr:`PolicyError.problems` of a store directory, with columns (see the module doc).

    Example:
        >>> [f.location() for f in locate_problems(["nowhere.cedar:3: bad"], ".")]
        ['nowhere.cedar:3']
    """
    texts = _Texts(Path(root))
    return [_locate(problem, texts, max_depth) for problem in problems]



class _Texts:
    """Files of the store, read once, with the positions of their statements."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, str | None] = {}

    def text(self, name: str) -> str | None:
        if name not in self._cache:
            path = self.root / name
            try:
                self._cache[name] = _read_text(path, name, DEFAULT_MAX_BYTES)
            except PolicyError:
                self._cache[name] = None
        return self._cache[name]

    def statement_spans(self, name: str, max_depth: int = DEFAULT_MAX_DEPTH) -> list[tuple[int, int]]:
        """(start, end) offsets of the statements of a policy file, in order."""
        text = self.text(name)
        if text is None:
            return []
        return _statement_spans(text, max_depth)


@cache
def _statement_spans(text: str, max_depth: int) -> list[tuple[int, int]]:
    statements, _ = scan(text, max_depth=max_depth)
    spans, position = [], 0
    for statement in statements:
        position = text.find(statement.text, position)
        spans.append((position, position + len(statement.text)))
        position += len(statement.text)
    return spans


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _offset(text: str, line: int) -> int:
    position = 0
    for _ in range(line - 1):
        found = text.find("\n", position)
        if found < 0:
            return len(text)
        position = found + 1
    return position


def _locate(problem: str, texts: _Texts, max_depth: int) -> Finding:
    located = _LOCATED.match(problem)
    if located and texts.text(located.group("file")) is not None:
        name, line = located.group("file"), int(located.group("line"))
        message = _FOR_POLICY.sub(r"\1", located.group("message"))
        where = _policy_position(name, line, message, texts, max_depth)
        if where is None:
            return Finding("error", message, name, line)
        return Finding("error", message, name, where[0], where[1])
    unlocated = _UNLOCATED.match(problem)
    if unlocated and texts.text(unlocated.group("file")) is not None:
        name, message = unlocated.group("file"), unlocated.group("message")
        position = (_schema_position(name, message, texts) if ".cedarschema" in name
                    else _json_element_position(name, message, texts))
        if position is not None:
            return Finding("error", message, name, position[0], position[1])
        return Finding("error", message, name)
    if located:
        return Finding("error", located.group("message"), located.group("file"),
                       int(located.group("line")))
    return Finding("error", problem)


def _policy_position(name: str, line: int, message: str, texts: _Texts,
                     max_depth: int) -> tuple[int, int] | None:
    text = texts.text(name)
    if text is None:
        return None
    if name.endswith((".cedarschema", ".cedarschema.json")):
        offset = _deep_schema_offset(text, max_depth) if "nested deeper" in message else None
        return _line_col(text, offset) if offset is not None else _first_column(text, line)
    if not name.endswith(".cedar"):
        return _first_column(text, line)
    message = _LABEL.sub("", message)
    if "nested deeper than" in message or message == "unterminated string":
        offset = _scan_problem_offset(text, max_depth)
        if offset is not None:
            return _line_col(text, offset)
    for start, end in texts.statement_spans(name, max_depth):
        if _line_col(text, start)[0] == line:
            found = _find(text[start:end], message, cedarpy.PolicySet.from_str)
            return _line_col(text, start + (found or 0))
    return _first_column(text, line)


def _first_column(text: str, line: int) -> tuple[int, int]:
    start = _offset(text, line)
    rest = text[start:text.find("\n", start) if "\n" in text[start:] else len(text)]
    return line, len(rest) - len(rest.lstrip()) + 1


def _find(source: str, message: str, parse: Callable[[str], Any]) -> int | None:
    """Offset in ``source`` of what ``message`` complains about, or None."""
    unexpected = _UNEXPECTED.search(message)
    if unexpected:
        token = unexpected.group(1)
        occurrences = _occurrences(source, token)
        for offset in occurrences:
            # An LR parser accepts every prefix up to its first error: the prefix
            # ending at the bad token is the shortest that fails the same way.
            # (With and without a closing `;`: Cedar recovers from some errors and may
            # then report the end of input first.)
            for ending in ("", ";"):
                try:
                    parse(source[: offset + len(token)] + ending)
                except ValueError as exc:
                    if truncate(str(exc)) == message or str(exc) == message:
                        return offset
        return occurrences[0] if occurrences else None
    for candidate in [*_BACKTICKED.findall(message), *_AFTER_COLON.findall(message)]:
        occurrences = _occurrences(source, candidate)
        if occurrences:
            return occurrences[0]
    return None


def _occurrences(source: str, needle: str) -> list[int]:
    """Offsets of ``needle`` in Cedar text, outside comments (and strings, unless it is one)."""
    found: list[int] = []
    if not needle.strip():
        return found
    blocked: list[tuple[int, int]] = []
    for match in _TOKEN.finditer(source):
        if match.lastgroup == "comment" or (match.lastgroup == "string" and not needle.startswith('"')):
            blocked.append(match.span())
    word = _IDENT.fullmatch(needle) is not None
    pattern = re.compile((r"(?<![A-Za-z0-9_])" + re.escape(needle) + r"(?![A-Za-z0-9_])")
                         if word else re.escape(needle))
    for match in pattern.finditer(source):
        if not any(start <= match.start() < end for start, end in blocked):
            found.append(match.start())
    return found


def _scan_problem_offset(text: str, max_depth: int) -> int | None:
    # The same walk as _policytext.scan, keeping offsets instead of lines.
    nesting: list[str] = []
    for match in _TOKEN.finditer(text):
        kind, token = match.lastgroup, match.group()
        if kind in ("space", "comment"):
            continue
        if kind == "string" and (len(token) < 2 or not token.endswith('"')
                                 or (len(token) - 1 - len(token[:-1].rstrip("\\"))) % 2):
            return match.start()
        if token in "([{" or (kind == "ident" and token == "if"):
            nesting.append(token)
            if len(nesting) > max_depth:
                return match.start()
        elif token in ")]}":
            while nesting and nesting[-1] == "if":
                nesting.pop()
            if nesting:
                nesting.pop()
        elif token == ";":
            nesting = []
    return None


def _deep_schema_offset(text: str, max_depth: int) -> int | None:
    depth = 0
    for match in re.finditer(r'//[^\n\r]*|"(?:[^"\\]|\\.)*"|[{}\[\]<>()]', text):
        token = match.group()
        if token in "{[<(":
            depth += 1
            if depth > max_depth:
                return match.start()
        elif token in "}]>)":
            depth = max(depth - 1, 0)
    return None


def _schema_position(name: str, message: str, texts: _Texts) -> tuple[int, int] | None:
    text = texts.text(name)
    if text is None:
        return None
    if name.endswith(".json"):
        position = _JSON_POSITION.search(message)
        return (int(position.group(1)), int(position.group(2))) if position else None
    found = _find(text, message, cedarpy.Schema.from_str)
    return _line_col(text, found) if found is not None else None


def _element_offset(text: str, index: int) -> int | None:
    """Offset of the ``index``-th element of the top-level JSON array in ``text``."""
    depth, count, in_string, escaped = 0, -1, False, False
    for offset, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
            if depth == 1:
                count += 1
                if count == index:
                    return offset
        elif char in "[{":
            depth += 1
            if depth == 2:
                count += 1
                if count == index:
                    return offset
        elif char in "]}":
            depth -= 1
    return None


_ELEMENT = re.compile(r"(?:entity|link):? #(\d+)")
_LINK_ID = re.compile(r"link '((?:[^'\\]|\\.)*)'")


def _json_element_position(name: str, message: str, texts: _Texts) -> tuple[int, int] | None:
    text = texts.text(name)
    if text is None:
        return None
    element = _ELEMENT.search(message)
    if element:
        offset = _element_offset(text, int(element.group(1)))
        return _line_col(text, offset) if offset is not None else None
    link = _LINK_ID.search(message)
    if link:
        offset = text.find(json.dumps(link.group(1)))
        return _line_col(text, offset) if offset >= 0 else None
    return None


# -- entities of a store whose policies failed -------------------------------------------


def _entity_problems(root: Path, texts: _Texts, max_depth: int) -> list[Finding]:
    """Entity problems, which the loader reports only once the policies load."""
    from agentauthz.policy._store import (
        _entities_from_json,
        _entity_handle,
        _parse_schema,
        _read_json,
        schema_files,
        store_entry,
    )
    from agentauthz.policy._text import schema_nesting_problem

    try:
        if not store_entry(root / "entities.json", "entities.json"):
            return []
        entities = _entities_from_json(
            _read_json(root / "entities.json", "entities.json", DEFAULT_MAX_BYTES), "entities.json")
        schema = None
        chosen = schema_files(root)
        if len(chosen) == 1:
            schema_text = _read_text(chosen[0], chosen[0].name, DEFAULT_MAX_BYTES)
            if not schema_text.lstrip().startswith("{") and schema_nesting_problem(
                    schema_text, max_depth=max_depth):
                return []
            try:
                schema = _parse_schema(schema_text)
            except ValueError:
                return []  # reported with the schema
        _entity_handle(entities, schema, "entities.json")
    except PolicyError as exc:
        return [_locate(problem, texts, max_depth) for problem in exc.problems]
    return []


# -- warnings -------------------------------------------------------------------------


def _warnings(store: PolicyStore, texts: _Texts) -> list[Finding]:
    found: list[Finding] = []
    positions = _policy_positions(store, texts)
    asts: dict[str, dict[str, Any]] = {}
    for policy in store.policies:
        ast = _ast(policy)
        if ast is not None:
            asts[policy.id] = ast

    declared = set(store.actions)
    for policy in store.policies:
        ast = asts.get(policy.id)
        if ast is None:
            continue
        where = positions[policy.id]
        kind = "template" if policy.is_template else ast["effect"]
        if store.schema_text is not None:
            named = _actions_named(ast["action"])
            unknown = [uid for uid in named if uid not in declared]
            if unknown:
                listed = ", ".join(str(uid) + _did_you_mean(uid, declared) for uid in unknown)
                if len(unknown) == len(named):
                    message = (f"{kind} {policy.id!r} can never apply: the schema declares no "
                               f"action {listed}")
                else:
                    message = f"{kind} {policy.id!r} names actions the schema does not declare: {listed}"
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

    linked = {link.template for link in store.links}
    for policy in store.policies:
        if policy.is_template and policy.id not in linked:
            found.append(Finding(
                "warning", f"template {policy.id!r} has no link: it never applies",
                code="unlinked-template", **positions[policy.id]))

    forbids = [(policy, asts[policy.id]) for policy in store.policies
               if policy.id in asts and not policy.is_template
               and asts[policy.id]["effect"] == "forbid" and _unconditional(asts[policy.id])]
    shadowed_templates = set()
    for policy in store.policies:
        ast = asts.get(policy.id)
        if ast is None or ast["effect"] != "permit":
            continue
        for forbid, forbid_ast in forbids:
            if _scope_covers(forbid_ast, ast):
                subject = "every link of template" if policy.is_template else "permit"
                found.append(Finding(
                    "warning",
                    f"{subject} {policy.id!r} can never allow: forbid {forbid.id!r} "
                    f"({forbid.location}) has the same or a wider scope and no condition",
                    code="shadowed", **positions[policy.id]))
                shadowed_templates.add(policy.id)
                break
    for link in store.links:
        template_ast = asts.get(link.template)
        if (template_ast is None or template_ast["effect"] != "permit"
                or link.template in shadowed_templates):
            continue
        ast = _linked(template_ast, link)
        for forbid, forbid_ast in forbids:
            if _scope_covers(forbid_ast, ast):
                position = _json_element_position(link.source, f"link {link.id!r}", texts)
                found.append(Finding(
                    "warning",
                    f"template link {link.id!r} can never allow: forbid {forbid.id!r} "
                    f"({forbid.location}) has the same or a wider scope and no condition",
                    file=link.source if texts.text(link.source) is not None else None,
                    line=position[0] if position else None, col=position[1] if position else None,
                    code="shadowed", policy=link.id))
                break
    return found


def _policy_positions(store: PolicyStore, texts: _Texts) -> dict[str, dict[str, Any]]:
    positions: dict[str, dict[str, Any]] = {}
    index_in_file: dict[str, int] = {}
    for policy in store.policies:
        index = index_in_file.get(policy.source, 0)
        index_in_file[policy.source] = index + 1
        line, col = policy.line, None
        text = texts.text(policy.source)
        spans = texts.statement_spans(policy.source)
        if text is not None and index < len(spans):
            line, col = _line_col(text, spans[index][0])
        positions[policy.id] = {"file": policy.source, "line": line, "col": col, "policy": policy.id}
    return positions


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
