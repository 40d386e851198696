"""Faults the local Verified Permissions endpoint can inject, to test that a client fails closed.

A :class:`Fault` makes an operation slow, throttled, failing or lying;
:class:`Faults` holds the injected ones in order and hands out the one that
applies to each call; :func:`distorted` applies the lying kinds to an answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Fault", "Faults", "distorted"]


@dataclass(frozen=True)
class Fault:
    """Something going wrong at the endpoint, for tests. Build one with the class methods.

    Example:
        >>> Fault.throttling().kind
        'error'
    """

    kind: Literal["delay", "error", "raw", "drop_results", "decision", "echo", "duplicate"]
    seconds: float = 0.0
    code: str = ""
    status: int = 200
    body: bytes = b""
    value: str = ""
    count: int | None = None

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer after ``seconds`` (longer than the client's read timeout: a timeout)."""
        return cls("delay", seconds=seconds)

    @classmethod
    def throttling(cls) -> Fault:
        """``ThrottlingException`` (HTTP 400), which clients retry with backoff."""
        return cls("error", code="ThrottlingException", status=400)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """``InternalServerException`` with this HTTP status."""
        return cls("error", code="InternalServerException", status=status)

    @classmethod
    def error(cls, code: str, status: int = 400) -> Fault:
        """Any modeled error (``AccessDeniedException``, ``ValidationException``, ...)."""
        return cls("error", code=code, status=status)

    @classmethod
    def malformed_json(cls, body: bytes = b'{"decision": "ALLOW", ') -> Fault:
        """HTTP 200 with a body that is not JSON (botocore reads it as ``{}``)."""
        return cls("raw", status=200, body=body)

    @classmethod
    def raw(cls, status: int, body: bytes) -> Fault:
        """Any status and body."""
        return cls("raw", status=status, body=body)

    @classmethod
    def drop_results(cls, count: int | None = None) -> Fault:
        """Leave out the last ``count`` batch results (all when None); IsAuthorized loses its decision."""
        return cls("drop_results", count=count)

    @classmethod
    def decision(cls, value: str = "MAYBE") -> Fault:
        """Answer this decision value (outside AVP's ALLOW/DENY enum, or differently cased)."""
        return cls("decision", value=value)

    @classmethod
    def mismatched_echo(cls) -> Fault:
        """Batch results echo a request that was never sent (a different principal id)."""
        return cls("echo")

    @classmethod
    def duplicate_results(cls) -> Fault:
        """Every batch result twice."""
        return cls("duplicate")


@dataclass
class _Injection:
    operation: str
    fault: Fault
    remaining: int | None

class Faults:
    """The injected faults, applied in the order injected; thread-safe."""

    def __init__(self) -> None:
        self._injected: list[_Injection] = []
        self._lock = threading.Lock()

    def add(self, operation: str, fault: Fault, times: int | None) -> None:
        """Apply ``fault`` to ``operation`` (``"*"``: every one), ``times`` times or for good."""
        with self._lock:
            self._injected.append(_Injection(operation, fault, times))

    def clear(self) -> None:
        """Remove every injected fault."""
        with self._lock:
            self._injected.clear()

    def take(self, operation: str) -> Fault | None:
        """The first fault that applies to a call of ``operation``, counted as used."""
        with self._lock:
            for injection in self._injected:
                if injection.operation in ("*", operation):
                    if injection.remaining is not None:
                        injection.remaining -= 1
                        if injection.remaining <= 0:
                            self._injected.remove(injection)
                    return injection.fault
        return None


def distorted(answer: dict[str, Any], fault: Fault) -> dict[str, Any]:
    """``answer`` as the lying kinds of ``fault`` change it."""
    results = answer.get("results")
    if fault.kind == "drop_results":
        if isinstance(results, list):
            keep = 0 if fault.count is None else max(0, len(results) - fault.count)
            answer["results"] = results[:keep]
        else:
            answer.pop("decision", None)
    elif fault.kind == "decision":
        for item in results if isinstance(results, list) else [answer]:
            item["decision"] = fault.value
    elif fault.kind == "echo" and isinstance(results, list):
        for item in results:
            principal = item["request"].get("principal") or {}
            item["request"]["principal"] = {**principal,
                                            "entityId": str(principal.get("entityId", "")) + "-other"}
    elif fault.kind == "duplicate" and isinstance(results, list):
        answer["results"] = [item for item in results for _ in range(2)]
    return answer
