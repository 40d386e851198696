"""Fixtures for tests against local AWS endpoints.

``local_avp`` serves the example store (``policies/``) on 127.0.0.1 for the
module; ``avp_client`` is a real boto3 client for it and ``avp_engine`` a
VerifiedPermissionsEngine over that client. Faults injected in a test are
cleared after it.

``local_dynamodb`` is a DynamoDB-compatible server on 127.0.0.1 (moto in server
mode) started once for the test session and stopped at its end;
``dynamodb_table`` creates a fresh session table on it for one test. Tests that
need them are skipped, with the reason, when moto's server is not installed.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import agentauthz as az
from agentauthz.session import DynamoDBSessionStore, create_table
from agentauthz.testing import LocalDynamoDB, LocalVerifiedPermissions

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


@pytest.fixture(scope="session")
def local_dynamodb() -> Iterator[LocalDynamoDB]:
    """DynamoDB on 127.0.0.1 for the whole test session."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("boto3") is None:
        pytest.skip('DynamoDB tests need moto\'s server and boto3: pip install "moto[server]" boto3')
    with LocalDynamoDB() as server:
        yield server


@pytest.fixture
def dynamodb_client(local_dynamodb: LocalDynamoDB) -> Any:
    """A boto3 client for the local DynamoDB server."""
    return local_dynamodb.client()


@pytest.fixture
def dynamodb_table(dynamodb_client: Any) -> str:
    """A new, empty session table (made by ``create_table``) for one test."""
    name = f"sessions-{uuid.uuid4().hex[:12]}"
    create_table(dynamodb_client, name)
    return name


@pytest.fixture
def new_dynamodb_store(dynamodb_client: Any) -> Callable[[], DynamoDBSessionStore]:
    """Builds a DynamoDBSessionStore on a new, empty table at each call."""

    def build() -> DynamoDBSessionStore:
        name = f"sessions-{uuid.uuid4().hex[:12]}"
        create_table(dynamodb_client, name)
        return DynamoDBSessionStore(name, client=dynamodb_client)

    return build
