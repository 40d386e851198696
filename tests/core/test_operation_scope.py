"""Operation scopes: what a sink sees around a tool call's or a filter's decisions, and what it cannot do.

A sink with an ``operation()`` method (the OpenTelemetry one) wraps each tool call
and filter. Whatever that method does (raise, swallow the call's exception), the
call's outcome stays the policy's: a refusal is never turned into a call that ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import agentauthz as az
from agentauthz._audit import AuditEvent, Operation, current_operation

POLICIES = '@id("reads") permit(principal, action == Action::"read", resource);'
USER = az.EntityUID("User", "u")


class Recording:
    """A sink recording each event with the operation it was made in."""

    enabled = True

    def __init__(self) -> None:
        self.seen: list[tuple[str, Operation | None]] = []
        self.scopes: list[Operation] = []

    def emit(self, event: AuditEvent) -> None:
        self.seen.append((event.decision, current_operation()))

    @contextmanager
    def operation(self, operation: Operation) -> Iterator[None]:
        self.scopes.append(operation)
        yield


class Swallowing:
    """A broken sink: its operation context swallows whatever the call raises."""

    enabled = True

    def emit(self, event: AuditEvent) -> None:
        pass

    def operation(self, operation: Operation) -> Any:
        class Context:
            def __enter__(self) -> None:
                return None

            def __exit__(self, *exc_info: object) -> bool:
                return True

        return Context()


class Failing:
    """A broken sink: its operation context fails on the way in or out."""

    enabled = True

    def __init__(self, where: str) -> None:
        self.where = where

    def emit(self, event: AuditEvent) -> None:
        pass

    @contextmanager
    def operation(self, operation: Operation) -> Iterator[None]:
        if self.where == "enter":
            raise RuntimeError("sink broke on enter")
        yield
        raise RuntimeError("sink broke on exit")


def guarded(sink: object) -> tuple[az.Authorizer, Any, Any, list[str]]:
    authz = az.Authorizer.from_text(POLICIES, audit=[sink])  # type: ignore[list-item]
    ran: list[str] = []

    @authz.guard(action="read")
    def read(key: str) -> str:
        ran.append(key)
        return "read"

    @authz.guard(action="write")
    def write(key: str) -> str:
        ran.append(key)
        return "written"

    return authz, read, write, ran


def test_a_tool_calls_events_name_the_tool_and_a_filters_events_name_the_filter() -> None:
    sink = Recording()
    authz, read, _, _ = guarded(sink)
    with authz.acting_as(USER):
        read("k")
        authz.filter([az.EntityUID("Doc", "a")], action="read", resource=lambda uid: uid)
        authz.authorize(principal=USER, action="read", resource=az.EntityUID("Doc", "b"))
    assert sink.seen == [("allow", Operation("tool_call", "read")), ("allow", Operation("filter")),
                         ("allow", None)]
    assert sink.scopes == [Operation("tool_call", "read"), Operation("filter")]
    assert current_operation() is None


@pytest.mark.parametrize("sink", [Swallowing(), Failing("enter"), Failing("exit")],
                         ids=["swallows", "fails-on-enter", "fails-on-exit"])
def test_a_broken_operation_sink_never_changes_what_a_call_does(sink: object) -> None:
    authz, read, write, ran = guarded(sink)
    with authz.acting_as(USER):
        assert read("k") == "read"
        with pytest.raises(az.AccessDenied):
            write("k")
        call = authz.begin_tool_call("write", {"key": "k"})
        assert not call.admits
    with pytest.raises(az.IdentityError):
        read("k")
    assert ran == ["k"]
