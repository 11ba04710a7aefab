"""Shared test settings: where the repository and the XDM fixtures are."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import redis_server

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "config" / "examples" / "demo.yaml"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis for the redis backend's tests (a private redis-server unless one is given)."""
    with redis_server() as url:
        yield url
