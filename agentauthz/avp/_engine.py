"""The Amazon Verified Permissions engine: the same Engine protocol, decided by AVP through boto3.

Requests become ``IsAuthorized`` calls (one request) or ``BatchIsAuthorized``
calls (several: groups of at most 30 that share a principal or a resource, sent
concurrently); each call carries the entities its requests need. Every failure
fails closed: a timeout, a throttled or failing call, a malformed answer, a
decision other than ALLOW/DENY or a request without its own result is a denial
carrying the error (or an :class:`~agentauthz.EngineError` with ``on_error="raise"``).

Options are grouped in :mod:`~agentauthz.avp._options` (``retry=``, ``cache=``,
``batching=``); the requests as sent and the strict checks of every answer are
:mod:`~agentauthz.avp._exchange`. boto3 is imported when an engine is built;
without it the constructor raises ImportError naming ``pip install "agentauthz[aws]"``.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Unpack

from agentauthz._entities import StaticEntityProvider, entity_slice, referenced_uids
from agentauthz._errors import ConfigurationError, EngineError, IdentityError
from agentauthz._extras import optional_import
from agentauthz._model import Decision, Entity, EntityUID, Request
from agentauthz.avp import _wire as shapes
from agentauthz.avp._exchange import (
    Outcome,
    Prepared,
    Schema,
    action_in,
    batch_outcomes,
    error_code,
    error_text,
    failure_text,
    groups,
    principal_of,
    result_outcome,
    schema_from,
)
from agentauthz.avp._options import Batching, DecisionCache, EngineKeywords, Retry, engine_options
from agentauthz.policy._store import failed_policy_id, truncate

__all__ = ["VerifiedPermissionsEngine"]

OnError = Literal["deny", "raise"]
Encoding = Literal["structured", "cedar_json"]
TokenType = Literal["identity", "access"]
_TOKEN_PARAMETER = {"identity": "identityToken", "access": "accessToken"}
# The token bound by VerifiedPermissionsEngine.bind_token: (engine, token, token type).
_BOUND_TOKEN: contextvars.ContextVar[tuple[object, str, TokenType] | None] = contextvars.ContextVar(
    "agentauthz_avp_token", default=None)

NOT_SENT = "not sent to Verified Permissions: "
# Type of a bare action name the schema could not be fetched to resolve: decide denies it unsent.
_UNRESOLVED = "AgentauthzUnresolved::Action"
_STORE_ID = re.compile(r"[A-Za-z0-9/_-]{1,200}")
_ERRING = re.compile(r"\bpolicy `([A-Za-z0-9/_-]+)`")
# Do not ask AVP again for a failed schema, or for an unknown policy id, more often than this.
_RETRY_LOOKUP_SECONDS = 1.0
_LIST_PAGE = 50


def _boto() -> tuple[Any, Any]:
    return (optional_import("boto3", extra="aws", needed_by="VerifiedPermissionsEngine"),
            optional_import("botocore.config", extra="aws", needed_by="VerifiedPermissionsEngine"))


def _built_client(boto3: Any, botocore_config: Any, region_name: str | None, retry: Retry,
                  batching: Batching) -> Any:
    """A ``verifiedpermissions`` client timed and retried as ``retry`` says."""
    config = botocore_config.Config(
        connect_timeout=retry.timeout, read_timeout=retry.timeout,
        retries={"mode": "standard", "max_attempts": retry.max_attempts},
        max_pool_connections=max(10, batching.max_workers),
    )
    try:
        return boto3.client("verifiedpermissions", region_name=region_name, config=config)
    except Exception as exc:  # no region, no credentials chain, bad settings
        raise ConfigurationError(
            f"cannot build a verifiedpermissions client: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class _Token:
    """The token requests are decided with: ``*WithToken`` calls, AVP derives the principal."""

    parameter: str
    value: str
    type: TokenType

    def request(self, prepared: Prepared, principal: EntityUID) -> Prepared:
        """``prepared`` as sent with the token: without its principal, which the token names.

        The principal entity is not sent with an ID token (AVP refuses it twice).
        """
        item = {k: v for k, v in prepared.item.items() if k != "principal"}
        chosen = [e for e in prepared.slice if self.type == "access" or e.uid != principal]
        key = json.dumps(item, sort_keys=True)  # the echo of a batch result names it
        return Prepared(index=prepared.index, item=item, key=key, principal="token",
                        resource=prepared.resource, slice=chosen, slice_key=prepared.slice_key)


@dataclass
class _Batch:
    """The requests of one decision: those settled before sending, and the unique ones to send.

    ``members`` maps each unique request to the positions it answers.
    """

    decisions: list[Decision | None]
    unique: dict[tuple[str, str], Prepared] = field(default_factory=dict)
    members: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def add(self, key: tuple[str, str], prepared: Prepared, position: int) -> None:
        self.unique.setdefault(key, prepared)
        self.members.setdefault(key, []).append(position)



class VerifiedPermissionsEngine:
    """Decide requests with Amazon Verified Permissions (AVP).

    Args:
        policy_store_id: the AVP policy store.
        client: a boto3 ``verifiedpermissions`` client; built from ``region_name``
            (with ``retry``'s timeout and attempts) when None.
        region_name: region of the client built when ``client`` is None.
        on_error: ``"deny"`` turns a backend failure into a denial carrying the
            error; ``"raise"`` raises :class:`~agentauthz.EngineError` instead.
            A request AVP would refuse (an id past its limits) is denied either way.
        encoding: ``"structured"`` sends ``contextMap`` / ``entityList`` (values
            without a structured form still go as ``cedarJson``); ``"cedar_json"``
            always sends Cedar JSON text.
        retry: how long each call may take and how often it is tried
            (:class:`~agentauthz.Retry`; default ``Retry()``: 5 s, 3 attempts).
        cache: keep decisions (:class:`~agentauthz.DecisionCache`); None (the
            default) caches nothing.
        batching: how requests are grouped and sent (:class:`~agentauthz.Batching`).
        deprecated: ``timeout``, ``max_attempts``, ``deadline`` (now in ``retry``),
            ``cache_ttl``, ``cache_size`` (``cache``), ``min_batch``,
            ``max_workers`` (``batching``): still taken, with a DeprecationWarning.

    .. versionchanged:: 0.2
       ``retry=``, ``cache=`` and ``batching=`` replace the flat keywords.

    Example:
        >>> import agentauthz as az
        >>> from agentauthz.testing import LocalVerifiedPermissions
        >>> store = az.PolicyStore.from_text('@id("all") permit(principal, action, resource);')
        >>> with LocalVerifiedPermissions(store) as server:
        ...     engine = VerifiedPermissionsEngine(server.policy_store_id, client=server.client(),
        ...                                        retry=az.Retry(timeout=2.0),
        ...                                        cache=az.DecisionCache(ttl=60))
        ...     engine.decide([az.Request(principal=az.EntityUID("User", "a"), action="read",
        ...                               resource=az.EntityUID("Doc", "d"))])[0].reasons
        ('all',)
    """

    name = "avp"

    def __init__(
        self,
        policy_store_id: str,
        client: Any = None,
        *,
        region_name: str | None = None,
        on_error: OnError = "deny",
        encoding: Encoding = "structured",
        retry: Retry | None = None,
        cache: DecisionCache | None = None,
        batching: Batching | None = None,
        **deprecated: Unpack[EngineKeywords],
    ) -> None:
        if not isinstance(policy_store_id, str) or not _STORE_ID.fullmatch(policy_store_id):
            raise ConfigurationError("policy_store_id must be 1 to 200 characters of A-Z a-z 0-9 - _ /")
        if on_error not in ("deny", "raise"):
            raise ConfigurationError(f"on_error must be 'deny' or 'raise', not {on_error!r}")
        if encoding not in ("structured", "cedar_json"):
            raise ConfigurationError(f"encoding must be 'structured' or 'cedar_json', not {encoding!r}")
        self.retry, self.cache, self.batching = engine_options(retry, cache, batching, deprecated)
        boto3, botocore_config = _boto()
        if client is None:
            client = _built_client(boto3, botocore_config, region_name, self.retry, self.batching)
        self.client = client
        self.policy_store_id = policy_store_id
        self.on_error: OnError = on_error
        self.encoding: Encoding = encoding
        self.deadline = self.retry.total
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._schema: Schema | None = None
        self._policy_ids: dict[str, str] = {}
        #: Our policy id (and AVP's) -> "permit" / "forbid"; None where ids collide across effects.
        self._policy_effects: dict[str, str | None] = {}
        self._policies_listed: float | None = None
        self._identity_sources: list[dict[str, Any]] | None = None
        self._cache: OrderedDict[tuple[str, str], tuple[float, Decision]] = OrderedDict()
        self._members, self._tags = _model_members(client)

    # -- protocol ------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """``avp:<policy store id>``: AVP holds the policy version."""
        return f"avp:{self.policy_store_id}"

    def resolve_action(self, action: str | EntityUID) -> EntityUID:
        """``"read"`` -> ``NS::Action::"read"`` from the policy store's schema (GetSchema, cached).

        An action the schema declares in one namespace takes that namespace; an
        undeclared one takes the schema's only namespace, else plain ``Action``.
        Cedar text such as ``'NS::Action::"read"'`` is taken as written. When the
        schema cannot be fetched, the action is left unresolved and every
        request with it is denied (``on_error="raise"``: EngineError here).
        """
        if isinstance(action, EntityUID):
            return action
        if '::"' in action:
            return EntityUID.parse(action)
        schema = self._load_schema()
        if schema.error is not None:
            if self.on_error == "raise":
                raise EngineError(f"cannot resolve action {action!r}: {schema.error}")
            return EntityUID(_UNRESOLVED, action)
        return action_in(schema, action)

    def decide(self, requests: Sequence[Request], entities: Sequence[Entity] = ()) -> list[Decision]:
        """Decide each request in order (IsAuthorized / BatchIsAuthorized); see :class:`~agentauthz.Engine`.

        Raises:
            EngineError: with ``on_error="raise"``, when AVP gave no valid answer for some request.
        """
        bound = _BOUND_TOKEN.get()
        if bound is not None and bound[0] is self:
            return self.decide_with_token(bound[1], requests, entities, token_type=bound[2])
        return self._decided(requests, entities, None)

    async def adecide(
        self, requests: Sequence[Request], entities: Sequence[Entity] = ()
    ) -> list[Decision]:
        """Async twin of :meth:`decide` (runs it in a worker thread)."""
        return await asyncio.to_thread(self.decide, requests, entities)

    # -- tokens (identity sources) ------------------------------------------------------------

    def decide_with_token(self, token: str, requests: Sequence[Request], entities: Sequence[Entity] = (),
                          *, token_type: TokenType = "identity") -> list[Decision]:
        """Decide requests for the user of a Cognito/OIDC token (IsAuthorizedWithToken / Batch...WithToken).

        AVP verifies the token with the policy store's identity source and
        derives the principal (with its groups and, for an ID token, its
        attributes; an access token's claims go to ``context.token``). Each
        request's principal must be that principal (build them with
        :meth:`token_principal`): a request AVP answers for another principal
        is denied. The principal entity is not sent with an ID token (AVP
        refuses it twice). Requests sharing one token go ``ceil(n/30)`` per call;
        decisions are not cached. A refused token denies every request.

        Example:
            >>> # principal = engine.token_principal(id_token)
            >>> # engine.decide_with_token(id_token, [az.Request(principal=principal, ...)])

        Raises:
            EngineError: with ``on_error="raise"``, when AVP gave no valid answer for some request.
        """
        if token_type not in _TOKEN_PARAMETER:
            raise ConfigurationError(f"token_type must be 'identity' or 'access', not {token_type!r}")
        if requests and (not isinstance(token, str) or not token):
            return [Decision.deny("no token to send to Verified Permissions")] * len(requests)
        return self._decided(requests, entities, _Token(_TOKEN_PARAMETER[token_type], token, token_type))

    async def adecide_with_token(self, token: str, requests: Sequence[Request],
                                 entities: Sequence[Entity] = (), *,
                                 token_type: TokenType = "identity") -> list[Decision]:
        """Async twin of :meth:`decide_with_token`."""
        return await asyncio.to_thread(self.decide_with_token, token, requests, entities,
                                       token_type=token_type)

    def token_principal(self, token: str, token_type: TokenType = "identity") -> EntityUID:
        """The principal AVP derives from a token: its claims read with the store's identity sources.

        The token is **not** verified here (AVP verifies it on every decision,
        and :meth:`decide_with_token` denies a decision made for any other
        principal): use the result to label requests, never to decide.

        Raises:
            IdentityError: not a JWT, no identity source of the policy store for
                its issuer, or no principal claim.
            EngineError: the identity sources could not be listed.
        """
        claims = _unverified_claims(token)
        issuer = claims.get("iss")
        for source in self.identity_sources():
            configuration = source.get("configuration") or {}
            cognito = configuration.get("cognitoUserPoolConfiguration")
            oidc = configuration.get("openIdConnectConfiguration")
            if isinstance(cognito, Mapping) and cognito.get("issuer") == issuer:
                prefix: str | None = str(cognito.get("userPoolArn", "")).rpartition("/")[2]
                claim = "sub"
            elif isinstance(oidc, Mapping) and oidc.get("issuer") == issuer:
                prefix = oidc.get("entityIdPrefix")
                selection = oidc.get("tokenSelection") or {}
                chosen = next(iter(selection.values()), None) or {}
                claim = chosen.get("principalIdClaim") or "sub"
            else:
                continue
            value = claims.get(claim)
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str) or not value:
                raise IdentityError(f"the token has no usable {claim!r} claim")
            return EntityUID(str(source.get("principalEntityType")), f"{prefix}|{value}" if prefix else value)
        raise IdentityError("the policy store has no identity source for the token's issuer")

    def identity_sources(self) -> list[dict[str, Any]]:
        """The policy store's identity sources (ListIdentitySources, all pages; cached until :meth:`refresh`).

        Raises:
            EngineError: AVP could not be asked.
        """
        with self._lock:
            cached = self._identity_sources
        if cached is not None:
            return list(cached)
        try:
            sources = self._run(self._list_identity_sources)
        except Exception as exc:
            raise EngineError(failure_text("ListIdentitySources", exc)) from exc
        with self._lock:
            self._identity_sources = sources
        return list(sources)

    @contextmanager
    def bind_token(self, token: str, token_type: TokenType = "identity") -> Iterator[EntityUID]:
        """Decide with this token for the block: :meth:`decide` then sends ``*WithToken`` calls.

        Yields the principal the token names (:meth:`token_principal`, not
        verified here) for ``authz.acting_as``; see
        :func:`agentauthz.acting_with_token`, which does both.

        Raises:
            IdentityError: see :meth:`token_principal`.
        """
        if token_type not in _TOKEN_PARAMETER:
            raise ConfigurationError(f"token_type must be 'identity' or 'access', not {token_type!r}")
        principal = self.token_principal(token, token_type)
        bound = _BOUND_TOKEN.set((self, token, token_type))
        try:
            yield principal
        finally:
            _BOUND_TOKEN.reset(bound)

    def _list_identity_sources(self) -> list[dict[str, Any]]:
        items = self._listed(self.client.list_identity_sources, "identitySources")
        return [dict(item) for item in items if isinstance(item, Mapping)]

    def _listed(self, list_operation: Callable[..., Any], member: str) -> Iterator[Any]:
        """Every item of a paginated List operation on the policy store, page after page."""
        token: str | None = None
        while True:
            params: dict[str, Any] = {"policyStoreId": self.policy_store_id, "maxResults": _LIST_PAGE}
            if token:
                params["nextToken"] = token
            page = list_operation(**params)
            yield from page.get(member) or ()
            token = page.get("nextToken")
            if not token:
                return

    # -- management --------------------------------------------------------------------------

    def refresh(self) -> None:
        """Forget the cached schema, policy ids and decisions (e.g. after pushing policies)."""
        with self._lock:
            self._schema = None
            self._policy_ids = {}
            self._policy_effects = {}
            self._policies_listed = None
            self._cache.clear()
            self._identity_sources = None

    @property
    def policy_ids(self) -> dict[str, str]:
        """AVP policy id -> our policy id, as learned from ListPolicies so far."""
        return dict(self._policy_ids)

    def only_permits_failed(self, errors: Iterable[str], *, version: str | None = None) -> bool:
        """Whether every evaluation error names a permit of the policy store, as last listed.

        What ``Authorizer(policy_errors="deny")`` asks before letting an allow with
        errors stand: a failed permit can only withhold an allow. An error naming
        no policy, or a policy the listing did not show (its AVP id stays in the
        error until the next listing), or one whose effect is unknown, answers
        False. AVP does not let a policy's effect change, so an effect listed for
        an AVP id stays true. ``version`` is accepted for the store's signature;
        AVP decisions name no version.
        """
        effects = self._policy_effects
        for error in errors:
            policy_id = failed_policy_id(error)
            if policy_id is None or effects.get(policy_id) != "permit":
                return False
        return True

    def close(self) -> None:
        """Stop the worker threads; calls still running finish in the background."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> VerifiedPermissionsEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"VerifiedPermissionsEngine(policy_store_id={self.policy_store_id!r}, "
                f"on_error={self.on_error!r})")

    # -- deciding ----------------------------------------------------------------------------

    def _decided(self, requests: Sequence[Request], entities: Sequence[Entity],
                 token: _Token | None) -> list[Decision]:
        """One preparation, then the plain or the ``*WithToken`` send; every failure denies."""
        if not requests:
            return []
        batch = self._batch(requests, entities, token)
        if isinstance(batch, list):
            return batch
        sent = list({prepared.key: prepared for prepared in batch.unique.values()}.values())
        outcomes = self._send(sent, token) if sent else {}
        self._map_policy_ids(outcomes.values())
        failures: list[Outcome] = []
        for key, positions in batch.members.items():
            outcome = outcomes[batch.unique[key].key]
            if token is not None:
                outcome = _answered_for(outcome, requests[positions[0]].principal)
            if outcome.decision is None:
                failures.append(outcome)
                decision = Decision.deny(outcome.failure or "no answer from Verified Permissions")
            else:
                decision = self._translate(outcome)
                if token is None:
                    self._remember(key, decision)
            for position in positions:
                batch.decisions[position] = decision
        if failures and self.on_error == "raise":
            first = failures[0]
            raise EngineError(f"{len(failures)} request(s) got no valid answer from Verified "
                              f"Permissions; first: {first.failure}") from first.cause
        return [d if d is not None else Decision.deny("no decision") for d in batch.decisions]

    def _batch(self, requests: Sequence[Request], entities: Sequence[Entity],
               token: _Token | None) -> _Batch | list[Decision]:
        """Prepare every request: settled here (refused unsent, cached), or one of the unique ones to send."""
        try:
            index = _entity_index(entities)
        except ValueError as exc:
            return [Decision.deny(f"entities rejected: {exc}")] * len(requests)
        provider = StaticEntityProvider(index.values())
        slices: dict[tuple[EntityUID, ...], tuple[list[Entity], str, str | None]] = {}
        batch = _Batch([None] * len(requests))
        for position, request in enumerate(requests):
            prepared = self._prepare(position, request, provider, slices)
            if isinstance(prepared, Decision):
                batch.decisions[position] = prepared
            elif token is not None:
                sent = token.request(prepared, request.principal)
                # No cache (a token is checked on every call); requests naming different principals
                # share a call but never an answer: each is checked against its own principal.
                batch.add((sent.key, str(request.principal)), sent, position)
            elif (cached := self._cached((prepared.key, prepared.slice_key))) is not None:
                batch.decisions[position] = cached
            else:
                batch.add((prepared.key, prepared.slice_key), prepared, position)
        return batch

    # -- preparing ---------------------------------------------------------------------------

    def _prepare(
        self,
        position: int,
        request: Request,
        provider: StaticEntityProvider,
        slices: dict[tuple[EntityUID, ...], tuple[list[Entity], str, str | None]],
    ) -> Prepared | Decision:
        action = request.action
        if isinstance(action, str):
            action = self.resolve_action(action)
        if action.type == _UNRESOLVED:
            error = self._schema.error if self._schema is not None else "schema unavailable"
            return Decision.deny(f"action {truncate(action.id, 80)!r} could not be resolved with the "
                                 f"policy store schema: {error}")
        try:
            principal = shapes.entity_identifier(request.principal.to_cedar())
            resource = shapes.entity_identifier(request.resource.to_cedar())
            problem = shapes.uid_problem(action.type, action.id, action=True)
            if problem:
                raise shapes.ShapeError(problem)
            item: dict[str, Any] = {"principal": principal,
                                    "action": {"actionType": action.type, "actionId": action.id},
                                    "resource": resource}
            if request.cedar_context:
                item["context"] = self._context(request.cedar_context)
        except shapes.ShapeError as exc:
            return Decision.deny(NOT_SENT + str(exc))
        roots = (request.principal, request.resource, *referenced_uids(request.context))
        if roots not in slices:
            slices[roots] = _entity_slice(request, roots, provider)
        chosen, slice_key, problem = slices[roots]
        if problem:
            return Decision.deny(NOT_SENT + problem)
        return Prepared(index=position, item=item, key=json.dumps(item, sort_keys=True),
                        principal=json.dumps(principal, sort_keys=True),
                        resource=json.dumps(resource, sort_keys=True), slice=chosen,
                        slice_key=slice_key)

    def _context(self, context: dict[str, Any]) -> dict[str, Any]:
        problem = shapes.reference_problem(context)
        if problem:
            raise shapes.ShapeError(problem)
        if self.encoding == "structured":
            try:
                return {"contextMap": {key: shapes.attribute_value(value, self._members, 1)
                                       for key, value in context.items()}}
            except shapes.Unrepresentable:
                pass
        return {"cedarJson": json.dumps(context, ensure_ascii=False)}

    def _entities(self, chosen: Sequence[Entity]) -> dict[str, Any] | None:
        if not chosen:
            return None
        if self.encoding == "structured":
            try:
                return {"entityList": [shapes.entity_item(e.cedar, self._members, self._tags)
                                       for e in chosen]}
            except shapes.Unrepresentable:
                pass
        return {"cedarJson": json.dumps([e.cedar for e in chosen], ensure_ascii=False)}

    # -- sending -----------------------------------------------------------------------------

    def _send(self, prepared: list[Prepared], token: _Token | None = None) -> dict[str, Outcome]:
        calls: list[tuple[list[Prepared], dict[str, Any]]] = []
        outcomes: dict[str, Outcome] = {}
        for group in groups(prepared):
            if len(group) < self.batching.min_batch:
                for member in group:
                    self._plan([member], calls, outcomes, token)
            else:
                self._plan(group, calls, outcomes, token)
        pool = self._executor()
        futures: list[tuple[list[Prepared], Future[dict[str, Outcome]]]] = [
            (group, pool.submit(self._call, group, params, token)) for group, params in calls]
        done, _ = wait_futures([future for _, future in futures], timeout=self.deadline)
        for group, future in futures:
            if future in done:
                outcomes.update(future.result())
            else:
                future.cancel()
                for member in group:
                    outcomes[member.key] = Outcome(
                        failure=f"Verified Permissions did not answer within {self.deadline:g} s",
                        cause=TimeoutError("deadline"))
        for member in prepared:
            outcomes.setdefault(member.key, Outcome(failure="no result from Verified Permissions"))
        return outcomes

    def _plan(self, group: list[Prepared], calls: list[tuple[list[Prepared], dict[str, Any]]],
              outcomes: dict[str, Outcome], token: _Token | None = None) -> None:
        params = self._params(group, token)
        if len(json.dumps(params)) <= shapes.MAX_REQUEST_BYTES:
            calls.append((group, params))
        elif len(group) > 1:
            half = len(group) // 2
            self._plan(group[:half], calls, outcomes, token)
            self._plan(group[half:], calls, outcomes, token)
        else:
            outcomes[group[0].key] = Outcome(decision=Decision.deny(
                NOT_SENT + "the request with its entities is over AVP's 1 MB request quota"))

    def _params(self, group: list[Prepared], token: _Token | None = None) -> dict[str, Any]:
        seen: dict[EntityUID, Entity] = {}
        for member in group:
            for entity in member.slice:
                seen.setdefault(entity.uid, entity)
        params: dict[str, Any] = {"policyStoreId": self.policy_store_id}
        if token is not None:
            params[token.parameter] = token.value
        if len(group) == 1:
            params.update(group[0].item)
        else:
            params["requests"] = [member.item for member in group]
        entities = self._entities(sorted(seen.values(), key=lambda e: (e.uid.type, e.uid.id)))
        if entities is not None:
            params["entities"] = entities
        return params

    def _call(self, group: list[Prepared], params: dict[str, Any],
              token: _Token | None = None) -> dict[str, Outcome]:
        operation = ("IsAuthorized" if len(group) == 1 else "BatchIsAuthorized") + (
            "WithToken" if token is not None else "")
        try:
            if len(group) == 1:
                single = (self.client.is_authorized_with_token if token is not None
                          else self.client.is_authorized)
                return {group[0].key: result_outcome(single(**params))}
            batch = (self.client.batch_is_authorized_with_token if token is not None
                     else self.client.batch_is_authorized)
            answer = batch(**params)
        except Exception as exc:  # every failure of the call denies its requests
            # (a refused token would be refused request by request too: no retry one by one then)
            if len(group) > 1 and token is None and error_code(exc) == "ValidationException":
                # One refused request must not take the batch down: ask for each alone.
                outcomes: dict[str, Outcome] = {}
                for member in group:
                    outcomes.update(self._call([member], self._params([member])))
                return outcomes
            failure = failure_text(operation, exc)
            return {member.key: Outcome(failure=failure, cause=exc) for member in group}
        outcomes = batch_outcomes(group, answer)
        if token is not None:
            principal = answer.get("principal") if isinstance(answer, Mapping) else None
            for outcome in outcomes.values():
                outcome.principal = principal
        return outcomes

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.batching.max_workers,
                                                thread_name_prefix="agentauthz-avp")
            return self._pool

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one AVP call within the deadline."""
        future = self._executor().submit(fn, *args, **kwargs)
        done, _ = wait_futures([future], timeout=self.deadline)
        if not done:
            future.cancel()
            raise TimeoutError(f"Verified Permissions did not answer within {self.deadline:g} s")
        return future.result()

    # -- answers -----------------------------------------------------------------------------

    def _translate(self, outcome: Outcome) -> Decision:
        assert outcome.decision is not None
        if not outcome.avp_reasons and not outcome.raw_errors:
            return outcome.decision
        ids = self._policy_ids
        reasons = tuple(sorted(ids.get(reason, reason) for reason in outcome.avp_reasons))
        errors = tuple(error_text(ids, error) for error in outcome.raw_errors)
        return outcome.decision.replace(reasons=reasons, errors=errors)

    def _map_policy_ids(self, outcomes: Any) -> None:
        wanted = {reason for outcome in outcomes for reason in outcome.avp_reasons}
        for outcome in outcomes:
            for error in outcome.raw_errors:
                wanted.update(_ERRING.findall(error))
        if not wanted or wanted <= set(self._policy_ids):
            return
        listed = self._policies_listed
        if listed is not None and time.monotonic() - listed < _RETRY_LOOKUP_SECONDS:
            return
        try:
            listed = self._run(self._list_policies)
        except Exception:  # the decisions stand; their reasons keep AVP's ids
            listed = None
        with self._lock:
            self._policies_listed = time.monotonic()
            if listed is not None:
                self._policy_ids, self._policy_effects = listed

    def _list_policies(self) -> tuple[dict[str, str], dict[str, str | None]]:
        """AVP policy id -> our id, and each id (ours and AVP's) -> its effect, from ListPolicies."""
        ids: dict[str, str] = {}
        effects: dict[str, str | None] = {}
        for item in self._listed(self.client.list_policies, "policies"):
            if not isinstance(item, Mapping) or not isinstance(item.get("policyId"), str):
                continue
            ours = shapes.our_policy_id(item)
            ids[item["policyId"]] = ours
            effect = item.get("effect")
            known = effect.lower() if effect in ("Permit", "Forbid") else None
            for name in (item["policyId"], ours):
                effects[name] = known if effects.get(name, known) == known else None
        return ids, effects

    def _load_schema(self) -> Schema:
        schema = self._schema
        if schema is not None and (schema.error is None
                                   or time.monotonic() - schema.fetched < _RETRY_LOOKUP_SECONDS):
            return schema
        try:
            answer = self._run(self.client.get_schema, policyStoreId=self.policy_store_id)
            schema = schema_from(answer)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                schema = Schema()
            else:
                schema = Schema(error=failure_text("GetSchema", exc))
        with self._lock:
            self._schema = schema
        return schema

    # -- cache -------------------------------------------------------------------------------

    def _cached(self, key: tuple[str, str]) -> Decision | None:
        if self.cache is None:
            return None
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            return entry[1]

    def _remember(self, key: tuple[str, str], decision: Decision) -> None:
        if self.cache is None:
            return
        with self._lock:
            self._cache[key] = (time.monotonic() + self.cache.ttl, decision)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache.size:
                self._cache.popitem(last=False)


# -- helpers ---------------------------------------------------------------------------------


def _model_members(client: Any) -> tuple[frozenset[str] | None, bool]:
    """AttributeValue members and EntityItem tags in the client's service model."""
    try:
        model = client.meta.service_model
        members = frozenset(model.shape_for("AttributeValue").members)
        tags = "tags" in model.shape_for("EntityItem").members
    except Exception:  # a stand-in client without a model: assume the current API
        return None, True
    return members, tags


def _entity_index(entities: Sequence[Entity]) -> dict[EntityUID, Entity]:
    index: dict[EntityUID, Entity] = {}
    for entity in entities:
        if shapes.is_action_type(entity.uid.type):
            continue  # AVP takes actions from the schema, never from the request
        earlier = index.get(entity.uid)
        if earlier is not None and earlier.cedar != entity.cedar:
            raise ValueError(f"two different entities given for {truncate(str(entity.uid), 120)}")
        index[entity.uid] = entity
    return index




def _unverified_claims(token: str) -> dict[str, Any]:
    """A JWT's payload, not verified (to find its identity source and label its principal)."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise IdentityError("the token is not a JWT (header.payload.signature)")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):
        raise IdentityError("the token's payload does not parse") from None
    if not isinstance(payload, dict):
        raise IdentityError("the token's payload is not a JSON object")
    return payload


def _entity_slice(request: Request, roots: tuple[EntityUID, ...],
                  provider: StaticEntityProvider) -> tuple[list[Entity], str, str | None]:
    """The entities a request needs, their digest, and why AVP would refuse them (None: it would not)."""
    chosen = sorted(entity_slice(provider, list(roots)), key=lambda e: (e.uid.type, e.uid.id))
    problem = next((f"entity {truncate(str(e.uid), 120)}: {p}" for e in chosen
                    if (p := shapes.entity_problems(e.cedar))), None)
    if problem is None:
        by_uid = {(e.uid.type, e.uid.id): e.cedar for e in chosen}
        problem = (shapes.hierarchy_problem(request.principal.to_cedar(), by_uid)
                   or shapes.hierarchy_problem(request.resource.to_cedar(), by_uid))
    digest = hashlib.sha256(json.dumps([e.cedar for e in chosen], sort_keys=True).encode())
    return chosen, digest.hexdigest(), problem


def _answered_for(outcome: Outcome, expected: EntityUID) -> Outcome:
    """A token decision counts only for the request's principal: one AVP made for another is a failure."""
    got = principal_of(outcome.principal)
    if outcome.decision is None or got == expected:
        return outcome
    shown = truncate(str(got), 120) if got is not None else "no principal"
    return Outcome(failure=f"Verified Permissions mapped the token to {shown}, not to "
                           f"the request's principal {truncate(str(expected), 120)}")
