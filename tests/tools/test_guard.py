"""@authz.guard: arguments as context.input, resources, refusals, identity and every deny path."""

from __future__ import annotations

import asyncio
import decimal
import enum
from typing import Literal

import pytest
from pydantic import BaseModel

import agentauthz as az
from agentauthz.testing import capture_decisions

POLICIES = """
@id("small-refunds")
permit(principal, action == Action::"issue_refund", resource == Tool::"issue_refund")
when { context.input.amount <= 500 };

@id("alice-emails")
permit(principal == User::"alice", action == Action::"send_email", resource);

@id("never-delete")
forbid(principal, action == Action::"delete_all", resource);

@id("any-delete")
permit(principal, action == Action::"delete_all", resource);

@id("bank-transfers")
permit(principal, action == Action::"transfer", resource in Bank::"b1")
when { context.input.amount.lessThan(decimal("100.0")) };

@id("priority-tickets")
permit(principal, action == Action::"open_ticket", resource)
when { context.input.priority == "high" && context.input.details.tags.contains("urgent")
       && !(context.input has note) && context.channel == "chat" };
"""

ALICE = az.EntityUID("User", "alice")
BOB = az.EntityUID("User", "bob")


def make_authz(**options: object) -> az.Authorizer:
    entities = [az.Entity(uid=az.EntityUID("Account", "a1"), parents=[az.EntityUID("Bank", "b1")])]
    return az.Authorizer.from_text(POLICIES, entities=entities, **options)


class Priority(enum.Enum):
    LOW = "low"
    HIGH = "high"


class Details(BaseModel):
    tags: list[str]
    size: int | None = None


def test_allowed_call_runs_with_validated_arguments() -> None:
    authz = make_authz()
    calls: list[tuple[str, int]] = []

    @authz.guard
    def issue_refund(order_id: str, amount: int) -> str:
        calls.append((order_id, amount))
        return "refunded"

    with authz.acting_as(ALICE):
        assert issue_refund("o-1", "300") == "refunded"  # type: ignore[arg-type]
    assert calls == [("o-1", 300)]


def test_denied_call_raises_access_denied_and_never_runs() -> None:
    authz = make_authz()
    ran = []

    @authz.guard
    def issue_refund(order_id: str, amount: int) -> str:
        ran.append(amount)
        return "refunded"

    with authz.acting_as(ALICE), pytest.raises(az.AccessDenied) as denied:
        issue_refund("o-1", 5000)
    assert ran == []
    assert not denied.value.decision.allowed
    assert "issue_refund" in str(denied.value)


def test_message_mode_returns_a_refusal_naming_tool_and_decision_id_without_policies_or_values() -> None:
    authz = make_authz()

    @authz.guard(on_deny="message")
    def delete_all(confirm_phrase: str) -> str:
        return "deleted"

    with capture_decisions() as events, authz.acting_as(ALICE):
        refusal = delete_all("my secret phrase")
    assert "delete_all" in refusal and events[0].decision_id in refusal
    assert "never-delete" not in refusal and "secret phrase" not in refusal
    assert events[0].reasons == ("never-delete",)


def test_message_mode_names_the_policies_when_the_authorizer_discloses_reasons() -> None:
    authz = make_authz(disclose_reasons=True)

    @authz.guard(on_deny="message")
    def delete_all(confirm_phrase: str) -> str:
        return "deleted"

    with authz.acting_as(ALICE):
        refusal = delete_all("my secret phrase")
    assert "never-delete" in refusal and "secret phrase" not in refusal


def test_call_without_bound_user_raises_identity_error_even_in_message_mode() -> None:
    authz = make_authz()

    @authz.guard(on_deny="message")
    def send_email(to: str) -> str:
        return "sent"

    with pytest.raises(az.IdentityError):
        send_email("x@example.com")


