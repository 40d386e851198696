"""One batch authorization call into cedarpy, answers as plain JSON objects.

cedarpy's public ``is_authorized_batch`` writes each context as JSON, calls its
extension module, parses each answer and wraps it in ``AuthzResult`` and
``Diagnostics`` objects. On a small tool call the wrapping is about a twentieth
of the call, so :func:`authorize_batch` calls the extension function the
wrapper calls, with the arguments the wrapper would pass, and keeps the parsed
answers. That function is private to cedarpy: if a release changes it (a
``TypeError`` or ``AttributeError``), the public wrapper is used from then on.

An answer looks like ``{"decision": "Allow" | "Deny" | "NoDecision",
"diagnostics": {"reason": [policy ids], "errors": [messages]}}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import cedarpy

__all__ = ["authorize_batch", "private_batch", "public_batch"]

_log = logging.getLogger("agentauthz")

# Cleared for good when cedarpy's private entry point no longer takes what its wrapper passed.
_use_private = True


def authorize_batch(requests: Sequence[dict[str, Any]], policy_set: Any, entity_set: Any,
                    schema: Any) -> list[dict[str, Any]]:
    """Decide ``requests`` (Cedar JSON; a context, if any, as JSON text) with pre-parsed handles.

    Raises:
        Exception: whatever cedarpy raises for the batch as a whole.
    """
    global _use_private
    if _use_private:
        try:
            return private_batch(requests, policy_set, entity_set, schema)
        except (TypeError, AttributeError) as exc:
            _use_private = False
            # The type only: the message could quote the requests.
            _log.warning("cedarpy's batch entry point changed (%s); using its public wrapper",
                         type(exc).__name__)
    return public_batch(requests, policy_set, entity_set, schema)


def private_batch(requests: Sequence[dict[str, Any]], policy_set: Any, entity_set: Any,
                  schema: Any) -> list[dict[str, Any]]:
    """The batch through cedarpy's extension function, called as its public wrapper calls it."""
    answers = cedarpy._internal.is_authorized_batch(list(requests), policy_set, entity_set._inner, schema,
                                                    False)
    return [_parsed(answer) for answer in answers]


_decoder = json.JSONDecoder()
# cedarpy writes its timings last; no JSON string inside an answer can hold this text (a quote in
# a string is escaped), so the last one found starts the timings.
_METRICS = ',"metrics":{'


def _parsed(answer: str) -> Any:
    # The timings are a third of an answer and nobody reads them: the answer is decoded without
    # them when what precedes them is one whole JSON object holding a decision, else as it is.
    # ``raw_decode`` skips ``json.loads``'s argument checks (a third of its time on an answer);
    # anything but one whole JSON value goes to ``json.loads``, which raises.
    if type(answer) is str:
        cut = answer.rfind(_METRICS)
        if cut > 0 and answer.endswith("}}"):
            try:
                value, end = _decoder.raw_decode(answer[:cut] + "}")
            except ValueError:
                end = -1
            if end == cut + 1 and type(value) is dict and "decision" in value and "diagnostics" in value:
                return value
    try:
        value, end = _decoder.raw_decode(answer)
    except (TypeError, ValueError):
        end = -1
    return value if end == len(answer) else json.loads(answer)


def public_batch(requests: Sequence[dict[str, Any]], policy_set: Any, entity_set: Any,
                 schema: Any) -> list[dict[str, Any]]:
    """The batch through cedarpy's public ``is_authorized_batch``."""
    return [
        {"decision": result.decision.value,
         "diagnostics": {"reason": list(result.diagnostics.reasons),
                         "errors": list(result.diagnostics.errors)}}
        for result in cedarpy.is_authorized_batch(list(requests), policy_set, entity_set, schema=schema)
    ]
