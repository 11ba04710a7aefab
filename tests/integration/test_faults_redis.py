"""The shard-kill fault test again, with every shard, gateway and journey store on Redis:
the backend a multi-node cluster uses, where a restarted shard may come back elsewhere."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.system import test_config as deployment_config
from tests.integration.test_faults import test_killing_a_shard_mid_stream_loses_and_doubles_nothing

__all__ = ["test_killing_a_shard_mid_stream_loses_and_doubles_nothing"]


@pytest.fixture(scope="module")
def system(ray_session: Any, receivers: dict[str, Any], redis_url: str) -> Iterator[dict[str, Any]]:
    """The integration deployment with `storage.backend: redis` under a fresh key prefix."""
    from itinerary.actors.runtime import launch_supervisor
    from itinerary.config.app import AppConfig

    os.environ["ITINERARY_TEST_REDIS_URL_FOR_ACTORS"] = redis_url
    base = deployment_config(receivers["smtp"], receivers["hooks"], receivers["flaky"])
    data = base.model_dump(mode="json", by_alias=True, exclude={"channels"})
    data["runtime"]["storage"] = {
        "backend": "redis",
        "redis_url": {"env": "ITINERARY_TEST_REDIS_URL_FOR_ACTORS"},
        "key_prefix": f"test-{uuid.uuid4().hex[:8]}",
    }
    data["runtime"].pop("security", None)
    app = AppConfig.model_validate({**data, "channels": base.channels})
    supervisor = launch_supervisor(app, "test-config-redis")
    info = ray_session.get(supervisor.start.remote(), timeout=120)
    yield {"url": info["urls"][0], "supervisor": supervisor, "app": app, **receivers}
    ray_session.get(supervisor.shutdown.remote(), timeout=60)
    ray_session.kill(supervisor, no_restart=True)


def test_the_shards_and_gateways_keep_their_state_in_redis(system: dict[str, Any]) -> None:
    from tests.integration.system import http

    status = http("GET", f"{system['url']}/v1/status")[1]
    assert {s["storage"]["backend"] for s in status["shards"]} == {"RedisShardStore"}
    assert {g["outbox"]["backend"] for g in status["gateways"]} == {"RedisOutboxStore"}
