"""Read-only bearer tokens for HMIs that fetch result pictures without a browser login (`station.hmi_tokens`).

A token is a random secret the HMI sends as `Authorization: Bearer <token>`; the config holds only its SHA-256
(`sha256:<hex>`). SHA-256 rather than argon2 because a token is 256 random bits, not a password (nothing to guess),
and it is checked on every picture request. A token opens `GET /api/pictures/{id}.jpg` and nothing else; it is never
logged, and a config error names the token's name, never its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import Protocol

from pydantic import SecretStr

TOKEN_HASH_PREFIX = "sha256:"
TOKEN_HINT = ("create one with: python -c \"import secrets, hashlib; t = secrets.token_urlsafe(32); "
              "print('token:', t); print('token_hash: sha256:' + hashlib.sha256(t.encode()).hexdigest())\"")


class NamedTokenHash(Protocol):
    name: str
    token_hash: SecretStr


def hash_token(token: str) -> str:
    return TOKEN_HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh (token, token_hash) pair: the token goes to the HMI, the hash to the config."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


class HmiTokens:
    """Which configured HMI a bearer token belongs to (constant-time comparison of the hashes)."""

    def __init__(self, tokens: Sequence[NamedTokenHash]) -> None:
        self._hashes = [(t.name, t.token_hash.get_secret_value().encode()) for t in tokens]

    def holder(self, authorization: str | None) -> str | None:
        """The name of the HMI whose token `authorization` ("Bearer <token>") carries, else None."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or not self._hashes:
            return None
        presented = hash_token(token.strip()).encode()
        found = None
        for name, expected in self._hashes:  # every entry compared, so timing does not tell which matched
            if hmac.compare_digest(presented, expected):
                found = name
        return found
