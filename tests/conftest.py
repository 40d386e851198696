"""Fixtures for tests against a local Amazon Verified Permissions endpoint.

``local_avp`` serves the example store (``policies/``) on 127.0.0.1 for the
module; ``avp_client`` is a real boto3 client for it and ``avp_engine`` a
VerifiedPermissionsEngine over that client. Faults injected in a test are
cleared after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agentauthz as az
from agentauthz.testing import LocalVerifiedPermissions

EXAMPLE_STORE = Path(__file__).resolve().parents[1] / "policies"


@pytest.fixture(scope="module")
def example_store() -> az.PolicyStore:
    """The example policy store, loaded strictly."""
    return az.PolicyStore.from_directory(EXAMPLE_STORE)


@pytest.fixture(scope="module")
def local_avp(example_store: az.PolicyStore) -> Iterator[LocalVerifiedPermissions]:
    """A local AVP endpoint seeded with the example store."""
    with LocalVerifiedPermissions(example_store) as server:
        yield server


@pytest.fixture
def avp_server(local_avp: LocalVerifiedPermissions) -> Iterator[LocalVerifiedPermissions]:
    """``local_avp`` with its faults and call log reset around the test."""
    local_avp.clear_faults()
    local_avp.reset_calls()
    yield local_avp
    local_avp.clear_faults()


@pytest.fixture
def avp_client(avp_server: LocalVerifiedPermissions) -> Any:
    """A boto3 ``verifiedpermissions`` client for the local endpoint (short timeouts)."""
    pytest.importorskip("boto3")
    return avp_server.client(connect_timeout=2, read_timeout=2,
                             retries={"mode": "standard", "max_attempts": 3})


@pytest.fixture
def avp_engine(avp_server: LocalVerifiedPermissions, avp_client: Any) -> Iterator[Any]:
    """A VerifiedPermissionsEngine for the seeded store (on_error="deny")."""
    from agentauthz.avp._engine import VerifiedPermissionsEngine

    with VerifiedPermissionsEngine(avp_server.policy_store_id, client=avp_client) as engine:
        yield engine
