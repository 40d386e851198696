"""Options of :class:`~agentauthz.VerifiedPermissionsEngine`, grouped as httpx groups ``Timeout``, ``Limits``.

``retry=`` (:class:`Retry`) says how long each call may take and how often it
is tried, ``cache=`` (:class:`DecisionCache`) how long decisions are kept,
``batching=`` (:class:`Batching`) how requests are grouped and sent. The flat
keywords they replace (``timeout``, ``max_attempts``, ``deadline``,
``cache_ttl``, ``cache_size``, ``min_batch``, ``max_workers``) still work for
one release, with a DeprecationWarning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from agentauthz._errors import ConfigurationError
from agentauthz.avp._wire import BATCH_LIMIT

__all__ = ["Batching", "DecisionCache", "EngineKeywords", "Retry", "engine_options"]


@dataclass(frozen=True)
class Retry:
    """How long each Verified Permissions call may take, and how often it is tried.

    Attributes:
        timeout: connect and read timeout, seconds, of each attempt (clients the
            engine builds).
        max_attempts: attempts per call, retries included (standard retry mode:
            throttling and 5xx are retried with backoff; clients the engine builds).
        deadline: seconds one ``decide`` waits for AVP in all, whatever the
            client's own settings; None: ``max_attempts * 2 * timeout + 2 ** max_attempts``.

    Raises:
        ConfigurationError: ``max_attempts`` below 1, or ``timeout`` not positive.

    Example:
        >>> Retry(timeout=2.0, max_attempts=2).total
        12.0

    .. versionadded:: 0.2
    """

    timeout: float = 5.0
    max_attempts: int = 3
    deadline: float | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.timeout <= 0:
            raise ConfigurationError("max_attempts must be at least 1, timeout positive")

    @property
    def total(self) -> float:
        """Seconds one ``decide`` waits for AVP in all: ``deadline``, or the default it stands for."""
        if self.deadline is not None:
            return self.deadline
        backoff: int = 2**self.max_attempts
        return self.max_attempts * 2 * self.timeout + backoff


@dataclass(frozen=True)
class DecisionCache:
    """Keep decisions, keyed by the request and the entities sent with it.

    Attributes:
        ttl: seconds a decision is kept.
        size: most decisions kept (the least recently used go first).

    Raises:
        ConfigurationError: ``ttl`` not positive, or ``size`` negative.

    Example:
        >>> DecisionCache(ttl=60).size
        10000

    .. versionadded:: 0.2
    """

    ttl: float
    size: int = 10_000

    def __post_init__(self) -> None:
        if self.ttl <= 0:
            raise ConfigurationError("cache_ttl must be positive (or None for no cache)")
        if self.size < 0:
            raise ConfigurationError("the decision cache size must not be negative")


@dataclass(frozen=True)
class Batching:
    """How the requests of one ``decide`` are grouped and sent.

    Attributes:
        min_batch: smallest group sent as one BatchIsAuthorized call; smaller
            groups go as single IsAuthorized calls. 2 (the default) makes the
            fewest calls; 30 the cheapest bill where AVP prices a batch call
            like 30 single ones.
        max_workers: concurrent AVP calls of one ``decide``.

    Raises:
        ConfigurationError: ``min_batch`` outside 2 to 30, or ``max_workers`` below 1.

    Example:
        >>> Batching(min_batch=30).max_workers
        4

    .. versionadded:: 0.2
    """

    min_batch: int = 2
    max_workers: int = 4

    def __post_init__(self) -> None:
        if self.max_workers < 1:
            raise ConfigurationError("max_workers must be at least 1")
        if not 2 <= self.min_batch <= BATCH_LIMIT:
            raise ConfigurationError(f"min_batch must be 2 to {BATCH_LIMIT}")


class EngineKeywords(TypedDict, total=False):
    """The flat keywords of ``VerifiedPermissionsEngine`` that the option objects replace (deprecated)."""

    timeout: float
    max_attempts: int
    deadline: float | None
    cache_ttl: float | None
    cache_size: int
    min_batch: int
    max_workers: int


#: Deprecated keyword -> (option keyword, field of its object).
_MOVED = {
    "timeout": ("retry", "timeout"), "max_attempts": ("retry", "max_attempts"),
    "deadline": ("retry", "deadline"), "cache_ttl": ("cache", "ttl"), "cache_size": ("cache", "size"),
    "min_batch": ("batching", "min_batch"), "max_workers": ("batching", "max_workers"),
}
_CLASS_NAMES = {"retry": "Retry", "cache": "DecisionCache", "batching": "Batching"}


def engine_options(
    retry: Retry | None, cache: DecisionCache | None, batching: Batching | None, keywords: EngineKeywords
) -> tuple[Retry, DecisionCache | None, Batching]:
    """The engine's options, with the deprecated flat ``keywords`` folded in.

    Raises:
        TypeError: a keyword the engine never took.
        ConfigurationError: a deprecated keyword next to the option object that
            replaces it, or a value the option refuses.
    """
    unknown = sorted(set(keywords) - set(_MOVED))
    if unknown:
        raise TypeError(f"VerifiedPermissionsEngine() got unexpected keyword arguments {unknown}")
    given = {"retry": retry, "cache": cache, "batching": batching}
    moved: dict[str, dict[str, Any]] = {"retry": {}, "cache": {}, "batching": {}}
    for name, value in keywords.items():
        option, member = _MOVED[name]
        if given[option] is not None:
            raise ConfigurationError(f"{name}= and {option}= both given: set {member} in {option}=")
        warnings.warn(f"VerifiedPermissionsEngine({name}=) is deprecated: use "
                      f"{option}={_CLASS_NAMES[option]}({member}=...)", DeprecationWarning, stacklevel=3)
        moved[option][member] = value
    retry = retry or replace(Retry(), **moved["retry"])
    batching = batching or replace(Batching(), **moved["batching"])
    if moved["cache"].get("ttl") is not None:
        cache = DecisionCache(**moved["cache"])
    return retry, cache, batching
