"""ApplyGuardrail responses that validate against botocore's service model, one per assessment kind.

Every ``match`` holds a canary string: tests check it never leaves the detector.
"""

from __future__ import annotations

from typing import Any

#: What the guardrail "matched"; it must appear in no finding, fact, label, audit event or error.
CANARY = "canary-7f3a@leak.example"

USAGE = {
    "topicPolicyUnits": 1, "contentPolicyUnits": 1, "wordPolicyUnits": 1,
    "sensitiveInformationPolicyUnits": 1, "sensitiveInformationPolicyFreeUnits": 0,
    "contextualGroundingPolicyUnits": 0,
}


def response(*assessments: dict[str, Any], intervened: bool = True) -> dict[str, Any]:
    return {
        "usage": USAGE,
        "action": "GUARDRAIL_INTERVENED" if intervened else "NONE",
        "outputs": [{"text": "blocked"}] if intervened else [],
        "assessments": list(assessments),
    }


def content(kind: str, confidence: str, *, detected: bool = True) -> dict[str, Any]:
    return {"contentPolicy": {"filters": [{
        "type": kind, "confidence": confidence, "filterStrength": "HIGH",
        "action": "BLOCKED" if detected else "NONE", "detected": detected}]}}


def pii(*types: str, detected: bool = True) -> dict[str, Any]:
    return {"sensitiveInformationPolicy": {
        "piiEntities": [{"match": CANARY, "type": kind, "action": "ANONYMIZED", "detected": detected}
                        for kind in types],
        "regexes": []}}


def regex(name: str) -> dict[str, Any]:
    return {"sensitiveInformationPolicy": {"piiEntities": [], "regexes": [
        {"name": name, "match": CANARY, "regex": "canary-[0-9a-f]+", "action": "BLOCKED", "detected": True}]}}


def topic(name: str, *, detected: bool = True) -> dict[str, Any]:
    return {"topicPolicy": {"topics": [
        {"name": name, "type": "DENY", "action": "BLOCKED" if detected else "NONE", "detected": detected}]}}


def words() -> dict[str, Any]:
    return {"wordPolicy": {
        "customWords": [{"match": CANARY, "action": "BLOCKED", "detected": True}],
        "managedWordLists": [{"match": CANARY, "type": "PROFANITY", "action": "BLOCKED", "detected": True}]}}


def grounding(score: float, threshold: float = 0.75) -> dict[str, Any]:
    return {"contextualGroundingPolicy": {"filters": [
        {"type": "GROUNDING", "threshold": threshold, "score": score,
         "action": "BLOCKED" if score < threshold else "NONE", "detected": score < threshold}]}}


CLEAN = response(intervened=False)
