"""A guarded call decides exactly as `authorize` of the same request built by hand.

The guard's hot path (a per-tool plan; outside a session, one decision without a
plan's steps) must keep every semantic of the request: the context sent to the
engine (``context.input``, ``context.session``, ``context.provenance``,
``context.guardrail``), the decision, the audit event (its request record,
guardrail annotations and provenance labels), the refusal raised (AccessDenied,
ApprovalRequired) and the operation scope a tracing sink opens. Hypothesis draws
the configuration: session or not, provenance, an approvable forbid, a guardrail,
injected arguments, ``settings=`` or keywords, a computed resource and context,
sync or async, ``on_deny``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from hypothesis import HealthCheck, example, given, settings

import agentauthz as az
from agentauthz._audit import AuditEvent, Operation, annotating, current_operation
from agentauthz._model import to_cedar_value
from agentauthz.session import SessionConfig
from agentauthz.session._provenance import Provenance
from tests.strategies import guard_arguments, guard_configurations

POLICIES = """
@id("small-payments") permit(principal, action == Action::"pay", resource)
when { context.input.amount <= 500 };
@id("never-to-evil") forbid(principal, action == Action::"pay", resource)
when { context.input.to like "*evil*" };
@id("big-needs-approval") @approval("required")
forbid(principal, action == Action::"pay", resource)
when { context.input.amount > 300 && !context.session.approved };
@id("no-prompt-attacks") forbid(principal, action == Action::"pay", resource)
when { context has guardrail && context.guardrail.input.prompt_attack >= 3 };
"""
# The one attribute of context.guardrail.input a policy reads: a store that cannot reload gets only it.
READ_FACT = ("prompt_attack",)
USER = az.Entity(uid=az.EntityUID("User", "alice"), attrs={"dept": "hr"})
TOOL = az.EntityUID("Tool", "pay")
# What differs between two decisions of the same request: ids, clocks and timings.
UNCOMPARED = ("decision_id", "correlation_id", "timestamp", "elapsed_us")


class Recorder:
    """An audit sink recording each event with the operation it was emitted in."""

    enabled = True

    def __init__(self) -> None:
        self.events: list[tuple[AuditEvent, Operation | None]] = []

    def emit(self, event: AuditEvent) -> None:
        self.events.append((event, current_operation()))


class TracingRecorder(Recorder):
    """A recorder that also wraps each operation, as the OpenTelemetry sink does."""

    def __init__(self) -> None:
        super().__init__()
        self.scopes: list[Operation] = []

    @contextmanager
    def operation(self, operation: Operation) -> Iterator[None]:
        self.scopes.append(operation)
        yield


def _guarded(authz: az.Authorizer, config: dict[str, Any]) -> Any:
    options: dict[str, Any] = {"action": "pay", "on_deny": config["on_deny"]}
    if config["guardrail"]:
        options["guardrail"] = az.LocalDetector()
    if config["resource"]:
        options["resource"] = lambda args: az.EntityUID("Account", args["to"])
    if config["context"]:
        options["context"] = lambda args: {"large": args["amount"] > 100}
    if config["settings"]:
        decorate = authz.guard(settings=az.ToolSettings(**options), name="pay")
    else:
        decorate = authz.guard(name="pay", **options)
    if config["injected"]:
        if config["is_async"]:
            async def pay_injected_async(amount: int, to: str, env: Annotated[str, az.Injected]) -> str:
                return f"paid {amount} to {to} from {env}"
            return decorate(pay_injected_async)

        def pay_injected(amount: int, to: str, env: Annotated[str, az.Injected]) -> str:
            return f"paid {amount} to {to} from {env}"
        return decorate(pay_injected)
    if config["is_async"]:
        async def pay_async(amount: int, to: str) -> str:
            return f"paid {amount} to {to}"
        return decorate(pay_async)

    def pay(amount: int, to: str) -> str:
        return f"paid {amount} to {to}"
    return decorate(pay)


def _by_hand(authz: az.Authorizer, config: dict[str, Any], amount: int, to: str) -> az.Decision:
    """`authorize` of the request the guard documents: its input, guardrail finding and resource."""
    arguments = {"amount": amount, "to": to}
    context: dict[str, Any] = {"large": amount > 100} if config["context"] else {}
    context["input"] = dict(arguments)
    annotation = None
    if config["guardrail"]:
        assessment = az.Guardrail(az.LocalDetector()).assess_arguments(context["input"])
        context["guardrail"] = {"input": {name: value for name, value in assessment.fact().items()
                                          if name in READ_FACT}}
        annotation = {"guardrail": {"input": assessment.audit}}
    resource = az.EntityUID("Account", to) if config["resource"] else TOOL
    with annotating(annotation):
        return authz.authorize(action="pay", resource=resource, context=context)


def _call(tool: Any, config: dict[str, Any], amount: int, to: str) -> tuple[str, Any]:
    kwargs: dict[str, Any] = {"amount": amount, "to": to}
    if config["injected"]:
        kwargs["env"] = "prod"
    try:
        result = tool(**kwargs)
        if config["is_async"]:
            result = asyncio.run(result)
    except az.ApprovalRequired as exc:
        return "approval", exc.decision
    except az.AccessDenied as exc:
        return "denied", exc.decision
    return "returned", result


def _comparable(event: AuditEvent) -> dict[str, Any]:
    fields = dataclasses.asdict(event)
    for name in UNCOMPARED:
        fields.pop(name)
    return fields


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(guard_configurations)
def test_a_guarded_call_decides_as_authorize_of_the_same_request(drawn: dict[str, Any]) -> None:
    config, amount, to = drawn["config"], drawn["amount"], drawn["to"]
    sink = TracingRecorder() if config["tracing"] else Recorder()
    sessions = SessionConfig(provenance=Provenance(tools={"pay"})) if config["provenance"] else None
    authz = az.Authorizer.from_text(POLICIES, audit=[sink], record_requests=True,  # type: ignore[list-item]
                                    sessions=sessions)
    tool = _guarded(authz, config)
    with authz.acting_as(USER), authz.session("s") if config["session"] else _nothing():
        by_hand = _by_hand(authz, config, amount, to)
        [(expected, outside)] = sink.events
        sink.events.clear()
        outcome, value = _call(tool, config, amount, to)

    # The guarded call's first event is its decision (an approval probe may follow it).
    (event, scope), *_ = sink.events
    decided = _comparable(event)
    if "approval" in event.extra:  # a session held the call for a person: the event names the request
        assert config["session"] and event.extra["approval"] == "required"
        decided["extra"] = {key: value for key, value in event.extra.items()
                            if key not in ("approval", "approval_request")}
    assert decided == _comparable(expected)
    assert event.request == expected.request  # the very request and entities the engine got
    assert outside is None and scope == Operation("tool_call", "pay")
    if config["tracing"]:
        assert isinstance(sink, TracingRecorder) and sink.scopes == [Operation("tool_call", "pay")]
    if by_hand.allowed:
        assert outcome == "returned" and value.startswith(f"paid {amount} to {to}")
        return
    if config["on_deny"] == "message":
        assert outcome == "returned" and event.decision_id in value
        return
    assert outcome in ("denied", "approval")
    assert (value.allowed, value.reasons, value.errors) == (False, by_hand.reasons, by_hand.errors) or (
        outcome == "approval")
    # Only a session holds a call for approval; outside one the approvable forbid cannot be lifted.
    assert outcome == "denied" or config["session"]


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _pydantic_arguments(spec: az.ToolSpec, arguments: Any) -> tuple[str, Any]:
    """What validating through the argument model gives: the values in signature order, or the error."""
    try:
        model = spec.validate(arguments)
        values = {name: getattr(model, name) for name in spec.parameters}
        to_cedar_value(values)
    except az.InvalidValueError as exc:
        return "refused", _reason(exc)
    return "validated", values


def _reason(exc: Exception) -> str:
    """The refusal without the tool's name (the argument model's conversion raises it unprefixed)."""
    return str(exc).removeprefix("tool 'tool' got invalid arguments: ")


@settings(max_examples=200, deadline=None)
@given(guard_arguments)
@example({"amount": 2**63, "to": "a", "urgent": False})  # refused by the conversion, not the model
def test_arguments_of_exactly_the_declared_types_validate_as_the_argument_model_validates(
        arguments: Any) -> None:
    authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[])

    @authz.guard
    def tool(amount: int, to: str, urgent: bool) -> str:
        return to

    spec = authz.tools["tool"]
    assert spec._exact_types is not None  # the plan's fast validation applies to this tool
    expected = _pydantic_arguments(spec, arguments)
    try:
        validated, cedar_input = spec.call_arguments(arguments)
    except az.InvalidValueError as exc:
        assert expected == ("refused", _reason(exc))
        return
    assert expected == ("validated", validated) and cedar_input == validated
    assert [type(value) for value in validated.values()] == [int, str, bool]
