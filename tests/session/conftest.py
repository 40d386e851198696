"""A DynamoDB-compatible server on 127.0.0.1 (moto in server mode) for the session stores' tests.

``local_dynamodb`` starts once per test session and stops at its end;
``dynamodb_table`` creates a fresh table on it for one test. Tests that need them
are skipped, with the reason, when moto's server is not installed.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from agentauthz.session import create_table
from agentauthz.testing import LocalDynamoDB


@pytest.fixture(scope="session")
def local_dynamodb() -> Iterator[LocalDynamoDB]:
    """DynamoDB on 127.0.0.1 for the whole test session."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("boto3") is None:
        pytest.skip('DynamoDB tests need moto\'s server and boto3: pip install "moto[server]" boto3')
    with LocalDynamoDB() as server:
        yield server


@pytest.fixture
def dynamodb_client(local_dynamodb: LocalDynamoDB) -> Any:
    """A boto3 client for the local server."""
    return local_dynamodb.client()


@pytest.fixture
def dynamodb_table(dynamodb_client: Any) -> str:
    """A new, empty session table (created with ``create_table``) for one test."""
    name = f"sessions-{uuid.uuid4().hex[:12]}"
    create_table(dynamodb_client, name)
    return name
