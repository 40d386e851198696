"""Every scenario tool registered on one Authorizer: ``agentauthz schema generate --tools`` reads it.

Regenerate the schema after changing a tool, then make ``context.session`` required (the
generator declares it optional; a forbid annotated ``@approval("required")`` must apply to a
call made without a session, so the schema must not let such a call through unchecked)::

    agentauthz schema generate --stub tests/scenarios/stub.cedarschema \
        --tools tests.scenarios.schema_tools:authz -o tests/scenarios/policies/schema.cedarschema
    sed -i 's/session?: Session/session: Session/' tests/scenarios/policies/schema.cedarschema
"""

from __future__ import annotations

import agentauthz as az
from tests.scenarios.assistant import POLICIES, build
from tests.scenarios.world import World

authz = build(World(), az.PolicyStore.from_directory(POLICIES)).authz
