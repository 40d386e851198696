"""agentauthz: Cedar-policy authorization for what AI agents do.

Every tool call and knowledge-base lookup an agent makes is decided by Cedar
policies for the end user it acts for, embedded (cedarpy) or on Amazon
Verified Permissions.

Example:
    >>> import agentauthz as az
    >>> authz = az.Authorizer.from_text('@id("read") permit(principal, action == Action::"read", resource);')
    >>> with authz.acting_as(az.EntityUID("User", "alice")):
    ...     authz.authorize(action="read", resource=az.EntityUID("Doc", "d1")).allowed
    True
"""

from __future__ import annotations

from agentauthz._audit import AuditEvent, AuditSink, LoggingSink, MemorySink
from agentauthz._authorizer import Authorizer
from agentauthz._entities import EntityProvider, StaticEntityProvider
from agentauthz._errors import (
    AccessDenied,
    AuthzError,
    ConfigurationError,
    EngineError,
    IdentityError,
    InvalidArguments,
    InvalidValueError,
    PolicyError,
)
from agentauthz._identity import Identity
from agentauthz._model import (
    Decision,
    Entity,
    EntityUID,
    ExtensionValue,
    Request,
    decimal,
    ipaddr,
)
from agentauthz.avp._options import Batching, DecisionCache, Retry
from agentauthz.avp._tokens import TokenIdentity, VerifiedToken, acting_with_token
from agentauthz.engines.base import Engine
from agentauthz.engines.local import LocalEngine
from agentauthz.policy._store import Policy, PolicyStore, TemplateLink
from agentauthz.retrieval._filter import FilterResult
from agentauthz.retrieval._prefilter import Prefilter, compile_prefilter
from agentauthz.session._session import Session, SessionConfig, ToolCall
from agentauthz.session._stores import MemorySessionStore, SessionStore, SQLiteSessionStore
from agentauthz.tools._schema import generate_schema, mcp_input_type, validate_policies_for_tools
from agentauthz.tools._spec import OnDeny, ToolSpec

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "AuditEvent",
    "AuditSink",
    "Authorizer",
    "AuthzError",
    "Batching",
    "ConfigurationError",
    "Decision",
    "DecisionCache",
    "Engine",
    "EngineError",
    "Entity",
    "EntityProvider",
    "EntityUID",
    "ExtensionValue",
    "FilterResult",
    "Identity",
    "IdentityError",
    "InvalidArguments",
    "InvalidValueError",
    "LocalEngine",
    "LoggingSink",
    "MemorySessionStore",
    "MemorySink",
    "OnDeny",
    "Policy",
    "PolicyError",
    "PolicyStore",
    "Prefilter",
    "Request",
    "Retry",
    "SQLiteSessionStore",
    "Session",
    "SessionConfig",
    "SessionStore",
    "StaticEntityProvider",
    "TemplateLink",
    "TokenIdentity",
    "ToolCall",
    "ToolSpec",
    "VerifiedPermissionsEngine",
    "VerifiedToken",
    "acting_with_token",
    "compile_prefilter",
    "decimal",
    "generate_schema",
    "ipaddr",
    "mcp_input_type",
    "validate_policies_for_tools",
]



def __getattr__(name: str) -> object:
    # The AVP engine's module is imported on first use so that `import agentauthz` stays light.
    if name == "VerifiedPermissionsEngine":
        from agentauthz.avp._engine import VerifiedPermissionsEngine

        return VerifiedPermissionsEngine
    raise AttributeError(f"module 'agentauthz' has no attribute {name!r}")
