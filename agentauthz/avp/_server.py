"""A local Amazon Verified Permissions endpoint for tests and development.

:class:`LocalVerifiedPermissions` speaks AVP's wire protocol (``awsJson1_0``:
``POST /`` with ``X-Amz-Target: VerifiedPermissions.<Operation>`` and a JSON
body) on 127.0.0.1, so a real boto3 ``verifiedpermissions`` client, and so
:class:`~agentauthz.VerifiedPermissionsEngine`, can be tested end to end without
AWS. Decisions are made by the embedded Cedar engine (cedarpy).

Like AVP it keeps only policy stores, policies, templates and schemas (never
entities: they travel with each request), generates its own ids, reports
determining policies by those ids, and enforces AVP's request rules (at most 30
requests per batch, all sharing a principal or a resource; identifier lengths)
with ``ValidationException``. Operations it does not implement answer
``UnknownOperationException``.

Fault injection (:meth:`LocalVerifiedPermissions.inject` with a :class:`Fault`)
makes it slow, throttled, failing or lying, to test that a client fails closed.

This module is the HTTP side and the endpoint's Python API; the operations
themselves are :class:`~agentauthz.avp._backend.Backend`'s, the faults
:mod:`agentauthz.avp._faults`'.

Example:
    >>> import agentauthz as az
    >>> store = az.PolicyStore.from_text('@id("all") permit(principal, action, resource);')
    >>> with LocalVerifiedPermissions(store) as server:
    ...     server.endpoint_url.startswith("http://127.0.0.1:")
    True
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agentauthz._errors import ConfigurationError, PolicyError
from agentauthz._extras import optional_import
from agentauthz.avp import _wire as shapes
from agentauthz.avp._backend import OPERATIONS, Backend, ValidationMode
from agentauthz.avp._faults import Fault, Faults, distorted
from agentauthz.avp._identity_sources import JwksRegistry
from agentauthz.avp._service import ServiceError, invalid
from agentauthz.policy._schema_json import schema_json_text
from agentauthz.policy._store import PolicyStore, truncate

__all__ = ["Fault", "LocalVerifiedPermissions", "serve_directory"]

_TARGET_PREFIX = "VerifiedPermissions."
_JSON_TYPE = "application/x-amz-json-1.0"
_MAX_BODY = 2_000_000


# -- HTTP --------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: LocalVerifiedPermissions


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: without TCP_NODELAY each answer waits ~40 ms
    # for the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self.close_connection = True
            status, payload = 413, b'{"__type": "ValidationException", "message": "request too large"}'
        else:
            body = self.rfile.read(length)
            status, payload = self.server.owner._answer(self.headers.get("X-Amz-Target", ""), body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", _JSON_TYPE)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-amzn-RequestId", secrets.token_hex(16))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        return


@dataclass(frozen=True)
class Call:
    """One operation the endpoint received: its name and JSON body."""

    operation: str
    body: dict[str, Any]


class LocalVerifiedPermissions:
    """An AVP-compatible endpoint on 127.0.0.1, backed by the embedded Cedar engine.

    Args:
        store: a policy store to seed (its policies, templates, links and schema;
            never its entities). ``policy_store_id`` then names it.
        host: interface to listen on.
        port: TCP port; 0 picks a free one.
        validation_mode: of the seeded store; default ``STRICT`` when it has a
            schema, ``OFF`` otherwise.
        jwks: signing keys for ``*WithToken`` calls: issuer -> JWKS (a dict or a
            callable returning one), or a callable ``issuer -> JWKS``. Identity
            sources are added with ``CreateIdentitySource`` or :meth:`add_identity_source`.

    Example:
        >>> import agentauthz as az
        >>> store = az.PolicyStore.from_text('@id("all") permit(principal, action, resource);')
        >>> with LocalVerifiedPermissions(store) as server:
        ...     sorted(server.policy_ids())
        ['all']
    """

    operations = OPERATIONS

    def __init__(self, store: PolicyStore | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 validation_mode: ValidationMode | None = None, jwks: JwksRegistry | None = None) -> None:
        self._backend = Backend()
        self._backend.set_jwks(jwks)
        self._host = host
        self._port = port
        self._http: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._faults = Faults()
        self._calls: list[Call] = []
        self._seeded: str | None = None
        self._our_ids: dict[str, dict[str, str]] = {}
        if store is not None:
            self._seeded = self.add_store(store, validation_mode=validation_mode)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> LocalVerifiedPermissions:
        """Listen and serve in a background thread (idempotent)."""
        if self._http is None:
            self._stopping.clear()
            http = _HTTPServer((self._host, self._port), _Handler)
            http.owner = self
            self._http = http
            self._thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="agentauthz-local-avp", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; delayed answers are cut short."""
        self._stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalVerifiedPermissions:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``; pass it as a boto3 client's ``endpoint_url``."""
        if self._http is None:
            raise ConfigurationError("the local Verified Permissions endpoint is not started")
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def policy_store_id(self) -> str:
        """Id of the store seeded from the constructor's ``store``."""
        if self._seeded is None:
            raise ConfigurationError("no policy store was seeded: pass a PolicyStore or call add_store")
        return self._seeded

    def client(self, **config: Any) -> Any:
        """A boto3 ``verifiedpermissions`` client for this endpoint (needs the ``aws`` extra).

        ``config`` goes to ``botocore.config.Config`` (e.g. ``read_timeout=1``).
        """
        needed_by = "a verifiedpermissions client"
        boto3 = optional_import("boto3", extra="aws", needed_by=needed_by)
        botocore_config = optional_import("botocore.config", extra="aws", needed_by=needed_by)
        return boto3.client(
            "verifiedpermissions", endpoint_url=self.endpoint_url, region_name="us-east-1",
            aws_access_key_id="local", aws_secret_access_key="local",
            config=botocore_config.Config(**config),
        )

    # -- stores --------------------------------------------------------------------------

    def add_store(self, store: PolicyStore | None = None, *, validation_mode: ValidationMode | None = None,
                  description: str | None = None) -> str:
        """Create a policy store in-process (no HTTP) and seed it from ``store``.

        Static policies and templates carry ``agentauthz:<our id>`` descriptions,
        and every policy a ``name/...`` name, as ``agentauthz push`` writes them.

        Returns:
            The new policy store id.

        Raises:
            PolicyError: the schema cannot be put in JSON form, or a policy is refused.
        """
        has_schema = store is not None and store.schema_text is not None
        mode: ValidationMode = validation_mode or ("STRICT" if has_schema else "OFF")
        created = self._backend.create_store(mode, description)
        ours: dict[str, str] = {}
        if store is None:
            self._our_ids[created.id] = ours
            return created.id
        try:
            if store.schema_text is not None:
                self._backend.set_schema(created, schema_json_text(store.schema_text))
            template_ids: dict[str, str] = {}
            # Verified Permissions has no shadow mode: a shadow policy there would be enforced.
            for policy in store.enforced_policies:
                name = shapes.policy_name(policy.id)
                description_text = shapes.policy_description(policy.id)
                if policy.is_template:
                    template = self._backend.add_template(created, policy.text, description_text, name,
                                                          validate=False)
                    template_ids[policy.id] = template.id
                    ours[policy.id] = template.id
                else:
                    ours[policy.id] = self._backend.add_static(created, policy.text, description_text,
                                                               name, validate=False).id
            for link in store.enforced_links:
                principal = _identifier(link.principal)
                resource = _identifier(link.resource)
                ours[link.id] = self._backend.add_link(created, template_ids[link.template], principal,
                                                       resource, shapes.policy_name(link.id)).id
        except ServiceError as exc:
            self._backend.stores.pop(created.id, None)
            raise PolicyError(f"cannot seed the local Verified Permissions store: {exc.message}") from exc
        self._our_ids[created.id] = ours
        return created.id

    def add_identity_source(self, identity: Any, *, policy_store_id: str | None = None) -> str:
        """Add an identity source to a store in-process (no HTTP); returns its id.

        ``identity`` is a :class:`~agentauthz.TokenIdentity` (its description and
        its JWKS are used) or ``CreateIdentitySource`` parameters
        (``configuration``, ``principalEntityType``; register the issuer's keys
        with ``jwks=`` then).

        Raises:
            ConfigurationError: the description is refused.
        """
        store = self._backend.stores.get(policy_store_id or self.policy_store_id)
        if store is None:
            raise ConfigurationError(f"no policy store {policy_store_id!r}")
        if hasattr(identity, "identity_source"):
            self._backend.register_jwks(identity.issuer, identity.jwks)
            identity = identity.identity_source()
        try:
            return self._backend.add_identity_source(
                store, identity.get("configuration"), identity.get("principalEntityType")).id
        except ServiceError as exc:
            raise ConfigurationError(f"identity source refused: {exc.message}") from exc

    def delete_store(self, policy_store_id: str) -> None:
        """Remove a policy store."""
        with self._backend.lock:
            self._backend.stores.pop(policy_store_id, None)
        self._our_ids.pop(policy_store_id, None)

    def policy_ids(self, policy_store_id: str | None = None) -> dict[str, str]:
        """Our policy/template/link ids -> the ids this endpoint generated, for a seeded store."""
        return dict(self._our_ids.get(policy_store_id or self.policy_store_id, {}))

    # -- faults and calls ----------------------------------------------------------------

    def inject(self, operation: str, fault: Fault, *, times: int | None = None) -> None:
        """Make ``operation`` (``"*"`` for every one) fail with ``fault``, ``times`` times or for good.

        Faults apply in the order injected; the first that matches a call is used.

        Example:
            >>> server = LocalVerifiedPermissions()
            >>> server.inject("IsAuthorized", Fault.throttling(), times=2)
        """
        if operation != "*" and operation not in self.operations:
            raise ConfigurationError(f"unknown operation {operation!r}")
        self._faults.add(operation, fault, times)

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self._faults.clear()

    @contextmanager
    def faults(self, operation: str, fault: Fault, *, times: int | None = None) -> Iterator[None]:
        """:meth:`inject` for the duration of a block."""
        self.inject(operation, fault, times=times)
        try:
            yield
        finally:
            self.clear_faults()

    @property
    def calls(self) -> list[Call]:
        """Every call received so far, in order."""
        return list(self._calls)

    def call_count(self, operation: str | None = None) -> int:
        """How many calls (of ``operation``) were received."""
        return sum(1 for call in self._calls if operation is None or call.operation == operation)

    def reset_calls(self) -> None:
        """Forget the calls received so far."""
        self._calls.clear()

    # -- dispatch ------------------------------------------------------------------------

    def _answer(self, target: str, raw: bytes) -> tuple[int, bytes]:
        operation = target[len(_TARGET_PREFIX):] if target.startswith(_TARGET_PREFIX) else ""
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, RecursionError):
            return _error_body(ServiceError("SerializationException", "body is not JSON"))
        if not isinstance(body, dict):
            return _error_body(ServiceError("SerializationException", "body must be a JSON object"))
        self._calls.append(Call(operation, body))
        fault = self._faults.take(operation) if operation else None
        if fault is not None and fault.kind == "delay":
            if self._stopping.wait(fault.seconds):
                return _error_body(ServiceError("InternalServerException", "endpoint stopping"))
            fault = None
        if fault is not None and fault.kind == "error":
            return _error_body(ServiceError(fault.code, f"injected {fault.code}", fault.status))
        if fault is not None and fault.kind == "raw":
            return fault.status, fault.body
        handler: Callable[[Mapping[str, Any]], dict[str, Any]] | None = (
            getattr(self._backend, operation, None) if operation in self.operations else None)
        if handler is None:
            return _error_body(ServiceError("UnknownOperationException",
                                            f"operation {operation or target!r} is not supported"))
        try:
            answer = handler(body)
        except ServiceError as exc:
            return _error_body(exc)
        except shapes.ShapeError as exc:
            return _error_body(invalid(str(exc)))
        except Exception as exc:  # a bug here must look like a server failure, never an answer
            return _error_body(ServiceError("InternalServerException", f"{type(exc).__name__}: "
                                            f"{truncate(str(exc))}"))
        if fault is not None:
            answer = distorted(answer, fault)
        return 200, json.dumps(answer).encode("utf-8")


def _identifier(uid: Any) -> dict[str, str] | None:
    return None if uid is None else {"entityType": uid.type, "entityId": uid.id}


def _error_body(error: ServiceError) -> tuple[int, bytes]:
    return error.status, json.dumps({"__type": error.code, "message": error.message,
                                     **error.extra}).encode("utf-8")



def serve_directory(path: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                    ready: Callable[[LocalVerifiedPermissions], None] | None = None) -> None:
    """Serve a policy store directory on a local AVP endpoint until interrupted.

    For ``agentauthz serve-avp policies/``: loads the directory, seeds a store,
    calls ``ready(server)`` (e.g. to print ``server.endpoint_url`` and
    ``server.policy_store_id``), then blocks until KeyboardInterrupt.

    Raises:
        PolicyError: the directory does not load.
    """
    store = PolicyStore.from_directory(path)
    with LocalVerifiedPermissions(store, host=host, port=port) as server:
        if ready is not None:
            ready(server)
        try:
            while not server._stopping.wait(3600):
                pass
        except KeyboardInterrupt:
            return
