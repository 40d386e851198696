"""Amazon Bedrock Guardrails as a detector: ``bedrock-runtime`` ``ApplyGuardrail``, mapped to findings.

Every assessment kind maps to findings (content filters and prompt attack,
PII entities and regexes, denied topics, word filters, contextual grounding).
What the guardrail matched (``match`` fields) is never kept. Any failure
(throttling, validation, access, network, an answer without assessments) is
:class:`~agentauthz.GuardrailUnavailable`: the callers turn it into the fact
``available == false`` unless told to raise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

from agentauthz._errors import GuardrailUnavailable
from agentauthz._extras import optional_import
from agentauthz.guardrails._detector import LEVELS, Category, Finding, Level, Source

__all__ = ["BedrockGuardrail", "findings_of"]



class BedrockGuardrail:
    """A Bedrock guardrail (``ApplyGuardrail``) as a :class:`~agentauthz.guardrails._detector.Detector`.

    The guardrail is asked with ``outputScope="FULL"`` so that policies see its
    estimates below its own blocking thresholds too. Each call is billed by
    text units per policy the guardrail configures (see the Bedrock pricing page).

    Args:
        guardrail_id: the guardrail's id or ARN.
        version: its version (``"DRAFT"`` or a number, as a string).
        client: a ``bedrock-runtime`` client (default: one made with boto3 on first use).
        region_name: region of the client made when none is given.

    Raises:
        GuardrailUnavailable: from :meth:`detect`, when the guardrail cannot answer.

    Example:
        >>> from agentauthz.integrations.bedrock import BedrockGuardrail
        >>> BedrockGuardrail("gr-123", "1", client=object()).name
        'bedrock:gr-123:1'
    """

    def __init__(self, guardrail_id: str, version: str, *, client: Any = None,
                 region_name: str | None = None) -> None:
        self.guardrail_id = guardrail_id
        self.version = version
        self._client = client
        self._region_name = region_name

    @property
    def name(self) -> str:
        """``bedrock:<id>:<version>``."""
        return f"bedrock:{self.guardrail_id}:{self.version}"

    @property
    def client(self) -> Any:
        """The ``bedrock-runtime`` client (made with boto3 on first use)."""
        if self._client is None:
            boto3 = optional_import("boto3", extra="aws", needed_by="BedrockGuardrail")
            self._client = boto3.client("bedrock-runtime", region_name=self._region_name)
        return self._client

    def detect(self, text: str, *, source: Source) -> Sequence[Finding]:
        """Apply the guardrail to ``text`` and map its assessments to findings.

        Raises:
            GuardrailUnavailable: the call failed (the message names the error code, never the text).
        """
        try:
            response = self.client.apply_guardrail(
                guardrailIdentifier=self.guardrail_id, guardrailVersion=self.version, source=source,
                content=[{"text": {"text": text}}], outputScope="FULL",
            )
        except Exception as exc:  # throttling, validation, access, network: the text is unassessed
            raise GuardrailUnavailable(f"guardrail {self.name} failed: {_error_code(exc)}") from exc
        return findings_of(response, self.name)

    async def adetect(self, text: str, *, source: Source) -> Sequence[Finding]:
        """Async twin of :meth:`detect` (boto3 is blocking: runs in a worker thread)."""
        return await asyncio.to_thread(self.detect, text, source=source)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        if isinstance(code, str) and code:
            return code[:64]
    return type(exc).__name__


def findings_of(response: Any, name: str = "bedrock") -> list[Finding]:
    """The findings of an ``ApplyGuardrail`` response.

    Raises:
        GuardrailUnavailable: the response holds no assessment list.
    """
    assessments = response.get("assessments") if isinstance(response, Mapping) else None
    if not isinstance(assessments, list):
        raise GuardrailUnavailable(f"guardrail {name} answered without assessments")
    try:
        return [finding for assessment in assessments for finding in _assessment(assessment)]
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise GuardrailUnavailable(f"guardrail {name} answered an unreadable assessment") from exc


def _level(value: Any) -> Level:
    if value not in LEVELS:
        raise ValueError("unknown confidence")
    return cast(Level, value)


def _detected(items: Any) -> Iterator[Mapping[str, Any]]:
    """The entries the guardrail detected (with ``outputScope="FULL"`` it lists the others too)."""
    for item in items:
        if item.get("detected", True) is not False:
            yield item


def _assessment(assessment: Mapping[str, Any]) -> Iterator[Finding]:
    # ``match`` fields (the text matched) are read by no line here.
    for item in assessment.get("contentPolicy", {}).get("filters", []):
        category: Category = "prompt_attack" if item["type"] == "PROMPT_ATTACK" else "content"
        yield Finding(category, str(item["type"]), _level(item["confidence"]), action=str(item["action"]))
    for item in _detected(assessment.get("topicPolicy", {}).get("topics", [])):
        yield Finding("topic", str(item["name"]), action=str(item["action"]))
    words = assessment.get("wordPolicy", {})
    for item in _detected(words.get("customWords", [])):
        yield Finding("word", "CUSTOM", action=str(item["action"]))
    for item in _detected(words.get("managedWordLists", [])):
        yield Finding("word", str(item["type"]), action=str(item["action"]))
    sensitive = assessment.get("sensitiveInformationPolicy", {})
    for item in _detected(sensitive.get("piiEntities", [])):
        yield Finding("pii", str(item["type"]), action=str(item["action"]))
    for item in _detected(sensitive.get("regexes", [])):
        yield Finding("regex", str(item.get("name") or "unnamed"), action=str(item["action"]))
    for item in assessment.get("contextualGroundingPolicy", {}).get("filters", []):
        below = float(item["score"]) < float(item["threshold"])
        yield Finding("grounding", str(item["type"]), "HIGH" if below else "NONE",
                      score=float(item["score"]), action=str(item["action"]))
