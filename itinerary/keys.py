"""API keys for local runs (demo, bench): random keys in the environment for the demo config.

`config/examples/demo.yaml` reads its ingest and admin keys from ITINERARY_INGEST_KEY and
ITINERARY_ADMIN_KEY. A local run calls `ensure_local_keys()` before loading that config so
the variables exist, then sends the returned keys on its own requests.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import MutableMapping
from dataclasses import dataclass, field

INGEST_KEY_ENV = "ITINERARY_INGEST_KEY"
ADMIN_KEY_ENV = "ITINERARY_ADMIN_KEY"


@dataclass(frozen=True)
class LocalKeys:
    """One ingest key and one admin key, with the request headers that carry them."""

    ingest: str = field(repr=False)
    admin: str = field(repr=False)

    @property
    def ingest_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.ingest}"}

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin}"}


def ensure_local_keys(environ: MutableMapping[str, str] | None = None) -> LocalKeys:
    """Set ITINERARY_INGEST_KEY and ITINERARY_ADMIN_KEY to random keys unless already set.

    Keys already in the environment are kept, so an operator can choose them; the keys in
    effect are returned.
    """
    env = os.environ if environ is None else environ
    ingest = env.setdefault(INGEST_KEY_ENV, secrets.token_urlsafe(24))
    admin = env.setdefault(ADMIN_KEY_ENV, secrets.token_urlsafe(24))
    return LocalKeys(ingest=ingest, admin=admin)
