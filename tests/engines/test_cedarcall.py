"""The engine's call into cedarpy: the private entry point answers as the public wrapper does."""

from __future__ import annotations

import json
from typing import Any

import cedarpy
import pytest

import agentauthz as az
from agentauthz.engines import _cedarcall as _cedarcall

POLICIES = """
@id("reader") permit(principal, action == Action::"read", resource) when { context.level >= 2 };
@id("no-night") forbid(principal, action, resource) when { context.hour < 6 };
@id("broken") permit(principal, action, resource) when { context.missing == 1 };
"""
SCHEMA = """
entity User, Doc;
action read, write appliesTo { principal: User, resource: Doc, context: { level: Long, hour: Long } };
"""


def _requests() -> list[dict[str, Any]]:
    requests = []
    for action, level, hour in [("read", 3, 12), ("read", 1, 12), ("read", 3, 2), ("write", 3, 12)]:
        requests.append({"principal": {"type": "User", "id": "ann"},
                         "action": {"type": "Action", "id": action}, "resource": {"type": "Doc", "id": "d"},
                         "context": json.dumps({"level": level, "hour": hour})})
    requests.append({**requests[0], "context": json.dumps({"level": "high", "hour": 12})})  # refused
    return requests


def _outcome(answer: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    diagnostics = answer["diagnostics"]
    return answer["decision"], diagnostics.get("reason", []), diagnostics["errors"]


def test_private_and_public_batches_give_the_same_decisions_reasons_and_errors() -> None:
    snapshot = az.PolicyStore.from_text(POLICIES, schema=SCHEMA, validate=False).snapshot
    for schema in (snapshot.schema, None):
        private = _cedarcall.private_batch(_requests(), snapshot.policy_set, snapshot.entity_set, schema)
        public = _cedarcall.public_batch(_requests(), snapshot.policy_set, snapshot.entity_set, schema)
        assert [_outcome(answer) for answer in private] == [_outcome(answer) for answer in public]
    assert [answer["decision"] for answer in private[:4]] == ["Allow", "Deny", "Deny", "Deny"]
    assert all(answer["diagnostics"]["errors"] for answer in private)  # "broken" errs every time


def test_a_cedarpy_whose_private_entry_point_changed_is_called_through_its_public_wrapper(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A future cedarpy: the extension function takes a new required argument, and the public
    # wrapper (its own code) passes it.
    real = cedarpy._internal.is_authorized_batch
    wrapper = cedarpy.is_authorized_batch

    def changed(requests: list[Any], policies: Any, entities: Any, schema: Any, verbose: bool,
                release_gil: bool) -> Any:
        return real(requests, policies, entities, schema, verbose)

    def new_wrapper(requests: list[Any], policies: Any, entities: Any, schema: Any = None,
                    verbose: bool = False) -> Any:
        with monkeypatch.context() as inner:
            inner.setattr(cedarpy._internal, "is_authorized_batch",
                          lambda *args: changed(*args, release_gil=True))
            return wrapper(requests, policies, entities, schema=schema, verbose=verbose)

    monkeypatch.setattr(cedarpy._internal, "is_authorized_batch", changed)
    monkeypatch.setattr(cedarpy, "is_authorized_batch", new_wrapper)
    monkeypatch.setattr(_cedarcall, "_use_private", True)
    engine = az.LocalEngine(az.PolicyStore.from_text(POLICIES, schema=SCHEMA, validate=False))
    ann, doc = az.EntityUID("User", "ann"), az.EntityUID("Doc", "d")
    read = az.EntityUID("Action", "read")
    decisions = engine.decide([az.Request(ann, read, doc, {"level": level, "hour": 12}) for level in (3, 1)])
    assert [(d.allowed, d.reasons) for d in decisions] == [(True, ("reader",)), (False, ())]
    assert _cedarcall._use_private is False


@pytest.mark.parametrize("answer", [
    '{"decision":"Deny","diagnostics":{"reason":["p"],"errors":["x,\\"metrics\\":{}"]},"metrics":{"a":1}}',
    '{"decision":"Allow","diagnostics":{"reason":[],"errors":[]}}',
    '{"decision":"Allow","metrics":{"a":1},"diagnostics":{"reason":["p"],"errors":[]}}',
    '{"decision":"Allow","diagnostics":{"reason":["p"],"errors":[],"metrics":{"a":1}}}',
    '{"decision":"Deny","diagnostics":{"reason":[],"errors":["e"]},"metrics":{"a":1}} ',
])
def test_an_answer_decodes_to_its_decision_and_diagnostics_wherever_the_metrics_text_is(
        answer: str) -> None:
    decoded = _cedarcall._parsed(answer)
    whole = json.loads(answer)
    assert decoded["decision"] == whole["decision"]
    assert decoded["diagnostics"] == whole["diagnostics"]


def test_answers_decoded_without_their_timings_equal_the_public_wrappers() -> None:
    snapshot = az.PolicyStore.from_text(POLICIES, schema=SCHEMA, validate=False).snapshot
    answers = cedarpy._internal.is_authorized_batch(_requests(), snapshot.policy_set,
                                                    snapshot.entity_set._inner, snapshot.schema, False)
    for answer in answers:
        decoded = _cedarcall._parsed(answer)
        assert "metrics" not in decoded
        assert {key: value for key, value in json.loads(answer).items() if key != "metrics"} == decoded
