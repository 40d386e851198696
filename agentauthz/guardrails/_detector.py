"""What a detector is: text in, :class:`Finding` values out.

A finding names a category and a type and carries the detector's estimate
(a confidence level, and a score when the detector has one). It never carries
the matched text: findings travel into audit events and session labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = ["CATEGORIES", "LEVELS", "Category", "Detector", "Finding", "Level", "Source"]

#: Where a text comes from: what the user or the model sends (``INPUT``) or what
#: comes back to the model (``OUTPUT``: tool results, retrieved documents).
Source = Literal["INPUT", "OUTPUT"]

#: Confidence levels, as Bedrock Guardrails reports them.
Level = Literal["NONE", "LOW", "MEDIUM", "HIGH"]

#: A level as the Long policies compare (``context.guardrail.input.prompt_attack >= 2``).
LEVELS: dict[str, int] = {"NONE": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3}

#: What a finding is about.
Category = Literal["prompt_attack", "content", "pii", "regex", "topic", "word", "grounding"]

CATEGORIES: tuple[str, ...] = ("prompt_attack", "content", "pii", "regex", "topic", "word", "grounding")


@dataclass(frozen=True)
class Finding:
    """One thing a detector found in a text (never the text it matched).

    Attributes:
        category: ``prompt_attack``, ``content`` (HATE, INSULTS...), ``pii``
            (an entity type such as ``EMAIL``), ``regex`` (the regex's name),
            ``topic`` (the denied topic's name), ``word`` (``CUSTOM`` or
            ``PROFANITY``), ``grounding`` (``GROUNDING`` or ``RELEVANCE``).
        type: what was found within the category.
        confidence: the detector's level, ``NONE`` to ``HIGH``.
        score: a score where the detector has one (grounding: 0.0-1.0).
        action: what the detector suggests (``BLOCKED``, ``ANONYMIZED``, ``NONE``):
            informative only; Cedar decides.

    Example:
        >>> Finding("pii", "EMAIL", "HIGH").level
        3
    """

    category: Category
    type: str
    confidence: Level = "HIGH"
    score: float | None = None
    action: str = "NONE"

    @property
    def level(self) -> int:
        """The confidence as a Long, 0 (NONE) to 3 (HIGH)."""
        return LEVELS[self.confidence]

    def summary(self) -> dict[str, object]:
        """Category, type, confidence, score and action: what an audit event may hold."""
        summary: dict[str, object] = {"category": self.category, "type": self.type,
                                      "confidence": self.confidence, "action": self.action}
        if self.score is not None:
            summary["score"] = self.score
        return summary


@runtime_checkable
class Detector(Protocol):
    """Reads a text and estimates what it holds; decides nothing.

    A detector that cannot assess a text raises
    :class:`~agentauthz.GuardrailUnavailable`; the caller turns that into the
    fact ``available == false`` (or raises, if configured so).
    """

    @property
    def name(self) -> str:
        """A short name for audit events and cache keys (``local``, ``bedrock:<id>:<version>``)."""
        ...

    def detect(self, text: str, *, source: Source) -> Sequence[Finding]:
        """The findings in ``text``.

        Raises:
            GuardrailUnavailable: the text could not be assessed.
        """
        ...

    async def adetect(self, text: str, *, source: Source) -> Sequence[Finding]:
        """Async twin of :meth:`detect`."""
        ...
