"""The data plane with direct streams off (`runtime.direct_streams: false`): batches, sends
and outcomes go as Ray calls, and a journey runs end to end as with streams."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.system import deployment_variant, http, post_events, registration, wait_until
from tests.integration.test_pipeline import calls, mails_to


@pytest.fixture(scope="module")
def system(ray_session: Any, receivers: dict[str, Any]) -> Iterator[dict[str, Any]]:
    def edit(data: dict[str, Any]) -> None:
        data["runtime"]["direct_streams"] = False

    with deployment_variant(ray_session, receivers, "test-config-ray-calls", edit) as system:
        yield system


def test_a_journey_runs_end_to_end_on_ray_calls_alone(system: dict[str, Any]) -> None:
    email = f"ray-{uuid.uuid4().hex[:8]}@example.com"
    assert post_events(system["url"], registration(email, "Grace")) == (202, {"accepted": 1, "rejected": []})
    assert wait_until(lambda: len(mails_to(system, email)) == 1)
    # the loyalty call waits for the e-mail's outcome: outcomes came back too
    assert wait_until(lambda: len(calls(system, "/loyalty", lambda b: b.get("email") == email)) == 1)
    status = http("GET", f"{system['url']}/v1/status")[1]
    for shard in status["shards"]:
        assert shard["stream"] == {"address": None, "connections": 0, "calls": 0, "refused": 0}
    for actor in status["gateway_actors"]:
        assert actor["stream"]["address"] is None and actor["stream"]["calls"] == 0
