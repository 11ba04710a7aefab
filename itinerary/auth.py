"""API keys of the HTTP edge: parse `Authorization: Bearer <key>` and decide 401 / 403 / allow.

Pure logic with no web framework in it, so the ingress only maps a `Denial` onto a
response. Keys are hashed once when loaded and the presented key is compared with every
configured key in constant time, so neither timing nor the answer tells which keys exist
or how long they are.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import SecretStr

from itinerary.config.runtime import SecuritySettings

CHALLENGE = {"WWW-Authenticate": "Bearer"}
UNAUTHENTICATED = "a valid API key is required: send Authorization: Bearer <key>"
FORBIDDEN = "this API key may not use this endpoint; it needs an admin key"


class Access(enum.Enum):
    """What an endpoint needs: `INGEST` (post events) or `ADMIN` (read profiles and status)."""

    INGEST = "ingest"
    ADMIN = "admin"


@dataclass(frozen=True)
class Denial:
    """Why a request is refused: HTTP status (401 or 403), the error text and headers to send."""

    status: int
    error: str
    headers: dict[str, str]


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None if absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    """The configured ingest and admin keys; `check` tells whether a request may proceed.

    An admin key may do everything an ingest key may. With no key configured every
    request is allowed (the API is open, for local use).
    """

    def __init__(self, ingest: Iterable[str] = (), admin: Iterable[str] = ()) -> None:
        # Only digests are kept: equal length, so compare_digest does not leak key lengths.
        # An empty key (an empty env variable) still turns auth on; no token matches it.
        self._keys = [(_digest(k), Access.INGEST) for k in ingest] + [(_digest(k), Access.ADMIN) for k in admin]

    @classmethod
    def from_settings(cls, settings: SecuritySettings) -> ApiKeys:
        return cls(_values(settings.ingest_keys), _values(settings.admin_keys))

    def __repr__(self) -> str:
        return f"ApiKeys({len(self._keys)} keys)"

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def role(self, token: str) -> Access | None:
        """The strongest access `token` grants, or None; every key is compared, no early exit."""
        presented = _digest(token)
        ingest = admin = False
        for digest, access in self._keys:
            match = hmac.compare_digest(presented, digest)
            ingest |= match and access is Access.INGEST
            admin |= match and access is Access.ADMIN
        if admin:
            return Access.ADMIN
        return Access.INGEST if ingest else None

    def check(self, authorization: str | None, need: Access) -> Denial | None:
        """None if a request with this Authorization header may use an endpoint needing `need`.

        A missing, malformed or unknown key gets the same 401, so a client learns nothing
        about the configured keys; a valid ingest key on an admin endpoint gets 403.
        """
        if not self.enabled:
            return None
        token = bearer_token(authorization)
        role = self.role(token) if token is not None else None
        if role is None:
            return Denial(401, UNAUTHENTICATED, dict(CHALLENGE))
        if need is Access.ADMIN and role is not Access.ADMIN:
            return Denial(403, FORBIDDEN, {})
        return None


def _values(secrets: Iterable[SecretStr]) -> list[str]:
    return [s.get_secret_value() for s in secrets]
