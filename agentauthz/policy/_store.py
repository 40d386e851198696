"""Policy stores: policies, templates, links, schema and entities, loaded and checked once.

A :class:`PolicyStore` turns a directory (or text) into an immutable
:class:`PolicySnapshot` holding pre-parsed cedarpy handles. Reloading builds a
whole new snapshot and swaps one reference, so a request always sees one
consistent version and a failed reload leaves the old one in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cedarpy

from agentauthz._errors import AuthzError, PolicyError
from agentauthz._model import Entity, EntityUID
from agentauthz.policy._text import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEPTH,
    Statement,
    scan,
    schema_nesting_problem,
)

__all__ = [
    "Policy",
    "PolicySnapshot",
    "PolicyStore",
    "ShadowPolicies",
    "TemplateLink",
    "policy_mode",
    "validate_policies",
]

_MAX_MESSAGE = 300
_POSITIONAL = re.compile(r"policy(\d+)")


def truncate(message: str, limit: int = _MAX_MESSAGE) -> str:
    """Bound an error message: cedarpy messages can embed whole entity dumps."""
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


_QUOTED = re.compile(r"`([^`]*)`")
_NAME_OR_UID = re.compile(r'[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*(?:::"(?:[^"\\]|\\.)*")?')


# Errors whose text at that place is always a value, even one that looks like a name
# (a password "hunter2" reads like an identifier): extension-function parse errors, tag lookups
# by a computed key, and AWS validation messages ("Value 'x' at 'path' failed to ...").
_VALUE_PLACES = (
    (re.compile(r"`[^`]*`(?= is not a well-formed decimal value)"), "`<value>`"),
    (re.compile(r"(?<=does not have the tag )`[^`]*`"), "`<value>`"),
    (re.compile(r"(?<=from string )`[^`]*`|(?<=from the string )`[^`]*`|(?<=Found: )`[^`]*`"), "`<value>`"),
    (re.compile(r"(?<=invalid IP address: )[^\n]*|(?<=invalid date: )[^\n]*"), "<value>"),
)
_WORD_CHAR = re.compile(r"\w")


def _blank_validation_values(message: str) -> str:
    """``Value <anything> at '`` -> ``Value <value> at '`` (AWS validation messages).

    Without a regex: a lazy ``Value .*? at '`` rescans the rest of the message
    from every ``Value `` when no `` at '`` follows, and a value can repeat
    ``Value `` (a 48 KB entity id made one error take 5 s).
    """
    parts: list[str] = []
    done = search = 0
    while (found := message.find("Value ", search)) >= 0:
        start = found + len("Value ")
        if found and _WORD_CHAR.fullmatch(message[found - 1]):
            search = found + 1
            continue
        end = message.find(" at '", start)
        if end < 0:
            break  # no later "Value " has an " at '" after it either
        parts += (message[done:start], "<value>")
        done, search = end, max(end - len("Value "), found + 1)
    return "".join(parts) + message[done:]


def redact(message: str, keep: Collection[str] = ()) -> str:
    """Blank out values Cedar quotes in an error (records, strings, numbers).

    Names, entity uids and policy ids stay: they say what failed without
    saying what the data was. Where an error always shows a value (a string
    that is no decimal or IP address, a tag looked up by a computed key, an
    AWS validation message), it is blanked out whatever it looks like.

    Args:
        message: the error.
        keep: quoted texts known to be policy ids (a link id such as
            ``share-1`` does not look like a name).
    """
    for pattern, replacement in _VALUE_PLACES:
        message = pattern.sub(replacement, message)
    message = _blank_validation_values(message)
    return _QUOTED.sub(
        lambda m: m.group(0) if m.group(1) in keep or _NAME_OR_UID.fullmatch(m.group(1)) else "`<value>`",
        message,
    )


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
    """

    id: str
    text: str
    source: str
    line: int
    is_template: bool = False
    annotations: Mapping[str, str] = field(default_factory=dict)

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


