"""Leaf modules that plug agentauthz into agent frameworks; each needs its extra."""
