"""Policy stores: policies, templates, links, schema and entities, loaded and checked once.

A :class:`PolicyStore` turns a directory (or text) into an immutable
:class:`PolicySnapshot` holding pre-parsed cedarpy handles. Reloading builds a
whole new snapshot and swaps one reference, so a request always sees one
consistent version and a failed reload leaves the old one in place.

Loading reads the files (``_read_directory``, through :mod:`agentauthz.policy._files`)
and builds the snapshot in named stages (``_build``): ``_parse_sources``,
``_name_policies``, ``_duplicate_ids``, ``_load_schema``, validation
(:mod:`agentauthz.policy._cedar_checks`), ``_mode_problems``, ``approval_problems``
(:mod:`agentauthz.policy._approvals`), then
``_policy_sets`` (links and shadow policies) and ``_load_entities``. Every
problem of every stage is reported at once, at ``file:line:col`` for a
directory (:mod:`agentauthz.policy._locate`).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _json_string
from operator import attrgetter
from pathlib import Path
from typing import Any

import cedarpy

from agentauthz._collector import collector_paused
from agentauthz._entities import StoredEntities
from agentauthz._errors import AuthzError, PolicyError
from agentauthz._model import Entity, EntityUID
from agentauthz.policy._approvals import approvable_ids, approval_problems
from agentauthz.policy._cedar_checks import (
    ParsedFile,
    PolicyFile,
    entity_handle,
    parse_problems,
    parse_schema,
    policy_json,
    validation_problems,
)
from agentauthz.policy._files import parse_json, read_text, schema_files, store_entry, store_files
from agentauthz.policy._locate import StoreTexts, locate
from agentauthz.policy._messages import author_message, redact, truncate
from agentauthz.policy._text import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DATA_BYTES,
    DEFAULT_MAX_DEPTH,
    scan,
    schema_nesting_problem,
)

__all__ = [
    "Policy",
    "PolicySnapshot",
    "PolicyStore",
    "ShadowPolicies",
    "TemplateLink",
    "entity_problems",
    "failed_policy_id",
    "policy_mode",
    "redact",  # from _messages, where the modules that decide import it from
    "schema_checks_are_deferred",
    "schema_checks_deferred",
    "truncate",  # likewise
    "validate_policies",
]


@dataclass(frozen=True)
class Policy:
    """A static policy or a template, as loaded.

    Attributes:
        id: the store id: the ``@id`` annotation, else ``<file>:<n>`` or ``policy<n>``.
        text: the policy's Cedar text, annotations included.
        source: the file (relative to the store) or ``<text>``.
        line: 1-based line where the policy starts.
        is_template: whether it has ``?principal`` / ``?resource`` slots.
        annotations: all of its annotations.
        column: 1-based column where the policy starts on its line.
    """

    id: str
    text: str
    source: str
    line: int
    is_template: bool = False
    annotations: Mapping[str, str] = field(default_factory=dict)
    column: int = field(default=1, compare=False)

    @property
    def location(self) -> str:
        """``file:line`` of the policy."""
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class TemplateLink:
    """A template-linked policy: ``template`` filled with ``principal``/``resource``."""

    id: str
    template: str
    principal: EntityUID | None = None
    resource: EntityUID | None = None
    source: str = field(default="<links>", compare=False)


_FAILED_POLICY = re.compile(r"error while evaluating policy `([^`]*)`")


def failed_policy_id(error: str) -> str | None:
    """The id of the policy an evaluation error names (``error while evaluating policy `id`: ...``).

    Example:
        >>> failed_policy_id("error while evaluating policy `no-secrets`: attribute not found")
        'no-secrets'
    """
    match = _FAILED_POLICY.match(error)
    return match.group(1) if match else None


@dataclass(frozen=True)
class PolicySnapshot:
    """One immutable version of a store with its pre-parsed cedarpy handles."""

    policies: tuple[Policy, ...]
    links: tuple[TemplateLink, ...]
    entities: StoredEntities
    schema_text: str | None
    fingerprint: str
    policy_set: Any
    schema: Any
    entity_set: Any
    ids_by_position: Mapping[str, str]
    actions: tuple[EntityUID, ...]
    entity_index: Mapping[EntityUID, Entity]
    shadow: ShadowPolicies | None = None
    schema_source: str = "<schema>"
    approvable: frozenset[str] = frozenset()

    _effects: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    def store_id(self, positional: str) -> str:
        """Translate cedarpy's positional id (``policyN``) to the store id."""
        return self.ids_by_position.get(positional, positional)

    def only_permits_failed(self, errors: Iterable[str], *,
                            store_id: Callable[[str], str] | None = None) -> bool:
        """Whether every evaluation error names a permit of this version.

        A failed permit can only withhold an allow; any other failure (a
        forbid, an error naming no policy) may hide a denial. ``store_id``
        maps the ids the errors name to store ids, when the evaluated policy
        set named them otherwise (cedarpy's positional ``policyN``).
        """
        for error in errors:
            policy_id = failed_policy_id(error)
            if policy_id is not None and store_id is not None:
                policy_id = store_id(policy_id)
            if policy_id is None or self.effect_of(policy_id) != "permit":
                return False
        return True

    def effect_of(self, policy_id: str) -> str | None:
        """``"permit"`` or ``"forbid"`` for a policy, template or link id; None for an unknown id.

        Worked out on first use (it is needed only when a policy fails to
        evaluate) and remembered for this version.
        """
        if policy_id not in self._effects:
            template = next((link.template for link in self.links if link.id == policy_id), policy_id)
            text = next((policy.text for policy in self.policies if policy.id == template), None)
            body = policy_json(text) if text is not None else None
            effect = body.get("effect") if body is not None else None
            self._effects[policy_id] = effect if effect in ("permit", "forbid") else None
        return self._effects[policy_id]


