"""VerifiedPermissionsEngine's options (retry=, cache=, batching=) and the flat keywords they replace."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

import agentauthz as az
from agentauthz.avp._engine import VerifiedPermissionsEngine

pytest.importorskip("boto3")

U = az.EntityUID
STORE_ID = "PSEXAMPLEabcdefg111111"


def requests(count: int) -> list[az.Request]:
    return [az.Request(principal=U("User", "alice"), action=U("Action", "read"),
                       resource=U("Document", f"d{i}")) for i in range(count)]


def test_the_option_objects_configure_the_engine(avp_server: Any, avp_client: Any) -> None:
    with VerifiedPermissionsEngine(avp_server.policy_store_id, client=avp_client,
                                   retry=az.Retry(timeout=1.0, max_attempts=2, deadline=9.0),
                                   cache=az.DecisionCache(ttl=60, size=100),
                                   batching=az.Batching(min_batch=30, max_workers=2)) as engine:
        assert engine.deadline == 9.0
        engine.decide(requests(35))
        assert avp_server.call_count("BatchIsAuthorized") == 1
        assert avp_server.call_count("IsAuthorized") == 5
        engine.decide(requests(35))  # every decision cached: no call
        assert avp_server.call_count("BatchIsAuthorized") == 1
        assert avp_server.call_count("IsAuthorized") == 5


def test_without_options_the_engine_keeps_its_defaults(avp_server: Any, avp_client: Any) -> None:
    engine = VerifiedPermissionsEngine(avp_server.policy_store_id, client=avp_client)
    assert (engine.retry, engine.cache, engine.batching) == (az.Retry(), None, az.Batching())
    assert engine.deadline == 3 * 2 * 5.0 + 2**3


def test_the_flat_keywords_still_work_with_a_deprecation_warning(avp_server: Any, avp_client: Any) -> None:
    flat = {"timeout": 2.0, "max_attempts": 2, "deadline": None, "cache_ttl": 30.0, "cache_size": 5,
            "min_batch": 30, "max_workers": 1}
    with pytest.warns(DeprecationWarning) as caught:
        engine = VerifiedPermissionsEngine(avp_server.policy_store_id, client=avp_client, **flat)
    assert {str(w.message).split("(")[1].split("=")[0] for w in caught} == set(flat)
    assert all(w.filename == __file__ for w in caught)  # the warning points at the caller
    assert engine.retry == az.Retry(timeout=2.0, max_attempts=2)
    assert engine.cache == az.DecisionCache(ttl=30.0, size=5)
    assert engine.batching == az.Batching(min_batch=30, max_workers=1)
    assert engine.deadline == 12.0


def test_a_cache_size_without_a_ttl_keeps_no_cache(avp_server: Any, avp_client: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        engine = VerifiedPermissionsEngine(avp_server.policy_store_id, client=avp_client, cache_size=5)
    assert engine.cache is None


@pytest.mark.parametrize(("flat", "option"), [
    ({"timeout": 1.0}, {"retry": az.Retry()}),
    ({"cache_ttl": 10.0}, {"cache": az.DecisionCache(ttl=5)}),
    ({"min_batch": 30}, {"batching": az.Batching()}),
])
def test_a_flat_keyword_next_to_the_option_that_replaces_it_is_refused(
    flat: dict[str, Any], option: dict[str, Any], avp_client: Any
) -> None:
    with pytest.raises(az.ConfigurationError, match="both given"):
        VerifiedPermissionsEngine(STORE_ID, client=avp_client, **flat, **option)


def test_a_keyword_the_engine_never_took_is_a_type_error(avp_client: Any) -> None:
    with pytest.raises(TypeError, match="retries"):
        VerifiedPermissionsEngine(STORE_ID, client=avp_client, retries=3)  # type: ignore[call-arg]


@pytest.mark.parametrize("build", [
    lambda: az.Retry(max_attempts=0), lambda: az.Retry(timeout=0), lambda: az.DecisionCache(ttl=0),
    lambda: az.DecisionCache(ttl=1, size=-1), lambda: az.Batching(min_batch=1),
    lambda: az.Batching(min_batch=31), lambda: az.Batching(max_workers=0),
])
def test_the_option_objects_refuse_values_the_engine_cannot_use(build: Any) -> None:
    with pytest.raises(az.ConfigurationError):
        build()
