"""Every scenario tool registered on one Authorizer: ``agentauthz schema generate --tools`` reads it.

Regenerate the schema after changing a tool::

    agentauthz schema generate --stub tests/scenarios/stub.cedarschema \
        --tools tests.scenarios.schema_tools:authz -o tests/scenarios/policies/schema.cedarschema
"""

from __future__ import annotations

import agentauthz as az
from tests.scenarios.assistant import POLICIES, build
from tests.scenarios.world import World

authz = build(World(), az.PolicyStore.from_directory(POLICIES)).authz
