"""Prompt-injection scenarios: scripted agent runs over a small assistant, decided by its policies."""