def test_principal_comes_from_binding_not_from_arguments() -> None:
    authz = make_authz()

    @authz.guard(on_deny="message")
    def send_email(to: str, principal: str) -> str:
        return "sent"

    with authz.acting_as(BOB):
        assert "not permitted" in send_email("x@example.com", 'User::"alice"')
        assert "not permitted" in send_email("x@example.com", principal="alice")
    with authz.acting_as(ALICE):
        assert send_email("x@example.com", "anyone") == "sent"


@pytest.mark.parametrize(
    "hostile",
    ['User::"admin"', 'Account::"a1"', '"', "::", 'b1"); permit(', "\n", "Bank::\"b1\"", ""],
)
def test_argument_that_looks_like_an_entity_never_changes_the_resource_type(hostile: str) -> None:
    authz = make_authz()

    @authz.guard(resource=lambda a: az.EntityUID("Account", a["source"]), on_deny="message")
    def transfer(source: str, amount: decimal.Decimal) -> str:
        return "moved"

    with capture_decisions() as events, authz.acting_as(ALICE):
        result = transfer(hostile, decimal.Decimal("5"))
    assert "not permitted" in result
    assert events[0].resource.startswith('Account::"')
    assert events[0].principal == str(ALICE)


def test_resource_callable_gets_validated_arguments() -> None:
    authz = make_authz()

    @authz.guard(resource=lambda a: az.EntityUID("Account", a["source"]))
    def transfer(source: str, amount: float) -> str:
        return "moved"

    with authz.acting_as(ALICE):
        assert transfer("a1", 12.5) == "moved"
        with pytest.raises(az.AccessDenied):
            transfer("a1", 500.0)
        with pytest.raises(az.AccessDenied):
            transfer("unknown-account", 1.0)


def test_float_with_more_than_four_decimals_is_rejected_not_rounded() -> None:
    authz = make_authz()

    @authz.guard(resource=lambda a: az.EntityUID("Account", a["source"]))
    def transfer(source: str, amount: float) -> str:
        return "moved"

    with authz.acting_as(ALICE), pytest.raises(az.InvalidValueError, match="4 fractional"):
        transfer("a1", 0.123456)


def test_enum_literal_nested_model_and_optional_map_into_context_input() -> None:
    authz = make_authz()

    @authz.guard(context=lambda a: {"channel": "chat"})
    def open_ticket(priority: Priority, kind: Literal["bug", "question"], details: Details,
                    note: str | None = None) -> str:
        return "opened"

    with authz.acting_as(ALICE), capture_decisions():
        assert open_ticket(Priority.HIGH, "bug", Details(tags=["urgent"])) == "opened"
        assert open_ticket("high", "bug", {"tags": ["urgent"]}) == "opened"  # type: ignore[arg-type]
        with pytest.raises(az.AccessDenied):
            open_ticket(Priority.HIGH, "bug", Details(tags=["urgent"]), note="x")
        with pytest.raises(az.AccessDenied):
            open_ticket(Priority.LOW, "bug", Details(tags=["urgent"]))


def test_invalid_arguments_never_reach_the_tool() -> None:
    authz = make_authz()
    ran = []

    @authz.guard
    def issue_refund(order_id: str, amount: int) -> str:
        ran.append(1)
        return "refunded"

    with authz.acting_as(ALICE):
        with pytest.raises(az.InvalidValueError, match="amount"):
            issue_refund("o-1", "lots")  # type: ignore[arg-type]
        with pytest.raises(az.InvalidValueError):
            issue_refund("o-1", 5, extra=1)  # type: ignore[call-arg]
        with pytest.raises(az.InvalidValueError):
            issue_refund("o-1")  # type: ignore[call-arg]
    assert ran == []


def test_invalid_arguments_in_message_mode_return_an_audited_refusal_naming_the_problem_only_there() -> None:
    authz = make_authz()

    @authz.guard(on_deny="message")
    def issue_refund(order_id: str, amount: int) -> str:
        return "refunded"

    with capture_decisions() as events, authz.acting_as(ALICE):
        refusal = issue_refund("o-1", "lots")  # type: ignore[arg-type]
    assert "was not called" in refusal and events[0].decision_id in refusal
    assert "amount" not in refusal and "lots" not in refusal
    assert events[0].decision == "deny" and "amount" in events[0].errors[0]
    assert "lots" not in events[0].to_json()


