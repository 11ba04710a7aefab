"""Unit tests test pure logic: they must never start Ray."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


@pytest.fixture(autouse=True)
def _no_ray() -> Iterator[None]:
    # Unit tests run before the integration tests (see testpaths), so Ray is not running
    # here unless a unit test started it.
    already = _ray_running()
    yield
    if not already and _ray_running():
        sys.modules["ray"].shutdown()
        pytest.fail("a unit test started Ray; move it to tests/integration")
