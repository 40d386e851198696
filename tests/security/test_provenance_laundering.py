"""Provenance labels come only from registered sources: what the model chose never earns one.

The class of the laundering finding: a tool labelled ``trusted`` (or ``payee``) whose
result echoes its own arguments gave the model's values that label. Whatever the model
passes to tools, in whatever order, a value carries a label only if a source the
application registered with that label holds it.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings

import agentauthz as az
from agentauthz.session import MemorySessionStore, Provenance, SessionConfig
from agentauthz.session._provenance import source_keys, value_keys
from tests.strategies import model_tool_calls, provenance_values

ALICE = az.EntityUID("User", "alice")
USER_TEXT = "pay DE89 3704 0044 0532 0130 00 and mail bob@corp.example"
PAYEES = [{"iban": "GB29 NWBK 6016 1331 9268 19"}]


@settings(max_examples=60, deadline=None)
@given(calls=model_tool_calls, probe=provenance_values)
def test_no_model_chosen_value_earns_a_label_its_sources_do_not_give(calls: list[tuple[str, Any]],
                                                                     probe: Any) -> None:
    authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[], sessions=SessionConfig(
        store=MemorySessionStore(), provenance=Provenance(tools={"send"})))

    @authz.guard(provenance="trusted")
    def echo(text: str) -> str:  # a "trusted" tool whose result repeats what it was asked
        return f"you asked about {text}"

    @authz.guard(provenance="payee")
    def payee_lookup(name: str) -> list[dict[str, str]]:
        return [{"name": name, **payee} for payee in PAYEES]

    run = {"echo": echo, "payee_lookup": payee_lookup}
    with authz.acting_as(ALICE), authz.session("c") as session:
        session.user_said(USER_TEXT)
        for tool, value in calls:
            run[tool](value)
        for value in [probe, *(value for _, value in calls)]:
            labels = set(session.provenance_of(value))
            keys = set(value_keys(value))
            # what the application's own sources give this value, and nothing more
            expected = {"user"} if keys & source_keys(USER_TEXT) else set()
            if keys & source_keys(PAYEES):
                expected.add("payee")
            echoed = {"trusted"} if any(keys & (source_keys(f"you asked about {text}") - source_keys(text))
                                        for tool, text in calls if tool == "echo") else set()
            assert labels - expected - echoed == set(), (value, labels)
