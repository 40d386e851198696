"""Edge evaluation: Verified Permissions policies copied into the process and decided embedded.

:class:`SyncedEngine` reads a policy store with pull's reader
(:func:`~agentauthz.avp._sync.read_store`: schema, templates, static policies,
template links), loads it as a :class:`~agentauthz.PolicyStore` and decides with
a :class:`~agentauthz.LocalEngine` on it: no service call on the decision path.

A background thread checks the store every ``refresh_interval`` seconds. A
check lists it (GetSchema, ListPolicyTemplates, ListPolicies: every item
carries its ``lastUpdatedDate``); when the listing is the one the copy was read
from, the check costs those calls only. Otherwise the changed statements are
read, a new copy is built beside the old one, and one reference is swapped:
a decision sees the old copy or the new one, never a mix. A copy that cannot
be built (a statement Cedar refuses, two items with one id), that would not
hold exactly the items listed, or that holds a ``@mode("shadow")`` policy
(AVP enforces it; the copy would not) leaves the old one in place. An answer
missing what it must hold is a failed check, never an empty store
(:func:`~agentauthz.avp._sync.list_store`). Determining policies are named
as the remote engine names them, also for a statement with an ``@id`` of its own.

A copy no check has confirmed for ``max_age`` seconds is stale: every decision
is denied, with an error saying so, until a check succeeds.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import cedarpy

from agentauthz._errors import ConfigurationError, EngineError, PolicyError
from agentauthz._model import Decision, Entity, EntityUID, Request
from agentauthz.avp._engine import _STORE_ID, _boto, _built_client
from agentauthz.avp._exchange import Schema, action_in, schema_from
from agentauthz.avp._options import Batching, Retry
from agentauthz.avp._sync import PulledStore, list_store, read_store
from agentauthz.engines.local import LocalEngine
from agentauthz.policy._store import PolicyStore, TemplateLink, redact, truncate
from agentauthz.policy._text import DEFAULT_MAX_BYTES

__all__ = ["SyncedEngine"]

_log = logging.getLogger("agentauthz")
# How long close() waits for a check in flight (the thread is a daemon: it never holds up exit).
_JOIN_SECONDS = 2.0


@dataclass(frozen=True)
class _Copy:
    """One copy of the policy store, and when a check last confirmed it (``time.monotonic()``)."""

    pulled: PulledStore
    engine: LocalEngine
    schema: Schema
    confirmed: float


class SyncedEngine:
    """Decide with an embedded copy of a Verified Permissions policy store, refreshed in the background.

    Decisions are the remote engine's (:class:`~agentauthz.VerifiedPermissionsEngine`)
    without a call to Verified Permissions: the copy is decided by cedarpy in
    the process. The first copy is read when the engine is built.

    Args:
        policy_store_id: the AVP policy store.
        client: a boto3 ``verifiedpermissions`` client; built from ``region_name``
            (with ``retry``'s timeout and attempts) when None.
        region_name: region of the client built when ``client`` is None.
        retry: timeout and attempts of the client built here (:class:`~agentauthz.Retry`).
        refresh_interval: seconds between two checks of the store; None checks
            only when :meth:`refresh` is called.
        max_age: seconds a copy stays usable after the last check that confirmed
            it; past that, every decision is denied until a check succeeds.
            Longer than ``refresh_interval``, so a failed check or two are survived.
        slicing: evaluate each request against the policies that can match it
            (see :class:`~agentauthz.LocalEngine`).

    Raises:
        ConfigurationError: a bad store id or timing, or no client can be built.
        EngineError: the first copy cannot be read.
        PolicyError: the first copy cannot be loaded.

    Example:
        >>> import agentauthz as az
        >>> from agentauthz.testing import LocalVerifiedPermissions
        >>> store = az.PolicyStore.from_text('@id("all") permit(principal, action, resource);')
        >>> with LocalVerifiedPermissions(store) as server:
        ...     with az.SyncedEngine(server.policy_store_id, client=server.client(),
        ...                          refresh_interval=30, max_age=300) as engine:
        ...         engine.decide([az.Request(principal=az.EntityUID("User", "a"), action="read",
        ...                                   resource=az.EntityUID("Doc", "d"))])[0].reasons
        ('all',)
    """

    name = "avp-synced"

    def __init__(
        self,
        policy_store_id: str,
        client: Any = None,
        *,
        region_name: str | None = None,
        retry: Retry | None = None,
        refresh_interval: float | None = 30.0,
        max_age: float = 300.0,
        slicing: bool = True,
    ) -> None:
        if not isinstance(policy_store_id, str) or not _STORE_ID.fullmatch(policy_store_id):
            raise ConfigurationError("policy_store_id must be 1 to 200 characters of A-Z a-z 0-9 - _ /")
        if not max_age > 0:
            raise ConfigurationError(f"max_age must be positive, not {max_age!r}")
        if refresh_interval is not None and not 0 < refresh_interval < max_age:
            raise ConfigurationError(
                f"refresh_interval must be positive and shorter than max_age ({max_age:g} s), "
                f"not {refresh_interval!r}")
        if client is None:
            boto3, botocore_config = _boto()
            client = _built_client(boto3, botocore_config, region_name, retry or Retry(), Batching())
        self.client = client
        self.policy_store_id = policy_store_id
        self.refresh_interval = refresh_interval
        self.max_age = max_age
        self.slicing = slicing
        self._refresh_lock = threading.Lock()
        self._last_error: str | None = None
        started = time.monotonic()
        self._current = self._copy(read_store(client, policy_store_id), started)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if refresh_interval is not None:
            self._thread = threading.Thread(target=self._refresh_forever, daemon=True,
                                            name=f"agentauthz-sync-{policy_store_id}")
            self._thread.start()

    # -- protocol ------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the copy in use (the content of its policies, links and schema)."""
        return self._current.engine.fingerprint

    def resolve_action(self, action: str | EntityUID) -> EntityUID:
        """``"read"`` -> the schema's action uid, resolved as the remote engine resolves it.

        An action the schema declares in one namespace takes that namespace; an
        undeclared one takes the schema's only namespace, else plain ``Action``.
        Cedar text such as ``'NS::Action::"read"'`` is taken as written.
        """
        if isinstance(action, EntityUID):
            return action
        if '::"' in action:
            return EntityUID.parse(action)
        return action_in(self._current.schema, action)

    def decide(self, requests: Sequence[Request], entities: Sequence[Entity] = ()) -> list[Decision]:
        """Decide each request on the copy; every request is denied when the copy is stale."""
        current = self._current
        stale = self._stale(current)
        if stale is not None:
            return [Decision.deny(stale)] * len(requests)
        return current.engine.decide(requests, entities)

    async def adecide(
        self, requests: Sequence[Request], entities: Sequence[Entity] = ()
    ) -> list[Decision]:
        """Async twin of :meth:`decide`."""
        current = self._current
        stale = self._stale(current)
        if stale is not None:
            return [Decision.deny(stale)] * len(requests)
        return await current.engine.adecide(requests, entities)

    def may_allow(self, principal: EntityUID, action: EntityUID, resource: EntityUID | None,
                  entities: Sequence[Entity] = ()) -> bool:
        """Whether some call could be allowed (:meth:`LocalEngine.may_allow`); False when stale."""
        current = self._current
        if self._stale(current) is not None:
            return False
        return current.engine.may_allow(principal, action, resource, entities)

    # -- the copy ------------------------------------------------------------------------

    @property
    def store(self) -> PolicyStore:
        """The copy in use, as a policy store (no entities: they travel with each request)."""
        return self._current.engine.store

    @property
    def age(self) -> float:
        """Seconds since a check last confirmed the copy (or read it)."""
        return time.monotonic() - self._current.confirmed

    @property
    def last_error(self) -> str | None:
        """Why the last background check failed; None once one succeeds."""
        return self._last_error

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the reader noted about the copy in use (statements whose ``@id`` differs from AVP's name)."""
        return self._current.pulled.warnings

    def refresh(self) -> bool:
        """Check the store now and, when it changed, read and swap in a new copy.

        Returns:
            True when a new copy is in use.

        Raises:
            EngineError: the store could not be listed or read (the copy in use stays).
            PolicyError: the new copy cannot be loaded (the copy in use stays).
        """
        with self._refresh_lock:
            started = time.monotonic()
            listing = list_store(self.client, self.policy_store_id)
            current = self._current
            changed = listing.version != current.pulled.listing.version
            if changed:
                pulled = read_store(self.client, self.policy_store_id, listing, current.pulled)
                self._current = self._copy(pulled, started)
            else:
                self._current = replace(current, confirmed=started)
            self._last_error = None
            return changed

    def close(self) -> None:
        """Stop the background checks (the copy stays usable until it is ``max_age`` old)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_SECONDS)

    def __enter__(self) -> SyncedEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"SyncedEngine(policy_store_id={self.policy_store_id!r}, "
                f"refresh_interval={self.refresh_interval!r}, max_age={self.max_age!r})")

    # -- internals -----------------------------------------------------------------------

    def _stale(self, current: _Copy) -> str | None:
        age = time.monotonic() - current.confirmed
        if age <= self.max_age:
            return None
        why = (f"the copy of Verified Permissions policy store {self.policy_store_id} was last confirmed "
               f"{age:.0f} s ago (max_age {self.max_age:g} s): every decision is denied until a refresh "
               "succeeds")
        last = self._last_error
        return truncate(f"{why}; last refresh: {last}" if last else why)

    def _copy(self, pulled: PulledStore, confirmed: float) -> _Copy:
        """Load a read of the store; refuse one that would leave out a policy."""
        if pulled.remote.duplicates:
            raise EngineError(
                f"Verified Permissions policy store {self.policy_store_id} holds several items with the "
                f"id {pulled.remote.duplicates[0]!r}: a copy keeping one of them would decide differently")
        text = "\n\n".join((*pulled.templates, *_under_reported_ids(pulled)))
        # Each statement passed AVP's own size limits; together they are no single file to bound.
        store = PolicyStore.from_text(
            text, schema=pulled.schema, links=[_link(entry) for entry in pulled.links], validate=False,
            max_bytes=max(DEFAULT_MAX_BYTES, len(text.encode("utf-8")) + 1))
        _check_complete(store, pulled, self.policy_store_id)
        known = set(self._current.pulled.warnings) if hasattr(self, "_current") else set()
        # Each once, not every refresh; a statement's other @id is no news: the copy reports AVP's id.
        renamed = tuple(f"{ours}: the statement's @id is " for ours in pulled.renamed.values())
        for warning in (w for w in pulled.warnings if w not in known and not w.startswith(renamed)):
            _log.warning("agentauthz: Verified Permissions policy store %s: %s", self.policy_store_id,
                         warning)
        schema = schema_from({"schema": pulled.schema}) if pulled.schema is not None else Schema()
        return _Copy(pulled, LocalEngine(store, slicing=self.slicing), schema, confirmed)

    def _refresh_forever(self) -> None:
        interval = self.refresh_interval
        assert interval is not None
        while not self._stop.wait(interval):
            try:
                self.refresh()
            except Exception as exc:  # the copy in use stays; it goes stale after max_age
                error = truncate(redact(f"{type(exc).__name__}: {exc}"))
                if error != self._last_error:  # once per failure, not once per check
                    _log.warning("agentauthz: refreshing the copy of Verified Permissions policy store %s "
                                 "failed: %s", self.policy_store_id, error)
                self._last_error = error


def _under_reported_ids(pulled: PulledStore) -> list[str]:
    """The static policies, each under the id Verified Permissions' decisions report.

    A statement whose ``@id`` differs from that id (a policy created in AVP
    with its own ``@id`` and no agentauthz name) gets it replaced, through
    Cedar's JSON form: the copy's determining policies are the remote engine's.

    Raises:
        PolicyError: such a statement cannot be converted.
    """
    if not pulled.renamed:
        return list(pulled.policies)
    texts = []
    for text in pulled.policies:
        try:
            est = json.loads(cedarpy.policies_to_json_str(text))
            bodies = list(est.get("staticPolicies", {}).values())
            annotations = bodies[0].get("annotations") or {} if len(bodies) == 1 else {}
            reported = pulled.renamed.get(annotations.get("id", ""))
            if reported is not None:
                annotations["id"] = reported
                text = cedarpy.policies_from_json_str(json.dumps(est))
        except ValueError as exc:
            raise PolicyError(f"a statement of the policy store cannot be renamed: {truncate(str(exc))}"
                              ) from exc
        texts.append(text)
    return texts


def _check_complete(store: PolicyStore, pulled: PulledStore, policy_store_id: str) -> None:
    """Refuse a copy that would not decide as the policy store does.

    Each statement must load as exactly one policy or template (a missing or
    doubled one changes decisions: a lost forbid is an allow), every link must
    load, and no policy may be ``@mode("shadow")``: Verified Permissions
    enforces every policy it holds, the copy would not.

    Raises:
        EngineError: the copy differs from the store.
    """
    where = f"the copy of Verified Permissions policy store {policy_store_id}"
    held = (len(pulled.templates) + len(pulled.policies), len(pulled.links))
    loaded = (len(store.policies), len(store.links))
    if loaded != held:
        raise EngineError(f"{where} loads {loaded[0]} policies and templates and {loaded[1]} links, the "
                          f"store holds {held[0]} and {held[1]}: refused")
    shadow = store.snapshot.shadow
    if shadow is not None:
        raise EngineError(f"{where} holds @mode(\"shadow\") policies ({', '.join(sorted(shadow.ids)[:3])}), "
                          "which Verified Permissions enforces: refused")


def _link(entry: Mapping[str, Any]) -> TemplateLink:
    """A template link of the copy from its ``template-links.json`` entry."""
    def slot(name: str) -> EntityUID | None:
        uid = entry.get(name)
        if uid is None:
            return None
        if not isinstance(uid.get("type"), str) or not isinstance(uid.get("id"), str):
            raise PolicyError(f"template link {entry.get('id')!r}: malformed {name}")
        return EntityUID(uid["type"], uid["id"])

    return TemplateLink(id=str(entry["id"]), template=str(entry["template"]), principal=slot("principal"),
                        resource=slot("resource"))
