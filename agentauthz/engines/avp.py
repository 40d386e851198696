"""Deprecated location of :class:`~agentauthz.VerifiedPermissionsEngine`: use ``agentauthz.avp``.

.. deprecated:: 0.2
   Import ``agentauthz.VerifiedPermissionsEngine`` (or ``agentauthz.avp``); this module goes in 0.3.
"""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "VerifiedPermissionsEngine":
        warnings.warn("agentauthz.engines.avp is deprecated: import agentauthz.VerifiedPermissionsEngine",
                      DeprecationWarning, stacklevel=2)
        from agentauthz.avp._engine import VerifiedPermissionsEngine

        return VerifiedPermissionsEngine
    raise AttributeError(name)