class PolicyStore:
    """Policies, templates, template links, schema and entities, validated at load.

    Example:
        >>> store = PolicyStore.from_text(
        ...     '@id("all") permit(principal, action, resource);')
        >>> [p.id for p in store.policies]
        ['all']
    """

    def __init__(
        self,
        snapshot: PolicySnapshot,
        *,
        loader: Any = None,
    ) -> None:
        self._snapshot = snapshot
        self._loader = loader
        self._lock = threading.Lock()

    # -- construction -------------------------------------------------------------

    @classmethod
    def from_text(
        cls,
        policies: str,
        *,
        schema: str | Mapping[str, Any] | None = None,
        entities: Iterable[Entity] | None = None,
        links: Iterable[TemplateLink] = (),
        validate: bool = True,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> PolicyStore:
        """Build a store from policy text.

        Policies without ``@id`` are named ``policy0``, ``policy1``, ... (Cedar's
        own naming, templates included). ``validate=True`` checks the policies
        against the schema when there is one, and only parses them otherwise.

        Raises:
            PolicyError: every problem found, each as ``<text>:line: message``.
        """
        try:
            schema_text = json.dumps(schema) if isinstance(schema, Mapping) else schema
        except (TypeError, ValueError, RecursionError) as exc:
            raise PolicyError(f"<schema>: not a JSON document ({type(exc).__name__})") from None

        with collector_paused():
            given = _StoreInput([PolicyFile("<text>", policies)], schema_text=schema_text,
                                entities=StoredEntities.of(entities or ()), links=tuple(links))
            return cls(_build(given, validate=validate, positional_names=True, max_bytes=max_bytes,
                              max_depth=max_depth))

    @classmethod
    def from_directory(
        cls,
        path: str | Path,
        *,
        validate: bool = True,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_data_bytes: int = DEFAULT_MAX_DATA_BYTES,
        overrides: Mapping[str, str] | None = None,
    ) -> PolicyStore:
        """Load a policy store directory.

        Reads every ``*.cedar`` file below ``path`` (static policies and
        templates), the schema (``schema.cedarschema``,
        ``schema.cedarschema.json``, or a single ``*.cedarschema`` of any name),
        ``entities.json`` and template links (``template-links.json`` or the
        Cedar CLI's ``linked``). :meth:`reload` reads the directory again.

        Args:
            path: the store directory.
            validate: check the policies against the schema (parse only without one).
            max_bytes: the size limit of each policy and schema file (1 MiB by default).
            max_depth: the nesting limit of policy and schema text.
            max_data_bytes: the size limit of each data file (entities, template links;
                1 GiB by default: a million entities or 100,000 links load).
            overrides: what-if texts of policy files (by name relative to ``path``, such as
                ``tools.cedar``), used instead of what the files hold; nothing is written.

        Raises:
            PolicyError: every problem found, each as ``file:line: message``
                (an override naming no ``*.cedar`` file of the store is one).
        """
        root = Path(path)

        def load() -> PolicySnapshot:
            with collector_paused():
                given = _read_directory(root, max_bytes, max_data_bytes)
                if overrides:
                    _override(given, overrides)
                return _build(given, validate=validate, positional_names=False,
                              max_bytes=max_bytes, max_depth=max_depth)

        return cls(load(), loader=load)

    # -- access ---------------------------------------------------------------------

    @property
    def snapshot(self) -> PolicySnapshot:
        """The current version; read it once per request for a consistent view."""
        return self._snapshot

    @property
    def policies(self) -> tuple[Policy, ...]:
        """Static policies and templates, in load order."""
        return self._snapshot.policies

    @property
    def links(self) -> tuple[TemplateLink, ...]:
        """Template links."""
        return self._snapshot.links

    @property
    def enforced_policies(self) -> tuple[Policy, ...]:
        """Policies and templates not annotated ``@mode("shadow")``.

        What a backend without shadow mode (Verified Permissions) may hold:
        there a shadow policy would be enforced.
        """
        shadow = self._snapshot.shadow
        if shadow is None:
            return self._snapshot.policies
        return tuple(p for p in self._snapshot.policies if p.id not in shadow.ids)

    @property
    def enforced_links(self) -> tuple[TemplateLink, ...]:
        """Template links of enforced templates (see :attr:`enforced_policies`)."""
        shadow = self._snapshot.shadow
        if shadow is None:
            return self._snapshot.links
        return tuple(link for link in self._snapshot.links if link.template not in shadow.ids)

    @property
    def approvable(self) -> frozenset[str]:
        """Ids of the forbids annotated ``@approval("required")`` (and of their templates' links).

        A denial whose determining policies are all approvable asks a human
        (see ``docs/approvals.md``). For Verified Permissions, pass them on:
        ``SessionConfig(approvals=ApprovalConfig(approvable=store.approvable))``.
        """
        return self._snapshot.approvable

    @property
    def entities(self) -> StoredEntities:
        """Entities loaded with the store, in load order (a read-only sequence of :class:`Entity`)."""
        return self._snapshot.entities

    @property
    def schema_text(self) -> str | None:
        """The schema as written (Cedar or JSON), if any."""
        return self._snapshot.schema_text

    @property
    def schema_source(self) -> str:
        """Where the schema was read: its file name (relative to the store), or ``<schema>``."""
        return self._snapshot.schema_source

    def effect_of(self, policy_id: str, *, version: str | None = None) -> str | None:
        """``"permit"`` or ``"forbid"`` for a policy, template or link id of this store, else None.

        Args:
            policy_id: a store id, as a decision's reasons and errors name it.
            version: the ``policy_version`` of the decision asking; after a
                reload the id may name another policy, so the answer is None.

        Example:
            >>> store = PolicyStore.from_text('@id("no") forbid(principal, action, resource);')
            >>> store.effect_of("no"), store.effect_of("nope")
            ('forbid', None)
        """
        snapshot = self._snapshot
        if version is not None and version != snapshot.fingerprint:
            return None
        return snapshot.effect_of(policy_id)

    def only_permits_failed(self, errors: Iterable[str], *, version: str | None) -> bool:
        """Whether every error of a decision (store ids) names a permit of the version that decided.

        Example:
            >>> store = PolicyStore.from_text('@id("p") permit(principal, action, resource);')
            >>> error = "error while evaluating policy `p`: attribute not found"
            >>> store.only_permits_failed([error], version=store.fingerprint)
            True
        """
        snapshot = self._snapshot
        if version is not None and version != snapshot.fingerprint:
            return False  # after a reload an id may name another policy
        return snapshot.only_permits_failed(errors)

    @property
    def fingerprint(self) -> str:
        """sha256 of the normalized content; equal content gives an equal fingerprint."""
        return self._snapshot.fingerprint

    @property
    def actions(self) -> tuple[EntityUID, ...]:
        """Actions the schema declares (empty without a schema)."""
        return self._snapshot.actions

    def policy(self, policy_id: str) -> Policy:
        """The policy or template with this store id."""
        for policy in self._snapshot.policies:
            if policy.id == policy_id:
                return policy
        raise KeyError(policy_id)

    @property
    def reloadable(self) -> bool:
        """Whether :meth:`reload` may swap in another version (stores loaded with ``from_directory``).

        What is worked out from one version's policies holds for the requests
        that store decides only when this is False.
        """
        return self._loader is not None

    def reload(self) -> bool:
        """Load the directory again and swap atomically.

        Returns:
            True if the content changed.

        Raises:
            PolicyError: the new content is invalid; the old version stays in use.
        """
        if self._loader is None:
            raise PolicyError("only stores loaded with from_directory can reload")
        with self._lock:
            fresh: PolicySnapshot = self._loader()
            changed = fresh.fingerprint != self._snapshot.fingerprint
            if changed:
                self._snapshot = fresh
            return changed

    def __repr__(self) -> str:
        snap = self._snapshot
        return (f"PolicyStore(policies={len(snap.policies)}, links={len(snap.links)}, "
                f"entities={len(snap.entities)}, fingerprint={snap.fingerprint[:12]})")


# -- what a store is built from ------------------------------------------------------

@dataclass
class _StoreInput:
    """Everything a store is built from, as read from a directory or given as text.

    Attributes:
        problems: found while reading files; reported with those the build finds.
        texts: the files' texts by name, to give each problem its column (directories
            only: a store built from text reports lines, as ``<text>:line:``).
    """

    policies: list[PolicyFile]
    schema_text: str | None = None
    schema_name: str = "<schema>"
    entities: StoredEntities = field(default_factory=lambda: StoredEntities.of(()))
    entities_name: str = "<entities>"
    entities_text: str | None = None
    links: tuple[TemplateLink, ...] = ()
    problems: list[str] = field(default_factory=list)
    texts: dict[str, str] | None = None


def _read_directory(root: Path, max_bytes: int, max_data_bytes: int = DEFAULT_MAX_DATA_BYTES) -> _StoreInput:
    """Read every file of a store directory; a file that cannot be read is a problem, not an end.

    Policy and schema files are bounded by ``max_bytes``, data files by ``max_data_bytes``.
    """
    if not root.is_dir():
        raise PolicyError(f"{root}: not a directory")
    given = _StoreInput(policies=[], schema_name="", entities_name="entities.json", texts={})
    for path in store_files(root, (".cedar",), given.problems):
        name = path.relative_to(root).as_posix()
        with _reported(given):
            given.policies.append(PolicyFile(name, _read(given, path, name, max_bytes)))
    with _reported(given):
        chosen = schema_files(root)
        if len(chosen) > 1:
            given.problems.append(f"{root.name}: more than one schema file: "
                                  + ", ".join(path.name for path in chosen))
        elif chosen:
            given.schema_text = _read(given, chosen[0], chosen[0].name, max_bytes)
            given.schema_name = chosen[0].name
    with _reported(given):
        if store_entry(root / "entities.json", "entities.json"):
            text = _read(given, root / "entities.json", "entities.json", max_data_bytes)
            given.entities = _entities_from_json(parse_json(text, "entities.json"), "entities.json")
            given.entities_text = text
    for name, reader in (("template-links.json", _links_from_json), ("linked", _links_from_cli)):
        with _reported(given):
            if store_entry(root / name, name):
                given.links += reader(parse_json(_read(given, root / name, name, max_data_bytes), name),
                                      name)
    return given


def _override(given: _StoreInput, overrides: Mapping[str, str]) -> None:
    """Put the what-if texts in place of the policy files they name."""
    known = {source.name for source in given.policies}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise PolicyError([f"{truncate(name, 120)}: no such policy file in the store" for name in unknown])
    given.policies = [PolicyFile(source.name, overrides.get(source.name, source.text))
                      for source in given.policies]
    if given.texts is not None:
        given.texts.update(overrides)


@contextmanager
def _reported(given: _StoreInput) -> Iterator[None]:
    """Record a problem of reading one file and go on to the next."""
    try:
        yield
    except PolicyError as exc:
        given.problems.extend(exc.problems)


def _read(given: _StoreInput, path: Path, name: str, max_bytes: int) -> str:
    text = read_text(path, name, max_bytes)
    if given.texts is not None:
        given.texts[name] = text
    return text


def _entities_from_json(data: Any, name: str) -> StoredEntities:
    if not isinstance(data, list):
        raise PolicyError(f"{name}: expected a JSON array of entities")

    def problem(index: int, exc: Exception) -> Exception:
        if not isinstance(exc, AuthzError):  # never expected: still refused, and naming the entity
            return PolicyError(f"{name}: entity #{index}: not a Cedar JSON entity ({type(exc).__name__})")
        return PolicyError(f"{name}: entity #{index}: {author_message(str(exc))}")

    return StoredEntities.from_json(data, problem)


def _links_from_json(data: Any, name: str) -> tuple[TemplateLink, ...]:
    if not isinstance(data, list):
        raise PolicyError(f"{name}: expected a JSON array of links")
    links = []
    for index, item in enumerate(data):
        try:
            if not isinstance(item, dict) or not {"id", "template"} <= set(item):
                raise PolicyError(f'{name}: link #{index} needs "id" and "template"')
            links.append(TemplateLink(
                id=str(item["id"]),
                template=str(item["template"]),
                principal=EntityUID.from_cedar(item["principal"]) if "principal" in item else None,
                resource=EntityUID.from_cedar(item["resource"]) if "resource" in item else None,
                source=name,
            ))
        except AuthzError as exc:
            if isinstance(exc, PolicyError):
                raise
            raise PolicyError(f"{name}: link #{index}: {exc}") from exc
    return tuple(links)


def _links_from_cli(data: Any, name: str) -> tuple[TemplateLink, ...]:
    if not isinstance(data, list):
        raise PolicyError(f"{name}: expected a JSON array of links")
    links = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or not {"template_id", "link_id"} <= set(item):
            raise PolicyError(f'{name}: link #{index} needs "template_id" and "link_id"')
        args = item.get("args") or {}
        try:
            links.append(TemplateLink(
                id=str(item["link_id"]),
                template=str(item["template_id"]),
                principal=EntityUID.from_cedar(args["?principal"]) if "?principal" in args else None,
                resource=EntityUID.from_cedar(args["?resource"]) if "?resource" in args else None,
                source=name,
            ))
        except AuthzError as exc:
            raise PolicyError(f"{name}: link #{index}: {exc}") from exc
    return tuple(links)


# -- building a snapshot ----------------------------------------------------------------

# Set by `agentauthz schema generate` while it imports the application: see schema_checks_deferred.
_SCHEMA_CHECKS_DEFERRED: ContextVar[bool] = ContextVar("agentauthz_schema_checks_deferred", default=False)


@contextmanager
def schema_checks_deferred() -> Iterator[None]:
    """Stores loaded inside parse their policies but do not check them against their schema.

    For ``agentauthz schema generate --tools module:attr``: importing the
    application builds its Authorizer over policies that name the tools being
    added, which the schema declares only once it is generated. Everything else
    is checked as usual (syntax, ids, links, entities against the schema), and
    nothing is decided with such a store: the command only reads its tools.
    ``validate_tools`` checks nothing inside either.
    """
    token = _SCHEMA_CHECKS_DEFERRED.set(True)
    try:
        yield
    finally:
        _SCHEMA_CHECKS_DEFERRED.reset(token)


def schema_checks_are_deferred() -> bool:
    """Whether the caller runs inside :func:`schema_checks_deferred`."""
    return _SCHEMA_CHECKS_DEFERRED.get()


def _build(given: _StoreInput, *, validate: bool, positional_names: bool, max_bytes: int,
           max_depth: int) -> PolicySnapshot:
    """The snapshot of a store, in stages; every problem found is reported at once."""
    problems = list(given.problems)
    parsed = _parse_sources(given.policies, max_bytes, max_depth, problems)
    policies, ids_by_position = _name_policies(parsed, positional_names)
    problems += _duplicate_ids(policies, given.links)
    schema, actions = _load_schema(given.schema_text, given.schema_name, max_depth, problems)
    if validate and schema is not None and not schema_checks_are_deferred():
        problems += validation_problems(parsed, schema)
    problems += _mode_problems(policies)
    problems += approval_problems(policies)
    if problems:
        raise _load_error(problems, given, max_depth)
    try:
        policy_set, shadow = _policy_sets(parsed, policies, given.links, ids_by_position)
        entity_set, entities_document = _load_entities(given.entities, schema, given.entities_name,
                                                       given.entities_text)
    except PolicyError as exc:
        raise _load_error(list(exc.problems), given, max_depth) from exc
    return PolicySnapshot(
        policies=tuple(policies),
        links=given.links,
        entities=given.entities,
        schema_text=given.schema_text,
        fingerprint=_fingerprint(policies, given.links, entities_document, given.schema_text),
        policy_set=policy_set,
        schema=schema,
        entity_set=entity_set,
        ids_by_position=ids_by_position,
        actions=actions,
        entity_index=given.entities.by_uid,
        shadow=shadow,
        schema_source=given.schema_name or "<schema>",
        approvable=approvable_ids(policies, given.links),
    )


def _parse_sources(sources: Sequence[PolicyFile], max_bytes: int, max_depth: int,
                   problems: list[str]) -> list[ParsedFile]:
    """The files that parse, split into statements; each file that does not is a problem."""
    parsed = []
    for source in sources:
        size = len(source.text.encode("utf-8"))
        if size > max_bytes:
            problems.append(f"{source.name}: {size} bytes is over the limit of {max_bytes}")
            continue
        statements, text_problems = scan(source.text, max_depth=max_depth)
        if text_problems:
            problems.extend(f"{source.name}:{p.line}: {p.message}" for p in text_problems)
            continue
        try:
            handle = cedarpy.PolicySet.from_str(source.text)
        except ValueError:
            problems.extend(parse_problems(source, statements))
            continue
        count = len(handle) + len(handle.templates())
        if count != len(statements):
            problems.append(
                f"{source.name}: found {len(statements)} statements but Cedar parsed {count}; "
                "cannot name the policies reliably")
            continue
        parsed.append(ParsedFile(source, statements))
    return parsed


def _name_policies(parsed: Sequence[ParsedFile],
                   positional_names: bool) -> tuple[list[Policy], dict[str, str]]:
    """The policies with their store ids, and Cedar's positional id (``policyN``) of each."""
    policies: list[Policy] = []
    ids_by_position: dict[str, str] = {}
    offset = 0
    for file in parsed:
        for statement in file.statements:
            positional = f"policy{offset + statement.index}"
            if "id" in statement.annotations:
                policy_id = statement.annotations["id"]
            elif positional_names:
                policy_id = positional
            else:
                policy_id = f"{file.source.name}:{statement.index}"
            ids_by_position[positional] = policy_id
            policies.append(Policy(
                id=policy_id, text=statement.text.strip(), source=file.source.name,
                line=statement.line, is_template=statement.is_template,
                annotations=dict(statement.annotations), column=statement.column,
            ))
        offset += len(file.statements)
    return policies, ids_by_position


def _duplicate_ids(policies: Sequence[Policy], links: Sequence[TemplateLink]) -> list[str]:
    problems = []
    seen: dict[str, Policy] = {}
    for policy in policies:
        if policy.id in seen:
            problems.append(f"{policy.location}: duplicate policy id {policy.id!r} "
                            f"(first at {seen[policy.id].location})")
        else:
            seen[policy.id] = policy
    problems.extend(f"{link.source}: link {link.id!r}: id already used by a policy"
                    for link in links if link.id in seen)
    return problems


def _load_schema(text: str | None, name: str, max_depth: int,
                 problems: list[str]) -> tuple[Any, tuple[EntityUID, ...]]:
    """The parsed schema (None without one, or when it is a problem) and the actions it declares."""
    if text is None:
        return None, ()
    nesting = (schema_nesting_problem(text, max_depth=max_depth)
               if not text.lstrip().startswith("{") else None)
    if nesting is not None:
        problems.append(f"{name}:{nesting.line}: {nesting.message}")
        return None, ()
    try:
        schema = parse_schema(text)
        action_entities = json.loads(str(cedarpy.Entities.from_json_str("[]", schema)))
    except ValueError as exc:
        problems.append(f"{name}: {author_message(str(exc))}")
        return None, ()
    return schema, tuple(EntityUID.from_cedar(entity["uid"]) for entity in action_entities)


def _policy_sets(parsed: Sequence[ParsedFile], policies: Sequence[Policy], links: Sequence[TemplateLink],
                 ids_by_position: Mapping[str, str]) -> tuple[Any, ShadowPolicies | None]:
    """The enforced policy set, links included, and the shadow policies kept apart."""
    policy_set = _combine([file.source for file in parsed], ids_by_position, policies)
    templates = {policy.id for policy in policies if policy.is_template}
    template_ids = {policy_id: position for position, policy_id in ids_by_position.items()
                    if policy_id in templates}
    # Policies annotated @mode("shadow") leave the enforced set (see _split_shadow).
    policy_set, shadow = _split_shadow([file.source.text for file in parsed], policy_set,
                                       policies, links, ids_by_position, template_ids)
    enforced = [link for link in links if shadow is None or link.template not in shadow.ids]
    if enforced:
        policy_set = _link(policy_set, enforced, template_ids)
    return policy_set, shadow


def _load_entities(entities: StoredEntities, schema: Any, name: str,
                   text: str | None = None) -> tuple[Any, str]:
    """The parsed entities (checked against the schema), and the Cedar JSON document that was parsed.

    ``text``: the file the entities were read from. When every entity in it is
    already canonical (:func:`~agentauthz._entities.canonical_key`), cedarpy parses
    the file itself: Cedar refuses duplicate keys, so what it accepts is what
    Python read. Otherwise, or should cedarpy refuse the file, it parses the
    canonical JSON; should it refuse that too, the entities are tried one by one
    to name the first it refuses.
    """
    if entities.duplicate is not None:
        position, first = entities.duplicate
        uid = EntityUID(*entities.key_of(position))
        raise PolicyError(f"{name}: entity #{position} {uid}: the same entity uid appears "
                          f"more than once (first as #{first})")
    if text is not None and not entities.rewritten:
        try:
            return cedarpy.Entities.from_json_str(text, schema), text
        except ValueError:
            pass  # the canonical JSON below says whether the entities themselves are refused
    document = entities.document() if text is None else json.dumps(entities.cedar)
    try:
        return cedarpy.Entities.from_json_str(document, schema), document
    except ValueError:
        return entity_handle(entities, schema, name), document


def _load_error(problems: list[str], given: _StoreInput, max_depth: int) -> PolicyError:
    """The error listing ``problems``, each with its column when the store has files."""
    if given.texts is None:
        return PolicyError(problems)
    texts = StoreTexts(loaded=given.texts)
    return PolicyError([locate(problem, texts, max_depth).text() for problem in problems])


def entity_problems(root: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                    max_depth: int = DEFAULT_MAX_DEPTH,
                    max_data_bytes: int = DEFAULT_MAX_DATA_BYTES) -> list[str]:
    """Problems of a store directory's entities alone, located like load problems.

    Loading checks the entities only once the policies load: this checks them
    against the schema whatever the policies hold (for ``agentauthz validate``).
    Empty when the schema itself is a problem: that is reported with the schema.
    """
    given = _read_directory(root, max_bytes, max_data_bytes)
    if any(problem.startswith("entities.json") for problem in given.problems):
        return []  # reported with the files that cannot be read
    schema_problems: list[str] = []
    schema, _ = _load_schema(given.schema_text, given.schema_name, max_depth, schema_problems)
    if schema_problems:
        return []
    try:
        _load_entities(given.entities, schema, given.entities_name)
    except PolicyError as exc:
        return list(_load_error(list(exc.problems), given, max_depth).problems)
    return []


# -- per-policy enforcement mode ------------------------------------------------------------

MODES = ("enforce", "shadow")


@dataclass(frozen=True)
class ShadowPolicies:
    """Policies annotated ``@mode("shadow")``: evaluated and audited, never enforced.

    The snapshot's ``policy_set`` holds the enforced policies only; these sets
    let the Authorizer say what each shadow policy would have done.

    Attributes:
        ids: shadow static policies and templates, and the links of shadow templates.
        effects: ``"permit"`` or ``"forbid"`` for each id.
        forbids: pre-parsed set of the shadow forbids (None when there are none).
        permits: pre-parsed set of the shadow permits (None when there are none).
    """

    ids: frozenset[str]
    effects: Mapping[str, str]
    forbids: Any
    permits: Any


def policy_mode(policy: Policy) -> str:
    """``"shadow"`` for a policy annotated ``@mode("shadow")``, else ``"enforce"``."""
    return policy.annotations.get("mode", "enforce")


def _mode_problems(policies: Sequence[Policy]) -> list[str]:
    return [f"{policy.location}: @mode({policy.annotations['mode']!r}) must be "
            f"{' or '.join(repr(m) for m in MODES)}"
            for policy in policies if policy.annotations.get("mode", "enforce") not in MODES]


def _split_shadow(texts: Sequence[str], policy_set: Any, policies: Sequence[Policy],
                  links: Sequence[TemplateLink], ids_by_position: Mapping[str, str],
                  template_ids: Mapping[str, str]) -> tuple[Any, ShadowPolicies | None]:
    """The enforced set (shadow policies removed) and the shadow sets, positional ids kept."""
    shadow = {policy.id for policy in policies if policy_mode(policy) == "shadow"}
    if not shadow:
        return policy_set, None
    document = json.loads(cedarpy.policies_to_json_str("\n".join(texts)))
    effects: dict[str, str] = {}
    for group in ("staticPolicies", "templates"):
        for position, body in (document.get(group) or {}).items():
            effects[ids_by_position.get(position, position)] = body["effect"]

    def subset(keep: Any) -> Any:
        return cedarpy.PolicySet.from_json_str(json.dumps({
            group: {position: body for position, body in (document.get(group) or {}).items()
                    if keep(ids_by_position.get(position, position))}
            for group in ("staticPolicies", "templates")} | {"templateLinks": []}))

    shadow_links = [link for link in links if link.template in shadow]
    for link in shadow_links:
        effects[link.id] = effects[link.template]
    sets: dict[str, Any] = {}
    for effect in ("forbid", "permit"):
        chosen = {policy_id for policy_id in shadow if effects.get(policy_id) == effect}
        wanted = [link for link in shadow_links if link.template in chosen]
        if not chosen:
            sets[effect] = None
            continue
        handle = subset(chosen.__contains__)
        sets[effect] = _link(handle, wanted, template_ids) if wanted else handle
    ids = frozenset(shadow | {link.id for link in shadow_links})
    return (subset(lambda policy_id: policy_id not in shadow),
            ShadowPolicies(ids, {i: effects[i] for i in ids if i in effects},
                           sets["forbid"], sets["permit"]))


def _combine(sources: Sequence[PolicyFile], ids_by_position: Mapping[str, str],
             policies: Sequence[Policy]) -> Any:
    # One parse of all files joined, so Cedar numbers policies across files in text order,
    # exactly as ids_by_position assumes. Newlines keep a trailing // comment in its file.
    combined = cedarpy.PolicySet.from_str("\n".join(source.text for source in sources))
    if len(combined) + len(combined.templates()) != len(policies):
        raise PolicyError("the policy files parse to a different number of policies together "
                          "than one by one; cannot name the policies reliably")
    by_id = {policy.id: policy for policy in policies}
    for template in combined.templates():
        ours = by_id.get(ids_by_position.get(template["id"], ""))
        if ours is None or not ours.is_template or (
                template["id_annotation"] is not None
                and template["id_annotation"] != ours.annotations.get("id")):
            raise PolicyError(f"cannot match Cedar's template {template['id']} to a loaded template")
    return combined


#: The slots a link fills, by whether it names a principal and a resource.
_FILLED = {(principal, resource): frozenset(slot for slot, filled in (("?principal", principal),
                                                                    ("?resource", resource)) if filled)
           for principal in (False, True) for resource in (False, True)}


def _link(policy_set: Any, links: Sequence[TemplateLink], template_ids: Mapping[str, str]) -> Any:
    requests = []
    problems = []
    slots = {template["id"]: frozenset(template["slots"]) for template in policy_set.templates()}
    for link in links:
        positional = template_ids.get(link.template)
        if positional is None:
            problems.append(f"{link.source}: link {link.id!r}: no template {link.template!r}")
            continue
        principal, resource = link.principal, link.resource
        given = _FILLED[principal is not None, resource is not None]
        if given != slots.get(positional, frozenset()):
            wanted = ", ".join(sorted(slots.get(positional, set()))) or "no slots"
            problems.append(f"{link.source}: link {link.id!r}: template {link.template!r} takes "
                            f"{wanted}; the link fills {', '.join(sorted(given)) or 'none'}")
            continue
        values: dict[str, Any] = {}
        if principal is not None:
            values["?principal"] = {"type": principal.type, "id": principal.id}
        if resource is not None:
            values["?resource"] = {"type": resource.type, "id": resource.id}
        requests.append({"template_id": positional, "new_id": link.id, "values": values})
    if problems:
        raise PolicyError(problems)
    try:
        return policy_set.with_linked_batch(requests)
    except (ValueError, KeyError) as exc:
        raise PolicyError(f"template links: {author_message(str(exc))}") from exc


def validate_policies(policies: Sequence[Policy], schema: str | Mapping[str, Any]) -> list[str]:
    """Validate loaded policies against a schema, file by file, as loading does.

    Used to check a store against another schema (e.g. one generated for its
    tools). Each file is rebuilt from its policies at their original lines and
    columns, so problems carry the same ``file:line:col:`` as at load
    (``<text>:line:`` for a store built from text).

    Returns:
        One ``file:line:col: message`` per problem; empty when all validate.

    Raises:
        PolicyError: the schema does not parse.

    Example:
        >>> store = PolicyStore.from_text('permit(principal, action == Action::"x", resource);')
        >>> validate_policies(store.policies, 'entity User; action y appliesTo {principal: User, '
        ...                   'resource: User};')[0].startswith('<text>:1:')
        True
    """
    text = json.dumps(schema) if isinstance(schema, Mapping) else schema
    try:
        handle = parse_schema(text)
    except ValueError as exc:
        raise PolicyError(f"<schema>: {author_message(str(exc))}") from exc
    files: dict[str, str] = {}
    for policy in policies:
        sofar = files.get(policy.source, "")
        sofar += "\n" * max(policy.line - 1 - sofar.count("\n"), 0)
        at = len(sofar) - (sofar.rfind("\n") + 1)  # the column the text has reached, less one
        sofar += " " * max(policy.column - 1 - at, 1 if at else 0)
        files[policy.source] = sofar + policy.text
    parsed = [ParsedFile(PolicyFile(name, body), scan(body)[0]) for name, body in files.items()]
    problems = validation_problems(parsed, handle)
    texts = StoreTexts(loaded={name: body for name, body in files.items() if name != "<text>"})
    return [locate(problem, texts).text() for problem in problems]


def _link_json(link: TemplateLink) -> str:
    """``json.dumps([id, template, principal, resource])`` of a link, written out (100,000 links load)."""
    principal, resource = link.principal, link.resource
    return (f"[{_json_string(link.id)}, {_json_string(link.template)}, "
            f"{_uid_json(principal.type, principal.id) if principal is not None else 'null'}, "
            f"{_uid_json(resource.type, resource.id) if resource is not None else 'null'}]")


@lru_cache(maxsize=4096)
def _uid_json(kind: str, name: str) -> str:
    """``json.dumps`` of a uid's ``{"type", "id"}``: links name the same entities again and again."""
    return f'{{"type": {_json_string(kind)}, "id": {_json_string(name)}}}'


def _fingerprint(policies: Sequence[Policy], links: Sequence[TemplateLink],
                 entities: str | Sequence[Entity], schema_text: str | None) -> str:
    """sha256 of the content; ``entities`` as cedarpy parsed them (the file's text, or the entities'
    canonical JSON: see :func:`_load_entities`)."""
    digest = hashlib.sha256()
    for policy in sorted(policies, key=lambda p: p.id):
        digest.update(b"P\0" + policy.id.encode() + b"\0" + "\n".join(
            line.rstrip() for line in policy.text.splitlines()).encode() + b"\0")
    # One update of the links' texts joined: the digest of the same bytes as one update per link.
    digest.update("".join([f"L\0{_link_json(link)}\0" for link in sorted(links, key=attrgetter("id"))])
                  .encode())
    document = entities if isinstance(entities, str) else StoredEntities.of(entities).document()
    if document != "[]":
        digest.update(b"E\0" + document.encode() + b"\0")
    if schema_text is not None:
        digest.update(b"S\0" + "\n".join(line.rstrip() for line in schema_text.strip().splitlines())
                      .encode())
    return digest.hexdigest()
