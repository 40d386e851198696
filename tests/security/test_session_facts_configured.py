"""Session facts nothing fills are refused, never a zero (security review, issue 14, finding 11).

The finding: a schema declared ``totals.grant_software_license.seats``, the tools
were wrapped with ``authorize_tools`` and ``AuthzMiddleware``, and no
``SessionConfig(sums=...)`` summed the seats: every request carried ``seats: 0``
and 5 + 5 + 1 seats passed a 10-seat cap. ``agentauthz schema generate``
ignored ``SessionConfig.sums``.

What must hold, for every ``context.session`` fact (totals, counts, windows,
labels, approvals, and names agentauthz does not record at all): a fact a schema
declares or a policy reads that the configuration does not fill is a
ConfigurationError (at construction, at the first request decided in a session,
and in ``validate_tools``), never a zero or a missing attribute a ``forbid``
silently skips; and schema generation declares what validation checks against.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz.cli._main import main
from agentauthz.session import SessionConfig
from tests.strategies import FACT_ACTION, seat_and_fee_calls, session_fact_paths, summed_arguments

pytest.importorskip("langchain_core")
pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, tool

from agentauthz.integrations.langchain import PRINCIPAL_KEY, SESSION_KEY, AuthzMiddleware, authorize_tools

USER = az.EntityUID("User", "ursula")
GRANT = FACT_ACTION

SCHEMA = f"""
entity User;
entity Tool;
type Session = {{
  seen: Set<String>,
  calls: {{ {GRANT}: Long }},
  totals: {{ {GRANT}: {{ seats: Long }} }},
}};
action {GRANT} appliesTo {{
  principal: [User], resource: [Tool],
  context: {{ input: {{ seats: Long }}, session?: Session }}
}};
"""
POLICIES = f"""
@id("all") permit(principal, action, resource);

// At most 10 seats per conversation.
@id("seat-cap")
forbid (principal, action == Action::"{GRANT}", resource)
when {{ context has session &&
       context.session.totals.{GRANT}.seats + context.input.seats > 10 }};
