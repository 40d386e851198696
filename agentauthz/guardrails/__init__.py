"""Guardrail signals as policy facts: detectors estimate, Cedar decides.

A :class:`~agentauthz.guardrails._detector.Detector` reads a text and returns
findings (prompt attack, PII entity types, denied topics...). The tool call
path turns the findings on a call's own arguments into ``context.guardrail.input``;
tool results and retrieved documents become session labels
(``guardrail:prompt_attack:high``, ``guardrail:pii:EMAIL``) before the model
reads them, and the end user's own message, where an integration sees it,
labels of its own (``guardrail:user:prompt_attack:high``). Policies read them;
a detector never allows or denies anything.

Public names: ``az.Finding``, ``az.Detector``, ``az.LocalDetector``,
``az.Guardrail`` and ``agentauthz.integrations.bedrock.BedrockGuardrail``.
"""