@dataclass(frozen=True)
class PolicySnapshot:
    """One immutable version of a store with its pre-parsed cedarpy handles."""

    policies: tuple[Policy, ...]
    links: tuple[TemplateLink, ...]
    entities: tuple[Entity, ...]
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

    def store_id(self, positional: str) -> str:
        """Translate cedarpy's positional id (``policyN``) to the store id."""
        return self.ids_by_position.get(positional, positional)


@dataclass
class _Source:
    name: str
    text: str


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

        def load() -> PolicySnapshot:
            return _build(
                [_Source("<text>", policies)],
                schema=(schema_text, "<schema>"),
                entity_list=tuple(entities or ()),
                entities_name="<entities>",
                links=tuple(links),
                validate=validate,
                positional_names=True,
                max_bytes=max_bytes,
                max_depth=max_depth,
            )

        return cls(load())

    @classmethod
    def from_directory(
        cls,
        path: str | Path,
        *,
        validate: bool = True,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> PolicyStore:
        """Load a policy store directory.

        Reads every ``*.cedar`` file below ``path`` (static policies and
        templates), the schema (``schema.cedarschema``,
        ``schema.cedarschema.json``, or a single ``*.cedarschema`` of any name),
        ``entities.json`` and template links (``template-links.json`` or the
        Cedar CLI's ``linked``). :meth:`reload` reads the directory again.

        Raises:
            PolicyError: every problem found, each as ``file:line: message``.
        """
        root = Path(path)

        def load() -> PolicySnapshot:
            return _load_directory(root, validate=validate, max_bytes=max_bytes,
                                   max_depth=max_depth)

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
    def entities(self) -> tuple[Entity, ...]:
        """Entities loaded with the store."""
        return self._snapshot.entities

    @property
    def schema_text(self) -> str | None:
        """The schema as written (Cedar or JSON), if any."""
        return self._snapshot.schema_text

    @property
    def schema_source(self) -> str:
        """Where the schema was read: its file name (relative to the store), or ``<schema>``."""
        return self._snapshot.schema_source

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


# -- loading ------------------------------------------------------------------------


# Open without blocking: a named pipe with no writer would otherwise hang the load. The flag
# does nothing to a regular file, the only kind that is then read.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(
    os, "O_CLOEXEC", 0)


def store_entry(path: Path, name: str) -> bool:
    """Whether the directory holds an entry of this name, of any kind.

    A dangling symlink, a named pipe, a socket or a directory counts: the store
    then reads it, and reading says what is wrong with it, instead of the file
    being silently left out.

    Raises:
        PolicyError: the directory cannot be searched.
    """
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise PolicyError(f"{name}: cannot look it up ({exc.strerror})") from exc
    return True


def store_files(root: Path, suffixes: tuple[str, ...], problems: list[str],
                label: str = "") -> list[Path]:
    """Entries below ``root`` (hidden ones left out) whose names end with one of ``suffixes``.

    Entries of any kind are returned, so that reading them reports what they
    are; directories are searched (symlinked ones are not, as ``Path.rglob``
    does not). A directory that cannot be listed is a problem, never skipped.

    Args:
        root: the directory to search.
        suffixes: name endings to find, such as ``(".cedar",)``.
        problems: where a directory that cannot be listed is reported.
        label: how ``root`` is named in problems (its relative path).
    """
    found: list[Path] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as entries:
                listed = [(entry.name, _is_directory(entry)) for entry in entries]
        except OSError as exc:
            where = folder.relative_to(root).as_posix()
            name = (f"{label}/{where}" if label else where) if where != "." else (label or str(root))
            problems.append(f"{name}: cannot list the directory ({exc.strerror})")
            continue
        for entry_name, is_directory in listed:
            if entry_name.startswith("."):
                continue
            if entry_name.endswith(suffixes):
                found.append(folder / entry_name)
            elif is_directory:
                pending.append(folder / entry_name)
    return sorted(found)