"""
SEATS = (5, 5, 1)


def store_dir(root: Path, schema: str | None = SCHEMA, policies: str = POLICIES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "policies.cedar").write_text(policies, encoding="utf-8")
    if schema is not None:
        (root / "schema.cedarschema").write_text(schema, encoding="utf-8")
    return root


class ScriptedModel(GenericFakeChatModel):
    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:  # type: ignore[override]
        return self


def seat_requests(*seats: int) -> ScriptedModel:
    replies = [AIMessage("", tool_calls=[{"name": GRANT, "args": {"seats": n}, "id": f"grant-{i}"}])
               for i, n in enumerate(seats)]
    return ScriptedModel(messages=iter([*replies, AIMessage("done")]))


def grant_tool(granted: list[int]) -> BaseTool:
    @tool
    def grant_software_license(seats: int) -> str:
        """Grant software license seats."""
        granted.append(seats)
        return f"granted {seats}"

    return grant_software_license


def run_agent(authz: az.Authorizer, wiring: str, granted: list[int]) -> list[ToolMessage]:
    plain = grant_tool(granted)
    if wiring == "authorize_tools+middleware":
        tools, middleware = authorize_tools([plain], authz), [AuthzMiddleware(authz)]
    elif wiring == "authorize_tools":
        tools, middleware = authorize_tools([plain], authz, on_deny="raise"), []
    else:
        tools, middleware = [plain], [AuthzMiddleware(authz)]
    agent = create_agent(seat_requests(*SEATS), tools=tools, middleware=middleware)
    result = agent.invoke({"messages": [("user", "license the team")]},
                          {"configurable": {PRINCIPAL_KEY: USER, SESSION_KEY: "conversation-11"}})
    return [m for m in result["messages"] if isinstance(m, ToolMessage)]


WIRINGS = ["authorize_tools+middleware", "authorize_tools", "middleware"]


# -- finding 11, through the real LangChain path -------------------------------------------------


@pytest.mark.parametrize("wiring", WIRINGS)
def test_unsummed_seats_never_let_5_5_1_pass_a_10_seat_cap_through_langchain(
    tmp_path: Path, wiring: str
) -> None:
    authz = az.Authorizer.from_directory(store_dir(tmp_path), audit=[])
    granted: list[int] = []
    with pytest.raises(az.ConfigurationError, match=rf"totals\.{GRANT}\.seats is never filled"):
        run_agent(authz, wiring, granted)
    assert granted == []  # refused before any seat went out, let alone the 11th


@pytest.mark.parametrize("wiring", WIRINGS)
def test_summed_seats_hold_the_10_seat_cap_through_langchain(tmp_path: Path, wiring: str) -> None:
    sink = az.MemorySink()
    authz = az.Authorizer.from_directory(store_dir(tmp_path), audit=[sink],
                                         sessions=SessionConfig(sums={GRANT: ["seats"]}))
    granted: list[int] = []
    if wiring == "authorize_tools":
        with pytest.raises(az.AccessDenied) as denied:
            run_agent(authz, wiring, granted)
        assert denied.value.decision.reasons == ("seat-cap",)
    else:
        messages = run_agent(authz, wiring, granted)
        refused = [event for event in sink.events if event.decision_id in str(messages[-1].content)]
        assert [event.reasons for event in refused] == [("seat-cap",)]
    assert granted == [5, 5]


def test_a_guard_without_sum_arguments_is_refused_not_zeroed(tmp_path: Path) -> None:
    authz = az.Authorizer.from_directory(store_dir(tmp_path), audit=[])

    @authz.guard
    def grant_software_license(seats: int) -> str:
        return f"granted {seats}"

    with authz.acting_as(USER), authz.session("c-1"), pytest.raises(az.ConfigurationError):
        grant_software_license(5)


def test_a_guard_summing_the_seats_holds_the_cap(tmp_path: Path) -> None:
    authz = az.Authorizer.from_directory(store_dir(tmp_path), audit=[])

    @authz.guard(sum_arguments=["seats"])
    def grant_software_license(seats: int) -> str:
        return f"granted {seats}"

    with authz.acting_as(USER), authz.session("c-1"):
        assert [grant_software_license(n) for n in (5, 5)] == ["granted 5", "granted 5"]
        with pytest.raises(az.AccessDenied):
            grant_software_license(1)


# -- the class: every fact, with or without a schema ---------------------------------------------


def test_without_a_schema_an_unsummed_total_is_refused_not_an_error_a_forbid_skips() -> None:
    # Without a schema the record simply lacks the total: the forbid errors, Cedar skips it,
    # and the permit allows. The total must be refused before that.
    authz = az.Authorizer.from_text(POLICIES, audit=[])
    with authz.acting_as(USER), authz.session("c-1"), pytest.raises(az.ConfigurationError):
        authz.authorize(action=GRANT, resource=az.EntityUID("Tool", GRANT),
                        context={"input": {"seats": 11}})


ESCAPED = '"s\\u{65}ssion"'  # "session", written with an escape


@pytest.mark.parametrize("read", [
    f"context has session && context.session.totals has {GRANT} && "
    f"context.session.totals.{GRANT}.seats > 10",
    f"context has session && context.session has totals.{GRANT}.seats && "
    f"context.session.totals.{GRANT}.seats > 10",
    f"context has session && "
    f"(if true then context.session else context.session).totals.{GRANT}.seats > 10",
    f"context has {ESCAPED} && context[{ESCAPED}].totals.{GRANT}.seats > 10",
], ids=["has-test", "has-path", "if-then-else", "escaped-name"])
def test_a_guarded_or_indirect_read_of_an_unsummed_total_is_refused(read: str) -> None:
    authz = az.Authorizer.from_text(
        f'@id("all") permit(principal, action, resource);\n'
        f'@id("cap") forbid(principal, action, resource) when {{ {read} }};',
        audit=[])
    with authz.acting_as(USER), authz.session("c-1"), pytest.raises(az.ConfigurationError) as refused:
        authz.authorize(action=GRANT, resource=az.EntityUID("Tool", GRANT), context={})
    assert "<text>:2:" in str(refused.value)


def test_an_attribute_agentauthz_does_not_record_is_refused_at_construction(tmp_path: Path) -> None:
    schema = SCHEMA.replace("seen: Set<String>,", "seen: Set<String>, risk?: Long,")
    with pytest.raises(az.ConfigurationError, match=r"context\.session\.risk is never filled"):
        az.Authorizer.from_directory(store_dir(tmp_path, schema=schema), audit=[],
                                     sessions=SessionConfig(sums={GRANT: ["seats"]}))
    policies = POLICIES + ('@id("risky") forbid(principal, action, resource) '
                           'when { context has session && context.session has risk };')
    with pytest.raises(az.ConfigurationError, match=r"policies\.cedar:\d+: context\.session\.risk"):
        az.Authorizer.from_directory(store_dir(tmp_path / "p", schema=None, policies=policies), audit=[],
                                     sessions=SessionConfig(sums={GRANT: ["seats"]}))


def test_without_a_session_configuration_the_first_session_request_refuses_an_unknown_fact() -> None:
    authz = az.Authorizer.from_text(
        '@id("all") permit(principal, action, resource);\n'
        '@id("x") forbid(principal, action, resource) when { context has session && '
        'context.session.risk_score > 3 };', audit=[])  # built without sessions=: no check yet
    assert authz.authorize(principal=USER, action="read", resource=USER).allowed  # no session: no facts
    with authz.acting_as(USER), authz.session("c-1"), pytest.raises(az.ConfigurationError):
        authz.filter([USER], action="read", resource=lambda uid: uid)


def test_a_fact_the_schema_declares_for_no_action_is_refused_when_a_policy_reads_it() -> None:
    # The record is cut to the schema: a total summed but declared nowhere never reaches the policy.
    schema = SCHEMA.replace(f"totals: {{ {GRANT}: {{ seats: Long }} }},", "")
    policies = POLICIES.replace(f"context.session.totals.{GRANT}.seats + context.input.seats > 10",
                                f"context.session has totals.{GRANT}.seats && "
                                f"context.session.totals.{GRANT}.seats + context.input.seats > 10")
    with pytest.raises(az.ConfigurationError, match=r"declares it in no action's context\.session"):
        az.Authorizer.from_text(policies, schema=schema, audit=[],
                                sessions=SessionConfig(sums={GRANT: ["seats"]}))
    authz = az.Authorizer.from_text(policies, schema=schema, audit=[])  # no sessions=: first use

    @authz.guard(sum_arguments=["seats"])
    def grant_software_license(seats: int) -> str:
        return f"granted {seats}"

    with authz.acting_as(USER), authz.session("c-1"), pytest.raises(
            az.ConfigurationError, match=r"declares it in no action's context\.session"):
        grant_software_license(5)


def test_reloading_a_store_that_reads_an_unfilled_fact_is_caught_at_the_next_request(tmp_path: Path) -> None:
    root = store_dir(tmp_path)
    authz = az.Authorizer.from_directory(root, audit=[], sessions=SessionConfig(sums={GRANT: ["seats"]}))
    grant = {"action": GRANT, "resource": az.EntityUID("Tool", GRANT), "context": {"input": {"seats": 1}}}
    with authz.acting_as(USER), authz.session("c-1"):
        assert authz.authorize(**grant).allowed  # type: ignore[arg-type]
        (root / "more.cedar").write_text(
            f'@id("fee-cap") forbid(principal, action == Action::"{GRANT}", resource) when '
            f'{{ context has session && context.session.totals has {GRANT} && '
            f'context.session.totals.{GRANT} has fee }};', encoding="utf-8")
        authz.engine.store.reload()  # type: ignore[attr-defined]
        with pytest.raises(az.ConfigurationError, match=r"more\.cedar:1: .*nothing sums argument 'fee'"):
            authz.authorize(**grant)  # type: ignore[arg-type]


def test_validate_tools_lists_every_unfilled_fact_with_its_location(tmp_path: Path) -> None:
    schema = SCHEMA.replace("seen: Set<String>,", "seen: Set<String>, risk?: Long,")
    authz = az.Authorizer.from_directory(store_dir(tmp_path, schema=schema), audit=[])

    @authz.guard
    def grant_software_license(seats: int) -> str:
        return f"granted {seats}"

    with pytest.raises(az.PolicyError) as report:
        authz.validate_tools(principal_types=["User"])
    problems = "\n".join(report.value.problems)
    assert f'schema.cedarschema: declared for action Action::"{GRANT}": context.session.risk' in problems
    assert (f'schema.cedarschema: declared for action Action::"{GRANT}": '
            f"context.session.totals.{GRANT}.seats is never filled") in problems
    assert f"policies.cedar:5: context.session.totals.{GRANT}.seats is never filled" in problems


# -- generation and validation agree ---------------------------------------------------------------


AGENT_MODULE = textwrap.dedent(f"""
    import agentauthz as az
    from langchain_core.tools import tool
    from agentauthz.integrations.langchain import authorize_tools
    from agentauthz.session import SessionConfig

    @tool
    def {GRANT}(seats: int) -> str:
        '''Grant software license seats.'''
        return "granted"

    config = SessionConfig(sums={{"{GRANT}": ["seats"]}})
    authz = az.Authorizer.from_text("permit(principal, action, resource);", sessions=config)
    tools = authorize_tools([{GRANT}], authz)
    plain = az.Authorizer.from_text("permit(principal, action, resource);")
    guarded = [plain.guard({GRANT}.func)]