def test_invalid_arguments_raise_invalid_arguments_carrying_the_audited_refusal() -> None:
    authz = make_authz()

    @authz.guard
    def issue_refund(order_id: str, amount: int) -> str:
        return "refunded"

    with capture_decisions() as events, authz.acting_as(ALICE), \
            pytest.raises(az.InvalidArguments) as caught:
        issue_refund("o-1", 5, bcc="x")  # type: ignore[call-arg]
    assert isinstance(caught.value, az.InvalidValueError)
    assert caught.value.decision.id == events[0].decision_id
    assert events[0].principal == str(ALICE) and events[0].action == 'Action::"issue_refund"'


def test_context_callable_may_not_override_input() -> None:
    authz = make_authz()

    @authz.guard(context=lambda a: {"input": {"amount": 1}})
    def issue_refund(order_id: str, amount: int) -> str:
        return "refunded"

    with authz.acting_as(ALICE), pytest.raises(az.ConfigurationError):
        issue_refund("o-1", 5000)


def test_async_tools_are_guarded_too() -> None:
    authz = make_authz()

    @authz.guard
    async def issue_refund(order_id: str, amount: int) -> str:
        await asyncio.sleep(0)
        return "refunded"

    async def main() -> tuple[str, bool]:
        with authz.acting_as(ALICE):
            ok = await issue_refund("o", 10)
            try:
                await issue_refund("o", 10_000)
            except az.AccessDenied:
                return ok, True
            return ok, False

    assert asyncio.run(main()) == ("refunded", True)


def test_concurrent_async_tool_calls_keep_their_own_users() -> None:
    authz = make_authz()

    @authz.guard(on_deny="message")
    async def send_email(to: str) -> str:
        await asyncio.sleep(0)
        return "sent"

    async def as_user(user: az.EntityUID) -> str:
        with authz.acting_as(user):
            await asyncio.sleep(0)
            return await send_email("x@example.com")

    async def main() -> list[str]:
        return await asyncio.gather(*(as_user(ALICE if i % 2 else BOB) for i in range(40)))

    results = asyncio.run(main())
    assert [r == "sent" for r in results] == [bool(i % 2) for i in range(40)]
    assert all("not permitted" in r for r in results[::2])


def test_shadow_mode_runs_a_denied_tool_and_audits_the_denial() -> None:
    authz = make_authz(mode="shadow")

    @authz.guard
    def issue_refund(order_id: str, amount: int) -> str:
        return "refunded"

    with capture_decisions() as events, authz.acting_as(ALICE):
        assert issue_refund("o", 9999) == "refunded"
    assert (events[0].decision, events[0].mode) == ("deny", "shadow")


def test_guard_registers_the_tool_and_keeps_function_metadata() -> None:
    authz = make_authz()

    @authz.guard(action="issue_refund", name="refund")
    def refund_order(order_id: str, amount: int) -> str:
        """Refund an order."""
        return "refunded"

    assert refund_order.__name__ == "refund_order"
    assert refund_order.__doc__ == "Refund an order."
    spec = authz.tools["refund"]
    assert spec.action == "issue_refund"
    assert spec.input_type["attributes"]["amount"] == {"type": "Long"}


def test_unsupported_argument_type_fails_at_decoration() -> None:
    authz = make_authz()
    with pytest.raises(az.ConfigurationError, match="payload"):

        @authz.guard
        def upload(payload: bytes) -> None:
            return None


def test_bad_on_deny_is_a_configuration_error() -> None:
    authz = make_authz()
    with pytest.raises(az.ConfigurationError, match="on_deny"):
        authz.guard(on_deny="ignore")  # type: ignore[arg-type]


