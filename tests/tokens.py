"""Signing keys and JWTs made in the tests (no network, no fixtures from outside).

``Issuer`` holds an RSA key pair and its JWKS and mints tokens the way Cognito
or an OIDC provider would, with overrides to make them wrong in one way.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

jwt = pytest.importorskip("jwt")
pytest.importorskip("cryptography")
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from jwt.algorithms import ECAlgorithm, RSAAlgorithm  # noqa: E402

POOL_ID = "us-east-1_TestPool1"
COGNITO_ISSUER = f"https://cognito-idp.us-east-1.amazonaws.com/{POOL_ID}"
CLIENT_ID = "app-client-1"
OIDC_ISSUER = "https://idp.example.com"

_KEYS: dict[str, Any] = {}


def rsa_key(name: str = "default") -> Any:
    """An RSA private key, made once per name per test session (2048-bit keys take time)."""
    if name not in _KEYS:
        _KEYS[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEYS[name]


def jwk_of(key: Any, kid: str, alg: str | None = "RS256") -> dict[str, Any]:
    public = key.public_key()
    algorithm = RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(public))
    jwk.update(kid=kid, use="sig")
    if alg:
        jwk["alg"] = alg
    return jwk


def ec_key() -> Any:
    if "ec" not in _KEYS:
        _KEYS["ec"] = ec.generate_private_key(ec.SECP256R1())
    return _KEYS["ec"]


@dataclass
class Issuer:
    """Mints tokens of one issuer signed with one key (kid ``k1``)."""

    issuer: str = COGNITO_ISSUER
    kid: str = "k1"
    key: Any = field(default_factory=rsa_key)
    cognito: bool = True

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [jwk_of(self.key, self.kid)]}

    def claims(self, kind: str = "id", sub: str = "user-1", **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"sub": sub, "iss": self.issuer, "iat": now, "exp": now + 600}
        if self.cognito:
            claims["token_use"] = kind
            claims["aud" if kind == "id" else "client_id"] = CLIENT_ID
        else:
            claims["aud"] = CLIENT_ID
        claims.update(extra)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], *, key: Any = None, alg: str = "RS256",
             headers: dict[str, Any] | None = None) -> str:
        header = {"kid": self.kid, **(headers or {})}
        token: str = jwt.encode(claims, key if key is not None else self.key, algorithm=alg, headers=header)
        return token

    def id_token(self, sub: str = "user-1", **extra: Any) -> str:
        return self.sign(self.claims("id", sub, **extra))

    def access_token(self, sub: str = "user-1", **extra: Any) -> str:
        return self.sign(self.claims("access", sub, **extra))


def unsigned(claims: dict[str, Any]) -> str:
    """A token with ``alg: none`` and no signature."""
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def tampered(token: str) -> str:
    """The same header and signature over a payload with another subject."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"
