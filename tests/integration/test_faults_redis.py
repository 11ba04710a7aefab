"""The shard-kill fault test again, with every shard, gateway and journey store on Redis:
the backend a multi-node cluster uses, where a restarted shard may come back elsewhere."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.system import deployment_variant
from tests.integration.test_faults import test_killing_a_shard_mid_stream_loses_and_doubles_nothing

__all__ = ["test_killing_a_shard_mid_stream_loses_and_doubles_nothing"]


@pytest.fixture(scope="module")
def system(ray_session: Any, receivers: dict[str, Any], redis_url: str) -> Iterator[dict[str, Any]]:
    """The integration deployment with `storage.backend: redis` under a fresh key prefix."""
    os.environ["ITINERARY_TEST_REDIS_URL_FOR_ACTORS"] = redis_url

    def edit(data: dict[str, Any]) -> None:
        data["runtime"]["storage"] = {
            "backend": "redis",
            "redis_url": {"env": "ITINERARY_TEST_REDIS_URL_FOR_ACTORS"},
            "key_prefix": f"test-{uuid.uuid4().hex[:8]}",
        }

    with deployment_variant(ray_session, receivers, "test-config-redis", edit) as system:
        yield system


def test_the_shards_and_gateways_keep_their_state_in_redis(system: dict[str, Any]) -> None:
    from tests.integration.system import http

    status = http("GET", f"{system['url']}/v1/status")[1]
    assert {s["storage"]["backend"] for s in status["shards"]} == {"RedisShardStore"}
    assert {g["outbox"]["backend"] for g in status["gateways"]} == {"RedisOutboxStore"}