def _is_directory(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False  # gone since it was listed: nothing below it to find


def schema_files(root: Path) -> list[Path]:
    """The schema candidates of a store directory; more than one is a problem for the caller.

    ``schema.cedarschema`` or ``schema.cedarschema.json`` when either is there,
    else every ``*.cedarschema`` / ``*.cedarschema.json`` entry, of any kind.

    Raises:
        PolicyError: the directory cannot be listed.
    """
    chosen = [path for path in (root / "schema.cedarschema", root / "schema.cedarschema.json")
              if store_entry(path, path.name)]
    if chosen:
        return chosen
    try:
        names = os.listdir(root)
    except OSError as exc:
        raise PolicyError(f"{root}: cannot list the directory ({exc.strerror})") from exc
    return sorted(root / name for name in names if name.endswith((".cedarschema", ".cedarschema.json")))


def read_store_bytes(path: Path, name: str, max_bytes: int) -> bytes:
    """The content of a store file, which must be a regular file (a symlink to one is fine).

    A dangling symlink, a directory, a named pipe (never waited on), a socket, a
    device, a file that cannot be opened or that vanished since it was listed:
    each is a :class:`PolicyError` naming the file. At most ``max_bytes`` are read.

    Raises:
        PolicyError: the file cannot be read as a regular file, or is over the limit.
    """
    try:
        info = os.stat(path)
        # Checked before opening too, so that no device or pipe is ever opened.
        if not stat.S_ISREG(info.st_mode):
            raise PolicyError(f"{name}: not a regular file ({_kind(info.st_mode)})")
        descriptor = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError as exc:
        dangling = os.path.islink(path)
        raise PolicyError(f"{name}: " + ("a symbolic link to a file that does not exist" if dangling
                                         else f"cannot read ({exc.strerror})")) from exc
    except OSError as exc:
        raise PolicyError(f"{name}: cannot read ({exc.strerror})") from exc
    try:
        with os.fdopen(descriptor, "rb") as handle:
            info = os.fstat(handle.fileno())  # what was opened, should the entry have been swapped
            if not stat.S_ISREG(info.st_mode):
                raise PolicyError(f"{name}: not a regular file ({_kind(info.st_mode)})")
            if info.st_size > max_bytes:
                raise PolicyError(f"{name}: {info.st_size} bytes is over the limit of {max_bytes}")
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise PolicyError(f"{name}: cannot read ({exc.strerror})") from exc
    if len(data) > max_bytes:
        raise PolicyError(f"{name}: more than {max_bytes} bytes, over the limit")
    return data


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((word for test, word in kinds if test(mode)), "not a file")


def _read_text(path: Path, name: str, max_bytes: int) -> str:
    data = read_store_bytes(path, name, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PolicyError(f"{name}:{line}: not valid UTF-8 (byte {exc.start})") from exc


def _read_json(path: Path, name: str, max_bytes: int) -> Any:
    text = _read_text(path, name, max_bytes)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyError(f"{name}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise PolicyError(f"{name}: JSON nested too deeply") from exc


def _load_directory(root: Path, *, validate: bool, max_bytes: int, max_depth: int) -> PolicySnapshot:
    if not root.is_dir():
        raise PolicyError(f"{root}: not a directory")
    problems: list[str] = []
    sources: list[_Source] = []
    for path in store_files(root, (".cedar",), problems):
        relative = path.relative_to(root).as_posix()
        try:
            sources.append(_Source(relative, _read_text(path, relative, max_bytes)))
        except PolicyError as exc:
            problems.extend(exc.problems)

    schema: tuple[str | None, str] = (None, "")
    try:
        chosen = schema_files(root)
    except PolicyError as exc:
        problems.extend(exc.problems)
        chosen = []
    if len(chosen) > 1:
        problems.append(f"{root.name}: more than one schema file: "
                        + ", ".join(p.name for p in chosen))
    elif chosen:
        try:
            schema = (_read_text(chosen[0], chosen[0].name, max_bytes), chosen[0].name)
        except PolicyError as exc:
            problems.extend(exc.problems)

    entity_list: tuple[Entity, ...] = ()
    links: tuple[TemplateLink, ...] = ()
    try:
        if store_entry(root / "entities.json", "entities.json"):
            entity_list = _entities_from_json(
                _read_json(root / "entities.json", "entities.json", max_bytes), "entities.json")
    except PolicyError as exc:
        problems.extend(exc.problems)
    for name, reader in (("template-links.json", _links_from_json), ("linked", _links_from_cli)):
        try:
            if store_entry(root / name, name):
                links += reader(_read_json(root / name, name, max_bytes), name)
        except PolicyError as exc:
            problems.extend(exc.problems)

    return _build(sources, schema=schema, entity_list=entity_list, entities_name="entities.json",
                  links=links, validate=validate, positional_names=False,
                  max_bytes=max_bytes, max_depth=max_depth, problems=problems)


def _entities_from_json(data: Any, name: str) -> tuple[Entity, ...]:
    if not isinstance(data, list):
        raise PolicyError(f"{name}: expected a JSON array of entities")
    entities = []
    for index, item in enumerate(data):
        try:
            entities.append(Entity.from_cedar(item))
        except AuthzError as exc:
            raise PolicyError(f"{name}: entity #{index}: {truncate(str(exc))}") from exc
    return tuple(entities)


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


def _build(
    sources: Sequence[_Source],
    *,
    schema: tuple[str | None, str],
    entity_list: tuple[Entity, ...],
    entities_name: str,
    links: tuple[TemplateLink, ...],
    validate: bool,
    positional_names: bool,
    max_bytes: int,
    max_depth: int,
    problems: list[str] | None = None,
) -> PolicySnapshot:
    # Problems found while reading files arrive here so that one error lists them all.
    problems = list(problems or [])
    policies: list[Policy] = []
    parsed: list[tuple[_Source, list[Statement], Any]] = []

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
            problems.extend(_locate_parse_errors(source, statements))
            continue
        count = len(handle) + len(handle.templates())
        if count != len(statements):
            problems.append(
                f"{source.name}: found {len(statements)} statements but Cedar parsed {count}; "
                "cannot name the policies reliably")
            continue
        parsed.append((source, statements, handle))

    offset = 0
    ids_by_position: dict[str, str] = {}
    for source, statements, _ in parsed:
        for statement in statements:
            if "id" in statement.annotations:
                policy_id = statement.annotations["id"]
            elif positional_names:
                policy_id = f"policy{offset + statement.index}"
            else:
                policy_id = f"{source.name}:{statement.index}"
            ids_by_position[f"policy{offset + statement.index}"] = policy_id
            policies.append(Policy(
                id=policy_id, text=statement.text.strip(), source=source.name,
                line=statement.line, is_template=statement.is_template,
                annotations=dict(statement.annotations),
            ))
        offset += len(statements)

    seen: dict[str, Policy] = {}
    for policy in policies:
        if policy.id in seen:
            problems.append(f"{policy.location}: duplicate policy id {policy.id!r} "
                            f"(first at {seen[policy.id].location})")
        else:
            seen[policy.id] = policy
    for link in links:
        if link.id in seen:
            problems.append(f"{link.source}: link {link.id!r}: id already used by a policy")

    schema_text, schema_name = schema
    schema_handle = None
    actions: tuple[EntityUID, ...] = ()
    nesting = (schema_nesting_problem(schema_text, max_depth=max_depth)
               if schema_text is not None and not schema_text.lstrip().startswith("{") else None)
    if nesting is not None:
        problems.append(f"{schema_name}:{nesting.line}: {nesting.message}")
    elif schema_text is not None:
        try:
            schema_handle = _parse_schema(schema_text)
            action_entities = json.loads(str(cedarpy.Entities.from_json_str("[]", schema_handle)))
            actions = tuple(EntityUID.from_cedar(e["uid"]) for e in action_entities)
        except ValueError as exc:
            problems.append(f"{schema_name}: {truncate(str(exc))}")

    if validate and schema_handle is not None:
        problems.extend(_validate_sources([(s, st) for s, st, _ in parsed], schema_handle))

    problems.extend(_mode_problems(policies))
    if problems:
        raise PolicyError(problems)

    policy_set = _combine([source for source, _, _ in parsed], ids_by_position, policies)
    templates = {policy.id for policy in policies if policy.is_template}
    template_ids = {policy_id: position for position, policy_id in ids_by_position.items()
                    if policy_id in templates}
    # Policies annotated @mode("shadow") leave the enforced set (see _split_shadow).
    policy_set, shadow = _split_shadow([source.text for source, _, _ in parsed], policy_set,
                                       policies, links, ids_by_position, template_ids)
    if links:
        policy_set = _link(policy_set, [link for link in links if shadow is None
                                        or link.template not in shadow.ids], template_ids)

    entity_set = _entity_handle(entity_list, schema_handle, entities_name)
    entity_index = {entity.uid: entity for entity in entity_list}
    if len(entity_index) != len(entity_list):
        raise PolicyError(f"{entities_name}: the same entity uid appears more than once")

    return PolicySnapshot(
        policies=tuple(policies),
        links=links,
        entities=entity_list,
        schema_text=schema_text,
        fingerprint=_fingerprint(policies, links, entity_list, schema_text),
        policy_set=policy_set,
        schema=schema_handle,
        entity_set=entity_set,
        ids_by_position=ids_by_position,
        actions=actions,
        entity_index=entity_index,
        shadow=shadow,
        schema_source=schema_name or "<schema>",
    )


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


def _parse_schema(text: str) -> Any:
    if text.lstrip().startswith("{"):
        return cedarpy.Schema.from_json_str(text)
    return cedarpy.Schema.from_str(text)


def _combine(sources: Sequence[_Source], ids_by_position: Mapping[str, str],
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


def _link(policy_set: Any, links: Sequence[TemplateLink], template_ids: Mapping[str, str]) -> Any:
    requests = []
    problems = []
    slots = {template["id"]: set(template["slots"]) for template in policy_set.templates()}
    for link in links:
        positional = template_ids.get(link.template)
        if positional is None:
            problems.append(f"{link.source}: link {link.id!r}: no template {link.template!r}")
            continue
        given = {slot for slot, uid in (("?principal", link.principal), ("?resource", link.resource))
                 if uid is not None}
        if given != slots.get(positional, set()):
            wanted = ", ".join(sorted(slots.get(positional, set()))) or "no slots"
            problems.append(f"{link.source}: link {link.id!r}: template {link.template!r} takes "
                            f"{wanted}; the link fills {', '.join(sorted(given)) or 'none'}")
            continue
        values: dict[str, Any] = {}
        if link.principal is not None:
            values["?principal"] = link.principal.to_cedar()
        if link.resource is not None:
            values["?resource"] = link.resource.to_cedar()
        requests.append({"template_id": positional, "new_id": link.id, "values": values})
    if problems:
        raise PolicyError(problems)
    try:
        return policy_set.with_linked_batch(requests)
    except (ValueError, KeyError) as exc:
        raise PolicyError(f"template links: {truncate(str(exc))}") from exc


def _entity_handle(entities: Sequence[Entity], schema: Any, name: str) -> Any:
    document = json.dumps([entity.cedar for entity in entities])
    try:
        return cedarpy.Entities.from_json_str(document, schema)
    except ValueError as exc:
        culprit = _first_bad_entity(entities, schema)
        where = f" (first nonconforming entity: {culprit})" if culprit else ""
        raise PolicyError(f"{name}: {truncate(str(exc))}{where}") from exc


def _first_bad_entity(entities: Sequence[Entity], schema: Any) -> str | None:
    for index, entity in enumerate(entities):
        try:
            cedarpy.Entities.from_json_str(json.dumps([entity.cedar]), schema)
        except ValueError:
            why = _why_nonconforming(entity, schema)
            return f"#{index} {truncate(str(entity.uid), 120)}" + (f": {why}" if why else "")
    return None


def _why_nonconforming(entity: Entity, schema: Any) -> str | None:
    # Entities.from_json_str says only "does not conform"; is_authorized says why, after a
    # dump of the entities it was given: keep what follows the dump, values redacted.
    try:
        result = cedarpy.is_authorized(
            {"principal": entity.uid.to_cedar(), "action": {"type": "Action", "id": "x"},
             "resource": entity.uid.to_cedar(), "context": {}},
            "", json.dumps([entity.cedar]), schema=schema)
        errors = list(result.diagnostics.errors)
    except Exception:  # only a diagnostic: never let it hide the real error
        return None
    if not errors or "]: " not in errors[0]:
        return None
    detail = errors[0][errors[0].rfind("]: ") + 3:]
    detail = detail.removeprefix("entity does not conform to the schema: ")
    return truncate(redact(detail), 300)


def _locate_parse_errors(source: _Source, statements: Sequence[Statement]) -> list[str]:
    found = []
    for statement in statements:
        try:
            cedarpy.PolicySet.from_str(statement.text)
        except ValueError as exc:
            found.append(f"{source.name}:{statement.line}: {truncate(str(exc))}")
    return found or [f"{source.name}:1: cannot parse the policies"]


def _validate_sources(parsed: Sequence[tuple[_Source, Sequence[Statement]]], schema: Any) -> list[str]:
    problems: list[str] = []
    for source, statements in parsed:
        result = cedarpy.validate_policies(source.text, schema)
        if not result.validation_passed:
            problems.extend(_locate_validation_error(source, statements, e) for e in result.errors)
    return problems


def validate_policies(policies: Sequence[Policy], schema: str | Mapping[str, Any]) -> list[str]:
    """Validate loaded policies against a schema, file by file, as loading does.

    Used to check a store against another schema (e.g. one generated for its
    tools). Each file is rebuilt from its policies at their original lines, so
    problems carry the same ``file:line:`` as at load.

    Returns:
        One ``file:line: message`` per problem; empty when all validate.

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
        handle = _parse_schema(text)
    except ValueError as exc:
        raise PolicyError(f"<schema>: {truncate(str(exc))}") from exc
    files: dict[str, str] = {}
    for policy in policies:
        sofar = files.get(policy.source, "")
        gap = policy.line - 1 - sofar.count("\n")
        files[policy.source] = sofar + ("\n" * gap if gap > 0 else " ") + policy.text
    parsed = [(_Source(name, body), scan(body)[0]) for name, body in files.items()]
    return _validate_sources(parsed, handle)


def _locate_validation_error(source: _Source, statements: Sequence[Statement], error: Any) -> str:
    match = _POSITIONAL.fullmatch(error.policy_id or "")
    if match and int(match.group(1)) < len(statements):
        statement = statements[int(match.group(1))]
        label = statement.annotations.get("id")
        named = f" [{label}]" if label else ""
        message = error.error.replace(f"policy `{error.policy_id}`", "policy")
        return f"{source.name}:{statement.line}:{named} {truncate(message)}"
    return f"{source.name}: {truncate(error.error)}"


def _fingerprint(policies: Sequence[Policy], links: Sequence[TemplateLink],
                 entities: Sequence[Entity], schema_text: str | None) -> str:
    digest = hashlib.sha256()
    for policy in sorted(policies, key=lambda p: p.id):
        digest.update(b"P\0" + policy.id.encode() + b"\0" + "\n".join(
            line.rstrip() for line in policy.text.splitlines()).encode() + b"\0")
    for link in sorted(links, key=lambda item: item.id):
        digest.update(b"L\0" + json.dumps([
            link.id, link.template,
            link.principal.to_cedar() if link.principal else None,
            link.resource.to_cedar() if link.resource else None]).encode() + b"\0")
    for entity in sorted(entities, key=lambda e: (e.uid.type, e.uid.id)):
        digest.update(b"E\0" + json.dumps(entity.cedar, sort_keys=True).encode() + b"\0")
    if schema_text is not None:
        digest.update(b"S\0" + "\n".join(line.rstrip() for line in schema_text.strip().splitlines())
                      .encode())
    return digest.hexdigest()
