"""Adversarial suite: one module per attack class (see docs/security.md)."""
