"""Large batches pause the cyclic garbage collector and leave it as they found it."""

from __future__ import annotations

import contextlib
import gc
import threading

import agentauthz as az
from agentauthz._collector import LARGE_BATCH, collector_paused


def _requests(n: int) -> list[az.Request]:
    return [az.Request(az.EntityUID("User", f"u{i}"), az.EntityUID("Action", "read"),
                       az.EntityUID("Doc", f"d{i}")) for i in range(n)]


def test_the_collector_is_paused_inside_and_enabled_again_after() -> None:
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_the_application_disabled_stays_disabled() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_batches_in_threads_enable_the_collector_only_when_the_last_ends() -> None:
    first_in, second_done = threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with collector_paused():
            first_in.set()
            second_done.wait(5)
            seen.append(gc.isenabled())

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(5)
    with collector_paused():
        pass
    second_done.set()
    thread.join(5)
    assert seen == [False] and gc.isenabled()


def test_authorize_many_of_a_large_batch_decides_and_leaves_the_collector_on() -> None:
    authz = az.Authorizer.from_text('permit(principal, action, resource == Doc::"d1");')
    decisions = authz.authorize_many(_requests(LARGE_BATCH))
    assert [d.allowed for d in decisions[:3]] == [False, True, False]
    assert gc.isenabled()


def test_authorize_many_that_raises_still_enables_the_collector() -> None:
    authz = az.Authorizer.from_text("permit(principal, action, resource);")
    with contextlib.suppress(Exception):  # any refusal will do: the collector is what is checked
        authz.authorize_many([*_requests(LARGE_BATCH), "not a request"])  # type: ignore[list-item]
    assert gc.isenabled()
