"""agentauthz: Cedar-policy authorization for what AI agents do.

Every tool call and knowledge-base lookup an agent makes is decided by Cedar
policies for the end user it acts for, embedded (cedarpy) or on Amazon
Verified Permissions.

``import agentauthz`` loads the core only (values, errors, audit, the
Authorizer); the wings (the policy store and cedarpy, the embedded engine,
sessions, tools and schema generation, retrieval and the pre-filter, Verified
Permissions, tokens) are imported when one of their names is first used.

Example:
    >>> import agentauthz as az
    >>> authz = az.Authorizer.from_text('@id("read") permit(principal, action == Action::"read", resource);')
    >>> with authz.acting_as(az.EntityUID("User", "alice")):
    ...     authz.authorize(action="read", resource=az.EntityUID("Doc", "d1")).allowed
    True
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from agentauthz._audit import AuditEvent, AuditSink, LoggingSink, MemorySink
from agentauthz._authorizer import Authorizer
from agentauthz._entities import EntityProvider, StaticEntityProvider
from agentauthz._errors import (
    AccessDenied,
    ApprovalRequired,
    AuthzError,
    ConfigurationError,
    EngineError,
    GuardrailUnavailable,
    IdentityError,
    InvalidArguments,
    InvalidValueError,
    PolicyError,
)
from agentauthz._identity import Agent, Identity
from agentauthz._model import (
    Decision,
    Entity,
    EntityUID,
    ExtensionValue,
    Request,
    decimal,
    ipaddr,
)
from agentauthz.engines.base import Engine

if _typing.TYPE_CHECKING:
    from agentauthz.avp._engine import VerifiedPermissionsEngine
    from agentauthz.avp._options import Batching, DecisionCache, Retry
    from agentauthz.avp._synced import SyncedEngine
    from agentauthz.avp._tokens import TokenIdentity, VerifiedToken, acting_with_token
    from agentauthz.engines.local import LocalEngine
    from agentauthz.guardrails._detector import Detector, Finding
    from agentauthz.guardrails._guardrail import Guardrail
    from agentauthz.guardrails._local import LocalDetector
    from agentauthz.policy._store import Policy, PolicyStore, TemplateLink
    from agentauthz.retrieval._filter import FilterResult
    from agentauthz.retrieval._prefilter import Prefilter, compile_prefilter
    from agentauthz.session._approvals import ApprovalConfig, ApprovalRequest
    from agentauthz.session._provenance import Provenance
    from agentauthz.session._session import Session, SessionConfig, ToolCall
    from agentauthz.session._stores import MemorySessionStore, SessionStore, SQLiteSessionStore
    from agentauthz.tools._injected import Injected, bind_injected
    from agentauthz.tools._schema import generate_schema, mcp_input_type, validate_policies_for_tools
    from agentauthz.tools._settings import ToolSettings
    from agentauthz.tools._spec import OnDeny, ToolSpec

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "Agent",
    "ApprovalConfig",
    "ApprovalRequest",
    "ApprovalRequired",
    "AuditEvent",
    "AuditSink",
    "Authorizer",
    "AuthzError",
    "Batching",
    "ConfigurationError",
    "Decision",
    "DecisionCache",
    "Detector",
    "Engine",
    "EngineError",
    "Entity",
    "EntityProvider",
    "EntityUID",
    "ExtensionValue",
    "FilterResult",
    "Finding",
    "Guardrail",
    "GuardrailUnavailable",
    "Identity",
    "IdentityError",
    "Injected",
    "InvalidArguments",
    "InvalidValueError",
    "LocalDetector",
    "LocalEngine",
    "LoggingSink",
    "MemorySessionStore",
    "MemorySink",
    "OnDeny",
    "Policy",
    "PolicyError",
    "PolicyStore",
    "Prefilter",
    "Provenance",
    "Request",
    "Retry",
    "SQLiteSessionStore",
    "Session",
    "SessionConfig",
    "SessionStore",
    "StaticEntityProvider",
    "SyncedEngine",
    "TemplateLink",
    "TokenIdentity",
    "ToolCall",
    "ToolSettings",
    "ToolSpec",
    "VerifiedPermissionsEngine",
    "VerifiedToken",
    "acting_with_token",
    "bind_injected",
    "compile_prefilter",
    "decimal",
    "generate_schema",
    "ipaddr",
    "mcp_input_type",
    "validate_policies_for_tools",
]

#: Names exported on first use, with the module that defines each.
_LAZY = {
    "ApprovalConfig": "agentauthz.session._approvals",
    "ApprovalRequest": "agentauthz.session._approvals",
    "Batching": "agentauthz.avp._options",
    "DecisionCache": "agentauthz.avp._options",
    "Detector": "agentauthz.guardrails._detector",
    "FilterResult": "agentauthz.retrieval._filter",
    "Finding": "agentauthz.guardrails._detector",
    "Guardrail": "agentauthz.guardrails._guardrail",
    "LocalDetector": "agentauthz.guardrails._local",
    "Injected": "agentauthz.tools._injected",
    "LocalEngine": "agentauthz.engines.local",
    "MemorySessionStore": "agentauthz.session._stores",
    "OnDeny": "agentauthz.tools._spec",
    "Policy": "agentauthz.policy._store",
    "PolicyStore": "agentauthz.policy._store",
    "Prefilter": "agentauthz.retrieval._prefilter",
    "Provenance": "agentauthz.session._provenance",
    "Retry": "agentauthz.avp._options",
    "SQLiteSessionStore": "agentauthz.session._stores",
    "Session": "agentauthz.session._session",
    "SessionConfig": "agentauthz.session._session",
    "SessionStore": "agentauthz.session._stores",
    "SyncedEngine": "agentauthz.avp._synced",
    "TemplateLink": "agentauthz.policy._store",
    "TokenIdentity": "agentauthz.avp._tokens",
    "ToolCall": "agentauthz.session._session",
    "ToolSettings": "agentauthz.tools._settings",
    "ToolSpec": "agentauthz.tools._spec",
    "VerifiedPermissionsEngine": "agentauthz.avp._engine",
    "VerifiedToken": "agentauthz.avp._tokens",
    "acting_with_token": "agentauthz.avp._tokens",
    "bind_injected": "agentauthz.tools._injected",
    "compile_prefilter": "agentauthz.retrieval._prefilter",
    "generate_schema": "agentauthz.tools._schema",
    "mcp_input_type": "agentauthz.tools._schema",
    "validate_policies_for_tools": "agentauthz.tools._schema",
}


def __getattr__(name: str) -> object:
    # Wings are imported on first use, so that `import agentauthz` stays light (langchain-aws's way).
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agentauthz' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
