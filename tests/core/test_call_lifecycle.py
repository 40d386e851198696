"""A call's lifecycle without a ``with`` block: begin, then complete() or fail() from an after-hook.

Runtimes with separate before and after hooks (Strands, MCP middleware) begin
a call in one hook and settle it in the other. The session counting and the
audit trail are those of ``with call:``: a completed call counts, a failed
one never does, one never settled stays in flight and keeps counting, and
settling adds no audit event (each decision has exactly one).
"""

from __future__ import annotations

import asyncio

import pytest

import agentauthz as az
from agentauthz.session import SessionConfig

ALICE = az.EntityUID("User", "alice")
TWO_PINGS = """
@id("all") permit(principal, action, resource);
@id("two-pings") forbid(principal, action == Action::"ping", resource)
when { context has session && context.session.calls.ping >= 2 };
"""


def make(config: SessionConfig | None = None) -> tuple[az.Authorizer, az.MemorySink]:
    sink = az.MemorySink()
    authz = az.Authorizer.from_text(TWO_PINGS, audit=[sink], sessions=config)

    @authz.guard
    def ping(host: str) -> str:
        return f"pong {host}"

    return authz, sink


def test_a_call_completed_outside_a_block_counts_once() -> None:
    authz, sink = make()
    with authz.acting_as(ALICE), authz.session("c") as session:
        call = authz.begin_tool_call("ping", {"host": "a"}, call_id="tc-1")
        assert call.admits
        assert session.state().pending[0].external_id == "tc-1"  # in flight until the after-hook
        assert call.complete() is True
        assert call.complete() is False  # settled once
        call.fail()  # too late: a completed call stays counted
        assert session.state().calls == {"ping": 1}
        assert session.state().pending == ()
    assert [event.decision for event in sink.events] == ["allow"]  # settling is no decision


def test_a_call_failed_outside_a_block_is_released_at_once() -> None:
    authz, sink = make()
    with authz.acting_as(ALICE), authz.session("c") as session:
        call = authz.begin_call(action="ping", resource=az.EntityUID("Tool", "ping"),
                                context={"input": {"host": "a"}})
        call.fail()
        assert session.state().pending == ()
        assert session.state().calls == {}
        assert call.complete() is False  # a released call never counts afterwards
        assert session.state().calls == {}
    assert len(sink.events) == 1


def test_a_call_never_settled_keeps_counting_towards_a_limit() -> None:
    authz, _ = make()
    with authz.acting_as(ALICE), authz.session("c") as session:
        first = authz.begin_tool_call("ping", {"host": "a"})
        second = authz.begin_tool_call("ping", {"host": "b"})
        assert first.admits and second.admits
        # Neither after-hook ran (a crashed process, a lost hook): both stay in flight.
        third = authz.begin_tool_call("ping", {"host": "c"})
        assert not third.admits
        assert third.decision.reasons == ("two-pings",)
        assert len(session.state().pending) == 2
        second.fail()
        assert authz.begin_tool_call("ping", {"host": "d"}).admits


def test_fail_inside_a_block_releases_the_call_when_the_block_ends() -> None:
    authz, _ = make()
    with authz.acting_as(ALICE), authz.session("c") as session:
        with authz.begin_tool_call("ping", {"host": "a"}) as call:
            call.fail()
            assert len(session.state().pending) == 1  # released as the block ends, as before
        assert session.state().pending == ()
        assert session.state().calls == {}


def test_a_denied_call_settles_to_nothing() -> None:
    authz, _ = make()
    with authz.acting_as(ALICE), authz.session("c") as session:
        for host in "ab":
            authz.begin_tool_call("ping", {"host": host}).complete()
        denied = authz.begin_tool_call("ping", {"host": "c"})
        assert not denied.admits
        assert denied.complete() is False
        denied.fail()
        assert session.state().calls == {"ping": 2}


def test_without_a_session_a_begun_call_only_decides() -> None:
    authz, sink = make()
    with authz.acting_as(ALICE):
        call = authz.begin_call(action="ping", resource=az.EntityUID("Tool", "ping"))
        assert call.admits and call.session is None
        assert call.complete() is False
        call.fail()
    assert len(sink.events) == 1


def test_the_async_twins_begin_the_same_lifecycle() -> None:
    authz, sink = make(SessionConfig(sums={"ship": ["weight"]}))

    async def run() -> tuple[bool, bool]:
        with authz.acting_as(ALICE), authz.session("c"):
            shipped = await authz.abegin_call(action="ship", resource=az.EntityUID("Tool", "ship"),
                                              context={"input": {"weight": 3}})
            pinged = await authz.abegin_tool_call("ping", {"host": "a"})
            await asyncio.sleep(0)  # the after-hook runs later, in another step of the loop
            return shipped.complete(), pinged.complete()

    assert asyncio.run(run()) == (True, True)
    with authz.acting_as(ALICE), authz.session("c") as session:
        assert session.state().calls == {"ping": 1, "ship": 1}
        assert session.state().totals == {"ship": {"weight": 3}}
    assert [event.action for event in sink.events] == ['Action::"ship"', 'Action::"ping"']


@pytest.mark.parametrize("settle", ["complete", "fail"])
def test_settling_twice_in_any_order_changes_nothing(settle: str) -> None:
    authz, _ = make()
    with authz.acting_as(ALICE), authz.session("c") as session:
        call = authz.begin_tool_call("ping", {"host": "a"})
        getattr(call, settle)()
        state = session.state()
        call.complete()
        call.fail()
        call.release()
        assert session.state().calls == state.calls
        assert session.state().pending == state.pending