def test_authorize_tool_call_decides_without_running() -> None:
    authz = make_authz()
    ran = []

    @authz.guard
    def issue_refund(order_id: str, amount: int) -> str:
        ran.append(1)
        return "refunded"

    with authz.acting_as(ALICE):
        assert authz.authorize_tool_call(issue_refund, {"order_id": "o", "amount": 10}).allowed
        assert not authz.authorize_tool_call("issue_refund", {"order_id": "o", "amount": 600}).allowed
        assert asyncio.run(authz.aauthorize_tool_call(issue_refund, {"order_id": "o", "amount": 1})).allowed
        with pytest.raises(az.ConfigurationError):
            authz.authorize_tool_call("no_such_tool", {})
    assert ran == []


def test_permitted_tools_hides_tools_the_user_can_never_call() -> None:
    authz = make_authz()

    @authz.guard
    def issue_refund(order_id: str, amount: int) -> str:
        return "refunded"

    @authz.guard
    def send_email(to: str) -> str:
        return "sent"

    @authz.guard
    def delete_all() -> str:
        return "gone"

    @authz.guard(resource=lambda a: az.EntityUID("Account", a["source"]))
    def transfer(source: str, amount: float) -> str:
        return "moved"

    def unguarded() -> None:
        return None

    tools = [issue_refund, send_email, delete_all, transfer, unguarded]
    with authz.acting_as(ALICE):
        assert authz.permitted_tools(tools) == [issue_refund, send_email, transfer]
    with authz.acting_as(BOB):
        assert authz.permitted_tools(tools) == [issue_refund, transfer]
    with pytest.raises(az.IdentityError):
        authz.permitted_tools(tools)


def test_permitted_tools_never_decides_a_call() -> None:
    authz = make_authz()

    @authz.guard
    def issue_refund(order_id: str, amount: int) -> str:
        return "refunded"

    with authz.acting_as(BOB):
        assert authz.permitted_tools([issue_refund]) == [issue_refund]
        with pytest.raises(az.AccessDenied):
            issue_refund("o", 501)


def test_validate_tools_catches_a_misspelled_argument_with_file_and_line(tmp_path: object) -> None:
    import pathlib
    import shutil
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    store_dir = pathlib.Path(str(tmp_path)) / "policies"
    shutil.copytree(root / "policies", store_dir)
    sys.path.insert(0, str(root / "examples"))
    try:
        from assistant_tools import build_tools
    finally:
        sys.path.remove(str(root / "examples"))
    authz = az.Authorizer.from_directory(store_dir)
    build_tools(authz)
    authz.validate_tools(principal_types=["User"])
    (store_dir / "zz_typo.cedar").write_text(
        '\n@id("typo")\npermit(principal, action == Action::"issue_refund", resource)\n'
        "when { context.input.ammount < 10 };\n"
    )
    # Loading validates against the store's schema, which names the argument too; the check
    # matters for policies loaded without one, so load the typo without validation here.
    typo_store = az.PolicyStore.from_directory(store_dir, validate=False)
    with pytest.raises(az.PolicyError) as problem:
        authz.validate_tools(principal_types=["User"], store=typo_store)
    assert [p for p in problem.value.problems if p.startswith("zz_typo.cedar:4:16:") and "ammount" in p]


def test_validate_tools_without_policies_or_stub_is_a_configuration_error() -> None:
    class NoStoreEngine:
        name = "none"
        fingerprint = "x"

        def resolve_action(self, action: str | az.EntityUID) -> az.EntityUID:
            return az.EntityUID("Action", str(action))

        def decide(self, requests: object, entities: object = ()) -> list[az.Decision]:
            return []

        async def adecide(self, requests: object, entities: object = ()) -> list[az.Decision]:
            return []

    with pytest.raises(az.ConfigurationError, match="store"):
        az.Authorizer(NoStoreEngine()).validate_tools(principal_types=["User"])  # type: ignore[arg-type]
    with pytest.raises(az.ConfigurationError, match="stub"):
        make_authz().validate_tools(principal_types=["User"])  # a store without a schema