""")
STUB = "@mcp_principal entity User;\nentity Tool;\ntype Session = {};\n"


@pytest.mark.parametrize("sources", [["--tools", "agent:authz"],
                                     ["--tools", "agent:guarded", "--sessions", "agent:config"],
                                     ["--tools", "agent:guarded", "--sessions", "agent:authz"]])
def test_schema_generate_declares_the_totals_the_session_configuration_sums(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sources: list[str]
) -> None:
    (tmp_path / "agent.py").write_text(AGENT_MODULE, encoding="utf-8")
    (tmp_path / "stub.cedarschema").write_text(STUB, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("agent", None)
    assert main(["schema", "generate", "--stub", "stub.cedarschema", *sources, "-o", "gen.cedarschema"]) == 0
    generated = (tmp_path / "gen.cedarschema").read_text(encoding="utf-8")
    assert f"{GRANT}: {{\n      seats: Long" in generated

    # The generated schema is the one validate_tools checks against: the cap validates,
    # and the configured Authorizer over it holds the cap.
    store = store_dir(tmp_path / "store", schema=generated)
    authz = az.Authorizer.from_directory(store, audit=[], sessions=SessionConfig(sums={GRANT: ["seats"]}))
    granted: list[int] = []
    authorize_tools([grant_tool(granted)], authz)
    authz.validate_tools()
    assert [m.content for m in run_agent(authz, "authorize_tools+middleware", granted)][:2] == [
        "granted 5", "granted 5"]
    assert granted == [5, 5]


def test_schema_generate_without_the_session_configuration_leaves_the_totals_out_and_validation_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "agent.py").write_text(AGENT_MODULE, encoding="utf-8")
    (tmp_path / "stub.cedarschema").write_text(STUB, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("agent", None)
    assert main(["schema", "generate", "--stub", "stub.cedarschema", "--tools", "agent:guarded",
                 "-o", "gen.cedarschema"]) == 0
    generated = (tmp_path / "gen.cedarschema").read_text(encoding="utf-8")
    assert "seats: Long\n    }" not in generated.split("type Session")[1].split("};")[0]
    with pytest.raises(az.PolicyError):  # the cap reads a total the schema does not declare
        az.PolicyStore.from_directory(store_dir(tmp_path / "store", schema=generated))


# -- the property: a read fact is refused, or it carries the exact running total -------------------

CONDITIONS = {
    ("totals", GRANT, "seats"): "context.session.totals.{a}.seats > 1000000",
    ("totals", GRANT, "fee"): "context.session.totals.{a}.fee > 1000000",
    ("calls", GRANT): "context.session.calls.{a} > 1000000",
    ("window_calls", GRANT): "context.session.window_calls.{a} > 1000000",
    ("seen",): 'context.session.seen.contains("never")',
    ("approved",): "context.session.approved && false",
    ("last_action",): 'context.session.last_action == "never"',
    ("risk",): "context.session.risk > 3",
}


def _run_calls(authz: az.Authorizer, sink: az.MemorySink,
               calls: list[tuple[int, int]]) -> list[dict[str, Any]]:
    with authz.acting_as(USER), authz.session("prop"):
        for seats, fee in calls:
            call = authz.begin_call(action=GRANT, resource=az.EntityUID("Tool", GRANT),
                                    context={"input": {"seats": seats, "fee": fee}})
            assert call.admits
            with call:
                pass
    return [event.request["request"]["context"]["session"] for event in sink.events if event.request]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(read=session_fact_paths, guarded=st.booleans(), guard_sums=summed_arguments,
       config_sums=summed_arguments, calls=seat_and_fee_calls)
def test_every_read_session_fact_is_refused_or_carries_the_exact_value(
    read: tuple[str, ...], guarded: bool, guard_sums: set[str], config_sums: set[str],
    calls: list[tuple[int, int]],
) -> None:
    condition = CONDITIONS[read].format(a=GRANT)
    if guarded and len(read) > 1:  # the `has` form a validator types as false when undeclared
        condition = f"context.session has {'.'.join(read)} && {condition}"
    summed = guard_sums | config_sums
    fills = read[2] in summed if read[0] == "totals" else read != ("risk",)
    sink = az.MemorySink()
    try:  # refused at construction (sessions= given) or at the first request: both are loud
        authz = az.Authorizer.from_text(
            '@id("all") permit(principal, action, resource);\n'
            f'@id("rule") forbid(principal, action, resource) when {{ context has session && {condition} }};',
            audit=[sink], record_requests=True,
            sessions=SessionConfig(sums={GRANT: sorted(config_sums)} if config_sums else {}))

        @authz.guard(sum_arguments=sorted(guard_sums))
        def grant_software_license(seats: int, fee: int) -> str:
            return "granted"

        records = _run_calls(authz, sink, calls)
    except az.ConfigurationError:
        assert not fills, f"{read} is filled, yet refused"
        return
    assert fills, f"{read} is not filled, yet {len(calls)} calls were decided with it"
    for done, record in enumerate(records):
        value: Any = record
        for key in read:
            value = value[key]  # present: never a missing attribute a forbid skips
        if read[0] == "totals":
            assert value == sum(call[("seats", "fee").index(read[2])] for call in calls[:done])
        elif read[0] in ("calls", "window_calls"):
            assert value == done
